#!/usr/bin/env bash
# Redis import and backup throughput of ferry next to redis-cli, on the same data in the same run.
#
#   import:  `redis-cli --pipe` of the commands that build the data set   (the reference)
#            ferry's redis.migrate of the RDB file SAVEd from that data     (RDB -> pipelined RESTORE)
#            redis-server loading the same RDB file at start-up             (the ceiling: no network)
#   backup:  `redis-cli --rdb` (a replication SYNC: the server forks and streams its RDB;
#            diskless-sync delay set to 0)                                  (the reference)
#            ferry's redis.backup (SCAN + PTTL + DUMP -> RDB file)
#            ferry's redis.backup mode = "snapshot" (the same SYNC, into a store, checked)
#
# Usage: benches/redis.sh [KEYS]   (default 1000000; a mix of strings, hashes, lists, sets, zsets)
# Needs redis-server, redis-cli (tests/setup.sh installs them) and python3. Prints figures for
# BENCHMARKS.md; nothing here fails on a number.
set -euo pipefail

KEYS=${1:-1000000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
for tool in redis-server redis-cli python3; do
  command -v $tool >/dev/null || { echo "$tool is missing (tests/setup.sh installs redis)" >&2; exit 2; }
done
(cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build --release --quiet)
FERRY=$TARGET/release/ferry

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
mkdir -p scripts plugins data/store
cp "$HERE"/plugins/*.lua plugins/

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_redis() { # start_redis DIR -> sets PORT; loads DIR/dump.rdb if present. Not in a
  # subshell, so the server's pid reaches PIDS and the cleanup stops it.
  local dir=$1
  PORT=$(free_port)
  mkdir -p "$dir"
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --dbfilename dump.rdb --logfile "$dir/log" --daemonize no --repl-diskless-sync-delay 0 >/dev/null 2>&1 &
  PIDS+=($!)
  until redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; do sleep 0.01; done
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo "generating the commands for $KEYS keys..."
python3 - "$KEYS" > data.resp <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    out.write(b"".join(parts))
for i in range(n):
    k = i % 20
    if k < 12:
        cmd("SET", "str:%d" % i, "value-%d-" % i + "x" * (20 + i % 60))
    elif k < 15:
        cmd("HSET", "hash:%d" % i, "name", "user %d" % i, "email", "u%d@example.com" % i, "n", i, "city", "Berlin", "tier", "gold")
    elif k < 17:
        cmd("RPUSH", "list:%d" % i, *["event-%d-%d" % (i, j) for j in range(5)])
    elif k < 19:
        cmd("SADD", "set:%d" % i, *["m%d" % (i + j) for j in range(5)])
    else:
        cmd("ZADD", "zset:%d" % i, *sum([[j * 1.5, "p%d" % j] for j in range(5)], []))
    if i % 10 == 0:
        cmd("PEXPIRE", "%s:%d" % (["str", "hash", "list", "set", "zset"][0 if k < 12 else 1 if k < 15 else 2 if k < 17 else 3 if k < 19 else 4], i), 86400000)
PY
echo "data: $(du -h data.resp | cut -f1) of commands"

echo
echo "== import, $KEYS keys =="
start_redis "$WORK/ref"; REF=$PORT
t0=$(now); redis-cli -p "$REF" --pipe < data.resp > pipe.log; t1=$(now)
REF_S=$(secs "$t0" "$t1")
REF_KEYS=$(redis-cli -p "$REF" dbsize)
echo "redis-cli --pipe:              ${REF_S} s, $(rate "$REF_KEYS" "$REF_S") keys/s ($(tail -1 pipe.log))"
redis-cli -p "$REF" save >/dev/null
cp "$WORK/ref/dump.rdb" data/store/dump.rdb
RDB_BYTES=$(stat -c %s data/store/dump.rdb)
echo "RDB file:                      $((RDB_BYTES / 1024 / 1024)) MiB"

start_redis "$WORK/dst"; DST=$PORT
cat > scripts/imp.lua <<LUA
local redis = require "redis"
return { timeout = "1h", run = function(ctx)
  return redis.migrate(ctx, { target = "redis://127.0.0.1:$DST/0", files = "dump.rdb" })
end }
LUA
t0=$(now); /usr/bin/time -f "%M" -o imp.rss "$FERRY" run scripts/imp.lua > /dev/null; t1=$(now)
F_S=$(secs "$t0" "$t1")
F_KEYS=$(redis-cli -p "$DST" dbsize)
[ "$F_KEYS" = "$REF_KEYS" ] || { echo "ferry imported $F_KEYS keys, expected $REF_KEYS" >&2; exit 1; }
echo "ferry redis.migrate (RDB):     ${F_S} s, $(rate "$F_KEYS" "$F_S") keys/s  -> $(ratio "$REF_S" "$F_S")x the speed of redis-cli --pipe; peak RSS $(( $(cat imp.rss) / 1024 )) MiB"

cat > scripts/chk.lua <<'LUA'
return { timeout = "1h", run = function(ctx) return ferry.redis.check(ferry.store("data/store"):open("dump.rdb")) end }
LUA
t0=$(now); "$FERRY" run scripts/chk.lua > /dev/null; t1=$(now)
C_S=$(secs "$t0" "$t1")
echo "  of which the check pass:     ${C_S} s ($(awk -v b="$RDB_BYTES" -v s="$C_S" 'BEGIN { printf "%.0f", b / s / 1048576 }') MiB/s incl. process start)"

mkdir -p "$WORK/load"; cp data/store/dump.rdb "$WORK/load/dump.rdb"
t0=$(now); start_redis "$WORK/load"; t1=$(now)
L_S=$(secs "$t0" "$t1")
echo "redis-server loading the RDB:  ${L_S} s, $(rate "$REF_KEYS" "$L_S") keys/s (ceiling, no network)"

echo
echo "== backup, $KEYS keys =="
t0=$(now); redis-cli -p "$REF" --rdb "$WORK/sync.rdb" > /dev/null 2>&1; t1=$(now)
S_S=$(secs "$t0" "$t1")
echo "redis-cli --rdb (SYNC):        ${S_S} s, $(rate "$REF_KEYS" "$S_S") keys/s"
cat > scripts/bk.lua <<LUA
local redis = require "redis"
return { timeout = "1h", run = function(ctx)
  return redis.backup(ctx, { url = "redis://127.0.0.1:$REF/0", point = "data/backups", set = "redis" })
end }
LUA
t0=$(now); /usr/bin/time -f "%M" -o bk.rss "$FERRY" run scripts/bk.lua > /dev/null; t1=$(now)
B_S=$(secs "$t0" "$t1")
cat > scripts/snap.lua <<LUA
local redis = require "redis"
return { timeout = "1h", run = function(ctx)
  return redis.backup(ctx, { url = "redis://127.0.0.1:$REF/0", point = "data/backups", set = "redis", mode = "snapshot" })
end }
LUA
t0=$(now); /usr/bin/time -f "%M" -o snap.rss "$FERRY" run scripts/snap.lua > /dev/null; t1=$(now)
P_S=$(secs "$t0" "$t1")
echo "ferry redis.backup (SCAN+DUMP): ${B_S} s, $(rate "$REF_KEYS" "$B_S") keys/s  -> $(ratio "$S_S" "$B_S")x the speed of redis-cli --rdb; peak RSS $(( $(cat bk.rss) / 1024 )) MiB"
echo "ferry redis.backup (snapshot): ${P_S} s, $(rate "$REF_KEYS" "$P_S") keys/s  -> $(ratio "$S_S" "$P_S")x the speed of redis-cli --rdb; peak RSS $(( $(cat snap.rss) / 1024 )) MiB (incl. the check pass and SHA-256)"
