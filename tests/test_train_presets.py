"""examples/train_presets.py: parallel runs, each packed at its end; the deadline stops the rest."""

import json
import tarfile

import pytest

from tests import example_scripts
from tests.cifar_archives import write_cifar10

# Launching, packing and the deadline do not depend on the backend; the runs themselves use
# keras-rir train, tested on every backend in test_cli.py.
pytestmark = pytest.mark.one_backend

TINY = '{"num_blocks": 3, "layers_per_block": 1, "stage_filters": [4, 8, 8]}'


def load_script():
    return example_scripts.load_script("train_presets")


def _members(path):
    with tarfile.open(path) as archive:
        return set(archive.getnames())


@pytest.mark.slow
def test_parallel_runs_are_trained_and_packed(tmp_path):
    data = write_cifar10(tmp_path, num_train=20, num_test=10)
    load_script().main(
        ["--models", "rir", "resnet", "--data-dir", data.data_dir, "--parallel", "2"]
        + ["--output-dir", str(tmp_path / "runs"), "--pack-dir", str(tmp_path / "packed")]
        + ["--epochs", "2", "--", "--model-kwargs", TINY, "--batch-size", "10"]
    )
    for model in ("rir", "resnet"):
        packed = tmp_path / "packed" / f"{model}.tar"
        assert {"results.json", "log.csv", "model.keras", "console.log"} <= _members(packed)
        with tarfile.open(packed) as archive:
            results = json.load(archive.extractfile("results.json"))
        assert results["model"] == model and results["epochs"] == 2


def test_deadline_stops_and_packs_what_is_running(tmp_path):
    data = write_cifar10(tmp_path, num_train=20, num_test=10)
    load_script().main(
        ["--models", "rir", "--data-dir", data.data_dir, "--deadline-seconds", "0"]
        + ["--output-dir", str(tmp_path / "runs"), "--epochs", "50", "--", "--model-kwargs", TINY]
    )
    assert not (tmp_path / "runs" / "rir.tar").exists()
    assert "console.log" in _members(tmp_path / "runs" / "rir.partial.tar")


def test_projected_end_follows_the_recent_epochs(tmp_path):
    script = load_script()
    assert script.projected_end(str(tmp_path), 10, now=100.0) is None
    (tmp_path / "log.csv").write_text("epoch,epoch_seconds\n0,50\n1,10\n2,12\n")
    # Three of ten epochs done; the first (compilation) is left out: 7 more at 11 s.
    assert script.projected_end(str(tmp_path), 10, now=100.0) == pytest.approx(177.0)


def test_parallel_must_be_positive(tmp_path):
    with pytest.raises(SystemExit):
        load_script().parse_args(["--models", "rir", "--data-dir", ".", "--parallel", "0"])
