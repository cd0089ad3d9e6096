import os

import keras
import numpy as np
import pytest

from keras_rir import models
from keras_rir.conversion import apply_resnet_init, format_report, resnet_init_report
from keras_rir.initializers import ResNetInitInitializer
from keras_rir.layers import GeneralizedResidualConv2D, GeneralizedResidualDense
from keras_rir.regularizers import PartialIdentityDecay

SMALL = dict(num_classes=10, input_shape=(9, 9, 3))


def numpy_partial_identity(shape, width):
    """Independent formula: ones at the centre tap on the first `width` diagonal entries."""
    identity = np.zeros(shape, "float32")
    centre = tuple(size // 2 for size in shape[:-2])
    for i in range(width):
        identity[centre + (i, i)] = 1.0
    return identity


def same_weights(first, second):
    return len(first.get_weights()) == len(second.get_weights()) and all(
        np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights(), strict=True)
    )


def toy_model():
    """A functional CNN with one layer of each kind the conversion must handle."""
    inputs = keras.Input((8, 8, 4), name="images")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="biased")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(
        8, 3, padding="same", use_bias=False, kernel_regularizer="l1", name="l1_decay"
    )(x)
    x = keras.layers.Conv2D(8, 2, padding="same", use_bias=False, name="even")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, groups=2, name="grouped")(x)
    x = keras.layers.Conv2D(
        8, 3, padding="same", use_bias=False, dilation_rate=2, activation="relu", name="dilated"
    )(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(6, use_bias=False, name="hidden")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(3, name="classifier")(x)
    return keras.Model(inputs, outputs, name="toy")


def test_all_cnn_c_becomes_all_cnn_c_resnet_init():
    converted = apply_resnet_init(models.all_cnn_c(**SMALL), verbose=False)
    expected = models.all_cnn_c(resnet_init=True, **SMALL)
    converted_config, expected_config = converted.get_config(), expected.get_config()
    assert converted_config.pop("name") == "all_cnn_c"
    expected_config.pop("name")
    # Same layer classes, names, arguments (initializers, decay, residual
    # fraction), shapes and graph: the whole functional config.
    assert converted_config == expected_config
    for layer, twin in zip(converted.layers, expected.layers, strict=True):
        assert type(layer) is type(twin)
        assert [tuple(w.shape) for w in layer.weights] == [tuple(w.shape) for w in twin.weights]


def test_all_cnn_c_report_and_weights():
    model = models.all_cnn_c(**SMALL)
    rows = resnet_init_report(model)
    actions = {row["layer"]: (row["action"], row["reason"]) for row in rows}
    assert actions["conv1_conv"] == ("skip", "reads the model input (stem on raw inputs)")
    assert actions["classifier"] == ("skip", "produces the model output (classifier)")
    assert [row["layer"] for row in rows if row["action"] == "convert"] == [
        f"conv{i}_conv" for i in range(2, 9)
    ]
    assert {row["l2"] for row in rows if row["action"] == "convert"} == {1e-4}
    assert "conv8_conv" in format_report(rows)

    converted = apply_resnet_init(model, verbose=False)
    for layer in model.layers:
        if (
            layer.name.startswith("conv")
            and layer.name.endswith("_conv")
            and layer.name != ("conv1_conv")
        ):
            assert isinstance(converted.get_layer(layer.name), GeneralizedResidualConv2D)
        else:
            assert same_weights(layer, converted.get_layer(layer.name)), layer.name
    # A new model: the original is untouched.
    assert type(model.get_layer("conv2_conv")) is keras.layers.Conv2D


def test_converted_kernel_is_resnet_init():
    model = models.all_cnn_c(**SMALL)
    converted = apply_resnet_init(model, kernel_initializer="zeros", verbose=False)
    for name, shape in (("conv2_conv", (3, 3, 96, 96)), ("conv4_conv", (3, 3, 96, 192))):
        kernel = keras.ops.convert_to_numpy(converted.get_layer(name).kernel)
        np.testing.assert_array_equal(kernel, numpy_partial_identity(shape, 48))
    layer = converted.get_layer("conv8_conv")
    assert isinstance(layer.kernel_regularizer, PartialIdentityDecay)
    assert layer.kernel_regularizer.l2 == pytest.approx(1e-4)
    assert not layer.use_bias


def test_keras_round_trip_without_custom_objects(tmp_path):
    converted = apply_resnet_init(models.all_cnn_c(**SMALL), verbose=False)
    path = os.path.join(tmp_path, "converted.keras")
    converted.save(path)
    reloaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).random((4, 9, 9, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(x, training=False)),
        keras.ops.convert_to_numpy(converted(x, training=False)),
        atol=1e-6,
    )
    assert [type(layer) for layer in reloaded.layers] == [type(layer) for layer in converted.layers]
    assert (
        reloaded.get_layer("conv5_conv").get_config()
        == converted.get_layer("conv5_conv").get_config()
    )


