"""Stream ablation of trained generalized residual networks (Figure 3).

"We visualize the effect of zeroing learned connections of each stream in a
trained ResNet Init model a single layer at a time, which shows both streams
contribute to accuracy and relative use of residual and transient streams
changes at different stages of processing (Figure 3)."

Reference: arXiv:1603.08029, section 3 and Figure 3.
"""

import keras
import numpy as np

from keras_rir._validation import check_choice, check_positive_int, invalid_value
from keras_rir.initializers import partial_identity, residual_width
from keras_rir.layers import DualStreamConv2D, GeneralizedResidualConv2D, GeneralizedResidualDense

__all__ = ["ABLATION_MODES", "STREAMS", "ablated_kernel", "stream_ablation"]

STREAMS = ("residual", "transient")
ABLATION_MODES = ("output", "input")


def ablated_kernel(kernel, stream, by="output", residual_fraction=0.5):
    """A fused generalized residual kernel with the learned weights of one stream zeroed.

    The learned part of a fused kernel `W'` is `W' - partial_identity`; the
    partial identity (the shortcut of the residual stream) is always kept.

    - `by="output"`: zero the learned weights that produce `stream`, i.e.
      the kernel's output channels of that stream (`[..., :r_out]` for the
      residual stream, `[..., r_out:]` for the transient stream). Zeroing
      the residual stream leaves `r_{l+1} = sigma(shortcut(r_l))`; zeroing
      the transient stream leaves `t_{l+1} = sigma(0)`.
    - `by="input"`: zero the learned weights that read from `stream`, i.e.
      the kernel's input channels of that stream (`[..., :r_in, :]` or
      `[..., r_in:, :]`), so that the layer's learned part ignores it.

    Args:
        kernel: NumPy array `(c_in, c_out)` or `(*spatial, c_in, c_out)`.
        stream: `"residual"` or `"transient"`.
        by: `"output"` or `"input"`.
        residual_fraction: share of the channels in the residual stream.

    Returns:
        A new NumPy array of the kernel's shape and dtype.

    Example:
    >>> kernel = np.ones((3, 3, 4, 4), "float32")
    >>> keras_rir.analysis.ablated_kernel(kernel, "transient")[1, 1]
    array([[1., 1., 0., 0.],
           [1., 1., 0., 0.],
           [1., 1., 0., 0.],
           [1., 1., 0., 0.]], dtype=float32)
    """
    check_choice("stream", stream, STREAMS)
    check_choice("by", by, ABLATION_MODES)
    kernel = np.array(kernel)
    identity = partial_identity(kernel.shape, residual_fraction, dtype=kernel.dtype)
    axis = kernel.ndim - 1 if by == "output" else kernel.ndim - 2
    width = residual_width(kernel.shape[axis], residual_fraction)
    index = [slice(None)] * kernel.ndim
    index[axis] = slice(None, width) if stream == "residual" else slice(width, None)
    kernel[tuple(index)] = identity[tuple(index)]
    return kernel


def _explicit_names(stream, by):
    """The `DualStreamConv2D` sub-convolutions holding one stream's learned weights."""
    if by == "output":
        return ("r_to_r", "t_to_r") if stream == "residual" else ("r_to_t", "t_to_t")
    return ("r_to_r", "r_to_t") if stream == "residual" else ("t_to_r", "t_to_t")


def _generalized_layers(model):
    """The generalized residual layers of `model` (nested models included), in order."""
    found = []
    for layer in model.layers:
        if isinstance(
            layer, (GeneralizedResidualConv2D, GeneralizedResidualDense, DualStreamConv2D)
        ):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(_generalized_layers(layer))
    return found


def _labels(y, num_examples):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=-1)
    y = y.reshape(-1)
    if y.shape[0] != num_examples:
        raise invalid_value(
            "y", f"<array of shape {np.shape(y)}>", f"{num_examples} labels, one per example"
        )
    return y.astype("int64")


def _accuracy(model, x, labels, batch_size):
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=-1) == labels))


