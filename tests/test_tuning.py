"""keras_rir.tuning: the five axes, exact grid sizes, resuming, results files."""

import csv
import itertools
import json
import os

import keras
import keras_tuner
import numpy as np
import pytest

from keras_rir import tuning
from keras_rir.layers import GeneralizedResidualConv2D, IdentityShortcut
from keras_rir.regularizers import PartialIdentityDecay
from tests import plots
from tests.example_scripts import TUNING, load_script

TINY = {"num_blocks": 3, "layers_per_block": 1, "stage_filters": (4, 8, 8)}
SHAPE = (8, 8, 3)


def make_hypermodel(cls=tuning.RiRHyperModel, **kwargs):
    settings = dict(
        num_classes=3,
        input_shape=SHAPE,
        epochs=1,
        batch_size=8,
        model_kwargs=TINY,
        seed=0,
        jit_compile=False,
    )
    settings.update(kwargs)
    return cls("rir", **settings)


def build_with(**values):
    hypermodel = make_hypermodel()
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    hp.values.update(values)
    return hypermodel.build(hp)


def small_data(num=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num, *SHAPE)).astype("float32")
    y = rng.integers(0, 3, num).astype("int32")
    return x, y


# The values of the grid's third trial, where the interruption tests stop the search.
THIRD_TRIAL = {
    "learning_rate": 0.01,
    "l2": 1e-4,
    "initializer": "he",
    "optimizer": "sgd",
    "shortcut": "projection",
}


class FakeFitHyperModel(tuning.RiRHyperModel):
    """Builds the real model but replaces training by a score computed from the values."""

    calls = []
    interrupt_at = None

    def fit(self, hp, model, *args, **kwargs):
        values = dict(hp.values)
        if values == self.interrupt_at:
            raise KeyboardInterrupt("simulated interruption")
        type(self).calls.append(values)
        score = values["learning_rate"] + (values["optimizer"] == "adam") / 10
        return {"val_accuracy": score, "val_loss": 1.0 - score}


def fake_hypermodel(**axes):
    FakeFitHyperModel.calls = []
    FakeFitHyperModel.interrupt_at = None
    return make_hypermodel(FakeFitHyperModel, **axes)


def tried_values(tuner):
    return [
        tuple(trial.hyperparameters.values[name] for name in tuning.AXES)
        for trial in tuner.oracle.trials.values()
    ]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("he", keras.initializers.HeNormal),
        ("glorot", keras.initializers.GlorotNormal),
        ("orthogonal", keras.initializers.Orthogonal),
    ],
)
def test_initializer_axis_sets_every_base_initializer(name, expected):
    model = build_with(initializer=name)
    generalized = [layer for layer in model.layers if isinstance(layer, GeneralizedResidualConv2D)]
    assert generalized
    for layer in generalized:
        assert type(layer.base_initializer) is expected
    assert type(model.get_layer("stem_conv").kernel_initializer) is expected
    assert type(model.get_layer("classifier").kernel_initializer) is expected


@pytest.mark.parametrize("l2", [1e-4, 5e-4])
def test_l2_axis_sets_every_regularizer(l2):
    model = build_with(l2=l2)
    generalized = model.get_layer("stage1_block1_1_conv")
    assert isinstance(generalized.kernel_regularizer, PartialIdentityDecay)
    assert generalized.kernel_regularizer.l2 == pytest.approx(l2)
    stem = model.get_layer("stem_conv")
    kernel = keras.ops.convert_to_numpy(stem.kernel)
    penalty = keras.ops.convert_to_numpy(stem.kernel_regularizer(stem.kernel))
    np.testing.assert_allclose(penalty, l2 * np.sum(kernel**2), rtol=1e-5)


@pytest.mark.parametrize(
    "name, cls, nesterov",
    [
        ("sgd", keras.optimizers.SGD, False),
        ("nesterov", keras.optimizers.SGD, True),
        ("adam", keras.optimizers.Adam, None),
        ("rmsprop", keras.optimizers.RMSprop, None),
    ],
)
def test_optimizer_axis(name, cls, nesterov):
    optimizer = build_with(optimizer=name).optimizer
    # isinstance: the torch backend subclasses each optimizer.
    assert isinstance(optimizer, cls)
    others = {keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.RMSprop} - {cls}
    assert not any(isinstance(optimizer, other) for other in others)
    if nesterov is not None:
        assert optimizer.nesterov is nesterov
        assert optimizer.momentum == pytest.approx(0.9)


@pytest.mark.parametrize("learning_rate", [0.1, 0.001])
def test_learning_rate_axis(learning_rate):
    optimizer = build_with(learning_rate=learning_rate).optimizer
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(
        learning_rate
    )


