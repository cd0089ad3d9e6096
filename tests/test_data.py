import hashlib
import os
import pathlib
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import types

import keras
import numpy as np
import pytest

from keras_rir import data as data_module
from keras_rir.data import (
    CifarData,
    DatasetUnavailableError,
    channel_stats,
    holdout,
    load_cifar,
)
from tests.cifar_archives import encode_records, random_images, write_cifar10, write_cifar100

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Read at import, before the `keras_home` fixture of conftest.py replaces the URLs.
OFFICIAL_DOWNLOADS = dict(data_module._DOWNLOADS)


def assert_matches(data, generated, label_mode="fine"):
    np.testing.assert_array_equal(data.x_train, generated.x_train)
    np.testing.assert_array_equal(data.x_test, generated.x_test)
    if label_mode == "coarse":
        np.testing.assert_array_equal(data.y_train, generated.coarse_train)
        np.testing.assert_array_equal(data.y_test, generated.coarse_test)
    else:
        np.testing.assert_array_equal(data.y_train, generated.y_train)
        np.testing.assert_array_equal(data.y_test, generated.y_test)
    for images in (data.x_train, data.x_test):
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        assert images.flags["C_CONTIGUOUS"]
    for labels in (data.y_train, data.y_test):
        assert labels.dtype == np.int32
        assert 0 <= labels.min() and labels.max() < data.num_classes
    assert len(data.class_names) == data.num_classes


# --- the two binary layouts, as directories and archives ---------------------------------------


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "tar.gz"])
def test_cifar10_layouts(tmp_path, archive):
    generated = write_cifar10(tmp_path, num_train=20, num_test=7, archive=archive)
    data = load_cifar("cifar10", data_dir=generated.data_dir)
    assert isinstance(data, CifarData)
    assert (data.name, data.num_classes, len(data.y_train), len(data.y_test)) == (
        "cifar10",
        10,
        20,
        7,
    )
    assert data.class_names == generated.class_names
    assert_matches(data, generated)
    assert repr(data) == "CifarData(name='cifar10', train=20, test=7, num_classes=10)"


def test_cifar10_accepts_the_batches_directory_and_the_archive_folder(tmp_path):
    generated = write_cifar10(tmp_path / "plain")
    assert_matches(load_cifar(data_dir=generated.files_dir), generated)  # the layout dir itself
    archived = write_cifar10(tmp_path / "packed", seed=5, archive=True)
    assert_matches(load_cifar(data_dir=tmp_path / "packed"), archived)  # a folder with the .tar.gz


def test_cifar10_pixel_layout_is_rgb_planes(tmp_path):
    """One record, written byte by byte: label, then the R, G and B planes row-major."""
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    red = np.arange(1024, dtype=np.uint8).reshape(32, 32)
    record = bytes([7]) + red.tobytes() + bytes(1024) + bytes([255] * 1024)
    for i in range(1, 6):
        (root / f"data_batch_{i}.bin").write_bytes(record)
    (root / "test_batch.bin").write_bytes(record)
    data = load_cifar(data_dir=tmp_path)
    assert data.y_train.tolist() == [7] * 5
    np.testing.assert_array_equal(data.x_test[0, :, :, 0], red)
    assert (data.x_test[0, :, :, 1] == 0).all() and (data.x_test[0, :, :, 2] == 255).all()
    # batches.meta.txt is absent: the standard names are used.
    assert data.class_names[:2] == ("airplane", "automobile")


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "tar.gz"])
def test_cifar100_fine_and_coarse(tmp_path, archive):
    generated = write_cifar100(tmp_path, num_train=30, num_test=12, archive=archive)
    fine = load_cifar("cifar100", data_dir=generated.data_dir)
    assert (fine.name, fine.num_classes, len(fine.y_train), len(fine.y_test)) == (
        "cifar100",
        100,
        30,
        12,
    )
    assert fine.class_names == generated.class_names
    assert_matches(fine, generated)
    coarse = load_cifar("cifar100", data_dir=generated.data_dir, label_mode="coarse")
    assert coarse.num_classes == 20 and coarse.class_names == generated.coarse_class_names
    assert_matches(coarse, generated, label_mode="coarse")
    assert not np.array_equal(coarse.y_train, fine.y_train)


