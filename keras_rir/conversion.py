"""ResNet Init for existing functional Keras CNNs (Table 4).

`apply_resnet_init` clones a functional model with `keras.models.clone_model`,
replacing the chosen `Conv2D` and `Dense` layers by generalized residual
blocks (`keras_rir.layers.GeneralizedResidualConv2D` /
`GeneralizedResidualDense`: ResNet Init kernel plus `PartialIdentityDecay`).
It keeps every other layer, its name, config and weights, and reports which
layers it converted and which it skipped, and why.

Reference: arXiv:1603.08029, section 3 and Table 4.
"""

import keras

from keras_rir._validation import (
    check_choice,
    check_non_negative,
    check_residual_fraction,
    get_initializer,
    invalid_value,
)
from keras_rir.initializers import ResNetInitInitializer, identity_width
from keras_rir.layers import (
    DualStreamConv2D,
    GeneralizedResidualConv2D,
    GeneralizedResidualDense,
    _generalized_config,
)
from keras_rir.regularizers import PartialIdentityDecay

__all__ = ["BIAS_MODES", "apply_resnet_init", "format_report", "resnet_init_report"]

BIAS_MODES = ("skip", "keep", "drop")

# Weight attributes of the layers that transform features with a kernel (Conv*, Dense,
# EinsumDense, DepthwiseConv*, SeparableConv*, Embedding, ...): the boundaries used to find the
# layers that read the model input and those that produce the model output.
_KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "embeddings")


def _is_kernel_layer(layer):
    """Whether `layer` transforms features with a kernel (a nested model counts as one)."""
    return isinstance(layer, (keras.Model, DualStreamConv2D)) or any(
        hasattr(layer, attribute) for attribute in _KERNEL_ATTRIBUTES
    )


# The Keras classes this function converts (exact classes, not subclasses).
_CONVERTIBLE = {
    keras.layers.Conv2D: GeneralizedResidualConv2D,
    keras.layers.Dense: GeneralizedResidualDense,
}


def _check_model(model):
    """The library's `ValueError` unless `model` is a functional `keras.Model`."""
    if (
        not isinstance(model, keras.Model)
        or isinstance(model, keras.Sequential)
        or not hasattr(model, "operations")  # subclassed models have no graph to clone
    ):
        raise invalid_value(
            "model",
            model,
            "a functional `keras.Model` (built with `keras.Model(inputs, outputs)`); "
            "for a `keras.Sequential`, pass `keras.Model(model.inputs, model.outputs)`",
        )


def _clone(model, clone_function, call_function=None):
    """`keras.models.clone_model` of the graph of `model`, uncompiled, as a `keras.Model`.

    `clone_model` alone would compile the copy like the original, keep a
    subclass of `keras.Model` and name each input layer after its tensor;
    cloning an uncompiled view of the graph on copies of the input layers
    keeps the copy uncompiled, a `keras.Model`, and the input layers' names
    and configs.
    """
    copies = {
        id(layer.output): type(layer).from_config(layer.get_config()).output
        for layer in model.layers
        if isinstance(layer, keras.layers.InputLayer)
    }
    return keras.models.clone_model(
        keras.Model(model.input, model.output, name=model.name),
        input_tensors=keras.tree.map_structure(lambda x: copies[id(x)], model.input),
        clone_function=clone_function,
        call_function=call_function,
    )


class _Stub(keras.layers.Layer):
    """A weightless stand-in with the output specs of `layer`, for `_boundary_layers`."""

    def __init__(self, layer):
        super().__init__(name=layer.name)
        self.kernel_layer = _is_kernel_layer(layer)
        self._output_spec = layer.compute_output_spec
        self.built = True

    def compute_output_spec(self, *args, **kwargs):
        return self._output_spec(*args, **kwargs)


