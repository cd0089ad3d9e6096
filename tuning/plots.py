"""`trials.png` of `search.py`: validation accuracy per trial, one panel per hyperparameter.

Not part of the installed package; `search.py` imports it as `plots`, its
folder being first on `sys.path`. Needs matplotlib (`pip install keras-rir[plots]`).
"""

import math

from keras_rir import tuning


def _format(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_trials(rows, path, axes=tuning.AXES):
    """Saves validation accuracy per trial grouped by each axis, one panel per axis.

    Each panel shows every finished trial as a dot above the value it used on
    that axis, and the mean per value as a bar, so that an axis whose values
    separate the dots is an axis that matters.

    Args:
        rows: from `keras_rir.tuning.trial_rows`.
        path: PNG file to write.
        axes: hyperparameter names, one panel each (those searched with a
            single value are left out).

    Returns:
        `path`.

    Example:
    >>> plots.plot_trials(rows, "/tmp/search/trials.png")
    '/tmp/search/trials.png'
    """
    from matplotlib.figure import Figure

    objective = tuning.OBJECTIVE
    finished = [row for row in rows if not math.isnan(row[objective])]
    present = [name for name in axes if any(name in row for row in rows)]
    # Axes searched with one value say nothing; keep them only if nothing varied.
    varied = [name for name in present if len({str(row.get(name)) for row in rows}) > 1]
    axes = varied or present or [objective]
    figure = Figure(figsize=(3.2 * len(axes), 3.2))
    panels = figure.subplots(1, len(axes), sharey=True, squeeze=False)
    for panel, name in zip(panels[0], axes, strict=True):
        values = list(dict.fromkeys(row.get(name) for row in rows))
        for position, value in enumerate(values):
            # Best first, as the trials are ranked.
            scores = sorted(
                (row[objective] for row in finished if row.get(name) == value), reverse=True
            )
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
    panels[0][0].set_ylabel(objective)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
