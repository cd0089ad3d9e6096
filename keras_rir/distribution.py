"""Data-parallel training over all local devices with the engines Keras already has.

- JAX: `keras.distribution.DataParallel` over `keras.distribution.list_devices()`.
- TensorFlow: `tf.distribute.MirroredStrategy` over the local GPUs, or the local
  (logical) CPUs when there is no GPU.
- PyTorch: Keras' torch backend has no data-parallel `model.fit`; asking for it
  raises a `ValueError` that says so.

In every case the batch size given to `model.fit` is the global batch: each of
the `n` devices computes `batch_size / n` examples of every step and the
gradients are averaged, so results match one device with the same batch.

Multi-host training (for users who outgrow one machine) uses the same engines:
on JAX call `keras.distribution.initialize(job_addresses, num_processes,
process_id)` on every host before building the model, then
`DataParallel(devices=keras.distribution.list_devices())` spans all hosts; on
TensorFlow use `tf.distribute.MultiWorkerMirroredStrategy()` with `TF_CONFIG`
set on every worker.
"""

import contextlib

import keras

from keras_rir._validation import invalid_value

__all__ = ["check_supported", "data_parallel_scope", "local_devices"]


def check_supported(backend=None):
    """Raises a `ValueError` if data-parallel `model.fit` is not available.

    Args:
        backend: a Keras backend name; defaults to `keras.backend.backend()`.

    Example:
    >>> keras_rir.distribution.check_supported("jax")
    """
    backend = backend or keras.backend.backend()
    if backend == "torch":
        raise invalid_value(
            "distribute",
            True,
            "False on the torch backend: Keras' torch backend has no built-in data-parallel "
            "`model.fit` (no `keras.distribution` support and no tf.distribute-like strategy). "
            "On torch, train on one device (a single GPU is used automatically); for several "
            "devices, set KERAS_BACKEND=jax (keras.distribution.DataParallel) or "
            "KERAS_BACKEND=tensorflow (tf.distribute.MirroredStrategy)",
        )
    if backend not in ("jax", "tensorflow"):
        raise invalid_value("distribute", True, "False on the numpy/openvino backends")


def local_devices():
    """Names of the devices `data_parallel_scope` trains on.

    Returns:
        A list of device names: the accelerators of this machine, or its
        (logical) CPUs where it has none.

    Example:
    >>> devices = keras_rir.distribution.local_devices()
    """
    check_supported()
    if keras.backend.backend() == "jax":
        return keras.distribution.list_devices()
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


@contextlib.contextmanager
def data_parallel_scope(enabled=True):
    """Context in which to build, compile, fit and evaluate a data-parallel model.

    With `enabled=False` it does nothing, so callers can write one code path.

    Args:
        enabled: whether to distribute.

    Yields:
        The number of devices (model replicas) the global batch is split over.

    Example:
    >>> with keras_rir.distribution.data_parallel_scope() as num_replicas:
    ...     model = keras_rir.models.rir32()
    ...     model.compile("sgd", "sparse_categorical_crossentropy")
    ...     model.fit(x, y, batch_size=500)  # 500 / num_replicas per device
    """
    if not enabled:
        yield 1
        return
    devices = local_devices()  # raises where data-parallel `model.fit` is not supported
    if keras.backend.backend() == "jax":
        distribution = keras.distribution.DataParallel(devices=devices)
        with distribution.scope():
            yield distribution.num_model_replicas
        return
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(devices=devices)
    with strategy.scope():
        yield strategy.num_replicas_in_sync
