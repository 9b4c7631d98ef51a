#!/usr/bin/env bash
# MySQL (MariaDB) export and import throughput of ferry next to the MariaDB client tools, on the
# same table in the same run. Builds release, starts a MariaDB server of its own (temp dir, free
# port, local_infile on), generates a table server-side, runs each side and prints the times,
# ratios and peak RSS.
#
#   export:  `mariadb --batch --quick -e 'SELECT * FROM t'` > file        (the reference)
#            ferry: ferry.pipe(db:query(...), ferry.csv.writer(...))
#   import:  `mariadb-import --local` of the reference's TSV file          (the reference: LOAD DATA LOCAL)
#            ferry: db:insert(table, ferry.csv.reader(...))                (LOAD DATA LOCAL fed from the CSV)
#            ferry: db:insert(..., { bulk = "insert" })                    (multi-row INSERTs)
#   memory:  ferry's export of BIG_ROWS rows, peak RSS (largest of `ferry run` and its worker)
#
# Usage: benches/mysql.sh [ROWS] [BIG_ROWS]   (defaults 1000000 and 5000000)
# Needs mariadb-server and mariadb-client (tests/setup.sh installs them) and python3. Prints
# figures for BENCHMARKS.md; nothing here fails on a number.
set -euo pipefail

ROWS=${1:-1000000}
BIG_ROWS=${2:-5000000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
for tool in mariadbd mariadb mariadb-install-db mariadb-import python3; do
  command -v $tool >/dev/null || { echo "$tool is missing (tests/setup.sh installs mariadb)" >&2; exit 2; }
done
(cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build --release --quiet)
FERRY=$TARGET/release/ferry

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
mkdir -p scripts data

PASSWORD=bench-pw
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mariadb-install-db --no-defaults --datadir="$WORK/db" --user=root \
  --auth-root-authentication-method=normal --skip-test-db >/dev/null 2>&1
mariadbd --no-defaults --datadir="$WORK/db" --socket="$WORK/sock" --port="$PORT" \
  --bind-address=127.0.0.1 --user=root --skip-log-bin --local-infile=1 \
  --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
  --innodb-flush-log-at-trx-commit=2 >"$WORK/err.log" 2>&1 &
PIDS+=($!)
disown
until mariadb --no-defaults -S "$WORK/sock" -u root -e "SELECT 1" >/dev/null 2>&1; do sleep 0.1; done
admin() { mariadb --no-defaults -S "$WORK/sock" -u root --batch --skip-column-names -e "$1"; }
admin "CREATE USER 'bench'@'%' IDENTIFIED BY '$PASSWORD'; GRANT ALL ON *.* TO 'bench'@'%';
  CREATE DATABASE b; CREATE DATABASE big"
CLIENT=(--no-defaults -h 127.0.0.1 -P "$PORT" -u bench "-p$PASSWORD")

gen() { # gen DB ROWS: a 6-column table like an orders export
  admin "USE $1; CREATE TABLE $1.t (id INT PRIMARY KEY, customer VARCHAR(40), amount DECIMAL(12,2),
    qty INT, created_at DATETIME, note VARCHAR(40)) ENGINE=InnoDB;
    INSERT INTO $1.t SELECT seq, CONCAT('customer ', seq % 9973), ROUND((seq % 100000) / 7.0, 2),
      seq % 17, '2024-01-01' + INTERVAL seq SECOND,
      IF(seq % 10 = 0, 'note, with \"quotes\"', 'ok') FROM seq_1_to_$2"
}

# time_of CMD...: runs CMD, prints "seconds max_rss_kib" (from /usr/bin/time).
time_of() {
  /usr/bin/time -f "%e %M" -o "$WORK/.time" "$@" >/dev/null 2>"$WORK/.err" || { cat "$WORK/.err" >&2; exit 1; }
  cat "$WORK/.time"
}
ferry_run() { # ferry_run NAME LUA
  cat > "scripts/$1.lua" <<LUA
return { timeout = "1h", run = function(ctx)
local db = ferry.mysql.connect("mysql://bench:$PASSWORD@127.0.0.1:$PORT/b", { ssl_mode = "disabled" })
local st = ferry.store("data")
$2
end }
LUA
  time_of "$FERRY" run "scripts/$1.lua"
}
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.2f", (s > 0 ? n / s / 1e6 : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }'; }
count() { admin "SELECT COUNT(*) FROM $1"; }

