"""CIFAR-10 and CIFAR-100 as in-memory NumPy arrays, for `model.fit` on every backend.

The data is the datasets' original *binary version* (a directory or the `.tar.gz` archive),
read with NumPy alone, so it loads on the JAX and torch backends where TensorFlow is not
installed. It comes from, in this order:

1. `data_dir` (the scripts' `--data-dir`), a local copy;
2. the environment variable `KERAS_RIR_DATA_DIR`, a local copy;
3. the official archive in the Keras cache (`$KERAS_HOME/datasets`, `~/.keras/datasets` by
   default), downloaded once from https://www.cs.toronto.edu/~kriz/ with
   `keras.utils.get_file` and checked against its published MD5, like `keras.datasets`.

`load_cifar(..., source="tfds")` loads tensorflow-datasets' copy instead (needs TensorFlow).

The arrays stay `uint8` (180 MB for CIFAR-10); normalization and augmentation run inside the
model, on the accelerator (see `keras_rir.preprocessing.with_preprocessing`).
"""

import dataclasses
import os
import tarfile

import keras
import numpy as np

from keras_rir._validation import (
    check_choice,
    check_non_negative_int,
    check_positive_int,
    check_type,
    invalid_value,
)

__all__ = ["CifarData", "DatasetUnavailableError", "channel_stats", "holdout", "load_cifar"]

_DATA_DIR_ENV = "KERAS_RIR_DATA_DIR"
# name -> (URL of the official binary archive, its MD5 as published on the CIFAR page)
_DOWNLOADS = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        "03b5dce01913d631647c71ecec9e9cb8",
    ),
}

_IMAGE_SHAPE = (32, 32, 3)
_PIXEL_BYTES = 32 * 32 * 3

_CIFAR10_NAMES = tuple("airplane automobile bird cat deer dog frog horse ship truck".split())
_CIFAR100_COARSE_NAMES = tuple(
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables "
    "household_electrical_devices household_furniture insects large_carnivores "
    "large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles "
    "small_mammals trees vehicles_1 vehicles_2".split()
)
_CIFAR100_FINE_NAMES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house "
    "kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle "
    "mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree "
    "plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew "
    "skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank "
    "telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf "
    "woman worm".split()
)


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where a dataset's binary version keeps its files and how a record looks."""

    title: str
    directory: str
    archive: str
    train_files: tuple
    test_files: tuple
    label_bytes: int
    records_per_file: dict  # file name -> record count in the real dataset
    label_files: dict  # label mode -> (file name, built-in names)
    label_index: dict  # label mode -> label byte holding it

    @property
    def record_bytes(self):
        return self.label_bytes + _PIXEL_BYTES

    def expected_layout(self):
        files = ", ".join(self.train_files + self.test_files)
        return (
            f"a directory containing `{self.directory}/` ({files}), that directory itself, "
            f"the `{self.archive}` archive, or a directory holding that archive"
        )


_LAYOUTS = {
    "cifar10": _Layout(
        title="CIFAR-10",
        directory="cifar-10-batches-bin",
        archive="cifar-10-binary.tar.gz",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_files=("test_batch.bin",),
        label_bytes=1,
        records_per_file={
            **{f"data_batch_{i}.bin": 10_000 for i in range(1, 6)},
            "test_batch.bin": 10_000,
        },
        label_files={"fine": ("batches.meta.txt", _CIFAR10_NAMES)},
        label_index={"fine": 0},
    ),
    "cifar100": _Layout(
        title="CIFAR-100",
        directory="cifar-100-binary",
        archive="cifar-100-binary.tar.gz",
        train_files=("train.bin",),
        test_files=("test.bin",),
        label_bytes=2,
        records_per_file={"train.bin": 50_000, "test.bin": 10_000},
        label_files={
            "fine": ("fine_label_names.txt", _CIFAR100_FINE_NAMES),
            "coarse": ("coarse_label_names.txt", _CIFAR100_COARSE_NAMES),
        },
        label_index={"coarse": 0, "fine": 1},
    ),
}


