"""The generalized residual block as one fused layer, its explicit twin, and shortcuts.

Reference: arXiv:1603.08029, section 2 (Equation 1) and appendix 6.1 (Equation 2).
"""

import keras

from keras_rir._validation import (
    check_choice,
    check_non_negative,
    check_positive_int,
    check_residual_fraction,
    get_initializer,
    invalid_value,
)
from keras_rir.initializers import ResNetInitInitializer, residual_width
from keras_rir.regularizers import PartialIdentityDecay

__all__ = [
    "DualStreamConv2D",
    "GeneralizedResidualConv2D",
    "GeneralizedResidualDense",
    "IdentityShortcut",
]

# Keys of the parent layers' configs that the generalized layers set themselves.
_FIXED_CONFIG_KEYS = (
    "use_bias",
    "bias_initializer",
    "bias_regularizer",
    "bias_constraint",
    "kernel_regularizer",
    "groups",
)


def _generalize(layer, kernel_initializer, residual_fraction, l2):
    """Checks and keeps a fused layer's arguments; returns its parent's kernel arguments."""
    layer.base_initializer = get_initializer("kernel_initializer", kernel_initializer)
    layer.residual_fraction = check_residual_fraction(residual_fraction)
    layer.l2 = check_non_negative("l2", l2)
    return dict(
        use_bias=False,
        kernel_initializer=ResNetInitInitializer(layer.base_initializer, residual_fraction),
        kernel_regularizer=PartialIdentityDecay(l2, residual_fraction),
    )


def _generalized_config(config, kernel_initializer, residual_fraction, l2):
    """A `Conv2D` / `Dense` config turned into that of its fused generalized twin."""
    for key in _FIXED_CONFIG_KEYS:
        config.pop(key, None)
    config.update(kernel_initializer=kernel_initializer, residual_fraction=residual_fraction, l2=l2)
    return config


