#!/usr/bin/env bash
# A Lua `map` in `ferry.pipe`: ROWS rows of a 6-column SQLite table to CSV (a) without a map,
# (b) with a map that returns the rows unchanged, (c) with one that changes one field, (d) with
# one that drops half the rows. Each case is a whole `ferry run` (median of RUNS runs); prints
# seconds, rows/s and the time relative to (a). Not a test: nothing here fails on a number.
#
# Usage: benches/map.sh [ROWS [RUNS]]      (defaults 1000000 and 3; needs sqlite3)
set -euo pipefail
ROWS=${1:-1000000}
RUNS=${2:-3}
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: apt-get install -y sqlite3" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/data" "$WORK/scripts" && cd "$WORK"

# The table of benches/formats.sh: id, text, real, two integers, text with quotes in 10% of rows.
sqlite3 data/bench.db >/dev/null <<SQL
PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
CREATE TABLE t (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, qty INTEGER, created_at INTEGER, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
INSERT INTO t SELECT i, 'customer ' || (i % 9973), round((i % 100000) / 7.0, 2), i % 17,
  1700000000 + i, CASE WHEN i % 10 = 0 THEN 'note, with "quotes"' ELSE 'ok' END FROM n;
SQL

script() { # script NAME OPTIONS: a job piping the table to data/NAME.csv with OPTIONS
  cat > "scripts/$1.lua" <<LUA
return { timeout = "1h", run = function(ctx)
  local db = ferry.sqlite.open("data/bench.db")
  local n = ferry.pipe(db:query("SELECT * FROM t"), ferry.csv.writer(ferry.store("data"):create("$1.csv")), $2)
  return { rows = n }
end }
LUA
}
script plain 'nil'
script same '{ map = function(rows) return rows end }'
script one '{ map = function(rows)
    for _, r in ipairs(rows) do r.qty = r.qty + 1 end
    return rows
  end }'
script half '{ map = function(rows)
    for i, r in ipairs(rows) do if r.id % 2 == 0 then rows[i] = nil end end
    return rows
  end }'

median_of() { # median_of NAME: "wall cpu", the medians of RUNS runs of scripts/NAME.lua
  : > .times
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %U %S" -o .time "$FERRY" run "scripts/$1.lua" >/dev/null 2>.err || { cat .err >&2; exit 1; }
    cat .time >> .times
  done
  med() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  echo "$(awk '{ print $1 }' .times | med) $(awk '{ print $2 + $3 }' .times | med)"
}

# CPU seconds (user + system, the worker included) say more than wall time when other work
# shares the cores.
read -r BASE BASE_CPU < <(median_of plain)
printf '%-34s %7s %12s %9s %8s %9s\n' "case ($ROWS rows, 6 columns)" seconds "rows/s" "vs (a)" "cpu s" "cpu vs (a)"
show() { # show LABEL NAME_OR_- [SECONDS CPU]
  local s c
  if [ "$2" = - ]; then s=$3; c=$4; else read -r s c < <(median_of "$2"); fi
  LAST=$s
  awk -v l="$1" -v s="$s" -v c="$c" -v n="$ROWS" -v b="$BASE" -v bc="$BASE_CPU" \
    'BEGIN { printf "%-34s %7.2f %12.0f %8.2fx %8.2f %8.2fx\n", l, s, (s > 0 ? n / s : 0), (b > 0 ? s / b : 0), c, (bc > 0 ? c / bc : 0) }'
}
show "(a) no map" - "$BASE" "$BASE_CPU"
show "(b) map returns the rows" same
B=$LAST
show "(c) map changes one field" one
C=$LAST
show "(d) map drops half the rows" half
awk -v n="$ROWS" -v a="$BASE" -v b="$B" -v c="$C" 'BEGIN {
  printf "summary: Lua map over %d rows: returns the rows %.2f M rows/s, changes one field %.2f M rows/s (goal >= 1.00); the same pipe without a map %.2fs, with them x%.2f and x%.2f\n",
    n, n / b / 1e6, n / c / 1e6, a, b / a, c / a }'
cmp -s data/plain.csv data/same.csv || { echo "(b) wrote a different file than (a)" >&2; exit 1; }
[ "$(wc -l < data/half.csv)" -eq $((ROWS - ROWS / 2 + 1)) ] || { echo "(d) wrote the wrong number of rows" >&2; exit 1; }