def test_skipped_layers_and_reasons():
    model = toy_model()
    rows = {row["layer"]: row for row in resnet_init_report(model)}
    assert rows["stem"]["reason"].startswith("reads the model input")
    assert rows["biased"]["reason"].startswith("has a bias")
    assert rows["l1_decay"]["reason"].startswith("kernel_regularizer L1")
    assert rows["even"]["reason"].startswith("even kernel size")
    assert rows["grouped"]["reason"].startswith("grouped convolution")
    assert rows["classifier"]["reason"].startswith("produces the model output")
    assert rows["dilated"]["action"] == rows["hidden"]["action"] == "convert"
    # No regularizer: the conversion adds no weight decay.
    assert rows["dilated"]["l2"] == 0.0

    converted = apply_resnet_init(model, verbose=False)
    dilated = converted.get_layer("dilated")
    assert isinstance(dilated, GeneralizedResidualConv2D)
    assert tuple(dilated.dilation_rate) == (2, 2)
    assert dilated.get_config()["activation"] == "relu"
    assert isinstance(converted.get_layer("hidden"), GeneralizedResidualDense)
    for name in ("stem", "biased", "bn", "l1_decay", "even", "grouped", "classifier"):
        assert type(converted.get_layer(name)) is type(model.get_layer(name))
        assert same_weights(model.get_layer(name), converted.get_layer(name)), name
    x = np.random.default_rng(1).random((2, 8, 8, 4)).astype("float32")
    assert tuple(converted(x, training=False).shape) == (2, 3)


def test_bias_modes_and_explicit_l2(tmp_path):
    model = toy_model()
    kept = apply_resnet_init(model, bias="keep", l2=1e-3, verbose=False)
    layer = kept.get_layer("biased")
    assert type(layer) is keras.layers.Conv2D and layer.use_bias
    assert isinstance(layer.kernel_initializer, ResNetInitInitializer)
    assert isinstance(layer.kernel_regularizer, PartialIdentityDecay)
    assert layer.kernel_regularizer.l2 == pytest.approx(1e-3)
    # With l2 given, the L1-regularized layer is converted too.
    assert isinstance(kept.get_layer("l1_decay"), GeneralizedResidualConv2D)
    assert kept.get_layer("l1_decay").l2 == pytest.approx(1e-3)
    path = os.path.join(tmp_path, "kept.keras")
    kept.save(path)
    reloaded = keras.saving.load_model(path).get_layer("biased")
    assert isinstance(reloaded.kernel_initializer, ResNetInitInitializer)
    assert reloaded.get_config() == layer.get_config()
    assert same_weights(reloaded, layer)

    dropped = apply_resnet_init(model, bias="drop", verbose=False)
    layer = dropped.get_layer("biased")
    assert isinstance(layer, GeneralizedResidualConv2D) and not layer.use_bias
    assert len(layer.weights) == 1


def test_predicate_chooses_layers():
    model = models.all_cnn_c(**SMALL)
    converted = apply_resnet_init(
        model, predicate=lambda layer: layer.name == "conv1_conv", verbose=False
    )
    assert isinstance(converted.get_layer("conv1_conv"), GeneralizedResidualConv2D)
    assert type(converted.get_layer("conv2_conv")) is keras.layers.Conv2D
    # 3 input channels, 96 output channels: identity width min(2, 48).
    zero = apply_resnet_init(
        model,
        predicate=lambda layer: layer.name == "conv1_conv",
        kernel_initializer="zeros",
        verbose=False,
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(zero.get_layer("conv1_conv").kernel),
        numpy_partial_identity((3, 3, 3, 96), 2),
    )