def test_shortcut_axis():
    identity = build_with(shortcut="identity")
    projection = build_with(shortcut="projection")
    # The first blocks of stages 2 and 3 change shape; the others keep identities.
    assert sum(isinstance(layer, IdentityShortcut) for layer in identity.layers) == 2
    assert not any(layer.name.endswith("projection_conv") for layer in identity.layers)
    assert not any(isinstance(layer, IdentityShortcut) for layer in projection.layers)
    assert {
        layer.name for layer in projection.layers if layer.name.endswith("projection_conv")
    } == {"stage2_block1_projection_conv", "stage3_block1_projection_conv"}
    assert projection.count_params() > identity.count_params()


def test_defaults_are_the_papers_choice_and_a_grid_around_it():
    hypermodel = tuning.RiRHyperModel("rir32")
    hp = keras_tuner.HyperParameters()
    values = hypermodel.declare_hyperparameters(hp)
    assert values == {
        "learning_rate": 0.1,
        "l2": 1e-4,
        "initializer": "he",
        "optimizer": "sgd",
        "shortcut": "projection",
    }
    assert set(hypermodel.initializers) == {"he", "glorot", "orthogonal"}
    assert set(hypermodel.optimizers) == {"sgd", "nesterov", "adam", "rmsprop"}
    assert set(hypermodel.shortcuts) == {"projection", "identity"}
    assert hypermodel.grid_size == 3 * 2 * 3 * 4 * 2


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"initializers": ("he", "xavier")}, "initializers"),
        ({"optimizers": ()}, "optimizers"),
        ({"learning_rates": (0.1, -1.0)}, "learning_rates"),
        ({"l2": (1e-4, 1e-4)}, "l2"),
        ({"shortcuts": ("projection", "none")}, "shortcuts"),
        ({"model_kwargs": {"l2": 0.1}}, "model_kwargs"),
        ({"schedule": "cosine"}, "schedule"),
    ],
)
def test_invalid_axes_are_rejected(kwargs, argument):
    with pytest.raises(ValueError, match=f"Invalid value for argument `{argument}`"):
        tuning.RiRHyperModel("rir32", **kwargs)


def test_fit_applies_the_papers_schedule_scaled_to_the_run():
    hypermodel = make_hypermodel(epochs=3, learning_rates=(0.1,))
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    x, y = small_data(8)
    history = hypermodel.fit(hp, model, x, y, validation_data=(x, y))
    # Boundaries round(42 / 82 * 3) = round(62 / 82 * 3) = 2: two decays at epoch 2.
    np.testing.assert_allclose(history.history["learning_rate"], [0.1, 0.1, 0.001], rtol=1e-6)


@pytest.mark.parametrize("max_trials, expected", [(None, 8), (3, 3)])
def test_grid_search_runs_exactly_the_grid(tmp_path, max_trials, expected):
    axes = dict(
        learning_rates=(0.1, 0.01),
        l2=(1e-4,),
        initializers=("he", "orthogonal"),
        optimizers=("sgd", "adam"),
        shortcuts=("projection",),
    )
    hypermodel = fake_hypermodel(**axes)
    tuner = tuning.make_tuner(hypermodel, "grid", max_trials=max_trials, directory=tmp_path)
    x, y = small_data(4)
    tuner.search(x, y, validation_data=(x, y), verbose=0)
    assert len(tuner.oracle.trials) == expected
    assert len(FakeFitHyperModel.calls) == expected
    grid = list(itertools.product(*(axes[key] for key in axes)))
    tried = tried_values(tuner)
    assert len(set(tried)) == expected
    # The grid starts from the defaults and the last axis varies fastest.
    assert sorted(tried, key=grid.index) == grid[:expected]
    best = tuner.get_best_hyperparameters(1)[0].values
    assert best["optimizer"] == "adam" and best["learning_rate"] == 0.1


def test_random_search_runs_max_trials_distinct_points(tmp_path):
    hypermodel = fake_hypermodel(learning_rates=(0.1, 0.01, 0.001), optimizers=("sgd", "adam"))
    tuner = tuning.make_tuner(hypermodel, "random", max_trials=4, directory=tmp_path)
    x, y = small_data(4)
    tuner.search(x, y, validation_data=(x, y), verbose=0)
    assert len(tuner.oracle.trials) == 4
    assert len(set(tried_values(tuner))) == 4


def _interrupted_then_resumed(tmp_path, oracle_factory):
    """Runs a 2x2 grid interrupted in its third trial, then resumes it in a new tuner."""
    axes = dict(learning_rates=(0.1, 0.01), optimizers=("sgd", "adam"), l2=(1e-4,))
    axes.update(initializers=("he",), shortcuts=("projection",))
    x, y = small_data(4)

    def tuner():
        hypermodel = make_hypermodel(FakeFitHyperModel, **axes)
        oracle = oracle_factory(objective=keras_tuner.Objective("val_accuracy", "max"))
        return tuning.tuners._Tuner(
            oracle=oracle, hypermodel=hypermodel, directory=tmp_path, project_name="p"
        )

    FakeFitHyperModel.calls = []
    FakeFitHyperModel.interrupt_at = THIRD_TRIAL
    with pytest.raises(KeyboardInterrupt):
        tuner().search(x, y, validation_data=(x, y), verbose=0)
    assert len(FakeFitHyperModel.calls) == 2
    FakeFitHyperModel.interrupt_at = None
    resumed = tuner()
    resumed.search(x, y, validation_data=(x, y), verbose=0)
    return resumed


