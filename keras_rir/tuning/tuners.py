"""Tuners for `RiRHyperModel`: a grid search that resumes, random search and Hyperband.

KerasTuner 1.4's `GridSearchOracle` keeps the grid order (`_ordered_ids`) and
the queue of trials whose successor is still to be generated (`_populate_next`)
only in memory (keras-team/keras-tuner#1055). A search reloaded with
`overwrite=False` then either raises `KeyError` in `LinkedList.next` after the
interrupted trial is rerun, or, when no trial was interrupted, stops at once
with the grid unfinished. `ResumableGridSearchOracle` rebuilds both from the
trials on disk when it reloads, so a search run again with the same command
reruns the interrupted trial and continues with the next grid points.
"""

import functools
import sys
import time

import keras_tuner
import numpy as np

from keras_rir._validation import check_choice, check_positive_int, invalid_value

__all__ = ["OBJECTIVE", "TUNERS", "ResumableGridSearchOracle", "make_tuner"]

OBJECTIVE = "val_accuracy"
TUNERS = ("grid", "random", "hyperband")
_DONE = ("COMPLETED", "FAILED")


def _repair_state(oracle):
    """Makes the reloaded bookkeeping agree with the trial files.

    A process killed inside `create_trial` or `end_trial` can leave a trial file
    that `oracle.json` does not know about yet: a finished trial still listed
    as ongoing (it would be rerun), or a started trial listed nowhere (it would
    count towards `max_trials` and never run).
    """
    for tuner_id, trial in list(oracle.ongoing_trials.items()):
        if trial.status in _DONE:
            del oracle.ongoing_trials[tuner_id]
            if trial.trial_id not in oracle.end_order:
                oracle.end_order.append(trial.trial_id)
    known = {trial.trial_id for trial in oracle.ongoing_trials.values()}
    known.update(oracle._retry_queue)
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        if trial.status not in _DONE and trial_id not in known:
            oracle._retry_queue.append(trial_id)
        if trial_id not in oracle.start_order:
            oracle.start_order.append(trial_id)


class ResumableGridSearchOracle(keras_tuner.oracles.GridSearchOracle):
    """`keras_tuner.oracles.GridSearchOracle` that resumes a reloaded search.

    On reload it sorts the trials on disk in grid order, rebuilds the linked
    list of tried points from them and queues every trial to generate its
    successor, which the oracle skips when that successor was tried already.
    It accepts the arguments of `GridSearchOracle` and needs no extra state, so
    it also resumes projects written by KerasTuner's own `GridSearch`.

    Example:
    >>> oracle = keras_rir.tuning.ResumableGridSearchOracle(
    ...     objective=keras_tuner.Objective("val_accuracy", "max"))
    >>> tuner = keras_tuner.Tuner(oracle=oracle, hypermodel=hypermodel, directory="/tmp/s")
    """

    def set_state(self, state):
        super().set_state(state)
        _repair_state(self)
        ordered = type(self._ordered_ids)()
        trial_ids = sorted(self.trials, key=functools.cmp_to_key(self._compare_trials))
        for trial_id in trial_ids:
            ordered.insert(trial_id)
        self._ordered_ids = ordered
        self._populate_next = trial_ids

    def _compare_trials(self, first, second):
        values = [self.trials[trial_id].hyperparameters.values for trial_id in (first, second)]
        try:
            return self._compare(*values)
        except (KeyError, ValueError) as error:
            raise invalid_value(
                "hyperparameters",
                values,
                "the same search space as the search being resumed; change the "
                "project name or overwrite the project to search another grid",
            ) from error


class _RepairingRandomSearchOracle(keras_tuner.oracles.RandomSearchOracle):
    def set_state(self, state):
        super().set_state(state)
        _repair_state(self)


class _TrialReport:
    """Tuner mixin: a progress line per trial and wall time in the trial's metrics.

    `run_trial` returns, per execution, the metrics of the best epoch (the one
    KerasTuner checkpoints) plus `wall_time` (seconds of the trial) and
    `best_epoch`, so that they are stored with the trial by the oracle, also in
    a distributed search.
    """

    def run_trial(self, trial, *args, **kwargs):
        start = time.perf_counter()
        histories = super().run_trial(trial, *args, **kwargs)
        wall_time = time.perf_counter() - start
        results = [_best_epoch_metrics(history, wall_time) for history in histories]
        self._last_results = results[-1]
        return results

    # Seconds between two requests of a worker that the chief told to wait
    # (KerasTuner asks again at once, a busy loop that slows the other workers).
    idle_poll_interval = 0.5

    def pre_create_trial(self):
        super().pre_create_trial()
        if getattr(self, "_waiting", False):
            time.sleep(self.idle_poll_interval)
        # Reset by `on_trial_begin`; still set at the next request if the chief said IDLE.
        self._waiting = True

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        # KerasTuner 1.4 imports `tensorboard` on the TensorFlow backend even
        # when no `TensorBoard` callback is given; it is not a dependency.
        if any(type(callback).__name__ == "TensorBoard" for callback in callbacks):
            super()._configure_tensorboard_dir(callbacks, trial, execution)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._waiting = False
        self._last_results = None
        self._trial_start = time.perf_counter()
        values = " ".join(f"{name}={value}" for name, value in trial.hyperparameters.values.items())
        _print(f"[{self.tuner_id}] trial {trial.trial_id} started: {values}")

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self._waiting = False
        elapsed = time.perf_counter() - self._trial_start
        line = f"[{self.tuner_id}] trial {trial.trial_id} {trial.status} in {elapsed:.1f}s"
        if self._last_results:
            line += f": val_accuracy={self._last_results.get(OBJECTIVE, float('nan')):.4f}"
            if "val_loss" in self._last_results:
                line += f" val_loss={self._last_results['val_loss']:.4f}"
        elif trial.message:
            line += f": {trial.message.strip().splitlines()[-1]}"
        _print(line)


