"""The named networks of the paper and the trained weights that ship with keras_rir.

`MODEL_PRESETS` is the table of Table 7, keras-hub style: for every builder of
`keras_rir.models`, a description, its trainable parameters at 10 classes and the plain config
of `keras_rir.models.ResidualNetwork` it builds (`rir` and `resnet` start from `rir32` and
`resnet32` and set the blocks and layers per block).

As in `keras.applications`, `keras_rir.models.rir32(weights="cifar10")` returns the network
with trained weights; the weight files live in the package (`keras_rir/weights/`), are
verified against their SHA-256 before loading and are never downloaded. A pretrained model
takes raw images (`uint8` or float in `[0, 255]`, NHWC) and normalizes them itself with the
training set's per-channel statistics (`keras_rir.preprocessing.with_preprocessing`).

Every preset was trained with `keras-rir train` (then `examples/train_cifar.py`; the recipe
of section 3, full 82 epochs) and its accuracy is the one `examples/evaluate.py` gives on the
10,000 CIFAR-10 test images; `RESULTS.md` has the runs, curves and the paper's numbers beside them.
"""

import dataclasses
import hashlib
import os
import warnings

from keras_rir import preprocessing
from keras_rir._validation import invalid_value

__all__ = ["MODEL_PRESETS", "Preset", "PRESETS", "list_presets", "load_weights"]

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")

# Per-channel mean and standard deviation of the 50,000 CIFAR-10 training images, in pixel
# units (`keras_rir.data.channel_stats`), as used by the normalization of every CIFAR-10 run.
CIFAR10_MEAN = (125.30691528320312, 122.95039367675781, 113.86538696289062)
CIFAR10_STD = (62.99321746826172, 62.088706970214844, 66.70490264892578)

# Table 7: the thin 32-layer family on CIFAR-size stages of 32, 16 and 8 pixels, and the
# wide 18-layer family; each in the four kinds of Figure 2.
_THIN32 = {
    "stackwise_num_filters": [16, 32, 64],
    "stackwise_num_blocks": [5, 5, 5],
    "layers_per_block": 2,
    "head": "dense",
}
_WIDE18 = {
    "stackwise_num_filters": [96, 192, 384],
    "stackwise_num_blocks": [2, 3, 3],
    "layers_per_block": 2,
    "head": "conv",
}

MODEL_PRESETS = {
    "cnn32": {
        "description": "Baseline 32-layer CNN of Table 7: plain units, no shortcuts.",
        "params": 464_154,
        "config": {**_THIN32, "generalized": False, "outer_shortcuts": False},
    },
    "resnet32": {
        "description": "32-layer ResNet of Table 7 (He et al., 2015b).",
        "params": 487_386,
        "config": {**_THIN32, "generalized": False, "outer_shortcuts": True},
    },
    "resnet_init32": {
        "description": "32-layer ResNet Init of Table 7: generalized units, no outer shortcuts.",
        "params": 464_154,
        "config": {**_THIN32, "generalized": True, "outer_shortcuts": False},
    },
    "rir32": {
        "description": "32-layer RiR of Table 7: generalized units inside ResNet blocks.",
        "params": 487_386,
        "config": {**_THIN32, "generalized": True, "outer_shortcuts": True},
    },
    "wide_cnn18": {
        "description": "18-layer wide CNN of Table 7.",
        "params": 9_469_930,
        "config": {**_WIDE18, "generalized": False, "outer_shortcuts": False},
    },
    "wide_resnet18": {
        "description": "18-layer wide ResNet of Table 7.",
        "params": 10_300_522,
        "config": {**_WIDE18, "generalized": False, "outer_shortcuts": True},
    },
    "wide_resnet_init18": {
        "description": "18-layer wide ResNet Init of Table 7.",
        "params": 9_469_930,
        "config": {**_WIDE18, "generalized": True, "outer_shortcuts": False},
    },
    "wide_rir18": {
        "description": "18-layer wide RiR of Table 7, the paper's best network.",
        "params": 10_300_522,
        "config": {**_WIDE18, "generalized": True, "outer_shortcuts": True},
    },
}

# The arguments of `keras_rir.models.ResidualNetwork` that every shipped network was trained with.
_WEIGHTS_DEFAULTS = {"residual_fraction": 0.5, "shortcut": "projection", "implementation": "fused"}

