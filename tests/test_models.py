import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_rir
from keras_rir.initializers import partial_identity, residual_width
from keras_rir.layers import DualStreamConv2D, GeneralizedResidualConv2D

# Trainable parameters at 10 classes, from the independent reference build
# (Table 7: 0.46M / 0.49M / 9.5M / 10.3M).
TABLE7_PARAMS = {
    "cnn32": 464_154,
    "resnet_init32": 464_154,
    "resnet32": 487_386,
    "rir32": 487_386,
    "wide_cnn18": 9_469_930,
    "wide_resnet_init18": 9_469_930,
    "wide_resnet18": 10_300_522,
    "wide_rir18": 10_300_522,
}
# Registry names that need arguments, with the ones the tests use.
REQUIRED_KWARGS = {
    "rir": dict(num_blocks=9, layers_per_block=3),
    "resnet": dict(num_blocks=15, layers_per_block=4),
}


def build(name, **kwargs):
    return keras_rir.models.get(name, **REQUIRED_KWARGS.get(name, {}), **kwargs)


def trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def formula_params(stem, stages, layers_per_block, shortcuts, num_classes):
    """Independent count: 3x3 bias-free convs + BN (gamma, beta) per unit, classifier with bias.

    `stages` is a list of (filters, blocks); projections (3x3 conv + BN) sit on every block
    that changes the shape when `shortcuts` is True.
    """
    total = 9 * 3 * stem + 2 * stem
    previous = stem
    for filters, blocks in stages:
        for block in range(blocks):
            c_in = previous if block == 0 else filters
            total += 9 * c_in * filters + 2 * filters  # first unit
            total += (layers_per_block - 1) * (9 * filters * filters + 2 * filters)
            if shortcuts and c_in != filters:
                total += 9 * c_in * filters + 2 * filters
        previous = filters
    return total + previous * num_classes + num_classes


def expected_params(name, num_classes):
    shortcuts = "resnet" in name.replace("resnet_init", "") or "rir" in name
    if name.startswith("wide_"):
        return formula_params(96, [(96, 2), (192, 3), (384, 3)], 2, shortcuts, num_classes)
    if name in REQUIRED_KWARGS:
        kwargs = REQUIRED_KWARGS[name]
        per_stage = kwargs["num_blocks"] // 3
        stages = [(16, per_stage), (32, per_stage), (64, per_stage)]
        return formula_params(16, stages, kwargs["layers_per_block"], True, num_classes)
    if name == "all_cnn_c":
        convs = [
            (3, 96, 3),
            (96, 96, 3),
            (96, 96, 3),
            (96, 192, 3),
            (192, 192, 3),
            (192, 192, 3),
            (192, 192, 3),
            (192, 192, 1),
        ]
        hidden = sum(k * k * c_in * c_out + 2 * c_out for c_in, c_out, k in convs)
        return hidden + 192 * num_classes + num_classes
    return formula_params(16, [(16, 5), (32, 5), (64, 5)], 2, shortcuts, num_classes)


def test_registry_lists_every_network():
    assert set(keras_rir.models.list_models()) == set(TABLE7_PARAMS) | {
        "all_cnn_c",
        "rir",
        "resnet",
    }


@pytest.mark.parametrize("name", sorted(TABLE7_PARAMS))
def test_table7_parameter_counts(name):
    model = keras_rir.models.get(name)
    assert trainable_params(model) == TABLE7_PARAMS[name]
    assert TABLE7_PARAMS[name] == expected_params(name, 10)


@pytest.mark.parametrize("name", keras_rir.models.list_models())
@pytest.mark.parametrize("num_classes", [10, 100])
def test_parameter_counts_match_formula(name, num_classes):
    model = build(name, num_classes=num_classes)
    assert trainable_params(model) == expected_params(name, num_classes)
    assert model.output_shape == (None, num_classes)


