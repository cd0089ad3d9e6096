"""Whole networks against an independent NumPy forward pass, in inference mode.

The weights of a built keras_rir model are read layer by layer, by name and variable name
(`stem_conv/kernel`, `stage2_block1_1_bn/moving_mean`, ...), and run through a forward pass
written here from the paper's description (Table 7, Figure 1): a stem unit, three stages of
blocks of two 3x3 conv-BN units, stride 2 in the first block of stages 2 and 3, an outer
shortcut (projection or subsampled, zero-padded identity) added before the block's last ReLU,
global average pooling and a dense (32-layer) or 1x1 convolution (wide) classifier.
A generalized residual unit is a plain convolution here: its kernel already holds the partial
identity (appendix 6.1), so the NumPy forward is the same for CNN and ResNet Init.
"""

import keras
import numpy as np
import pytest

import keras_rir

BN_EPSILON = 1e-5  # PyTorch's and Torch7's default, which the paper's code used.

# name -> (stage widths, blocks per stage, outer shortcuts, classifier head), Table 7.
NETWORKS = {
    "cnn32": ((16, 32, 64), (5, 5, 5), False, "dense"),
    "resnet32": ((16, 32, 64), (5, 5, 5), True, "dense"),
    "resnet_init32": ((16, 32, 64), (5, 5, 5), False, "dense"),
    "rir32": ((16, 32, 64), (5, 5, 5), True, "dense"),
    "wide_rir18": ((96, 192, 384), (2, 3, 3), True, "conv"),
}
# Inputs: the 32-layer family at CIFAR size (stages of 32, 16, 8 pixels); the wide network,
# ten million parameters, on 8x8 images to stay fast (stages of 8, 4, 2).
IMAGE_SIZE = {"wide_rir18": 8}


def model_weights(model):
    """{layer name: {variable name: float64 array}} for every layer with variables."""
    return {
        layer.name: {
            variable.path.split("/")[-1]: np.asarray(
                keras.ops.convert_to_numpy(variable), np.float64
            )
            for variable in layer.weights
        }
        for layer in model.layers
        if layer.weights
    }


def randomize_statistics(model, seed=0):
    """Random BN scales, offsets and moving statistics and classifier bias, so none is trivial."""
    rng = np.random.default_rng(seed)
    draws = {
        "gamma": lambda shape: rng.uniform(0.5, 1.5, shape),
        "beta": lambda shape: rng.normal(0.0, 0.2, shape),
        "moving_mean": lambda shape: rng.normal(0.0, 0.2, shape),
        "moving_variance": lambda shape: rng.uniform(0.5, 2.0, shape),
        "bias": lambda shape: rng.normal(0.0, 0.2, shape),
    }
    for variable in model.weights:
        draw = draws.get(variable.path.split("/")[-1])
        if draw is not None:
            variable.assign(draw(tuple(variable.shape)).astype("float32"))


def conv2d(x, kernel, stride=1, bias=None):
    """NHWC x HWIO convolution with 'same' padding: ceil(size / stride) outputs, the padding
    split with the extra pixel at the bottom and right (the TensorFlow / Keras rule)."""
    kh, kw, _, c_out = kernel.shape
    n, h, w, _ = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph = max((oh - 1) * stride + kh - h, 0)
    pw = max((ow - 1) * stride + kw - w, 0)
    x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, c_out))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * (oh - 1) + 1, stride)
            cols = slice(j, j + stride * (ow - 1) + 1, stride)
            out += x[:, rows, cols] @ kernel[i, j]
    return out if bias is None else out + bias


def relu(x):
    return np.maximum(x, 0.0)


def conv_bn(x, weights, name, stride=1):
    bn = weights[f"{name}_bn"]
    x = conv2d(x, weights[f"{name}_conv"]["kernel"], stride)
    scale = bn["gamma"] / np.sqrt(bn["moving_variance"] + BN_EPSILON)
    return (x - bn["moving_mean"]) * scale + bn["beta"]


def identity_shortcut(x, filters, stride):
    x = x[:, ::stride, ::stride]
    return np.pad(x, ((0, 0), (0, 0), (0, 0), (0, filters - x.shape[-1])))


def reference_forward(name, weights, images, shortcut="projection"):
    """Returns ([output of each stage], logits) of network `name` with `weights`."""
    widths, blocks, has_shortcut, head = NETWORKS[name]
    x = relu(conv_bn(images, weights, "stem"))
    stages = []
    for stage, (width, count) in enumerate(zip(widths, blocks, strict=True), start=1):
        for block in range(1, count + 1):
            prefix = f"stage{stage}_block{block}"
            stride = 2 if stage > 1 and block == 1 else 1
            y = conv_bn(relu(conv_bn(x, weights, f"{prefix}_1", stride)), weights, f"{prefix}_2")
            if has_shortcut:
                if stride == 1 and x.shape[-1] == width:
                    y = y + x
                elif shortcut == "identity":
                    y = y + identity_shortcut(x, width, stride)
                else:
                    y = y + conv_bn(x, weights, f"{prefix}_projection", stride)
            x = relu(y)
        stages.append(x)
    classifier = weights["classifier"]
    if head == "dense":
        logits = x.mean(axis=(1, 2)) @ classifier["kernel"] + classifier["bias"]
    else:
        logits = conv2d(x, classifier["kernel"], bias=classifier["bias"]).mean(axis=(1, 2))
    return stages, logits


def softmax(logits):
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def stage_outputs(model, stages=3):
    """The output of the last layer of each stage (layers are in topological order)."""
    names = []
    for stage in range(1, stages + 1):
        in_stage = [layer.name for layer in model.layers if layer.name.startswith(f"stage{stage}_")]
        names.append(in_stage[-1])
    return [model.get_layer(name).output for name in names]


@pytest.mark.parametrize(
    "name, shortcut",
    [
        ("cnn32", "projection"),
        ("resnet32", "projection"),
        ("resnet32", "identity"),
        ("resnet_init32", "projection"),
        ("rir32", "projection"),
        ("wide_rir18", "projection"),
    ],
)
def test_network_matches_numpy_forward(name, shortcut):
    size = IMAGE_SIZE.get(name, 32)
    model = keras_rir.models.get(
        name, num_classes=10, input_shape=(size, size, 3), shortcut=shortcut
    )
    randomize_statistics(model)
    logits_tensor = model.get_layer("probabilities").input  # before the softmax
    probe = keras.Model(model.input, [*stage_outputs(model), logits_tensor, model.output])
    images = np.random.default_rng(1).normal(size=(2, size, size, 3)).astype("float32")
    *stages, logits, probabilities = [
        keras.ops.convert_to_numpy(output) for output in probe(images, training=False)
    ]

    # Each stage's resolution: full size, then halved by the stride-2 first block of stages
    # 2 and 3 (32, 16, 8 for the 32-layer family).
    widths = NETWORKS[name][0]
    assert [stage.shape[1:] for stage in stages] == [
        (size // 2**index, size // 2**index, width) for index, width in enumerate(widths)
    ]

    expected_stages, expected_logits = reference_forward(
        name, model_weights(model), images.astype(np.float64), shortcut
    )
    outputs = [*stages, logits]
    expected_outputs = [*expected_stages, expected_logits]
    for index, (ours, expected) in enumerate(zip(outputs, expected_outputs, strict=True)):
        scale = np.abs(expected).max()
        assert scale > 0
        what = f"stage {index + 1}" if index < len(stages) else "logits"
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * scale, err_msg=what)
    np.testing.assert_allclose(probabilities, softmax(expected_logits), atol=1e-5)
