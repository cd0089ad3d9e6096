"""`RiRHyperModel`: the paper's five-axis hyperparameter grid over any registry model.

Reference: arXiv:1603.08029, section 3: "a grid search on hyperparameters
including learning rate, L2 penalty, initialization among Xavier, MSR and
orthogonal, optimizer among SGD with momentum, SGD with Nesterov momentum, Adam
and RMSProp, and the type of shortcut connections in the residual blocks".
"""

import math
import numbers

import keras
import keras_tuner

from keras_rir import blocks, models, preprocessing, training
from keras_rir._validation import check_choice, check_positive_int, invalid_value
from keras_rir.training.trainer import _set_random_seed

__all__ = [
    "AXES",
    "DEFAULT_INITIALIZERS",
    "DEFAULT_L2",
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_OPTIMIZERS",
    "DEFAULT_SHORTCUTS",
    "INITIALIZERS",
    "OPTIMIZERS",
    "SCHEDULES",
    "RiRHyperModel",
]

# Names of the hyperparameters, in grid order (the last one varies fastest).
AXES = ("learning_rate", "l2", "initializer", "optimizer", "shortcut")

# Paper names -> Keras initializers. Xavier and MSR in their normal form, as the
# library's default `he_normal`; orthogonal with gain 1 (Saxe et al., 2013).
INITIALIZERS = {"he": "he_normal", "glorot": "glorot_normal", "orthogonal": "orthogonal"}
OPTIMIZERS = ("sgd", "nesterov", "adam", "rmsprop")  # as `keras_rir.training.OPTIMIZERS`
SCHEDULES = ("paper", "constant")

# The first value of each axis is the paper's choice (section 3) and the grid's
# first trial: SGD with momentum 0.9, L2 1e-4, MSR, projection shortcuts; 0.1 is
# the ResNet learning rate (He et al., 2015b); 1e-3 is where Adam and RMSProp work.
DEFAULT_LEARNING_RATES = (0.1, 0.01, 0.001)
DEFAULT_L2 = (training.PAPER_RECIPE.l2, 5e-4)
DEFAULT_INITIALIZERS = ("he", "glorot", "orthogonal")
DEFAULT_OPTIMIZERS = OPTIMIZERS
DEFAULT_SHORTCUTS = blocks.SHORTCUTS


def _values(argument, values, check, expected):
    if isinstance(values, (str, numbers.Number)):
        values = (values,)
    values = tuple(values)
    if not values or len(set(values)) != len(values) or not all(map(check, values)):
        raise invalid_value(argument, values, f"a non-empty sequence of distinct {expected}")
    return values


def _names(argument, values, choices):
    return _values(argument, values, lambda value: value in choices, f"names among {choices}")


def _is_positive(value):
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _is_non_negative(value):
    return _is_positive(value) or (isinstance(value, numbers.Real) and value == 0)