echo "generating $ROWS rows..."
gen b "$ROWS"

echo
echo "== MySQL -> file ($ROWS rows) =="
read -r REF_S REF_RSS < <(time_of sh -c "mariadb ${CLIENT[*]} --batch --quick -e 'SELECT * FROM b.t' > data/ref.tsv")
read -r F_S F_RSS < <(ferry_run export 'ferry.pipe(db:query("SELECT * FROM t"), ferry.csv.writer(st:create("out.csv")))')
[ "$(($(wc -l < data/out.csv) - 1))" = "$ROWS" ] || { echo "ferry exported $(wc -l < data/out.csv) lines" >&2; exit 1; }
echo "mariadb --batch --quick: ${REF_S}s  $(rate "$ROWS" "$REF_S") M rows/s"
echo "ferry (CSV):             ${F_S}s  $(rate "$ROWS" "$F_S") M rows/s  ratio $(ratio "$REF_S" "$F_S")x the reference's time  peak RSS $((F_RSS / 1024)) MiB"

echo
echo "== file -> MySQL ($ROWS rows) =="
admin "CREATE TABLE b.t_ref LIKE b.t; CREATE TABLE b.t_ld LIKE b.t; CREATE TABLE b.t_ins LIKE b.t"
# mariadb-import loads FILE into the table named after it, with LOAD DATA LOCAL INFILE.
tail -n +2 data/ref.tsv > data/t_ref.tsv
read -r REF_S REF_RSS < <(time_of mariadb-import "${CLIENT[@]}" --local b data/t_ref.tsv)
[ "$(count b.t_ref)" = "$ROWS" ] || { echo "mariadb-import loaded $(count b.t_ref) rows" >&2; exit 1; }
read -r F_S F_RSS < <(ferry_run import 'db:insert("t_ld", ferry.csv.reader(st:open("out.csv")))')
[ "$(count b.t_ld)" = "$ROWS" ] || { echo "ferry loaded $(count b.t_ld) rows" >&2; exit 1; }
read -r I_S I_RSS < <(ferry_run import_ins 'db:insert("t_ins", ferry.csv.reader(st:open("out.csv")), { bulk = "insert" })')
[ "$(count b.t_ins)" = "$ROWS" ] || { echo "ferry inserted $(count b.t_ins) rows" >&2; exit 1; }
echo "mariadb-import --local:  ${REF_S}s  $(rate "$ROWS" "$REF_S") M rows/s"
echo "ferry (LOAD DATA LOCAL): ${F_S}s  $(rate "$ROWS" "$F_S") M rows/s  ratio $(ratio "$REF_S" "$F_S")x the reference's time  peak RSS $((F_RSS / 1024)) MiB"
echo "ferry (multi-row INSERT): ${I_S}s  $(rate "$ROWS" "$I_S") M rows/s  ratio $(ratio "$REF_S" "$I_S")x the reference's time  peak RSS $((I_RSS / 1024)) MiB"

echo
echo "== MySQL -> file, $BIG_ROWS rows (peak memory) =="
gen big "$BIG_ROWS"
read -r REF_S REF_RSS < <(time_of sh -c "mariadb ${CLIENT[*]} --batch --quick -e 'SELECT * FROM big.t' > data/big_ref.tsv")
read -r F_S F_RSS < <(ferry_run big 'local big = ferry.mysql.connect("mysql://bench:'"$PASSWORD"'@127.0.0.1:'"$PORT"'/big", { ssl_mode = "disabled" })
ferry.pipe(big:query("SELECT * FROM t"), ferry.csv.writer(st:create("big.csv")))')
echo "mariadb --batch --quick: ${REF_S}s  peak RSS $((REF_RSS / 1024)) MiB"
echo "ferry (CSV):             ${F_S}s  ratio $(ratio "$REF_S" "$F_S")x the reference's time  peak RSS $((F_RSS / 1024)) MiB"
