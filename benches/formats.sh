#!/usr/bin/env bash
# Format and SQLite throughput of ferry next to the sqlite3 command-line tool and gzip, on the
# same data in the same run. Builds release, generates a table, runs each side and prints the
# times, rates and ratios. Usage: benches/formats.sh [ROWS] [BIG_ROWS]
#   ROWS      rows of the timed table (default 1000000)
#   BIG_ROWS  rows of the peak-memory export (default 5000000; 0 skips it)
# Needs sqlite3, gzip and zip (apt-get install -y sqlite3 gzip zip). Not a test: nothing here fails on a
# number; it prints them for BENCHMARKS.md.
set -euo pipefail

ROWS=${1:-1000000}
BIG_ROWS=${2:-5000000}

for tool in sqlite3 gzip zip; do
  command -v $tool >/dev/null || { echo "$tool is missing: apt-get install -y $tool" >&2; exit 2; }
done
. "$(dirname "$0")/lib.sh"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
mkdir -p data scripts

gen() { # gen DB ROWS: a 6-column table like an orders export
  sqlite3 "$1" >/dev/null <<SQL
PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
CREATE TABLE t (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, qty INTEGER, created_at INTEGER, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
INSERT INTO t SELECT i, 'customer ' || (i % 9973), round((i % 100000) / 7.0, 2), i % 17,
  1700000000 + i, CASE WHEN i % 10 = 0 THEN 'note, with "quotes"' ELSE 'ok' END FROM n;
SQL
}

# time_of CMD...: runs CMD, prints "seconds max_rss_kib" (from /usr/bin/time).
time_of() {
  /usr/bin/time -f "%e %M" -o "$WORK/.time" "$@" >/dev/null 2>"$WORK/.err" || { cat "$WORK/.err" >&2; exit 1; }
  cat "$WORK/.time"
}

ferry_run() { # ferry_run NAME LUA
  cat > "scripts/$1.lua" <<LUA
return { timeout = "1h", run = function(ctx)
$2
end }
LUA
  time_of "$FERRY" run "scripts/$1.lua"
}

rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.2f", (s > 0 ? n / s / 1e6 : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }'; }

echo "generating $ROWS rows..."
gen data/bench.db "$ROWS"
CSV_BYTES=0

echo
echo "== SQLite -> CSV ($ROWS rows) =="
read -r REF_S REF_RSS < <(time_of sh -c "sqlite3 -csv -header data/bench.db 'SELECT * FROM t' > data/ref.csv")
read -r F_S F_RSS < <(ferry_run export 'local db = ferry.sqlite.open("data/bench.db")
  local n = ferry.pipe(db:query("SELECT * FROM t"), ferry.csv.writer(ferry.store("data"):create("out.csv")))
  return { rows = n }')
CSV_BYTES=$(stat -c %s data/out.csv)
cmp -s data/ref.csv data/out.csv && SAME="identical to sqlite3's" || SAME="differs from sqlite3's (quoting/number style)"
echo "sqlite3 -csv : ${REF_S}s  $(rate "$ROWS" "$REF_S") M rows/s"
echo "ferry.pipe   : ${F_S}s  $(rate "$ROWS" "$F_S") M rows/s  (x$(ratio "$F_S" "$REF_S") vs sqlite3; output $SAME)"

echo
echo "== CSV -> SQLite ($ROWS rows, $((CSV_BYTES / 1000000)) MB) =="
sqlite3 data/ref_import.db "CREATE TABLE t (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, qty INTEGER, created_at INTEGER, note TEXT);"
read -r REF_S REF_RSS < <(time_of sqlite3 data/ref_import.db ".import --csv --skip 1 data/ref.csv t")
read -r F_S F_RSS < <(ferry_run import 'local db = ferry.sqlite.open("data/ferry_import.db")
  db:exec("CREATE TABLE t (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, qty INTEGER, created_at INTEGER, note TEXT)")
  local src = ferry.csv.reader(ferry.store("data"):open("out.csv"),
    { types = { id = "integer", amount = "float", qty = "integer", created_at = "integer" } })
  local n = db:insert("t", src)
  return { rows = n }')
echo "sqlite3 .import: ${REF_S}s  $(rate "$ROWS" "$REF_S") M rows/s"
echo "db:insert      : ${F_S}s  $(rate "$ROWS" "$F_S") M rows/s  (x$(ratio "$F_S" "$REF_S") vs sqlite3)"
CHECK=$(sqlite3 data/ferry_import.db "SELECT count(*), sum(qty), typeof(amount) FROM t")
echo "imported: $CHECK"

echo
echo "== CSV parse + write (CSV -> CSV, $((CSV_BYTES / 1000000)) MB) =="
read -r F_S F_RSS < <(ferry_run csvcopy 'local st = ferry.store("data")
  return { rows = ferry.pipe(ferry.csv.reader(st:open("out.csv")), ferry.csv.writer(st:create("copy.csv"))) }')
echo "ferry.pipe csv->csv: ${F_S}s  $(awk -v b="$CSV_BYTES" -v s="$F_S" 'BEGIN { printf "%.0f", b / s / 1e6 }') MB/s of input"

echo
echo "== deflate level 1 (zip of the $((CSV_BYTES / 1000000)) MB CSV) =="
read -r REF_S REF_RSS < <(time_of sh -c "gzip -1 -c data/out.csv > data/ref.gz")
read -r F_S F_RSS < <(ferry_run zip 'local st = ferry.store("data")
  local z = ferry.zip.writer(st:create("out.zip"))
  z:add("out.csv", st:open("out.csv"), { level = 1 })
  z:close()')
echo "gzip -1 : ${REF_S}s  $(awk -v b="$CSV_BYTES" -v s="$REF_S" 'BEGIN { printf "%.0f", b / s / 1e6 }') MB/s"
echo "zip:add : ${F_S}s  $(awk -v b="$CSV_BYTES" -v s="$F_S" 'BEGIN { printf "%.0f", b / s / 1e6 }') MB/s  (x$(ratio "$F_S" "$REF_S") vs gzip; $(stat -c %s data/out.zip) bytes vs $(stat -c %s data/ref.gz))"

echo
echo "== SQLite -> zipped CSV, default deflate level (2) ($ROWS rows) =="
read -r REF_S REF_RSS < <(time_of sh -c "sqlite3 -csv -header data/bench.db 'SELECT * FROM t' | zip -1 -q data/ref_export.zip -")
read -r F_S F_RSS < <(ferry_run zipped 'local db = ferry.sqlite.open("data/bench.db")
  local z = ferry.zip.writer(ferry.store("data"):create("export.zip"))
  local n = ferry.pipe(db:query("SELECT * FROM t"), ferry.csv.writer(z:create("out.csv")))
  z:close()
  return { rows = n }')
REF_Z=$(stat -c %s data/ref_export.zip)
F_Z=$(stat -c %s data/export.zip)
echo "sqlite3 -csv | zip -1 : ${REF_S}s  $REF_Z bytes"
echo "ferry.pipe into zip   : ${F_S}s  $F_Z bytes  (time x$(ratio "$REF_S" "$F_S") of sqlite3 | zip -1, goal <= 0.5; size x$(ratio "$REF_Z" "$F_Z"), goal <= 1.10)"
echo "summary: zipped export: ferry ${F_S}s vs sqlite3 -csv | zip -1 ${REF_S}s = x$(ratio "$REF_S" "$F_S") (goal <= 0.50); archive x$(ratio "$REF_Z" "$F_Z") (goal <= 1.10)"

[ "$BIG_ROWS" -gt 0 ] || exit 0
echo
echo "== peak memory: SQLite -> CSV of $BIG_ROWS rows =="
gen data/big.db "$BIG_ROWS"
read -r F_S F_RSS < <(ferry_run big 'local db = ferry.sqlite.open("data/big.db")
  return { rows = ferry.pipe(db:query("SELECT * FROM t"), ferry.csv.writer(ferry.store("data"):create("big.csv"))) }')
echo "ferry.pipe: ${F_S}s  $(rate "$BIG_ROWS" "$F_S") M rows/s  peak RSS $((F_RSS / 1024)) MiB (largest of ferry run and its worker)"
