"""Trains a keras_rir model on CIFAR-10 or CIFAR-100 with the paper's recipe.

Defaults are the recipe of arXiv:1603.08029 (section 3): SGD with momentum 0.9,
batch 500, L2 1e-4, 82 epochs, learning rate x0.1 after epochs 42 and 62, random
crop and flip. Runs on the TensorFlow, JAX and PyTorch backends
(`KERAS_BACKEND=...`); reading a local copy (`--data-dir`) needs no TensorFlow.

Usage (from the repository root, after `pip install -e .` or with `PYTHONPATH=.`):

    KERAS_BACKEND=jax python examples/train_cifar.py --model rir32 \\
        --data-dir /path/to/cifar10 --output-dir runs/rir32_cifar10

Interrupted (Ctrl-C, kill, preemption)? Run the same command again: it resumes
after the last finished epoch from the backup in `--output-dir`.

Writes into `--output-dir`: `results.json` (test accuracy and loss, per-epoch
history, timings, hyperparameters, environment), `log.csv`, `model.keras`,
`best.keras` and `curves.png`. `main()` returns the test accuracy.
"""

import argparse
import json
import os

import keras

import keras_rir
from keras_rir import data as data_lib
from keras_rir import distribution, training

RECIPE = training.PAPER_RECIPE


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="rir32", choices=keras_rir.models.list_models())
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help='JSON of further builder arguments, e.g. \'{"num_blocks": 9, '
        '"layers_per_block": 2}\' for --model rir or resnet',
    )
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"))
    parser.add_argument(
        "--data-dir",
        help="local copy in the original binary layout (directory or .tar.gz); "
        "without it, tensorflow-datasets is used",
    )
    parser.add_argument(
        "--label-mode", default="fine", choices=("fine", "coarse"), help="CIFAR-100 labels"
    )
    parser.add_argument("--epochs", type=int, default=RECIPE.epochs)
    parser.add_argument("--batch-size", type=int, default=RECIPE.batch_size)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=RECIPE.learning_rate,
        help="initial learning rate (not in the paper; the default was measured)",
    )
    parser.add_argument("--l2", type=float, default=RECIPE.l2)
    parser.add_argument("--optimizer", default=RECIPE.optimizer, choices=training.OPTIMIZERS)
    parser.add_argument("--momentum", type=float, default=RECIPE.momentum)
    parser.add_argument("--max-train-examples", type=int, help="train on the first N examples only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir", help="run directory (default: runs/<model>_<dataset>); resumes from it"
    )
    parser.add_argument(
        "--distribute", action="store_true", help="data parallel over all local devices"
    )
    parser.add_argument(
        "--mixed-precision", action="store_true", help="bfloat16 compute (mixed_bfloat16)"
    )
    parser.add_argument("--no-augment", action="store_true", help="no random crop and flip")
    parser.add_argument("--tensorboard", action="store_true", help="also log for TensorBoard")
    parser.add_argument("--verbose", default="auto", help="verbose of model.fit: auto, 0, 1, 2")
    args = parser.parse_args(argv)
    if args.distribute:
        try:
            distribution.check_supported()
        except ValueError as error:
            parser.error(str(error))
    return parser, args


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        data = data_lib.load_cifar(
            args.dataset,
            data_dir=args.data_dir,
            label_mode=args.label_mode,
            max_train_examples=args.max_train_examples,
        )
    except data_lib.DatasetUnavailableError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    output_dir = args.output_dir or os.path.join("runs", f"{args.model}_{args.dataset}")
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    print(f"{data!r} on {keras.backend.backend()}; writing {output_dir}", flush=True)
    results = training.train(
        args.model,
        data,
        output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        l2=args.l2,
        seed=args.seed,
        optimizer=args.optimizer,
        momentum=args.momentum,
        model_kwargs=args.model_kwargs,
        augment=not args.no_augment,
        distribute=args.distribute,
        mixed_precision=args.mixed_precision,
        tensorboard=args.tensorboard,
        verbose=verbose,
    )
    print(
        f"test accuracy {results['test_accuracy']:.4f}, test loss {results['test_loss']:.4f} "
        f"after {results['epochs']} epochs; {results['train_images_per_second'] or 0:.0f} "
        f"training images/s; {results['wall_time_seconds']:.0f} s; {output_dir}/results.json",
        flush=True,
    )
    return results["test_accuracy"]


if __name__ == "__main__":
    main()
