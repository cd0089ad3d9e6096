"""Reading a finished search: one row per trial, `trials.csv`, `best.json`, the best model."""

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
            value = trial.metrics.get_last_value(metric) if trial.metrics.exists(metric) else None
            row[metric] = float("nan") if value is None else float(value)
        rows.append(row)
    return rows


def write_trials_csv(rows, path):
    """Writes `rows` (from `trial_rows`) as a CSV file with a header line; returns `path`.

    Example:
    >>> keras_rir.tuning.write_trials_csv(rows, "/tmp/search/trials.csv")
    '/tmp/search/trials.csv'
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
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
    widths = [max(map(len, cells)) for cells in zip(columns, *lines, strict=True)]
    header = "  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))
    body = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
    return "\n".join([header, "-" * len(header), *body])


def _format(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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
    return {"trial_id": trial.trial_id, "test_accuracy": float(accuracy), "test_loss": float(loss)}


def project_dir(tuner):
    """Folder of the tuner's project (trials, checkpoints, results).

    Example:
    >>> keras_rir.tuning.project_dir(tuner)
    '/tmp/search/rir_search'
    """
    return os.path.join(str(tuner.directory), tuner.project_name)
