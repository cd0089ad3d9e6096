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

from benchmarks import common, flops
from keras_rir.initializers import ResNetInitInitializer


def _to_plain_l2(entry):
    if entry["class_name"] == "GeneralizedResidualConv2D":
        config = entry["config"]
        base = keras.initializers.deserialize(config.pop("kernel_initializer"))
        initializer = ResNetInitInitializer(base, config.pop("residual_fraction"))
        regularizer = keras.regularizers.L2(config.pop("l2"))
        config.update(
            use_bias=False,
            kernel_initializer=keras.initializers.serialize(initializer),
            kernel_regularizer=keras.regularizers.serialize(regularizer),
        )
        entry.update(module="keras.layers", class_name="Conv2D", registered_name=None)


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
    return common.rebuild(model, _to_plain_l2, copy_weights=True)


def _to_keras_batch_norm(entry):
    if entry["class_name"] == "BatchNormalization":
        entry.update(module="keras.layers", registered_name=None)


def with_keras_batch_norm(model):
    """The same network and weights with `keras.layers.BatchNormalization` in every BN layer.

    Args:
        model: a functional keras_rir model.

    Returns:
        A new `keras.Model` whose batch normalization runs Keras' own code.
    """
    return common.rebuild(model, _to_keras_batch_norm, copy_weights=True)


# name -> (builder name and kwargs of A; of B, a builder name or a function of model A;
# goal on the time ratio A/B or None).
PAIRS = {
    "resnet_init32/cnn32": ("resnet_init32", {}, "cnn32", 1.02),
    "rir32/resnet32": ("rir32", {}, "resnet32", 1.02),
    "rir32/cnn32": ("rir32", {}, "cnn32", None),
    "explicit/fused": ("rir32", {"implementation": "explicit"}, "rir32", None),
    "decay/l2": ("resnet_init32", {}, with_plain_l2, 1.01),
    "fused_bn/keras_bn": ("rir32", {}, with_keras_batch_norm, None),
    "wide_resnet_init18/wide_cnn18": ("wide_resnet_init18", {}, "wide_cnn18", 1.02),
    "wide_rir18/wide_resnet18": ("wide_rir18", {}, "wide_resnet18", 1.02),
}


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
    return common.add_common_arguments(parser, steps=4, windows=6, warmup=2).parse_args(argv)


def measure(pair, args):
    name_a, kwargs_a, b, goal = PAIRS[pair]
    model_a = common.build(name_a, args.num_classes, args.image_size, **kwargs_a)
    model_b = b(model_a) if callable(b) else common.build(b, args.num_classes, args.image_size)
    batch = common.synthetic_batch(args.batch_size, args)
    steps = {}
    for label, model in (("a", model_a), ("b", model_b)):
        steps[label] = common.KerasStep(common.compile_for_training(model, args), *batch)
    first = {label: common.first_step_seconds(step) for label, step in steps.items()}
    steps_per_window = args.wide_steps if pair.startswith("wide") else args.steps
    durations, rates = common.time_steps(steps, args, args.batch_size, steps_per_window)
    result = {
        "pair": pair,
        "backend": keras.backend.backend(),
        "batch_size": args.batch_size,
        "steps_per_window": steps_per_window,
        "goal": goal,
        "first_step_s_a": first["a"],
        "first_step_s_b": first["b"],
        **common.paired_ratio(durations["a"], durations["b"]),
        "images_per_s_a": rates["a"],
        "images_per_s_b": rates["b"],
        "multiply_adds_a": flops.multiply_adds(model_a),
        "multiply_adds_b": flops.multiply_adds(model_b),
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
    common.write_record(args, results)
    return {result["pair"]: result["ratio"] for result in results}


if __name__ == "__main__":
    main()
