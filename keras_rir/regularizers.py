"""PartialIdentityDecay: L2 towards the partial identity (appendix 6.1).

Reference: arXiv:1603.08029, appendix 6.1.
"""

import keras

from keras_rir._validation import check_non_negative, check_residual_fraction
from keras_rir.initializers import identity_width

__all__ = ["PartialIdentityDecay"]


@keras.saving.register_keras_serializable(package="keras_rir")
class PartialIdentityDecay(keras.regularizers.Regularizer):
    """`l2 * sum((W - partial_identity) ** 2)`.

    Appendix 6.1: "we subtract the partial identity from the weights prior to
    application of weight decay", so a fused generalized residual kernel
    decays exactly as the four separate kernels of the explicit block under
    plain `keras.regularizers.L2(l2)` would, and the identity shortcut is never
    pulled towards zero.

    Args:
        l2: the L2 factor, as in `keras.regularizers.L2` (no factor 1/2).
        residual_fraction: share of the channels in the residual stream,
            as in `ResNetInitInitializer`.

    Example:
    >>> decay = keras_rir.regularizers.PartialIdentityDecay(l2=1e-4)
    >>> layer = keras.layers.Conv2D(32, 3, kernel_regularizer=decay)

    Reference: arXiv:1603.08029, appendix 6.1.
    """

    def __init__(self, l2=1e-4, residual_fraction=0.5):
        self.l2 = check_non_negative("l2", l2)
        self.residual_fraction = check_residual_fraction(residual_fraction)

    def __call__(self, x):
        shape = tuple(x.shape)
        width = identity_width(shape, self.residual_fraction)
        centre_tap = x[tuple(size // 2 for size in shape[:-2])]
        trace = keras.ops.trace(centre_tap[:width, :width])
        # ||W - I||^2 = ||W||^2 - 2 tr(W_centre) + n, with no constant tensor
        # of the kernel's size built at every step.
        squared_distance = keras.ops.sum(keras.ops.square(x)) - 2.0 * trace + width
        return self.l2 * squared_distance

    def get_config(self):
        return {"l2": self.l2, "residual_fraction": self.residual_fraction}
