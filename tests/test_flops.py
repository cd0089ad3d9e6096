import keras
import pytest

import keras_rir
from benchmarks.flops import TRAINING_FLOPS_PER_MULTIPLY_ADD, multiply_adds, training_flops


def conv(size, kernel, c_in, c_out):
    """Hand formula: output positions x kernel taps x input channels x output channels."""
    return size * size * kernel * kernel * c_in * c_out


def table7_32_macs(shortcuts):
    """Multiply-adds of the 32-layer networks of Table 7 (widths 16, 32, 64; 5 blocks a stage)."""
    total = conv(32, 3, 3, 16)  # stem
    total += 10 * conv(32, 3, 16, 16)  # stage 1: 5 blocks x 2 units
    for size, c_in, c_out in ((16, 16, 32), (8, 32, 64)):
        total += conv(size, 3, c_in, c_out) + 9 * conv(size, 3, c_out, c_out)
        if shortcuts:  # 3x3 stride-2 projection
            total += conv(size, 3, c_in, c_out)
    return total + 64 * 10  # dense classifier


def table7_wide18_macs(shortcuts, num_classes=10):
    """Widths 96, 192, 384; 2, 3, 3 blocks of two units; 1x1 conv classifier."""
    total = conv(32, 3, 3, 96)
    total += 4 * conv(32, 3, 96, 96)
    for size, c_in, c_out in ((16, 96, 192), (8, 192, 384)):
        total += conv(size, 3, c_in, c_out) + 5 * conv(size, 3, c_out, c_out)
        if shortcuts:
            total += conv(size, 3, c_in, c_out)
    return total + conv(8, 1, 384, num_classes)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cnn32", table7_32_macs(False)),
        ("resnet_init32", table7_32_macs(False)),
        ("resnet32", table7_32_macs(True)),
        ("rir32", table7_32_macs(True)),
    ],
)
def test_table7_32_layer_networks(name, expected):
    assert multiply_adds(keras_rir.models.get(name)) == expected


@pytest.mark.parametrize("name, shortcuts", [("wide_cnn18", False), ("wide_rir18", True)])
def test_table7_wide_networks(name, shortcuts):
    model = keras_rir.models.get(name, num_classes=100)
    assert multiply_adds(model) == table7_wide18_macs(shortcuts, num_classes=100)


def test_generalized_block_costs_one_convolution():
    # The paper's claim, in MACs: fused == explicit == the plain network.
    fused = multiply_adds(keras_rir.models.rir32())
    explicit = multiply_adds(keras_rir.models.rir32(implementation="explicit"))
    assert fused == explicit == multiply_adds(keras_rir.models.resnet32())


def test_by_layer_strides_groups_and_dense():
    inputs = keras.Input((9, 9, 4))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="valid", name="strided")(inputs)
    x = keras.layers.Conv2D(8, 1, groups=2, name="grouped")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(5, name="per_pixel")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    model = keras.Model(inputs, outputs)
    total, per_layer = multiply_adds(model, by_layer=True)
    expected = {
        "strided": 4 * 4 * 3 * 3 * 4 * 8,
        "grouped": 4 * 4 * 1 * 1 * (8 // 2) * 8,
        "per_pixel": 4 * 4 * 8 * 5,
        "head": 4 * 4 * 5 * 3,
    }
    assert per_layer == expected
    assert total == sum(expected.values())
    assert training_flops(model) == TRAINING_FLOPS_PER_MULTIPLY_ADD * total


def test_nested_model_is_counted():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)], name="inner")
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(2)(inner(inputs))
    assert multiply_adds(keras.Model(inputs, outputs)) == 6 * 4 + 4 * 2


def test_rejects_non_models():
    with pytest.raises(ValueError, match="Invalid value for argument `model`"):
        multiply_adds(keras.layers.Dense(3))
