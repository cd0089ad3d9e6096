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

NETWORKS = ("cnn32", "wide_cnn18")
# Keras variant -> the PyTorch variant it is divided by.
VARIANTS = {
    "as_built": "as_built",
    "no_penalty": "no_penalty",
    "no_batch_norm": "no_batch_norm",
    "logits": "as_built",
    "channels_first": "as_built",
}


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
        return common.rebuild(model, lambda entry: None), False
    if variant == "no_penalty":
        return common.rebuild(model, _drop_penalty), False
    if variant == "no_batch_norm":
        return common.rebuild(model, _drop_batch_norm), False
    if variant == "channels_first":
        return common.rebuild(model, _to_channels_first), False
    if variant == "logits":
        clone = common.rebuild(model, lambda entry: None)
        return keras.Model(clone.input, clone.get_layer("probabilities").input), True
    raise ValueError(f"variant: got {variant!r}; expected one of {sorted(VARIANTS)}")


def torch_variant(name, variant, num_classes, images, labels, seed, mixed_precision=False):
    """The PyTorch side of `variant`: the reference network (channels_last) and its step.

    Returns:
        A tuple `(net, step)`: the `Table7Net` and a `torch_reference.TorchStep` on it.
    """
    torch.manual_seed(seed)
    net = torch_reference.Table7Net(name, num_classes, batch_norm=variant != "no_batch_norm")
    l2 = 0.0 if variant == "no_penalty" else 1e-4
    return net, torch_reference.TorchStep(net, images, labels, True, mixed_precision, l2)


def parse_args(argv=None):
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn32", choices=NETWORKS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=128)
    return common.add_common_arguments(parser, steps=2, windows=6, warmup=2).parse_args(argv)


def measure(args):
    images, labels = common.synthetic_batch(args.batch_size, args)
    built = common.build(args.model, args.num_classes, args.image_size)
    steps, torch_parameters = {}, {}
    for variant in sorted(set(VARIANTS[v] for v in args.variants)):
        net, steps[f"torch_{variant}"] = torch_variant(
            args.model, variant, args.num_classes, images, labels, args.seed, args.mixed_precision
        )
        torch_parameters[variant] = torch_reference.parameter_count(net)
    for variant in args.variants:
        model, from_logits = keras_variant(built, variant)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        common.compile_for_training(model, args, loss)
        batch = images.transpose(0, 3, 1, 2) if variant == "channels_first" else images
        steps[f"keras_{variant}"] = common.KerasStep(model, batch, labels)
        ours, theirs = common.trainable_parameters(model), torch_parameters[VARIANTS[variant]]
        if ours != theirs:
            raise RuntimeError(
                f"{variant}: {ours} trainable parameters in Keras, {theirs} in PyTorch"
            )
    durations, rates = common.time_steps(steps, args, args.batch_size)
    return {
        "model": args.model,
        "backend": keras.backend.backend(),
        "batch_size": args.batch_size,
        "throughput": rates,
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
    common.write_record(args, [result], torch_version=torch.__version__)
    return {variant: ratio["ratio"] for variant, ratio in result["keras_over_torch"].items()}


if __name__ == "__main__":
    main()
