# Shared by the bench scripts: `. "$(dirname "$0")/lib.sh"` builds the release binary (into
# CARGO_TARGET_DIR when set) and sets HERE (the project) and FERRY (the binary).
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
(cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build --release --quiet)
FERRY=$TARGET/release/ferry
