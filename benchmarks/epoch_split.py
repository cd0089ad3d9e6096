"""Where the wall time of a real `model.fit` epoch goes, on the current backend.

The training model of `keras_rir.training.train` (normalization, random crop and flip,
the network; the recipe's optimizer) fits slices of `--steps` batches of uint8 images,
and is timed in these variants, interleaved round by round after one untimed slice each
(compilation):

- `fit`: `model.fit` as `train()` runs it;
- `fit_no_augment`: the same without the random crop and flip;
- `fit_steps_per_execution` (TensorFlow and JAX):
  `compile(steps_per_execution=--steps-per-execution)`;
- `fit_jit` (TensorFlow and torch): `compile(jit_compile=True)` (JAX always compiles);
  `--compile-variants` picks which of these two run (both by default);
- `train_on_batch`: the train step alone on batches already on the device (no input
  pipeline, no augmentation);
- `evaluate`: `model.evaluate` on as many images (the per-epoch validation's cost per image).

Reported per variant: seconds per 1,000 images (median over the rounds); for the `fit`
variants also the part spent between its steps' first start and last end (`in_steps`) and
the rest of the call (`outside_steps`: building and tearing down the epoch's data iterator;
a fixed cost per epoch, not per image). The split of a `fit` epoch: train step, augmentation
(`fit - fit_no_augment`, in steps), input pipeline and callbacks (`fit_no_augment -
train_on_batch`, in steps) and the per-epoch cost outside the steps; a 50,000-image epoch
with 10,000 validation images is extrapolated from them.

Usage (from the repository root):
    KERAS_BACKEND=tensorflow python -m benchmarks.epoch_split --data-dir /path/to/cifar10
"""

import statistics
import time

import keras
import numpy as np

from benchmarks import common
from keras_rir import data as data_lib
from keras_rir import preprocessing, training


def parse_args(argv=None):
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="rir32", choices=common.TABLE7)
    parser.add_argument("--data-dir", help="real CIFAR-10 (else synthetic uint8 images)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps-per-execution", type=int, default=8)
    parser.add_argument(
        "--compile-variants",
        nargs="*",
        default=["steps_per_execution", "jit"],
        choices=["steps_per_execution", "jit"],
        help="which compile() variants of fit to time besides the default (none: leave empty)",
    )
    return common.add_common_arguments(parser, steps=16, windows=3, warmup=0).parse_args(argv)


def _images(args):
    count = args.batch_size * args.steps
    if args.data_dir:
        if args.image_size != 32:
            raise SystemExit("--data-dir is CIFAR: 32 x 32 images (leave --image-size out)")
        data = data_lib.load_cifar("cifar10", data_dir=args.data_dir)
        return data.x_train[:count], data.y_train[:count].reshape(-1)
    rng = np.random.default_rng(args.seed)
    return (
        rng.integers(0, 256, (count, args.image_size, args.image_size, 3), dtype=np.uint8),
        rng.integers(0, 10, count).astype("int32"),
    )


def _training_model(args, weights, mean, std, augment=True, **compile_kwargs):
    network = common.build(args.model, args.num_classes, args.image_size)
    network.set_weights(weights)
    model = preprocessing.with_preprocessing(network, mean, std, augment=augment, seed=0)
    model.compile(
        optimizer=training.make_optimizer("sgd", args.learning_rate),
        loss="sparse_categorical_crossentropy",
        **compile_kwargs,
    )
    return model


