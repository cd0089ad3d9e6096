"""Builders for every network of Table 7, ALL-CNN-C and the depth studies, with a registry.

Every builder returns a functional `keras.Model` mapping `(batch, *input_shape)`
images to float32 class probabilities.

Reference: arXiv:1603.08029, appendix 6.2 (Table 7), Tables 4-6 and Figure 4.
"""

import keras

from keras_rir import blocks, presets
from keras_rir._validation import (
    check_choice,
    check_non_negative,
    check_positive_int,
    check_residual_fraction,
    get_initializer,
    invalid_value,
)

__all__ = [
    "all_cnn_c",
    "cnn32",
    "get",
    "list_models",
    "list_presets",
    "resnet",
    "resnet32",
    "resnet_init32",
    "rir",
    "rir32",
    "wide_cnn18",
    "wide_resnet18",
    "wide_resnet_init18",
    "wide_rir18",
]

_REGISTRY = {}

list_presets = presets.list_presets

# (generalized residual blocks, outer shortcuts), Figure 2.
_ARCHITECTURES = {
    "cnn": (False, False),
    "resnet": (False, True),
    "resnet_init": (True, False),
    "rir": (True, True),
}


def _register(builder):
    _REGISTRY[builder.__name__] = builder
    return builder


def list_models():
    """Names of the registered builders.

    Returns:
        A sorted list of names accepted by `keras_rir.models.get`.

    Example:
    >>> "wide_rir18" in keras_rir.models.list_models()
    True
    """
    return sorted(_REGISTRY)


def get(name, **kwargs):
    """Builds a registered model by name.

    Args:
        name: one of `list_models()`.
        **kwargs: arguments of that builder.

    Returns:
        A `keras.Model`.

    Example:
    >>> model = keras_rir.models.get("rir32", num_classes=100)
    """
    if name not in _REGISTRY:
        raise invalid_value("name", name, f"one of {list_models()}")
    return _REGISTRY[name](**kwargs)


def _check_common(
    num_classes,
    input_shape,
    min_size,
    kernel_initializer,
    l2,
    residual_fraction,
    shortcut,
    implementation,
):
    """Checks the arguments every builder shares; returns the input shape as a tuple."""
    check_positive_int("num_classes", num_classes)
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(dim, int) and dim > 0 for dim in shape)
        or min(shape[:2]) < min_size
    ):
        raise invalid_value(
            "input_shape",
            input_shape,
            f"(height, width, channels) of positive ints with height and width >= {min_size}, "
            "the smallest size the network's strides and kernels can reduce",
        )
    get_initializer("kernel_initializer", kernel_initializer)
    check_non_negative("l2", l2)
    check_residual_fraction(residual_fraction)
    check_choice("shortcut", shortcut, blocks.SHORTCUTS)
    check_choice("implementation", implementation, blocks.IMPLEMENTATIONS)
    return shape


