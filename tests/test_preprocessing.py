import keras
import numpy as np
import pytest

from keras_rir.preprocessing import RandomCropFlip, with_preprocessing


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def candidates(image, padding):
    """Every crop of the zero-padded image, plain and flipped: {(dy, dx, flipped): crop}."""
    height, width = image.shape[:2]
    padded = np.pad(image, [(padding, padding), (padding, padding), (0, 0)])
    crops = {}
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[dy : dy + height, dx : dx + width]
            crops[(dy, dx, False)] = crop
            crops[(dy, dx, True)] = crop[:, ::-1]
    return crops


def identify(augmented, images, padding):
    """The (dy, dx, flipped) of each augmented image; fails unless exactly one candidate fits."""
    found = []
    for output, image in zip(augmented, images, strict=True):
        matches = [
            key for key, crop in candidates(image, padding).items() if (crop == output).all()
        ]
        assert len(matches) == 1, f"no unique crop/flip reproduces the output: {matches}"
        found.append(matches[0])
    return found


def positive_images(num, shape=(8, 8, 3), seed=0):
    """Distinct values in [1, 2): every crop and flip of an image is distinguishable."""
    return np.random.default_rng(seed).uniform(1, 2, (num, *shape)).astype("float32")


def test_training_output_is_a_crop_of_the_padded_image_possibly_flipped():
    images = positive_images(64)
    layer = RandomCropFlip(padding=2, seed=0)
    augmented = numpy(layer(images, training=True))
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    found = identify(augmented, images, padding=2)
    assert {flipped for _, _, flipped in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) > 10


def test_offsets_and_flips_are_uniform():
    padding, num = 2, 2000
    image = positive_images(1, shape=(6, 6, 1))[0]
    augmented = numpy(RandomCropFlip(padding, seed=1)(np.stack([image] * num), training=True))
    crops = candidates(image, padding)
    keys = list(crops)
    stacked = np.stack([crops[key] for key in keys])  # (50, 6, 6, 1)
    matches = (augmented[:, None] == stacked[None]).all(axis=(2, 3, 4))  # (num, 50)
    assert (matches.sum(axis=1) == 1).all()
    found = [keys[i] for i in matches.argmax(axis=1)]
    # Each of the 5 offsets per axis has probability 1/5 (400 expected, sd 18); flips 1/2 (sd 22).
    for axis in (0, 1):
        counts = np.bincount([key[axis] for key in found], minlength=5)
        assert counts.shape == (5,) and (counts > 320).all() and (counts < 480).all(), counts
    flips = sum(key[2] for key in found)
    assert 900 < flips < 1100, flips
    assert len(set(found)) == 50  # every offset pair, flipped or not, occurs


def test_without_flip_never_flips_and_padding_zero_only_flips():
    images = positive_images(32)
    found = identify(numpy(RandomCropFlip(2, flip=False, seed=2)(images, training=True)), images, 2)
    assert not any(flipped for _, _, flipped in found)
    found = identify(numpy(RandomCropFlip(0, seed=2)(images, training=True)), images, 0)
    assert {key for key in found} == {(0, 0, False), (0, 0, True)}


def test_inference_is_identity():
    images = positive_images(4)
    layer = RandomCropFlip(seed=0)
    np.testing.assert_array_equal(numpy(layer(images)), images)
    np.testing.assert_array_equal(numpy(layer(images, training=False)), images)


def test_seed_determinism():
    images = positive_images(16)
    first = numpy(RandomCropFlip(2, seed=7)(images, training=True))
    np.testing.assert_array_equal(first, numpy(RandomCropFlip(2, seed=7)(images, training=True)))
    assert not np.array_equal(first, numpy(RandomCropFlip(2, seed=8)(images, training=True)))
    layer = RandomCropFlip(2, seed=7)
    layer(images, training=True)
    assert not np.array_equal(first, numpy(layer(images, training=True)))  # the state advances


class AlwaysAugment(keras.Model):
    """Calls the layer with training=True, so that predict() runs it in a compiled step."""

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.augment = layer

    def call(self, inputs):
        return self.augment(inputs, training=True)


def test_inside_a_compiled_function():
    images = positive_images(10)
    model = AlwaysAugment(RandomCropFlip(2, seed=3))
    augmented = model.predict(np.concatenate([images, images]), batch_size=10, verbose=0)
    first = identify(augmented[:10], images, 2)
    second = identify(augmented[10:], images, 2)
    assert first != second  # the generator state advances from one compiled step to the next
    assert len(set(first + second)) > 5


def test_config_round_trip():
    layer = RandomCropFlip(padding=3, flip=False, seed=5, name="crop")
    config = layer.get_config()
    assert (config["padding"], config["flip"], config["seed"]) == (3, False, 5)
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, RandomCropFlip)
    assert (restored.padding, restored.flip, restored.seed, restored.name) == (3, False, 5, "crop")


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"padding": -1}, "padding"),
        ({"padding": 1.5}, "padding"),
        ({"padding": True}, "padding"),
        ({"flip": "yes"}, "flip"),
        ({"seed": "a"}, "seed"),
    ],
)
def test_invalid_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"Invalid value for argument `{argument}`"):
        RandomCropFlip(**kwargs)


