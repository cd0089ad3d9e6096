#!/usr/bin/env bash
# A distributed search on one machine with KerasTuner's own chief/worker mode: runs COMMAND as
# the chief (KERASTUNER_TUNER_ID=chief) and as NUM_WORKERS workers (tuner0, tuner1, ...), all
# pointed at the chief by KERASTUNER_ORACLE_IP/KERASTUNER_ORACLE_PORT. A worker that dies keeps
# its trial on the chief, so it is restarted under the same ID (at most MAX_RESTARTS times; then
# the search stops) and gets that trial back. Exits with the chief's exit status.
#
#   bash tuning/distributed.sh NUM_WORKERS COMMAND...
#   bash tuning/distributed.sh 2 python tuning/search.py --model rir32 --directory runs/search
#
# Environment: KERASTUNER_ORACLE_IP (default 127.0.0.1), KERASTUNER_ORACLE_PORT (8000),
# MAX_RESTARTS (3), LOG_DIR (runs/search-logs): each worker's output goes to LOG_DIR/<id>.log
# and its process id to LOG_DIR/<id>.pid; the chief's output goes to this one.
# On several machines, run the same command on each with these variables set by hand: one
# chief, and workers with unique IDs; restart a dead worker with its old ID.
set -u
if [[ $# -lt 2 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash tuning/distributed.sh NUM_WORKERS COMMAND... (NUM_WORKERS >= 1)" >&2
  exit 2
fi
workers=$1
shift
export KERASTUNER_ORACLE_IP=${KERASTUNER_ORACLE_IP:-127.0.0.1}
export KERASTUNER_ORACLE_PORT=${KERASTUNER_ORACLE_PORT:-8000}
logs=${LOG_DIR:-runs/search-logs}
mkdir -p "$logs"
rm -f "$logs"/*.pid

run_worker() {
  local id=$1 restarts=0 code
  shift
  while true; do
    KERASTUNER_TUNER_ID=$id "$@" >>"$logs/$id.log" 2>&1 &
    echo $! >"$logs/$id.pid"
    wait $! && return 0
    code=$?
    # After the chief, a worker that cannot reach it is done, not dead.
    kill -0 "$chief" 2>/dev/null || return 0
    if ((restarts >= ${MAX_RESTARTS:-3})); then
      echo "[distributed] $id exited with $code after $restarts restarts; stopping the search" >&2
      kill "$chief"
      return "$code"
    fi
    restarts=$((restarts + 1))
    echo "[distributed] $id exited with $code; restarting it ($restarts/${MAX_RESTARTS:-3})" >&2
  done
}

stop_all() {
  # The restart loops first, then every process they started, then the chief.
  kill $(jobs -p) 2>/dev/null
  kill $(cat "$logs"/*.pid 2>/dev/null) "$chief" 2>/dev/null
}

KERASTUNER_TUNER_ID=chief "$@" &
chief=$!
trap stop_all EXIT
trap 'exit 143' TERM INT
echo "[distributed] chief (pid $chief) and $workers workers on" \
  "$KERASTUNER_ORACLE_IP:$KERASTUNER_ORACLE_PORT; worker logs in $logs" >&2
for ((index = 0; index < workers; index++)); do
  run_worker "tuner$index" "$@" &
done
wait "$chief"
code=$?
# After a finished search the workers end on their own; after a failed one they are stopped.
((code == 0)) && wait
exit "$code"
