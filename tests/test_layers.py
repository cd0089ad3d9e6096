import keras
import numpy as np
import pytest

from keras_rir.initializers import partial_identity, residual_width
from keras_rir.layers import (
    DualStreamConv2D,
    GeneralizedResidualConv2D,
    GeneralizedResidualDense,
    IdentityShortcut,
)

# (input channels, filters, strides, padding, spatial size, residual_fraction)
CASES = [
    (8, 8, 1, "same", 8, 0.5),
    (8, 16, 2, "same", 8, 0.5),  # strided, channel-increasing
    (16, 8, 2, "same", 7, 0.5),  # strided, channel-decreasing, odd size
    (8, 12, 1, "valid", 9, 0.5),  # valid padding: the identity crops
    (8, 8, 3, "same", 10, 0.5),
    (12, 12, 1, "same", 6, 0.25),
    (12, 20, 2, "same", 6, 0.75),
]


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def numpy_conv2d(x, kernel, stride, padding):
    """Cross-correlation with TensorFlow's 'same' convention (extra padding at the end)."""
    kh, kw = kernel.shape[:2]
    h, w = x.shape[1:3]
    if padding == "same":
        oh, ow = -(-h // stride), -(-w // stride)
        ph = max((oh - 1) * stride + kh - h, 0)
        pw = max((ow - 1) * stride + kw - w, 0)
        x = np.pad(x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)])
    else:
        oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[-1]), dtype="float64")
    for i in range(kh):
        for j in range(kw):
            window = x[
                :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride
            ]
            out += window @ kernel[i, j]
    return out


def numpy_equation1(x, blocks, r_in, r_out, stride, padding, kernel_size=3):
    """Equation 1 before sigma: four convolutions plus the identity shortcut on r."""
    r, t = x[..., :r_in], x[..., r_in:]
    r_next = numpy_conv2d(r, blocks["r_to_r"], stride, padding)
    r_next += numpy_conv2d(t, blocks["t_to_r"], stride, padding)
    t_next = numpy_conv2d(r, blocks["r_to_t"], stride, padding)
    t_next += numpy_conv2d(t, blocks["t_to_t"], stride, padding)
    # shortcut(r): the pixel under the centre tap, channels zero-padded or cut to r_out.
    centre = kernel_size // 2
    if padding == "same":
        h = r.shape[1]
        oh = r_next.shape[1]
        total = max((oh - 1) * stride + kernel_size - h, 0)
        start = centre - total // 2
    else:
        start = centre
    oh, ow = r_next.shape[1:3]
    sampled = r[:, start : start + stride * (oh - 1) + 1 : stride]
    sampled = sampled[:, :, start : start + stride * (ow - 1) + 1 : stride, :r_out]
    r_next[..., : sampled.shape[-1]] += sampled
    return np.concatenate([r_next, t_next], axis=-1)


def split_learned(kernel, r_in, r_out):
    """The four stream kernels of a fused kernel (identity already removed)."""
    return {
        "r_to_r": kernel[..., :r_in, :r_out],
        "t_to_r": kernel[..., r_in:, :r_out],
        "r_to_t": kernel[..., :r_in, r_out:],
        "t_to_t": kernel[..., r_in:, r_out:],
    }


def stack_explicit(layer):
    """The fused kernel's learned part rebuilt from the explicit layer's four kernels."""
    top = np.concatenate([numpy(layer.r_to_r.kernel), numpy(layer.r_to_t.kernel)], axis=-1)
    bottom = np.concatenate([numpy(layer.t_to_r.kernel), numpy(layer.t_to_t.kernel)], axis=-1)
    return np.concatenate([top, bottom], axis=-2)


