import pathlib

import h5py
import keras
import numpy as np
import pytest

import keras_rir
from benchmarks import overhead
from keras_rir.normalization import BatchNormalization

MOMENTUM, EPSILON = 0.9, 1e-5
# (input shape, axis): the fused NHWC case, a channels-first and a 2D input (fused on torch and
# JAX, Keras' own code on TensorFlow).
CASES = [((8, 5, 5, 6), -1), ((8, 6, 5, 5), 1), ((16, 6), -1)]
# Largest |difference| allowed, as a fraction of the largest |expected| value. float32: float
# rounding over a few hundred values; mixed_bfloat16: the output and the input gradient are
# bfloat16 (8-bit mantissa, relative step 2**-8 = 0.0039), so up to a few rounding steps.
TOLERANCE = {"float32": 1e-5, "mixed_bfloat16": 1.6e-2}
WEIGHTS = pathlib.Path(keras_rir.__file__).parent / "weights" / "rir32_cifar10.weights.h5"


def numpy(x):
    x = keras.ops.stop_gradient(keras.ops.cast(x, "float32"))
    return np.asarray(keras.ops.convert_to_numpy(x), "float64")


def assert_close(actual, expected, tolerance, what=""):
    actual, expected = numpy(actual), numpy(expected)
    scale = max(np.abs(expected).max(), 1e-12)
    error = np.abs(actual - expected).max() / scale
    assert error <= tolerance, f"{what}: relative error {error:.3g} > {tolerance:g}"


def batch(shape, seed):
    """Inputs with a nonzero per-channel mean and spread, as after a convolution."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, 2.0, shape) + rng.normal(1.0, 1.0)).astype("float32")


def layers_pair(shape, axis):
    """The fused layer and Keras' layer, built, with the same random gamma and beta."""
    pair = []
    rng = np.random.default_rng(7)
    gamma, beta = rng.normal(1.0, 0.3, shape[axis]), rng.normal(0.0, 0.3, shape[axis])
    for layer_class in (BatchNormalization, keras.layers.BatchNormalization):
        layer = layer_class(axis=axis, momentum=MOMENTUM, epsilon=EPSILON)
        layer.build(shape)
        layer.gamma.assign(gamma.astype("float32"))
        layer.beta.assign(beta.astype("float32"))
        pair.append(layer)
    return pair


def reduction_axes(x, axis):
    return tuple(i for i in range(x.ndim) if i != axis % x.ndim)


def channel_shape(x, axis):
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return shape


def numpy_forward(x, gamma, beta, mean, variance, axis):
    """gamma * (x - mean) / sqrt(variance + epsilon) + beta, broadcast over `axis`."""
    shape = channel_shape(x, axis)
    x = np.asarray(x, "float64")
    return np.reshape(gamma, shape) * (x - np.reshape(mean, shape)) / np.sqrt(
        np.reshape(variance, shape) + EPSILON
    ) + np.reshape(beta, shape)


def numpy_gradients(x, gamma, upstream, axis):
    """Gradients of sum(upstream * training-mode BN(x)) with respect to x, gamma and beta."""
    axes, shape = reduction_axes(x, axis), channel_shape(x, axis)
    x, upstream = np.asarray(x, "float64"), np.asarray(upstream, "float64")
    mean = x.mean(axis=axes, keepdims=True)
    inverse = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + EPSILON)
    normalized = (x - mean) * inverse
    d_beta = upstream.sum(axis=axes)
    d_gamma = (upstream * normalized).sum(axis=axes)
    d_x = (
        np.reshape(gamma, shape)
        * inverse
        * (
            upstream
            - upstream.mean(axis=axes, keepdims=True)
            - normalized * (upstream * normalized).mean(axis=axes, keepdims=True)
        )
    )
    return d_x, d_gamma, d_beta