def _classifier(x, num_classes, head, kernel_initializer, l2):
    if head == "conv":
        x = keras.layers.Conv2D(
            num_classes,
            1,
            kernel_initializer=get_initializer("kernel_initializer", kernel_initializer),
            kernel_regularizer=keras.regularizers.L2(l2),
            name="classifier",
        )(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dense(
            num_classes,
            kernel_initializer=get_initializer("kernel_initializer", kernel_initializer),
            kernel_regularizer=keras.regularizers.L2(l2),
            name="classifier",
        )(x)
    return keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def _residual_network(
    name,
    architecture,
    stage_filters,
    stage_blocks,
    layers_per_block,
    head,
    num_classes=10,
    input_shape=(32, 32, 3),
    *,
    kernel_initializer="he_normal",
    l2=1e-4,
    residual_fraction=0.5,
    shortcut="projection",
    implementation="fused",
    weights=None,
):
    """Stem conv unit, stages of blocks (stride 2 from the second stage), classifier."""
    shape = _check_common(
        num_classes,
        input_shape,
        2 ** (len(stage_filters) - 1),
        kernel_initializer,
        l2,
        residual_fraction,
        shortcut,
        implementation,
    )
    structure = {
        "residual_fraction": residual_fraction,
        "shortcut": shortcut,
        "implementation": implementation,
    }
    preset = presets.find(name, weights, num_classes, shape, structure)
    generalized, has_shortcut = _ARCHITECTURES[architecture]
    inputs = keras.Input(shape, name="images")
    x = blocks.conv_unit(
        inputs, stage_filters[0], "stem", kernel_initializer=kernel_initializer, l2=l2
    )
    for stage, (filters, num_blocks) in enumerate(
        zip(stage_filters, stage_blocks, strict=True), start=1
    ):
        for block in range(1, num_blocks + 1):
            x = blocks.residual_block(
                x,
                filters,
                f"stage{stage}_block{block}",
                strides=2 if stage > 1 and block == 1 else 1,
                layers_per_block=layers_per_block,
                generalized=generalized,
                shortcut=shortcut if has_shortcut else None,
                implementation=implementation,
                kernel_initializer=kernel_initializer,
                l2=l2,
                residual_fraction=residual_fraction,
            )
    outputs = _classifier(x, num_classes, head, kernel_initializer, l2)
    model = keras.Model(inputs, outputs, name=name)
    return model if weights is None else presets.load_weights(model, weights, preset)


def _depth_study(architecture, num_blocks, layers_per_block, stage_filters, **kwargs):
    num_blocks = check_positive_int("num_blocks", num_blocks)
    if num_blocks % len(stage_filters):
        raise invalid_value(
            "num_blocks", num_blocks, f"a multiple of {len(stage_filters)}, one share per stage"
        )
    check_positive_int("layers_per_block", layers_per_block)
    stage_blocks = (num_blocks // len(stage_filters),) * len(stage_filters)
    name = f"{architecture}_{num_blocks}x{layers_per_block}"
    return _residual_network(
        name, architecture, tuple(stage_filters), stage_blocks, layers_per_block, "dense", **kwargs
    )


@_register
def rir(
    num_blocks,
    layers_per_block,
    num_classes=10,
    input_shape=(32, 32, 3),
    stage_filters=(16, 32, 64),
    **kwargs,
):
    """RiR with any number of blocks and layers per block (Tables 5-6, Figure 4).

    The 32-layer network of Table 7 with `num_blocks` blocks split equally over
    the three stages and `layers_per_block` generalized residual units in each
    block; `rir(15, 2)` is `rir32`.

    Args:
        num_blocks: blocks in all, a multiple of the number of stages.
        layers_per_block: generalized residual units per block.
        num_classes: units of the output layer (10 for CIFAR-10, 100 for CIFAR-100).
        input_shape: `(height, width, channels)` of the images.
        stage_filters: channels of each stage; stages after the first halve
            the resolution.
        **kwargs: the keyword arguments every builder takes:
            `kernel_initializer` (base initializer of every weight tensor,
            default `"he_normal"`, the paper's MSR), `l2` (weight decay, default
            1e-4, towards the partial identity in generalized units),
            `residual_fraction` (share of the residual stream, default 0.5),
            `shortcut` (outer shortcut of blocks that change shape:
            `"projection"`, a 3x3 conv + BN, the default, or `"identity"`,
            subsample + zero-pad; networks without outer shortcuts ignore it)
            `implementation` (`"fused"`, one convolution per generalized
            unit, or `"explicit"`, four: the same function and parameters)
            and `weights` (`None`, the default: initialized as the paper
            says; a preset's dataset such as `"cifar10"`, see
            `list_presets()`; or the path of a `.weights.h5` file of this
            network).

    Returns:
        A functional `keras.Model` with float32 softmax outputs. With a
        preset, that network behind its input normalization: it takes raw
        images (`uint8` or float in `[0, 255]`).

    Example:
    >>> model = keras_rir.models.rir(num_blocks=9, layers_per_block=3)

    Reference: arXiv:1603.08029, Tables 5-6 and Figure 4.
    """
    return _depth_study(
        "rir",
        num_blocks,
        layers_per_block,
        stage_filters,
        num_classes=num_classes,
        input_shape=input_shape,
        **kwargs,
    )


@_register
def resnet(
    num_blocks,
    layers_per_block,
    num_classes=10,
    input_shape=(32, 32, 3),
    stage_filters=(16, 32, 64),
    **kwargs,
):
    """ResNet with any number of blocks and layers per block (Table 6, Figure 4).

    Args, Returns: as `keras_rir.models.rir`; `resnet(15, 2)` is `resnet32`.

    Example:
    >>> model = keras_rir.models.resnet(num_blocks=15, layers_per_block=4)

    Reference: arXiv:1603.08029, Table 6 and Figure 4.
    """
    return _depth_study(
        "resnet",
        num_blocks,
        layers_per_block,
        stage_filters,
        num_classes=num_classes,
        input_shape=input_shape,
        **kwargs,
    )


def _table7_32(architecture, num_classes, input_shape, kwargs):
    return _residual_network(
        f"{architecture}32",
        architecture,
        (16, 32, 64),
        (5, 5, 5),
        2,
        "dense",
        num_classes,
        input_shape,
        **kwargs,
    )


def _table7_wide18(architecture, num_classes, input_shape, kwargs):
    return _residual_network(
        f"wide_{architecture}18",
        architecture,
        (96, 192, 384),
        (2, 3, 3),
        2,
        "conv",
        num_classes,
        input_shape,
        **kwargs,
    )


@_register
def cnn32(num_classes=10, input_shape=(32, 32, 3), **kwargs):
    """Baseline 32-layer CNN of Table 7, no shortcuts (464,154 parameters at 10 classes).

    Args, Returns: as `keras_rir.models.rir`.

    Example:
    >>> model = keras_rir.models.cnn32(num_classes=10)

    Reference: arXiv:1603.08029, Table 7.
    """
    return _table7_32("cnn", num_classes, input_shape, kwargs)


@_register
def resnet32(num_classes=10, input_shape=(32, 32, 3), **kwargs):
    """32-layer ResNet of Table 7 (487,386 parameters at 10 classes).

    Args, Returns: as `keras_rir.models.rir`.

    Example:
    >>> model = keras_rir.models.resnet32(num_classes=10)

    Reference: arXiv:1603.08029, Table 7; He et al. (2015b).
    """
    return _table7_32("resnet", num_classes, input_shape, kwargs)


@_register
def resnet_init32(num_classes=10, input_shape=(32, 32, 3), **kwargs):
    """32-layer ResNet Init of Table 7: generalized units, no outer shortcuts (464,154).

    Args, Returns: as `keras_rir.models.rir`.

    Example:
    >>> model = keras_rir.models.resnet_init32(num_classes=10)

    Reference: arXiv:1603.08029, Table 7.
    """
    return _table7_32("resnet_init", num_classes, input_shape, kwargs)


@_register
def rir32(num_classes=10, input_shape=(32, 32, 3), **kwargs):
    """32-layer RiR of Table 7: generalized units inside ResNet blocks (487,386).

    Args, Returns: as `keras_rir.models.rir`.

    Example:
    >>> model = keras_rir.models.rir32(num_classes=10)

    Reference: arXiv:1603.08029, Table 7 and Figure 1d.
    """
    return _table7_32("rir", num_classes, input_shape, kwargs)


@_register
def wide_cnn18(num_classes=10, input_shape=(32, 32, 3), **kwargs):
    """18-layer wide CNN of Table 7 (9,469,930 parameters at 10 classes).

    Args, Returns: as `keras_rir.models.rir`.

    Example:
    >>> model = keras_rir.models.wide_cnn18(num_classes=100)

    Reference: arXiv:1603.08029, Table 7.
    """
    return _table7_wide18("cnn", num_classes, input_shape, kwargs)


@_register
def wide_resnet18(num_classes=10, input_shape=(32, 32, 3), **kwargs):
    """18-layer wide ResNet of Table 7 (10,300,522 parameters at 10 classes).

    Args, Returns: as `keras_rir.models.rir`.

    Example:
    >>> model = keras_rir.models.wide_resnet18(num_classes=100)

    Reference: arXiv:1603.08029, Table 7.
    """
    return _table7_wide18("resnet", num_classes, input_shape, kwargs)


@_register
def wide_resnet_init18(num_classes=10, input_shape=(32, 32, 3), **kwargs):
    """18-layer wide ResNet Init of Table 7 (9,469,930 parameters at 10 classes).

    Args, Returns: as `keras_rir.models.rir`.

    Example:
    >>> model = keras_rir.models.wide_resnet_init18(num_classes=100)

    Reference: arXiv:1603.08029, Table 7.
    """
    return _table7_wide18("resnet_init", num_classes, input_shape, kwargs)


@_register
def wide_rir18(num_classes=10, input_shape=(32, 32, 3), **kwargs):
    """18-layer wide RiR of Table 7, the paper's best network (10,300,522 parameters).

    Args, Returns: as `keras_rir.models.rir`.

    Example:
    >>> model = keras_rir.models.wide_rir18(num_classes=100)

    Reference: arXiv:1603.08029, Tables 1, 2 and 7.
    """
    return _table7_wide18("rir", num_classes, input_shape, kwargs)


@_register
def all_cnn_c(
    num_classes=10,
    input_shape=(32, 32, 3),
    resnet_init=False,
    dropout=True,
    *,
    kernel_initializer="he_normal",
    l2=1e-4,
    residual_fraction=0.5,
    implementation="fused",
    weights=None,
):
    """ALL-CNN-C (Springenberg et al., 2014) with batch normalization (Table 4).

    Nine convolutions, each followed by batch normalization and ReLU but the
    last (1x1 to `num_classes`, with bias), then global average pooling and
    softmax; dropout 0.2 on the input and 0.5 after each stride-2 convolution.
    With `resnet_init=True`, every convolution but the first (on the raw
    image) and the classifier is a generalized residual block.

    Args:
        num_classes: output classes.
        input_shape: `(height, width, channels)`, height and width >= 9.
        resnet_init: use ResNet Init (generalized blocks) instead of standard
            initialization.
        dropout: keep the original network's dropout.
        kernel_initializer, l2, residual_fraction, implementation, weights:
            as in `keras_rir.models.rir` (no ALL-CNN-C preset ships yet).

    Returns:
        A functional `keras.Model` with float32 softmax outputs.

    Example:
    >>> model = keras_rir.models.all_cnn_c(resnet_init=True)

    Reference: arXiv:1603.08029, Table 4; arXiv:1412.6806.
    """
    shape = _check_common(
        num_classes,
        input_shape,
        9,
        kernel_initializer,
        l2,
        residual_fraction,
        "projection",
        implementation,
    )
    # (filters, kernel size, strides, padding, dropout after) of the hidden convolutions.
    plan = [
        (96, 3, 1, "same", 0),
        (96, 3, 1, "same", 0),
        (96, 3, 2, "same", 0.5),
        (192, 3, 1, "same", 0),
        (192, 3, 1, "same", 0),
        (192, 3, 2, "same", 0.5),
        (192, 3, 1, "valid", 0),
        (192, 1, 1, "same", 0),
    ]
    name = "all_cnn_c_resnet_init" if resnet_init else "all_cnn_c"
    structure = {"residual_fraction": residual_fraction, "implementation": implementation}
    preset = presets.find(name, weights, num_classes, shape, structure)
    inputs = keras.Input(shape, name="images")
    x = keras.layers.Dropout(0.2, name="input_dropout")(inputs) if dropout else inputs
    for index, (filters, kernel_size, strides, padding, rate) in enumerate(plan, start=1):
        x = blocks.conv_unit(
            x,
            filters,
            f"conv{index}",
            kernel_size=kernel_size,
            strides=strides,
            padding=padding,
            generalized=resnet_init and index > 1,
            implementation=implementation,
            kernel_initializer=kernel_initializer,
            l2=l2,
            residual_fraction=residual_fraction,
        )
        if dropout and rate:
            x = keras.layers.Dropout(rate, name=f"conv{index}_dropout")(x)
    outputs = _classifier(x, num_classes, "conv", kernel_initializer, l2)
    model = keras.Model(inputs, outputs, name=name)
    return model if weights is None else presets.load_weights(model, weights, preset)
