#!/usr/bin/env bash
# How long a run waits between being queued (API trigger) and running in a worker, with the
# daemon's warm worker pool and without it (a worker process started per run). Prints the
# median and 90th percentile of started_at - queued_at over N runs. Usage: benches/worker_start.sh [N]
set -euo pipefail
N=${1:-50}
. "$(dirname "$0")/lib.sh"
WORK=$(mktemp -d)
trap 'kill $DPID 2>/dev/null || true; rm -rf "$WORK"' EXIT
DPID=0
measure() { # measure WARM
  rm -rf "$WORK/p" && mkdir -p "$WORK/p/scripts" && cd "$WORK/p"
  printf '[daemon]\nwarm_workers = %s\n' "$1" > ferry.toml
  echo 'return { overlap = "queue", run = function(ctx) return 1 end }' > scripts/quick.lua
  "$FERRY" serve --listen 127.0.0.1:0 > serve.log 2>&1 &
  DPID=$!
  until grep -q "API listening on" serve.log; do sleep 0.05; done
  local url
  url=$(grep -o "API listening on http://[0-9.:]*" serve.log | awk '{print $4}')
  sleep 1   # let the pool warm up
  python3 - "$url" "$N" <<'PY'
import json, sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
def call(method, path, body=None):
    req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
from datetime import datetime
def ts(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
waits = []
for _ in range(n):
    rid = call("POST", "/api/v1/jobs/quick/runs", {})["id"]
    while True:
        r = call("GET", f"/api/v1/runs/{rid}")
        if r["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.005)
    waits.append((ts(r["started_at"]) - ts(r["queued_at"])) * 1000)
    time.sleep(0.05)  # give the pool time to refill, as between real triggers
waits.sort()
print(" ".join(f"{w:.0f}" for w in waits), file=sys.stderr)
print(f"median {waits[len(waits)//2]:.1f} ms, p90 {waits[int(len(waits)*0.9)]:.1f} ms over {n} runs")
PY
  kill "$DPID"; wait "$DPID" 2>/dev/null || true
}
echo -n "warm_workers = 0 (a worker started per run): "; measure 0
echo -n "warm_workers = 2 (warm pool):                "; measure 2