def training_gradients(layer, x, upstream):
    """Gradients of sum(upstream * layer(x, training=True)) w.r.t. x, gamma and beta."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x, training=True), "float32") * upstream)
        return tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
    if backend == "jax":
        import jax

        def loss(x, trainable):
            outputs, _ = layer.stateless_call(
                trainable, [v.value for v in layer.non_trainable_variables], x, training=True
            )
            return (outputs.astype("float32") * upstream).sum()

        d_x, (d_gamma, d_beta) = jax.grad(loss, argnums=(0, 1))(
            x, [layer.gamma.value, layer.beta.value]
        )
        return d_x, d_gamma, d_beta
    import torch

    x = torch.tensor(x, requires_grad=True)
    loss = (layer(x, training=True).float() * torch.tensor(upstream)).sum()
    loss.backward()
    return x.grad, layer.gamma.value.grad, layer.beta.value.grad


@pytest.mark.parametrize("policy", sorted(TOLERANCE))
@pytest.mark.parametrize(("shape", "axis"), CASES)
def test_training_and_inference_match_keras_and_numpy(policy, shape, axis):
    keras.config.set_dtype_policy(policy)
    tolerance = TOLERANCE[policy]
    fused, reference = layers_pair(shape, axis)
    gamma, beta = numpy(fused.gamma), numpy(fused.beta)
    moving_mean, moving_variance = np.zeros(shape[axis]), np.ones(shape[axis])
    for step in range(3):
        x = batch(shape, step)
        outputs = fused(x, training=True)
        assert keras.backend.standardize_dtype(outputs.dtype) == fused.compute_dtype
        # The layer sees x rounded to its compute dtype; the NumPy statistics use the same x.
        seen = numpy(keras.ops.cast(x, fused.compute_dtype))
        axes = reduction_axes(seen, axis)
        mean, variance = seen.mean(axis=axes), seen.var(axis=axes)  # biased, as Keras
        assert_close(outputs, reference(x, training=True), tolerance, "training vs Keras")
        assert_close(
            outputs, numpy_forward(seen, gamma, beta, mean, variance, axis), tolerance, "vs NumPy"
        )
        moving_mean = moving_mean * MOMENTUM + mean * (1 - MOMENTUM)
        moving_variance = moving_variance * MOMENTUM + variance * (1 - MOMENTUM)
    for variable in (fused.moving_mean, fused.moving_variance, fused.gamma, fused.beta):
        assert keras.backend.standardize_dtype(variable.dtype) == "float32"
    assert_close(fused.moving_mean, reference.moving_mean, 1e-6, "moving mean vs Keras")
    assert_close(fused.moving_variance, reference.moving_variance, 1e-6, "moving var vs Keras")
    assert_close(fused.moving_mean, moving_mean, 1e-5, "moving mean vs NumPy")
    assert_close(fused.moving_variance, moving_variance, 1e-5, "moving variance vs NumPy")
    x = batch(shape, 10)
    seen = numpy(keras.ops.cast(x, fused.compute_dtype))
    expected = numpy_forward(seen, gamma, beta, moving_mean, moving_variance, axis)
    assert_close(fused(x, training=False), expected, tolerance, "inference vs NumPy")
    assert_close(fused(x), reference(x), tolerance, "inference vs Keras")


@pytest.mark.parametrize("policy", sorted(TOLERANCE))
def test_moving_statistics_in_compiled_training_steps(policy):
    # model.train_on_batch runs the layer inside tf.function / jax.jit (torch: eagerly).
    keras.config.set_dtype_policy(policy)
    shape = (8, 5, 5, 6)
    model = keras.Sequential(
        [keras.Input(shape[1:]), BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    moving_mean, moving_variance = np.zeros(shape[-1]), np.ones(shape[-1])
    for step in range(3):
        x = batch(shape, step)
        model.train_on_batch(x, np.zeros(shape, "float32"))
        seen = numpy(keras.ops.cast(x, model.compute_dtype))
        moving_mean = moving_mean * MOMENTUM + seen.mean(axis=(0, 1, 2)) * (1 - MOMENTUM)
        moving_variance = moving_variance * MOMENTUM + seen.var(axis=(0, 1, 2)) * (1 - MOMENTUM)
    layer = model.layers[-1]
    assert_close(layer.moving_mean, moving_mean, 1e-5, "moving mean vs NumPy")
    assert_close(layer.moving_variance, moving_variance, 1e-5, "moving variance vs NumPy")


@pytest.mark.parametrize("policy", sorted(TOLERANCE))
@pytest.mark.parametrize(("shape", "axis"), CASES)
def test_gradients_match_keras_and_numpy(policy, shape, axis):
    keras.config.set_dtype_policy(policy)
    # Under mixed_bfloat16 the gradients pass through bfloat16 twice (the output and the
    # input); against NumPy in float64 allow a few more rounding steps.
    tolerance = TOLERANCE[policy]
    fused, reference = layers_pair(shape, axis)
    x = batch(shape, 3)
    upstream = np.random.default_rng(4).normal(size=shape).astype("float32")
    seen = numpy(keras.ops.cast(x, fused.compute_dtype))
    expected = numpy_gradients(seen, numpy(fused.gamma), upstream, axis)
    actual = training_gradients(fused, x, upstream)
    keras_gradients = training_gradients(reference, x, upstream)
    for name, got, keras_value, numpy_value in zip(
        ("x", "gamma", "beta"), actual, keras_gradients, expected, strict=True
    ):
        assert_close(got, keras_value, 2 * tolerance, f"d{name} vs Keras")
        assert_close(got, numpy_value, 2 * tolerance, f"d{name} vs NumPy")


def small_network():
    """A generalized residual block with projection (three BN) and a classifier on 8x8 inputs."""
    inputs = keras.Input((8, 8, 3))
    x = keras_rir.blocks.conv_unit(inputs, 8, "stem")
    x = keras_rir.blocks.residual_block(
        x, 16, "rir", strides=2, generalized=True, shortcut="projection"
    )
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("policy", sorted(TOLERANCE))
def test_network_trains_to_the_same_loss_curve(policy):
    keras.config.set_dtype_policy(policy)
    fused = small_network()
    reference = overhead.with_keras_batch_norm(fused)
    bn_classes = {type(layer) for layer in fused.layers if "_bn" in layer.name}
    assert bn_classes == {BatchNormalization}
    assert not any(type(layer) is BatchNormalization for layer in reference.layers)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 10, size=32)
    curves = []
    for model in (fused, reference):
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
        curves.append([float(model.train_on_batch(images, labels)) for _ in range(6)])
    # Six SGD steps amplify last-bit differences: float32 curves agree to 1e-4 relative; under
    # mixed_bfloat16 a changed rounding of one bfloat16 activation moves the loss by ~1e-3.
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-4 if policy == "float32" else 1e-2)
    assert curves[0][-1] < curves[0][0]  # it does train
    for got, expected in zip(fused.weights, reference.weights, strict=True):
        assert_close(got, numpy(expected), 1e-3 if policy == "float32" else 5e-2, got.path)


def test_rir32_with_keras_batch_norm_computes_the_same():
    # benchmarks/overhead.py's fused_bn/keras_bn pair swaps the class through the config.
    model = keras_rir.models.rir32(input_shape=(8, 8, 3))
    clone = overhead.with_keras_batch_norm(model)
    fused = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert fused and all(type(layer) is BatchNormalization for layer in fused)
    for layer in fused:
        twin = clone.get_layer(layer.name)
        assert type(twin) is keras.layers.BatchNormalization
        assert (twin.momentum, twin.epsilon) == (MOMENTUM, EPSILON)
    images = batch((4, 8, 8, 3), 0)
    for training in (False, True):
        assert_close(model(images, training=training), clone(images, training=training), 1e-4)


def test_config_and_keras_file_round_trip(tmp_path):
    layer = BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON, axis=1, center=False)
    config = layer.get_config()
    assert BatchNormalization.from_config(config).get_config() == config
    assert config["momentum"] == MOMENTUM and config["epsilon"] == EPSILON
    assert keras.saving.get_registered_name(BatchNormalization) == "keras_rir>BatchNormalization"
    model = small_network()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(batch((4, 8, 8, 3), 0), np.arange(4), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("stem_bn")) is BatchNormalization
    x = batch((4, 8, 8, 3), 1)
    assert_close(loaded(x), numpy(model(x)), 0.0, "loaded model")


def test_shipped_weights_load_into_rir32():
    model = keras_rir.models.rir32()
    model.load_weights(WEIGHTS)
    batch_norms = [layer for layer in model.layers if type(layer) is BatchNormalization]
    with h5py.File(WEIGHTS, "r") as stored:
        assert len(batch_norms) == sum(name.startswith("batch_norm") for name in stored["layers"])
        for index, layer in enumerate(batch_norms):
            group = stored["layers"]["batch_normalization" + (f"_{index}" if index else "")]
            variables = [group["vars"][str(i)][()] for i in range(4)]
            # gamma, beta, moving mean, moving variance: trained values, not the initial 1/0/0/1.
            assert not np.allclose(variables[3], 1.0)
            for variable, expected in zip(layer.weights, variables, strict=True):
                np.testing.assert_array_equal(numpy(variable), expected, err_msg=variable.path)


def test_training_mode_skips_keras_code_only_where_fusable(monkeypatch):
    calls = []
    keras_call = keras.layers.BatchNormalization.call

    def spy(self, inputs, training=None, mask=None):
        calls.append(training)
        return keras_call(self, inputs, training=training, mask=mask)

    monkeypatch.setattr(keras.layers.BatchNormalization, "call", spy)
    x = batch((8, 5, 5, 6), 0)
    layer = BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON)
    layer(x, training=True)
    assert calls == []  # every backend fuses channels-last 4D float32
    layer(x, training=False)
    layer(x, training=True, mask=np.ones(x.shape[:-1], bool))
    assert calls == [False, True]  # inference and masks run Keras' code
    calls.clear()
    BatchNormalization(axis=1)(np.moveaxis(x, -1, 1), training=True)
    assert len(calls) == (keras.backend.backend() == "tensorflow")
    calls.clear()
    # One value per channel: Keras' answer (beta) where a fused kernel would refuse it.
    outputs = BatchNormalization()(x[:1, 0, 0], training=True)
    assert_close(outputs, np.zeros((1, 6)), 0.0, "one value per channel")
    assert len(calls) == (keras.backend.backend() != "jax")
