#!/usr/bin/env bash
# Runs the whole test suite once per Keras backend; fails if any backend fails.
# Usage: bash tests/run_backends.sh [pytest args...]
# Tests run in parallel over the CPUs (pytest-xdist); pass `-n 0` to run them in one process.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=$backend ==="
  started=$(date +%s)
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider -n auto --durations=15 "$@" || failed+=("$backend")
  echo "=== $backend: $(( $(date +%s) - started )) s ==="
done
if (( ${#failed[@]} )); then
  echo "FAILED on: ${failed[*]}"
  exit 1
fi
echo "all backends passed"
