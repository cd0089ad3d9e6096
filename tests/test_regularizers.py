import keras
import numpy as np
import pytest

from keras_rir.initializers import partial_identity
from keras_rir.regularizers import PartialIdentityDecay
from tests.test_initializers import numpy_partial_identity

SHAPES = [(3, 3, 16, 16), (3, 3, 16, 32), (3, 3, 32, 16), (20, 12)]


def numpy_decay(kernel, l2, fraction):
    return l2 * np.sum((kernel - numpy_partial_identity(kernel.shape, fraction)) ** 2)


def gradient(regularizer, kernel):
    """d regularizer / d kernel, with the current backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda w: regularizer(w))(kernel))
    if backend == "torch":
        import torch

        weights = torch.tensor(kernel, requires_grad=True)
        regularizer(weights).backward()
        return weights.grad.numpy()
    import tensorflow as tf

    weights = tf.Variable(kernel)
    with tf.GradientTape() as tape:
        loss = regularizer(weights)
    return tape.gradient(loss, weights).numpy()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_value_matches_numpy(shape, fraction):
    kernel = np.random.default_rng(0).normal(size=shape).astype("float32")
    regularizer = PartialIdentityDecay(l2=3e-3, residual_fraction=fraction)
    value = keras.ops.convert_to_numpy(regularizer(keras.ops.convert_to_tensor(kernel)))
    np.testing.assert_allclose(value, numpy_decay(kernel, 3e-3, fraction), rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_gradient_matches_numpy(shape):
    kernel = np.random.default_rng(1).normal(size=shape).astype("float32")
    regularizer = PartialIdentityDecay(l2=0.01)
    expected = 2 * 0.01 * (kernel - numpy_partial_identity(shape, 0.5))
    np.testing.assert_allclose(gradient(regularizer, kernel), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
def test_zero_at_partial_identity(shape):
    value = PartialIdentityDecay(l2=1.0)(keras.ops.convert_to_tensor(partial_identity(shape)))
    assert float(keras.ops.convert_to_numpy(value)) == 0.0


def test_differs_from_plain_l2_by_the_identity():
    kernel = np.random.default_rng(2).normal(size=(3, 3, 8, 8)).astype("float32")
    ours = PartialIdentityDecay(l2=1.0)(keras.ops.convert_to_tensor(kernel))
    plain = keras.regularizers.L2(1.0)(keras.ops.convert_to_tensor(kernel))
    # ||W - I||^2 = ||W||^2 - 2 tr + n with n = 4 ones at the centre tap.
    expected_gap = 2 * np.trace(kernel[1, 1, :4, :4]) - 4
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain - ours), expected_gap, rtol=1e-4, atol=1e-4
    )


def test_serialization_round_trip():
    regularizer = PartialIdentityDecay(l2=5e-4, residual_fraction=0.75)
    restored = keras.regularizers.deserialize(keras.regularizers.serialize(regularizer))
    assert isinstance(restored, PartialIdentityDecay)
    assert restored.get_config() == {"l2": 5e-4, "residual_fraction": 0.75}


@pytest.mark.parametrize("l2", [-1e-4, "0.1", None])
def test_bad_l2(l2):
    with pytest.raises(ValueError, match=r"`l2`.*Received: l2="):
        PartialIdentityDecay(l2=l2)


def test_bad_fraction():
    with pytest.raises(ValueError, match=r"`residual_fraction`.*Received: residual_fraction=1.5"):
        PartialIdentityDecay(residual_fraction=1.5)
