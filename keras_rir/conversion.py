"""ResNet Init for existing functional Keras CNNs (Table 4).

`apply_resnet_init` rewrites the functional config of a model so that the
chosen `Conv2D` and `Dense` layers become generalized residual blocks
(`keras_rir.layers.GeneralizedResidualConv2D` / `GeneralizedResidualDense`:
ResNet Init kernel plus `PartialIdentityDecay`), keeps every other layer, its
name, config and weights, and reports which layers it converted and which it
skipped, and why.

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
from keras_rir.layers import DualStreamConv2D, GeneralizedResidualConv2D, GeneralizedResidualDense
from keras_rir.regularizers import PartialIdentityDecay

__all__ = ["BIAS_MODES", "apply_resnet_init", "format_report", "resnet_init_report"]

BIAS_MODES = ("skip", "keep", "drop")

# Layers that transform features with a kernel: the boundaries used to find the
# layers that read the model input and those that produce the model output.
_KERNEL_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Embedding,
    DualStreamConv2D,
    keras.Model,
)
# The Keras classes this function converts (exact classes, not subclasses).
_CONVERTIBLE = {
    keras.layers.Conv2D: GeneralizedResidualConv2D,
    keras.layers.Dense: GeneralizedResidualDense,
}
# Config keys of Conv2D / Dense that the generalized layers set themselves.
_DROPPED_KEYS = (
    "use_bias",
    "bias_initializer",
    "bias_regularizer",
    "bias_constraint",
    "kernel_initializer",
    "kernel_regularizer",
    "groups",
)


def _functional_config(model):
    """The functional config of `model`, or the library's `ValueError`."""
    expected = (
        "a functional `keras.Model` (built with `keras.Model(inputs, outputs)`); "
        "for a `keras.Sequential`, pass `keras.Model(model.inputs, model.outputs)`"
    )
    if not isinstance(model, keras.Model) or isinstance(model, keras.Sequential):
        raise invalid_value("model", model, expected)
    try:
        config = model.get_config()
    except NotImplementedError as error:
        raise invalid_value("model", model, expected) from error
    if not isinstance(config, dict) or not {"layers", "input_layers", "output_layers"} <= set(
        config
    ):
        raise invalid_value("model", model, expected)
    return config


def _history_names(value):
    """Names of the layers whose output tensors appear in a serialized call."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"][0]]
        return [name for item in value.values() for name in _history_names(item)]
    if isinstance(value, (list, tuple)):
        return [name for item in value for name in _history_names(item)]
    return []


def _endpoint_names(endpoints):
    """Layer names of a config's `input_layers` / `output_layers`."""
    if endpoints and isinstance(endpoints[0], str):
        return [endpoints[0]]
    return [name for endpoint in endpoints for name in _endpoint_names(endpoint)]