def test_cifar100_without_label_files_uses_standard_names(tmp_path):
    generated = write_cifar100(tmp_path, label_names=False)
    fine = load_cifar("cifar100", data_dir=generated.data_dir)
    coarse = load_cifar("cifar100", data_dir=generated.data_dir, label_mode="coarse")
    assert (
        fine.class_names[:3] == ("apple", "aquarium_fish", "baby") and len(fine.class_names) == 100
    )
    assert coarse.class_names[0] == "aquatic_mammals" and len(coarse.class_names) == 20


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "tar.gz"])
def test_max_train_examples_keeps_the_first_examples(tmp_path, archive):
    generated = write_cifar10(tmp_path, num_train=20, num_test=5, archive=archive)
    data = load_cifar(data_dir=generated.data_dir, max_train_examples=7)
    np.testing.assert_array_equal(data.x_train, generated.x_train[:7])
    np.testing.assert_array_equal(data.y_train, generated.y_train[:7])
    assert len(data.y_test) == 5  # the test set stays complete
    assert len(load_cifar(data_dir=generated.data_dir, max_train_examples=1000).y_train) == 20


# --- argument checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"name": "mnist"}, "name"),
        ({"name": "cifar10", "label_mode": "coarse"}, "label_mode"),
        ({"name": "cifar100", "label_mode": "medium"}, "label_mode"),
        ({"max_train_examples": 0}, "max_train_examples"),
        ({"max_train_examples": 2.5}, "max_train_examples"),
        ({"max_train_examples": True}, "max_train_examples"),
        ({"source": "keras"}, "source"),
        ({"source": "tfds"}, "source"),  # with `data_dir`
    ],
)
def test_invalid_arguments(tmp_path, kwargs, argument):
    generated = write_cifar10(tmp_path)
    with pytest.raises(ValueError, match=f"Invalid value for argument `{argument}`") as info:
        load_cifar(data_dir=generated.data_dir, **kwargs)
    assert f"Received: {argument}=" in str(info.value)
    assert not isinstance(info.value, DatasetUnavailableError)


# --- clear errors on broken data -----------------------------------------------------------------


def test_truncated_file_names_file_and_sizes(tmp_path):
    generated = write_cifar10(tmp_path, num_train=20)
    path = os.path.join(generated.files_dir, "data_batch_3.bin")
    with open(path, "rb+") as file:
        file.truncate(4 * 3073 - 100)
    with pytest.raises(DatasetUnavailableError) as info:
        load_cifar(data_dir=generated.data_dir)
    message = str(info.value)
    assert path in message
    assert "12,192 bytes" in message  # its size
    assert "3,073-byte records" in message
    assert "30,730,000 bytes (10,000 records)" in message  # the real size
    assert "truncated" in message and "data_dir" in message


def test_truncated_archive_member_names_member(tmp_path):
    root = tmp_path / "cifar-100-binary"
    root.mkdir()
    (root / "train.bin").write_bytes(encode_records(random_images(3), np.zeros((3, 2))))
    (root / "test.bin").write_bytes(encode_records(random_images(2), np.zeros((2, 2)))[:-1])
    import tarfile

    archive = tmp_path / "cifar-100-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="cifar-100-binary")
    with pytest.raises(DatasetUnavailableError, match="3,074-byte records") as info:
        load_cifar("cifar100", data_dir=archive)
    assert f"{archive}:cifar-100-binary/test.bin has 6,147 bytes" in str(info.value)
    assert "30,740,000 bytes (10,000 records)" in str(info.value)


def test_wrong_record_size(tmp_path):
    """CIFAR-100 records (3,074 bytes) where CIFAR-10 records (3,073 bytes) belong."""
    generated = write_cifar10(tmp_path)
    path = os.path.join(generated.files_dir, "data_batch_1.bin")
    with open(path, "wb") as file:
        file.write(encode_records(random_images(4), np.zeros((4, 2))))
    with pytest.raises(DatasetUnavailableError) as info:
        load_cifar(data_dir=generated.data_dir)
    message = str(info.value)
    assert path in message and "12,296 bytes" in message and "3,073-byte records" in message
    assert "not in the CIFAR-10 binary format" in message