def twin_layers(c_in, filters, strides, padding, size, fraction, l2=1e-4):
    """A fused layer and an explicit layer holding the same function."""
    x = np.random.default_rng(0).normal(size=(2, size, size, c_in)).astype("float32")
    fused = GeneralizedResidualConv2D(
        filters, 3, strides=strides, padding=padding, residual_fraction=fraction, l2=l2
    )
    explicit = DualStreamConv2D(
        filters, 3, strides=strides, padding=padding, residual_fraction=fraction, l2=l2
    )
    fused.build(x.shape)
    explicit.build(x.shape)
    learned = numpy(fused.kernel) - partial_identity(fused.kernel.shape, fraction)
    blocks = split_learned(
        learned, residual_width(c_in, fraction), residual_width(filters, fraction)
    )
    for name, kernel in blocks.items():
        getattr(explicit, name).kernel.assign(kernel)
    return x, fused, explicit, blocks


@pytest.mark.parametrize("c_in,filters,strides,padding,size,fraction", CASES)
def test_fused_layer_computes_equation1(c_in, filters, strides, padding, size, fraction):
    x, fused, _, blocks = twin_layers(c_in, filters, strides, padding, size, fraction)
    expected = numpy_equation1(
        x.astype("float64"),
        {k: v.astype("float64") for k, v in blocks.items()},
        residual_width(c_in, fraction),
        residual_width(filters, fraction),
        strides,
        padding,
    )
    np.testing.assert_allclose(numpy(fused(x)), expected, atol=1e-5)


@pytest.mark.parametrize("c_in,filters,strides,padding,size,fraction", CASES)
def test_fused_equals_explicit_forward_and_regularization(
    c_in, filters, strides, padding, size, fraction
):
    x, fused, explicit, _ = twin_layers(c_in, filters, strides, padding, size, fraction)
    fused_out, explicit_out = numpy(fused(x)), numpy(explicit(x))
    assert fused_out.shape == explicit_out.shape
    assert np.abs(fused_out - explicit_out).max() < 1e-5
    fused_loss = sum(float(numpy(loss)) for loss in fused.losses)
    explicit_loss = sum(float(numpy(loss)) for loss in explicit.losses)
    assert fused_loss == pytest.approx(explicit_loss, rel=1e-5)
    assert fused.count_params() == explicit.count_params()


def train_pair(fused_layer, explicit_layer, x, steps=6):
    """Trains both single-layer models with the same SGD-momentum steps on an MSE loss."""
    target = np.random.default_rng(1).normal(size=numpy(explicit_layer(x)).shape).astype("float32")
    for layer in (fused_layer, explicit_layer):
        model = keras.Sequential([keras.Input(x.shape[1:]), layer])
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
        for _ in range(steps):
            model.train_on_batch(x, target)


@pytest.mark.parametrize("strides,filters", [(1, 8), (2, 16)])
def test_training_equivalence_with_partial_identity_decay(strides, filters):
    # Appendix 6.1: with the identity subtracted before weight decay, the fused layer
    # trained by SGD with momentum stays the same function as the explicit layer.
    x, fused, explicit, _ = twin_layers(8, filters, strides, "same", 8, 0.5, l2=0.05)
    before = stack_explicit(explicit)
    train_pair(fused, explicit, x)
    learned = numpy(fused.kernel) - partial_identity(fused.kernel.shape)
    assert np.abs(stack_explicit(explicit) - before).max() > 1e-2  # training moved the weights
    assert np.abs(stack_explicit(explicit) - learned).max() < 1e-5
    np.testing.assert_allclose(numpy(fused(x)), numpy(explicit(x)), atol=1e-5)


def test_plain_l2_on_the_fused_kernel_drifts_apart():
    # The same experiment with plain L2 on the fused kernel: the decay pulls the
    # identity towards zero and the two layers stop being the same function.
    x, _, explicit, blocks = twin_layers(8, 8, 1, "same", 8, 0.5, l2=0.05)
    fused = keras.layers.Conv2D(
        8, 3, padding="same", use_bias=False, kernel_regularizer=keras.regularizers.L2(0.05)
    )
    fused.build(x.shape)
    fused_kernel = np.concatenate(
        [
            np.concatenate([blocks["r_to_r"], blocks["r_to_t"]], -1),
            np.concatenate([blocks["t_to_r"], blocks["t_to_t"]], -1),
        ],
        -2,
    ) + partial_identity((3, 3, 8, 8))
    fused.kernel.assign(fused_kernel)
    np.testing.assert_allclose(numpy(fused(x)), numpy(explicit(x)), atol=1e-5)
    train_pair(fused, explicit, x)
    learned = numpy(fused.kernel) - partial_identity(fused.kernel.shape)
    assert np.abs(stack_explicit(explicit) - learned).max() > 1e-3


