#!/usr/bin/env bash
# The whole test suite, real servers included: installs what the tests need when it is missing,
# then runs `cargo test`. Usage: ./tests/run.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the integration tests start themselves (each test starts its own instance on a free
# port): tests/setup.sh installs each one that is missing (s3s-fs, the S3-compatible server).
sh tests/setup.sh

cargo test "$@"
