#!/usr/bin/env bash
# Runs the whole test suite once per Keras backend; fails if any backend fails.
# Usage: bash tests/run_backends.sh [pytest args...]
# Tests run in parallel over the CPUs (pytest-xdist); pass `-n 0` to run them in one process.
# Tests marked `one_backend` (the same on every backend: subprocess orchestration, or a test
# that runs every backend itself) run under the first backend only; a later `-m` overrides it.
# XLA (JAX, and TensorFlow's jit_compile) compiles at its lowest backend optimization level here:
# the tests' tiny networks spend most of their time compiling (building one small explicit
# network on JAX: 22 s at the default level, 4 s at this one), not running.
set -uo pipefail
cd "$(dirname "$0")/.."
export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
failed=()
select=()
for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=$backend ==="
  started=$(date +%s)
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider -n auto --durations=15 \
    "${select[@]}" "$@" || failed+=("$backend")
  echo "=== $backend: $(( $(date +%s) - started )) s ==="
  select=(-m "not one_backend")
done
if (( ${#failed[@]} )); then
  echo "FAILED on: ${failed[*]}"
  exit 1
fi
echo "all backends passed"
