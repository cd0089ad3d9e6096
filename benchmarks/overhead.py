"""Overhead ratios, each pair timed in interleaved windows (A, B, A, B, ...) in one process.

The paper's claim, "no computational overhead": a generalized residual block is
one ordinary convolution with another initialization and decay. Pairs (time per
step of A over B at the same batch, goal in brackets):

- `resnet_init32/cnn32`, `rir32/resnet32`, and the wide pairs: generalized
  against plain blocks of the same width (<= 1.02);
- `rir32/cnn32`: RiR also carries the projection shortcuts and the additions
  (reported, no goal);
- `explicit/fused`: rir32 with `implementation="explicit"` (four convolutions
  per unit) over the fused layer: what fusion saves (reported);
- `decay/l2`: resnet_init32 with PartialIdentityDecay over the same model and
  weights with plain `keras.regularizers.L2` (<= 1.01);
- `fused_bn/keras_bn`: rir32 as built (`keras_rir.normalization.BatchNormalization`,
  the backend's fused kernel) over the same model and weights with
  `keras.layers.BatchNormalization`: what the fused batch normalization saves
  (reported).

Usage (from the repository root):
    KERAS_BACKEND=tensorflow python -m benchmarks.overhead --json runs/overhead_tf.json
"""

import keras

from benchmarks import common
from keras_rir.initializers import ResNetInitInitializer

# name -> (builder name and kwargs of A, of B, goal on the time ratio A/B or None).
PAIRS = {
    "resnet_init32/cnn32": (("resnet_init32", {}), ("cnn32", {}), 1.02),
    "rir32/resnet32": (("rir32", {}), ("resnet32", {}), 1.02),
    "rir32/cnn32": (("rir32", {}), ("cnn32", {}), None),
    "explicit/fused": (("rir32", {"implementation": "explicit"}), ("rir32", {}), None),
    "decay/l2": (("resnet_init32", {}), ("resnet_init32", {"plain_l2": True}), 1.01),
    "fused_bn/keras_bn": (("rir32", {}), ("rir32", {"keras_batch_norm": True}), None),
    "wide_resnet_init18/wide_cnn18": (("wide_resnet_init18", {}), ("wide_cnn18", {}), 1.02),
    "wide_rir18/wide_resnet18": (("wide_rir18", {}), ("wide_resnet18", {}), 1.02),
}
WIDE_PAIRS = ("wide_resnet_init18/wide_cnn18", "wide_rir18/wide_resnet18")


def with_plain_l2(model):
    """The same network and weights with plain `L2` in place of `PartialIdentityDecay`.

    Clones `model` through its config: every `GeneralizedResidualConv2D`
    becomes a `keras.layers.Conv2D` (no bias) with the same ResNet Init
    initializer and `keras.regularizers.L2(l2)`, so that the two models differ
    only in the regularizer's formula; the weights are copied.

    Args:
        model: a functional keras_rir model.

    Returns:
        A new `keras.Model`.
    """
    config = common.graph_config(model)
    for layer in config["layers"]:
        if layer["class_name"] != "GeneralizedResidualConv2D":
            continue
        layer_config = layer["config"]
        base = keras.initializers.deserialize(layer_config.pop("kernel_initializer"))
        fraction = layer_config.pop("residual_fraction")
        l2 = layer_config.pop("l2")
        layer_config.update(
            use_bias=False,
            kernel_initializer=keras.initializers.serialize(ResNetInitInitializer(base, fraction)),
            kernel_regularizer=keras.regularizers.serialize(keras.regularizers.L2(l2)),
        )
        layer.update(module="keras.layers", class_name="Conv2D", registered_name=None)
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def with_keras_batch_norm(model):
    """The same network and weights with `keras.layers.BatchNormalization` in every BN layer.

    Args:
        model: a functional keras_rir model.

    Returns:
        A new `keras.Model` whose batch normalization runs Keras' own code.
    """
    config = common.graph_config(model)
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer.update(module="keras.layers", registered_name=None)
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def build_variant(name, kwargs, args, reference=None):
    kwargs = dict(kwargs)
    if kwargs.pop("plain_l2", False):
        return with_plain_l2(reference)
    if kwargs.pop("keras_batch_norm", False):
        return with_keras_batch_norm(reference)
    return common.build(name, args.num_classes, args.image_size, **kwargs)


def parse_args(argv=None):
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--wide-steps",
        type=int,
        default=1,
        help="steps per window for the wide pairs (about 10x slower per step)",
    )
    common.add_common_arguments(parser, steps=4, windows=6, warmup=2)
    return parser.parse_args(argv)


def measure(pair, args):
    (name_a, kwargs_a), (name_b, kwargs_b), goal = PAIRS[pair]
    model_a = build_variant(name_a, kwargs_a, args)
    model_b = build_variant(name_b, kwargs_b, args, reference=model_a)
    images, labels = common.synthetic_batch(
        args.batch_size, args.num_classes, (args.image_size, args.image_size, 3), args.seed
    )
    jit_compile = common.jit_compile_value(args.jit_compile)
    steps = {}
    for label, model in (("a", model_a), ("b", model_b)):
        common.compile_for_training(model, args.learning_rate, jit_compile)
        steps[label] = common.KerasStep(model, images, labels)
    first = {label: common.first_step_seconds(step) for label, step in steps.items()}
    steps_per_window = args.wide_steps if pair in WIDE_PAIRS else args.steps
    durations = common.interleaved_windows(steps, steps_per_window, args.windows, args.warmup)
    result = {
        "pair": pair,
        "backend": keras.backend.backend(),
        "batch_size": args.batch_size,
        "steps_per_window": steps_per_window,
        "goal": goal,
        "first_step_s_a": first["a"],
        "first_step_s_b": first["b"],
        **common.paired_ratio(durations["a"], durations["b"]),
        "images_per_s_a": common.throughput(durations["a"], steps_per_window, args.batch_size),
        "images_per_s_b": common.throughput(durations["b"], steps_per_window, args.batch_size),
        "multiply_adds_a": common.model_record(model_a)["multiply_adds_per_image"],
        "multiply_adds_b": common.model_record(model_b)["multiply_adds_per_image"],
    }
    # The goal is met (or missed) for sure only if the median's interval is on one side of it.
    result["meets_goal"] = None if goal is None else result["ratio"] <= goal
    result["goal_resolved"] = goal is not None and (
        result["ratio_ci_high"] <= goal or result["ratio_ci_low"] > goal
    )
    keras.utils.clear_session(free_memory=True)
    return result


def main(argv=None):
    """Runs the pairs; returns {pair: median time ratio A/B}."""
    args = parse_args(argv)
    common.set_precision(args.mixed_precision)
    results = []
    for pair in args.pairs:
        result = measure(pair, args)
        results.append(result)
        goal = "report" if result["goal"] is None else f"goal <= {result['goal']:.2f}"
        print(
            f"{result['backend']:>10} {pair:>30}: {result['ratio']:.3f} "
            f"({result['ratio_ci_coverage']:.0%} interval "
            f"{result['ratio_ci_low']:.3f}-{result['ratio_ci_high']:.3f}, "
            f"range {result['ratio_min']:.3f}-{result['ratio_max']:.3f})  ({goal})  "
            f"A {result['images_per_s_a']['images_per_s']:.1f} img/s, "
            f"B {result['images_per_s_b']['images_per_s']:.1f} img/s",
            flush=True,
        )
    common.write_json(args.json, common.record(args, results))
    return {result["pair"]: result["ratio"] for result in results}


if __name__ == "__main__":
    main()
