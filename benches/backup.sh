#!/usr/bin/env bash
# Backups next to restic, in the same run, on the same generated tree: a full backup
# (`backup.run`, no compression) against `restic backup --compression off`, an unchanged re-run
# (`kind = "incremental"`) against restic's second backup, and a restore (`backup.restore`)
# against `restic restore`. Builds release, generates a deterministic mixed tree (sizes from a
# few bytes to tens of MB, nested folders), and runs ROUNDS alternating pairs (ferry first in
# odd rounds, restic first in even ones); prints every time, the medians and the ratios.
# Each timed command is the whole process a user waits for (`ferry run FILE.lua`: start-up,
# worker, walk, copy, fsync/syncfs, manifest, history; restic: its whole command). Only
# `restic init` is outside the timing (a one-time setup, like creating the point's folder).
# Usage: benches/backup.sh [FILES] [MB] [ROUNDS]   (defaults 20000 700 3)
# Needs restic (installed with apt-get when missing) and python3. Not a test: nothing here fails
# on a number; it prints them for BENCHMARKS.md.
set -euo pipefail

FILES=${1:-20000}
MB=${2:-700}
ROUNDS=${3:-3}
. "$(dirname "$0")/lib.sh"
command -v restic >/dev/null || apt-get install -y restic >/dev/null
command -v python3 >/dev/null || { echo "python3 is missing" >&2; exit 2; }

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/ferry-bench-backup.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
P=$WORK/proj
mkdir -p "$P/data/src" "$P/scripts" "$P/plugins"
cp "$HERE/plugins/backup.lua" "$P/plugins/"
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache

# A deterministic tree of FILES files and about MB megabytes: most files small (tens of bytes to
# 64 KiB), some medium (64-384 KiB), one in 2000 large (tens of MiB), in nested folders; contents
# are pseudo-random (nothing for restic to deduplicate or either side to compress).
python3 - "$P/data/src" "$FILES" "$MB" <<'PY'
import os, random, sys
root, files, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(21)
sizes = []
for i in range(files):
    r = rng.random()
    if i % 2000 == 1999:
        sizes.append(rng.randint(4 << 20, 40 << 20))
    elif r < 0.92:
        sizes.append(int(10 ** rng.uniform(1, 4.8)))
    else:
        sizes.append(rng.randint(64 << 10, 384 << 10))
big = [i for i, s in enumerate(sizes) if s >= 4 << 20]
rest = sum(s for i, s in enumerate(sizes) if i not in set(big))
# Hit the total by scaling the large files only: the small-file mix stays as it is.
want_big = max((mb << 20) - rest, len(big))
bsum = sum(sizes[i] for i in big) or 1
for i in big:
    sizes[i] = max(1, int(sizes[i] * want_big / bsum))
pool = rng.randbytes(64 << 20)
for i, size in enumerate(sizes):
    d = os.path.join(root, f"d{i % 23:02d}", f"s{(i // 23) % 17:02d}", f"t{(i // 391) % 5}")
    os.makedirs(d, exist_ok=True)
    # A distinct slice of the pool, with the file's number in front: no two files alike.
    head = f"{i}\n".encode()
    start = rng.randrange(0, len(pool) - min(size, len(pool)) + 1)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(head)
        left = max(size - len(head), 0)
        while left > 0:
            chunk = pool[start:start + left] if start + left <= len(pool) else pool[start:]
            f.write(chunk)
            left -= len(chunk)
            start = 0
PY
read -r NFILES BYTES < <(find "$P/data/src" -type f -printf '%s\n' | awk '{ n++; b += $1 } END { print n, b }')
echo "tree: $NFILES files, $(awk -v b="$BYTES" 'BEGIN { printf "%.0f", b / 1e6 }') MB"

cat > "$P/scripts/bk.lua" <<'LUA'
local backup = require "backup"
return { timeout = "1h", params = { kind = { default = "full" }, point = { default = "data/points" } },
  run = function(ctx)
    return backup.run(ctx, { source = "data/src", point = ctx.params.point, set = "b", kind = ctx.params.kind })
  end }
