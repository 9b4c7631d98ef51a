#!/usr/bin/env bash
# ferry.http streaming a download into a store, next to curl writing the same file, in the same
# run, from the same local server (python3 -m http.server). Prints time and peak RSS of each side
# and the ratios, for a small and a large file: ferry's memory must not grow with the size.
# Usage: benches/http.sh [MB] (default 200). Needs curl and python3. Not a test: nothing here
# fails on a number; it prints them for BENCHMARKS.md.
set -euo pipefail

MB=${1:-200}
SMALL=$(( MB / 10 > 0 ? MB / 10 : 1 ))
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "curl is missing: apt-get install -y curl" >&2; exit 2; }

WORK=$(mktemp -d)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/srv" "$WORK/proj/data" "$WORK/proj/scripts"
head -c $(( MB << 20 )) /dev/urandom > "$WORK/srv/big.bin"
head -c $(( SMALL << 20 )) /dev/urandom > "$WORK/srv/small.bin"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$WORK/srv" && exec python3 -m http.server "$PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
SERVER=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/small.bin" && break; sleep 0.1; done

# time_of CMD...: runs CMD, prints "seconds max_rss_kib" (the peak RSS of the process and its
# children: ferry's worker included).
time_of() {
  /usr/bin/time -f "%e %M" -o "$WORK/.time" "$@" >/dev/null 2>"$WORK/.err" || { cat "$WORK/.err" >&2; exit 1; }
  cat "$WORK/.time"
}

cd "$WORK/proj"
for f in small big; do
  cat > "dl_$f.lua" <<LUA
return { run = function(ctx)
  local res = ferry.http.get("http://127.0.0.1:$PORT/$f.bin", { into = ferry.store("data"):create("$f.bin") })
  return { bytes = res.bytes }
end }
LUA
done

printf '%-22s %8s %8s %10s\n' "download" "MB" "seconds" "peak RSS"
for f in small big; do
  size=$(( $(stat -c %s "$WORK/srv/$f.bin") >> 20 ))
  read -r ct cm <<<"$(time_of curl -sf -o "$WORK/curl_$f.bin" "http://127.0.0.1:$PORT/$f.bin")"
  read -r ft fm <<<"$(time_of "$FERRY" run "dl_$f.lua")"
  cmp -s "$WORK/srv/$f.bin" "data/$f.bin" || { echo "ferry's copy of $f.bin differs" >&2; exit 1; }
  printf '%-22s %8s %8s %7s MiB\n' "curl -o ($f)" "$size" "$ct" "$((cm / 1024))"
  printf '%-22s %8s %8s %7s MiB\n' "ferry.http into ($f)" "$size" "$ft" "$((fm / 1024))"
  awk -v f="$ft" -v c="$ct" -v fm="$fm" -v cm="$cm" -v n="$f" \
    'BEGIN { printf "  ratio ferry/curl (%s): time %.2fx, peak RSS %.2fx\n", n, (c > 0 ? f / c : 0), fm / cm }'
  eval "rss_$f=$fm"
done
awk -v s="$rss_small" -v b="$rss_big" -v ms="$SMALL" -v mb="$MB" \
  'BEGIN { printf "ferry peak RSS, %d MB vs %d MB download: %.2fx (flat means ~1.0x)\n", mb, ms, b / s }'
