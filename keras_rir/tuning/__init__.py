"""The paper's hyperparameter search with KerasTuner: grid, random or Hyperband, resumable,
on one machine or many.

`RiRHyperModel` spans the five axes of the paper's grid (learning rate, L2
penalty, initializer, optimizer, shortcut) over any `keras_rir.models` network;
`make_tuner` searches it, maximizing accuracy on data held out from the
training set; the functions of `results` write `trials.csv` and `best.json`
and evaluate the best trial. `tuning/search.py` (with `tuning/distributed.sh`, a
chief and workers on one machine in KerasTuner's distributed mode, and
`tuning/plots.py`, `trials.png`) is the command line over all of it.

Needs `keras-tuner` (and `grpcio`, `protobuf` for distributed searches):
`pip install keras-rir[tuning]`.

Example:
>>> hypermodel = keras_rir.tuning.RiRHyperModel("rir32", num_classes=10, epochs=1)
>>> tuner = keras_rir.tuning.make_tuner(hypermodel, "grid", directory="/tmp/search")
>>> tuner.search(x_train, y_train, validation_data=(x_val, y_val))
>>> rows = keras_rir.tuning.trial_rows(tuner.oracle)

Reference: arXiv:1603.08029, section 3.
"""

from keras_rir.tuning.hypermodel import (
    AXES,
    DEFAULT_INITIALIZERS,
    DEFAULT_L2,
    DEFAULT_LEARNING_RATES,
    DEFAULT_OPTIMIZERS,
    DEFAULT_SHORTCUTS,
    INITIALIZERS,
    OPTIMIZERS,
    SCHEDULES,
    RiRHyperModel,
)
from keras_rir.tuning.results import (
    evaluate_best,
    format_table,
    load_best_model,
    project_dir,
    trial_rows,
    write_best_json,
    write_trials_csv,
)
from keras_rir.tuning.tuners import OBJECTIVE, TUNERS, ResumableGridSearchOracle, make_tuner

__all__ = [
    "AXES",
    "DEFAULT_INITIALIZERS",
    "DEFAULT_L2",
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_OPTIMIZERS",
    "DEFAULT_SHORTCUTS",
    "INITIALIZERS",
    "OBJECTIVE",
    "OPTIMIZERS",
    "ResumableGridSearchOracle",
    "RiRHyperModel",
    "SCHEDULES",
    "TUNERS",
    "evaluate_best",
    "format_table",
    "load_best_model",
    "make_tuner",
    "project_dir",
    "trial_rows",
    "write_best_json",
    "write_trials_csv",
]