def _ablations(layer, by):
    """(stream, [(variable, ablated value)]) for each stream of one layer."""
    for stream in STREAMS:
        if isinstance(layer, DualStreamConv2D):
            kernels = [getattr(layer, name).kernel for name in _explicit_names(stream, by)]
            changes = [(kernel, keras.ops.zeros(kernel.shape, kernel.dtype)) for kernel in kernels]
        else:
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            changes = [(layer.kernel, ablated_kernel(kernel, stream, by, layer.residual_fraction))]
        yield stream, changes


def stream_ablation(model, x, y, by="output", batch_size=500, layer_names=None):
    """Accuracy after zeroing the learned connections of one stream in one layer at a time.

    For each generalized residual layer of `model` in order
    (`GeneralizedResidualConv2D`, `GeneralizedResidualDense` and the
    explicit `DualStreamConv2D`) and for each stream, the learned weights of
    that stream in that layer are set to zero (see `ablated_kernel`; the
    partial identity is kept) and the accuracy on `(x, y)` is measured, the
    other layers keeping their trained weights. Batch normalization
    statistics are left as trained.

    The paper's sentence "zeroing learned connections of each stream"
    allows two readings, offered by `by`:

    - `"output"` (default): zero the learned weights that *produce* the
      stream: the kernel minus the partial identity on that stream's output
      channels (`W_{r->r}` and `W_{t->r}` for the residual stream,
      `W_{r->t}` and `W_{t->t}` for the transient stream), keeping the
      identity shortcut.
    - `"input"`: zero the learned weights that *read from* the stream: its
      input channels (`W_{r->r}` and `W_{r->t}`, or `W_{t->r}` and
      `W_{t->t}`), again keeping the identity.

    The work is done on a clone of `model` with a copy of its weights;
    `model`'s own weights are never changed.

    Args:
        model: a trained functional or sequential `keras.Model` with
            generalized residual layers, mapping `x` to class scores.
        x: NumPy array of inputs, as the model expects them.
        y: integer labels `(n,)` or `(n, 1)`, or one-hot labels `(n, classes)`.
        by: `"output"` or `"input"`.
        batch_size: batch size of the predictions.
        layer_names: None to ablate every generalized residual layer, or the
            names of the ones to ablate (for a quicker, partial figure).

    Returns:
        A list of dicts, one per (layer, stream), in layer order, residual
        first, with keys `"index"` (1-based position among the generalized
        layers), `"layer"` (name), `"stream"`, `"by"`, `"accuracy"` (after
        ablation) and `"baseline_accuracy"` (the unablated model's accuracy,
        the same in every row).

    Example:
    >>> rows = keras_rir.analysis.stream_ablation(model, x_test, y_test)

    Reference: arXiv:1603.08029, Figure 3.
    """
    check_choice("by", by, ABLATION_MODES)
    check_positive_int("batch_size", batch_size)
    if not isinstance(model, keras.Model):
        raise invalid_value("model", model, "a keras.Model with generalized residual layers")
    known = [layer.name for layer in _generalized_layers(model)]
    if not known:
        raise invalid_value(
            "model",
            model,
            "a keras.Model with generalized residual layers (GeneralizedResidualConv2D, "
            "GeneralizedResidualDense or DualStreamConv2D): a ResNet Init or RiR model",
        )
    if layer_names is not None and (not layer_names or not set(layer_names) <= set(known)):
        raise invalid_value(
            "layer_names", layer_names, f"None or names of generalized layers among {known}"
        )
    labels = _labels(y, len(x))
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    baseline = _accuracy(clone, x, labels, batch_size)
    rows = []
    for index, layer in enumerate(_generalized_layers(clone), start=1):
        if layer_names is not None and layer.name not in layer_names:
            continue
        for stream, changes in _ablations(layer, by):
            saved = [keras.ops.convert_to_numpy(variable) for variable, _ in changes]
            for variable, value in changes:
                variable.assign(value)
            try:
                accuracy = _accuracy(clone, x, labels, batch_size)
            finally:
                for (variable, _), value in zip(changes, saved, strict=True):
                    variable.assign(value)
            rows.append(
                {
                    "index": index,
                    "layer": layer.name,
                    "stream": stream,
                    "by": by,
                    "accuracy": accuracy,
                    "baseline_accuracy": baseline,
                }
            )
    return rows
