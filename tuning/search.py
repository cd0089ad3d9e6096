"""The paper's hyperparameter search (section 3) with KerasTuner, on one machine or many.

Searches learning rate, L2 penalty, initializer, optimizer and shortcut type
for a `keras_rir.models` network, maximizing accuracy on examples held out from
the training set (never the test set). Prints a line per trial; at the end
writes `trials.csv`, `best.json` and `trials.png` in the project directory,
prints the best trials and the test accuracy of the best trial's model (its
best-epoch checkpoint evaluated on the test set, without retraining).

Run again with the same command, an interrupted search resumes: finished
trials are kept and the interrupted one is rerun.

Examples:
    # A small search: 2 optimizers x 2 shortcuts, 1 epoch on 5,000 images.
    python tuning/search.py --model rir32 \\
        --max-train-examples 5000 --validation-examples 1000 --epochs 1 --batch-size 128 \\
        --learning-rates 0.1 --l2 1e-4 --initializers he --optimizers sgd nesterov \\
        --shortcuts projection identity --directory /tmp/search

    # The same with KerasTuner's chief and two workers on this machine; a worker that dies
    # is restarted and gets its trial back (see tuning/distributed.sh).
    bash tuning/distributed.sh 2 python tuning/search.py ...

    # On several machines sharing the project directory: one chief, and any
    # number of workers, each with a unique KERASTUNER_TUNER_ID.
    KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 \\
        python tuning/search.py ... --directory /shared/search
    KERASTUNER_TUNER_ID=tuner0 KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 \\
        python tuning/search.py ... --directory /shared/search
"""

import argparse
import json
import math
import os
import time

import keras
import plots

from keras_rir import cli, data, reporting, tuning
from keras_rir.training import PAPER_RECIPE


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rir32", help="a keras_rir.models builder")
    parser.add_argument(
        "--model-kwargs",
        default="{}",
        help="JSON of other builder arguments, e.g. '{\"num_blocks\": 9}'",
    )
    cli.add_data_arguments(parser)
    parser.add_argument("--validation-examples", type=int, default=5000)
    parser.add_argument(
        "--epochs", type=int, default=PAPER_RECIPE.epochs, help="training epochs per trial"
    )
    parser.add_argument("--batch-size", type=int, default=PAPER_RECIPE.batch_size)
    parser.add_argument("--schedule", default="paper", choices=tuning.SCHEDULES)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tuner", default="grid", choices=tuning.TUNERS)
    parser.add_argument("--max-trials", type=int, default=None, help="default: the whole grid")
    parser.add_argument(
        "--learning-rates", type=float, nargs="+", default=tuning.DEFAULT_LEARNING_RATES
    )
    parser.add_argument("--l2", type=float, nargs="+", default=tuning.DEFAULT_L2)
    parser.add_argument(
        "--initializers",
        nargs="+",
        default=tuning.DEFAULT_INITIALIZERS,
        choices=tuning.INITIALIZERS,
    )
    parser.add_argument(
        "--optimizers", nargs="+", default=tuning.DEFAULT_OPTIMIZERS, choices=tuning.OPTIMIZERS
    )
    parser.add_argument(
        "--shortcuts", nargs="+", default=tuning.DEFAULT_SHORTCUTS, choices=tuning.DEFAULT_SHORTCUTS
    )
    parser.add_argument("--directory", default="runs/search")
    parser.add_argument("--project-name", default=None, help="default: <model>_<dataset>_<tuner>")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hyperband-factor", type=int, default=3)
    parser.add_argument("--max-retries", type=int, default=0, help="reruns of a trial that fails")
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--top", type=int, default=10, help="trials in the printed table")
    args = parser.parse_args(argv)
    args.project_name = args.project_name or f"{args.model}_{args.dataset}_{args.tuner}"
    args.model_kwargs = json.loads(args.model_kwargs)
    args.jit_compile = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    return args


def main(argv=None):
    args = parse_args(argv)
    # KerasTuner's distributed mode: the chief serves the oracle, workers ask it for trials.
    worker = (
        "KERASTUNER_ORACLE_IP" in os.environ
        and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"
    )

    cifar = data.load_cifar(
        args.dataset,
        args.data_dir,
        label_mode=args.label_mode,
        max_train_examples=args.max_train_examples,
    )
    train, (x_val, y_val) = data.holdout(cifar, args.validation_examples, seed=args.seed)
    mean, std = data.channel_stats(train.x_train)
    hypermodel = tuning.RiRHyperModel(
        args.model,
        num_classes=cifar.num_classes,
        input_shape=cifar.x_train.shape[1:],
        epochs=args.epochs,
        batch_size=args.batch_size,
        schedule=args.schedule,
        model_kwargs=args.model_kwargs,
        learning_rates=args.learning_rates,
        l2=args.l2,
        initializers=args.initializers,
        optimizers=args.optimizers,
        shortcuts=args.shortcuts,
        mean=mean,
        std=std,
        augment=args.augment,
        seed=args.seed,
        jit_compile=args.jit_compile,
    )
    tuner = tuning.make_tuner(
        hypermodel,
        args.tuner,
        max_trials=args.max_trials,
        directory=args.directory,
        project_name=args.project_name,
        # A worker must never delete the project that the chief serves.
        overwrite=args.overwrite and not worker,
        seed=args.seed,
        hyperband_factor=args.hyperband_factor,
        max_retries_per_trial=args.max_retries,
    )
    project = tuning.project_dir(tuner)
    print(
        f"[{tuner.tuner_id}] {args.tuner} search of {hypermodel.grid_size} grid points "
        f"on {len(train.y_train)} training and {len(y_val)} validation examples, "
        f"{keras.backend.backend()} backend, in {project}",
        flush=True,
    )
    start = time.perf_counter()
    tuner.search(train.x_train, train.y_train, validation_data=(x_val, y_val), verbose=0)
    if worker:
        return None
    search_seconds = time.perf_counter() - start

    rows = tuning.trial_rows(tuner.oracle)
    tuning.write_trials_csv(rows, os.path.join(project, "trials.csv"))
    plots.plot_trials(rows, os.path.join(project, "trials.png"))
    test = tuning.evaluate_best(tuner, cifar.x_test, cifar.y_test, batch_size=args.batch_size)
    best = tuning.write_best_json(
        rows,
        os.path.join(project, "best.json"),
        extra={
            "test_accuracy": test and test["test_accuracy"],
            "test_loss": test and test["test_loss"],
            "test_evaluation": "best trial's best-epoch checkpoint on the test set, no retraining",
            "search_seconds_this_run": search_seconds,
            "trial_seconds_total": sum(
                row["wall_time"] for row in rows if not math.isnan(row["wall_time"])
            ),
            "grid_size": hypermodel.grid_size,
            "settings": vars(args),
            "environment": reporting.environment(),
        },
    )
    print(f"\n{len(rows)} trials ({best['num_completed']} completed) in {project}")
    print(tuning.format_table(rows, top=args.top))
    if test:
        print(
            f"\nbest trial {test['trial_id']}: validation accuracy "
            f"{best['best_trial']['val_accuracy']:.4f}, test accuracy {test['test_accuracy']:.4f}"
        )
    return test and test["test_accuracy"]


if __name__ == "__main__":
    main()
