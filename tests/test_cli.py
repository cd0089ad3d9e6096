"""Tests of the `keras-rir` command: flags from the recipe, missing data, kill and resume
without TensorFlow."""

import csv
import json
import os
import signal
import subprocess
import sys

import keras
import pytest

from keras_rir import cli, training
from tests import holding
from tests.cifar_archives import write_cifar10

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = [sys.executable, "-m", "keras_rir", "train"]
TINY_RIR = '{"num_blocks": 3, "layers_per_block": 1, "stage_filters": [4, 8, 8]}'


def parse(*flags):
    return cli._parse(["train", *flags])[1]


def test_defaults_are_the_papers_recipe():
    args = parse()
    assert args.recipe == training.PAPER_RECIPE
    assert args.model == "rir32" and args.dataset == "cifar10" and args.seed == 0
    assert not args.distribute and not args.mixed_precision


def test_every_recipe_field_has_a_flag():
    flags = {
        "--epochs": "10",
        "--batch-size": "64",
        "--learning-rate": "0.1",
        "--optimizer": "nesterov",
        "--momentum": "0.8",
        "--l2": "0.0005",
        "--decay-epochs": ["2", "6"],
        "--decay-factor": "0.2",
        "--kernel-initializer": "orthogonal",
    }
    argv = [
        item
        for flag, value in flags.items()
        for item in [flag, *list([value] if isinstance(value, str) else value)]
    ]
    assert parse(*argv).recipe == training.Recipe(
        10, 64, 0.1, "nesterov", 0.8, 5e-4, (2, 6), 0.2, "orthogonal"
    )


def test_budget_quick_and_flags_change_only_their_field():
    assert parse("--budget", "quick").recipe == training.QUICK_RECIPE
    recipe = parse("--budget", "quick", "--epochs", "10").recipe
    assert recipe == training.QUICK_RECIPE.replace(epochs=10)
    assert recipe.decay_epochs == (6, 8)  # the quick recipe's (3, 4) of 5, scaled
    assert recipe.batch_size == training.QUICK_RECIPE.batch_size


@pytest.mark.parametrize(
    "flags, argument",
    [(("--epochs", "0"), "epochs"), (("--decay-epochs", "90"), "decay_epochs")],
)
def test_bad_recipe_flag_is_one_clear_message(capsys, flags, argument):
    with pytest.raises(SystemExit) as exit_info:
        parse(*flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"`{argument}`" in error and "Traceback" not in error


def test_missing_data_dir_is_one_clear_message(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--data-dir", missing, "--output-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "nowhere" in error and "--data-dir" in error and "Traceback" not in error
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch only")
def test_distribute_on_torch_is_one_clear_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--distribute")
    assert exit_info.value.code == 2
    assert "torch backend has no built-in data-parallel" in capsys.readouterr().err


def test_missing_dataset_process_exits_2_without_traceback(tmp_path):
    process = subprocess.run(
        [*COMMAND, "--data-dir", str(tmp_path / "nowhere")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert process.returncode == 2
    assert "--data-dir" in process.stderr and "Traceback" not in process.stderr


@pytest.mark.slow
def test_killed_run_resumes_after_the_last_finished_epoch(tmp_path):
    """SIGKILL after epoch 2 of 4 is backed up, run again: it resumes at epoch 3 and every
    epoch is logged once.

    The first run holds (`tests.holding`) after the backup of epoch 2, so the kill lands
    there and nowhere else. On JAX and torch the runs also have TensorFlow hidden (`import
    tensorflow` fails), the setting of GPU machines without TensorFlow: the local data path,
    training, saving and reporting must not need it.
    """
    generated = write_cifar10(str(tmp_path), num_train=400, num_test=40, archive=True)
    output_dir = tmp_path / "run"
    python_path = [REPO]
    if keras.backend.backend() != "tensorflow":
        hidden = tmp_path / "hidden" / "tensorflow"
        hidden.mkdir(parents=True)
        (hidden / "__init__.py").write_text("raise ImportError('TensorFlow is hidden')\n")
        python_path.insert(0, str(hidden.parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path), "CUDA_VISIBLE_DEVICES": ""}
    marker = tmp_path / "held"
    held_env = holding.environment(tmp_path / "hook", holding.epoch_end(1), marker, env)
    command = [
        *COMMAND,
        *("--model", "rir", "--model-kwargs", TINY_RIR),
        *("--data-dir", generated.data_dir, "--output-dir", str(output_dir)),
        *("--epochs", "4", "--batch-size", "20", "--verbose", "2"),
    ]
    metadata_path = output_dir / "backup" / "training_metadata.json"
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=held_env, stdout=log, stderr=log)
        try:
            assert holding.wait_for_marker(marker, [process]) == "1"
            process.send_signal(signal.SIGKILL)
            process.wait()
        finally:
            process.kill()
            process.wait()
    first_log = (tmp_path / "first.log").read_text()
    assert process.returncode == -signal.SIGKILL, first_log[-3000:]
    with open(metadata_path) as file:
        backed_up = json.load(file)["epoch"]
    assert backed_up == 2, first_log[-3000:]  # epochs 0 and 1 done: resume at epoch 2
    with open(output_dir / "log.csv") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["0", "1"]

    second = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Epoch 3/4" in second.stdout and "[keras-rir] epoch 3/4 done" in second.stdout
    assert "Epoch 1/4" not in second.stdout and "Epoch 2/4" not in second.stdout
    with open(output_dir / "results.json") as file:
        results = json.load(file)
    assert results["resumed_from_epoch"] == backed_up
    assert results["epochs"] == 4 and results["history"]["epoch"] == [0, 1, 2, 3]
    with open(output_dir / "log.csv") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["0", "1", "2", "3"]
    assert not (output_dir / "backup").exists()
    assert {"model.keras", "best.keras", "curves.png"} <= set(os.listdir(output_dir))