def test_depth_study_reproduces_rir32_and_resnet32():
    rir = keras_rir.models.rir(num_blocks=15, layers_per_block=2)
    resnet = keras_rir.models.resnet(num_blocks=15, layers_per_block=2)
    assert trainable_params(rir) == TABLE7_PARAMS["rir32"]
    assert trainable_params(resnet) == TABLE7_PARAMS["resnet32"]
    assert [type(layer) for layer in rir.layers] == [
        type(layer) for layer in keras_rir.models.rir32().layers
    ]


@pytest.mark.parametrize(
    "name,generalized,outer_shortcuts",
    [
        ("cnn32", 0, 0),
        ("resnet32", 0, 6),
        ("resnet_init32", 30, 0),
        ("rir32", 30, 6),
        ("wide_rir18", 16, 6),
    ],
)
def test_architecture_rules(name, generalized, outer_shortcuts):
    # Generalized units only inside residual blocks; stem, projections and classifier plain.
    model = keras_rir.models.get(name)
    fused = [layer for layer in model.layers if isinstance(layer, GeneralizedResidualConv2D)]
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(fused) == generalized
    assert not any(
        layer.name.startswith(("stem", "classifier")) or "projection" in layer.name
        for layer in fused
    )
    # Outer shortcuts: one Add per block, i.e. 15 (32-layer) or 8 (wide) when present.
    assert len(adds) == (0 if not outer_shortcuts else (8 if name.startswith("wide") else 15))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(not layer.use_bias for layer in convs if layer.name != "classifier")


def test_identity_shortcut_option():
    model = keras_rir.models.rir32(shortcut="identity")
    names = [layer.name for layer in model.layers]
    assert not any("projection" in name for name in names)
    assert sum(isinstance(layer, keras_rir.layers.IdentityShortcut) for layer in model.layers) == 2
    assert trainable_params(model) == TABLE7_PARAMS["cnn32"]


@pytest.mark.parametrize("name", ["rir32", "resnet_init32", "all_cnn_c"])
def test_explicit_implementation_is_the_same_network(name):
    kwargs = {"resnet_init": True, "dropout": False} if name == "all_cnn_c" else {}
    shape = (12, 12, 3)
    fused = keras_rir.models.get(name, input_shape=shape, **kwargs)
    explicit = keras_rir.models.get(name, input_shape=shape, implementation="explicit", **kwargs)
    assert trainable_params(fused) == trainable_params(explicit)
    # Copy the fused weights into the explicit twin, splitting each fused kernel.
    for layer in fused.layers:
        twin = explicit.get_layer(layer.name)
        if isinstance(layer, GeneralizedResidualConv2D):
            assert isinstance(twin, DualStreamConv2D)
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            learned = kernel - partial_identity(kernel.shape)
            r_in, r_out = residual_width(kernel.shape[-2]), residual_width(kernel.shape[-1])
            twin.r_to_r.kernel.assign(learned[..., :r_in, :r_out])
            twin.t_to_r.kernel.assign(learned[..., r_in:, :r_out])
            twin.r_to_t.kernel.assign(learned[..., :r_in, r_out:])
            twin.t_to_t.kernel.assign(learned[..., r_in:, r_out:])
        else:
            twin.set_weights(layer.get_weights())
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(explicit(x, training=True)),
        keras.ops.convert_to_numpy(fused(x, training=True)),
        atol=1e-5,
    )
    fused_decay = float(sum(keras.ops.convert_to_numpy(loss) for loss in fused.losses))
    explicit_decay = float(sum(keras.ops.convert_to_numpy(loss) for loss in explicit.losses))
    assert fused_decay == pytest.approx(explicit_decay, rel=1e-5)


@pytest.mark.parametrize("name", keras_rir.models.list_models())
def test_keras_save_load_round_trip(name, tmp_path):
    model = build(name, num_classes=7)
    x = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: everything is registered
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    assert json.loads(loaded.to_json()) == json.loads(model.to_json())
    # The residual family saves its builder's arguments; ALL-CNN-C stays a functional graph.
    assert type(loaded) is type(model)
    if name != "all_cnn_c":
        assert isinstance(loaded, keras_rir.models.ResidualNetwork)
        assert loaded.get_config() == model.get_config()


