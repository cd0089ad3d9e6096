"""The real CIFAR-10 through `keras_rir.data`: sizes, classes, labels, statistics, pixels.

The copy is found through `KERAS_RIR_DATA_DIR` (the variable `keras_rir.data.load_cifar` reads),
else at `../shared/data/cifar10` next to the repository; without it the tests are skipped,
saying where they looked.

The expected values below were read once from the files with the few-line NumPy reader of
this module (`read_records`), not from keras_rir, and agree with the published facts of
CIFAR-10 (first training labels frog, truck, truck, deer, ...; per-channel mean 125.3, 123.0,
113.9 and standard deviation 63.0, 62.1, 66.7 over the training set).
"""

import os

import numpy as np
import pytest

from keras_rir.data import channel_stats, load_cifar

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "cifar10"))
CIFAR10_DIR = os.environ.get("KERAS_RIR_DATA_DIR") or DEFAULT_DIR
BATCHES = os.path.join(CIFAR10_DIR, "cifar-10-batches-bin")

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(BATCHES, "test_batch.bin")),
    reason=f"no real CIFAR-10 at {BATCHES} (set KERAS_RIR_DATA_DIR to a directory holding "
    "cifar-10-batches-bin/)",
)

FIRST_TRAIN_LABELS = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
FIRST_TEST_LABELS = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
MEAN = [125.30691805, 122.95039414, 113.86538318]  # training set, pixel units
STD = [62.99321928, 62.08870764, 66.70489964]  # population standard deviation
# (split, image, row, column) -> (red, green, blue)
PIXELS = {
    ("train", 0, 0, 0): (59, 62, 63),
    ("train", 0, 31, 31): (123, 92, 72),
    ("test", 0, 0, 0): (158, 112, 49),
}
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship")


def read_records(filename):
    """Labels and images (N, 32, 32, 3) of one binary batch: 1 label byte, R, G, B planes."""
    records = np.fromfile(os.path.join(BATCHES, filename), np.uint8).reshape(-1, 1 + 3072)
    return records[:, 0], records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def cifar10():
    return load_cifar("cifar10", data_dir=CIFAR10_DIR)


def test_sizes_and_classes(cifar10):
    assert cifar10.x_train.shape == (50_000, 32, 32, 3) and cifar10.x_train.dtype == np.uint8
    assert cifar10.x_test.shape == (10_000, 32, 32, 3) and cifar10.x_test.dtype == np.uint8
    assert cifar10.num_classes == 10
    assert cifar10.class_names == (*CLASS_NAMES, "truck")
    assert np.bincount(cifar10.y_train, minlength=10).tolist() == [5_000] * 10
    assert np.bincount(cifar10.y_test, minlength=10).tolist() == [1_000] * 10


def test_first_labels(cifar10):
    assert cifar10.y_train[:10].tolist() == FIRST_TRAIN_LABELS
    assert cifar10.y_test[:10].tolist() == FIRST_TEST_LABELS


def test_known_pixels(cifar10):
    images = {"train": cifar10.x_train, "test": cifar10.x_test}
    for (split, image, row, column), rgb in PIXELS.items():
        assert tuple(images[split][image, row, column]) == rgb, (split, image, row, column)


def test_channel_statistics(cifar10):
    mean, std = channel_stats(cifar10.x_train)
    np.testing.assert_allclose(mean, MEAN, rtol=1e-6)
    np.testing.assert_allclose(std, STD, rtol=1e-6)


def test_records_match_an_independent_reader(cifar10):
    """The first and last batch, and the test set, image by image and label by label."""
    for filename, start, x, y in (
        ("data_batch_1.bin", 0, cifar10.x_train, cifar10.y_train),
        ("data_batch_5.bin", 40_000, cifar10.x_train, cifar10.y_train),
        ("test_batch.bin", 0, cifar10.x_test, cifar10.y_test),
    ):
        labels, images = read_records(filename)
        np.testing.assert_array_equal(y[start : start + len(labels)], labels)
        np.testing.assert_array_equal(x[start : start + len(images)], images)