class _StepClock(keras.callbacks.Callback):
    """Remembers when a `fit` call's first step began and its last step ended."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.first_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last_end = time.perf_counter()


def variants(args, x, y, clock):
    """{name: callable running one slice}, each compiled by one untimed call."""
    mean, std = data_lib.channel_stats(x)
    weights = common.build(args.model, args.num_classes, args.image_size).get_weights()
    fit_kwargs = dict(
        batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True, callbacks=[clock]
    )
    models = {
        "fit": _training_model(args, weights, mean, std),
        "fit_no_augment": _training_model(args, weights, mean, std, augment=False),
    }
    if "steps_per_execution" in args.compile_variants and keras.backend.backend() != "torch":
        # Keras allows only 1 on torch.
        models["fit_steps_per_execution"] = _training_model(
            args, weights, mean, std, steps_per_execution=args.steps_per_execution
        )
    if "jit" in args.compile_variants and keras.backend.backend() != "jax":
        models["fit_jit"] = _training_model(args, weights, mean, std, jit_compile=True)
    runs = {name: (lambda m=model: m.fit(x, y, **fit_kwargs)) for name, model in models.items()}
    batches = [
        (keras.ops.convert_to_tensor(x[i : i + args.batch_size]), y[i : i + args.batch_size])
        for i in range(0, len(x), args.batch_size)
    ]
    step_model = _training_model(args, weights, mean, std)
    runs["train_on_batch"] = lambda: [step_model.train_on_batch(bx, by) for bx, by in batches]
    runs["evaluate"] = lambda: models["fit"].evaluate(x, y, batch_size=500, verbose=0)
    for run in runs.values():
        run()
    return runs


def main(argv=None):
    """Times the variants; returns {variant: seconds per 1,000 images}."""
    args = parse_args(argv)
    common.set_precision(args.mixed_precision)
    x, y = _images(args)
    clock = _StepClock()
    runs = variants(args, x, y, clock)
    seconds = {name: [] for name in runs}
    in_steps = {name: [] for name in runs if name.startswith("fit")}
    for round_index in range(args.rounds):
        names = list(runs)[round_index % len(runs) :] + list(runs)[: round_index % len(runs)]
        for name in names:
            start = time.perf_counter()
            runs[name]()
            seconds[name].append((time.perf_counter() - start) * 1000 / len(x))
            if name in in_steps:
                in_steps[name].append((clock.last_end - clock.first_start) * 1000 / len(x))
    per_1000 = {name: statistics.median(values) for name, values in seconds.items()}
    steps_1000 = {name: statistics.median(values) for name, values in in_steps.items()}
    outside_s = {
        name: statistics.median(
            (total - inside) * len(x) / 1000
            for total, inside in zip(seconds[name], in_steps[name], strict=True)
        )
        for name in in_steps
    }
    split = {
        "train_step": per_1000["train_on_batch"],
        "augmentation": steps_1000["fit"] - steps_1000["fit_no_augment"],
        "input_pipeline_and_callbacks": steps_1000["fit_no_augment"] - per_1000["train_on_batch"],
    }
    epoch = {
        "training_s": 50 * steps_1000["fit"] + outside_s["fit"],
        "outside_steps_s": outside_s["fit"],
        "validation_s": 10 * per_1000["evaluate"],
    }
    for name, value in per_1000.items():
        spread = f"{min(seconds[name]):.2f}-{max(seconds[name]):.2f}"
        inside = (
            f"; in steps {steps_1000[name]:.2f}, outside steps {outside_s[name]:.2f} s per call"
            if name in steps_1000
            else ""
        )
        print(
            f"{keras.backend.backend():>10} {name:>24}: {value:.2f} s / 1000 images "
            f"({spread}){inside}"
        )
    print(
        "fit split per 1000 images in steps: "
        + ", ".join(f"{k} {v / steps_1000['fit']:.0%}" for k, v in split.items())
        + f"; 50,000-image epoch {epoch['training_s']:.0f} s (of which "
        f"{epoch['outside_steps_s']:.1f} s outside the steps) + validation "
        f"{epoch['validation_s']:.0f} s",
        flush=True,
    )
    results = {"seconds_per_1000_images": seconds, "in_steps_seconds_per_1000_images": in_steps}
    common.write_record(args, {**results, "split": split, "epoch_estimate": epoch})
    return per_1000


if __name__ == "__main__":
    main()