class RiRHyperModel(keras_tuner.HyperModel):
    """The paper's grid of training hyperparameters for a `keras_rir.models` network.

    Fixed settings go to `__init__`; `build(hp)` spans the five axes of the
    paper's grid search with `hp.Choice`, in this order (the last varies fastest
    in a grid search):

    - `learning_rate`: initial learning rate.
    - `l2`: weight decay of every weight tensor (towards the partial identity in
      generalized residual units).
    - `initializer`: base initializer of every weight tensor: `"he"` (MSR,
      `he_normal`), `"glorot"` (Xavier, `glorot_normal`) or `"orthogonal"`.
    - `optimizer`: `"sgd"` (momentum 0.9), `"nesterov"` (Nesterov momentum
      0.9), `"adam"` or `"rmsprop"` (Keras defaults otherwise).
    - `shortcut`: outer shortcut of blocks that change shape, `"projection"` or
      `"identity"` (networks without outer shortcuts ignore it).

    The first value of each axis is its default, the grid's first trial. Pass a
    single value to fix an axis. `fit` trains with the given `epochs` and
    `batch_size` and the training recipe's learning-rate schedule
    (`keras_rir.training.learning_rate_schedule`: x0.1 after epochs 42 and 62
    of 82, scaled to `epochs`) and optimizers (`keras_rir.training.make_optimizer`);
    the tuner's `epochs` (Hyperband) takes precedence over the fixed one.

    Args:
        model: name of a `keras_rir.models` builder.
        num_classes: classes of the data set.
        input_shape: `(height, width, channels)` of the images.
        epochs: training epochs per trial.
        batch_size: minibatch size.
        schedule: `"paper"` (step decay) or `"constant"`.
        model_kwargs: other arguments of the builder (e.g. `num_blocks` for
            `rir`), not `kernel_initializer`, `l2` or `shortcut`.
        learning_rates: values of the `learning_rate` axis.
        l2: values of the `l2` axis.
        initializers: values of the `initializer` axis.
        optimizers: values of the `optimizer` axis.
        shortcuts: values of the `shortcut` axis.
        mean: per-channel mean of the training images; with `std`, the model
            normalizes (and augments) its raw images with
            `keras_rir.preprocessing.with_preprocessing`. None: the data is fed
            as it is.
        std: per-channel standard deviation.
        augment: random crops and flips during training (with `mean`).
        seed: seed of the weights: every trial starts from the same seed.
        jit_compile: `jit_compile` of `model.compile`; False saves the
            compilation time of tiny models.
        verbose: verbosity of `model.fit`.

    Example:
    >>> hypermodel = keras_rir.tuning.RiRHyperModel(
    ...     "rir32", num_classes=10, epochs=82, optimizers=("sgd", "nesterov"))
    >>> tuner = keras_rir.tuning.make_tuner(hypermodel, "grid", directory="/tmp/search")

    Reference: arXiv:1603.08029, section 3.
    """

    def __init__(
        self,
        model="rir32",
        num_classes=10,
        input_shape=(32, 32, 3),
        epochs=training.PAPER_RECIPE.epochs,
        batch_size=training.PAPER_RECIPE.batch_size,
        schedule="paper",
        model_kwargs=None,
        learning_rates=DEFAULT_LEARNING_RATES,
        l2=DEFAULT_L2,
        initializers=DEFAULT_INITIALIZERS,
        optimizers=DEFAULT_OPTIMIZERS,
        shortcuts=DEFAULT_SHORTCUTS,
        mean=None,
        std=None,
        augment=True,
        seed=None,
        jit_compile="auto",
        verbose=0,
    ):
        super().__init__(name=f"{model}_hypermodel", tunable=True)
        self.model = check_choice("model", model, models.list_models())
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.input_shape = tuple(input_shape)
        self.epochs = check_positive_int("epochs", epochs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.schedule = check_choice("schedule", schedule, SCHEDULES)
        self.model_kwargs = dict(model_kwargs or {})
        tuned = {"kernel_initializer", "l2", "shortcut", "num_classes", "input_shape"}
        if tuned & set(self.model_kwargs):
            raise invalid_value(
                "model_kwargs",
                model_kwargs,
                f"builder arguments other than {sorted(tuned)}, which the hypermodel sets",
            )
        self.learning_rates = _values(
            "learning_rates", learning_rates, _is_positive, "positive floats"
        )
        self.l2 = _values("l2", l2, _is_non_negative, "floats >= 0")
        self.initializers = _names("initializers", initializers, sorted(INITIALIZERS))
        self.optimizers = _names("optimizers", optimizers, OPTIMIZERS)
        self.shortcuts = _names("shortcuts", shortcuts, blocks.SHORTCUTS)
        if (mean is None) != (std is None):
            raise invalid_value("std", std, "given together with `mean`, or both None")
        self.mean = mean
        self.std = std
        self.augment = bool(augment)
        self.seed = seed
        self.jit_compile = jit_compile
        self.verbose = verbose

    @property
    def axes(self):
        """`{axis name: tuple of values}` in grid order."""
        values = (self.learning_rates, self.l2, self.initializers, self.optimizers, self.shortcuts)
        return dict(zip(AXES, values, strict=True))

    @property
    def grid_size(self):
        """Number of points of the full grid."""
        return math.prod(len(values) for values in self.axes.values())

    def declare_hyperparameters(self, hp):
        """Declares the five axes on `hp`; returns `{axis name: chosen value}`."""
        return {
            name: hp.Choice(name, [_plain(value) for value in values], default=_plain(values[0]))
            for name, values in self.axes.items()
        }

    def build(self, hp):
        """Builds and compiles the network for the values chosen in `hp`.

        Args:
            hp: a `keras_tuner.HyperParameters`.

        Returns:
            A compiled `keras.Model` (sparse categorical cross-entropy, accuracy).
        """
        values = self.declare_hyperparameters(hp)
        if self.seed is not None:
            _set_random_seed(self.seed)
        model = models.get(
            self.model,
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            kernel_initializer=INITIALIZERS[values["initializer"]],
            l2=values["l2"],
            shortcut=values["shortcut"],
            **self.model_kwargs,
        )
        if self.mean is not None:
            model = preprocessing.with_preprocessing(
                model, self.mean, self.std, augment=self.augment, seed=self.seed
            )
        model.compile(
            optimizer=training.make_optimizer(values["optimizer"], values["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=self.jit_compile,
        )
        return model

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` with the fixed recipe and the trial's learning rate.

        Args:
            hp: the trial's `keras_tuner.HyperParameters`.
            model: the model `build(hp)` returned.
            *args: arguments of `model.fit` (`x`, `y`).
            **kwargs: keyword arguments of `model.fit` (`validation_data`,
                `callbacks` from the tuner, `epochs` from Hyperband...).

        Returns:
            The `keras.callbacks.History`.
        """
        callbacks = list(kwargs.pop("callbacks", None) or [])
        learning_rate = hp.get("learning_rate")
        if self.schedule == "paper":
            schedule = training.learning_rate_schedule(self.epochs, learning_rate)
        else:
            schedule = training.StepSchedule(learning_rate, boundaries=())
        callbacks += [
            keras.callbacks.LearningRateScheduler(schedule),
            keras.callbacks.TerminateOnNaN(),
        ]
        kwargs.setdefault("epochs", self.epochs)
        kwargs.setdefault("batch_size", self.batch_size)
        kwargs["verbose"] = kwargs.get("verbose", self.verbose)
        return model.fit(*args, callbacks=callbacks, **kwargs)


def _plain(value):
    """Python scalars for `hp.Choice` (NumPy scalars do not serialize to JSON)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value
