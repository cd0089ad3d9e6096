"""The networks of Table 7, the depth studies and ALL-CNN-C, with a registry.

`ResidualNetwork` is the one class of the residual family (CNN, ResNet, ResNet Init, RiR): a
functional `keras.Model` that keeps its arguments, so a saved `.keras` file rebuilds it from
its config. The builders (`rir32`, `wide_rir18`, ...) are one line each over the table
`keras_rir.presets.MODEL_PRESETS`, and take `weights=` to load a shipped preset.

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
    "ResidualNetwork",
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

HEADS = ("dense", "conv")
_POOLS = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
POOLINGS = (None, *_POOLS)


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


def _check_shape(argument, shape, min_size):
    """Returns `shape` as a tuple of three positive ints, height and width >= `min_size`."""
    checked = tuple(shape) if isinstance(shape, (tuple, list)) else None
    if (
        checked is None
        or len(checked) != 3
        or not all(isinstance(dim, int) and dim > 0 for dim in checked)
        or min(checked[:2]) < min_size
    ):
        raise invalid_value(
            argument,
            shape,
            f"(height, width, channels) of positive ints with height and width >= {min_size}, "
            "the smallest size the network's strides and kernels can reduce",
        )
    return checked


def _check_common(num_classes, kernel_initializer, l2, residual_fraction, implementation):
    check_positive_int("num_classes", num_classes)
    get_initializer("kernel_initializer", kernel_initializer)
    check_non_negative("l2", l2)
    check_residual_fraction(residual_fraction)
    check_choice("implementation", implementation, blocks.IMPLEMENTATIONS)


def _check_stackwise(argument, values):
    if not isinstance(values, (list, tuple)) or not values:
        raise invalid_value(argument, values, "a non-empty list of strictly positive integers")
    return [check_positive_int(argument, value) for value in values]


def _top(x, num_classes, head, classifier_activation, kernel_initializer, l2):
    """The classifier: a dense layer after pooling, or a 1x1 convolution before it."""
    classifier = dict(
        kernel_initializer=get_initializer("kernel_initializer", kernel_initializer),
        kernel_regularizer=keras.regularizers.L2(l2),
        name="classifier",
    )
    if head == "conv":
        x = keras.layers.Conv2D(num_classes, 1, **classifier)(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if head == "dense":
        x = keras.layers.Dense(num_classes, **classifier)(x)
    # Float32 outputs under mixed precision, probabilities or logits.
    return keras.layers.Activation(
        classifier_activation or "linear",
        dtype="float32",
        name="probabilities" if classifier_activation else "logits",
    )(x)


@keras.saving.register_keras_serializable(package="keras_rir")
class ResidualNetwork(keras.Model):
    """CNN, ResNet, ResNet Init or RiR: the residual family of Table 7 as one class.

    A stem conv unit, then stages of blocks of `layers_per_block` 3x3 conv units
    (the first block of every stage after the first has stride 2), then global
    average pooling and a classifier. Two switches pick the network of
    Figure 2: `generalized` (units are generalized residual blocks: ResNet
    Init, RiR) and `outer_shortcuts` (blocks have a ResNet shortcut: ResNet,
    RiR). The named networks are `keras_rir.presets.MODEL_PRESETS`.

    Args:
        stackwise_num_filters: channels of each stage.
        stackwise_num_blocks: blocks of each stage, as many as stages.
        layers_per_block: conv units in every block.
        generalized: generalized residual units (True) or plain conv units.
        outer_shortcuts: blocks with an outer (ResNet) shortcut.
        shortcut: outer shortcut of the blocks that change shape:
            `"projection"` (3x3 conv + BN, the default) or `"identity"`
            (subsample + zero-pad); ignored without outer shortcuts.
        head: `"dense"` (pooling, then a dense classifier; the 32-layer
            networks) or `"conv"` (a 1x1 convolution, then pooling; the wide
            networks).
        num_classes: units of the classifier.
        image_shape: `(height, width, channels)` of the images.
        include_top: with the classifier; False returns the features of the
            last stage, for feature extraction.
        pooling: without the top, `None` (the last stage's feature map),
            `"avg"` or `"max"` (global pooling to one vector per image).
        classifier_activation: activation of the output, `"softmax"` (the
            default) or any Keras activation name; `None` for logits. The
            output is float32 under mixed precision.
        kernel_initializer: base initializer of every weight tensor (default
            `"he_normal"`, the paper's MSR).
        l2: weight decay factor, towards the partial identity in generalized
            units.
        residual_fraction: share of the channels in the residual stream.
        implementation: `"fused"` (one convolution per generalized unit) or
            `"explicit"` (four: the same function and parameters).
        **kwargs: `name` and `trainable` of `keras.Model`.

    Example:
    >>> model = keras_rir.models.ResidualNetwork(
    ...     stackwise_num_filters=[16, 32, 64], stackwise_num_blocks=[5, 5, 5],
    ...     generalized=True, outer_shortcuts=True, num_classes=100)
    >>> features = keras_rir.models.ResidualNetwork(
    ...     **keras_rir.presets.MODEL_PRESETS["rir32"]["config"], include_top=False,
    ...     pooling="avg")

    Reference: arXiv:1603.08029, Figures 1-2 and Table 7.
    """

    def __init__(
        self,
        stackwise_num_filters,
        stackwise_num_blocks,
        layers_per_block=2,
        generalized=True,
        outer_shortcuts=True,
        shortcut="projection",
        head="dense",
        num_classes=10,
        image_shape=(32, 32, 3),
        include_top=True,
        pooling=None,
        classifier_activation="softmax",
        kernel_initializer="he_normal",
        l2=1e-4,
        residual_fraction=0.5,
        implementation="fused",
        **kwargs,
    ):
        filters = _check_stackwise("stackwise_num_filters", stackwise_num_filters)
        num_blocks = _check_stackwise("stackwise_num_blocks", stackwise_num_blocks)
        if len(num_blocks) != len(filters):
            raise invalid_value(
                "stackwise_num_blocks", stackwise_num_blocks, f"{len(filters)} counts, one a stage"
            )
        layers_per_block = check_positive_int("layers_per_block", layers_per_block)
        image_shape = _check_shape("image_shape", image_shape, 2 ** (len(filters) - 1))
        _check_common(num_classes, kernel_initializer, l2, residual_fraction, implementation)
        check_choice("shortcut", shortcut, blocks.SHORTCUTS)
        check_choice("head", head, HEADS)
        check_choice("generalized", generalized, (True, False))
        check_choice("outer_shortcuts", outer_shortcuts, (True, False))
        check_choice("include_top", include_top, (True, False))
        if pooling not in POOLINGS:
            raise invalid_value("pooling", pooling, "None, 'avg' or 'max'")
        if classifier_activation is not None:
            try:
                keras.activations.get(classifier_activation)
            except (ValueError, TypeError) as error:
                raise invalid_value(
                    "classifier_activation", classifier_activation, "None or a Keras activation"
                ) from error

        # === Functional model ===
        inputs = keras.Input(image_shape, name="images")
        x = blocks.conv_unit(
            inputs, filters[0], "stem", kernel_initializer=kernel_initializer, l2=l2
        )
        for stage, (channels, stage_blocks) in enumerate(zip(filters, num_blocks, strict=True), 1):
            for block in range(1, stage_blocks + 1):
                x = blocks.residual_block(
                    x,
                    channels,
                    f"stage{stage}_block{block}",
                    strides=2 if stage > 1 and block == 1 else 1,
                    layers_per_block=layers_per_block,
                    generalized=bool(generalized),
                    shortcut=shortcut if outer_shortcuts else None,
                    implementation=implementation,
                    kernel_initializer=kernel_initializer,
                    l2=l2,
                    residual_fraction=residual_fraction,
                )
        if include_top:
            x = _top(x, num_classes, head, classifier_activation, kernel_initializer, l2)
        elif pooling:
            x = _POOLS[pooling](name="pool")(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)

        # === Config: the arguments, as validated, also as attributes ===
        self.architecture = dict(
            stackwise_num_filters=filters,
            stackwise_num_blocks=num_blocks,
            layers_per_block=layers_per_block,
            generalized=bool(generalized),
            outer_shortcuts=bool(outer_shortcuts),
            shortcut=shortcut,
            head=head,
            num_classes=num_classes,
            image_shape=list(image_shape),
            include_top=include_top,
            pooling=pooling,
            classifier_activation=classifier_activation,
            kernel_initializer=kernel_initializer
            if isinstance(kernel_initializer, (str, dict))
            else keras.initializers.serialize(kernel_initializer),
            l2=l2,
            residual_fraction=residual_fraction,
            implementation=implementation,
        )
        for argument, value in self.architecture.items():  # keras-hub style attributes
            setattr(self, argument, value)

    def get_config(self):  # keras.Model.from_config rebuilds the network with cls(**config)
        return {"name": self.name, "trainable": self.trainable, **self.architecture}


def _network(name, config, num_classes=10, input_shape=(32, 32, 3), *, weights=None, **kwargs):
    """`ResidualNetwork(**config, **kwargs)` named `name`, with `weights=` loaded."""
    shape = _check_shape(
        "input_shape", input_shape, 2 ** (len(config["stackwise_num_filters"]) - 1)
    )
    preset = presets.find(name, weights, num_classes, shape, kwargs)
    model = ResidualNetwork(
        **{"name": name, **config, **kwargs}, num_classes=num_classes, image_shape=shape
    )
    return model if weights is None else presets.load_weights(model, weights, preset)


def _depth_study(architecture, num_blocks, layers_per_block, stage_filters, kwargs):
    num_blocks = check_positive_int("num_blocks", num_blocks)
    if num_blocks % len(stage_filters):
        raise invalid_value(
            "num_blocks", num_blocks, f"a multiple of {len(stage_filters)}, one share per stage"
        )
    config = {
        **presets.MODEL_PRESETS[f"{architecture}32"]["config"],
        "stackwise_num_filters": list(stage_filters),
        "stackwise_num_blocks": [num_blocks // len(stage_filters)] * len(stage_filters),
        "layers_per_block": check_positive_int("layers_per_block", layers_per_block),
    }
    return _network(f"{architecture}_{num_blocks}x{layers_per_block}", config, **kwargs)


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
        **kwargs: `weights` (`None`, the default: initialized as the paper
            says; a preset's dataset such as `"cifar10"`, see
            `list_presets()`; or the path of a `.weights.h5` file of this
            network) and the arguments of `keras_rir.models.ResidualNetwork`:
            `kernel_initializer` (default `"he_normal"`), `l2` (default 1e-4),
            `residual_fraction` (default 0.5), `shortcut` (`"projection"`, the
            default, or `"identity"`), `implementation` (`"fused"` or
            `"explicit"`), `include_top`, `pooling` and
            `classifier_activation` (default `"softmax"`, `None` for logits).

    Returns:
        A `keras_rir.models.ResidualNetwork` with float32 softmax outputs. With
        a preset, that network behind its input normalization: it takes raw
        images (`uint8` or float in `[0, 255]`).

    Example:
    >>> model = keras_rir.models.rir(num_blocks=9, layers_per_block=3)

    Reference: arXiv:1603.08029, Tables 5-6 and Figure 4.
    """
    kwargs.update(num_classes=num_classes, input_shape=input_shape)
    return _depth_study("rir", num_blocks, layers_per_block, stage_filters, kwargs)


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
    kwargs.update(num_classes=num_classes, input_shape=input_shape)
    return _depth_study("resnet", num_blocks, layers_per_block, stage_filters, kwargs)


def _table7_builder(name):
    """The builder of Table 7's network `name`, documented by its `MODEL_PRESETS` entry."""

    def builder(num_classes=10, input_shape=(32, 32, 3), **kwargs):
        config = presets.MODEL_PRESETS[name]["config"]
        return _network(name, config, num_classes, input_shape, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"{presets.MODEL_PRESETS[name]['description']}\n\n"
        "Args, Returns: as `keras_rir.models.rir` (without `num_blocks`, `layers_per_block`, "
        f"`stage_filters`).\n\nExample:\n>>> model = keras_rir.models.{name}(num_classes=100)\n"
    )
    return _register(builder)


# The networks of Table 7, one line each over `keras_rir.presets.MODEL_PRESETS`.
cnn32 = _table7_builder("cnn32")
resnet32 = _table7_builder("resnet32")
resnet_init32 = _table7_builder("resnet_init32")
rir32 = _table7_builder("rir32")
wide_cnn18 = _table7_builder("wide_cnn18")
wide_resnet18 = _table7_builder("wide_resnet18")
wide_resnet_init18 = _table7_builder("wide_resnet_init18")
wide_rir18 = _table7_builder("wide_rir18")


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

    A plain functional `keras.Model` (not a class of its own):
    `keras_rir.apply_resnet_init` rewrites its functional config.

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
    shape = _check_shape("input_shape", input_shape, 9)
    _check_common(num_classes, kernel_initializer, l2, residual_fraction, implementation)
    # (filters, kernel size, strides, padding, dropout after) of the hidden convolutions.
    plan = [(96, 3, 1, "same", 0), (96, 3, 1, "same", 0), (96, 3, 2, "same", 0.5)]
    plan += [(192, 3, 1, "same", 0), (192, 3, 1, "same", 0), (192, 3, 2, "same", 0.5)]
    plan += [(192, 3, 1, "valid", 0), (192, 1, 1, "same", 0)]
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
    outputs = _top(x, num_classes, "conv", "softmax", kernel_initializer, l2)
    model = keras.Model(inputs, outputs, name=name)
    return model if weights is None else presets.load_weights(model, weights, preset)
