#!/usr/bin/env bash
# Throughput of the daemon: N trivial runs triggered over the HTTP API as fast as one client can
# (a keep-alive connection), each in a fresh sandboxed Lua VM in a worker process, recorded in
# the history. Prints runs per second from the first trigger to the last run's end, and the
# median time a run waited in the queue. With the defaults (no ferry.toml) unless CONFIG is given.
# The reference is the same client hitting /api/v1/health (what the HTTP round trip alone costs).
#
# Usage: benches/runs.sh [N [CONFIG_TOML_TEXT]]      (default N = 1000)
set -euo pipefail
N=${1:-1000}
CONFIG=${2:-}
. "$(dirname "$0")/lib.sh"
WORK=$(mktemp -d)
DPID=0
trap 'kill $DPID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/scripts" && cd "$WORK"
[ -n "$CONFIG" ] && printf '%s\n' "$CONFIG" > ferry.toml
echo 'return { overlap = "allow", run = function(ctx) return ctx.run_id end }' > scripts/trivial.lua
"$FERRY" serve --listen 127.0.0.1:0 > serve.log 2>&1 &
DPID=$!
until grep -q "API listening on" serve.log; do sleep 0.05; done
URL=$(grep -o "API listening on http://[0-9.:]*" serve.log | awk '{print $4}')
sleep 1 # the warm pool fills
python3 - "$URL" "$N" <<'PY'
import http.client, json, sys, time
from datetime import datetime
url, n = sys.argv[1], int(sys.argv[2])
host, port = url.split("//")[1].split(":")
conn = http.client.HTTPConnection(host, int(port))
def call(method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    return json.loads(r.read())
t0 = time.monotonic()
for _ in range(n):
    call("GET", "/api/v1/health")
health = (time.monotonic() - t0) / n
t0 = time.monotonic()
ids = [call("POST", "/api/v1/jobs/trivial/runs", {})["id"] for _ in range(n)]
submitted = time.monotonic() - t0
while True:
    v = call("GET", "/api/v1/runs?job=trivial&state=queued,running&page_size=1")
    if v["total"] == 0:
        break
    time.sleep(0.02)
total = time.monotonic() - t0
def ts(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
waits, states = [], {}
page = 1
while True:
    v = call("GET", f"/api/v1/runs?job=trivial&page={page}&page_size=500")
    for r in v["items"]:
        states[r["state"]] = states.get(r["state"], 0) + 1
        if r["started_at"]:
            waits.append((ts(r["started_at"]) - ts(r["queued_at"])) * 1000)
    if page * 500 >= v["total"]:
        break
    page += 1
waits.sort()
print(f"{n} runs in {total:.2f} s: {n / total:.0f} runs/s end to end "
      f"(triggering alone took {submitted:.2f} s; the health round trip is {health * 1000:.2f} ms)")
print(f"summary: daemon: {n / total:.0f} trivial runs/s end to end over the API (goal >= 500); "
      f"queue wait median {waits[len(waits) // 2]:.0f} ms")
print(f"queue wait: median {waits[len(waits) // 2]:.0f} ms, p90 {waits[int(len(waits) * 0.9)]:.0f} ms; states: {states}")
PY
