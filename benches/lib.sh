# Shared by the bench scripts: `. "$(dirname "$0")/lib.sh"` builds the release binary (into
# CARGO_TARGET_DIR when set) and sets HERE (the project) and FERRY (the binary). With FERRY_BIN
# set, that binary is used as it is and nothing is built.
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
if [ -n "${FERRY_BIN:-}" ]; then
  FERRY=$FERRY_BIN
else
  (cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build --release --quiet)
  FERRY=$TARGET/release/ferry
fi
