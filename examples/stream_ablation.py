"""Figure 3: accuracy of a trained ResNet Init model with one stream of one layer zeroed.

For each generalized residual layer in order and each stream (residual, transient), zeroes
the learned connections of that stream in that layer (on a copy of the weights, keeping
the identity shortcut; `keras_rir.analysis.stream_ablation`) and measures test accuracy.
By default the weights that *produce* a stream are zeroed (its output channels);
`--by input` zeroes the weights that *read* it, `--by both` does both.

Without `--model`, it uses (and, if needed, first trains with the budget flags) the
Table 3 ResNet Init run in `--output-dir/runs/cifar10-resnet_init32/`, the same run
`examples/reproduce_tables.py` makes, so that running that script first with the same
`--output-dir` and budget saves the training.

Usage (from the repository root, with `PYTHONPATH=.` or after `pip install -e .`):

    KERAS_BACKEND=jax python examples/stream_ablation.py --cifar10-dir /path/to/cifar10

    KERAS_BACKEND=jax python examples/stream_ablation.py --cifar10-dir /path/to/cifar10 \\
        --model runs/experiments/runs/cifar10-resnet_init32/model.keras --by both

Writes `ablation_<by>.json` (rows, unablated accuracy, model, budget, environment),
`ablation_<by>.csv` and `ablation_<by>.png` into `--output-dir`. `main()` returns the
rows (a dict `{by: rows}`).
"""

import argparse
import csv
import os

import experiments
import keras

from keras_rir import analysis, reporting
from keras_rir import data as data_lib

GENERALIZED_MODELS = ("resnet_init32", "rir32", "wide_resnet_init18", "wide_rir18")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", help="a trained .keras model (default: train or reuse one)")
    parser.add_argument(
        "--model-name",
        default="resnet_init32",
        choices=GENERALIZED_MODELS,
        help="model to train (or reuse) on CIFAR-10 when --model is not given",
    )
    parser.add_argument("--by", default="output", choices=("output", "input", "both"))
    parser.add_argument(
        "--layers", nargs="+", help="ablate only these generalized layers (default: all)"
    )
    experiments.add_budget_arguments(parser)
    return parser.parse_args(argv)


def plot_stream_ablation(rows, path, title=None):
    """Plots accuracy against layer, one line per stream, and the unablated accuracy.

    Draws on a `matplotlib.figure.Figure` (Agg canvas), leaving pyplot's state alone.

    Args:
        rows: the non-empty list returned by `keras_rir.analysis.stream_ablation`.
        path: PNG file to write.
        title: optional plot title.

    Returns:
        `path`.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    for stream in analysis.STREAMS:
        points = [(row["index"], row["accuracy"]) for row in rows if row["stream"] == stream]
        if points:
            layers, accuracies = zip(*points, strict=True)
            axes.plot(layers, accuracies, marker="o", label=f"{stream} stream zeroed")
    axes.axhline(rows[0]["baseline_accuracy"], color="gray", linestyle="--", label="unablated")
    axes.set_xlabel("generalized residual layer")
    axes.set_ylabel("accuracy")
    axes.set_title(title or f"Stream ablation (zeroed by {rows[0]['by']} channels)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def _trained_model(args, budget, data_dirs):
    if args.model:
        return args.model
    spec = experiments.RunSpec(args.model_name, "cifar10")
    table = experiments.Table(
        "figure3", "Figure 3 model", (experiments.Row(spec.run_id, None, spec),)
    )
    experiments.run_experiments(
        [table],
        args.output_dir,
        data_dirs=data_dirs,
        budget=budget,
        markdown_name=None,
        verbose=args.verbose,
    )
    return os.path.join(args.output_dir, "runs", spec.run_id, "model.keras")


def main(argv=None):
    args = parse_args(argv)
    budget, data_dirs = experiments.budget_from_args(args)
    model_path = _trained_model(args, budget, data_dirs)
    model = keras.saving.load_model(model_path)
    data = data_lib.load_cifar("cifar10", data_dir=data_dirs.get("cifar10"), max_train_examples=1)
    test = slice(budget.max_test_examples)  # None: all of them.
    x_test, y_test = data.x_test[test], data.y_test[test]
    record = experiments._read_json(
        os.path.join(os.path.dirname(os.path.abspath(model_path)), "run.json")
    )
    model_budget = record and record["budget"]
    statement = (
        experiments.budget_statement(experiments.Budget.from_record(model_budget))
        if model_budget
        else "Budget of the model: unknown (not trained by these scripts)."
    )
    print(f"Model: {statement}\nAblation on the first {len(x_test)} test images.", flush=True)
    os.makedirs(args.output_dir, exist_ok=True)
    results = {}
    batch_size = budget.recipe.batch_size
    for by in ("output", "input") if args.by == "both" else (args.by,):
        rows = analysis.stream_ablation(
            model, x_test, y_test, by=by, batch_size=batch_size, layer_names=args.layers
        )
        results[by] = rows
        stem = os.path.join(args.output_dir, f"ablation_{by}")
        reporting.write_results(
            {
                "model": model_path,
                "by": by,
                "baseline_accuracy": rows[0]["baseline_accuracy"],
                "num_test_examples": len(x_test),
                "model_budget": model_budget,
                "budget_statement": statement,
                "evaluation": {"batch_size": batch_size, "test_examples": len(x_test)},
                "rows": rows,
                "environment": reporting.environment(),
            },
            f"{stem}.json",
        )
        with open(f"{stem}.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        plot_stream_ablation(rows, f"{stem}.png")
        print(f"unablated accuracy {rows[0]['baseline_accuracy']:.4f} (zeroed by {by})")
        for row in rows:
            print(f"{row['index']:3d} {row['layer']:32s} {row['stream']:9s} {row['accuracy']:.4f}")
        print(f"Wrote {stem}.json, {stem}.csv and {stem}.png", flush=True)
    return results


if __name__ == "__main__":
    main()
