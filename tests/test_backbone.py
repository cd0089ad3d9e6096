"""`keras_rir.models.ResidualNetwork`: its config, `.keras` round trips, the presets table and
the shipped weight files, on every backend."""

import json

import h5py
import keras
import numpy as np
import pytest

import keras_rir
from keras_rir import presets
from keras_rir.models import ResidualNetwork

SMALL = dict(
    stackwise_num_filters=[8, 16],
    stackwise_num_blocks=[1, 2],
    num_classes=5,
    image_shape=(8, 8, 3),
)
# (config changes, output shape) of the round-trip variants.
VARIANTS = {
    "rir": ({}, (5,)),
    "cnn_conv_head": (dict(generalized=False, outer_shortcuts=False, head="conv"), (5,)),
    "resnet_identity": (dict(generalized=False, shortcut="identity", layers_per_block=3), (5,)),
    "explicit": (dict(implementation="explicit", residual_fraction=0.25, l2=0.0), (5,)),
    "logits": (dict(classifier_activation=None), (5,)),
    "features": (dict(include_top=False), (4, 4, 16)),
    "avg_features": (dict(include_top=False, pooling="avg"), (16,)),
    "max_features": (dict(include_top=False, pooling="max"), (16,)),
    "seeded_initializer": (
        dict(kernel_initializer=keras.initializers.GlorotNormal(seed=3), name="seeded"),
        (5,),
    ),
}


def images(count=3, size=8, seed=0):
    return np.random.default_rng(seed).normal(size=(count, size, size, 3)).astype("float32")


def h5_datasets(path):
    """{dataset path: array} of every dataset in an HDF5 file."""
    found = {}
    with h5py.File(path, "r") as file:
        file.visititems(
            lambda name, obj: found.update({name: obj[()]}) if isinstance(obj, h5py.Dataset) else 0
        )
    return found


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_keras_file_restores_the_architecture(variant, tmp_path):
    changes, output_shape = VARIANTS[variant]
    model = ResidualNetwork(**{**SMALL, **changes})
    assert model.output_shape == (None, *output_shape)
    x = images()
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    config = model.get_config()
    json.dumps(config)  # plain Python values only
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")  # registered: no custom_objects
    assert type(loaded) is ResidualNetwork
    assert loaded.get_config() == config
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)), expected, atol=1e-6
    )
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_every_argument_is_an_attribute_and_from_config_rebuilds():
    model = ResidualNetwork(**SMALL, include_top=False, pooling="avg", name="tiny")
    config = model.get_config()
    for argument, value in config.items():
        attribute = getattr(model, argument)
        assert (list(attribute) if isinstance(attribute, tuple) else attribute) == value, argument
    twin = ResidualNetwork.from_config(config)
    assert twin.get_config() == config and twin.name == "tiny"
    assert twin.count_params() == model.count_params()


def test_features_and_logits_are_the_top_s_inputs():
    full = ResidualNetwork(**SMALL)
    logits = ResidualNetwork(**SMALL, classifier_activation=None)
    features = ResidualNetwork(**SMALL, include_top=False)
    pooled = {
        pooling: ResidualNetwork(**SMALL, include_top=False, pooling=pooling)
        for pooling in ("avg", "max")
    }
    for other in (logits, features, *pooled.values()):
        for layer in other.layers:
            if layer.weights:
                layer.set_weights(full.get_layer(layer.name).get_weights())
    x = images(seed=1)
    probabilities = keras.ops.convert_to_numpy(full(x, training=False))
    z = keras.ops.convert_to_numpy(logits(x, training=False))
    softmax = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(probabilities, softmax / softmax.sum(-1, keepdims=True), atol=1e-6)
    assert logits.layers[-1].name == "logits" and full.layers[-1].name == "probabilities"
    feature_map = keras.ops.convert_to_numpy(features(x, training=False))
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(pooled[pooling](x, training=False)),
            reduce(feature_map, axis=(1, 2)),
            rtol=1e-5,
            atol=1e-6,
        )
    dense = full.get_layer("classifier")
    np.testing.assert_allclose(
        feature_map.mean(axis=(1, 2)) @ keras.ops.convert_to_numpy(dense.kernel)
        + keras.ops.convert_to_numpy(dense.bias),
        z,
        rtol=1e-4,
        atol=1e-5,
    )


def test_logits_stay_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = ResidualNetwork(**SMALL, classifier_activation=None)
    assert model.get_layer("stage1_block1_1_conv").compute_dtype == "bfloat16"
    assert keras.backend.standardize_dtype(model(images()).dtype) == "float32"


@pytest.mark.parametrize(
    "changes, argument",
    [
        (dict(stackwise_num_filters=[]), "stackwise_num_filters"),
        (dict(stackwise_num_blocks=[1, 0]), "stackwise_num_blocks"),
        (dict(stackwise_num_blocks=[1, 1, 1]), "stackwise_num_blocks"),
        (dict(layers_per_block=0), "layers_per_block"),
        (dict(generalized="yes"), "generalized"),
        (dict(head="mlp"), "head"),
        (dict(include_top=None), "include_top"),
        (dict(pooling="min"), "pooling"),
        (dict(classifier_activation="softmaxx"), "classifier_activation"),
        (dict(image_shape=(1, 8, 3)), "image_shape"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_bad_arguments_name_themselves(changes, argument):
    with pytest.raises(ValueError) as error:
        ResidualNetwork(**{**SMALL, **changes})
    message = str(error.value)
    assert f"`{argument}`" in message and f"Received: {argument}=" in message


@pytest.mark.parametrize("name", sorted(presets.MODEL_PRESETS))
def test_presets_table_builds_its_builders(name):
    entry = presets.MODEL_PRESETS[name]
    builder = getattr(keras_rir.models, name)
    assert builder.__doc__.splitlines()[0].startswith(entry["description"])
    assert name in keras_rir.models.list_models()
    model = builder()
    config = model.get_config()
    assert isinstance(model, ResidualNetwork) and config["name"] == name
    assert {key: config[key] for key in entry["config"]} == entry["config"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == entry["params"]


@pytest.mark.parametrize("name", sorted({model for model, _ in presets.PRESETS}))
def test_shipped_weight_files_fill_every_variable(name, tmp_path):
    """Every dataset of the shipped file is a variable of the network, with its shape, and
    loading the file assigns every variable: the network saves back exactly the file."""
    shipped = h5_datasets(presets.PRESETS[name, "cifar10"].path)
    fresh = keras_rir.models.get(name)
    fresh.save_weights(tmp_path / "fresh.weights.h5")
    layout = {
        path: value.shape for path, value in h5_datasets(tmp_path / "fresh.weights.h5").items()
    }
    assert layout == {path: value.shape for path, value in shipped.items()}

    loaded = keras_rir.models.get(name, weights=presets.PRESETS[name, "cifar10"].path)
    loaded.save_weights(tmp_path / "loaded.weights.h5")
    saved = h5_datasets(tmp_path / "loaded.weights.h5")
    assert saved.keys() == shipped.keys()
    for path, value in shipped.items():
        np.testing.assert_array_equal(saved[path], value, err_msg=path)
