"""Benchmarks of keras_rir: training throughput, overhead ratios, plain PyTorch reference.

Run from the repository root, e.g. `python -m benchmarks.run_all`; see BENCHMARKS.md.
"""
