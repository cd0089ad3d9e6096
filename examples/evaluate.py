"""Evaluates shipped presets (or a `.weights.h5` file) on the CIFAR-10 test set.

Reproduces the accuracies of `keras_rir.models.list_presets()` on any backend:

    KERAS_BACKEND=torch python examples/evaluate.py --data-dir /path/to/cifar10
    python examples/evaluate.py --models rir32 --weights cifar10 --json accuracy.json

Without `--data-dir`, CIFAR-10 comes from `KERAS_RIR_DATA_DIR`, else from the Keras cache
(downloaded once; see `keras_rir.data.load_cifar`). A path given to `--weights` is loaded into
the network as built (normalized inputs), so it is evaluated on images normalized with the
training set's statistics, as `keras-rir train` trains. `main()` returns `{model: test accuracy}`.
"""

import argparse
import json

import keras
import numpy as np

import keras_rir
from keras_rir import data as data_lib
from keras_rir import presets


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    presets = sorted({p["name"] for p in keras_rir.models.list_presets()})
    parser.add_argument("--models", nargs="+", default=presets, choices=presets)
    parser.add_argument("--weights", default="cifar10", help="preset name or .weights.h5 path")
    parser.add_argument(
        "--data-dir", help="local CIFAR-10 copy (else $KERAS_RIR_DATA_DIR, else the Keras cache)"
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", help="also write the accuracies to this file")
    return parser.parse_args(argv)


def evaluate(model_name, weights, data, batch_size=500):
    """Test accuracy of `keras_rir.models.get(model_name, weights=weights)`.

    Args:
        model_name: a builder with a preset.
        weights: the builder's `weights=`.
        data: a `keras_rir.data.CifarData`.
        batch_size: images per inference batch.

    Returns:
        The fraction of test images classified correctly.
    """
    model = keras_rir.models.get(model_name, weights=weights)
    images = data.x_test
    if (model_name, weights) not in presets.PRESETS:  # A weights file: the network as built.
        mean, std = data_lib.channel_stats(data.x_train)
        images = (images.astype("float32") - mean) / std
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == data.y_test.reshape(-1)))


def main(argv=None):
    args = parse_args(argv)
    data = data_lib.load_cifar("cifar10", data_dir=args.data_dir)
    accuracies = {}
    for model_name in args.models:
        accuracies[model_name] = evaluate(model_name, args.weights, data, args.batch_size)
        print(
            f"{model_name} weights={args.weights!r}: test accuracy {accuracies[model_name]:.4f} "
            f"on {len(data.x_test)} images ({keras.backend.backend()})",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"backend": keras.backend.backend(), "accuracy": accuracies}, file, indent=2)
    return accuracies


if __name__ == "__main__":
    main()