def _boundary_layers(model):
    """`(first, last)`: names of the kernel layers reading the model input and producing its output.

    Both look through layers without a kernel (dropout, padding, pooling, batch normalization,
    activations, reshapes): `first` holds the stem on raw images, `last` the classifier. A
    symbolic `clone_model` pass over weightless stand-ins (nothing is built, no layer of `model`
    gets a new node) follows which kernel layers, or the input (None), each tensor comes from.
    """
    first, origins = set(), {}

    def call(stub, *args, **kwargs):
        tensors = [
            x for x in keras.tree.flatten((args, kwargs)) if isinstance(x, keras.KerasTensor)
        ]
        behind = frozenset().union(*(origins.get(id(x), {None}) for x in tensors))
        if stub.kernel_layer:
            if None in behind:
                first.add(stub.name)
            behind = frozenset({stub.name})
        outputs = stub(*args, **kwargs)
        origins.update(dict.fromkeys(map(id, keras.tree.flatten(outputs)), behind))
        return outputs

    outputs = _clone(model, _Stub, call).outputs
    return first, set().union(*(origins.get(id(x), {None}) for x in outputs)) - {None}


def _existing_l2(layer):
    """The L2 factor of the layer's kernel regularizer, 0.0 without one, None if not L2."""
    regularizer = layer.kernel_regularizer
    if regularizer is None:
        return 0.0
    if isinstance(regularizer, keras.regularizers.L2):
        return float(regularizer.l2)
    if isinstance(regularizer, keras.regularizers.L1L2) and not regularizer.l1:
        return float(regularizer.l2)
    return None


def _skip_reason(layer, residual_fraction, l2, bias):
    """Why the partial identity cannot (or should not) be applied to `layer`, or None."""
    kernel_shape = tuple(layer.kernel.shape)
    if isinstance(layer, keras.layers.Conv2D):
        if any(size % 2 == 0 for size in layer.kernel_size):
            return f"even kernel size {tuple(layer.kernel_size)}: no centre tap"
        if layer.groups != 1:
            return f"grouped convolution (groups={layer.groups})"
    if identity_width(kernel_shape, residual_fraction) == 0:
        return f"kernel {kernel_shape} too narrow: the partial identity would be empty"
    if isinstance(layer.kernel_initializer, ResNetInitInitializer):
        return "already uses ResNet Init"
    if layer.use_bias and bias == "skip":
        return "has a bias (pass bias='keep' or bias='drop' to convert it)"
    if l2 is None and _existing_l2(layer) is None:
        return (
            f"kernel_regularizer {type(layer.kernel_regularizer).__name__} is not a plain L2 "
            "(pass l2= to replace it by PartialIdentityDecay)"
        )
    return None


def resnet_init_report(model, predicate=None, residual_fraction=0.5, l2=None, bias="skip"):
    """What `apply_resnet_init` would convert, without building anything.

    Args:
        model: a functional `keras.Model`.
        predicate, residual_fraction, l2, bias: as in `apply_resnet_init`.

    Returns:
        A list with one dict per `Conv2D` / `Dense` layer (subclasses
        included), in the model's layer order, with keys `"layer"` (name),
        `"class_name"`, `"kernel_shape"`, `"action"` (`"convert"` or
        `"skip"`), `"reason"` (why it is skipped, `""` when converted),
        `"l2"` (the decay factor it gets, None when skipped) and `"bias"`
        (`"none"`, `"kept"` or `"dropped"`; None when skipped).

    Example:
    >>> rows = keras_rir.resnet_init_report(keras_rir.models.all_cnn_c())
    >>> [row["layer"] for row in rows if row["action"] == "convert"][:2]
    ['conv2_conv', 'conv3_conv']
    """
    _check_model(model)
    residual_fraction = check_residual_fraction(residual_fraction)
    if l2 is not None:
        l2 = check_non_negative("l2", l2)
    check_choice("bias", bias, BIAS_MODES)
    if predicate is not None and not callable(predicate):
        raise invalid_value("predicate", predicate, "None or a callable layer -> bool")
    # With a predicate, the stem and the classifier are the predicate's to choose.
    first, last = _boundary_layers(model) if predicate is None else (set(), set())
    rows = []
    for layer in model.layers:
        if not isinstance(layer, tuple(_CONVERTIBLE)):
            continue
        if isinstance(layer, tuple(_CONVERTIBLE.values())):
            reason = "already a generalized residual layer"
        elif type(layer) not in _CONVERTIBLE:
            reason = f"not a plain Conv2D or Dense ({type(layer).__name__})"
        elif layer.name in first:
            reason = "reads the model input (stem on raw inputs)"
        elif layer.name in last:
            reason = "produces the model output (classifier)"
        elif predicate is not None and not predicate(layer):
            reason = "not selected by the predicate"
        else:
            reason = _skip_reason(layer, residual_fraction, l2, bias)
        row = {
            "layer": layer.name,
            "class_name": type(layer).__name__,
            "kernel_shape": tuple(layer.kernel.shape),
            "action": "skip" if reason else "convert",
            "reason": reason or "",
            "l2": None,
            "bias": None,
        }
        if reason is None:
            row["l2"] = _existing_l2(layer) if l2 is None else l2
            row["bias"] = ("kept" if bias == "keep" else "dropped") if layer.use_bias else "none"
        rows.append(row)
    return rows