def _boundary_layers(model, config):
    """Kernel layers reachable from an input (output) through no other kernel layer.

    Returns:
        `(first, last)`: names of the layers that read the model input directly
        (the stem on raw images) and of those producing the model output (the
        classifier), looking through layers without kernels (dropout, padding,
        pooling, batch normalization, activations, reshapes, ...).
    """
    successors = {entry["name"]: set() for entry in config["layers"]}
    predecessors = {entry["name"]: set() for entry in config["layers"]}
    for entry in config["layers"]:
        for source in _history_names(entry["inbound_nodes"]):
            successors[source].add(entry["name"])
            predecessors[entry["name"]].add(source)

    def is_kernel_layer(name):
        return isinstance(model.get_layer(name), _KERNEL_LAYERS)

    def frontier(starts, edges):
        found, seen, stack = set(), set(), list(starts)
        while stack:
            name = stack.pop()
            for neighbour in edges[name]:
                if neighbour in seen:
                    continue
                seen.add(neighbour)
                if is_kernel_layer(neighbour):
                    found.add(neighbour)
                else:
                    stack.append(neighbour)
        return found

    inputs = _endpoint_names(config["input_layers"])
    outputs = _endpoint_names(config["output_layers"])
    last = {name for name in outputs if is_kernel_layer(name)}
    last |= frontier([name for name in outputs if name not in last], predecessors)
    return frontier(inputs, successors), last


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
    config = _functional_config(model)
    residual_fraction = check_residual_fraction(residual_fraction)
    if l2 is not None:
        l2 = check_non_negative("l2", l2)
    check_choice("bias", bias, BIAS_MODES)
    if predicate is not None and not callable(predicate):
        raise invalid_value("predicate", predicate, "None or a callable layer -> bool")
    first, last = _boundary_layers(model, config) if predicate is None else (set(), set())
    rows = []
    for entry in config["layers"]:
        layer = model.get_layer(entry["name"])
        if not isinstance(layer, tuple(_CONVERTIBLE)):
            continue
        row = {
            "layer": layer.name,
            "class_name": type(layer).__name__,
            "kernel_shape": tuple(layer.kernel.shape),
            "action": "skip",
            "reason": "",
            "l2": None,
            "bias": None,
        }
        rows.append(row)
        if isinstance(layer, tuple(_CONVERTIBLE.values())):
            row["reason"] = "already a generalized residual layer"
        elif type(layer) not in _CONVERTIBLE:
            row["reason"] = f"not a plain Conv2D or Dense ({type(layer).__name__})"
        elif predicate is None and layer.name in first:
            row["reason"] = "reads the model input (stem on raw inputs)"
        elif predicate is None and layer.name in last:
            row["reason"] = "produces the model output (classifier)"
        elif predicate is not None and not predicate(layer):
            row["reason"] = "not selected by the predicate"
        else:
            reason = _skip_reason(layer, residual_fraction, l2, bias)
            if reason is not None:
                row["reason"] = reason
            else:
                row["action"] = "convert"
                row["l2"] = _existing_l2(layer) if l2 is None else l2
                row["bias"] = (
                    ("kept" if bias == "keep" else "dropped") if layer.use_bias else "none"
                )
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
    header = ("layer", "class", "kernel", "action", "l2 / reason")
    lines = [
        (
            row["layer"],
            row["class_name"],
            "x".join(str(size) for size in row["kernel_shape"]),
            row["action"]
            if row["bias"] in (None, "none")
            else f"{row['action']} (bias {row['bias']})",
            f"l2={row['l2']:g}" if row["action"] == "convert" else row["reason"],
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths, strict=True))
        + "  "
        + line[4]
        for line in [header, *lines]
    )


def _converted_entry(layer, entry, row, residual_fraction, kernel_initializer):
    """The config entry of the generalized residual version of `layer`."""
    base = layer.kernel_initializer if kernel_initializer is None else kernel_initializer
    base = keras.initializers.serialize(base)
    config = dict(entry["config"])
    if row["bias"] == "kept":
        # A generalized residual block with a bias: the same Keras class with
        # the ResNet Init kernel and the decay towards the partial identity.
        config["kernel_initializer"] = keras.initializers.serialize(
            ResNetInitInitializer(base, residual_fraction)
        )
        config["kernel_regularizer"] = keras.regularizers.serialize(
            PartialIdentityDecay(row["l2"], residual_fraction)
        )
        new_layer = type(layer).from_config(config)
    else:
        for key in _DROPPED_KEYS:
            config.pop(key, None)
        config.update(kernel_initializer=base, residual_fraction=residual_fraction, l2=row["l2"])
        new_layer = _CONVERTIBLE[type(layer)].from_config(config)
    serialized = keras.saving.serialize_keras_object(new_layer)
    return {
        **entry,
        **{key: serialized[key] for key in ("module", "class_name", "config")},
        "registered_name": serialized.get("registered_name"),
    }


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
    config = _functional_config(model)
    config["layers"] = [
        _converted_entry(
            model.get_layer(entry["name"]),
            entry,
            converted[entry["name"]],
            residual_fraction,
            kernel_initializer,
        )
        if entry["name"] in converted
        else entry
        for entry in config["layers"]
    ]
    new_model = keras.Model.from_config(config)
    for layer in model.layers:
        if layer.name not in converted and layer.weights:
            new_model.get_layer(layer.name).set_weights(layer.get_weights())
    return new_model
