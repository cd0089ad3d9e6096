import keras
import numpy as np
import pytest

from keras_rir.analysis import ablated_kernel, stream_ablation
from keras_rir.initializers import partial_identity
from keras_rir.layers import DualStreamConv2D, GeneralizedResidualConv2D, GeneralizedResidualDense


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def dense_model():
    """Two generalized dense layers and nothing else: logits = x @ K1 @ K2."""
    inputs = keras.Input((6,))
    x = GeneralizedResidualDense(6, name="first")(inputs)
    outputs = GeneralizedResidualDense(4, name="second")(x)
    return keras.Model(inputs, outputs)


def conv_model(explicit=False, filters=6):
    inputs = keras.Input((5, 5, 4))
    layer_class = DualStreamConv2D if explicit else GeneralizedResidualConv2D
    x = layer_class(filters, 3, name="block")(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="classifier")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("residual_fraction", [0.5, 0.25])
def test_ablated_kernel_slices(residual_fraction):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 6, 8)).astype("float32")
    # Independent widths: round(channels * fraction) with halves up.
    r_in, r_out = {0.5: (3, 4), 0.25: (2, 2)}[residual_fraction]
    identity = np.zeros_like(kernel)
    for i in range(min(r_in, r_out)):
        identity[1, 1, i, i] = 1.0
    expected = {
        ("residual", "output"): (np.s_[..., :r_out]),
        ("transient", "output"): (np.s_[..., r_out:]),
        ("residual", "input"): (np.s_[..., :r_in, :]),
        ("transient", "input"): (np.s_[..., r_in:, :]),
    }
    for (stream, by), index in expected.items():
        want = kernel.copy()
        want[index] = identity[index]
        got = ablated_kernel(kernel, stream, by, residual_fraction)
        np.testing.assert_array_equal(got, want)
        # Everything outside the stream's slice is untouched.
        mask = np.ones(kernel.shape, bool)
        mask[index] = False
        np.testing.assert_array_equal(got[mask], kernel[mask])
    # The input array itself is never modified.
    assert not np.array_equal(kernel, ablated_kernel(kernel, "transient"))


def test_ablated_kernel_dense():
    kernel = np.full((4, 4), 2.0, "float32")
    np.testing.assert_array_equal(
        ablated_kernel(kernel, "residual", "output"),
        np.array([[1, 0, 2, 2], [0, 1, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2]], "float32"),
    )
    np.testing.assert_array_equal(
        ablated_kernel(kernel, "transient", "input"),
        np.array([[2, 2, 2, 2], [2, 2, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0]], "float32"),
    )


def test_zero_learned_weights_change_nothing():
    model = conv_model()
    block = model.get_layer("block")
    block.kernel.assign(partial_identity(block.kernel.shape))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 5, 5, 4)).astype("float32")
    y = rng.integers(0, 3, size=32)
    for by in ("output", "input"):
        rows = stream_ablation(model, x, y, by=by, batch_size=8)
        assert [(row["layer"], row["stream"], row["by"]) for row in rows] == [
            ("block", "residual", by),
            ("block", "transient", by),
        ]
        baseline = rows[0]["baseline_accuracy"]
        assert 0.0 < baseline < 1.0
        assert all(row["accuracy"] == baseline for row in rows)


