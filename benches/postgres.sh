#!/usr/bin/env bash
# PostgreSQL export and import throughput of ferry next to psql, on the same table in the same run.
#
#   export:  psql -c "\copy (SELECT ...) to stdout csv header" > file    (the reference)
#            ferry: ferry.pipe(db:query(...), ferry.csv.writer(...))      (COPY TO STDOUT)
#            ferry: the same query into NDJSON                            (the typed cursor path)
#   import:  psql -c "\copy t2 from stdin csv header" < file               (the reference)
#            ferry: db:insert("t2", ferry.csv.reader(...))                (COPY FROM STDIN)
#
# Usage: benches/postgres.sh [ROWS]   (default 5000000; id, name, amount numeric, paid bool,
# created_at timestamptz). Starts a throwaway cluster (Debian's postgresql; tests/setup.sh installs
# it) on a free port, as the postgres user when run as root. Prints figures for BENCHMARKS.md,
# with peak RSS from /usr/bin/time; nothing here fails on a number.
set -euo pipefail

ROWS=${1:-5000000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
PGBIN=${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}
for tool in "$PGBIN/initdb" "$PGBIN/pg_ctl" psql python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (tests/setup.sh installs postgresql)" >&2; exit 2; }
done
(cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build --release --quiet)
FERRY=$TARGET/release/ferry

WORK=$(mktemp -d /tmp/ferry-pg-bench.XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U bench --auth-local=trust --auth-host=scram-sha-256 \
  --no-sync -E UTF8 --locale=C >/dev/null
printf "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n" >> "$WORK/pg/data/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w -o "-p $PORT -k $WORK/pg -c listen_addresses=127.0.0.1" start >/dev/null
PSQL=(psql -X -q -h "$WORK/pg" -p "$PORT" -U bench -d postgres)
"${PSQL[@]}" -c "ALTER ROLE bench PASSWORD 'bench-pw'" >/dev/null

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo "generating $ROWS rows..."
"${PSQL[@]}" -c "CREATE TABLE t AS SELECT i AS id, 'customer ' || i AS name, (i * 1.25)::numeric(14,2) AS amount,
  i % 3 = 0 AS paid, timestamptz '2026-01-01' + i * interval '1 second' AS created_at
  FROM generate_series(1, $ROWS) i; CREATE TABLE t2 (LIKE t); CREATE TABLE t3 (LIKE t)"
"${PSQL[@]}" -c "VACUUM ANALYZE t"

cd "$WORK"
mkdir -p scripts data
printf '[databases.bench]\nurl = "postgres://bench@127.0.0.1:%s/postgres"\npassword = "bench-pw"\nsslmode = "disable"\n' "$PORT" > ferry.toml
Q="SELECT * FROM t ORDER BY id"

echo
echo "== export, $ROWS rows =="
t0=$(now); /usr/bin/time -f "%M\n%U %S" -o psql.rss "${PSQL[@]}" -c "\\copy ($Q) to stdout csv header" > data/ref.csv; t1=$(now)
REF_S=$(secs "$t0" "$t1")
echo "psql \\copy to stdout csv:     ${REF_S} s, $(rate "$ROWS" "$REF_S") rows/s, peak RSS $(( $(head -1 psql.rss) / 1024 )) MiB, psql's CPU $(tail -1 psql.rss | awk '{ print $1 + $2 }') s, $(( $(stat -c %s data/ref.csv) / 1048576 )) MiB"
cat > scripts/exp.lua <<LUA
return { timeout = "1h", run = function(ctx)
  local db = ferry.postgres.connect("bench")
  return { rows = ferry.pipe(db:query("$Q"), ferry.csv.writer(ferry.store("data"):create("out.csv"))) }
end }
LUA
t0=$(now); /usr/bin/time -f "%M\n%U %S" -o exp.rss "$FERRY" run exp > /dev/null; t1=$(now)
F_S=$(secs "$t0" "$t1")
echo "ferry csv (COPY):             ${F_S} s, $(rate "$ROWS" "$F_S") rows/s, peak RSS $(( $(head -1 exp.rss) / 1024 )) MiB, ferry's CPU $(tail -1 exp.rss | awk '{ print $1 + $2 }') s -> $(ratio "$F_S" "$REF_S")x psql's time"
# ferry writes booleans and timestamps in the typed path's text forms (rewritten on the client):
# the same bytes as psql gives when the server computes those forms.
NQ="SELECT id, name, amount, CASE WHEN paid THEN 'true' WHEN NOT paid THEN 'false' END AS paid,
  replace((created_at AT TIME ZONE 'UTC')::text, ' ', 'T') || 'Z' AS created_at FROM t ORDER BY id"
"${PSQL[@]}" -c "\\copy ($NQ) to stdout csv header" > data/norm.csv
cmp -s data/norm.csv data/out.csv && echo "  (same bytes as psql's \\copy of the query with the text forms computed by the server)" || \
  echo "  ferry's CSV DIFFERS from psql's \\copy of the query with the text forms computed by the server"
cat > scripts/expj.lua <<LUA
return { timeout = "1h", run = function(ctx)
  local db = ferry.postgres.connect("bench")
  return { rows = ferry.pipe(db:query("$Q"), ferry.ndjson.writer(ferry.store("data"):create("out.ndjson"))) }
end }
LUA
t0=$(now); /usr/bin/time -f "%M" -o expj.rss "$FERRY" run expj > /dev/null; t1=$(now)
J_S=$(secs "$t0" "$t1")
echo "ferry ndjson (cursor, typed): ${J_S} s, $(rate "$ROWS" "$J_S") rows/s, peak RSS $(( $(cat expj.rss) / 1024 )) MiB -> $(ratio "$J_S" "$REF_S")x psql's csv time"

echo
echo "== import, $ROWS rows =="
t0=$(now); /usr/bin/time -f "%M" -o psqli.rss "${PSQL[@]}" -c "\\copy t2 from pstdin csv header" < data/ref.csv; t1=$(now)
REFI_S=$(secs "$t0" "$t1")
echo "psql \\copy from pstdin csv:   ${REFI_S} s, $(rate "$ROWS" "$REFI_S") rows/s, peak RSS $(( $(cat psqli.rss) / 1024 )) MiB"
cat > scripts/imp.lua <<'LUA'
return { timeout = "1h", run = function(ctx)
  local db = ferry.postgres.connect("bench")
  local n = db:insert("t3", ferry.csv.reader(ferry.store("data"):open("ref.csv")))
  return { rows = n }
end }
LUA
t0=$(now); /usr/bin/time -f "%M" -o imp.rss "$FERRY" run imp > /dev/null; t1=$(now)
FI_S=$(secs "$t0" "$t1")
echo "ferry csv -> table (COPY):    ${FI_S} s, $(rate "$ROWS" "$FI_S") rows/s, peak RSS $(( $(cat imp.rss) / 1024 )) MiB -> $(ratio "$FI_S" "$REFI_S")x psql's time"
SAME=$("${PSQL[@]}" -At -c "SELECT (SELECT md5(string_agg(x::text, '|' ORDER BY id)) FROM t2 x) = (SELECT md5(string_agg(x::text, '|' ORDER BY id)) FROM t3 x)")
echo "  tables equal: $SAME"
