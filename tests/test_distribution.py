"""Tests of keras_rir.distribution: data parallel on two virtual CPU devices, torch's error."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import pytest

from keras_rir import distribution, training
from tests.test_training import TINY_RIR, tiny_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two virtual CPU devices must be configured before the backend starts, hence a subprocess.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys

    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )

    from keras_rir import distribution, training
    from tests.test_training import TINY_RIR, tiny_data

    report = {"devices": [str(device) for device in distribution.local_devices()]}
    for distribute in json.loads(sys.argv[2]):
        results = training.train(
            "rir",
            tiny_data(num_train=48, num_test=24),
            os.path.join(sys.argv[1], str(distribute)),
            epochs=1,
            batch_size=16,
            augment=False,
            model_kwargs=TINY_RIR,
            distribute=distribute,
            verbose=0,
        )
        report[str(distribute)] = {
            key: results[key] for key in ("num_replicas", "test_loss", "test_accuracy", "history")
        }
    print("REPORT " + json.dumps(report))
    """
)


def test_check_supported():
    distribution.check_supported("jax")
    distribution.check_supported("tensorflow")
    with pytest.raises(ValueError, match="torch backend has no built-in data-parallel"):
        distribution.check_supported("torch")


def test_scope_disabled_is_one_replica():
    with distribution.data_parallel_scope(False) as num_replicas:
        assert num_replicas == 1


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch only")
def test_train_distribute_on_torch_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="Invalid value for argument `distribute`.*jax"):
        training.train("rir", tiny_data(), str(tmp_path), model_kwargs=TINY_RIR, distribute=True)


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() == "torch", reason="no data parallel on torch")
def test_data_parallel_on_two_cpu_devices(tmp_path):
    backend = keras.backend.backend()
    # On JAX the global batch is split over the devices and batch statistics are global,
    # so one data-parallel epoch must match one single-device epoch. TensorFlow's
    # MirroredStrategy normalizes per replica, so only the run itself is checked there.
    runs = [False, True] if backend == "jax" else [True]
    script = tmp_path / "train_distributed.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": REPO,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "CUDA_VISIBLE_DEVICES": "",
    }
    process = subprocess.run(
        [sys.executable, str(script), str(tmp_path), json.dumps(runs)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    line = next(line for line in process.stdout.splitlines() if line.startswith("REPORT "))
    report = json.loads(line[len("REPORT ") :])
    assert len(report["devices"]) == 2
    distributed = report["True"]
    assert distributed["num_replicas"] == 2
    assert distributed["history"]["epoch"] == [0]
    assert 0.0 <= distributed["test_accuracy"] <= 1.0
    if backend == "jax":
        single = report["False"]
        assert single["num_replicas"] == 1
        assert distributed["history"]["loss"] == pytest.approx(single["history"]["loss"], rel=1e-3)
        assert distributed["test_loss"] == pytest.approx(single["test_loss"], rel=1e-3)