def test_label_out_of_range(tmp_path):
    generated = write_cifar10(tmp_path)
    path = os.path.join(generated.files_dir, "test_batch.bin")
    with open(path, "wb") as file:
        file.write(encode_records(random_images(2), [3, 42]))
    with pytest.raises(DatasetUnavailableError, match="label 42 >= 10") as info:
        load_cifar(data_dir=generated.data_dir)
    assert path in str(info.value)


def damage_label(path, record, label_byte, value, record_bytes):
    """Writes `value` into label byte `label_byte` of record `record` of a binary file."""
    with open(path, "rb+") as file:
        file.seek(record * record_bytes + label_byte)
        file.write(bytes([value]))


# (dataset, label mode asked for, damaged byte: 0 = CIFAR-10 label / CIFAR-100 coarse,
# 1 = CIFAR-100 fine, the value written, the name of that label in the message).
LABEL_DAMAGE = [
    ("cifar10", "fine", 0, 10, "fine"),
    ("cifar10", "fine", 0, 255, "fine"),
    ("cifar100", "fine", 1, 100, "fine"),
    ("cifar100", "fine", 0, 20, "coarse"),  # the byte that fine mode does not use
    ("cifar100", "coarse", 0, 20, "coarse"),
    ("cifar100", "coarse", 1, 100, "fine"),  # the byte that coarse mode does not use
]


@pytest.mark.parametrize("name, label_mode, label_byte, value, kind", LABEL_DAMAGE)
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_label_byte_is_range_checked(
    tmp_path, name, label_mode, label_byte, value, kind, split
):
    """One label one past the last class (or 255) in record 3: rejected, naming file and record."""
    write = write_cifar10 if name == "cifar10" else write_cifar100
    generated = write(tmp_path, num_train=20, num_test=10)
    record_bytes = 3073 if name == "cifar10" else 3074
    filename = {
        ("cifar10", "train"): "data_batch_2.bin",
        ("cifar10", "test"): "test_batch.bin",
        ("cifar100", "train"): "train.bin",
        ("cifar100", "test"): "test.bin",
    }[name, split]
    path = os.path.join(generated.files_dir, filename)
    damage_label(path, 3, label_byte, value, record_bytes)
    with pytest.raises(ValueError) as info:
        load_cifar(name, data_dir=generated.data_dir, label_mode=label_mode)
    assert isinstance(info.value, DatasetUnavailableError)
    message = str(info.value)
    assert path in message
    assert f"record 3 (0-based, at byte {3 * record_bytes:,})" in message
    num_classes = 20 if kind == "coarse" else {"cifar10": 10, "cifar100": 100}[name]
    assert f"{kind} label {value} >= {num_classes}" in message


def test_label_out_of_range_in_an_archive_names_the_member_and_record(tmp_path):
    files = write_cifar100(tmp_path / "files", num_train=6, num_test=4)
    damage_label(os.path.join(files.files_dir, "train.bin"), 5, 1, 100, 3074)
    archive = tmp_path / "cifar-100-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(files.files_dir, arcname="cifar-100-binary")
    with pytest.raises(DatasetUnavailableError) as info:
        load_cifar("cifar100", data_dir=archive, label_mode="coarse")
    message = str(info.value)
    assert f"{archive}:cifar-100-binary/train.bin, record 5 (0-based" in message
    assert "fine label 100 >= 100" in message


@pytest.mark.parametrize(
    "name, label_mode", [("cifar10", "fine"), ("cifar100", "fine"), ("cifar100", "coarse")]
)
def test_the_last_class_of_every_label_byte_is_accepted(tmp_path, name, label_mode):
    """Labels 9 (CIFAR-10), coarse 19 and fine 99 (CIFAR-100) are valid: no off-by-one."""
    write = write_cifar10 if name == "cifar10" else write_cifar100
    generated = write(tmp_path, num_train=10, num_test=5)
    if name == "cifar10":
        largest = {0: 9}
        path, record_bytes = os.path.join(generated.files_dir, "data_batch_1.bin"), 3073
    else:
        largest = {0: 19, 1: 99}
        path, record_bytes = os.path.join(generated.files_dir, "train.bin"), 3074
    for label_byte, value in largest.items():
        damage_label(path, 0, label_byte, value, record_bytes)
    data = load_cifar(name, data_dir=generated.data_dir, label_mode=label_mode)
    label_byte = 1 if (name, label_mode) == ("cifar100", "fine") else 0
    assert data.y_train[0] == largest[label_byte] == data.num_classes - 1


