"""Shared test setup: every test runs on the backend named by KERAS_BACKEND."""

import sys

import keras
import pytest


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with float32, fixed seeds and a clean global Keras state."""
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
    keras.utils.clear_session()


@pytest.fixture(autouse=True)
def keras_home(monkeypatch, tmp_path_factory):
    """No test may reach the network or a real data cache: tensorflow-datasets is blocked, the
    CIFAR download URLs point at a missing local file, `KERAS_HOME` is an empty directory
    (returned) and `KERAS_RIR_DATA_DIR` is unset."""
    from keras_rir import data

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    unreachable = tmp_path_factory.mktemp("server") / "unreachable.tar.gz"
    downloads = {name: (unreachable.as_uri(), md5) for name, (_, md5) in data._DOWNLOADS.items()}
    monkeypatch.setattr(data, "_DOWNLOADS", downloads)
    monkeypatch.delenv("KERAS_RIR_DATA_DIR", raising=False)
    home = tmp_path_factory.mktemp("keras_home")
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home
