"""Searches in subprocesses: resuming after SIGKILL, and chief/worker searches on loopback.

Each search runs `tuning/search.py` on a small generated CIFAR-10 copy with a tiny
network, a 2 x 2 grid (learning rate x shortcut) and one epoch per trial.
"""

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from tests import holding
from tests.cifar_archives import write_cifar10
from tests.example_scripts import REPO, TUNING

SEARCH = os.path.join(TUNING, "search.py")
DISTRIBUTED = os.path.join(TUNING, "distributed.sh")
TINY = {"num_blocks": 3, "layers_per_block": 1, "stage_filters": [4, 8, 8]}
TIMEOUT = 900

# KerasTuner's oracle files and the chief/worker processes do not depend on the backend;
# the search on each backend is tested in-process in test_tuning.py.
pytestmark = pytest.mark.one_backend


def environment():
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": REPO + (os.pathsep + path if path else "")}


def search_command(data_dir, directory, *extra):
    return [
        sys.executable,
        SEARCH,
        "--model=rir",
        f"--model-kwargs={json.dumps(TINY)}",
        f"--data-dir={data_dir}",
        "--validation-examples=8",
        "--epochs=1",
        "--batch-size=16",
        "--learning-rates",
        "0.1",
        "0.01",
        "--l2=1e-4",
        "--initializers=he",
        "--optimizers=sgd",
        "--shortcuts",
        "projection",
        "identity",
        f"--directory={directory}",
        "--project-name=p",
        "--jit-compile=false",
        "--no-augment",
        *extra,
    ]


@pytest.fixture
def data_dir(tmp_path):
    return write_cifar10(tmp_path, num_train=40, num_test=10).data_dir


def read_trials(project):
    with open(os.path.join(project, "trials.csv")) as file:
        return list(csv.DictReader(file))


def assert_whole_grid_once(project):
    rows = read_trials(project)
    assert len(rows) == 4
    assert [row["status"] for row in rows] == ["COMPLETED"] * 4
    points = {(float(row["learning_rate"]), row["shortcut"]) for row in rows}
    assert points == {(lr, s) for lr in (0.1, 0.01) for s in ("projection", "identity")}
    with open(os.path.join(project, "best.json")) as file:
        best = json.load(file)
    assert best["num_trials"] == 4 and best["num_completed"] == 4
    assert 0.0 <= best["test_accuracy"] <= 1.0


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


@pytest.mark.slow
def test_search_resumes_after_sigkill(tmp_path, data_dir):
    """Killed while trial 0001 runs (held there by `tests.holding`), run again: 0001 reruns."""
    command = search_command(data_dir, tmp_path / "out")
    project = tmp_path / "out" / "p"
    marker = tmp_path / "held"
    env = holding.environment(tmp_path / "hook", holding.trial_begin("0001"), marker, environment())
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            assert holding.wait_for_marker(marker, [process]) == "0001"
            process.send_signal(signal.SIGKILL)
            assert process.wait() == -signal.SIGKILL
        finally:
            stop(process)
    first = (tmp_path / "first.log").read_text()
    assert re.findall(r"trial (\d+) started", first) == ["0000", "0001"], first[-3000:]

    def status(trial_id):
        with open(project / f"trial_{trial_id}" / "trial.json") as file:
            return json.load(file)["status"]

    # Killed mid-trial: the first trial finished, the second did not.
    assert status("0000") == "COMPLETED"
    assert status("0001") == "RUNNING"
    assert not (project / "trials.csv").exists()

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # The finished trial is not repeated; the interrupted one runs again, then the rest.
    assert re.findall(r"trial (\d+) started", resumed.stdout) == ["0001", "0002", "0003"]
    assert_whole_grid_once(project)


def completed_and_started(log_dir):
    text = ""
    for name in sorted(os.listdir(log_dir)):
        with open(os.path.join(log_dir, name)) as file:
            text += file.read()
    return re.findall(r"trial (\d+) COMPLETED", text), re.findall(r"trial (\d+) started", text)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def distributed(num_workers, command, log_dir, env, **popen):
    """`bash tuning/distributed.sh` in its own process group, its logs in `log_dir`."""
    env = {**env, "LOG_DIR": str(log_dir), "KERASTUNER_ORACLE_PORT": str(free_port())}
    return subprocess.Popen(
        ["bash", DISTRIBUTED, str(num_workers), *map(str, command)],
        env=env,
        text=True,
        start_new_session=True,
        **popen,
    )


