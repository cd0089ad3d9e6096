"""Tests of keras_rir.training and keras_rir.reporting: schedule, optimizers, callbacks, train()."""

import csv
import json
import os

import keras
import numpy as np
import pytest

import keras_rir
from keras_rir import data as data_lib
from keras_rir import reporting, training
from tests import plots

TINY_RIR = {"num_blocks": 3, "layers_per_block": 1, "stage_filters": (4, 8, 8)}


def tiny_data(num_train=48, num_test=24, num_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return data_lib.CifarData(
        x_train=rng.integers(0, 256, (num_train, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, num_classes, num_train).astype(np.int32),
        x_test=rng.integers(0, 256, (num_test, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, num_classes, num_test).astype(np.int32),
        num_classes=num_classes,
        class_names=tuple(str(i) for i in range(num_classes)),
        name="generated",
    )


def paper_learning_rate(epoch, epochs, initial):
    """Independent formula: x0.1 from the scaled 0-based epochs 42 and 62 of 82."""
    first, second = np.round(np.array([42, 62]) * epochs / 82).astype(int)
    return initial * np.where(epoch >= second, 0.01, np.where(epoch >= first, 0.1, 1.0))


# Learning-rate schedule.


def test_schedule_of_the_paper_82_epochs():
    schedule = training.learning_rate_schedule(82, 0.1)
    values = np.array([schedule(epoch) for epoch in range(82)])
    assert schedule.boundaries == (42, 62)
    # 42 epochs at 0.1, then 20 at 0.01 (after epoch 42), 20 at 0.001 (after epoch 62).
    np.testing.assert_allclose(values[:42], 0.1)
    np.testing.assert_allclose(values[42:62], 0.01)
    np.testing.assert_allclose(values[62:], 0.001)
    np.testing.assert_allclose(values, paper_learning_rate(np.arange(82), 82, 0.1))


@pytest.mark.parametrize(
    "epochs, boundaries", [(41, (21, 31)), (10, (5, 8)), (3, (2, 2)), (2, (1, 2)), (1, (1, 1))]
)
def test_schedule_of_a_shortened_run(epochs, boundaries):
    assert training.learning_rate_boundaries(epochs) == boundaries
    schedule = training.learning_rate_schedule(epochs, 0.4)
    values = [schedule(epoch) for epoch in range(epochs)]
    np.testing.assert_allclose(values, paper_learning_rate(np.arange(epochs), epochs, 0.4))
    assert values[0] == 0.4


def test_schedule_drives_the_optimizer_in_fit():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(training.make_optimizer("sgd", 0.2), "mse")
    schedule = training.learning_rate_schedule(5, 0.2)  # Boundaries (3, 4).
    history = model.fit(
        np.ones((4, 3)),
        np.ones((4, 1)),
        epochs=5,
        verbose=0,
        callbacks=[keras.callbacks.LearningRateScheduler(schedule)],
    )
    np.testing.assert_allclose(
        history.history["learning_rate"], [0.2, 0.2, 0.2, 0.02, 0.002], rtol=1e-6
    )


@pytest.mark.parametrize("epochs", [0, -1, 2.5])
def test_schedule_rejects_bad_epochs(epochs):
    with pytest.raises(ValueError, match="Invalid value for argument `epochs`"):
        training.learning_rate_schedule(epochs, 0.1)


def test_recipe_is_the_paper():
    recipe = training.PAPER_RECIPE
    assert (recipe.epochs, recipe.batch_size, recipe.momentum, recipe.l2) == (82, 500, 0.9, 1e-4)
    assert recipe.decay_epochs == (42, 62) and recipe.decay_factor == 0.1
    assert recipe.optimizer == "sgd" and recipe.kernel_initializer == "he_normal"


# Optimizers.


@pytest.mark.parametrize(
    "name, cls, momentum, nesterov",
    [
        ("sgd", keras.optimizers.SGD, 0.9, False),
        ("nesterov", keras.optimizers.SGD, 0.9, True),
        ("adam", keras.optimizers.Adam, None, None),
        ("rmsprop", keras.optimizers.RMSprop, None, None),
    ],
)
def test_make_optimizer(name, cls, momentum, nesterov):
    optimizer = training.make_optimizer(name, learning_rate=0.05)
    assert isinstance(optimizer, cls)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(optimizer.learning_rate)), 0.05)
    # L2 lives in the model's regularizers, not in decoupled weight decay.
    assert optimizer.weight_decay is None
    if momentum is not None:
        assert optimizer.momentum == momentum
        assert optimizer.nesterov is nesterov


def test_make_optimizer_nesterov_flag():
    optimizer = training.make_optimizer("sgd", 0.1, momentum=0.5, nesterov=True)
    assert optimizer.nesterov is True and optimizer.momentum == 0.5


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"name": "adamw"}, "name"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": "0.1"}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
    ],
)
def test_make_optimizer_rejects(kwargs, argument):
    with pytest.raises(ValueError, match=f"Invalid value for argument `{argument}`"):
        training.make_optimizer(**kwargs)