def test_grid_search_resumes_an_interrupted_search(tmp_path):
    tuner = _interrupted_then_resumed(tmp_path, tuning.ResumableGridSearchOracle)
    assert len(tuner.oracle.trials) == 4
    assert all(trial.status == "COMPLETED" for trial in tuner.oracle.trials.values())
    assert len(set(tried_values(tuner))) == 4
    # Two trials before the interruption, the interrupted one and the last one after it.
    calls = [(c["learning_rate"], c["optimizer"]) for c in FakeFitHyperModel.calls]
    assert calls == [(0.1, "sgd"), (0.1, "adam"), (0.01, "sgd"), (0.01, "adam")]
    assert tuner.oracle.trials["0002"].hyperparameters.values["optimizer"] == "sgd"


def test_keras_tuner_grid_search_does_not_resume(tmp_path):
    """keras-team/keras-tuner#1055, the reason for `ResumableGridSearchOracle`.

    If this test fails, KerasTuner resumes grid searches itself.
    """
    with pytest.raises(KeyError):
        _interrupted_then_resumed(tmp_path, keras_tuner.oracles.GridSearchOracle)


def test_resume_with_another_grid_is_rejected(tmp_path):
    x, y = small_data(4)
    axes = dict(l2=(1e-4,), initializers=("he",), optimizers=("sgd",), shortcuts=("identity",))
    first = fake_hypermodel(learning_rates=(0.1, 0.01), **axes)
    tuning.make_tuner(first, "grid", directory=tmp_path).search(
        x, y, validation_data=(x, y), verbose=0
    )
    assert len(FakeFitHyperModel.calls) == 2
    other = fake_hypermodel(learning_rates=(0.05, 0.01), **axes)
    with pytest.raises(ValueError, match="Invalid value for argument `learning_rate`"):
        tuning.make_tuner(other, "grid", directory=tmp_path)


def test_search_writes_results_and_evaluates_the_best_model(tmp_path):
    x, y = small_data(24)
    x_images = np.clip(x * 40 + 128, 0, 255).astype("uint8")
    hypermodel = make_hypermodel(
        learning_rates=(0.1,),
        l2=(1e-4,),
        initializers=("he",),
        optimizers=("sgd",),
        shortcuts=("projection", "identity"),
        mean=[128.0] * 3,
        std=[40.0] * 3,
        augment=True,
    )
    tuner = tuning.make_tuner(hypermodel, "grid", directory=tmp_path, project_name="p")
    tuner.search(x_images[:16], y[:16], validation_data=(x_images[16:], y[16:]), verbose=0)

    rows = tuning.trial_rows(tuner.oracle)
    assert [row["shortcut"] for row in rows] == ["projection", "identity"]
    path = tuning.write_trials_csv(rows, tmp_path / "trials.csv")
    with open(path) as file:
        read = list(csv.DictReader(file))
    assert len(read) == 2
    for column in (*tuning.AXES, "val_accuracy", "val_loss", "wall_time", "status"):
        assert column in read[0]
    assert all(row["status"] == "COMPLETED" for row in read)
    assert all(float(row["wall_time"]) > 0 for row in read)

    plot_trials = load_script("plots", TUNING).plot_trials
    plot = plots.read_png(plot_trials(rows, tmp_path / "trials.png"))
    changed = [{**row, "val_accuracy": 1.0 - row["val_accuracy"]} for row in rows]
    plots.assert_depends_on_data(plot, plots.read_png(plot_trials(changed, tmp_path / "b.png")))

    table = tuning.format_table(rows)
    assert len(table.splitlines()) == 4 and "val_accuracy" in table

    test = tuning.evaluate_best(tuner, x_images, y, batch_size=8)
    best_trial, model = tuning.load_best_model(tuner)
    assert test["trial_id"] == best_trial.trial_id == tuner.oracle.get_best_trials(1)[0].trial_id
    predictions = np.argmax(keras.ops.convert_to_numpy(model.predict(x_images, verbose=0)), -1)
    assert test["test_accuracy"] == pytest.approx(np.mean(predictions == y), abs=1e-6)

    best = tuning.write_best_json(rows, tmp_path / "best.json", extra=test)
    with open(tmp_path / "best.json") as file:
        assert json.load(file)["best_trial"]["trial_id"] == best["best_trial"]["trial_id"]
    assert best["best_trial"]["val_accuracy"] == max(row["val_accuracy"] for row in rows)
    assert os.path.exists(tmp_path / "p" / f"trial_{best_trial.trial_id}")


