"""Tables 1-4 of the paper, one run after another, with our accuracy beside the paper's.

Trains the 32-layer CNN, ResNet, ResNet Init and RiR of Table 3, the wide 18-layer
family of Tables 1 (CIFAR-10) and 2 (CIFAR-100) and ALL-CNN-C with standard init and
with ResNet Init (Table 4) with the paper's recipe (`keras_rir.training.train`), and
writes `tables.md` (ours beside the paper's, every row) and `tables.json` (every run:
hyperparameters, epochs, wall time, backend, device) into `--output-dir`. Each run
lives in `--output-dir/runs/<run id>/`; run the same command again after a crash and
finished runs are skipped, a killed run resumes after its last finished epoch.

Usage (from the repository root, with `PYTHONPATH=.` or after `pip install -e .`):

    KERAS_BACKEND=jax python examples/reproduce_tables.py \\
        --cifar10-dir /path/to/cifar10 --cifar100-dir /path/to/cifar100

    # The 32-layer family of Table 3 at a reduced budget (stated in tables.md):
    KERAS_BACKEND=jax python examples/reproduce_tables.py --table 3 \\
        --cifar10-dir /path/to/cifar10 --epochs 10 --max-train-examples 10000 \\
        --output-dir runs/table3_reduced

`--budget quick`, `--epochs`, `--max-train-examples`, `--max-test-examples` reduce the budget
(the recipe flags are `keras-rir train`'s); the report says so in its first line. `main()`
returns `{run id: test accuracy}`.
"""

import argparse

import experiments

TABLES = ("1", "2", "3", "4")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--table", nargs="+", choices=TABLES, default=list(TABLES))
    parser.add_argument(
        "--models", nargs="+", help="train only these model names (e.g. rir32 resnet_init32)"
    )
    experiments.add_budget_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    tables = experiments.main_tables()
    tables = [tables[f"table{key}"] for key in sorted(set(args.table))]
    summaries = experiments.run_from_args(args, tables, "tables.md", model_names=args.models)
    return {run_id: summary["test_accuracy"] for run_id, summary in summaries.items()}


if __name__ == "__main__":
    main()
