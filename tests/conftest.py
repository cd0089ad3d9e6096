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
def _no_tensorflow_datasets(monkeypatch):
    """No test can reach tensorflow-datasets, and so no test can download."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