# Callbacks and history.


def test_make_callbacks(tmp_path):
    callbacks = training.make_callbacks(str(tmp_path), training.learning_rate_schedule(4), 100)
    kinds = [type(callback) for callback in callbacks]
    assert kinds == [
        keras.callbacks.LearningRateScheduler,
        training.EpochTimer,
        training.ResumableCSVLogger,
        keras.callbacks.BackupAndRestore,
        keras.callbacks.ModelCheckpoint,
        keras.callbacks.TerminateOnNaN,
    ]
    with_board = training.make_callbacks(str(tmp_path), tensorboard=True)
    assert isinstance(with_board[-1], keras.callbacks.TensorBoard)


def test_read_history_keeps_every_epoch_once(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,val_accuracy\n0,2.0,0.1\n1,1.5,0.2\n1,1.4,0.25\n2,1.0,0.3\n")
    history = reporting.read_history(str(path))
    assert history == {
        "epoch": [0, 1, 2],
        "loss": [2.0, 1.4, 1.0],
        "val_accuracy": [0.1, 0.25, 0.3],
    }
    assert reporting.read_history(str(tmp_path / "missing.csv")) == {}


def test_resumable_csv_logger_replaces_stale_rows(tmp_path):
    """A run resumed at epoch 1 drops the rows of epochs >= 1 left by the killed run."""
    path = str(tmp_path / "log.csv")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[training.ResumableCSVLogger(path)])
    model.fit(
        x, y, epochs=3, initial_epoch=1, verbose=0, callbacks=[training.ResumableCSVLogger(path)]
    )
    with open(path) as file:
        rows = list(csv.reader(file))
    assert rows[0][:2] == ["epoch", "loss"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2"]


def test_plot_curves_and_results(tmp_path):
    history = {"epoch": [0, 1], "loss": [2.0, 1.0], "val_loss": [2.5, 1.5], "accuracy": [0.1, 0.5]}
    path = reporting.plot_curves(history, str(tmp_path / "curves.png"), title="t")
    pixels = plots.read_png(path)
    # Training curves in the first colour of matplotlib's cycle, validation in the second.
    assert plots.colour_pixels(pixels, "C0") > 50 and plots.colour_pixels(pixels, "C1") > 50
    train_only = {key: value for key, value in history.items() if not key.startswith("val_")}
    other = plots.read_png(reporting.plot_curves(train_only, str(tmp_path / "train.png")))
    assert plots.colour_pixels(other, "C0") > 50 and plots.colour_pixels(other, "C1") == 0
    plots.assert_depends_on_data(pixels, other)
    results = {"a": np.float32(0.5), "b": (1, 2), "c": float("nan"), "d": np.arange(2)}
    reporting.write_results(results, str(tmp_path / "results.json"))
    with open(tmp_path / "results.json") as file:
        assert json.load(file) == {"a": 0.5, "b": [1, 2], "c": None, "d": [0, 1]}


def test_environment():
    record = reporting.environment()
    assert record["backend"] == keras.backend.backend()
    assert record["packages"]["keras"] == keras.__version__
    assert record["packages"]["keras_rir"] == keras_rir.__version__
    assert record["device"] and record["devices"]
    assert set(record) >= {"git_commit", "git_dirty", "cpu", "platform"}


# train().


def test_train_one_epoch(tmp_path):
    data = tiny_data()
    output_dir = str(tmp_path / "run")
    results = training.train(
        "rir",
        data,
        output_dir,
        epochs=1,
        batch_size=16,
        learning_rate=0.05,
        l2=2e-4,
        seed=3,
        model_kwargs=TINY_RIR,
        verbose=0,
    )
    assert sorted(os.listdir(output_dir)) == [
        "best.keras",
        "curves.png",
        "log.csv",
        "model.keras",
        "results.json",
    ]  # The backup is deleted when the run finishes.
    with open(os.path.join(output_dir, "results.json")) as file:
        saved = json.load(file)
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert saved["epochs"] == 1 and saved["resumed_from_epoch"] == 0
    assert saved["validation"] == "test"
    assert saved["num_train_examples"] == 48 and saved["num_test_examples"] == 24
    assert saved["train_images_per_second"] > 0 and saved["wall_time_seconds"] > 0
    assert saved["terminated_on_nan"] is False
    history = saved["history"]
    assert history["epoch"] == [0]
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    np.testing.assert_allclose(history["learning_rate"], [0.05], rtol=1e-6)
    # The last validation pass is on the test set with the final weights.
    np.testing.assert_allclose(history["val_accuracy"][-1], saved["test_accuracy"], atol=1e-6)
    hyperparameters = saved["hyperparameters"]
    assert hyperparameters["model"] == "rir"
    assert hyperparameters["model_kwargs"] == {**TINY_RIR, "stage_filters": [4, 8, 8]}
    assert hyperparameters["learning_rate"] == 0.05 and hyperparameters["l2"] == 2e-4
    assert hyperparameters["batch_size"] == 16 and hyperparameters["seed"] == 3
    assert hyperparameters["optimizer"] == "sgd" and hyperparameters["momentum"] == 0.9
    assert hyperparameters["learning_rate_boundaries"] == [1, 1]
    assert saved["environment"]["backend"] == keras.backend.backend()
    pixels = plots.read_png(os.path.join(output_dir, "curves.png"))
    assert plots.colour_pixels(pixels, "C0") > 0 and plots.colour_pixels(pixels, "C1") > 0

    # The saved model loads without custom_objects, takes uint8 images and
    # reproduces the reported test accuracy.
    model = keras.saving.load_model(os.path.join(output_dir, "model.keras"))
    probabilities = model.predict(data.x_test, batch_size=24, verbose=0)
    assert probabilities.shape == (24, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = np.mean(np.argmax(probabilities, axis=1) == data.y_test)
    assert accuracy == pytest.approx(saved["test_accuracy"], abs=1e-6)
    # The L2 penalty of the builder got `l2`.
    network = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert network.get_layer("classifier").kernel_regularizer.l2 == pytest.approx(2e-4)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"model_name": "rir33"}, "model_name"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"l2": -1.0}, "l2"),
        ({"seed": 1.5}, "seed"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"decay_epochs": (3, 90)}, "decay_epochs"),
        ({"warmup": 5}, "warmup"),
        ({"model_kwargs": {"l2": 0.1}}, "model_kwargs"),
        ({"model_kwargs": {"kernel_initializer": "orthogonal"}}, "model_kwargs"),
    ],
)
def test_train_rejects_bad_arguments(tmp_path, kwargs, argument):
    arguments = {"model_name": "cnn32", "data": tiny_data(), "output_dir": str(tmp_path)}
    with pytest.raises(ValueError, match=f"Invalid value for argument `{argument}`"):
        training.train(**{**arguments, **kwargs})


