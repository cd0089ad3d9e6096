"""Multiply-add accounting from layer shapes, for benchmarks and the distance to the hardware.

Counts the multiply-adds (MACs) of the convolutions and dense layers of a
built model for one example. Batch normalization, activations, additions,
pooling and softmax are excluded: in the Table 7 networks they are well under
1% of the multiply-adds (one or two operations per activation against
`9 * channels` MACs per output of a 3x3 convolution).

Reference: arXiv:1603.08029, appendix 6.1 (a generalized residual block costs
exactly one convolution).
"""

import math

import keras

from keras_rir._validation import invalid_value
from keras_rir.layers import DualStreamConv2D

__all__ = ["multiply_adds", "training_flops"]

# FLOPs of one training step per forward multiply-add: 2 FLOPs per MAC, and the
# backward pass costs about twice the forward (gradients with respect to the
# inputs and to the weights).
TRAINING_FLOPS_PER_MULTIPLY_ADD = 6


def _spatial_size(shape, data_format):
    """Product of the spatial dimensions of a `(batch, ...)` output shape."""
    spatial = shape[1:-1] if data_format != "channels_first" else shape[2:]
    return math.prod(spatial)


def _layer_multiply_adds(layer):
    """MACs of one layer for one example; 0 for layers without a kernel."""
    if isinstance(layer, keras.Model):
        return multiply_adds(layer)
    if isinstance(layer, DualStreamConv2D):
        # Four convolutions with the same output grid: r->r, t->r, r->t, t->t.
        size = _spatial_size(tuple(layer.output.shape), "channels_last")
        convs = (layer.r_to_r, layer.t_to_r, layer.r_to_t, layer.t_to_t)
        return size * sum(math.prod(conv.kernel.shape) for conv in convs)
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        # kernel: (*kernel_size, in_channels / groups, filters); each output
        # position multiplies the whole kernel once.
        size = _spatial_size(tuple(layer.output.shape), layer.data_format)
        return size * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.Dense):
        # Every leading position (all but batch and features) applies the kernel.
        leading = math.prod(tuple(layer.output.shape)[1:-1])
        return leading * math.prod(layer.kernel.shape)
    return 0


def multiply_adds(model, by_layer=False):
    """Multiply-adds of a model's convolutions and dense layers for one example.

    A convolution costs `out_height * out_width * kernel_height * kernel_width *
    in_channels / groups * out_channels`, a dense layer `in_units * units`.
    The fused `GeneralizedResidualConv2D` counts as the convolution it is; the
    explicit `DualStreamConv2D` counts its four convolutions, the same total.
    Batch normalization, activations, additions and pooling are excluded.

    Args:
        model: a built functional or sequential `keras.Model` (every layer
            called once, so that its output shape is known).
        by_layer: also return the MACs of each layer that has any.

    Returns:
        The total as an int, or, with `by_layer=True`, a pair
        `(total, {layer_name: macs})`.

    Example:
    >>> flops.multiply_adds(keras_rir.models.rir32())
    71221888

    Reference: arXiv:1603.08029, appendix 6.1.
    """
    if not isinstance(model, keras.Model) or not model.built:
        raise invalid_value("model", model, "a built keras.Model")
    per_layer = {layer.name: _layer_multiply_adds(layer) for layer in model.layers}
    per_layer = {name: macs for name, macs in per_layer.items() if macs}
    total = sum(per_layer.values())
    return (total, per_layer) if by_layer else total


def training_flops(model):
    """FLOPs of one training step for one example, by the usual convention.

    `6 * multiply_adds(model)`: 2 FLOPs per multiply-add, forward plus a
    backward pass twice as expensive (input and weight gradients). It slightly
    overstates the work of the first layer, whose input gradient is not needed.

    Args:
        model: a built `keras.Model`.

    Returns:
        FLOPs per example of a training step, an int.

    Example:
    >>> flops.training_flops(keras_rir.models.wide_rir18())
    """
    return TRAINING_FLOPS_PER_MULTIPLY_ADD * multiply_adds(model)
