"""ResNet Init: any initializer plus the partial identity of appendix 6.1.

Reference: Targ, Almeida, Lyman, "Resnet in Resnet: Generalizing Residual
Architectures", arXiv:1603.08029, appendix 6.1.
"""

import keras
import numpy as np

from keras_rir._validation import check_residual_fraction, get_initializer, invalid_value

__all__ = ["ResNetInitInitializer", "identity_width", "partial_identity", "residual_width"]


def residual_width(channels, residual_fraction=0.5):
    """Number of leading channels that form the residual stream.

    Args:
        channels: total channels of the concatenated `[r, t]` tensor.
        residual_fraction: share of the channels in the residual stream.

    Returns:
        `round(channels * residual_fraction)` with halves rounded up.

    Example:
    >>> keras_rir.initializers.residual_width(96)
    48
    """
    return int(channels * residual_fraction + 0.5)


def _check_kernel_shape(shape):
    shape = tuple(int(dim) for dim in shape)
    spatial = shape[:-2]
    if len(shape) < 2 or min(shape) < 1 or any(size % 2 == 0 for size in spatial):
        raise invalid_value(
            "shape",
            shape,
            "a dense kernel (c_in, c_out) or a convolution kernel (*spatial, c_in, c_out) "
            "with odd spatial sizes, so that the identity has a centre tap",
        )
    return shape


def identity_width(shape, residual_fraction=0.5):
    """Number of ones in the partial identity of a kernel of `shape`.

    Args:
        shape: kernel shape, `(c_in, c_out)` or `(*spatial, c_in, c_out)`;
            spatial sizes must be odd.
        residual_fraction: share of the channels in the residual stream.

    Returns:
        The smaller of the residual widths of input and output.

    Example:
    >>> keras_rir.initializers.identity_width((3, 3, 16, 32))
    8
    """
    shape = _check_kernel_shape(shape)
    residual_fraction = check_residual_fraction(residual_fraction)
    return min(
        residual_width(shape[-2], residual_fraction), residual_width(shape[-1], residual_fraction)
    )


def partial_identity(shape, residual_fraction=0.5, dtype="float32"):
    """The partial identity kernel that ResNet Init adds to a kernel.

    A dense kernel `(c_in, c_out)` gets a 1 at `[i, i]`, a convolution kernel
    `(kh, kw, c_in, c_out)` a 1 at `[kh // 2, kw // 2, i, i]`, for `i < n`,
    where `n` is the smaller of the residual widths of input and output.

    Args:
        shape: kernel shape; spatial sizes must be odd.
        residual_fraction: share of the channels in the residual stream.
        dtype: NumPy dtype of the result.

    Returns:
        A NumPy array of `shape`.

    Example:
    >>> keras_rir.initializers.partial_identity((3, 3, 4, 4))[1, 1]
    array([[1., 0., 0., 0.],
           [0., 1., 0., 0.],
           [0., 0., 0., 0.],
           [0., 0., 0., 0.]], dtype=float32)
    """
    diagonal = np.arange(identity_width(shape, residual_fraction))
    shape = _check_kernel_shape(shape)
    identity = np.zeros(shape, dtype=dtype)
    centre = tuple(size // 2 for size in shape[:-2])
    identity[centre + (diagonal, diagonal)] = 1
    return identity


@keras.saving.register_keras_serializable(package="keras_rir")
class ResNetInitInitializer(keras.initializers.Initializer):
    """ResNet Init: a base initializer plus the partial identity.

    The residual stream is the first `residual_width(channels)` channels of
    a tensor; the rest is the transient stream. Adding the partial identity
    to a kernel drawn by `base_initializer` turns a plain convolution over
    `[r, t]` into the generalized residual block of Equation 1, with an
    identity shortcut on `r` (subsampled by strides, zero-padded or cut where
    the residual width changes).

    Args:
        base_initializer: initializer of the learned part: a name
            (`"he_normal"`, the paper's MSR; `"glorot_normal"`,
            `"glorot_uniform"`, `"orthogonal"`, ...), an `Initializer` or
            its config.
        residual_fraction: share of the channels in the residual stream,
            strictly between 0 and 1; 0.5 gives the paper's equal streams.
        seed: `None`, an int or a `keras.random.SeedGenerator`, given to a
            base initializer named by a string.

    Example:
    >>> init = keras_rir.initializers.ResNetInitInitializer("he_normal", seed=1)
    >>> layer = keras.layers.Conv2D(32, 3, padding="same", kernel_initializer=init)

    Reference: arXiv:1603.08029, appendix 6.1.
    """

    def __init__(self, base_initializer="he_normal", residual_fraction=0.5, seed=None):
        self.residual_fraction = check_residual_fraction(residual_fraction)
        self.seed = seed
        initializer = get_initializer("base_initializer", base_initializer)
        if seed is not None and isinstance(base_initializer, str):
            config = initializer.get_config()
            if "seed" not in config:
                raise invalid_value(
                    "seed", seed, "None for an initializer that draws no random numbers"
                )
            initializer = type(initializer).from_config({**config, "seed": seed})
        self.base_initializer = initializer

    def __call__(self, shape, dtype=None):
        dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
        identity = partial_identity(shape, self.residual_fraction, dtype="float32")
        base = self.base_initializer(shape, dtype=dtype)
        return keras.ops.add(base, keras.ops.convert_to_tensor(identity, dtype=dtype))

    def get_config(self):
        # The seed lives in the base initializer's config; storing it again
        # would apply it twice on reload.
        return {
            "base_initializer": keras.initializers.serialize(self.base_initializer),
            "residual_fraction": self.residual_fraction,
        }