def test_rejects_non_image_input():
    with pytest.raises(ValueError, match="Invalid value for argument `input_shape`"):
        RandomCropFlip()(np.zeros((2, 8, 3), "float32"), training=True)


# --- with_preprocessing ----------------------------------------------------------------------

MEAN = np.array([120.0, 110.0, 100.0], "float32")
STD = np.array([60.0, 50.0, 70.0], "float32")


def small_classifier(shape=(8, 8, 3)):
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small")


def raw_images(num=6, shape=(8, 8, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (num, *shape)).astype("uint8")


def test_normalizes_then_predicts_like_the_model():
    inner = small_classifier()
    model = with_preprocessing(inner, MEAN, STD, seed=0)
    assert model.name == "small_preprocessed"
    assert [layer.name for layer in model.layers] == [
        "images",
        "normalization",
        "random_crop_flip",
        "small",
    ]
    images = raw_images()
    expected = inner.predict((images - MEAN) / STD, verbose=0)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        model.predict(images.astype("float32"), verbose=0), expected, rtol=1e-5, atol=1e-6
    )


def test_training_augments_the_normalized_image_padded_with_the_mean():
    """With an identity model, training output = a crop/flip of the zero-padded normalized image."""
    identity = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Identity()], name="identity")
    model = with_preprocessing(identity, MEAN, STD, padding=2, seed=4)
    images = raw_images(32)
    normalized = ((images - MEAN) / STD).astype("float32")
    augmented = numpy(model(images, training=True))
    found = []
    for output, image in zip(augmented, normalized, strict=True):
        matches = [
            key
            for key, crop in candidates(image, 2).items()
            if np.allclose(crop, output, atol=1e-5)
        ]
        assert len(matches) == 1
        found.append(matches[0])
    assert len(set(found)) > 8
    # In pixel units the padding is the mean pixel: offset dy = 0 shows 2 rows of padding on top.
    index = next(i for i, (dy, _, _) in enumerate(found) if dy == 0)
    pixels = augmented[index] * STD + MEAN
    np.testing.assert_allclose(pixels[:2], np.broadcast_to(MEAN, (2, 8, 3)), atol=1e-3)
    np.testing.assert_allclose(numpy(model(images)), normalized, atol=1e-5)


def test_fit_runs_the_augmentation_in_the_compiled_train_step():
    model = with_preprocessing(small_classifier(), MEAN, STD, seed=0)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    state = model.get_layer("random_crop_flip").seed_generator.state
    before = numpy(state).copy()
    history = model.fit(raw_images(20), np.arange(20) % 5, batch_size=10, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.array_equal(numpy(state), before)  # random numbers were drawn in each step


def test_save_and_load_without_custom_objects(tmp_path):
    model = with_preprocessing(small_classifier(), MEAN, STD, padding=3, seed=9)
    images = raw_images()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6, atol=1e-7
    )
    crop = loaded.get_layer("random_crop_flip")
    assert isinstance(crop, RandomCropFlip) and (crop.padding, crop.seed) == (3, 9)


def test_without_augmentation():
    model = with_preprocessing(small_classifier(), MEAN, STD, augment=False)
    assert "random_crop_flip" not in [layer.name for layer in model.layers]
    images = raw_images()
    np.testing.assert_allclose(
        numpy(model(images, training=True)), numpy(model(images)), rtol=1e-6, atol=1e-7
    )


def test_mixed_bfloat16_keeps_float32_preprocessing_and_output():
    keras.config.set_dtype_policy("mixed_bfloat16")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(inputs))
    inner = keras.Model(inputs, keras.layers.Dense(5)(x))  # bfloat16 logits
    model = with_preprocessing(inner, MEAN, STD, seed=0)
    assert model.get_layer("normalization").compute_dtype == "float32"
    assert model.get_layer("random_crop_flip").compute_dtype == "float32"
    outputs = model.predict(raw_images(), verbose=0)
    assert outputs.dtype == np.float32
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"std": [1.0, 0.0, 1.0]}, "std"),
        ({"mean": [1.0, 2.0]}, "mean"),
        ({"mean": [1.0, np.nan, 3.0]}, "mean"),
        ({"augment": "yes"}, "augment"),
        ({"model": "rir32"}, "model"),
    ],
)
def test_with_preprocessing_invalid_arguments(kwargs, argument):
    arguments = {"model": small_classifier(), "mean": MEAN, "std": STD, **kwargs}
    with pytest.raises(ValueError, match=f"Invalid value for argument `{argument}`"):
        with_preprocessing(**arguments)