_RECIPE = "MomentumCorrectedSGD, momentum 0.9, batch 500, L2 1e-4, crop + flip, lr x0.1 at 42/62"
_BUDGET = "82 epochs on the 50,000 training images, one seed; NVIDIA H200, JAX, float32"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One trained network.

    Attributes:
        model: builder name (`keras_rir.models.list_models()`).
        dataset: what it was trained on; the value of `weights=`.
        num_classes: classes of its output layer.
        input_shape: `(height, width, channels)` it was trained on.
        file: file name in `keras_rir/weights/`.
        sha256: SHA-256 of that file.
        test_accuracy: accuracy on the test set (`examples/evaluate.py`).
        learning_rate: initial learning rate of its run.
        mean, std: per-channel normalization of its input, in pixel units.
    """

    model: str
    dataset: str
    num_classes: int
    input_shape: tuple
    file: str
    sha256: str
    test_accuracy: float
    learning_rate: float
    mean: tuple = CIFAR10_MEAN
    std: tuple = CIFAR10_STD

    @property
    def path(self):
        return os.path.join(WEIGHTS_DIR, self.file)


# SHA-256 of the shipped weight files, `keras_rir/weights/<model>_cifar10.weights.h5`.
_CIFAR10_SHA256 = {
    "rir32": "820aa03f3a5563bfce83dc19999b68c2b44411d6f68b63266046c4cec8f84097",
    "resnet32": "17add9b6e530e79268fd995e7c5b3394ef1e6da4b5e1f35838783df795d32b69",
    "resnet_init32": "9988c120a475cd6032942faec97889dc71e3b9b650a2367b365d2fcaf58a7c60",
    "cnn32": "962935e6ab16084000f7caa860c49e85af52dcc4f8ec8021f5660d1d8589e9dc",
}


def _cifar10(model, test_accuracy, learning_rate):
    file, sha256 = f"{model}_cifar10.weights.h5", _CIFAR10_SHA256[model]
    return Preset(model, "cifar10", 10, (32, 32, 3), file, sha256, test_accuracy, learning_rate)


PRESETS = {
    (preset.model, preset.dataset): preset
    for preset in (
        _cifar10("rir32", 0.8995, 0.2),
        _cifar10("resnet32", 0.9067, 0.2),
        _cifar10("resnet_init32", 0.8720, 0.05),
        _cifar10("cnn32", 0.8616, 0.05),
    )
}


def list_presets():
    """The shipped trained networks, one dict each.

    Returns:
        A list of dicts with `name` (builder), `dataset` (the `weights=`
        value), `test_accuracy`, `recipe`, `budget` and `file_size` (bytes).

    Example:
    >>> [p["name"] for p in keras_rir.models.list_presets()]
    ['cnn32', 'resnet32', 'resnet_init32', 'rir32']
    """
    return [
        {
            "name": preset.model,
            "dataset": preset.dataset,
            "test_accuracy": preset.test_accuracy,
            "recipe": f"{_RECIPE}; initial lr {preset.learning_rate}",
            "budget": _BUDGET,
            "file_size": os.path.getsize(preset.path),
        }
        for _, preset in sorted(PRESETS.items())
    ]


def find(model_name, weights, num_classes, input_shape, structure):
    """Checks a builder's `weights=` against its other arguments before it builds.

    Args:
        model_name: the builder's name.
        weights: `None`, a preset's dataset name or a path to a `.weights.h5` file.
        num_classes, input_shape: the builder's arguments.
        structure: the builder's other arguments as a dict; those that change the network
            (`residual_fraction`, `shortcut`, `implementation`, a config key of
            `MODEL_PRESETS`) must keep the values the weights were trained with.

    Returns:
        The `Preset`, or `None` for `weights=None` or a path.
    """
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise invalid_value("weights", weights, "None, a preset name or a path")
    available = sorted(dataset for model, dataset in PRESETS if model == model_name)
    preset = PRESETS.get((model_name, str(weights)))
    if preset is None:
        if str(weights).endswith(".weights.h5"):
            if not os.path.isfile(weights):
                raise invalid_value("weights", weights, "the path of an existing file")
            return None
        raise invalid_value(
            "weights",
            weights,
            f"None, a path to a `.weights.h5` file or a preset of {model_name}: {available} "
            "(all: `keras_rir.models.list_presets()`)",
        )
    if num_classes != preset.num_classes:
        raise invalid_value(
            "num_classes", num_classes, f"{preset.num_classes}, the classes of weights={weights!r}"
        )
    if tuple(input_shape) != preset.input_shape:
        raise invalid_value(
            "input_shape", input_shape, f"{preset.input_shape}, the images of weights={weights!r}"
        )
    expected = {**_WEIGHTS_DEFAULTS, **MODEL_PRESETS[model_name]["config"]}
    for argument, value in structure.items():
        plain = list(value) if isinstance(value, tuple) else value
        if argument in expected and plain != expected[argument]:
            raise invalid_value(
                argument, value, f"{expected[argument]!r}, the network of weights={weights!r}"
            )
    return preset


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(network, weights, preset):
    """Loads `weights` into a freshly built network.

    Args:
        network: the builder's model.
        weights: the builder's `weights=` (see `find`).
        preset: what `find` returned.

    Returns:
        `network` itself for a path (it takes what the builder's model takes);
        for a preset, the network behind its input normalization
        (`with_preprocessing`), taking raw images in `[0, 255]`.
    """
    path = preset.path if preset else os.fspath(weights)
    if preset and _sha256(path) != preset.sha256:
        raise invalid_value(
            "weights",
            weights,
            f"an intact preset file: {path} does not have the SHA-256 {preset.sha256}; "
            "reinstall keras_rir",
        )
    # Keras only warns about the parts of a file that do not match the network and leaves
    # them as initialized: a partial load is an error here.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            network.load_weights(path)
            error = None
        except Exception as raised:  # h5py and Keras raise many kinds for a bad file.
            error = raised
    problems = [error] if error else []
    problems += [w.message for w in caught if issubclass(w.category, UserWarning)]
    if problems:
        raise invalid_value(
            "weights", weights, f"a `.weights.h5` file of {network.name} ({problems[0]})"
        ) from error
    if preset is None:
        return network
    return preprocessing.with_preprocessing(network, preset.mean, preset.std, augment=False)
