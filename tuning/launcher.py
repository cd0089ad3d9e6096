"""Distributed search: KerasTuner's chief/worker mode, and a launcher for one machine.

The launcher of `search.py --workers N` (not part of the installed package;
`search.py` imports it as `launcher`, its folder being first on `sys.path`).

KerasTuner runs one oracle in a chief process, which serves trials over gRPC,
and any number of worker processes, which ask the chief for a trial, train it
and report back. Every process runs the same search command; three environment
variables give each its role:

- `KERASTUNER_TUNER_ID`: `"chief"` for the chief, a unique name (`"tuner0"`,
  `"tuner1"`, ...) for each worker;
- `KERASTUNER_ORACLE_IP`: address the chief listens on and the workers call;
- `KERASTUNER_ORACLE_PORT`: its port.

The project directory must be shared by every process (checkpoints are written
by the workers and read by the chief).

A worker that dies keeps its trial: the chief records it as running on that
worker's ID and hands the same trial back to the next process that asks with
that ID. `Launcher` therefore restarts a dead worker under its old ID, and the
trial is rerun; on several machines, restart the worker with the same
`KERASTUNER_TUNER_ID`. A chief that dies can be restarted with the same
command: it reloads the project and queues the trials that were running.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from keras_rir._validation import check_positive_int, invalid_value

__all__ = ["Launcher", "free_port", "is_worker", "launch", "tuner_env"]

CHIEF = "chief"


def tuner_env(tuner_id, host="127.0.0.1", port=8000):
    """The environment variables of one process of a distributed search.

    Args:
        tuner_id: `"chief"` or a worker name such as `"tuner0"`.
        host: address of the chief.
        port: port of the chief.

    Returns:
        A dict of `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`,
        `KERASTUNER_ORACLE_PORT`.

    Example:
    >>> env = {**os.environ, **launcher.tuner_env("tuner0", "10.0.0.1", 8000)}
    """
    return {
        "KERASTUNER_TUNER_ID": str(tuner_id),
        "KERASTUNER_ORACLE_IP": str(host),
        "KERASTUNER_ORACLE_PORT": str(port),
    }


def free_port(host="127.0.0.1"):
    """A TCP port that is free on `host` now.

    Example:
    >>> port = launcher.free_port()
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def is_worker():
    """Whether this process is a worker of a distributed search (not the chief).

    Example:
    >>> launcher.is_worker()
    False
    """
    return (
        "KERASTUNER_ORACLE_IP" in os.environ
        and os.environ.get("KERASTUNER_TUNER_ID", CHIEF) != CHIEF
    )


class Launcher:
    """Runs a search command as a chief and `num_workers` workers on one machine.

    The chief's output goes to this process's output; each worker's goes to
    `log_dir/<tuner_id>.log` and its progress lines (those holding ` trial `)
    are echoed here too; `log_dir/<tuner_id>.pid` holds each process's id.
    `wait` restarts a worker that dies (by a signal or an error) under the
    same tuner ID, at most `max_restarts` times each, so that the chief hands
    it back its unfinished trial.

    Args:
        command: the search command, a list of strings, run by every process.
        num_workers: number of worker processes.
        host: address the chief listens on; `"127.0.0.1"` keeps the search on
            this machine.
        port: port of the chief; None: a free one.
        max_restarts: restarts per worker.
        log_dir: folder of the workers' logs; None: they share this output.
        env: environment of the processes (default: this one's).

    Example:
    >>> search = launcher.Launcher(
    ...     [sys.executable, "tuning/search.py", "--epochs", "1"], num_workers=2)
    >>> search.start()
    >>> search.wait(timeout=3600)
    0
    """

    def __init__(
        self,
        command,
        num_workers,
        host="127.0.0.1",
        port=None,
        max_restarts=3,
        log_dir=None,
        env=None,
    ):
        self.command = [str(part) for part in command]
        self.num_workers = check_positive_int("num_workers", num_workers)
        self.host = host
        self.port = port or free_port(host)
        if max_restarts < 0:
            raise invalid_value("max_restarts", max_restarts, "an integer >= 0")
        self.max_restarts = int(max_restarts)
        self.log_dir = log_dir
        self.env = dict(os.environ if env is None else env)
        self.processes = {}
        self.restarts = {}
        self._threads = []

    @property
    def worker_ids(self):
        return [f"tuner{index}" for index in range(self.num_workers)]

    def _spawn(self, tuner_id):
        env = {**self.env, **tuner_env(tuner_id, self.host, self.port)}
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)
        if tuner_id == CHIEF or self.log_dir is None:
            process = subprocess.Popen(self.command, env=env)
        else:
            process = subprocess.Popen(
                self.command,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            path = os.path.join(self.log_dir, f"{tuner_id}.log")
            thread = threading.Thread(target=_relay, args=(process.stdout, path), daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.log_dir is not None:
            with open(os.path.join(self.log_dir, f"{tuner_id}.pid"), "w") as file:
                file.write(f"{process.pid}\n")
        self.processes[tuner_id] = process
        return process

    def start(self):
        """Starts the chief, then the workers; returns `self`."""
        self._spawn(CHIEF)
        for tuner_id in self.worker_ids:
            self.restarts[tuner_id] = 0
            self._spawn(tuner_id)
        return self

    def wait(self, timeout=None, poll_interval=0.2):
        """Supervises the processes until the chief exits.

        Restarts dead workers (see the class docstring). Stops every process
        if the chief fails, if a worker dies more than `max_restarts` times
        (its trial could not finish) or after `timeout` seconds.

        Returns:
            The chief's exit code: 0 when the search finished.

        Raises:
            TimeoutError: after `timeout` seconds, with every process stopped.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                code = self.processes[CHIEF].poll()
                if code is not None:
                    if code == 0:
                        self._join_workers(deadline)
                    return code
                for tuner_id in self.worker_ids:
                    code = self.processes[tuner_id].poll()
                    if code in (None, 0):
                        continue
                    if self.restarts[tuner_id] >= self.max_restarts:
                        print(
                            f"[launcher] {tuner_id} exited with {code} "
                            f"{self.restarts[tuner_id]} times; stopping the search",
                            flush=True,
                        )
                        return code
                    self.restarts[tuner_id] += 1
                    print(
                        f"[launcher] {tuner_id} exited with {code}; restarting it "
                        f"({self.restarts[tuner_id]}/{self.max_restarts})",
                        flush=True,
                    )
                    self._spawn(tuner_id)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"The search did not finish in {timeout} s.")
                time.sleep(poll_interval)
        finally:
            self.terminate()

    def _join_workers(self, deadline):
        for tuner_id in self.worker_ids:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.1)
            try:
                self.processes[tuner_id].wait(remaining)
            except subprocess.TimeoutExpired:
                break

    def terminate(self, grace=5.0):
        """Stops every process still running: SIGTERM, then SIGKILL after `grace` s."""
        running = [process for process in self.processes.values() if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace
        for process in running:
            try:
                process.wait(max(end - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for thread in self._threads:
            thread.join(1.0)


def _relay(stream, path):
    with open(path, "a") as log:
        for line in stream:
            log.write(line)
            log.flush()
            if " trial " in line:
                sys.stdout.write(line)
                sys.stdout.flush()


def launch(command, num_workers, timeout=None, **kwargs):
    """Runs `command` as a chief and `num_workers` workers; see `Launcher`.

    Returns:
        The chief's exit code.

    Example:
    >>> launcher.launch([sys.executable, "tuning/search.py"], num_workers=2)
    0
    """
    return Launcher(command, num_workers, **kwargs).start().wait(timeout=timeout)
