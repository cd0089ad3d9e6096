"""Reading a finished search: one row per trial, `trials.csv`, `best.json`, `trials.png`."""

import csv
import json
import math
import os
import warnings

from keras_rir.tuning.hypermodel import AXES
from keras_rir.tuning.tuners import OBJECTIVE

__all__ = [
    "evaluate_best",
    "format_table",
    "load_best_model",
    "plot_trials",
    "project_dir",
    "trial_rows",
    "write_best_json",
    "write_trials_csv",
]

METRICS = (OBJECTIVE, "val_loss", "accuracy", "loss", "best_epoch", "epochs", "wall_time")


def trial_rows(oracle):
    """One dict per trial of `oracle`, in trial order.

    Args:
        oracle: the `keras_tuner.Oracle` of a tuner (`tuner.oracle`), in the
            process that owns it (not a distributed worker's client).

    Returns:
        A list of dicts with `trial_id`, `status`, every hyperparameter (the
        five axes first), and the metrics reported for the trial
        (`val_accuracy`, `val_loss`, `accuracy`, `loss`, `best_epoch`,
        `epochs`, `wall_time` in seconds; NaN where a trial reported none).

    Example:
    >>> rows = keras_rir.tuning.trial_rows(tuner.oracle)
    """
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        row = {"trial_id": trial_id, "status": trial.status}
        values = trial.hyperparameters.values
        row.update({name: values[name] for name in AXES if name in values})
        row.update({name: value for name, value in values.items() if name not in row})
        for metric in METRICS:
            value = None
            if trial.metrics.exists(metric):
                value = trial.metrics.get_last_value(metric)
            row[metric] = float("nan") if value is None else float(value)
        rows.append(row)
    return rows


def _columns(rows):
    columns = []
    for row in rows:
        columns.extend(column for column in row if column not in columns)
    return columns


def write_trials_csv(rows, path):
    """Writes `rows` (from `trial_rows`) as a CSV file with a header line; returns `path`.

    Example:
    >>> keras_rir.tuning.write_trials_csv(rows, "/tmp/search/trials.csv")
    '/tmp/search/trials.csv'
    """
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=_columns(rows))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _ranked(rows):
    finished = [row for row in rows if not math.isnan(row[OBJECTIVE])]
    return sorted(finished, key=lambda row: (-row[OBJECTIVE], row["trial_id"]))


def write_best_json(rows, path, extra=None):
    """Writes the best trial of `rows` and `extra` (a dict: test accuracy, record) as JSON.

    Returns:
        The dict written: `objective`, `best_trial` (its row), `num_trials`,
        `num_completed` and the items of `extra`.

    Example:
    >>> best = keras_rir.tuning.write_best_json(rows, "/tmp/search/best.json")
    >>> best["best_trial"]["val_accuracy"]
    """
    ranked = _ranked(rows)
    best = dict(ranked[0]) if ranked else None
    result = {
        "objective": OBJECTIVE,
        "best_trial": best,
        "num_trials": len(rows),
        "num_completed": sum(row["status"] == "COMPLETED" for row in rows),
        **(extra or {}),
    }
    with open(path, "w") as file:
        json.dump(result, file, indent=2, default=str)
    return result


def format_table(rows, top=10):
    """The `top` trials by validation accuracy as a plain-text table.

    Example:
    >>> print(keras_rir.tuning.format_table(rows, top=5))
    """
    columns = ["trial_id", *[name for name in AXES if rows and name in rows[0]]]
    columns += [OBJECTIVE, "val_loss", "wall_time", "status"]
    lines = [[_format(row.get(column, "")) for column in columns] for row in _ranked(rows)[:top]]
    widths = [
        max(len(column), *(len(line[i]) for line in lines)) for i, column in enumerate(columns)
    ]
    header = "  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))
    body = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
    return "\n".join([header, "-" * len(header), *body])


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot_trials(rows, path, axes=AXES):
    """Saves validation accuracy per trial grouped by each axis, one panel per axis.

    Each panel shows every finished trial as a dot above the value it used on
    that axis, and the mean per value as a bar, so that an axis whose values
    separate the dots is an axis that matters.

    Args:
        rows: from `trial_rows`.
        path: PNG file to write.
        axes: hyperparameter names, one panel each (those searched with a
            single value are left out).

    Returns:
        `path`.

    Example:
    >>> keras_rir.tuning.plot_trials(rows, "/tmp/search/trials.png")
    '/tmp/search/trials.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = _ranked(rows)
    present = [name for name in axes if any(name in row for row in rows)]
    # Axes searched with one value say nothing; keep them only if nothing varied.
    varied = [name for name in present if len({str(row.get(name)) for row in rows}) > 1]
    axes = varied or present or [OBJECTIVE]
    figure, panels = plt.subplots(
        1, len(axes), figsize=(3.2 * len(axes), 3.2), sharey=True, squeeze=False
    )
    for panel, name in zip(panels[0], axes, strict=True):
        values = []
        for row in rows:
            if row.get(name) not in values:
                values.append(row.get(name))
        for position, value in enumerate(values):
            scores = [row[OBJECTIVE] for row in finished if row.get(name) == value]
            if scores:
                panel.bar(position, sum(scores) / len(scores), color="#c6dbef", width=0.6)
                jitter = [
                    position + 0.25 * (i / max(len(scores) - 1, 1) - 0.5)
                    for i in range(len(scores))
                ]
                panel.scatter(jitter, scores, color="#08519c", s=14, zorder=3)
        panel.set_xticks(range(len(values)), [_format(value) for value in values], rotation=30)
        panel.set_title(name)
        panel.grid(axis="y", alpha=0.3)
    panels[0][0].set_ylabel(OBJECTIVE)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def load_best_model(tuner):
    """The best trial and its model, with the weights of its best epoch.

    Args:
        tuner: a tuner after `search`, in the process that owns the oracle.

    Returns:
        `(trial, model)`, or `(None, None)` if no trial completed.

    Example:
    >>> trial, model = keras_rir.tuning.load_best_model(tuner)
    """
    best = tuner.oracle.get_best_trials(1)
    if not best or best[0].status != "COMPLETED":
        return None, None
    with warnings.catch_warnings():
        # The checkpoint holds optimizer variables that an evaluation does not need.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        return best[0], tuner.load_model(best[0])


def evaluate_best(tuner, x, y, batch_size=500):
    """Test accuracy of the best trial's model, without retraining.

    Loads the checkpoint KerasTuner kept of the best trial (its best epoch on
    the validation set) and evaluates it on `(x, y)`, which the search never saw.

    Args:
        tuner: a tuner after `search`, in the process that owns the oracle.
        x: test images.
        y: test labels.
        batch_size: evaluation batch size.

    Returns:
        `{"trial_id", "test_accuracy", "test_loss"}`, or None if no trial completed.

    Example:
    >>> keras_rir.tuning.evaluate_best(tuner, data.x_test, data.y_test)["test_accuracy"]
    """
    trial, model = load_best_model(tuner)
    if trial is None:
        return None
    loss, accuracy = model.evaluate(x, y, batch_size=batch_size, verbose=0)
    return {
        "trial_id": trial.trial_id,
        "test_accuracy": float(accuracy),
        "test_loss": float(loss),
    }


def project_dir(tuner):
    """Folder of the tuner's project (trials, checkpoints, results).

    Example:
    >>> keras_rir.tuning.project_dir(tuner)
    '/tmp/search/rir_search'
    """
    return os.path.join(str(tuner.directory), tuner.project_name)
