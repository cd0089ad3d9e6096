"""The paper's input pipeline as Keras layers: per-channel normalization, random crop and flip.

Everything runs inside the model, on the accelerator and inside the compiled train step, with
`keras.ops` and `keras.random` only, so it is the same on TensorFlow, JAX and PyTorch and the
data can stay `uint8` NumPy arrays (see `keras_rir.data`).

Reference: Targ, Almeida, Lyman, "Resnet in Resnet: Generalizing Residual Architectures",
arXiv:1603.08029, section 3 ("standard augmentation by random crops and horizontal
flips"), as specified by He et al., arXiv:1512.03385, section 4.2.
"""

import numbers

import keras
import numpy as np
from keras import ops

from keras_rir._validation import check_non_negative_int, invalid_value

__all__ = ["RandomCropFlip", "with_preprocessing"]


@keras.saving.register_keras_serializable(package="keras_rir")
class RandomCropFlip(keras.layers.Layer):
    """Random crop of a zero-padded image and random horizontal flip, in training only.

    In training each image of the batch is padded with `padding` zero pixels
    on every side, cropped back to its size at an offset drawn uniformly from
    `{0, ..., 2 * padding}` independently per image and per axis, and, if
    `flip`, mirrored left-right with probability 1/2 (independently of the
    offsets). At inference (`training` false or unset) the layer returns its
    input unchanged. The crop is one vectorised gather over the batch
    (`keras.ops.take`), the random numbers come from the layer's
    `keras.random.SeedGenerator`, so the layer works inside compiled train
    steps on every backend and draws from the same distribution on each.

    Placed after normalization (as `with_preprocessing` does), the zero
    padding pads with the per-channel mean pixel.

    Args:
        padding: pixels of zero padding on each side, an integer >= 0.
        flip: whether to flip horizontally with probability 1/2.
        seed: `None` or an integer seed of the layer's random generator;
            two layers with the same seed produce the same sequence of
            augmentations.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`).

    Input shape:
        `(batch, height, width, channels)`, channels last.

    Output shape:
        The input shape.

    Example:
    >>> layer = keras_rir.preprocessing.RandomCropFlip(padding=4, seed=0)
    >>> layer(np.zeros((2, 32, 32, 3)), training=True).shape
    (2, 32, 32, 3)

    Reference:
        arXiv:1603.08029, section 3 ("random crops and horizontal flips");
        the 4-pixel padding is He et al.'s, arXiv:1512.03385, section 4.2.
    """

    def __init__(self, padding=4, flip=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = check_non_negative_int("padding", padding)
        if not isinstance(flip, bool):
            raise invalid_value("flip", flip, "a bool")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise invalid_value("seed", seed, "None or an integer")
        self.flip = flip
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape)[1:3]:
            raise invalid_value(
                "input_shape",
                tuple(input_shape),
                "a batch of images (batch, height, width, channels) with known height and width",
            )
        super().build(input_shape)

    def call(self, inputs, training=False):
        if not training or (self.padding == 0 and not self.flip):
            return inputs
        _, height, width, channels = inputs.shape
        channels = ops.shape(inputs)[3] if channels is None else channels
        batch = ops.shape(inputs)[0]
        pad = self.padding
        padded_height, padded_width = height + 2 * pad, width + 2 * pad
        padded = ops.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])

        offsets = keras.random.randint(
            (batch, 2), 0, 2 * pad + 1, dtype="int32", seed=self.seed_generator
        )
        rows = offsets[:, :1] + ops.arange(height, dtype="int32")[None, :]  # (batch, height)
        columns = ops.arange(width, dtype="int32")[None, :]
        if self.flip:
            flips = keras.random.randint((batch, 1), 0, 2, dtype="int32", seed=self.seed_generator)
            columns = columns + flips * (width - 1 - 2 * columns)  # j or width - 1 - j
        columns = offsets[:, 1:] + columns  # (batch, width)

        images = ops.arange(batch, dtype="int32")[:, None, None] * (padded_height * padded_width)
        index = images + rows[:, :, None] * padded_width + columns[:, None, :]
        pixels = ops.take(ops.reshape(padded, (-1, channels)), ops.reshape(index, (-1,)), axis=0)
        return ops.reshape(pixels, (-1, height, width, channels))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {"padding": self.padding, "flip": self.flip, "seed": self.seed}
        base_config = super().get_config()
        return {**base_config, **config}


def with_preprocessing(model, mean, std, augment=True, padding=4, seed=None):
    """Wraps a model so that it takes raw images and normalizes and augments them itself.

    The returned functional model takes images in `[0, 255]` (`uint8` or
    float; cast to `float32` on entry, on the device), normalizes each channel
    with `(x - mean) / std` (`keras.layers.Normalization`), applies
    `RandomCropFlip` (active in training only; since it pads the normalized
    image with zeros, the padding is the mean pixel, as in fb.resnet.torch),
    then calls `model`. The preprocessing layers compute in `float32` under any
    dtype policy and the output is `float32`. The model saves and loads as
    `.keras` without `custom_objects` (once `keras_rir` is imported) and, at
    inference, predicts exactly what `model` predicts on the normalized images.

    Args:
        model: a single-input `keras.Model` taking normalized float images
            `(batch, height, width, channels)`.
        mean: per-channel mean in pixel units, shape `(channels,)`; see
            `keras_rir.data.channel_stats`.
        std: per-channel standard deviation in pixel units, shape
            `(channels,)`, all > 0.
        augment: whether to add the random crop and flip.
        padding: padding of the random crop, in pixels.
        seed: `None` or an integer seed of the augmentation.

    Returns:
        A `keras.Model` named `"<model.name>_preprocessed"` whose layers are
        `images`, `normalization`, `random_crop_flip` (if `augment`) and
        `model`.

    Example:
    >>> data = keras_rir.data.load_cifar("cifar10", data_dir="data/cifar10")
    >>> mean, std = keras_rir.data.channel_stats(data.x_train)
    >>> model = keras_rir.preprocessing.with_preprocessing(
    ...     keras_rir.models.rir32(), mean, std, seed=0)
    >>> model.compile("sgd", "sparse_categorical_crossentropy")
    >>> model.fit(data.x_train, data.y_train, batch_size=500)
    """
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        raise invalid_value("model", model, "a built keras.Model with one input")
    input_shape = tuple(model.inputs[0].shape[1:])
    channels = input_shape[-1]
    mean = _channel_vector("mean", mean, channels)
    std = _channel_vector("std", std, channels)
    if not np.all(std > 0):
        raise invalid_value("std", std.tolist(), "per-channel standard deviations > 0")
    if not isinstance(augment, bool):
        raise invalid_value("augment", augment, "a bool")

    inputs = keras.Input(shape=input_shape, dtype="float32", name="images")
    x = keras.layers.Normalization(
        mean=mean.tolist(), variance=np.square(std).tolist(), dtype="float32", name="normalization"
    )(inputs)
    if augment:
        x = RandomCropFlip(padding=padding, seed=seed, dtype="float32", name="random_crop_flip")(x)
    outputs = model(x)
    if outputs.dtype != "float32":
        outputs = keras.layers.Activation("linear", dtype="float32", name="float32_output")(outputs)
    return keras.Model(inputs, outputs, name=f"{model.name}_preprocessed")


def _channel_vector(argument, value, channels):
    try:
        vector = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise invalid_value(argument, value, f"{channels} per-channel numbers") from error
    if vector.shape != (channels,) or not np.all(np.isfinite(vector)):
        raise invalid_value(argument, value, f"{channels} finite per-channel numbers")
    return vector
