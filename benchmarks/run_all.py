"""Runs the benchmarks on every Keras backend, each in its own process, and prints one table.

Parts: `train_step` (one process per backend and network, so that the peak
memory is that network's), `overhead` and `torch_reference` (one process per
backend). Each process writes its JSON under `--out`; the driver merges them
into `--out/summary.json` and prints a table per part.

Usage (from the repository root):
    python -m benchmarks.run_all --out runs/benchmarks
    python -m benchmarks.run_all --parts overhead --backends jax -- --windows 8
"""

import argparse
import json
import os
import subprocess
import sys

from benchmarks import common
from keras_rir import reporting

BACKENDS = ("tensorflow", "jax", "torch")
PARTS = ("train_step", "overhead", "torch_reference")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--models", nargs="+", default=list(common.TABLE7))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 500])
    parser.add_argument("--out", default="runs/benchmarks")
    parser.add_argument(
        "extra",
        nargs="*",
        help="arguments passed to every script after `--` (e.g. -- --steps 2 --windows 3)",
    )
    return parser.parse_args(argv)


def run(module, backend, arguments, json_path):
    """Runs `python -m benchmarks.<module>` on `backend`; returns its JSON."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    command = [sys.executable, "-m", f"benchmarks.{module}", *arguments, "--json", json_path]
    print(f"$ KERAS_BACKEND={backend} {' '.join(command[1:])}", flush=True)
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    with open(json_path) as file:
        return json.load(file)


def train_step_table(runs):
    rows = [
        "| network | batch | backend | img/s (min-max) | first step s | GFLOP/s | "
        "% of peak | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for data in runs:
        peak = data["cpu_peak"]["gflops"]
        for r in data["results"]:
            rows.append(
                f"| {r['model']} | {r['batch_size']} | {r['backend']} | "
                f"{r['images_per_s']:.1f} ({r['images_per_s_min']:.1f}-"
                f"{r['images_per_s_max']:.1f}) | {r['first_step_s']:.1f} | "
                f"{r['achieved_gflops']:.1f} | {100 * r['achieved_gflops'] / peak:.1f} | "
                f"{r['peak_rss_mib']:.0f} |"
            )
    return "\n".join(rows)


def goal_status(result):
    """`yes`/`no` when the median's 95% interval is on one side of the goal, else unresolved."""
    if result["goal"] is None:
        return "-"
    if result["goal_resolved"]:
        return "yes" if result["meets_goal"] else "no"
    return f"unresolved (median {'meets' if result['meets_goal'] else 'misses'} it)"


def overhead_table(runs):
    rows = [
        "| pair | backend | windows | time ratio A/B | 95% interval | range | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for data in runs:
        for r in data["results"]:
            goal = "-" if r["goal"] is None else f"<= {r['goal']:.2f}"
            rows.append(
                f"| {r['pair']} | {r['backend']} | {data['arguments']['windows']} x "
                f"{r['steps_per_window']} | {r['ratio']:.3f} | "
                f"{r['ratio_ci_low']:.3f}-{r['ratio_ci_high']:.3f} | "
                f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f} | {goal} | {goal_status(r)} |"
            )
    return "\n".join(rows)


def torch_reference_table(runs):
    rows = [
        "| network | backend | keras_rir img/s | PyTorch img/s (contiguous / channels_last) | "
        "keras_rir / PyTorch | 95% interval | range |",
        "|---|---|---|---|---|---|---|",
    ]
    for data in runs:
        for r in data["results"]:
            rates = r["throughput"]
            torch_rates = " / ".join(
                f"{rates[label]['images_per_s']:.1f}"
                for label in ("torch_contiguous", "torch_channels_last")
                if label in rates
            )
            s = r["speedup"]
            rows.append(
                f"| {r['model']} | {r['backend']} | {rates['keras_rir']['images_per_s']:.1f} | "
                f"{torch_rates} | {s['ratio']:.2f} | "
                f"{s['ratio_ci_low']:.2f}-{s['ratio_ci_high']:.2f} | "
                f"{s['ratio_min']:.2f}-{s['ratio_max']:.2f} |"
            )
    return "\n".join(rows)


def main(argv=None):
    """Runs the chosen parts on the chosen backends; returns the merged results."""
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    summary = {part: [] for part in args.parts}
    for backend in args.backends:
        if "train_step" in args.parts:
            for name in args.models:
                arguments = ["--models", name, "--batch-sizes"]
                arguments += [str(size) for size in args.batch_sizes] + args.extra
                path = os.path.join(out, f"train_step_{backend}_{name}.json")
                summary["train_step"].append(run("train_step", backend, arguments, path))
        for part in ("overhead", "torch_reference"):
            if part in args.parts:
                path = os.path.join(out, f"{part}_{backend}.json")
                summary[part].append(run(part, backend, args.extra, path))
    tables = {
        "train_step": train_step_table,
        "overhead": overhead_table,
        "torch_reference": torch_reference_table,
    }
    for part, runs in summary.items():
        print(f"\n## {part}\n\n{tables[part](runs)}")
    reporting.write_results(summary, os.path.join(out, "summary.json"))
    return summary


if __name__ == "__main__":
    main()