def test_verbose_prints_table(capsys):
    apply_resnet_init(models.all_cnn_c(**SMALL), verbose=True)
    printed = capsys.readouterr().out
    assert "7 of 9 converted" in printed
    assert "conv1_conv" in printed and "reads the model input" in printed


def test_graph_nested_model_shared_layer_and_compiled_original():
    """The copy keeps the graph, input names and nested models; the original is left alone."""
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="inner_dense")])
    inputs = keras.Input((8,))  # unnamed: its layer and its tensor have different names
    x = keras.layers.Dense(8, name="stem")(inputs)
    shared = keras.layers.Dense(8, use_bias=False, name="shared")
    outputs = keras.layers.Dense(2, name="classifier")(inner(shared(shared(x))))
    model = keras.Model(inputs, outputs, name="nested")
    model.compile("sgd", "mse")
    config = model.get_config()
    rows = {row["layer"]: row for row in resnet_init_report(model)}
    assert rows["stem"]["reason"].startswith("reads the model input")
    # The nested model is a boundary: `shared` produces its input, not the model output.
    assert rows["shared"]["action"] == "convert"

    converted = apply_resnet_init(model, verbose=False)
    assert [layer.name for layer in converted.layers] == [layer.name for layer in model.layers]
    assert not converted.compiled
    layer = converted.get_layer("shared")
    assert isinstance(layer, GeneralizedResidualDense) and len(layer.weights) == 1
    twin = converted.get_layer(inner.name)
    assert isinstance(twin, keras.Sequential) and twin is not inner and same_weights(inner, twin)
    x = np.random.default_rng(3).random((2, 8)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(twin(x)), keras.ops.convert_to_numpy(inner(x)), atol=1e-6
    )
    assert model.get_config() == config and model.compiled


def test_bad_input():
    with pytest.raises(ValueError, match="no layer would be converted"):
        apply_resnet_init(models.all_cnn_c(**SMALL), predicate=lambda layer: False)
    with pytest.raises(ValueError, match="no layer would be converted"):
        # Only the classifier, which has a bias.
        apply_resnet_init(
            models.all_cnn_c(**SMALL), predicate=lambda layer: layer.name == "classifier"
        )
    already = resnet_init_report(models.all_cnn_c(resnet_init=True, **SMALL))
    assert {row["reason"] for row in already if row["layer"] == "conv2_conv"} == {
        "already a generalized residual layer"
    }
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, use_bias=False)])
    with pytest.raises(ValueError, match="functional"):
        apply_resnet_init(sequential)
    with pytest.raises(ValueError, match="functional"):
        apply_resnet_init("all_cnn_c")
    model = models.all_cnn_c(**SMALL)
    with pytest.raises(ValueError, match="residual_fraction"):
        apply_resnet_init(model, residual_fraction=1.5)
    with pytest.raises(ValueError, match="bias"):
        apply_resnet_init(model, bias="fold")
    with pytest.raises(ValueError, match="l2"):
        apply_resnet_init(model, l2=-1.0)
    with pytest.raises(ValueError, match="predicate"):
        apply_resnet_init(model, predicate="conv2_conv")


@pytest.mark.slow
def test_keras_applications_mobilenet(tmp_path):
    model = keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10
    )
    rows = resnet_init_report(model)
    converted_names = [row["layer"] for row in rows if row["action"] == "convert"]
    assert converted_names == [f"conv_pw_{i}" for i in range(1, 14)]
    skipped = {row["layer"]: row["reason"] for row in rows if row["action"] == "skip"}
    assert skipped["conv1"].startswith("reads the model input")
    assert skipped["conv_preds"].startswith("produces the model output")

    converted = apply_resnet_init(model, l2=1e-4, verbose=False)
    for layer in model.layers:
        twin = converted.get_layer(layer.name)
        if layer.name in converted_names:
            assert isinstance(twin, GeneralizedResidualConv2D)
        else:
            assert type(twin) is type(layer)
            assert same_weights(layer, twin), layer.name
    path = os.path.join(tmp_path, "mobilenet.keras")
    converted.save(path)
    reloaded = keras.saving.load_model(path)
    x = np.random.default_rng(2).random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), converted.predict(x, verbose=0), atol=1e-5
    )