class DatasetUnavailableError(ValueError):
    """The requested dataset cannot be found, downloaded or read.

    Raised by `load_cifar` when the archive is neither in the Keras cache nor
    downloadable (or fails its checksum), when `data_dir` or
    `KERAS_RIR_DATA_DIR` holds no copy of the dataset, when a file of that
    copy is missing, truncated or not in the expected binary format, and when
    tensorflow-datasets (`source="tfds"`) is missing or fails. The message
    says what was expected and how to pass a local copy (`data_dir`,
    `--data-dir` or `KERAS_RIR_DATA_DIR`).
    """


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CifarData:
    """CIFAR-10 or CIFAR-100 in memory.

    Attributes:
        x_train: `uint8` array `(N, 32, 32, 3)`, channels last.
        y_train: `int32` array `(N,)` of class indices.
        x_test: `uint8` array `(M, 32, 32, 3)`.
        y_test: `int32` array `(M,)`.
        num_classes: 10 (CIFAR-10), 100 (CIFAR-100 fine) or 20 (CIFAR-100 coarse).
        class_names: tuple of `num_classes` names, index = label.
        name: `"cifar10"` or `"cifar100"`.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple
    name: str

    def __repr__(self):
        return (
            f"CifarData(name={self.name!r}, train={len(self.y_train)}, "
            f"test={len(self.y_test)}, num_classes={self.num_classes})"
        )


def load_cifar(
    name="cifar10", data_dir=None, label_mode="fine", max_train_examples=None, source="auto"
):
    """Loads CIFAR-10 or CIFAR-100 into `uint8` NumPy arrays.

    Reads the dataset's original binary version with NumPy alone (no
    TensorFlow needed), from `data_dir` if given, else from the directory or
    archive named by the environment variable `KERAS_RIR_DATA_DIR` if set,
    else from `cifar-10-binary.tar.gz` / `cifar-100-binary.tar.gz` in the
    Keras cache (`$KERAS_HOME/datasets`, `~/.keras/datasets` by default),
    which `keras.utils.get_file` downloads once from
    https://www.cs.toronto.edu/~kriz/ and checks against the published MD5
    (it is read in place, without unpacking). An archive already in the
    cache is used without the network.

    A local copy may be a directory containing `cifar-10-batches-bin/`
    (`data_batch_1.bin` ... `data_batch_5.bin`, `test_batch.bin`,
    `batches.meta.txt`) or `cifar-100-binary/` (`train.bin`, `test.bin`,
    `fine_label_names.txt`, `coarse_label_names.txt`), that directory itself,
    the `.tar.gz` archive, or a directory holding the archive. Each file must
    hold a whole, non-zero number of records of the dataset's record size
    (3,073 bytes for CIFAR-10: 1 label byte and 3,072 pixel bytes, the red,
    green and blue 32x32 planes; 3,074 bytes for CIFAR-100: a coarse and a
    fine label byte first); the five CIFAR-10 training batches must hold the
    same number of records. Files of any length that pass these checks are
    accepted (the real ones hold 10,000 records per CIFAR-10 batch, 50,000
    and 10,000 in CIFAR-100's `train.bin` and `test.bin`), so that small
    copies in the same layout load through the same path. The label-name
    files are optional (the standard names are built in).

    Args:
        name: `"cifar10"` or `"cifar100"`.
        data_dir: path of a local copy (see above), or `None` for
            `KERAS_RIR_DATA_DIR`, else the Keras cache.
        label_mode: `"fine"` (default; the only labels of CIFAR-10, the 100
            classes of CIFAR-100) or `"coarse"` (CIFAR-100's 20 superclasses).
        max_train_examples: keep only the first N training examples (all of
            them if N is larger), for quick runs; `None` keeps all. The test
            set is always complete.
        source: `"auto"` (default): the binary version, as above; `"tfds"`:
            `tensorflow_datasets.load(name)` instead (needs TensorFlow;
            downloads into tfds' own data directory; ignores
            `KERAS_RIR_DATA_DIR` and takes no `data_dir`).

    Returns:
        A `CifarData`.

    Raises:
        DatasetUnavailableError: (a `ValueError`) the data cannot be found,
            downloaded or read: the archive is not in the cache and cannot be
            downloaded, fails its checksum (it is then removed from the
            cache), or a local copy is missing or damaged. The message names
            the file, the cache path and the URL, and says how to pass a local
            copy.
        ValueError: an invalid argument.

    Example:
    >>> data = keras_rir.data.load_cifar("cifar10")  # downloads 163 MB on first use
    >>> data.x_train.shape, data.y_train.dtype
    ((50000, 32, 32, 3), dtype('int32'))
    >>> data = keras_rir.data.load_cifar("cifar100", data_dir="data/cifar-100-binary.tar.gz")
    """
    check_choice("name", name, tuple(_LAYOUTS))
    layout = _LAYOUTS[name]
    if label_mode not in layout.label_files:
        raise invalid_value(
            "label_mode", label_mode, f"one of {sorted(layout.label_files)} for {name}"
        )
    if max_train_examples is not None:
        max_train_examples = check_positive_int("max_train_examples", max_train_examples)
    check_choice("source", source, ("auto", "tfds"))

    if source == "tfds":
        if data_dir is not None:
            raise invalid_value(
                "source", source, "'auto' when `data_dir` is given (tfds keeps its own copy)"
            )
        x_train, y_train, x_test, y_test, class_names = _load_tfds(name, layout, label_mode)
    else:
        if data_dir is None:
            data_dir = os.environ.get(_DATA_DIR_ENV) or _download(name, layout)
        x_train, y_train, x_test, y_test, class_names = _load_binary(
            layout, os.fspath(data_dir), label_mode
        )
    return CifarData(
        x_train=x_train[:max_train_examples],  # all of them when `max_train_examples` is None
        y_train=y_train[:max_train_examples],
        x_test=x_test,
        y_test=y_test,
        num_classes=len(class_names),
        class_names=tuple(class_names),
        name=name,
    )


def holdout(data, num_validation, seed=0):
    """Splits a random validation set off the training set.

    The test set is never touched. Both parts keep the original order of the
    training examples.

    Args:
        data: a `CifarData`.
        num_validation: number of training examples to hold out; at least one
            training example must remain.
        seed: seed of the NumPy generator that picks them, an integer >= 0;
            the split is a function of `seed` and the number of training
            examples only.

    Returns:
        `(reduced_data, (x_val, y_val))`: a `CifarData` with the remaining
        training examples and the same test set, and the held-out arrays.

    Example:
    >>> train, (x_val, y_val) = keras_rir.data.holdout(data, 5000)
    >>> len(train.y_train), len(y_val)
    (45000, 5000)
    """
    check_type("data", data, CifarData, "a keras_rir.data.CifarData (from `load_cifar`)")
    num_train = len(data.y_train)
    num_validation = check_positive_int("num_validation", num_validation)
    seed = check_non_negative_int("seed", seed)
    if num_validation >= num_train:
        raise invalid_value(
            "num_validation", num_validation, f"fewer than the {num_train} training examples"
        )
    mask = np.zeros(num_train, dtype=bool)
    mask[np.random.default_rng(seed).permutation(num_train)[:num_validation]] = True
    reduced = dataclasses.replace(data, x_train=data.x_train[~mask], y_train=data.y_train[~mask])
    return reduced, (data.x_train[mask], data.y_train[mask])


def channel_stats(images, chunk_size=10_000):
    """Per-channel mean and standard deviation of images, in pixel units.

    Args:
        images: array `(..., channels)`, channels last, e.g. `uint8` in
            `[0, 255]`.
        chunk_size: number of leading-axis entries summed at a time for
            non-`uint8` input, to bound memory (`uint8` input is counted
            exactly with a histogram).

    Returns:
        `(mean, std)`, two `float32` arrays of shape `(channels,)`, in the
        units of `images` (`[0, 255]` for `uint8`); `std` is the population
        standard deviation.

    Example:
    >>> mean, std = keras_rir.data.channel_stats(data.x_train)
    >>> mean.round(1)
    array([125.3, 123. , 113.9], dtype=float32)
    """
    images = np.asarray(images)
    if images.ndim < 2 or images.size == 0:
        raise invalid_value(
            "images", f"<array of shape {images.shape}>", "a non-empty array (..., channels)"
        )
    chunk_size = check_positive_int("chunk_size", chunk_size)
    channels = images.shape[-1]
    count = images.size // channels
    if images.dtype == np.uint8:  # exact and fast: a histogram of the 256 values per channel
        values = np.arange(256, dtype=np.float64)
        mean, mean_sq = np.empty(channels), np.empty(channels)
        for channel in range(channels):
            histogram = np.bincount(images[..., channel].ravel(), minlength=256)
            mean[channel] = histogram @ values / count
            mean_sq[channel] = histogram @ np.square(values) / count
    else:
        total = np.zeros(channels, np.float64)
        total_sq = np.zeros(channels, np.float64)
        for start in range(0, len(images), chunk_size):
            chunk = images[start : start + chunk_size].reshape(-1, channels).astype(np.float64)
            total += chunk.sum(axis=0)
            total_sq += np.square(chunk).sum(axis=0)
        mean, mean_sq = total / count, total_sq / count
    variance = np.maximum(mean_sq - np.square(mean), 0.0)
    return mean.astype(np.float32), np.sqrt(variance).astype(np.float32)


# --- local binary layout ---------------------------------------------------------------------


class _DirectorySource:
    def __init__(self, path):
        self.path = path

    def describe(self, filename):
        return os.path.join(self.path, filename)

    def size(self, filename):
        path = os.path.join(self.path, filename)
        return os.path.getsize(path) if os.path.isfile(path) else None

    def read(self, filename):
        return np.fromfile(os.path.join(self.path, filename), dtype=np.uint8)


class _ArchiveSource:
    def __init__(self, path):
        self.path = path
        self.archive = tarfile.open(path, "r:*")
        self.members = {}
        for member in self.archive.getmembers():
            if member.isfile():
                self.members.setdefault(os.path.basename(member.name), member)

    def describe(self, filename):
        member = self.members.get(filename)
        return f"{self.path}:{member.name if member else filename}"

    def size(self, filename):
        member = self.members.get(filename)
        return None if member is None else member.size

    def read(self, filename):
        return np.frombuffer(self.archive.extractfile(self.members[filename]).read(), np.uint8)

    def close(self):
        self.archive.close()


def _unavailable(layout, message):
    return DatasetUnavailableError(
        f"{message} Pass `data_dir` (`--data-dir` on the command line) or set "
        f"{_DATA_DIR_ENV} to {layout.expected_layout()}."
    )


def _download(name, layout):
    """Path of the official archive in the Keras cache, downloaded and checked on first use."""
    url, md5 = _DOWNLOADS[name]
    cache_dir = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    path = os.path.join(cache_dir, "datasets", layout.archive)
    try:
        return keras.utils.get_file(
            layout.archive, url, file_hash=md5, cache_dir=cache_dir, cache_subdir="datasets"
        )
    except Exception as error:  # get_file raises a bare `Exception` when the download fails
        # get_file deletes a failed download but keeps one that fails the checksum: never
        # leave a file that is not the dataset in the cache.
        if os.path.exists(path):
            os.remove(path)
        raise _unavailable(
            layout,
            f"{layout.title} is not in the Keras cache and could not be downloaded "
            f"({type(error).__name__}: {error}). Download {url} (MD5 {md5}) to {path}, or "
            "use a local copy.",
        ) from error


def _open_source(layout, data_dir):
    path = os.path.abspath(os.path.expanduser(data_dir))
    if not os.path.exists(path):
        raise _unavailable(layout, f"{layout.title} data not found: {path} does not exist.")
    if os.path.isfile(path):
        if tarfile.is_tarfile(path):
            return _ArchiveSource(path)
        raise _unavailable(layout, f"{path} is a file but not a tar archive.")
    nested = os.path.join(path, layout.directory)
    if os.path.isdir(nested):
        return _DirectorySource(nested)
    data_files = layout.train_files + layout.test_files
    if os.path.basename(path) == layout.directory or any(
        os.path.exists(os.path.join(path, filename)) for filename in data_files
    ):
        return _DirectorySource(path)
    archive = os.path.join(path, layout.archive)
    if os.path.isfile(archive):
        return _ArchiveSource(archive)
    entries = sorted(os.listdir(path))
    listing = ", ".join(entries[:10]) + (", ..." if len(entries) > 10 else "")
    raise _unavailable(
        layout, f"No {layout.title} data in {path} (it contains: {listing or 'nothing'})."
    )


def _check_sizes(layout, source):
    """Returns the record count of every data file, after checking their sizes."""
    record_bytes = layout.record_bytes
    counts = {}
    for filename in layout.train_files + layout.test_files:
        size = source.size(filename)
        real_records = layout.records_per_file[filename]
        real_size = f"{real_records * record_bytes:,} bytes ({real_records:,} records)"
        if size is None:
            raise _unavailable(
                layout,
                f"{layout.title} file missing: {source.describe(filename)} (the real file has "
                f"{real_size}).",
            )
        if size == 0 or size % record_bytes:
            raise _unavailable(
                layout,
                f"{layout.title} file {source.describe(filename)} has {size:,} bytes, which is "
                f"not a whole, non-zero number of {record_bytes:,}-byte records "
                f"({layout.label_bytes} label byte{'s' if layout.label_bytes > 1 else ''} and "
                f"{_PIXEL_BYTES:,} pixel bytes); expected {real_size} for the real dataset. "
                f"The file is truncated or not in the {layout.title} binary format.",
            )
        counts[filename] = size // record_bytes
    train_counts = {counts[filename] for filename in layout.train_files}
    if len(train_counts) > 1:
        listing = ", ".join(
            f"{source.describe(filename)}: {counts[filename]:,}" for filename in layout.train_files
        )
        raise _unavailable(
            layout,
            f"{layout.title} training batches hold different numbers of records ({listing}); "
            "all must hold the same number (10,000 in the real dataset): one is truncated.",
        )
    return counts


def _read_records(layout, source, filename, count, label_mode):
    records = source.read(filename)
    if records.size != count * layout.record_bytes:
        raise _unavailable(
            layout,
            f"{layout.title} file {source.describe(filename)} changed while it was read "
            f"({records.size:,} bytes read, {count * layout.record_bytes:,} expected).",
        )
    records = records.reshape(count, layout.record_bytes)
    # Every label byte is checked, whichever label mode was asked for: a byte out of range
    # means the file is not the dataset (or is damaged), even if that byte would go unused.
    for mode, index in layout.label_index.items():
        num_classes = len(layout.label_files[mode][1])
        bad = np.flatnonzero(records[:, index] >= num_classes)
        if bad.size:
            record = int(bad[0])
            raise _unavailable(
                layout,
                f"{layout.title} file {source.describe(filename)}, record {record:,} (0-based, "
                f"at byte {record * layout.record_bytes:,}), has a {mode} label "
                f"{int(records[record, index])} >= {num_classes} ({bad.size:,} such "
                f"record{'s' if bad.size > 1 else ''} in the file): it is damaged or not in "
                f"the {layout.title} binary format ({layout.record_bytes:,}-byte records, "
                f"{mode} labels 0-{num_classes - 1}).",
            )
    labels = records[:, layout.label_index[label_mode]].astype(np.int32)
    images = records[:, layout.label_bytes :].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _read_label_names(layout, source, label_mode):
    filename, names = layout.label_files[label_mode]
    if source.size(filename) is None:
        return names
    text = source.read(filename).tobytes().decode("utf-8", errors="replace")
    read_names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(read_names) != len(names):
        raise _unavailable(
            layout,
            f"{layout.title} label-name file {source.describe(filename)} lists "
            f"{len(read_names)} names, expected {len(names)}.",
        )
    return read_names


def _read_split(layout, source, filenames, counts, label_mode):
    total = sum(counts[filename] for filename in filenames)
    images = np.empty((total, *_IMAGE_SHAPE), np.uint8)  # channels last, C-contiguous
    labels = np.empty((total,), np.int32)
    start = 0
    for filename in filenames:
        stop = start + counts[filename]
        images[start:stop], labels[start:stop] = _read_records(
            layout, source, filename, counts[filename], label_mode
        )
        start = stop
    return images, labels


def _load_binary(layout, data_dir, label_mode):
    source = _open_source(layout, data_dir)
    try:
        counts = _check_sizes(layout, source)
        x_train, y_train = _read_split(layout, source, layout.train_files, counts, label_mode)
        x_test, y_test = _read_split(layout, source, layout.test_files, counts, label_mode)
        class_names = _read_label_names(layout, source, label_mode)
    finally:
        if isinstance(source, _ArchiveSource):
            source.close()
    return x_train, y_train, x_test, y_test, class_names


# --- tensorflow-datasets -----------------------------------------------------------------------


def _load_tfds(name, layout, label_mode):
    how = (
        "Leave `source` at 'auto' (the default) to load the binary version without TensorFlow, "
        "from the Keras cache or a local copy."
    )
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise _unavailable(
            layout,
            f"Loading {layout.title} with source='tfds' needs tensorflow-datasets, which is not "
            f"installed (`pip install tensorflow tensorflow-datasets`). {how}",
        ) from error
    _hide_gpus_from_tensorflow()
    label_key = "coarse_label" if label_mode == "coarse" else "label"
    try:
        (train, test), info = tfds.load(
            name, split=["train", "test"], batch_size=-1, with_info=True
        )
        train, test = tfds.as_numpy(train), tfds.as_numpy(test)
        class_names = tuple(info.features[label_key].names)
    except Exception as error:  # tfds raises many types (download, I/O, missing TensorFlow).
        raise _unavailable(
            layout,
            f"tensorflow-datasets could not load {name!r} ({type(error).__name__}: {error}). {how}",
        ) from error
    return (
        np.asarray(train["image"], np.uint8),
        np.asarray(train[label_key], np.int32),
        np.asarray(test["image"], np.uint8),
        np.asarray(test[label_key], np.int32),
        class_names,
    )


def _hide_gpus_from_tensorflow():
    """Keeps TensorFlow (pulled in by tfds) off the GPUs when Keras runs on another backend."""
    if keras.backend.backend() == "tensorflow":
        return
    try:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    except Exception:  # best effort: TensorFlow may be absent or already initialised
        pass