def format_report(rows):
    """The rows of `resnet_init_report` as a fixed-width text table.

    Args:
        rows: the list returned by `resnet_init_report`.

    Returns:
        A string, one line per layer.

    Example:
    >>> print(keras_rir.conversion.format_report(
    ...     keras_rir.resnet_init_report(keras_rir.models.all_cnn_c())))
    """
    lines = [("layer", "class", "kernel", "action", "l2 / reason")]
    for row in rows:
        kernel = "x".join(str(size) for size in row["kernel_shape"])
        bias = "" if row["bias"] in (None, "none") else f" (bias {row['bias']})"
        note = f"l2={row['l2']:g}" if row["action"] == "convert" else row["reason"]
        lines.append((row["layer"], row["class_name"], kernel, row["action"] + bias, note))
    widths = [max(len(cell) for cell in column) for column in zip(*lines, strict=True)]
    widths[-1] = 0  # the last column is not padded
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    )


def apply_resnet_init(
    model,
    predicate=None,
    residual_fraction=0.5,
    l2=None,
    kernel_initializer=None,
    bias="skip",
    verbose=True,
):
    """A copy of a functional CNN whose chosen layers are generalized residual blocks.

    Each converted `Conv2D` becomes a
    `keras_rir.layers.GeneralizedResidualConv2D` and each converted `Dense` a
    `keras_rir.layers.GeneralizedResidualDense` with the same name, filters,
    kernel size, strides, padding, dilation, data format, activation,
    activity regularizer, kernel constraint and dtype policy: its kernel is
    drawn afresh by ResNet Init (`kernel_initializer` plus the partial
    identity) and decays towards the partial identity. Every other layer
    keeps its config and its weights; the graph and the model's name are
    unchanged. The new model is not compiled. Only the model's own layers are
    considered: the layers inside a nested model are left as they are.

    Which layers are converted:

    - With `predicate=None`, every `Conv2D` / `Dense` (exact Keras classes)
      except those reading the model input directly (the stem on raw
      images) and those producing the model output (the classifier), where
      "directly" looks through layers without a kernel (dropout, padding,
      pooling, batch normalization, activations). This is how the paper
      applies ResNet Init to ALL-CNN-C (Table 4):
      `apply_resnet_init(all_cnn_c())` has the structure of
      `all_cnn_c(resnet_init=True)`.
    - With a `predicate`, exactly the layers for which `predicate(layer)`
      is true (the stem and classifier included, if it selects them).
    - Either way, a selected layer is skipped, and reported, when the
      partial identity cannot apply: an even kernel size (no centre tap), a
      grouped convolution, a partial identity of width 0 (too few channels
      for `residual_fraction`), a kernel already using ResNet Init, or a
      kernel regularizer other than L2 when `l2` is None. Dilated
      convolutions and `"valid"` padding are fine (the identity follows the
      centre tap).
    - Layers with a bias: the generalized residual layers have no bias
      (batch normalization follows them in the paper), so by default
      (`bias="skip"`) such a layer is skipped and reported, which leaves
      e.g. `keras.applications.VGG16` (a bias on every convolution, no batch
      normalization) unchanged. `bias="keep"` converts it keeping its bias:
      the layer stays a `Conv2D` / `Dense` with
      `keras_rir.initializers.ResNetInitInitializer` and
      `keras_rir.regularizers.PartialIdentityDecay`, the right choice when
      no batch normalization follows. `bias="drop"` converts it to the
      bias-free generalized layer, the right choice before batch
      normalization, which cancels a bias anyway (e.g.
      `keras.applications.ResNet50`).

    Args:
        model: a functional `keras.Model`.
        predicate: None, or a callable taking a layer of `model` and
            returning whether to convert it.
        residual_fraction: share of the channels in the residual stream.
        l2: weight decay factor of `PartialIdentityDecay`. None (default)
            keeps each layer's own L2 factor: that of its
            `keras.regularizers.L2` (or `L1L2` without L1) kernel
            regularizer, 0.0 when it has none, so that the conversion never
            adds or removes weight decay; a layer with another regularizer is
            then skipped.
        kernel_initializer: base initializer of the learned part; None
            (default) keeps each layer's own `kernel_initializer`.
        bias: `"skip"`, `"keep"` or `"drop"`: what to do with a selected
            layer that has a bias (see above).
        verbose: print the table of `resnet_init_report`.

    Returns:
        A new functional `keras.Model`. Call
        `keras_rir.resnet_init_report` with the same arguments for the table
        of converted and skipped layers.

    Raises:
        ValueError: `model` is not a functional model, an argument is
            invalid, or no layer is converted (the message holds the table).

    Example:
    >>> base = keras.applications.MobileNetV2(
    ...     input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    >>> model = keras_rir.apply_resnet_init(base, l2=1e-4)

    Reference: arXiv:1603.08029, section 3 and Table 4.
    """
    rows = resnet_init_report(model, predicate, residual_fraction, l2, bias)
    if kernel_initializer is not None:
        kernel_initializer = get_initializer("kernel_initializer", kernel_initializer)
    table = format_report(rows)
    converted = {row["layer"]: row for row in rows if row["action"] == "convert"}
    if not converted:
        raise invalid_value(
            "predicate",
            predicate,
            "a choice of layers that includes at least one eligible Conv2D or Dense layer "
            f"of model {model.name!r}; no layer would be converted:\n{table}\n",
        )
    if verbose:
        print(f"apply_resnet_init({model.name}): {len(converted)} of {len(rows)} converted")
        print(table)

    def clone(layer):
        row = converted.get(layer.name)
        config = layer.get_config()
        if row is None:
            return type(layer).from_config(config)
        base = layer.kernel_initializer if kernel_initializer is None else kernel_initializer
        initializer = keras.initializers.serialize(base)
        if row["bias"] == "kept":
            # A generalized residual block with a bias: the same Keras class with
            # the ResNet Init kernel and the decay towards the partial identity.
            config["kernel_initializer"] = ResNetInitInitializer(initializer, residual_fraction)
            config["kernel_regularizer"] = PartialIdentityDecay(row["l2"], residual_fraction)
            return type(layer).from_config(config)
        config = _generalized_config(config, initializer, residual_fraction, row["l2"])
        return _CONVERTIBLE[type(layer)].from_config(config)

    new_model = _clone(model, clone)
    for layer in model.layers:
        if layer.name not in converted and layer.weights:
            new_model.get_layer(layer.name).set_weights(layer.get_weights())
    return new_model
