"""MomentumCorrectedSGD against a NumPy implementation of Torch-form SGD, and its saving."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_rir import training
from keras_rir.training import MomentumCorrectedSGD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATES = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]  # A step decay after three steps.


def linear_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype("float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    kernel = rng.normal(size=(5, 3)).astype("float32")
    return x, y, kernel


def train_linear(optimizer, rates):
    """Kernel of a bias-free Dense layer after one MSE step per learning rate."""
    x, y, kernel = linear_problem()
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, use_bias=False)])
    model.layers[0].kernel.assign(kernel)
    model.compile(optimizer=optimizer, loss="mse")
    for rate in rates:
        model.optimizer.learning_rate = rate
        model.train_on_batch(x, y)
    return keras.ops.convert_to_numpy(model.layers[0].kernel)


def numpy_torch_sgd(rates, momentum, nesterov):
    """`torch.optim.SGD` (dampening 0) written out: v = m v + g; w -= lr (g + m v | v)."""
    x, y, kernel = linear_problem()
    kernel = kernel.astype("float64")
    velocity = np.zeros_like(kernel)
    for rate in rates:
        gradient = 2.0 * x.T @ (x @ kernel - y) / y.size
        velocity = momentum * velocity + gradient
        step = gradient + momentum * velocity if nesterov else velocity
        kernel = kernel - rate * step
    return kernel


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_matches_numpy_torch_form_across_a_decay(momentum, nesterov):
    kernel = train_linear(MomentumCorrectedSGD(0.1, momentum=momentum, nesterov=nesterov), RATES)
    expected = numpy_torch_sgd(RATES, momentum, nesterov)
    np.testing.assert_allclose(kernel, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_same_as_keras_sgd_at_a_constant_rate_not_across_a_decay(nesterov):
    def both(rates):
        return [
            train_linear(cls(0.1, momentum=0.9, nesterov=nesterov), rates)
            for cls in (MomentumCorrectedSGD, keras.optimizers.SGD)
        ]

    corrected, keras_sgd = both([0.1] * 6)
    np.testing.assert_allclose(corrected, keras_sgd, rtol=1e-5, atol=1e-6)
    corrected, keras_sgd = both(RATES)
    # Keras' velocity still carries the old rate after the decay.
    assert np.max(np.abs(corrected - keras_sgd)) > 1e-3


def test_make_optimizer_uses_it():
    optimizer = training.make_optimizer("nesterov", 0.05)
    assert isinstance(optimizer, MomentumCorrectedSGD) and optimizer.nesterov


def test_config_and_keras_round_trip(tmp_path):
    optimizer = MomentumCorrectedSGD(0.05, momentum=0.8, nesterov=True)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is MomentumCorrectedSGD
    assert restored.get_config() == optimizer.get_config()

    x, y, _ = linear_problem()
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer=optimizer, loss="mse")
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is MomentumCorrectedSGD
    for saved, restored_variable in zip(
        model.optimizer.variables, loaded.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(saved), keras.ops.convert_to_numpy(restored_variable)
        )


def test_import_keras_rir_registers_it():
    """A `.keras` file of a recipe run loads after `import keras_rir` alone (which does not
    load `keras_rir.training`)."""
    script = (
        "import sys, keras, keras_rir; "
        "assert keras.saving.get_registered_object('keras_rir>MomentumCorrectedSGD') "
        "is keras_rir.optimizers.MomentumCorrectedSGD; "
        "assert 'keras_rir.training' not in sys.modules; "
        "from keras_rir import training; "
        "assert training.MomentumCorrectedSGD is keras_rir.optimizers.MomentumCorrectedSGD"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=900, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
