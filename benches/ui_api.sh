#!/usr/bin/env bash
# The API calls behind the web UI's pages with a large history: fills a history with N runs
# (default 100 000; 5 jobs, 90 % succeeded, 8 % failed, 2 % cancelled, queued over the last 20
# days, 3 log lines and 1 artifact record each), starts `ferry serve` on it and times each call
# the pages make over one keep-alive connection: the runs list (first page, filtered by job, by
# state, by time, a deep page), a run's detail and its logs, the overview and the jobs list.
# Prints the median and 95th percentile per call, in milliseconds. The goal is <= 20 ms for the
# runs list and the run detail.
#
# The history is filled with SQL straight into the database `ferry serve` created (its schema),
# since submitting 100 000 runs through the daemon would take minutes and time the executor,
# not the reads.
#
# Usage: benches/ui_api.sh [N [CALLS]]      (default N = 100000, CALLS = 200 per endpoint)
set -euo pipefail
N=${1:-100000}
CALLS=${2:-200}
. "$(dirname "$0")/lib.sh"
WORK=$(mktemp -d)
DPID=0
trap 'kill $DPID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/scripts" && cd "$WORK"
printf '[retention]\ndays = 365\nruns_per_job = 100000000\n' > ferry.toml
for j in export_orders import_orders backup nightly_report sync_crm; do
  printf 'return { description = "bench job %s", schedule = "30 2 * * *", run = function(ctx) end }\n' "$j" > "scripts/$j.lua"
done
start() {
  "$FERRY" serve --listen 127.0.0.1:0 > serve.log 2>&1 &
  DPID=$!
  until grep -q "API listening on" serve.log; do sleep 0.05; done
  URL=$(grep -o "API listening on http://[0-9.:]*" serve.log | awk '{print $4}')
}
start
kill $DPID; wait $DPID 2>/dev/null || true
python3 - data/ferry.db "$N" <<'PY'
import json, random, sqlite3, sys, time
from datetime import datetime, timedelta, timezone
db, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
jobs = ["export_orders", "import_orders", "backup", "nightly_report", "sync_crm"]
con = sqlite3.connect(db)
now = datetime.now(timezone.utc)
span = timedelta(days=20).total_seconds()
fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
t0 = time.monotonic()
runs, logs, arts = [], [], []
for i in range(1, n + 1):
    q = now - timedelta(seconds=span * (n - i) / n)
    r = random.random()
    state = "succeeded" if r < 0.90 else "failed" if r < 0.98 else "cancelled"
    job = jobs[i % len(jobs)]
    s, f = q + timedelta(milliseconds=3), q + timedelta(milliseconds=250)
    err = ("run", "scripts/%s.lua:12: table orders does not exist" % job) if state == "failed" else (None, None)
    runs.append((i, job, "cron", json.dumps({"kind": "cron", "scheduled_at": fmt(q)}), json.dumps({"since": "2026-01-01"}),
                 state, fmt(q), fmt(s), fmt(f), err[0], err[1], json.dumps({"rows": i}) if state == "succeeded" else None, 10, 10))
    for k in range(3):
        logs.append((i, fmt(s), "info", f"batch {k} of run {i} written"))
    arts.append((i, "orders.csv.zip", "data/exports", f"orders-{i}.csv.zip", 1234, fmt(f), "ab" * 32, None))
con.executemany("INSERT INTO runs (id, job, trigger_kind, trigger, params, state, queued_at, started_at, finished_at, "
                "error_code, error_message, summary, progress_done, progress_total) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", runs)
con.executemany("INSERT INTO logs (run_id, at, level, message) VALUES (?,?,?,?)", logs)
con.executemany("INSERT INTO artifacts (run_id, name, store, path, size, created_at, sha256, copy) VALUES (?,?,?,?,?,?,?,?)", arts)
con.commit()
print(f"filled the history with {n} runs, {len(logs)} log lines, {len(arts)} artifacts in {time.monotonic() - t0:.1f} s")
PY
start
python3 - "$URL" "$N" "$CALLS" <<'PY'
import http.client, json, statistics, sys, time
from datetime import datetime, timedelta, timezone
url, n, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host, port = url.split("//")[1].split(":")
conn = http.client.HTTPConnection(host, int(port))
def get(path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status, body[:300])
    return body
since = (datetime.now(timezone.utc) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
mid = n // 2
cases = [
    ("runs list, page 1", "/api/v1/runs?page=1&page_size=25"),
    ("runs list, job filter", "/api/v1/runs?job=backup&page=1&page_size=25"),
    ("runs list, state filter", "/api/v1/runs?state=failed&page=1&page_size=25"),
    ("runs list, last 2 days", f"/api/v1/runs?since={since}&page=1&page_size=25"),
    ("runs list, page 2000", "/api/v1/runs?page=2000&page_size=25"),
    ("run detail", f"/api/v1/runs/{mid}"),
    ("run logs", f"/api/v1/runs/{mid}/logs"),
    ("overview", "/api/v1/overview?limit=10"),
    ("jobs list", "/api/v1/jobs"),
]
print(f"{n} runs in the history; {calls} calls each; milliseconds per call (client side, keep-alive)")
print(f"{'call':28} {'median':>8} {'p95':>8}")
for name, path in cases:
    for _ in range(5):
        get(path)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        get(path)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print(f"{name:28} {statistics.median(times):8.2f} {times[int(len(times) * 0.95) - 1]:8.2f}")
PY
