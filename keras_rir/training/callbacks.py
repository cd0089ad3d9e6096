"""Callbacks of a resumable, logged training run."""

import os
import time

import keras

from keras_rir import reporting

__all__ = ["EpochTimer", "ResumableCSVLogger", "make_callbacks"]


class ResumableCSVLogger(keras.callbacks.CSVLogger):
    """`CSVLogger` that appends across resumed runs and keeps every epoch once.

    At the first epoch of a run it drops the rows of that epoch and later ones
    (left by a run killed after logging them), then appends.

    Args:
        filename: the CSV file.
        separator: column separator.
    """

    def __init__(self, filename, separator=","):
        super().__init__(filename, separator=separator, append=True)
        self._first_epoch_seen = False

    def on_train_begin(self, logs=None):
        self._first_epoch_seen = False
        super().on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch_seen:
            return
        self._first_epoch_seen = True
        self.csv_file.close()
        with open(self.filename) as file:
            lines = file.readlines()
        header, rows = lines[:1], lines[1:]
        kept = [row for row in rows if int(row.split(self.sep, 1)[0]) < epoch]
        with open(self.filename, "w") as file:
            file.writelines(header + kept)
        self.append_header = not header
        self.csv_file = open(self.filename, "a")


class EpochTimer(keras.callbacks.Callback):
    """Adds the epoch's timings and training throughput to the logs.

    `epoch_seconds` is the whole epoch, `train_seconds` the training steps
    only (up to the start of validation), `train_images_per_second` is
    `num_examples / train_seconds`. Place it before loggers in the callback
    list so they record these values.

    Args:
        num_examples: training examples per epoch.
    """

    def __init__(self, num_examples):
        super().__init__()
        self.num_examples = num_examples
        self.first_epoch = None
        self._epoch_start = self._train_end = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch
        self._epoch_start, self._train_end = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._epoch_start is not None and self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        train_seconds = (self._train_end or now) - self._epoch_start
        if logs is not None:
            logs["epoch_seconds"] = now - self._epoch_start
            logs["train_seconds"] = train_seconds
            logs["train_images_per_second"] = self.num_examples / train_seconds
        self._epoch_start = None


class RunProgress(keras.callbacks.Callback):
    """Prints, after each epoch, the run's progress and the time it has left (an ETA).

    Keras' progress bar times the epoch it draws; this line times the whole run,
    from the mean time of this process's epochs so far (the first one includes
    compilation, so the estimate is high at first).

    Example:
    >>> model.fit(x, y, epochs=5, callbacks=[keras_rir.training.RunProgress()])
    """

    def __init__(self):
        super().__init__()
        self._start = self._first_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._start is None:
            self._start, self._first_epoch = time.perf_counter(), epoch

    def on_epoch_end(self, epoch, logs=None):
        epochs = self.params.get("epochs") or epoch + 1
        elapsed = time.perf_counter() - self._start
        left = elapsed / (epoch + 1 - self._first_epoch) * (epochs - epoch - 1)
        finish = time.strftime("%H:%M", time.localtime(time.time() + left))
        print(
            f"[keras-rir] epoch {epoch + 1}/{epochs} done, {elapsed / 60:.1f} min so far; "
            f"about {left / 60:.1f} min left (ETA {finish})",
            flush=True,
        )


def make_callbacks(
    output_dir, schedule=None, num_examples=None, monitor="val_accuracy", tensorboard=False
):
    """The callbacks of a resumable, logged run writing into `output_dir`.

    In order: `LearningRateScheduler(schedule)` (if given), `EpochTimer` (if
    `num_examples`), `ResumableCSVLogger` (`output_dir/log.csv`, one row per
    epoch even across resumes), `BackupAndRestore` (`output_dir/backup`: a
    killed run resumes after the last finished epoch, losing at most one),
    `ModelCheckpoint` of the best model by `monitor` (`output_dir/best.keras`),
    `TerminateOnNaN`, and `TensorBoard` (`output_dir/tensorboard`) if asked.
    The progress bar is Keras' own (`verbose` of `fit`).

    Args:
        output_dir: directory of the run.
        schedule: a per-epoch learning-rate function, e.g. from
            `learning_rate_schedule`.
        num_examples: training examples per epoch, for throughput logging.
        monitor: metric that selects the best checkpoint (maximized).
        tensorboard: also log for TensorBoard.

    Returns:
        A list of `keras.callbacks.Callback`.

    Example:
    >>> callbacks = keras_rir.training.make_callbacks(
    ...     "runs/rir32", keras_rir.training.learning_rate_schedule(82, 0.1), 50000)
    """
    csv_path = os.path.join(output_dir, "log.csv")
    # A resumed run only replaces the best checkpoint with a better one.
    history = reporting.read_history(csv_path)
    previous_best = [v for v in history.get(monitor, []) if isinstance(v, float)]
    callbacks = []
    if schedule is not None:
        callbacks.append(keras.callbacks.LearningRateScheduler(schedule))
    if num_examples:
        callbacks.append(EpochTimer(num_examples))
    callbacks += [
        # The row of an epoch is written before its backup: a run killed in between redoes
        # the epoch and `ResumableCSVLogger` replaces the row, so no epoch is ever missing.
        ResumableCSVLogger(csv_path),
        keras.callbacks.BackupAndRestore(
            os.path.join(output_dir, "backup"), double_checkpoint=True
        ),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output_dir, "best.keras"),
            monitor=monitor,
            mode="max",
            save_best_only=True,
            initial_value_threshold=max(previous_best, default=None),
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")))
    return callbacks