def test_train_logs_the_papers_schedule_scaled_to_the_run(tmp_path):
    """Five epochs: x0.1 from the scaled epochs round(42 / 82 * 5) = 3 and round(62 / 82 * 5) = 4.

    A run that kept the 82-epoch boundaries would never decay; the logged rate is the
    optimizer's own, read back from `log.csv` and the returned history.
    """
    data = tiny_data(num_train=16, num_test=8)
    output_dir = tmp_path / "run"
    results = training.train(
        "rir",
        data,
        str(output_dir),
        epochs=5,
        batch_size=16,
        learning_rate=0.2,
        model_kwargs=TINY_RIR,
        augment=False,
        verbose=0,
    )
    expected = paper_learning_rate(np.arange(5), 5, 0.2)
    np.testing.assert_allclose(expected, [0.2, 0.2, 0.2, 0.02, 0.002])  # the formula itself
    with open(output_dir / "log.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([float(row["learning_rate"]) for row in rows], expected, rtol=1e-6)
    np.testing.assert_allclose(results["history"]["learning_rate"], expected, rtol=1e-6)
    assert tuple(results["hyperparameters"]["learning_rate_boundaries"]) == (3, 4)


@pytest.mark.parametrize(
    "data, argument, error",
    [
        ((np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int32)), "data", TypeError),
        ({"x_train": np.zeros((4, 32, 32, 3), np.uint8)}, "data", TypeError),
        ("cifar10", "data", TypeError),
    ],
)
def test_train_rejects_data_of_the_wrong_type(tmp_path, data, argument, error):
    with pytest.raises(error, match=f"Invalid type for argument `{argument}`") as info:
        training.train("cnn32", data, str(tmp_path))
    assert "keras_rir.data.CifarData" in str(info.value)
    assert f"of type {type(data).__name__}" in str(info.value)
    assert not os.listdir(tmp_path)