def test_unequal_training_batches(tmp_path):
    generated = write_cifar10(tmp_path, num_train=20)
    path = os.path.join(generated.files_dir, "data_batch_5.bin")
    with open(path, "rb+") as file:
        file.truncate(3 * 3073)  # a whole number of records, but one fewer than the others
    with pytest.raises(DatasetUnavailableError, match="different numbers of records") as info:
        load_cifar(data_dir=generated.data_dir)
    assert f"{path}: 3" in str(info.value)


def test_missing_file(tmp_path):
    generated = write_cifar10(tmp_path)
    path = os.path.join(generated.files_dir, "test_batch.bin")
    os.remove(path)
    with pytest.raises(DatasetUnavailableError, match="file missing") as info:
        load_cifar(data_dir=generated.data_dir)
    assert path in str(info.value)


def test_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetUnavailableError, match="does not exist") as info:
        load_cifar("cifar100", data_dir=missing)
    message = str(info.value)
    assert str(missing) in message
    assert "data_dir" in message and "--data-dir" in message and "cifar-100-binary" in message


def test_directory_without_the_dataset(tmp_path):
    write_cifar10(tmp_path)  # CIFAR-10 only: asking for CIFAR-100 names the directory
    with pytest.raises(DatasetUnavailableError, match="No CIFAR-100 data in") as info:
        load_cifar("cifar100", data_dir=tmp_path)
    assert str(tmp_path) in str(info.value) and "cifar-10-batches-bin" in str(info.value)


def test_file_that_is_not_an_archive(tmp_path):
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(b"not an archive")
    with pytest.raises(DatasetUnavailableError, match="not a tar archive") as info:
        load_cifar(data_dir=path)
    assert str(path) in str(info.value)


def test_wrong_number_of_class_names(tmp_path):
    generated = write_cifar10(tmp_path)
    path = os.path.join(generated.files_dir, "batches.meta.txt")
    with open(path, "w") as file:
        file.write("cat\ndog\n")
    with pytest.raises(DatasetUnavailableError, match="lists 2 names, expected 10") as info:
        load_cifar(data_dir=generated.data_dir)
    assert path in str(info.value)


# --- the default: the official archive through the Keras cache -------------------------------

ARCHIVES = {"cifar10": "cifar-10-binary.tar.gz", "cifar100": "cifar-100-binary.tar.gz"}
WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100}


def md5(path):
    return hashlib.md5(pathlib.Path(path).read_bytes()).hexdigest()


def serve(monkeypatch, name, archive, checksum=None):
    """Points the module's URL of `name` at a local archive, with its MD5 (or `checksum`)."""
    url = pathlib.Path(archive).as_uri()
    monkeypatch.setitem(data_module._DOWNLOADS, name, (url, checksum or md5(archive)))


def test_the_urls_and_checksums_are_the_official_ones():
    """As published on https://www.cs.toronto.edu/~kriz/cifar.html (binary versions)."""
    assert OFFICIAL_DOWNLOADS == {
        "cifar10": (
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            "c32a1d4ab5d03f1284b67883e8d87530",
        ),
        "cifar100": (
            "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
            "03b5dce01913d631647c71ecec9e9cb8",
        ),
    }


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_downloads_once_into_the_keras_cache(tmp_path, monkeypatch, keras_home, name):
    if keras.backend.backend() != "tensorflow":  # get_file must not need TensorFlow
        monkeypatch.setitem(sys.modules, "tensorflow", None)
    generated = WRITERS[name](tmp_path, num_train=10, num_test=5, archive=True)
    serve(monkeypatch, name, generated.data_dir)
    assert_matches(load_cifar(name), generated)
    cached = keras_home / "datasets" / ARCHIVES[name]
    assert os.listdir(keras_home / "datasets") == [ARCHIVES[name]]
    assert cached.read_bytes() == pathlib.Path(generated.data_dir).read_bytes()
    # The second load reads the cache: the URL is unreachable now.
    os.remove(generated.data_dir)
    assert_matches(load_cifar(name), generated)


