"""Functional building blocks: conv-BN-ReLU units and the CNN / ResNet / ResNet Init / RiR blocks.

Table 7 builds all four networks from one block with two switches:

| network     | `generalized` | `shortcut`                   |
|-------------|---------------|------------------------------|
| CNN         | False         | None                         |
| ResNet      | False         | "projection" or "identity"   |
| ResNet Init | True          | None                         |
| RiR         | True          | "projection" or "identity"   |

Reference: arXiv:1603.08029, Figure 1 and appendix 6.2.
"""

import keras

from keras_rir._validation import check_choice, check_positive_int, get_initializer
from keras_rir.layers import DualStreamConv2D, GeneralizedResidualConv2D, IdentityShortcut
from keras_rir.normalization import BatchNormalization

__all__ = ["SHORTCUTS", "IMPLEMENTATIONS", "conv_layer", "conv_unit", "residual_block"]

SHORTCUTS = ("projection", "identity")
IMPLEMENTATIONS = ("fused", "explicit")
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5


def conv_layer(
    filters,
    name,
    kernel_size=3,
    strides=1,
    padding="same",
    generalized=False,
    implementation="fused",
    kernel_initializer="he_normal",
    l2=1e-4,
    residual_fraction=0.5,
):
    """A bias-free convolution: plain, or a generalized residual block.

    Args:
        filters: output channels.
        name: layer name.
        kernel_size: int or pair.
        strides: int or pair.
        padding: `"same"` or `"valid"`.
        generalized: False for a plain `Conv2D` with L2; True for a
            generalized residual block.
        implementation: for generalized blocks, `"fused"` (one
            `GeneralizedResidualConv2D`) or `"explicit"` (`DualStreamConv2D`).
        kernel_initializer: base initializer.
        l2: weight decay factor.
        residual_fraction: share of the channels in the residual stream.

    Returns:
        An unbuilt Keras layer.

    Example:
    >>> conv = keras_rir.blocks.conv_layer(64, "conv", generalized=True)
    """
    check_choice("implementation", implementation, IMPLEMENTATIONS)
    geometry = dict(kernel_size=kernel_size, strides=strides, padding=padding, name=name)
    if not generalized:
        return keras.layers.Conv2D(
            filters,
            use_bias=False,
            kernel_initializer=get_initializer("kernel_initializer", kernel_initializer),
            kernel_regularizer=keras.regularizers.L2(l2),
            **geometry,
        )
    layer_class = GeneralizedResidualConv2D if implementation == "fused" else DualStreamConv2D
    return layer_class(
        filters,
        residual_fraction=residual_fraction,
        kernel_initializer=kernel_initializer,
        l2=l2,
        **geometry,
    )


def conv_unit(x, filters, name, activation=True, **conv_kwargs):
    """Convolution, batch normalization and (optionally) ReLU: sigma of Equation 1.

    The batch normalization is `keras_rir.normalization.BatchNormalization`
    (Keras' layer on the backend's fused kernel), momentum 0.9, epsilon 1e-5.

    Args:
        x: input tensor.
        filters: output channels.
        name: prefix of the layer names.
        activation: apply the ReLU.
        **conv_kwargs: arguments of `conv_layer`.

    Returns:
        The output tensor.

    Example:
    >>> y = keras_rir.blocks.conv_unit(keras.Input((32, 32, 16)), 16, "unit")
    """
    x = conv_layer(filters, f"{name}_conv", **conv_kwargs)(x)
    x = BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, name=f"{name}_bn"
    )(x)
    if activation:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def residual_block(
    x,
    filters,
    name,
    strides=1,
    layers_per_block=2,
    generalized=False,
    shortcut=None,
    implementation="fused",
    kernel_initializer="he_normal",
    l2=1e-4,
    residual_fraction=0.5,
):
    """One block of Table 7: `layers_per_block` 3x3 conv units with an optional outer shortcut.

    The first unit carries the block's stride. With an outer shortcut, the
    last unit's batch-normalized output is added to the shortcut before the
    final ReLU, as in ResNet (He et al., 2015b); a block that changes the
    shape gets a 3x3 convolution projection with batch normalization
    (`"projection"`) or a subsampled, zero-padded identity (`"identity"`).

    Args:
        x: input tensor.
        filters: output channels of every unit.
        name: prefix of the layer names.
        strides: stride of the first unit.
        layers_per_block: number of conv units.
        generalized: use generalized residual blocks as units (ResNet Init, RiR).
        shortcut: None (CNN, ResNet Init), `"projection"` or `"identity"`.
        implementation: `"fused"` or `"explicit"` generalized units.
        kernel_initializer: base initializer of every convolution.
        l2: weight decay factor.
        residual_fraction: share of the channels in the residual stream.

    Returns:
        The output tensor.

    Example:
    >>> y = keras_rir.blocks.residual_block(
    ...     keras.Input((32, 32, 16)), 32, "rir", strides=2, generalized=True,
    ...     shortcut="projection")

    Reference: arXiv:1603.08029, Figure 1.
    """
    layers_per_block = check_positive_int("layers_per_block", layers_per_block)
    if shortcut is not None:
        check_choice("shortcut", shortcut, SHORTCUTS)
    inputs = x
    for index in range(layers_per_block):
        x = conv_unit(
            x,
            filters,
            f"{name}_{index + 1}",
            activation=index < layers_per_block - 1 or not shortcut,  # no ReLU before the add
            strides=strides if index == 0 else 1,
            generalized=generalized,
            implementation=implementation,
            kernel_initializer=kernel_initializer,
            l2=l2,
            residual_fraction=residual_fraction,
        )
    if shortcut is None:
        return x
    x = keras.layers.Add(name=f"{name}_add")(
        [x, _shortcut(inputs, filters, strides, name, shortcut, kernel_initializer, l2)]
    )
    return keras.layers.ReLU(name=f"{name}_out")(x)


def _shortcut(x, filters, strides, name, shortcut, kernel_initializer, l2):
    if strides == 1 and x.shape[-1] == filters:
        return x
    if shortcut == "identity":
        return IdentityShortcut(filters, strides=strides, name=f"{name}_shortcut")(x)
    return conv_unit(
        x,
        filters,
        f"{name}_projection",
        activation=False,
        strides=strides,
        kernel_initializer=kernel_initializer,
        l2=l2,
    )
