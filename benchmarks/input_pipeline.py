"""Images/s of the input pipeline alone: normalization plus random crop and flip.

keras_rir's pipeline runs inside the model (`keras_rir.preprocessing.
with_preprocessing`): uint8 images go in, `Normalization` and `RandomCropFlip`
(training mode) come out. This script times that preprocessing on its own, in
the same interleaved windows as `rir32`'s training step on the same machine,
and reports the ratio. Goal: the pipeline >= 10x rir32's training throughput,
so that input never limits training.

Usage (from the repository root):
    KERAS_BACKEND=tensorflow python -m benchmarks.input_pipeline --json runs/input.json
"""

import keras
import numpy as np

from benchmarks import common
from keras_rir.preprocessing import with_preprocessing

GOAL = 10.0


class PreprocessStep:
    """One call of the preprocessing layers in training mode on a uint8 batch."""

    def __init__(self, preprocessed, images):
        # The layers before the wrapped network: normalization, random crop and flip.
        self.layers = [
            layer for layer in preprocessed.layers[1:] if not isinstance(layer, keras.Model)
        ]
        self.images = keras.ops.convert_to_tensor(images)

    def __call__(self):
        x = keras.ops.cast(self.images, "float32")
        for layer in self.layers:
            x = layer(x, training=True)
        return keras.ops.convert_to_numpy(x[0, 0, 0, 0])


def parse_args(argv=None):
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="rir32")
    parser.add_argument("--batch-size", type=int, default=500)
    return common.add_common_arguments(parser, steps=2, windows=5, warmup=1).parse_args(argv)


def main(argv=None):
    """Times preprocessing and training interleaved; returns the throughput ratio."""
    args = parse_args(argv)
    common.set_precision(args.mixed_precision)
    shape = (args.image_size, args.image_size, 3)
    rng = np.random.default_rng(args.seed)
    raw = rng.integers(0, 256, size=(args.batch_size, *shape), dtype=np.uint8)
    labels = rng.integers(0, args.num_classes, size=(args.batch_size,)).astype("int32")
    mean, std = raw.reshape(-1, 3).mean(0), raw.reshape(-1, 3).std(0)
    network = common.build(args.model, args.num_classes, args.image_size)
    model = with_preprocessing(network, mean, std, seed=args.seed)
    common.compile_for_training(model, args)
    steps = {
        "preprocessing": PreprocessStep(model, raw),
        "training": common.KerasStep(model, raw.astype("float32"), labels),
    }
    for step in steps.values():
        common.first_step_seconds(step)
    durations, rates = common.time_steps(steps, args, args.batch_size)
    ratio = common.paired_ratio(durations["training"], durations["preprocessing"])
    result = {
        "backend": keras.backend.backend(),
        "model": args.model,
        "batch_size": args.batch_size,
        "throughput": rates,
        "ratio": ratio,
        "goal": GOAL,
        "meets_goal": ratio["ratio"] >= GOAL,
    }
    print(
        f"{result['backend']:>10} preprocessing {rates['preprocessing']['images_per_s']:.0f} "
        f"img/s, {args.model} training (with preprocessing) "
        f"{rates['training']['images_per_s']:.1f} img/s: ratio {ratio['ratio']:.1f} "
        f"[{ratio['ratio_min']:.1f}, {ratio['ratio_max']:.1f}] (goal >= {GOAL:.0f})",
        flush=True,
    )
    common.write_record(args, [result])
    return ratio["ratio"]


if __name__ == "__main__":
    main()
