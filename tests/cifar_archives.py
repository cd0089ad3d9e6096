"""Writes small CIFAR-10 / CIFAR-100 copies in the datasets' original binary layout, for tests.

Usage:

    from tests.cifar_archives import write_cifar10, write_cifar100

    generated = write_cifar10(tmp_path, num_train=20, num_test=10, archive=True)
    data = keras_rir.data.load_cifar("cifar10", data_dir=generated.data_dir)
    np.testing.assert_array_equal(data.x_train, generated.x_train)

The files are the real formats with fewer records: CIFAR-10 `cifar-10-batches-bin/` with
`data_batch_1.bin` ... `data_batch_5.bin`, `test_batch.bin` and `batches.meta.txt` (records of
1 label byte + 3,072 pixel bytes); CIFAR-100 `cifar-100-binary/` with `train.bin`, `test.bin`,
`fine_label_names.txt` and `coarse_label_names.txt` (records of a coarse label byte, a fine
label byte and 3,072 pixel bytes). Pixels are stored as the red, green and blue 32x32 planes.
"""

import dataclasses
import os
import tarfile

import numpy as np

__all__ = [
    "GeneratedCifar",
    "encode_records",
    "random_images",
    "write_cifar10",
    "write_cifar100",
]

CIFAR10_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))


@dataclasses.dataclass
class GeneratedCifar:
    """What a `write_cifar*` call wrote, and the arrays `load_cifar` must return.

    Attributes:
        data_dir: pass this as `load_cifar(..., data_dir=...)`: the root directory that
            contains `cifar-10-batches-bin/` / `cifar-100-binary/`, or the `.tar.gz` path.
        files_dir: the directory holding the `.bin` files (for tests that damage one), or
            `None` for an archive.
        x_train, x_test: `uint8` arrays `(N, 32, 32, 3)`, channels last.
        y_train, y_test: `int32` fine labels (the only labels of CIFAR-10).
        coarse_train, coarse_test: `int32` CIFAR-100 coarse labels, `None` for CIFAR-10.
        class_names: the fine class names written to the label-name file.
        coarse_class_names: the coarse class names (CIFAR-100), else `None`.
    """

    data_dir: str
    files_dir: str | None
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    coarse_train: np.ndarray | None = None
    coarse_test: np.ndarray | None = None
    class_names: tuple = ()
    coarse_class_names: tuple | None = None


def random_images(num_images, seed=0, shape=(32, 32, 3)):
    """Random `uint8` images `(num_images, *shape)` from `np.random.default_rng(seed)`."""
    return np.random.default_rng(seed).integers(0, 256, (num_images, *shape), dtype=np.uint8)


def encode_records(images, labels):
    """Encodes images and labels as CIFAR binary records.

    Args:
        images: `uint8` array `(N, 32, 32, 3)`, channels last.
        labels: `(N,)` for CIFAR-10 records (1 label byte), or `(N, k)` for `k` label bytes
            per record (CIFAR-100: `k = 2`, coarse then fine).

    Returns:
        `bytes` of `N` records of `k + 3072` bytes.
    """
    images = np.asarray(images, np.uint8)
    labels = np.asarray(labels, np.uint8).reshape(len(images), -1)
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R, G, B planes
    return np.concatenate([labels, planes], axis=1).tobytes()


def _write_tree(root, directory, files, archive, archive_name):
    root = os.fspath(root)
    files_dir = os.path.join(root, directory)
    os.makedirs(files_dir, exist_ok=True)
    for filename, content in files.items():
        with open(os.path.join(files_dir, filename), "wb") as file:
            file.write(content)
    if not archive:
        return root, files_dir
    archive_path = os.path.join(root, archive_name)
    with tarfile.open(archive_path, "w:gz") as tar:
        tar.add(files_dir, arcname=directory)
    for filename in files:
        os.remove(os.path.join(files_dir, filename))
    os.rmdir(files_dir)
    return archive_path, None