def test_train_rejects_a_recipe_that_is_not_a_recipe(tmp_path):
    with pytest.raises(TypeError, match="Invalid type for argument `recipe`"):
        training.train("cnn32", tiny_data(), str(tmp_path), {"epochs": 1})
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "validation_data, error",
    [
        (np.zeros((4, 32, 32, 3), np.uint8), TypeError),
        ((np.zeros((4, 32, 32, 3), np.uint8),), TypeError),
        ((np.zeros((4, 16, 16, 3), np.uint8), np.zeros(4, np.int32)), ValueError),
        ((np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3, np.int32)), ValueError),
        ((np.zeros((4, 32, 32, 3), np.uint8), np.zeros((4, 1), np.int32)), ValueError),
    ],
)
def test_train_rejects_bad_validation_data(tmp_path, validation_data, error):
    with pytest.raises(error, match="for argument `validation_data`") as info:
        training.train("cnn32", tiny_data(), str(tmp_path), validation_data=validation_data)
    assert "a pair (x, y) of arrays: x of shape (N, 32, 32, 3)" in str(info.value)
    assert not os.listdir(tmp_path)


# Arguments of the recipe and the schedule.


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -82}, "epochs"),
        ({"epochs": 8.5}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -1}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"learning_rate": float("inf")}, "learning_rate"),
        ({"optimizer": "adamw"}, "optimizer"),
        ({"momentum": 1.0}, "momentum"),
        ({"l2": -1e-4}, "l2"),
        ({"decay_epochs": (62, 42)}, "decay_epochs"),
        ({"decay_epochs": (-1, 62)}, "decay_epochs"),
        ({"decay_epochs": (42, 90)}, "decay_epochs"),
        ({"decay_epochs": 42}, "decay_epochs"),
        ({"decay_factor": 0.0}, "decay_factor"),
        ({"decay_factor": 10.0}, "decay_factor"),
        ({"kernel_initializer": "msr"}, "kernel_initializer"),
    ],
)
def test_recipe_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"Invalid value for argument `{argument}`") as info:
        training.Recipe(**kwargs)
    assert f"Received: {argument}={next(iter(kwargs.values()))!r}" in str(info.value)


def test_replace_scales_the_decays_to_a_new_length_unless_they_are_given():
    """round(42 / 82 * 5) = 3 and round(62 / 82 * 5) = 4; the quick budget is that recipe."""
    recipe = training.PAPER_RECIPE.replace(epochs=5, learning_rate=0.1)
    assert (recipe.epochs, recipe.decay_epochs, recipe.learning_rate) == (5, (3, 4), 0.1)
    assert recipe.batch_size == training.PAPER_RECIPE.batch_size
    assert training.PAPER_RECIPE.replace(epochs=5, decay_epochs=(1,)).decay_epochs == (1,)
    assert training.PAPER_RECIPE.scaled_to(82) == training.PAPER_RECIPE
    assert training.QUICK_RECIPE.decay_epochs == (3, 4) and training.QUICK_RECIPE.epochs == 5
    assert set(training.BUDGETS) == {"paper", "quick"}
    with pytest.raises(ValueError, match="Invalid value for argument `epochs`"):
        training.PAPER_RECIPE.replace(epochs=0)
    with pytest.raises(ValueError, match="Expected a field of Recipe"):
        training.PAPER_RECIPE.replace(epoch=5)


def test_recipe_accepts_a_shorter_run_and_keeps_tuples():
    recipe = training.Recipe(epochs=10, batch_size=128, decay_epochs=[5, 8], learning_rate=0.1)
    assert recipe.decay_epochs == (5, 8)
    assert training.learning_rate_boundaries(20, recipe) == (10, 16)


@pytest.mark.parametrize(
    "args, argument",
    [
        ((0.0, (42, 62)), "initial_learning_rate"),
        ((-0.1, (42, 62)), "initial_learning_rate"),
        (("0.1", (42, 62)), "initial_learning_rate"),
        ((0.1, (62, 42)), "boundaries"),
        ((0.1, (-1,)), "boundaries"),
        ((0.1, (2.5,)), "boundaries"),
        ((0.1, 42), "boundaries"),
        ((0.1, (42, 62), 0.0), "decay_factor"),
        ((0.1, (42, 62), -0.1), "decay_factor"),
        ((0.1, (42, 62), 2.0), "decay_factor"),
    ],
)
def test_step_schedule_rejects_bad_arguments(args, argument):
    with pytest.raises(ValueError, match=f"Invalid value for argument `{argument}`"):
        training.StepSchedule(*args)