CROSS_BACKEND_CHECK = """
import sys
import numpy as np
import keras_rir
model = keras_rir.models.rir32()
model.load_weights(sys.argv[1])
expected = np.load(sys.argv[2])
got = model.predict(np.load(sys.argv[3]), verbose=0)
assert np.abs(got - expected).max() < 1e-4, np.abs(got - expected).max()
print("same predictions")
"""


@pytest.mark.slow
def test_weights_load_under_every_other_backend(tmp_path):
    model = keras_rir.models.rir32()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(4, 32, 32, 3)).astype("float32")
    model.train_on_batch(x, np.arange(4))  # moves the BN statistics away from 0 and 1
    model.save_weights(tmp_path / "rir32.weights.h5")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))
    for backend in {"tensorflow", "jax", "torch"} - {keras.backend.backend()}:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                CROSS_BACKEND_CHECK,
                str(tmp_path / "rir32.weights.h5"),
                str(tmp_path / "expected.npy"),
                str(tmp_path / "x.npy"),
            ],
            env={**os.environ, "KERAS_BACKEND": backend},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, (backend, result.stderr[-3000:])
        assert "same predictions" in result.stdout


def test_mixed_precision_trains_with_float32_outputs():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = keras_rir.models.rir(num_blocks=3, layers_per_block=2, input_shape=(16, 16, 3))
    assert model.get_layer("stage1_block1_1_conv").compute_dtype == "bfloat16"
    assert model.get_layer("stage1_block1_1_conv").kernel.dtype == "float32"
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(3).uniform(size=(4, 16, 16, 3)).astype("float32")
    loss = model.train_on_batch(x, np.arange(4))
    assert np.isfinite(loss)
    probabilities = model(x)
    assert keras.backend.standardize_dtype(probabilities.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probabilities).sum(-1), 1.0, atol=1e-5)


def test_wide_rir18_builds_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = keras_rir.models.wide_rir18(num_classes=100)
    assert model.output.dtype == "float32"
    assert trainable_params(model) == expected_params("wide_rir18", 100)


NO_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # any import of tensorflow now fails
import keras_rir
for name in ["wide_rir18", "rir32", "all_cnn_c"]:
    model = keras_rir.models.get(name, num_classes=100)
    model.predict(__import__("numpy").zeros((1, 32, 32, 3)), verbose=0)
print("built without tensorflow")
"""


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="checks JAX and torch")
def test_models_need_no_tensorflow():
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "built without tensorflow" in result.stdout


@pytest.mark.parametrize(
    "name,kwargs,argument",
    [
        ("rir32", {"num_classes": 0}, "num_classes"),
        ("wide_rir18", {"num_classes": 2.5}, "num_classes"),
        ("rir32", {"residual_fraction": 1.5}, "residual_fraction"),
        ("resnet_init32", {"residual_fraction": 0}, "residual_fraction"),
        ("rir32", {"input_shape": (2, 2, 3)}, "input_shape"),
        ("all_cnn_c", {"input_shape": (8, 8, 3)}, "input_shape"),
        ("rir32", {"input_shape": (32, 32)}, "input_shape"),
        ("rir32", {"kernel_initializer": "msr_typo"}, "kernel_initializer"),
        ("rir32", {"shortcut": "dense"}, "shortcut"),
        ("cnn32", {"shortcut": "dense"}, "shortcut"),
        ("rir32", {"implementation": "split"}, "implementation"),
        ("rir32", {"l2": -1}, "l2"),
        ("rir", {"num_blocks": 10, "layers_per_block": 2}, "num_blocks"),
        ("resnet", {"num_blocks": 9, "layers_per_block": 0}, "layers_per_block"),
    ],
)
def test_bad_input_names_argument_value_and_accepted(name, kwargs, argument):
    with pytest.raises(ValueError) as error:
        keras_rir.models.get(name, **kwargs)
    message = str(error.value)
    assert f"`{argument}`" in message
    assert f"Received: {argument}={kwargs[argument]!r}" in message
    assert "Expected" in message


def test_unknown_model_name():
    with pytest.raises(ValueError, match=r"`name`.*wide_rir18.*Received: name='rir34'"):
        keras_rir.models.get("rir34")