def test_dense_layer_computes_equation2():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 12)).astype("float32")
    layer = GeneralizedResidualDense(16)
    out = numpy(layer(x))
    learned = numpy(layer.kernel) - partial_identity((12, 16))
    w_rr, w_tr = learned[:6, :8], learned[6:, :8]
    w_rt, w_tt = learned[:6, 8:], learned[6:, 8:]
    r, t = x[:, :6], x[:, 6:]
    # Equation 2 written with the four blocks and the identity on r (zero-padded to 8).
    r_next = r @ w_rr + t @ w_tr + np.pad(r, [(0, 0), (0, 2)])
    t_next = r @ w_rt + t @ w_tt
    np.testing.assert_allclose(out, np.concatenate([r_next, t_next], -1), atol=1e-5)
    assert len(layer.losses) == 1


@pytest.mark.parametrize("strides,filters", [(1, 24), (2, 24), (2, 8)])
def test_identity_shortcut_matches_numpy(strides, filters):
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 16)).astype("float32")
    out = numpy(IdentityShortcut(filters, strides=strides)(x))
    expected = x[:, ::strides, ::strides, :filters]
    expected = np.pad(expected, [(0, 0)] * 3 + [(0, filters - expected.shape[-1])])
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "layer",
    [
        GeneralizedResidualConv2D(16, 3, strides=2, residual_fraction=0.25, l2=3e-4),
        GeneralizedResidualDense(16, kernel_initializer="orthogonal"),
        DualStreamConv2D(16, 3, strides=2, l2=2e-4, kernel_initializer="glorot_uniform"),
        IdentityShortcut(32, strides=2),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layer_config_round_trip(layer, tmp_path):
    shape = (16,) if isinstance(layer, GeneralizedResidualDense) else (8, 8, 16)
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    restored = type(layer).from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()
    x = np.random.default_rng(5).normal(size=(2, *shape)).astype("float32")
    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[-1]) is type(layer)
    np.testing.assert_allclose(numpy(loaded(x)), numpy(model(x)), atol=1e-6)


def test_fused_config_keeps_base_initializer_and_decay():
    layer = GeneralizedResidualConv2D(8, kernel_initializer="glorot_normal", l2=5e-4)
    config = layer.get_config()
    assert config["kernel_initializer"]["class_name"] == "GlorotNormal"
    assert config["l2"] == 5e-4 and "kernel_regularizer" not in config
    restored = GeneralizedResidualConv2D.from_config(config)
    assert restored.kernel_regularizer.get_config() == {"l2": 5e-4, "residual_fraction": 0.5}
    assert type(restored.kernel_initializer.base_initializer).__name__ == "GlorotNormal"


def test_even_kernel_is_rejected():
    with pytest.raises(ValueError, match=r"`kernel_size`.*odd.*Received: kernel_size=2"):
        DualStreamConv2D(8, 2)
    with pytest.raises(ValueError, match=r"`shape`.*odd.*Received: shape=\(2, 2, 8, 8\)"):
        GeneralizedResidualConv2D(8, 2).build((1, 8, 8, 8))


def test_explicit_layer_needs_two_streams():
    with pytest.raises(ValueError, match=r"`input channels`.*two non-empty streams.*Received"):
        DualStreamConv2D(8, 3).build((1, 8, 8, 1))


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"residual_fraction": 0}, "residual_fraction"),
        ({"residual_fraction": 1.5}, "residual_fraction"),
        ({"l2": -1.0}, "l2"),
        ({"kernel_initializer": "nope"}, "kernel_initializer"),
    ],
)
@pytest.mark.parametrize("layer_class", [GeneralizedResidualConv2D, DualStreamConv2D])
def test_bad_layer_arguments(layer_class, kwargs, argument):
    with pytest.raises(ValueError, match=rf"`{argument}`.*Received: {argument}="):
        layer_class(8, 3, **kwargs)
