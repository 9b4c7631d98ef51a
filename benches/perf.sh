#!/usr/bin/env bash
# Every measure of issue #21 next to its reference, in one run: backups against restic
# (benches/backup.sh, when the tree has it), daemon throughput (benches/runs.sh), a Lua map in
# ferry.pipe against the same pipe without it (benches/map.sh), SQLite -> zipped CSV against
# `sqlite3 -csv | zip -1` (benches/formats.sh), typed CSV parsing against the csv crate
# splitting alone (benches/rust_pipe.rs). Each script prints its full output, then this one
# prints their `summary:` lines together. Not a test: nothing here fails on a number.
#
# Usage: benches/perf.sh [ROWS [RUNS [N]]]
#   ROWS  rows of the map and export tables (default 1000000)
#   RUNS  runs of each map case, the median is shown (default 3)
#   N     trivial runs through the daemon (default 1000)
# Needs what the scripts it calls need (sqlite3, zip, gzip, python3; restic for backup.sh).
# FERRY_BIN and RUST_PIPE_BIN name prebuilt binaries of ferry and benches/rust_pipe.rs to use
# instead of building them.
set -euo pipefail
ROWS=${1:-1000000}
RUNS=${2:-3}
N=${3:-1000}
BENCHES=$(cd "$(dirname "$0")" && pwd)
. "$BENCHES/lib.sh" # builds the release binary once; the scripts below find it built
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

step() { # step NAME CMD...: runs CMD, shows and keeps its output
  echo
  echo "######## $1: $*"
  local name=$1
  shift
  "$@" 2>&1 | tee "$OUT/$name.txt"
}

if [ -f "$BENCHES/backup.sh" ]; then
  step backup bash "$BENCHES/backup.sh"
else
  echo "benches/backup.sh is not in this tree: the backup measures are skipped" | tee "$OUT/backup.txt"
fi
step runs bash "$BENCHES/runs.sh" "$N"
step map bash "$BENCHES/map.sh" "$ROWS" "$RUNS"
step formats bash "$BENCHES/formats.sh" "$ROWS" 0
if [ -n "${RUST_PIPE_BIN:-}" ]; then # a prebuilt benches/rust_pipe.rs, as FERRY_BIN for ferry
  step rust_pipe "$RUST_PIPE_BIN" "$ROWS"
else
  step rust_pipe sh -c "cd '$HERE' && CARGO_TARGET_DIR='$TARGET' cargo bench --quiet --bench rust_pipe -- $ROWS"
fi

echo
echo "######## issue #21, measured side by side ($(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown commit), load average $(cut -d' ' -f1-3 /proc/loadavg))"
for name in backup runs map formats rust_pipe; do
  if grep -q '^summary:' "$OUT/$name.txt"; then
    grep '^summary:' "$OUT/$name.txt" | sed 's/^summary: /- /'
  else
    echo "- $name: no summary line; its last lines:"
    tail -5 "$OUT/$name.txt" | sed 's/^/    /'
  fi
done