def test_bad_checksum_is_rejected_and_not_cached(tmp_path, monkeypatch, keras_home):
    generated = write_cifar10(tmp_path, archive=True)
    serve(monkeypatch, "cifar10", generated.data_dir, checksum="0" * 32)
    with pytest.raises(DatasetUnavailableError) as info:
        load_cifar("cifar10")
    message = str(info.value)
    assert "file hash does not match" in message and f"MD5 {'0' * 32}" in message
    assert str(keras_home / "datasets" / "cifar-10-binary.tar.gz") in message
    assert os.listdir(keras_home / "datasets") == []


def test_a_damaged_cached_archive_is_downloaded_again(tmp_path, monkeypatch, keras_home):
    cached = keras_home / "datasets" / "cifar-10-binary.tar.gz"
    cached.parent.mkdir()
    cached.write_bytes(b"truncated")
    generated = write_cifar10(tmp_path, archive=True)
    serve(monkeypatch, "cifar10", generated.data_dir)
    assert_matches(load_cifar("cifar10"), generated)
    assert md5(cached) == md5(generated.data_dir)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_no_network_and_no_cache_is_one_clear_message(keras_home, name):
    with pytest.raises(DatasetUnavailableError) as info:
        load_cifar(name)
    message = str(info.value)
    url, checksum = data_module._DOWNLOADS[name]
    path = keras_home / "datasets" / ARCHIVES[name]
    assert f"Download {url} (MD5 {checksum}) to {path}, or use a local copy." in message
    assert "could not be downloaded" in message and "URL fetch failure" in message
    assert "`data_dir` (`--data-dir` on the command line) or set KERAS_RIR_DATA_DIR" in message
    assert os.listdir(keras_home / "datasets") == []


def test_keras_rir_data_dir_is_used_before_the_cache(tmp_path, monkeypatch, keras_home):
    from_env = write_cifar100(tmp_path / "env", archive=True)
    monkeypatch.setenv("KERAS_RIR_DATA_DIR", str(from_env.data_dir))
    assert_matches(load_cifar("cifar100"), from_env)
    from_argument = write_cifar100(tmp_path / "argument", seed=1)
    assert_matches(load_cifar("cifar100", data_dir=from_argument.data_dir), from_argument)
    assert os.listdir(keras_home) == []  # nothing downloaded
    monkeypatch.setenv("KERAS_RIR_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetUnavailableError, match="does not exist") as info:
        load_cifar("cifar100")
    assert str(tmp_path / "nowhere") in str(info.value) and "KERAS_RIR_DATA_DIR" in str(info.value)


# --- tensorflow-datasets, on request -----------------------------------------------------------


def test_tfds_source_without_tensorflow_datasets_says_what_else_works():
    with pytest.raises(DatasetUnavailableError) as info:
        load_cifar("cifar10", source="tfds")
    message = str(info.value)
    assert "tensorflow-datasets" in message and "source" in message
    assert "`data_dir`" in message and "--data-dir" in message and "KERAS_RIR_DATA_DIR" in message
    assert "cifar-10-batches-bin" in message and "cifar-10-binary.tar.gz" in message
    assert isinstance(info.value, ValueError)


def fake_tfds(load):
    module = types.ModuleType("tensorflow_datasets")
    module.load = load
    module.as_numpy = lambda tree: tree
    return module


def test_tfds_source_maps_fine_and_coarse_labels(monkeypatch):
    monkeypatch.setattr(data_module, "_hide_gpus_from_tensorflow", lambda: None)
    rng = np.random.default_rng(0)
    splits = {
        split: {
            "image": random_images(size, seed=size),
            "label": rng.integers(0, 100, size),
            "coarse_label": rng.integers(0, 20, size),
            "id": np.array([b"x"] * size),
        }
        for split, size in (("train", 6), ("test", 4))
    }
    info = types.SimpleNamespace(
        features={
            "label": types.SimpleNamespace(names=[f"fine{i}" for i in range(100)]),
            "coarse_label": types.SimpleNamespace(names=[f"coarse{i}" for i in range(20)]),
        }
    )
    calls = []

    def load(name, split, batch_size, with_info, **kwargs):
        calls.append((name, split, batch_size, with_info))
        return [splits[s] for s in split], info

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(load))
    coarse = load_cifar("cifar100", label_mode="coarse", max_train_examples=5, source="tfds")
    assert calls == [("cifar100", ["train", "test"], -1, True)]
    np.testing.assert_array_equal(coarse.x_train, splits["train"]["image"][:5])
    np.testing.assert_array_equal(coarse.y_train, splits["train"]["coarse_label"][:5])
    np.testing.assert_array_equal(coarse.y_test, splits["test"]["coarse_label"])
    assert coarse.y_train.dtype == np.int32 and coarse.num_classes == 20
    assert coarse.class_names[3] == "coarse3"
    fine = load_cifar("cifar100", source="tfds")
    np.testing.assert_array_equal(fine.y_train, splits["train"]["label"])
    assert fine.num_classes == 100 and fine.class_names[99] == "fine99"