def _print(line):
    print(line, flush=True)
    sys.stderr.flush()


def _best_epoch_metrics(result, wall_time):
    """The metrics of the best epoch of a `History` (or a metrics dict) plus timings."""
    if isinstance(result, dict):
        metrics = {name: float(value) for name, value in result.items()}
    else:
        logs = result.history
        scores = logs.get(OBJECTIVE)
        if not scores:
            raise invalid_value("history", sorted(logs), f"a history with `{OBJECTIVE}`")
        best = int(np.argmax(scores))
        metrics = {name: float(values[best]) for name, values in logs.items() if len(values) > best}
        metrics.update(best_epoch=float(best), epochs=float(len(scores)))
    metrics["wall_time"] = float(wall_time)
    return metrics


class _Tuner(_TrialReport, keras_tuner.Tuner):
    """The tuner of the grid and random searches (the oracle makes the difference)."""


class _Hyperband(_TrialReport, keras_tuner.Hyperband):
    pass


def make_tuner(
    hypermodel,
    tuner="grid",
    max_trials=None,
    directory=None,
    project_name="rir_search",
    overwrite=False,
    seed=0,
    hyperband_factor=3,
    max_retries_per_trial=0,
    executions_per_trial=1,
):
    """A KerasTuner tuner over `hypermodel` that maximizes validation accuracy.

    Run again with the same arguments and `overwrite=False`, it resumes the
    search stored in `directory/project_name`: finished trials are kept, a
    trial that was interrupted is rerun, and the search goes on.

    Args:
        hypermodel: a `RiRHyperModel`.
        tuner: `"grid"` (every point of the grid, in order, from the defaults),
            `"random"` (`max_trials` random points) or `"hyperband"` (Li et
            al., 2018, up to `hypermodel.epochs` epochs per model).
        max_trials: trials at most; None: the whole grid (for `"grid"` and
            `"random"`; `"hyperband"` sets its own number).
        directory: where the project folder is written.
        project_name: name of the project folder.
        overwrite: start afresh, deleting an existing project of that name.
        seed: seed of the random and Hyperband samplers.
        hyperband_factor: reduction factor of Hyperband.
        max_retries_per_trial: reruns of a trial that raised an error.
        executions_per_trial: trainings per trial, whose metrics are averaged.

    Returns:
        A `keras_tuner.Tuner`; `tuner.search(x, y, validation_data=(x_val, y_val))`
        runs the search.

    Example:
    >>> tuner = keras_rir.tuning.make_tuner(hypermodel, "grid", directory="/tmp/search")
    >>> tuner.search(x_train, y_train, validation_data=(x_val, y_val))
    """
    check_choice("tuner", tuner, TUNERS)
    if max_trials is not None:
        max_trials = check_positive_int("max_trials", max_trials)
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    common = dict(
        hypermodel=hypermodel,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        executions_per_trial=executions_per_trial,
    )
    oracle_kwargs = dict(
        objective=objective, seed=seed, max_retries_per_trial=max_retries_per_trial
    )
    if tuner == "grid":
        oracle = ResumableGridSearchOracle(max_trials=max_trials, **oracle_kwargs)
        result = _Tuner(oracle=oracle, **common)
    elif tuner == "random":
        max_trials = max_trials or hypermodel.grid_size
        oracle = _RepairingRandomSearchOracle(max_trials=max_trials, **oracle_kwargs)
        result = _Tuner(oracle=oracle, **common)
    else:
        result = _Hyperband(
            max_epochs=hypermodel.epochs, factor=hyperband_factor, **oracle_kwargs, **common
        )
    if isinstance(result.oracle, keras_tuner.Oracle):  # Not a distributed worker's client.
        _check_same_space(result.oracle, hypermodel)
    return result


def _check_same_space(oracle, hypermodel):
    """A reloaded project keeps its own search space: refuse to resume with other values."""
    declared = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(declared)
    stored = {hp.name: list(hp.values) for hp in oracle.hyperparameters.space}
    for hp in declared.space:
        if hp.name in stored and stored[hp.name] != list(hp.values):
            raise invalid_value(
                hp.name,
                list(hp.values),
                f"the values of the search being resumed, {stored[hp.name]}: change the "
                "project name or overwrite the project to search another grid",
            )