@keras.saving.register_keras_serializable(package="keras_rir")
class GeneralizedResidualConv2D(keras.layers.Conv2D):
    """The generalized residual block of Equation 1 as one convolution.

    A `Conv2D` without bias over the concatenated tensor `x = [r, t]` whose
    kernel starts as ResNet Init (`kernel_initializer` plus the partial
    identity) and decays towards the partial identity. Its output is exactly
    `[conv(r, W_r->r) + conv(t, W_t->r) + shortcut(r), conv(r, W_r->t) +
    conv(t, W_t->t)]`, the pre-activation of Equation 1; follow it with
    batch normalization and ReLU (see `keras_rir.blocks`).

    Args:
        filters: output channels (both streams).
        kernel_size: odd int or pair of odd ints.
        strides: int or pair; the identity shortcut subsamples accordingly.
        padding: `"same"` or `"valid"` (the identity then crops).
        residual_fraction: share of the channels in the residual stream.
        kernel_initializer: initializer of the learned part (default MSR).
        l2: weight decay factor of `PartialIdentityDecay`.
        **kwargs: other `keras.layers.Conv2D` arguments (`name`, `dtype`,
            `data_format`, `activation`, ...).

    Example:
    >>> layer = keras_rir.layers.GeneralizedResidualConv2D(64, 3, strides=2)
    >>> y = layer(keras.ops.ones((1, 32, 32, 32)))

    Reference: arXiv:1603.08029, appendix 6.1.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        padding="same",
        residual_fraction=0.5,
        kernel_initializer="he_normal",
        l2=1e-4,
        **kwargs,
    ):
        fixed = _generalize(self, kernel_initializer, residual_fraction, l2)
        super().__init__(filters, kernel_size, strides=strides, padding=padding, **fixed, **kwargs)

    def get_config(self):
        base = keras.initializers.serialize(self.base_initializer)
        return _generalized_config(super().get_config(), base, self.residual_fraction, self.l2)


@keras.saving.register_keras_serializable(package="keras_rir")
class GeneralizedResidualDense(keras.layers.Dense):
    """The generalized residual block of Equation 2 as one dense layer.

    `W' x` with `W' = [[W_r->r, W_t->r], [W_r->t, W_t->t]] + [[I, 0], [0, 0]]`:
    a `Dense` without bias whose kernel starts as ResNet Init and decays
    towards the partial identity. Follow it with batch normalization and ReLU.

    Args:
        units: output units (both streams).
        residual_fraction: share of the units in the residual stream.
        kernel_initializer: initializer of the learned part (default MSR).
        l2: weight decay factor of `PartialIdentityDecay`.
        **kwargs: other `keras.layers.Dense` arguments.

    Example:
    >>> layer = keras_rir.layers.GeneralizedResidualDense(128)
    >>> y = layer(keras.ops.ones((4, 128)))

    Reference: arXiv:1603.08029, Equation 2.
    """

    def __init__(
        self, units, residual_fraction=0.5, kernel_initializer="he_normal", l2=1e-4, **kwargs
    ):
        super().__init__(
            units, **_generalize(self, kernel_initializer, residual_fraction, l2), **kwargs
        )

    def get_config(self):
        base = keras.initializers.serialize(self.base_initializer)
        return _generalized_config(super().get_config(), base, self.residual_fraction, self.l2)


def _centre_tap_slice(size, kernel_size, stride, padding):
    """Input positions read by the centre tap of a convolution, as a slice."""
    if padding == "same":
        outputs = -(-size // stride)
        total_padding = max((outputs - 1) * stride + kernel_size - size, 0)
        start = kernel_size // 2 - total_padding // 2
    else:
        outputs = (size - kernel_size) // stride + 1
        start = kernel_size // 2
    return slice(start, start + stride * (outputs - 1) + 1, stride)


@keras.saving.register_keras_serializable(package="keras_rir")
class IdentityShortcut(keras.layers.Layer):
    """Identity "with the appropriate padding": subsample, then zero-pad or cut channels.

    Returns, for each output position of a `kernel_size` convolution with
    `strides` and `padding`, the input pixel under its centre tap, with the
    channels zero-padded (or cut) to `filters`. With the defaults
    (`kernel_size=1`) it is the option-A shortcut of He et al. (2015b):
    `x[:, ::s, ::s]` plus zero channels.

    Args:
        filters: output channels.
        strides: int or pair of ints.
        kernel_size: odd int or pair; the convolution whose centre tap to follow.
        padding: `"same"` or `"valid"`.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:
    >>> shortcut = keras_rir.layers.IdentityShortcut(32, strides=2)
    >>> shortcut(keras.ops.ones((1, 32, 32, 16))).shape
    (1, 16, 16, 32)
    """

    def __init__(self, filters, strides=1, kernel_size=1, padding="same", **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.strides = _pair("strides", strides)
        self.kernel_size = _odd_pair("kernel_size", kernel_size)
        self.padding = check_choice("padding", padding, {"same", "valid"})

    def _taps(self, shape):
        """The slices of the rows and of the columns under the centre taps."""
        axes = zip(shape[1:3], self.kernel_size, self.strides, strict=True)
        return [_centre_tap_slice(*axis, self.padding) for axis in axes]

    def call(self, inputs):
        rows, cols = self._taps(inputs.shape)
        outputs = inputs[:, rows, cols, : self.filters]
        missing = self.filters - outputs.shape[-1]
        if missing:
            outputs = keras.ops.pad(outputs, [[0, 0], [0, 0], [0, 0], [0, missing]])
        return outputs

    def compute_output_shape(self, input_shape):
        rows, cols = self._taps(input_shape)
        height, width = len(range(input_shape[1])[rows]), len(range(input_shape[2])[cols])
        return (input_shape[0], height, width, self.filters)

    def get_config(self):
        names = ("filters", "strides", "kernel_size", "padding")
        return {**super().get_config(), **{name: getattr(self, name) for name in names}}


def _pair(argument, value):
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2:
        raise invalid_value(argument, value, "an int or a pair of ints")
    for single in values:
        check_positive_int(argument, single)
    return values


def _odd_pair(argument, value):
    values = _pair(argument, value)
    if any(size % 2 == 0 for size in values):
        raise invalid_value(argument, value, "odd sizes, so that the identity has a centre tap")
    return values


@keras.saving.register_keras_serializable(package="keras_rir")
class DualStreamConv2D(keras.layers.Layer):
    """The generalized residual block of Equation 1 with four separate convolutions.

    The explicit twin of `GeneralizedResidualConv2D`: it splits `x = [r, t]`
    and returns `[conv(r, W_r->r) + conv(t, W_t->r) + shortcut(r),
    conv(r, W_r->t) + conv(t, W_t->t)]`, with plain `keras.regularizers.L2`
    on each of the four kernels. Given the fused kernel minus the partial
    identity, split into its four blocks, it computes the same function; it
    exists to prove that and to measure what fusion saves.

    Args:
        filters: output channels (both streams).
        kernel_size: odd int or pair of odd ints.
        strides: int or pair of ints.
        padding: `"same"` or `"valid"`.
        residual_fraction: share of the channels in the residual stream.
        kernel_initializer: initializer of the four kernels.
        l2: plain L2 factor on each of the four kernels.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:
    >>> layer = keras_rir.layers.DualStreamConv2D(64, 3)
    >>> y = layer(keras.ops.ones((1, 32, 32, 64)))

    Reference: arXiv:1603.08029, Equation 1.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        padding="same",
        residual_fraction=0.5,
        kernel_initializer="he_normal",
        l2=1e-4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = _odd_pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.padding = check_choice("padding", padding, {"same", "valid"})
        self.residual_fraction = check_residual_fraction(residual_fraction)
        self.kernel_initializer = get_initializer("kernel_initializer", kernel_initializer)
        self.l2 = check_non_negative("l2", l2)

    def _split(self, channels, argument):
        residual = residual_width(channels, self.residual_fraction)
        if not 0 < residual < channels:
            raise invalid_value(
                argument,
                channels,
                f"enough channels for two non-empty streams at "
                f"residual_fraction={self.residual_fraction}",
            )
        return residual, channels - residual

    def build(self, input_shape):
        self.input_residual, input_transient = self._split(input_shape[-1], "input channels")
        self.output_residual, output_transient = self._split(self.filters, "filters")
        inputs = {"r": self.input_residual, "t": input_transient}
        outputs = {"r": self.output_residual, "t": output_transient}
        geometry = dict(kernel_size=self.kernel_size, strides=self.strides, padding=self.padding)
        # self.r_to_r, self.t_to_r, self.r_to_t, self.t_to_t, tracked (weight order) as listed.
        for source, target in ("rr", "tr", "rt", "tt"):
            conv = keras.layers.Conv2D(
                outputs[target],
                use_bias=False,
                kernel_initializer=self.kernel_initializer,
                kernel_regularizer=keras.regularizers.L2(self.l2),
                dtype=self.dtype_policy,
                name=f"{source}_to_{target}",
                **geometry,
            )
            conv.build(tuple(input_shape[:-1]) + (inputs[source],))
            setattr(self, conv.name, conv)
        self.shortcut = IdentityShortcut(
            self.output_residual, dtype=self.dtype_policy, name="shortcut", **geometry
        )

    def call(self, inputs):
        residual = inputs[..., : self.input_residual]
        transient = inputs[..., self.input_residual :]
        residual_out = self.r_to_r(residual) + self.t_to_r(transient) + self.shortcut(residual)
        transient_out = self.r_to_t(residual) + self.t_to_t(transient)
        return keras.ops.concatenate([residual_out, transient_out], axis=-1)

    def compute_output_shape(self, input_shape):
        probe = keras.layers.Conv2D(
            self.filters, self.kernel_size, strides=self.strides, padding=self.padding
        )
        return probe.compute_output_shape(input_shape)

    def get_config(self):
        names = ("filters", "kernel_size", "strides", "padding", "residual_fraction")
        config = {name: getattr(self, name) for name in names}
        initializer = keras.initializers.serialize(self.kernel_initializer)
        return {**super().get_config(), **config, "kernel_initializer": initializer, "l2": self.l2}
