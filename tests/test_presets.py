"""The `weights=` argument of the builders and the shipped presets, on every backend."""

import dataclasses
import hashlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_rir
from keras_rir import data as data_lib
from keras_rir import presets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_CIFAR10 = os.environ.get("KERAS_RIR_DATA_DIR") or os.path.join(
    REPO, "..", "shared", "data", "cifar10"
)


def _raw_images(count=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def _trained_weights_file(model_name, path):
    """A `.weights.h5` of `model_name` whose BN statistics and kernels moved off their init."""
    model = keras_rir.models.get(model_name)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(1).normal(size=(8, 32, 32, 3)).astype("float32")
    model.train_on_batch(x, np.arange(8) % 10)
    model.save_weights(path)
    return model


@pytest.fixture
def generated_preset(tmp_path, monkeypatch):
    """A rir32 "cifar10" preset backed by a generated file, with its SHA-256."""
    path = tmp_path / "rir32_generated.weights.h5"
    network = _trained_weights_file("rir32", path)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    preset = dataclasses.replace(
        presets.PRESETS["rir32", "cifar10"],
        file=path.name,
        sha256=sha256,
        mean=(120.0, 110.0, 100.0),
        std=(60.0, 50.0, 70.0),
    )
    monkeypatch.setattr(presets, "WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setitem(presets.PRESETS, ("rir32", "cifar10"), preset)
    return preset, network


def test_list_presets_describes_every_shipped_file():
    listed = keras_rir.models.list_presets()
    assert [p["name"] for p in listed] == ["cnn32", "resnet32", "resnet_init32", "rir32"]
    for entry in listed:
        preset = presets.PRESETS[entry["name"], entry["dataset"]]
        assert entry["file_size"] == os.path.getsize(preset.path) > 1_000_000
        assert 0.85 < entry["test_accuracy"] < 1
        assert "82 epochs" in entry["budget"] and "batch 500" in entry["recipe"]
        with open(preset.path, "rb") as file:
            assert hashlib.sha256(file.read()).hexdigest() == preset.sha256


def test_preset_takes_raw_images_and_normalizes_them(generated_preset):
    preset, network = generated_preset
    model = keras_rir.models.rir32(weights="cifar10")
    images = _raw_images()
    normalized = (images.astype("float32") - np.array(preset.mean)) / np.array(preset.std)
    expected = network.predict(normalized.astype("float32"), verbose=0)
    for x in (images, images.astype("float32")):
        probabilities = model.predict(x, verbose=0)
        assert probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


def test_weights_path_loads_into_the_network_as_built(tmp_path):
    path = tmp_path / "cnn32.weights.h5"
    trained = _trained_weights_file("cnn32", path)
    model = keras_rir.models.cnn32(weights=str(path))
    x = np.random.default_rng(3).normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), trained.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert model.name == "cnn32"  # No normalization in front: the file carries none.


def test_corrupt_preset_file_is_refused(generated_preset, tmp_path):
    preset, _ = generated_preset
    with open(preset.path, "r+b") as file:
        file.seek(-100, os.SEEK_END)
        file.write(b"\xff" * 10)
    with pytest.raises(ValueError, match=r"`weights`.*SHA-256"):
        keras_rir.models.rir32(weights="cifar10")


@pytest.mark.parametrize(
    "builder, kwargs, argument, accepted",
    [
        ("wide_rir18", {"weights": "cifar10"}, "weights", r"preset of wide_rir18: \[\]"),
        ("rir32", {"weights": "imagenet"}, "weights", r"\['cifar10'\]"),
        ("rir32", {"weights": 3}, "weights", "None, a preset name or a path"),
        ("rir32", {"weights": "missing.weights.h5"}, "weights", "existing file"),
        ("rir32", {"weights": "cifar10", "num_classes": 100}, "num_classes", "10"),
        ("rir32", {"weights": "cifar10", "input_shape": (64, 64, 3)}, "input_shape", "32, 32"),
        ("rir32", {"weights": "cifar10", "implementation": "explicit"}, "implementation", "fused"),
        ("resnet32", {"weights": "cifar10", "shortcut": "identity"}, "shortcut", "projection"),
        ("rir", {"weights": "cifar10", "num_blocks": 15, "layers_per_block": 2}, "weights", ""),
    ],
)
def test_unavailable_weights_name_the_argument(builder, kwargs, argument, accepted):
    with pytest.raises(ValueError, match=rf"`{argument}`.*{accepted}") as error:
        keras_rir.models.get(builder, **kwargs)
    assert "Received:" in str(error.value)


def test_preset_without_top_gives_the_pooled_features(generated_preset):
    _, network = generated_preset
    features = keras_rir.models.rir32(weights="cifar10", include_top=False, pooling="avg")
    logits = keras_rir.models.rir32(weights="cifar10", classifier_activation=None)
    images = _raw_images()
    pooled = features.predict(images, verbose=0)
    assert pooled.shape == (len(images), 64)
    dense = network.get_layer("classifier")
    np.testing.assert_allclose(
        pooled @ keras.ops.convert_to_numpy(dense.kernel) + keras.ops.convert_to_numpy(dense.bias),
        logits.predict(images, verbose=0),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("content", ["garbage", "other network"])
def test_bad_weights_file_is_refused(tmp_path, content):
    path = tmp_path / "bad.weights.h5"
    if content == "garbage":
        path.write_bytes(b"not an HDF5 file" * 64)
    else:
        _trained_weights_file("cnn32", path)  # cnn32 has no outer shortcuts: rir32 does.
    with pytest.raises(ValueError, match=r"`weights`.*a `.weights.h5` file of rir32"):
        keras_rir.models.rir32(weights=str(path))


CROSS_BACKEND_PREDICT = """
import sys
import numpy as np
import keras_rir
model = keras_rir.models.get(sys.argv[1], weights="cifar10")
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
"""


@pytest.mark.slow
@pytest.mark.one_backend  # compares this backend with the two others
def test_shipped_preset_predicts_the_same_on_every_backend(tmp_path):
    images = _raw_images(16, seed=5)
    np.save(tmp_path / "x.npy", images)
    expected = keras_rir.models.rir32(weights="cifar10").predict(images, verbose=0)
    for backend in {"tensorflow", "jax", "torch"} - {keras.backend.backend()}:
        out = tmp_path / f"{backend}.npy"
        result = subprocess.run(
            [sys.executable, "-c", CROSS_BACKEND_PREDICT, "rir32", tmp_path / "x.npy", out],
            env={**os.environ, "KERAS_BACKEND": backend},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (backend, result.stderr[-3000:])
        np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.one_backend  # the other backends predict the same: the test below
@pytest.mark.skipif(
    not os.path.isdir(REAL_CIFAR10),
    reason=f"the real CIFAR-10 is not at {REAL_CIFAR10} (set KERAS_RIR_DATA_DIR)",
)
def test_rir32_preset_scores_its_stated_accuracy_on_the_real_test_set():
    data = data_lib.load_cifar("cifar10", data_dir=REAL_CIFAR10)
    model = keras_rir.models.rir32(weights="cifar10")
    predictions = np.argmax(model.predict(data.x_test, batch_size=500, verbose=0), axis=-1)
    accuracy = np.mean(predictions == data.y_test.reshape(-1))
    assert len(data.x_test) == 10_000
    assert abs(accuracy - presets.PRESETS["rir32", "cifar10"].test_accuracy) <= 0.001
