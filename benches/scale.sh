#!/usr/bin/env bash
# Throughput of several daemons on one PostgreSQL history (issue #18): N trivial runs triggered
# over the HTTP API, spread round-robin over P `ferry serve` processes (each standing for a host
# of its own with FERRY_HOST, all on this machine) that share one database, for P = 1, 2 and 4;
# printed as runs/s from the first trigger to the last run's end, next to the same N runs on
# one daemon with the default SQLite history (the reference, run side by side in this script).
# Starts its own PostgreSQL cluster (Debian's postgresql; initdb as the postgres user when root).
#
# Usage: benches/scale.sh [N [CONCURRENCY]]      (default N = 1000, concurrency 4 per daemon)
set -euo pipefail
N=${1:-1000}
CONC=${2:-4}
. "$(dirname "$0")/lib.sh"
PGBIN=${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}
WORK=$(mktemp -d)
PIDS=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U bench -A trust --no-sync >/dev/null
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-p $PGPORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null

# Triggers N runs round-robin over the daemons whose URLs follow, waits for the last to end and
# prints runs/s.
drive() {
  python3 - "$N" "$@" <<'PY'
import http.client, json, sys, time
n, urls = int(sys.argv[1]), sys.argv[2:]
conns = []
for u in urls:
    host, port = u.split("//")[1].split(":")
    conns.append(http.client.HTTPConnection(host, int(port)))
def call(c, method, path, body=None):
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return json.loads(r.read())
t0 = time.monotonic()
for i in range(n):
    call(conns[i % len(conns)], "POST", "/api/v1/jobs/trivial/runs", {})
while call(conns[0], "GET", "/api/v1/runs?job=trivial&state=queued,running&page_size=1")["total"]:
    time.sleep(0.02)
total = time.monotonic() - t0
done = call(conns[0], "GET", "/api/v1/runs?job=trivial&state=succeeded&page_size=1")["total"]
print(f"{n / total:.0f} {done}")
PY
}

# Starts P daemons in project folder $1; their URLs go to URLS. (Not in a command substitution:
# the daemons would hold its output open.)
start() {
  local dir=$1 p=$2
  URLS=()
  for i in $(seq 1 "$p"); do
    (cd "$dir" && FERRY_HOST="bench$i" exec "$FERRY" serve --listen 127.0.0.1:0) > "$dir/serve$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in $(seq 1 "$p"); do
    until grep -q "API listening on" "$dir/serve$i.log"; do sleep 0.05; done
    URLS+=("$(grep -o "API listening on http://[0-9.:]*" "$dir/serve$i.log" | awk '{print $4}')")
  done
  sleep 1 # the warm pools fill
}

stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}

project() {
  local dir=$1
  mkdir -p "$dir/scripts"
  echo 'return { overlap = "allow", run = function(ctx) return ctx.run_id end }' > "$dir/scripts/trivial.lua"
  printf '[daemon]\nconcurrency = %s\n%s\n' "$CONC" "${2:-}" > "$dir/ferry.toml"
}

project "$WORK/sqlite"
start "$WORK/sqlite" 1
read -r REF REF_DONE <<< "$(drive "${URLS[@]}")"
stop_all
echo "$N trivial runs, concurrency $CONC per daemon, $(nproc) cores"
printf '%-28s %8s %10s %10s\n' "history" "runs/s" "vs SQLite" "succeeded"
printf '%-28s %8s %10s %10s\n' "SQLite, 1 daemon" "$REF" "1.00x" "$REF_DONE"
for P in 1 2 4; do
  as_pg "$PGBIN/psql" -h "$WORK" -p "$PGPORT" -U bench -d postgres -qc "CREATE DATABASE scale$P" >/dev/null
  project "$WORK/pg$P" "$(printf '[history]\nurl = "postgres://bench@127.0.0.1:%s/scale%s"' "$PGPORT" "$P")"
  start "$WORK/pg$P" "$P"
  read -r RATE DONE <<< "$(drive "${URLS[@]}")"
  stop_all
  printf '%-28s %8s %10s %10s\n' "PostgreSQL, $P daemon(s)" "$RATE" \
    "$(python3 -c "print(f'{$RATE / $REF:.2f}x')")" "$DONE"
done
