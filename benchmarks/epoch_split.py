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
- `train_on_batch`: the train step alone on batches already on the device (no input
  pipeline, no augmentation);
- `evaluate`: `model.evaluate` on as many images (the per-epoch validation's cost per image).

Reported per variant: seconds per 1,000 images (median over the rounds), and the split of a
`fit` epoch: train step, augmentation (`fit - fit_no_augment`), input pipeline and callbacks
(`fit_no_augment - train_on_batch`); a 50,000-image epoch with 10,000 validation images
is extrapolated from them.

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
    common.add_common_arguments(parser, steps=16, windows=3, warmup=0)
    return parser.parse_args(argv)


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


def variants(args, x, y):
    """{name: callable running one slice}, each compiled by one untimed call."""
    mean, std = data_lib.channel_stats(x)
    weights = common.build(args.model, args.num_classes, args.image_size).get_weights()
    fit_kwargs = {"batch_size": args.batch_size, "epochs": 1, "verbose": 0, "shuffle": True}
    models = {
        "fit": _training_model(args, weights, mean, std),
        "fit_no_augment": _training_model(args, weights, mean, std, augment=False),
    }
    if keras.backend.backend() != "torch":  # Keras allows only 1 on torch.
        models["fit_steps_per_execution"] = _training_model(
            args, weights, mean, std, steps_per_execution=args.steps_per_execution
        )
    if keras.backend.backend() != "jax":
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
    runs = variants(args, x, y)
    seconds = {name: [] for name in runs}
    for round_index in range(args.rounds):
        names = list(runs)[round_index % len(runs) :] + list(runs)[: round_index % len(runs)]
        for name in names:
            start = time.perf_counter()
            runs[name]()
            seconds[name].append((time.perf_counter() - start) * 1000 / len(x))
    per_1000 = {name: statistics.median(values) for name, values in seconds.items()}
    split = {
        "train_step": per_1000["train_on_batch"],
        "augmentation": per_1000["fit"] - per_1000["fit_no_augment"],
        "input_pipeline_and_callbacks": per_1000["fit_no_augment"] - per_1000["train_on_batch"],
    }
    epoch = {
        "training_s": 50 * per_1000["fit"],
        "validation_s": 10 * per_1000["evaluate"],
    }
    for name, value in per_1000.items():
        spread = f"{min(seconds[name]):.2f}-{max(seconds[name]):.2f}"
        print(f"{keras.backend.backend():>10} {name:>24}: {value:.2f} s / 1000 images ({spread})")
    print(
        "fit split: "
        + ", ".join(f"{k} {v / per_1000['fit']:.0%}" for k, v in split.items())
        + f"; 50,000-image epoch {epoch['training_s']:.0f} s + validation "
        f"{epoch['validation_s']:.0f} s",
        flush=True,
    )
    common.write_json(
        args.json,
        common.record(
            args, {"seconds_per_1000_images": seconds, "split": split, "epoch_estimate": epoch}
        ),
    )
    return per_1000


if __name__ == "__main__":
    main()
