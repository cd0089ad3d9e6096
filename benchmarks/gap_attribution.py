"""Where keras_rir's training step loses time to hand-written PyTorch, one suspect at a time.

The same plain network (`cnn32` or `wide_cnn18`: only `Conv2D`, BatchNorm,
ReLU and the head, so every layer can be rewritten through its config) is
timed as Keras variants and PyTorch variants in interleaved windows in one
process, on one synthetic batch. Each Keras variant removes one suspect and is
divided by the PyTorch variant that removes the same thing:

- `as_built`: the keras_rir model / the PyTorch reference (channels_last);
- `no_penalty`: no L2 kernel penalties / `weight_decay=0`;
- `no_batch_norm`: every BatchNormalization left out, on both sides;
- `logits`: the final softmax dropped and the loss taken `from_logits`
  (PyTorch always works on logits) / the reference;
- `channels_first`: every layer in `channels_first`, images NCHW / the
  reference (the torch backend then skips its layout copies).

A suspect's share of the gap is how far its ratio moves from `as_built`'s.

Usage (from the repository root):
    KERAS_BACKEND=torch python -m benchmarks.gap_attribution --json runs/gap_torch.json
"""

import keras
import torch

from benchmarks import common, torch_reference
from keras_rir import training

NETWORKS = ("cnn32", "wide_cnn18")
# Keras variant -> the PyTorch variant it is divided by.
VARIANTS = {
    "as_built": "as_built",
    "no_penalty": "no_penalty",
    "no_batch_norm": "no_batch_norm",
    "logits": "as_built",
    "channels_first": "as_built",
}


def _rewrite(model, rewrite_layer):
    """A fresh model from `model`'s config with `rewrite_layer(entry)` applied to each layer."""
    config = common.graph_config(model)
    for entry in config["layers"]:
        rewrite_layer(entry)
    return keras.Model.from_config(config)


def _drop_penalty(entry):
    if "kernel_regularizer" in entry["config"]:
        entry["config"]["kernel_regularizer"] = None


def _drop_batch_norm(entry):
    if entry["class_name"] == "BatchNormalization":
        config = entry["config"]
        entry.update(module="keras.layers", class_name="Identity", registered_name=None)
        entry["config"] = {key: config[key] for key in ("name", "trainable", "dtype")}
        for node in entry["inbound_nodes"]:
            node["kwargs"].pop("mask", None)  # BatchNormalization's call argument


def _to_channels_first(entry):
    entry.pop("build_config", None)  # recorded channels-last input shapes
    config = entry["config"]
    if entry["class_name"] == "InputLayer":
        batch, height, width, channels = config["batch_shape"]
        config["batch_shape"] = [batch, channels, height, width]
    elif "data_format" in config:
        config["data_format"] = "channels_first"
    elif entry["class_name"] == "BatchNormalization":
        config["axis"] = 1


def keras_variant(model, variant):
    """The Keras side of `variant` (see the module docstring), as a new, uncompiled model.

    Args:
        model: a keras_rir plain network (`cnn32` or `wide_cnn18`).
        variant: a key of `VARIANTS`.

    Returns:
        A tuple `(model, from_logits)`.
    """
    if variant == "as_built":
        return _rewrite(model, lambda entry: None), False
    if variant == "no_penalty":
        return _rewrite(model, _drop_penalty), False
    if variant == "no_batch_norm":
        return _rewrite(model, _drop_batch_norm), False
    if variant == "channels_first":
        return _rewrite(model, _to_channels_first), False
    if variant == "logits":
        clone = _rewrite(model, lambda entry: None)
        return keras.Model(clone.input, clone.get_layer("probabilities").input), True
    raise ValueError(f"variant: got {variant!r}; expected one of {sorted(VARIANTS)}")


def torch_variant(name, variant, num_classes, images, labels, seed, mixed_precision=False):
    """The PyTorch side of `variant`: the reference network (channels_last) and its step.

    Returns:
        A tuple `(net, step)`: the `Table7Net` and a `torch_reference.TorchStep` on it.
    """
    torch.manual_seed(seed)
    net = torch_reference.Table7Net(name, num_classes, batch_norm=variant != "no_batch_norm")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    l2 = 0.0 if variant == "no_penalty" else 1e-4
    step = torch_reference.TorchStep(net, images, labels, device, True, mixed_precision, l2=l2)
    return net, step


def parse_args(argv=None):
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn32", choices=NETWORKS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=128)
    common.add_common_arguments(parser, steps=2, windows=6, warmup=2)
    return parser.parse_args(argv)


def measure(args):
    shape = (args.image_size, args.image_size, 3)
    images, labels = common.synthetic_batch(args.batch_size, args.num_classes, shape, args.seed)
    built = common.build(args.model, args.num_classes, args.image_size)
    jit_compile = common.jit_compile_value(args.jit_compile)
    steps, parameters = {}, {}
    for variant in sorted(set(VARIANTS[v] for v in args.variants)):
        net, steps[f"torch_{variant}"] = torch_variant(
            args.model, variant, args.num_classes, images, labels, args.seed, args.mixed_precision
        )
        parameters[f"torch_{variant}"] = torch_reference.parameter_count(net)
    for variant in args.variants:
        model, from_logits = keras_variant(built, variant)
        model.compile(
            optimizer=training.make_optimizer("sgd", args.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
            jit_compile=jit_compile,
        )
        batch = images.transpose(0, 3, 1, 2) if variant == "channels_first" else images
        steps[f"keras_{variant}"] = common.KerasStep(model, batch, labels)
        parameters[f"keras_{variant}"] = common.trainable_parameters(model)
    for variant in args.variants:
        ours, theirs = parameters[f"keras_{variant}"], parameters[f"torch_{VARIANTS[variant]}"]
        if ours != theirs:
            raise RuntimeError(
                f"{variant}: {ours} trainable parameters in Keras, {theirs} in PyTorch"
            )
    durations = common.interleaved_windows(steps, args.steps, args.windows, args.warmup)
    return {
        "model": args.model,
        "backend": keras.backend.backend(),
        "batch_size": args.batch_size,
        "throughput": {
            label: common.throughput(window_s, args.steps, args.batch_size)
            for label, window_s in durations.items()
        },
        # Time ratio PyTorch/Keras of adjacent windows = Keras speed over PyTorch speed.
        "keras_over_torch": {
            variant: common.paired_ratio(
                durations[f"torch_{VARIANTS[variant]}"], durations[f"keras_{variant}"]
            )
            for variant in args.variants
        },
    }


def main(argv=None):
    """Runs the ablation; returns {variant: Keras images/s over PyTorch images/s}."""
    args = parse_args(argv)
    common.set_precision(args.mixed_precision)
    result = measure(args)
    for variant, ratio in result["keras_over_torch"].items():
        keras_rate = result["throughput"][f"keras_{variant}"]["images_per_s"]
        torch_rate = result["throughput"][f"torch_{VARIANTS[variant]}"]["images_per_s"]
        print(
            f"{result['backend']:>10} {args.model} {variant:>15}: Keras {keras_rate:.1f}, "
            f"PyTorch {torch_rate:.1f} img/s; Keras/PyTorch {ratio['ratio']:.2f} "
            f"({ratio['ratio_ci_coverage']:.0%} interval "
            f"{ratio['ratio_ci_low']:.2f}-{ratio['ratio_ci_high']:.2f})",
            flush=True,
        )
    common.write_json(args.json, common.record(args, [result], torch_version=torch.__version__))
    return {variant: ratio["ratio"] for variant, ratio in result["keras_over_torch"].items()}


if __name__ == "__main__":
    main()