# The oracle's state repair on reload, from hand-edited state files. A process killed inside
# `Oracle.end_trial` (after the trial file, before `oracle.json`) or inside `create_trial`
# leaves files that disagree; the reloaded search must rerun nothing that finished and lose
# nothing that started.

GRID_2X2 = dict(
    learning_rates=(0.1, 0.01),
    l2=(1e-4,),
    initializers=("he",),
    optimizers=("sgd", "adam"),
    shortcuts=("projection",),
)


def grid_tuner(tmp_path):
    hypermodel = make_hypermodel(FakeFitHyperModel, **GRID_2X2)
    return tuning.make_tuner(hypermodel, "grid", directory=tmp_path, project_name="p")


def edit_json(path, edit):
    with open(path) as file:
        state = json.load(file)
    edit(state)
    with open(path, "w") as file:
        json.dump(state, file)


def trial_status(tmp_path, trial_id):
    with open(tmp_path / "p" / f"trial_{trial_id}" / "trial.json") as file:
        return json.load(file)["status"]


def assert_whole_grid_once(tuner):
    oracle = tuner.oracle
    assert sorted(oracle.trials) == ["0000", "0001", "0002", "0003"]
    assert all(trial.status == "COMPLETED" for trial in oracle.trials.values())
    assert len(set(tried_values(tuner))) == 4
    assert sorted(oracle.end_order) == sorted(oracle.trials) and not oracle.ongoing_trials


def test_reload_keeps_a_finished_trial_still_listed_as_running(tmp_path):
    x, y = small_data(4)
    FakeFitHyperModel.calls, FakeFitHyperModel.interrupt_at = [], None
    grid_tuner(tmp_path).search(x, y, validation_data=(x, y), verbose=0)
    assert len(FakeFitHyperModel.calls) == 4 and trial_status(tmp_path, "0003") == "COMPLETED"
    score = grid_tuner(tmp_path).oracle.trials["0003"].score

    # Killed in end_trial of 0003 between the trial file and oracle.json: the trial file says
    # COMPLETED, oracle.json still lists 0003 as running on tuner0 and not as ended.
    def running_again(state):
        assert state["ongoing_trials"] == {}
        assert state["end_order"] == ["0000", "0001", "0002", "0003"]
        state["ongoing_trials"] = {"tuner0": "0003"}
        state["end_order"] = ["0000", "0001", "0002"]
        del state["run_times"]["0003"]

    edit_json(tmp_path / "p" / "oracle.json", running_again)

    FakeFitHyperModel.calls = []
    resumed = grid_tuner(tmp_path)
    resumed.search(x, y, validation_data=(x, y), verbose=0)
    assert FakeFitHyperModel.calls == []  # nothing rerun
    assert_whole_grid_once(resumed)
    assert resumed.oracle.trials["0003"].score == pytest.approx(score)  # nothing lost


def test_reload_runs_a_started_trial_the_oracle_does_not_know(tmp_path):
    x, y = small_data(4)
    # The third trial starts (its trial file is written) and is interrupted.
    FakeFitHyperModel.calls = []
    FakeFitHyperModel.interrupt_at = THIRD_TRIAL
    with pytest.raises(KeyboardInterrupt):
        grid_tuner(tmp_path).search(x, y, validation_data=(x, y), verbose=0)
    assert len(FakeFitHyperModel.calls) == 2 and trial_status(tmp_path, "0002") == "RUNNING"

    # Killed in create_trial of 0002 between the trial file and oracle.json: oracle.json
    # knows nothing of 0002 (not running, not started, its values not tried).
    def forget_0002(state):
        assert state["ongoing_trials"] == {"tuner0": "0002"}
        forgotten = state["id_to_hash"].pop("0002")
        state["tried_so_far"].remove(forgotten)
        state["ongoing_trials"] = {}
        state["start_order"].remove("0002")

    edit_json(tmp_path / "p" / "oracle.json", forget_0002)

    FakeFitHyperModel.calls, FakeFitHyperModel.interrupt_at = [], None
    resumed = grid_tuner(tmp_path)
    resumed.search(x, y, validation_data=(x, y), verbose=0)
    # The started trial runs once, under its own ID, then the last grid point; no fifth trial.
    calls = [(call["learning_rate"], call["optimizer"]) for call in FakeFitHyperModel.calls]
    assert calls == [(0.01, "sgd"), (0.01, "adam")]
    values = resumed.oracle.trials["0002"].hyperparameters.values
    assert (values["learning_rate"], values["optimizer"]) == (0.01, "sgd")
    assert_whole_grid_once(resumed)