LUA
cat > "$P/scripts/rs.lua" <<'LUA'
local backup = require "backup"
return { timeout = "1h", params = { point = { default = "data/points" }, target = { default = "data/restored" } },
  run = function(ctx)
    return backup.restore(ctx, { point = ctx.params.point, set = "b", target = ctx.params.target })
  end }
LUA

# secs CMD...: runs CMD in the project, prints its wall time in seconds.
secs() {
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$P" && "$@") >"$WORK/.out" 2>&1 || { cat "$WORK/.out" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

# Each round writes into folders of its own, and nothing is deleted until the end: creating
# 20k files right after deleting 40k costs ext4 much more (its inode allocator skips inodes
# freed in the last minutes, `recently_deleted`), which is the bench's doing, not a backup's.
fresh() { # a new point, restore target and restic repository for round $1
  R=$1
  restic init --repo "$WORK/repo-$R" >/dev/null
  sync
}

ferry_side() {
  F_FULL+=("$(secs "$FERRY" run scripts/bk.lua -p "point=data/points-$R")")
  F_INC+=("$(secs "$FERRY" run scripts/bk.lua -p kind=incremental -p "point=data/points-$R")")
  F_RES+=("$(secs "$FERRY" run scripts/rs.lua -p "point=data/points-$R" -p "target=data/restored-$R")")
  cmp -s <(cd "$P/data/src" && find . -type f -exec sha256sum {} + | sort -k2) \
    <(cd "$P/data/restored-$R" && find . -type f -exec sha256sum {} + | sort -k2) \
    || { echo "ferry's restore differs from the source" >&2; exit 1; }
}

restic_side() {
  R_FULL+=("$(secs restic --repo "$WORK/repo-$R" backup --compression off -q data/src)")
  R_INC+=("$(secs restic --repo "$WORK/repo-$R" backup --compression off -q data/src)")
  R_RES+=("$(secs restic --repo "$WORK/repo-$R" restore latest --target "$WORK/restic-restore-$R" -q)")
}

F_FULL=(); F_INC=(); F_RES=(); R_FULL=(); R_INC=(); R_RES=(); SUMMARY=()
for round in $(seq "$ROUNDS"); do
  fresh "$round"
  if (( round % 2 )); then ferry_side; sync; restic_side; else restic_side; sync; ferry_side; fi
  sync
  echo "round $round: full ferry ${F_FULL[-1]} s / restic ${R_FULL[-1]} s;" \
    "re-run ${F_INC[-1]} / ${R_INC[-1]} s; restore ${F_RES[-1]} / ${R_RES[-1]} s"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
ratio() { awk -v f="$1" -v r="$2" 'BEGIN { printf "%.2f", f / r }'; }
echo
echo "medians of $ROUNDS rounds, $NFILES files, $(awk -v b="$BYTES" 'BEGIN { printf "%.0f", b / 1e6 }') MB:"
printf '%-28s %8s %8s %8s\n' measure ferry restic "ferry/restic"
for m in FULL INC RES; do
  f="F_$m[@]"; r="R_$m[@]"
  fm=$(median "${!f}"); rm_=$(median "${!r}")
  case $m in FULL) name="full backup";; INC) name="unchanged re-run";; RES) name="restore";; esac
  printf '%-28s %7.2fs %7.2fs %8s\n' "$name" "$fm" "$rm_" "$(ratio "$fm" "$rm_")×"
  SUMMARY+=("$name x$(ratio "$fm" "$rm_") (${fm}s vs ${rm_}s)")
done
# The line benches/perf.sh collects (goals of issue #21: each <= 1.00 of restic's time).
echo "summary: backup vs restic, $NFILES files: $(IFS=';'; echo "${SUMMARY[*]}" | sed 's/;/, /g') (goal each <= 1.00)"
