#!/bin/sh
# Installs what the test suite needs beyond cargo's own dependencies: the s3s-fs S3 server the
# S3 tests start (a real S3-compatible server that validates SigV4 and honours If-None-Match).
# Idempotent: does nothing when the right version is installed.
set -eu
version=0.14.1
if command -v s3s-fs >/dev/null 2>&1 && s3s-fs --version 2>/dev/null | grep -q "$version"; then
  exit 0
fi
if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ] && "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" --version 2>/dev/null | grep -q "$version"; then
  exit 0
fi
echo "installing s3s-fs $version (about 3 minutes)..." >&2
cargo install s3s-fs --version "$version" --features binary --locked
