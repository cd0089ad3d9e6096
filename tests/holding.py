"""Stops a child process at a known point, so that a test kills it there and nowhere else.

A kill-and-resume test starts its child with `environment(...)`: a `sitecustomize.py` on the
child's `PYTHONPATH` patches keras_rir when the process starts (all processes of a search,
workers included, inherit it). At the chosen point the child writes the marker file and then
sleeps until it is killed; the test waits for the marker with `wait_for_marker`, then kills.
A process started when the marker already exists (the resumed run, a restarted worker) is
not held.

Points:
- `epoch_end(epoch)`: after `epoch` (0-based) of `keras_rir.training.train` is logged and
  backed up (the hold is the last callback).
- `trial_begin(trial_id, tuner_id)`: when a tuner starts a trial (after its "started" line);
  `trial_id=None` holds the first trial of that tuner.
"""

import json
import os
import textwrap
import time

HOLD_ENV = "KERAS_RIR_TEST_HOLD"

SITECUSTOMIZE = textwrap.dedent(
    """
    import json
    import os
    import time

    _SPEC = json.loads(os.environ.get("KERAS_RIR_TEST_HOLD") or "null")


    def _hold(what):
        marker = _SPEC["marker"]
        if os.path.exists(marker):  # held once already: this is the resumed process
            return
        with open(marker + ".tmp", "w") as file:
            file.write(what)
        os.replace(marker + ".tmp", marker)
        while True:  # until the test kills this process
            time.sleep(1)


    def _install():
        if _SPEC["at"] == "epoch_end":
            import keras

            from keras_rir.training import trainer

            class Hold(keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    if epoch == _SPEC["epoch"]:
                        _hold(str(epoch))

            make_callbacks = trainer.make_callbacks
            trainer.make_callbacks = lambda *a, **k: [*make_callbacks(*a, **k), Hold()]
        elif _SPEC["at"] == "trial_begin":
            if os.environ.get("KERASTUNER_TUNER_ID", "tuner0") != _SPEC["tuner_id"]:
                return
            from keras_rir.tuning import tuners

            on_trial_begin = tuners._TrialReport.on_trial_begin

            def hold_on_trial_begin(self, trial):
                on_trial_begin(self, trial)
                if _SPEC["trial_id"] in (None, trial.trial_id):
                    _hold(trial.trial_id)

            tuners._TrialReport.on_trial_begin = hold_on_trial_begin


    if _SPEC and not os.path.exists(_SPEC["marker"]):
        _install()
    """
)


def epoch_end(epoch):
    return {"at": "epoch_end", "epoch": epoch}


def trial_begin(trial_id=None, tuner_id="tuner0"):
    return {"at": "trial_begin", "trial_id": trial_id, "tuner_id": tuner_id}


def environment(directory, point, marker, env):
    """`env` plus the hook: writes `directory/sitecustomize.py`, puts it first on PYTHONPATH."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "sitecustomize.py"), "w") as file:
        file.write(SITECUSTOMIZE)
    path = env.get("PYTHONPATH")
    return {
        **env,
        "PYTHONPATH": str(directory) + (os.pathsep + path if path else ""),
        HOLD_ENV: json.dumps({**point, "marker": str(marker)}),
    }


def wait_for_marker(marker, processes, poll=0.05):
    """Waits until `marker` exists; fails at once if one of `processes` exits first.

    No time limit of its own: the per-test timeout (pytest-timeout) stops a hang.
    Returns the marker's content (the epoch or the trial ID held).
    """
    while not os.path.exists(marker):
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(
                    f"a process exited ({process.returncode}) before reaching {marker}"
                )
        time.sleep(poll)
    with open(marker) as file:
        return file.read()