def test_tfds_failure_becomes_one_clear_error(monkeypatch):
    monkeypatch.setattr(data_module, "_hide_gpus_from_tensorflow", lambda: None)

    def load(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(load))
    with pytest.raises(DatasetUnavailableError, match="ConnectionError: no network") as info:
        load_cifar("cifar10", source="tfds")
    assert "--data-dir" in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionError)


# --- holdout and channel statistics ------------------------------------------------------------


def test_holdout_is_deterministic_disjoint_and_keeps_the_test_set(tmp_path):
    data = load_cifar(data_dir=write_cifar10(tmp_path, num_train=40).data_dir)
    reduced, (x_val, y_val) = holdout(data, 10, seed=3)
    again, (x_val_again, _) = holdout(data, 10, seed=3)
    other, (x_val_other, _) = holdout(data, 10, seed=4)
    np.testing.assert_array_equal(x_val, x_val_again)
    np.testing.assert_array_equal(reduced.x_train, again.x_train)
    assert not np.array_equal(x_val, x_val_other)
    assert len(reduced.y_train) == 30 and len(y_val) == 10
    # Disjoint and complete: every training image lands in exactly one part, with its label.
    train_keys = [
        img.tobytes() + bytes([y]) for img, y in zip(data.x_train, data.y_train, strict=True)
    ]
    parts = [
        img.tobytes() + bytes([y]) for img, y in zip(reduced.x_train, reduced.y_train, strict=True)
    ]
    parts += [img.tobytes() + bytes([y]) for img, y in zip(x_val, y_val, strict=True)]
    assert sorted(parts) == sorted(train_keys) and len(set(train_keys)) == 40
    # Original order kept in both parts; test set and metadata untouched.
    positions = [train_keys.index(key) for key in parts]
    assert positions[:30] == sorted(positions[:30]) and positions[30:] == sorted(positions[30:])
    assert reduced.x_test is data.x_test and reduced.y_test is data.y_test
    assert (reduced.num_classes, reduced.name) == (data.num_classes, data.name)


@pytest.mark.parametrize("num_validation", [0, 40, 41, 2.0])
def test_holdout_rejects_bad_sizes(tmp_path, num_validation):
    data = load_cifar(data_dir=write_cifar10(tmp_path, num_train=40).data_dir)
    with pytest.raises(ValueError, match="Invalid value for argument `num_validation`"):
        holdout(data, num_validation)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None, True, np.random.default_rng(0)])
def test_holdout_rejects_bad_seeds(tmp_path, seed):
    """The split must be a function of the seed: no None (fresh entropy), no generators."""
    data = load_cifar(data_dir=write_cifar10(tmp_path, num_train=40).data_dir)
    with pytest.raises(ValueError, match="Invalid value for argument `seed`") as info:
        holdout(data, 10, seed=seed)
    assert "Expected an integer >= 0" in str(info.value)


