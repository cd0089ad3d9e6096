import keras
import numpy as np
import pytest

from keras_rir.initializers import (
    ResNetInitInitializer,
    identity_width,
    partial_identity,
    residual_width,
)

SHAPES = [
    (3, 3, 16, 16),  # square conv
    (3, 3, 16, 32),  # channel-increasing conv
    (3, 3, 32, 16),  # channel-decreasing conv
    (5, 1, 12, 20),  # non-square odd kernel
    (1, 1, 8, 8),  # 1x1 conv
    (24, 24),  # square dense
    (12, 40),  # widening dense
    (40, 12),  # narrowing dense
]
BASES = ["he_normal", "glorot_normal", "glorot_uniform", "orthogonal"]


def numpy_partial_identity(shape, fraction):
    """Independent construction: ones at the centre tap of the first min(r_in, r_out) channels."""
    *spatial, c_in, c_out = shape
    r_in = int(np.floor(c_in * fraction + 0.5))
    r_out = int(np.floor(c_out * fraction + 0.5))
    kernel = np.zeros(shape, dtype="float32")
    centre = [size // 2 for size in spatial]
    for i in range(min(r_in, r_out)):
        kernel[tuple(centre) + (i, i)] = 1.0
    return kernel


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_partial_identity_matches_numpy(shape, fraction):
    expected = numpy_partial_identity(shape, fraction)
    np.testing.assert_array_equal(partial_identity(shape, fraction), expected)
    assert identity_width(shape, fraction) == int(expected.sum())


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("base", BASES)
def test_initializer_is_base_plus_partial_identity(fraction, base):
    # The same seed gives the base part exactly, so the base keeps its distribution.
    for shape in SHAPES:
        base_values = keras.initializers.get({"class_name": base, "config": {"seed": 7}})(shape)
        values = ResNetInitInitializer(base, residual_fraction=fraction, seed=7)(shape)
        expected = keras.ops.convert_to_numpy(base_values) + numpy_partial_identity(shape, fraction)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(values), expected, atol=1e-6)


def test_base_part_keeps_he_normal_statistics():
    shape = (3, 3, 64, 64)
    values = keras.ops.convert_to_numpy(ResNetInitInitializer("he_normal", seed=3)(shape))
    learned = values - numpy_partial_identity(shape, 0.5)
    fan_in = 3 * 3 * 64
    # He normal is a truncated normal with stddev sqrt(2 / fan_in).
    assert abs(learned.mean()) < 0.01
    assert learned.std() == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.05)


def test_initializer_accepts_objects_and_configs():
    shape = (3, 3, 8, 8)
    from_object = ResNetInitInitializer(keras.initializers.Zeros())(shape)
    from_config = ResNetInitInitializer({"class_name": "Zeros", "config": {}})(shape)
    expected = numpy_partial_identity(shape, 0.5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(from_object), expected)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(from_config), expected)


def test_initializer_serialization_round_trip():
    initializer = ResNetInitInitializer("orthogonal", residual_fraction=0.25, seed=5)
    restored = keras.initializers.deserialize(keras.initializers.serialize(initializer))
    assert isinstance(restored, ResNetInitInitializer)
    assert restored.residual_fraction == 0.25
    shape = (3, 3, 8, 12)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(shape)),
        keras.ops.convert_to_numpy(initializer(shape)),
        atol=1e-6,
    )


def test_initializer_respects_dtype():
    values = ResNetInitInitializer("he_normal")((3, 3, 4, 4), dtype="float16")
    assert keras.backend.standardize_dtype(values.dtype) == "float16"


def test_residual_width_rounds_halves_up():
    assert residual_width(96) == 48
    assert residual_width(3) == 2
    assert residual_width(10, 0.25) == 3
    assert residual_width(100, 0.29) == 29


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, 1.5, -0.5, "half", None, True])
def test_bad_residual_fraction(fraction):
    with pytest.raises(ValueError, match=r"residual_fraction.*strictly between 0 and 1.*Received"):
        ResNetInitInitializer(residual_fraction=fraction)


def test_unknown_initializer_name():
    with pytest.raises(
        ValueError,
        match=r"`base_initializer`.*he_normal.*Received: "
        r"base_initializer='msr_typo'",
    ):
        ResNetInitInitializer("msr_typo")


@pytest.mark.parametrize("shape", [(8,), (4, 3, 3), (2, 2, 4, 4), (3, 4, 8, 8), (0, 4)])
def test_kernel_shape_it_cannot_hold(shape):
    with pytest.raises(ValueError, match=r"`shape`.*odd spatial sizes.*Received: shape="):
        ResNetInitInitializer()(shape)


def test_seed_on_non_random_base():
    with pytest.raises(ValueError, match=r"`seed`.*Received: seed=3"):
        ResNetInitInitializer("zeros", seed=3)