@pytest.mark.slow
def test_distributed_search_runs_every_trial_once_despite_a_killed_worker(tmp_path, data_dir):
    """`distributed.sh 2 search.py`: a chief and two workers on loopback; tuner0 is killed while
    it runs its first trial (held there by `tests.holding`), and restarted under its ID."""
    project = tmp_path / "out" / "p"
    log_dir = tmp_path / "logs"
    marker = tmp_path / "held"
    env = holding.environment(
        tmp_path / "hook", holding.trial_begin(None, "tuner0"), marker, environment()
    )
    with open(tmp_path / "chief.log", "w") as log:
        process = distributed(
            2, search_command(data_dir, tmp_path / "out"), log_dir, env, stdout=log, stderr=log
        )
        try:
            killed = holding.wait_for_marker(marker, [process])
            os.kill(int((log_dir / "tuner0.pid").read_text()), signal.SIGKILL)
            process.wait(TIMEOUT)
        finally:
            stop(process)
    output = (tmp_path / "chief.log").read_text()
    assert process.returncode == 0, output[-5000:]
    assert "[distributed] tuner0 exited with 137; restarting it (1/3)" in output

    completed, started = completed_and_started(log_dir)
    # No trial lost, none run twice to the end.
    assert sorted(completed) == ["0000", "0001", "0002", "0003"]
    # The restarted tuner0 got the killed trial back (KerasTuner keeps it for its ID).
    tuner0 = re.findall(r"trial (\d+) started", (log_dir / "tuner0.log").read_text())
    assert tuner0[:2] == [killed, killed]
    assert sorted(set(started)) == ["0000", "0001", "0002", "0003"]
    assert started.count(killed) == 2
    assert all(started.count(trial) == 1 for trial in set(started) - {killed})
    # Both workers ran trials.
    assert "[tuner0] trial" in (log_dir / "tuner0.log").read_text()
    assert "[tuner1] trial" in (log_dir / "tuner1.log").read_text()
    assert_whole_grid_once(project)


WORKER_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    folder = sys.argv[1]
    tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    address = os.environ["KERASTUNER_ORACLE_IP"] + ":" + os.environ["KERASTUNER_ORACLE_PORT"]
    with open(os.path.join(folder, tuner_id + ".env"), "a") as file:
        file.write(address + "\\n")
    if tuner_id == "chief":
        while len([n for n in os.listdir(folder) if n.endswith(".done")]) < 2:
            time.sleep(0.05)
        sys.exit(0)
    marker = os.path.join(folder, tuner_id + ".killed")
    if tuner_id == "tuner1" and not os.path.exists(marker):
        open(marker, "w").close()
        print("tuner1 trial 0001 started", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    open(os.path.join(folder, tuner_id + ".done"), "w").close()
    """
)


def test_distributed_restarts_a_dead_worker_under_its_id(tmp_path):
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "10.0.0.1"}
    process = distributed(
        2,
        [sys.executable, "-c", WORKER_SCRIPT, tmp_path],
        tmp_path / "logs",
        env,
        stderr=subprocess.PIPE,
    )
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    port = re.search(r"on 10\.0\.0\.1:(\d+)", errors).group(1)
    assert (tmp_path / "chief.env").read_text() == f"10.0.0.1:{port}\n"
    assert (tmp_path / "tuner0.env").read_text() == f"10.0.0.1:{port}\n"
    # Started twice under the same ID: killed once, then finished.
    assert (tmp_path / "tuner1.env").read_text() == f"10.0.0.1:{port}\n" * 2
    assert "tuner1 exited with 137; restarting it (1/3)" in errors
    assert "tuner0 exited" not in errors
    assert "trial 0001 started" in (tmp_path / "logs" / "tuner1.log").read_text()


def test_distributed_stops_the_search_when_a_worker_keeps_dying(tmp_path):
    script = textwrap.dedent(
        """
        import os, signal, time
        if os.environ["KERASTUNER_TUNER_ID"] == "chief":
            time.sleep(60)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "MAX_RESTARTS": "2"}
    process = distributed(
        1, [sys.executable, "-c", script], tmp_path / "logs", env, stderr=subprocess.PIPE
    )
    # The chief would sleep for 60 s: the script stops it when it gives up on the worker.
    _, errors = process.communicate(timeout=50)
    assert process.returncode == 128 + signal.SIGTERM, errors
    assert errors.count("tuner0 exited with 137; restarting it") == 2
    assert "tuner0 exited with 137 after 2 restarts; stopping the search" in errors


@pytest.mark.parametrize("argv", [[], ["2"], ["0", "true"], ["two", "true"]])
def test_distributed_rejects_bad_arguments(argv):
    result = subprocess.run(["bash", DISTRIBUTED, *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: bash tuning/distributed.sh NUM_WORKERS COMMAND" in result.stderr
