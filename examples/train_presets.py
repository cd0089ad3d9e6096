"""Trains several models with the paper's recipe at once, one process each, before a deadline.

The trained-presets campaign on one machine: small networks leave a GPU mostly idle, so
several share it (`--parallel`); on a CPU use `--parallel 1`. Each model runs
`python -m keras_rir train` in its own process, writing `<output-dir>/<model>/`. When a run
ends, its `results.json`, `log.csv`, `curves.png`, `model.keras` and console log are packed
into `<pack-dir>/<model>.tar`. With `--deadline-seconds`, the campaign watches each run's
epoch times: while a run is projected to end after the deadline, the last-listed run still
going is stopped (so the first-listed models get the machine); at the deadline every run
still going is stopped and packed with its resumable backup as `<model>.partial.tar`, so
that the same command, elsewhere, continues it after unpacking.

Usage (from the repository root, with `PYTHONPATH=.` or after `pip install -e .`):

    KERAS_BACKEND=jax python examples/train_presets.py --models rir32 resnet32 \\
        --data-dir /path/to/cifar10 --parallel 2 --deadline-seconds 3000 --epochs 82

Arguments after `--` go to every `keras-rir train` run.
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tarfile
import time

RUN_FILES = ("results.json", "log.csv", "curves.png", "model.keras", "console.log")
TRAIN_COMMAND = [sys.executable, "-m", "keras_rir", "train"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--models", nargs="+", required=True, help="in order of priority")
    parser.add_argument("--data-dir", required=True, help="local CIFAR-10 copy (binary layout)")
    parser.add_argument("--output-dir", default="runs/presets")
    parser.add_argument("--pack-dir", help="where the packed runs go (default: --output-dir)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--deadline-seconds", type=float, help="stop everything after this")
    parser.add_argument("--epochs", type=int, required=True, help="epochs of each run")
    args, train_args = parser.parse_known_args(argv)
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, got {args.parallel}")
    return args, [arg for arg in train_args if arg != "--"]


def epoch_seconds(run_dir):
    """Seconds of each finished epoch of a run, from its `log.csv`."""
    path = os.path.join(run_dir, "log.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as file:
        return [float(row["epoch_seconds"]) for row in csv.DictReader(file)]


def projected_end(run_dir, epochs, now):
    """When a run will end at the pace of its last epochs; None before two epochs."""
    seconds = epoch_seconds(run_dir)
    if len(seconds) < 2:
        return None
    return now + (epochs - len(seconds)) * statistics.median(seconds[1:][-5:])


def pack(run_dir, path, with_backup=False):
    """Packs a run's results (and its backup, to resume it elsewhere) into one tar."""
    with tarfile.open(path, "w") as archive:
        for name in RUN_FILES + (("backup",) if with_backup else ()):
            if os.path.exists(os.path.join(run_dir, name)):
                archive.add(os.path.join(run_dir, name), arcname=name)
    print(f"packed {path} ({os.path.getsize(path) / 2**20:.1f} MiB)", flush=True)


def main(argv=None):
    args, train_args = parse_args(argv)
    pack_dir = args.pack_dir or args.output_dir
    os.makedirs(pack_dir, exist_ok=True)
    start = time.monotonic()
    deadline = None if args.deadline_seconds is None else start + args.deadline_seconds
    waiting, running, last_stop = list(args.models), {}, float("-inf")
    while waiting or running:
        while waiting and len(running) < args.parallel:
            model = waiting.pop(0)
            run_dir = os.path.join(args.output_dir, model)
            os.makedirs(run_dir, exist_ok=True)
            command = [*TRAIN_COMMAND, "--model", model, "--verbose", "2"]
            command += ["--data-dir", args.data_dir, "--output-dir", run_dir]
            command += ["--epochs", str(args.epochs), *train_args]
            with open(os.path.join(run_dir, "console.log"), "a") as log:  # The child keeps it.
                running[model] = (subprocess.Popen(command, stdout=log, stderr=log), run_dir)
            print(f"{time.monotonic() - start:6.0f} s: started {model}", flush=True)
        time.sleep(5)
        now = time.monotonic()
        for model, (process, run_dir) in list(running.items()):
            if process.poll() is not None:
                del running[model]
                print(f"{now - start:6.0f} s: {model} exited {process.returncode}", flush=True)
                pack(run_dir, os.path.join(pack_dir, f"{model}.tar"))
        if deadline is None or not running:
            continue
        ends = [projected_end(run_dir, args.epochs, now) for _, run_dir in running.values()]
        late = any(end is not None and end > deadline for end in ends)
        # After a stop, the others' epoch times need a minute to show the freed machine.
        if now >= deadline or (late and len(running) > 1 and now - last_stop > 60):
            last_stop = now
            victims = list(running) if now >= deadline else [list(running)[-1]]
            for model in victims:
                process, run_dir = running.pop(model)
                process.terminate()
                process.wait()
                print(
                    f"{now - start:6.0f} s: stopped {model} ({len(epoch_seconds(run_dir))} "
                    f"epochs done)",
                    flush=True,
                )
                pack(run_dir, os.path.join(pack_dir, f"{model}.partial.tar"), with_backup=True)
            waiting.clear()


if __name__ == "__main__":
    main()
