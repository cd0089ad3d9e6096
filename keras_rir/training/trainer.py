"""`train`: the paper's recipe with `model.fit`, resumable, with results and plots."""

import contextlib
import os
import random
import statistics
import sys
import time

import keras
import numpy as np

from keras_rir import data as data_lib
from keras_rir import distribution, models, preprocessing, reporting
from keras_rir._validation import (
    check_choice,
    check_non_negative_int,
    check_type,
    invalid_type,
    invalid_value,
)
from keras_rir.training.callbacks import EpochTimer, RunProgress, make_callbacks
from keras_rir.training.recipe import PAPER_RECIPE, Recipe, StepSchedule, make_optimizer

__all__ = ["train"]


def _set_random_seed(seed):
    """`keras.utils.set_random_seed` without importing TensorFlow on the other backends."""
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    # Layers and initializers without a seed draw theirs from Python's `random`.
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def _trim(x, y, multiple):
    """Drops the last `len(x) % multiple` examples."""
    end = len(x) - len(x) % multiple
    return x[:end], y[:end]


def _check_validation_data(validation_data, data):
    """Returns `validation_data` as two arrays: images shaped like the training images and one
    label per image (e.g. the held-out arrays of `keras_rir.data.holdout`)."""
    image_shape = ", ".join(str(size) for size in data.x_train.shape[1:])
    expected = f"a pair (x, y) of arrays: x of shape (N, {image_shape}), y of shape (N,), N >= 1"
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise invalid_type("validation_data", validation_data, expected)
    x_val, y_val = (np.asarray(array) for array in validation_data)
    if x_val.shape[1:] != data.x_train.shape[1:] or y_val.shape != (len(x_val),) or not len(y_val):
        raise invalid_value(
            "validation_data", f"(<array {x_val.shape}>, <array {y_val.shape}>)", expected
        )
    return x_val, y_val


@contextlib.contextmanager
def _dtype_policy(mixed_precision):
    previous = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield keras.config.dtype_policy().name
    finally:
        keras.config.set_dtype_policy(previous)