def test_holdout_rejects_data_that_is_not_cifar_data(tmp_path):
    data = load_cifar(data_dir=write_cifar10(tmp_path, num_train=40).data_dir)
    with pytest.raises(TypeError, match="Invalid type for argument `data`") as info:
        holdout((data.x_train, data.y_train), 10)
    assert "keras_rir.data.CifarData" in str(info.value) and "of type tuple" in str(info.value)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_channel_stats_matches_numpy(dtype):
    images = random_images(50, seed=1).astype(dtype)
    images[..., 2] //= 2
    mean, std = channel_stats(images, chunk_size=7)
    reference = images.astype(np.float64)
    np.testing.assert_allclose(mean, reference.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, reference.std(axis=(0, 1, 2)), rtol=1e-5)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (3,)


# --- no TensorFlow at all ----------------------------------------------------------------------

NO_TENSORFLOW_SCRIPT = textwrap.dedent(
    """
    import hashlib
    import importlib.util
    import pathlib
    import site
    import sys

    # Started with `python -S`: the only site-packages is the copy without TensorFlow.
    site.addsitedir(sys.argv[3])
    assert importlib.util.find_spec("tensorflow") is None, "tensorflow is installed"
    assert importlib.util.find_spec("tensorflow_datasets") is None

    import keras
    import numpy as np

    from keras_rir import data as data_module
    from keras_rir.data import channel_stats, load_cifar
    from keras_rir.preprocessing import with_preprocessing

    cifar100 = load_cifar("cifar100", data_dir=sys.argv[2], label_mode="coarse")
    assert cifar100.num_classes == 20 and len(cifar100.y_train) == 10
    # CIFAR-10 the default way: keras.utils.get_file into $KERAS_HOME/datasets.
    archive = pathlib.Path(sys.argv[1])
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    data_module._DOWNLOADS["cifar10"] = (archive.as_uri(), md5)
    data = load_cifar("cifar10")
    mean, std = channel_stats(data.x_train)
    inner = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    )
    model = with_preprocessing(inner, mean, std, seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(data.x_train, data.y_train, batch_size=5, epochs=1, verbose=0)
    augmented = model.get_layer("random_crop_flip")(
        np.ones((4, 32, 32, 3), "float32"), training=True
    )
    assert augmented.shape == (4, 32, 32, 3)
    probabilities = model.predict(data.x_test, verbose=0)
    assert probabilities.shape == (5, 10)
    assert not [name for name in sys.modules if name.split(".")[0] == "tensorflow"]
    print("OK", keras.backend.backend())
    """
)


def site_packages_without_tensorflow(root):
    """A site-packages of symlinks to this environment's, less TensorFlow and tfds."""
    root.mkdir()
    for directory in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in os.listdir(directory):
            if not entry.lower().startswith(("tensorflow", "tf_keras")):
                target = root / entry
                if not target.exists():
                    target.symlink_to(os.path.join(directory, entry))
    return str(root)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_binary_path_works_without_tensorflow(tmp_path, backend):
    """A subprocess on an environment without TensorFlow: download, load, fit, predict."""
    pytest.importorskip(backend)
    if keras.backend.backend() not in (backend, "tensorflow"):
        pytest.skip(f"runs in the {backend} and tensorflow test sessions")
    cifar10 = write_cifar10(tmp_path / "c10", num_train=10, num_test=5, archive=True)
    cifar100 = write_cifar100(tmp_path / "c100", num_train=10, num_test=5, archive=True)
    site_packages = site_packages_without_tensorflow(tmp_path / "site-packages")
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": REPO_ROOT}
    env["KERAS_HOME"] = str(keras_home)
    result = subprocess.run(
        [sys.executable, "-S", "-c", NO_TENSORFLOW_SCRIPT]
        + [cifar10.data_dir, cifar100.data_dir, site_packages],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK {backend}" in result.stdout
    assert os.listdir(keras_home / "datasets") == ["cifar-10-binary.tar.gz"]
