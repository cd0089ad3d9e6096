"""`keras-rir`, the command line: `keras-rir train` trains a network with the paper's recipe.

Installed with the package as the `keras-rir` command (also `python -m keras_rir`).
The recipe flags are generated from the fields of `keras_rir.training.Recipe`,
and `--budget` picks a named recipe of `keras_rir.training.BUDGETS` (`paper`,
the default, or `quick`, about 10 minutes of `rir32` on a 2-core CPU); a flag
given changes that field only. `tuning/search.py` and the experiment scripts of
`examples/` share these flag builders.

Example:
    keras-rir train --budget quick --mixed-precision
    KERAS_BACKEND=jax keras-rir train --model wide_rir18 --dataset cifar100 --epochs 10
"""

import argparse
import dataclasses
import json
import os
import sys

__all__ = ["add_data_arguments", "add_recipe_arguments", "main", "recipe_from_args"]

_RECIPE_HELP = {
    "epochs": "passes over the training set (the learning-rate decays scale with it)",
    "batch_size": "global minibatch size",
    "learning_rate": "initial learning rate (not in the paper; measured)",
    "optimizer": "sgd (momentum), nesterov, adam or rmsprop",
    "momentum": "momentum of sgd and nesterov",
    "l2": "L2 penalty of every kernel",
    "decay_epochs": "epochs after which the learning rate decays (default: scaled to --epochs)",
    "decay_factor": "multiplier of each decay",
    "kernel_initializer": "base initializer of every weight tensor (he_normal: MSR)",
}


def add_recipe_arguments(parser):
    """Adds `--budget` and one flag per field of `keras_rir.training.Recipe` to `parser`.

    Args:
        parser: an `argparse.ArgumentParser`.

    Returns:
        `parser`; `recipe_from_args` turns its parsed flags into a `Recipe`.

    Example:
    >>> parser = keras_rir.cli.add_recipe_arguments(argparse.ArgumentParser())
    >>> keras_rir.cli.recipe_from_args(parser.parse_args(["--epochs", "10"])).decay_epochs
    (5, 8)
    """
    from keras_rir import training

    group = parser.add_argument_group("recipe (defaults: the --budget's recipe)")
    group.add_argument(
        "--budget",
        default="paper",
        choices=sorted(training.BUDGETS),
        help="named recipe: paper (section 3: 82 epochs, batch 500) or quick (5 epochs, "
        "batch 128, about 10 minutes of rir32 on a 2-core CPU) (default: %(default)s)",
    )
    for field in dataclasses.fields(training.Recipe):
        default = field.default
        flag = "--" + field.name.replace("_", "-")
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{_RECIPE_HELP[field.name]} (paper: {shown})"
        if isinstance(default, tuple):
            group.add_argument(flag, type=int, nargs="*", help=help_text)
        elif field.name == "optimizer":
            group.add_argument(flag, choices=training.OPTIMIZERS, help=help_text)
        else:
            group.add_argument(flag, type=type(default), help=help_text)
    return parser


def recipe_from_args(args):
    """The `Recipe` of parsed `add_recipe_arguments` flags: the budget's, changed by each flag.

    Args:
        args: the `argparse.Namespace`.

    Returns:
        A `keras_rir.training.Recipe`.
    """
    from keras_rir import training

    changes = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(training.Recipe)
        if getattr(args, field.name) is not None
    }
    return training.BUDGETS[args.budget].replace(**changes)


def add_data_arguments(parser):
    """Adds `--dataset`, `--data-dir`, `--label-mode` and `--max-train-examples` to `parser`.

    Args:
        parser: an `argparse.ArgumentParser`.

    Returns:
        `parser`; the flags are the arguments of `keras_rir.data.load_cifar`.
    """
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"))
    group.add_argument(
        "--data-dir",
        help="local copy in the original binary layout (directory or .tar.gz); default: "
        "$KERAS_RIR_DATA_DIR, else the official archive, fetched once into the Keras cache",
    )
    group.add_argument(
        "--label-mode", default="fine", choices=("fine", "coarse"), help="CIFAR-100 labels"
    )
    group.add_argument("--max-train-examples", type=int, help="train on the first N images only")
    return parser


def _train_parser(subparsers):
    from keras_rir import models

    parser = subparsers.add_parser(
        "train",
        help="train a network on CIFAR with the paper's recipe",
        description="Trains a keras_rir network on CIFAR-10 or CIFAR-100, resumably: run the "
        "same command again after an interruption. Writes results.json, log.csv, curves.png, "
        "model.keras and best.keras into --output-dir.",
    )
    parser.add_argument("--model", default="rir32", choices=models.list_models())
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help='JSON of further builder arguments, e.g. \'{"num_blocks": 9, '
        '"layers_per_block": 2}\' for --model rir or resnet',
    )
    add_data_arguments(parser)
    add_recipe_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir", help="run directory (default: runs/<model>_<dataset>); resumes from it"
    )
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="bfloat16 compute (mixed_bfloat16): 1.4-1.9x faster on CPUs with AVX-512 BF16",
    )
    parser.add_argument(
        "--distribute", action="store_true", help="data parallel over all local devices"
    )
    parser.add_argument("--no-augment", action="store_true", help="no random crop and flip")
    parser.add_argument("--tensorboard", action="store_true", help="also log for TensorBoard")
    parser.add_argument("--verbose", default="auto", help="verbose of model.fit: auto, 0, 1, 2")
    return parser


def _parse(argv):
    parser = argparse.ArgumentParser(prog="keras-rir", description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    train_parser = _train_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        args.recipe = recipe_from_args(args)
        if args.distribute:
            from keras_rir import distribution

            distribution.check_supported()
    except ValueError as error:
        train_parser.error(str(error))
    return train_parser, args


def _train(parser, args):
    import keras

    from keras_rir import data, training

    try:
        dataset = data.load_cifar(
            args.dataset,
            data_dir=args.data_dir,
            label_mode=args.label_mode,
            max_train_examples=args.max_train_examples,
        )
    except data.DatasetUnavailableError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    output_dir = args.output_dir or os.path.join("runs", f"{args.model}_{args.dataset}")
    print(
        f"{dataset!r} on {keras.backend.backend()}; {args.budget} budget: {args.recipe}; "
        f"writing {output_dir}",
        flush=True,
    )
    results = training.train(
        args.model,
        dataset,
        output_dir,
        args.recipe,
        seed=args.seed,
        model_kwargs=args.model_kwargs,
        augment=not args.no_augment,
        distribute=args.distribute,
        mixed_precision=args.mixed_precision,
        tensorboard=args.tensorboard,
        verbose=args.verbose if args.verbose == "auto" else int(args.verbose),
    )
    files = ", ".join(os.path.join(output_dir, name) for name in ("results.json", "curves.png"))
    print(
        f"test accuracy {results['test_accuracy']:.4f} (test loss {results['test_loss']:.4f}) "
        f"after {results['epochs']} epochs, {results['wall_time_seconds']:.0f} s, "
        f"{results['train_images_per_second'] or 0:.0f} training images/s; see {files}",
        flush=True,
    )


def main(argv=None):
    """Runs `keras-rir <command> [flags]`; the results go to the command's output folder.

    Returns None, so that the console script (`sys.exit(main())`) exits with status 0; bad
    flags exit with status 2 (argparse).

    Args:
        argv: the arguments (default: `sys.argv[1:]`).
    """
    parser, args = _parse(sys.argv[1:] if argv is None else argv)
    _train(parser, args)