def train(
    model_name,
    data,
    output_dir,
    recipe=PAPER_RECIPE,
    *,
    seed=0,
    model_kwargs=None,
    validation_data=None,
    augment=True,
    distribute=False,
    mixed_precision=False,
    tensorboard=False,
    verbose="auto",
    **recipe_changes,
):
    """Trains a registered model on CIFAR with the paper's recipe; resumable.

    Builds `keras_rir.models.get(model_name)`, puts the per-channel
    normalization and (training only) random crop and flip in front of it
    (`keras_rir.preprocessing.with_preprocessing`), compiles it with
    `make_optimizer` and sparse categorical cross-entropy, and fits it with
    `make_callbacks`, with the hyperparameters of `recipe` (changed by any
    `recipe_changes`: `epochs=5` runs the recipe scaled to 5 epochs, its
    learning-rate decays included). If `output_dir` holds the backup of a killed run, the
    run resumes after its last finished epoch. At the end it evaluates on the
    test set and writes into `output_dir`:

    - `model.keras`: the final model (uint8 images in, probabilities out);
    - `best.keras`: the model of the epoch with the best validation accuracy;
    - `log.csv`: one row per epoch (losses include the L2 penalty);
    - `results.json`: test accuracy and loss, epochs, per-epoch history,
      timings and throughput, every hyperparameter and the environment;
    - `curves.png`: loss and accuracy against epoch, training and validation.

    Args:
        model_name: a name from `keras_rir.models.list_models()`.
        data: a `keras_rir.data.CifarData`.
        output_dir: directory of the run (created if needed).
        recipe: a `Recipe` (epochs, global batch size, learning rate and its
            decays, optimizer, momentum, L2 penalty, kernel initializer);
            default: the paper's, `PAPER_RECIPE`.
        seed: seed of weights, shuffling and augmentation.
        model_kwargs: further arguments of the model builder (e.g.
            `{"num_blocks": 9, "layers_per_block": 2}` for `rir`).
        validation_data: `(x, y)` to validate on each epoch; defaults to the
            test set (the paper reports test accuracy). Pass a holdout from
            `keras_rir.data.holdout` when tuning.
        augment: random crop and flip during training.
        distribute: data parallel over all local devices
            (`keras_rir.distribution.data_parallel_scope`). On JAX, which
            shards every batch evenly, `batch_size` must be a multiple of the
            number of devices and the last `len % devices` examples of each
            set are left out (`results.json` records the counts used).
        mixed_precision: compute in bfloat16 (`"mixed_bfloat16"` policy),
            keep variables and the softmax in float32.
        tensorboard: also write TensorBoard logs.
        verbose: `verbose` of `model.fit` (`"auto"`, 0, 1 or 2).
        **recipe_changes: fields of `recipe` to change for this run
            (`Recipe.replace`), e.g. `epochs=10, learning_rate=0.1`.

    Returns:
        The dict written to `results.json`.

    Example:
    >>> data = keras_rir.data.load_cifar("cifar10", data_dir="cifar-10-batches-bin")
    >>> results = keras_rir.training.train("rir32", data, "runs/rir32", epochs=10)
    >>> results["test_accuracy"]

    Reference: arXiv:1603.08029, section 3.
    """
    check_choice("model_name", model_name, models.list_models())
    check_type("data", data, data_lib.CifarData, "a keras_rir.data.CifarData (from `load_cifar`)")
    if validation_data is not None:
        validation_data = _check_validation_data(validation_data, data)
    check_type("recipe", recipe, Recipe, "a keras_rir.training.Recipe")
    recipe = recipe.replace(**recipe_changes)
    seed = check_non_negative_int("seed", seed)
    model_kwargs = dict(model_kwargs or {})
    for reserved in ("l2", "kernel_initializer", "num_classes", "input_shape"):
        if reserved in model_kwargs:
            raise invalid_value(
                "model_kwargs", model_kwargs, f"builder arguments other than `{reserved}`"
            )
    if distribute:
        distribution.check_supported()
    schedule = StepSchedule(recipe.learning_rate, recipe.decay_epochs, recipe.decay_factor)
    os.makedirs(output_dir, exist_ok=True)
    validation = "test" if validation_data is None else "holdout"
    x_val, y_val = (data.x_test, data.y_test) if validation_data is None else validation_data
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test

    start = time.perf_counter()
    _set_random_seed(seed)
    mean, std = data_lib.channel_stats(data.x_train)
    callbacks = make_callbacks(output_dir, schedule, len(data.x_train), tensorboard=tensorboard)
    timer = next(c for c in callbacks if isinstance(c, EpochTimer))
    if verbose != 0:
        # Keras' progress bar first, so that the run's line follows each epoch's summary.
        callbacks += [keras.callbacks.ProgbarLogger(), RunProgress()]
    with (
        _dtype_policy(mixed_precision) as dtype_policy,
        distribution.data_parallel_scope(distribute) as num_replicas,
    ):
        if num_replicas > 1 and keras.backend.backend() == "jax":
            # JAX shards every batch, the last one included, evenly over the devices.
            if recipe.batch_size % num_replicas:
                raise invalid_value(
                    "batch_size", recipe.batch_size, f"a multiple of the {num_replicas} devices"
                )
            x_train, y_train = _trim(x_train, y_train, num_replicas)
            x_val, y_val = _trim(x_val, y_val, num_replicas)
            x_test, y_test = _trim(x_test, y_test, num_replicas)
        network = models.get(
            model_name,
            num_classes=data.num_classes,
            input_shape=tuple(data.x_train.shape[1:]),
            l2=recipe.l2,
            kernel_initializer=recipe.kernel_initializer,
            **model_kwargs,
        )
        model = preprocessing.with_preprocessing(network, mean, std, augment=augment, seed=seed)
        model.compile(
            optimizer=make_optimizer(recipe.optimizer, recipe.learning_rate, recipe.momentum),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(
            x_train,
            y_train,
            batch_size=recipe.batch_size,
            epochs=recipe.epochs,
            validation_data=(x_val, y_val),
            callbacks=callbacks,
            shuffle=True,
            verbose=verbose,
        )
        test = model.evaluate(
            x_test, y_test, batch_size=recipe.batch_size, verbose=0, return_dict=True
        )
        model_path = os.path.join(output_dir, "model.keras")
        model.save(model_path)

    history = reporting.read_history(os.path.join(output_dir, "log.csv"))
    rates = history.get("train_images_per_second", [])
    this_run = rates[timer.first_epoch :] if timer.first_epoch is not None else []
    # The first epoch of a process includes compilation; leave it out when there are others.
    steady = this_run[1:] or this_run
    results = {
        "model": model_name,
        "dataset": data.name,
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "validation": validation,
        "epochs": len(history.get("epoch", [])),
        "history": history,
        "resumed_from_epoch": timer.first_epoch,
        "terminated_on_nan": bool(getattr(model, "stop_training", False)),
        "wall_time_seconds": time.perf_counter() - start,
        "training_seconds": sum(history.get("epoch_seconds", [])),
        "train_images_per_second": statistics.median(steady) if steady else None,
        "num_parameters": network.count_params(),
        "num_train_examples": len(x_train),
        "num_validation_examples": len(x_val),
        "num_test_examples": len(x_test),
        "num_replicas": num_replicas,
        "hyperparameters": {
            "model": model_name,
            "model_kwargs": model_kwargs,
            "dataset": data.name,
            "num_classes": data.num_classes,
            "epochs": recipe.epochs,
            "batch_size": recipe.batch_size,
            "optimizer": recipe.optimizer,
            "learning_rate": recipe.learning_rate,
            "learning_rate_boundaries": schedule.boundaries,
            "learning_rate_decay_factor": schedule.decay_factor,
            "momentum": recipe.momentum if recipe.optimizer in ("sgd", "nesterov") else None,
            "l2": recipe.l2,
            "kernel_initializer": recipe.kernel_initializer,
            "seed": seed,
            "augment": augment,
            "distribute": distribute,
            "mixed_precision": mixed_precision,
            "dtype_policy": dtype_policy,
        },
        "environment": reporting.environment(),
        "files": {
            "model": "model.keras",
            "best_model": "best.keras",
            "log": "log.csv",
            "curves": "curves.png",
        },
    }
    curves = reporting.plot_curves(
        history,
        os.path.join(output_dir, "curves.png"),
        title=f"{model_name} on {data.name}",
        validation_label=validation,
    )
    if curves is None:
        del results["files"]["curves"]
    reporting.write_results(results, os.path.join(output_dir, "results.json"))
    return results