@pytest.mark.parametrize("by", ["output", "input"])
def test_dense_ablation_against_numpy(by):
    model = dense_model()
    rng = np.random.default_rng(2)
    first = rng.normal(size=(6, 6)).astype("float32")
    second = rng.normal(size=(6, 4)).astype("float32")
    model.get_layer("first").kernel.assign(first)
    model.get_layer("second").kernel.assign(second)
    before = [w.copy() for w in model.get_weights()]
    x = rng.normal(size=(200, 6)).astype("float32")
    y = np.argmax(x @ first @ second, axis=-1)
    identity_first = np.diag([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]).astype("float32")
    identity_second = np.zeros((6, 4), "float32")
    identity_second[0, 0] = identity_second[1, 1] = 1.0
    # Residual widths: 3 of 6, 2 of 4.
    slices = {
        ("output", "residual"): (np.s_[:, :3], np.s_[:, :2]),
        ("output", "transient"): (np.s_[:, 3:], np.s_[:, 2:]),
        ("input", "residual"): (np.s_[:3, :], np.s_[:3, :]),
        ("input", "transient"): (np.s_[3:, :], np.s_[3:, :]),
    }
    expected = []
    for position in range(2):
        for stream in ("residual", "transient"):
            kernels = [first.copy(), second.copy()]
            identity = (identity_first, identity_second)[position]
            index = slices[(by, stream)][position]
            kernels[position][index] = identity[index]
            predictions = np.argmax(x @ kernels[0] @ kernels[1], axis=-1)
            expected.append(float(np.mean(predictions == y)))
    rows = stream_ablation(model, x, keras.utils.to_categorical(y, 4), by=by, batch_size=64)
    assert [row["layer"] for row in rows] == ["first", "first", "second", "second"]
    assert [row["index"] for row in rows] == [1, 1, 2, 2]
    assert all(row["baseline_accuracy"] == 1.0 for row in rows)
    np.testing.assert_allclose([row["accuracy"] for row in rows], expected, atol=1e-6)
    # Ablation matters here.
    assert min(expected) < 0.9
    # Only the chosen layers.
    second = stream_ablation(model, x, y, by=by, layer_names=["second"])
    assert [(row["index"], row["layer"]) for row in second] == [(2, "second")] * 2
    np.testing.assert_allclose([row["accuracy"] for row in second], expected[2:], atol=1e-6)
    # The model's own weights are never changed.
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_explicit_layers_give_the_same_rows():
    fused = conv_model()
    explicit = conv_model(explicit=True)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 5, 5, 4)).astype("float32")
    explicit(x[:1])
    kernel = numpy(fused.get_layer("block").kernel)
    learned = kernel - partial_identity(kernel.shape)
    block = explicit.get_layer("block")
    r_in, r_out = 2, 3
    block.r_to_r.kernel.assign(learned[:, :, :r_in, :r_out])
    block.t_to_r.kernel.assign(learned[:, :, r_in:, :r_out])
    block.r_to_t.kernel.assign(learned[:, :, :r_in, r_out:])
    block.t_to_t.kernel.assign(learned[:, :, r_in:, r_out:])
    explicit.get_layer("classifier").set_weights(fused.get_layer("classifier").get_weights())
    y = np.argmax(numpy(fused(x)), axis=-1)
    y[::3] = (y[::3] + 1) % 3
    for by in ("output", "input"):
        fused_rows = stream_ablation(fused, x, y, by=by)
        explicit_rows = stream_ablation(explicit, x, y, by=by)
        assert [row["accuracy"] for row in fused_rows] == pytest.approx(
            [row["accuracy"] for row in explicit_rows]
        )


def test_bad_input():
    plain_inputs = keras.Input((4,))
    plain = keras.Model(plain_inputs, keras.layers.Dense(2)(plain_inputs))
    x = np.zeros((3, 4), "float32")
    with pytest.raises(ValueError, match="generalized residual layers"):
        stream_ablation(plain, x, [0, 1, 0])
    model = dense_model()
    x = np.zeros((3, 6), "float32")
    with pytest.raises(ValueError, match="`by`"):
        stream_ablation(model, x, [0, 1, 0], by="both")
    with pytest.raises(ValueError, match="`y`"):
        stream_ablation(model, x, [0, 1])
    with pytest.raises(ValueError, match="`layer_names`"):
        stream_ablation(model, x, [0, 1, 0], layer_names=["third"])
    with pytest.raises(ValueError, match="`stream`"):
        ablated_kernel(np.zeros((3, 3)), "shortcut")