def write_cifar10(root, num_train=20, num_test=10, seed=0, archive=False, label_names=True):
    """Writes a small CIFAR-10 in the binary layout under `root`.

    Args:
        root: an existing directory (e.g. pytest's `tmp_path`).
        num_train: training records, a multiple of 5 (spread evenly over the 5 batches).
        num_test: test records.
        seed: seed of the random pixels and labels.
        archive: write `root/cifar-10-binary.tar.gz` instead of the directory.
        label_names: also write `batches.meta.txt`.

    Returns:
        A `GeneratedCifar`.
    """
    if num_train % len(CIFAR10_BATCHES):
        raise ValueError(f"num_train must be a multiple of 5. Received: num_train={num_train}")
    rng = np.random.default_rng(seed)
    x_train = random_images(num_train, seed=seed + 1)
    x_test = random_images(num_test, seed=seed + 2)
    y_train = rng.integers(0, 10, num_train).astype(np.int32)
    y_test = rng.integers(0, 10, num_test).astype(np.int32)
    names = tuple(f"class{i}" for i in range(10))
    per_batch = num_train // len(CIFAR10_BATCHES)
    files = {
        filename: encode_records(
            x_train[i * per_batch : (i + 1) * per_batch],
            y_train[i * per_batch : (i + 1) * per_batch],
        )
        for i, filename in enumerate(CIFAR10_BATCHES)
    }
    files["test_batch.bin"] = encode_records(x_test, y_test)
    if label_names:
        files["batches.meta.txt"] = ("\n".join(names) + "\n\n").encode()
    data_dir, files_dir = _write_tree(
        root, "cifar-10-batches-bin", files, archive, "cifar-10-binary.tar.gz"
    )
    return GeneratedCifar(
        data_dir=data_dir,
        files_dir=files_dir,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=names,
    )


def write_cifar100(root, num_train=20, num_test=10, seed=0, archive=False, label_names=True):
    """Writes a small CIFAR-100 in the binary layout under `root`.

    Fine labels are drawn from all 100 classes, coarse labels from the 20
    superclasses, independently (the loader does not rely on the real mapping).

    Args:
        root: an existing directory.
        num_train: records in `train.bin`.
        num_test: records in `test.bin`.
        seed: seed of the random pixels and labels.
        archive: write `root/cifar-100-binary.tar.gz` instead of the directory.
        label_names: also write `fine_label_names.txt` and `coarse_label_names.txt`.

    Returns:
        A `GeneratedCifar`.
    """
    rng = np.random.default_rng(seed)
    x_train = random_images(num_train, seed=seed + 1)
    x_test = random_images(num_test, seed=seed + 2)
    y_train = rng.integers(0, 100, num_train).astype(np.int32)
    y_test = rng.integers(0, 100, num_test).astype(np.int32)
    coarse_train = rng.integers(0, 20, num_train).astype(np.int32)
    coarse_test = rng.integers(0, 20, num_test).astype(np.int32)
    fine_names = tuple(f"fine{i}" for i in range(100))
    coarse_names = tuple(f"coarse{i}" for i in range(20))
    files = {
        "train.bin": encode_records(x_train, np.stack([coarse_train, y_train], axis=1)),
        "test.bin": encode_records(x_test, np.stack([coarse_test, y_test], axis=1)),
    }
    if label_names:
        files["fine_label_names.txt"] = "\n".join(fine_names).encode()
        files["coarse_label_names.txt"] = "\n".join(coarse_names).encode()
    data_dir, files_dir = _write_tree(
        root, "cifar-100-binary", files, archive, "cifar-100-binary.tar.gz"
    )
    return GeneratedCifar(
        data_dir=data_dir,
        files_dir=files_dir,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        coarse_train=coarse_train,
        coarse_test=coarse_test,
        class_names=fine_names,
        coarse_class_names=coarse_names,
    )
