#!/usr/bin/env bash
# Soak: `ferry serve` on the shipped scripts/ and plugins/ with the embedded defaults, left
# alone, then loaded, then left alone again. Samples the daemon's CPU time and RSS (and those of
# its warm workers) and prints, per phase, CPU-seconds per minute and RSS at start, end and peak.
# An idle daemon must stay under 1 CPU-second per minute with a flat RSS; after the load its
# RSS must come back to a plateau, not keep growing.
#
# Usage: benches/soak.sh [IDLE_SECONDS [LOAD_RUNS [LOAD_FILES]]]   (defaults: 600 500 200)
# The reference is the same daemon measured against itself over time (a leak or a spin shows as
# a slope); there is no other tool to run side by side.
set -euo pipefail
IDLE=${1:-600}
RUNS=${2:-500}
FILES=${3:-200}
. "$(dirname "$0")/lib.sh"
WORK=$(mktemp -d)
DPID=0
trap 'kill $DPID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cp -r "$HERE/scripts" "$HERE/plugins" "$WORK/"
cd "$WORK"
"$FERRY" serve --listen 127.0.0.1:0 > serve.log 2>&1 &
DPID=$!
until grep -q "API listening on" serve.log; do sleep 0.1; done
URL=$(grep -o "API listening on http://[0-9.:]*" serve.log | awk '{print $4}')
TICK=$(getconf CLK_TCK)

# cpu_ticks PID...: utime + stime of the processes, in clock ticks.
cpu_ticks() {
  local sum=0 p
  for p in "$@"; do
    # Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    # A worker may exit between listing and reading: skip it.
    local rest
    rest=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    set -- $rest
    [ $# -ge 13 ] || continue
    sum=$((sum + ${12} + ${13}))
  done
  echo "$sum"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
family() { echo "$DPID $(pgrep -P "$DPID" | tr '\n' ' ')"; }

# phase NAME SECONDS: samples every 10 s (at most), prints the phase's figures.
phase() {
  local name=$1 secs=$2 step=10
  [ "$secs" -lt "$step" ] && step=$secs
  local c0 r0 rmax t=0 c1 r
  c0=$(cpu_ticks $(family)); r0=$(rss_kib "$DPID"); rmax=$r0
  local samples="$r0"
  while [ "$t" -lt "$secs" ]; do
    sleep "$step"; t=$((t + step))
    r=$(rss_kib "$DPID"); samples="$samples $r"
    [ "$r" -gt "$rmax" ] && rmax=$r
  done
  c1=$(cpu_ticks $(family))
  python3 - "$name" "$secs" "$c0" "$c1" "$TICK" "$r0" "$r" "$rmax" "$samples" <<'PY'
import sys
name, secs, c0, c1, tick, r0, r1, rmax = sys.argv[1], *map(float, sys.argv[2:9])
samples = [float(x) for x in sys.argv[9].split()]
cpu = (c1 - c0) / tick
# Least-squares slope of RSS over the second half of the phase, in KiB per minute.
half = samples[len(samples) // 2:]
n = len(half)
if n >= 2:
    xs = [i * 10 / 60 for i in range(n)]
    mx, my = sum(xs) / n, sum(half) / n
    den = sum((x - mx) ** 2 for x in xs) or 1
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, half)) / den
else:
    slope = 0.0
print(f"{name:<12} {secs:>5.0f} s  cpu {cpu:6.2f} s ({cpu / secs * 60:5.2f} cpu-s/min)  "
      f"rss start {r0 / 1024:6.1f} MiB  end {r1 / 1024:6.1f} MiB  peak {rmax / 1024:6.1f} MiB  "
      f"slope (2nd half) {slope:+7.1f} KiB/min")
PY
}

echo "ferry serve on the shipped examples (pid $DPID, $URL), $(nproc) cores"
phase "idle" "$IDLE"
echo "load: $RUNS API runs of hello, $FILES files dropped into inbox/notes"
python3 - "$URL" "$RUNS" <<'PY'
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    req = urllib.request.Request(url + "/api/v1/jobs/hello/runs", method="POST",
                                 data=b'{"params": {"count": 100}}', headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
PY
mkdir -p inbox/notes
for i in $(seq 1 "$FILES"); do echo "note $i" > "inbox/notes/.n$i.tmp"; mv "inbox/notes/.n$i.tmp" "inbox/notes/n$i.txt"; done
phase "loaded" 60
phase "idle again" "$IDLE"
echo "runs: $(python3 -c "
import json, urllib.request
v = json.load(urllib.request.urlopen('$URL/api/v1/runs?page_size=1'))
print(v['total'])") recorded; archived files: $(ls inbox/notes/.ferry/archive | wc -l)"
