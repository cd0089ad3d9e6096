"""Records of training runs: environment, per-epoch history, `results.json`, `curves.png`."""

import csv
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys

import keras
import numpy as np

__all__ = ["environment", "plot_curves", "read_history", "write_results"]

_PACKAGES = (
    "keras numpy jax jaxlib tensorflow tensorflow-datasets torch keras-tuner matplotlib".split()
)


def _package_versions():
    import keras_rir

    versions = {"python": platform.python_version(), "keras_rir": keras_rir.__version__}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _devices():
    """Describes the devices the current backend computes on, importing only that backend."""
    backend = keras.backend.backend()
    names = []
    if backend == "jax":
        import jax

        names = [
            f"cpu: {_cpu_name()}"
            if device.platform == "cpu"
            else f"{device.platform}: {device.device_kind}"
            for device in jax.devices()
        ]
    elif backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            names.append(f"gpu: {details.get('device_name', gpu.name)}")
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            names = [
                f"cuda: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())
            ]
    return names or [f"cpu: {_cpu_name()}"]


def _git_commit():
    """Commit and dirty flag of the repository holding this package, or `None`s."""
    directory = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args):
        command = ["git", "-C", directory, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True)

    try:
        commit = git("rev-parse", "HEAD").stdout.strip()
        status = git("status", "--porcelain").stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())


def environment():
    """Where a run happened: backend, devices, CPU, package versions and git commit.

    Only the active backend's package is imported (TensorFlow is never imported
    on the JAX or torch backends).

    Returns:
        A JSON-serializable dict with keys `backend`, `device`, `devices`,
        `cpu`, `platform`, `packages`, `git_commit` and `git_dirty`.

    Example:
    >>> keras_rir.reporting.environment()["backend"]
    'jax'
    """
    devices = _devices()
    commit, dirty = _git_commit()
    return {
        "backend": keras.backend.backend(),
        "device": devices[0] if devices else None,
        "devices": devices,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
        "packages": _package_versions(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def read_history(path):
    """Reads a `keras.callbacks.CSVLogger` file as one list per column.

    Rows are ordered by epoch; when an epoch was logged more than once (a run
    resumed after a crash), its last row wins, so every epoch appears once.

    Args:
        path: the CSV file.

    Returns:
        A dict mapping column names (`"epoch"`, `"loss"`, `"val_accuracy"`,
        ...) to lists of numbers, one entry per epoch; empty if the file does
        not exist.

    Example:
    >>> history = keras_rir.reporting.read_history("runs/rir32/log.csv")
    >>> history["val_accuracy"][-1]
    """
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    by_epoch = {int(row["epoch"]): row for row in rows if row.get("epoch", "").strip()}
    columns = dict.fromkeys(key for row in rows for key in row if key is not None)
    return {
        column: [_number(by_epoch[epoch].get(column)) for epoch in sorted(by_epoch)]
        for column in columns
    }


def _plain(value):
    """Converts NumPy scalars and arrays, tuples and non-finite floats to JSON values."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(results, path):
    """Writes `results` as indented JSON, atomically (a crash never leaves half a file).

    NumPy values become plain numbers and NaN/inf become `null`.

    Args:
        results: a dict.
        path: the JSON file to write.

    Returns:
        `path`.

    Example:
    >>> keras_rir.reporting.write_results({"test_accuracy": 0.93}, "results.json")
    'results.json'
    """
    temporary = f"{path}.tmp"
    with open(temporary, "w") as file:
        json.dump(_plain(results), file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(temporary, path)
    return path


def plot_curves(history, path, title=None, validation_label="test"):
    """Plots loss and accuracy against epoch, training and validation, to a PNG.

    Uses matplotlib's Agg backend (no display needed).

    Args:
        history: a dict of per-epoch lists as returned by `read_history`
            (`"epoch"`, `"loss"`, `"accuracy"`, `"val_loss"`, `"val_accuracy"`).
        path: the PNG file to write.
        title: optional figure title.
        validation_label: legend of the `val_` curves (`"test"` when the
            test set was the validation data, `"validation"` for a holdout).

    Returns:
        `path`, or `None` when matplotlib is not installed.

    Example:
    >>> keras_rir.reporting.plot_curves(history, "curves.png", title="rir32 on CIFAR-10")
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    epochs = [epoch + 1 for epoch in history.get("epoch", [])]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", validation_label)):
            values = [np.nan if isinstance(v, str) else v for v in history.get(key, [])]
            if values:
                axis.plot(epochs, values, marker="o", markersize=3, label=label)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(True, alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
