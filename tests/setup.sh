#!/bin/sh
# Installs what the test suite needs beyond cargo's own dependencies:
# - Debian's redis-server and redis-cli (the Redis tests start their own instances on free ports)
#   and openssl (certificates for the TLS test); GNU time (peak memory of a worker);
# - systemd-analyze (Debian's systemd) for the unit file check;
# - Debian's chromium and chromium-driver (the web UI tests in tests/it/ui.rs drive a headless
#   Chromium over WebDriver);
# - Debian's python3-aiosmtpd (the notification tests' SMTP server);
# - Debian's mariadb-server and mariadb-client (the MySQL tests start their own servers);
# - Debian's postgresql (the PostgreSQL tests start their own clusters);
# - the s3s-fs S3 server the S3 tests start (a real S3-compatible server that validates SigV4 and
#   honours If-None-Match).
# Idempotent: does nothing when the right versions are installed.
set -eu

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 \
  || ! command -v openssl >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  echo "installing redis-server, openssl and curl (Debian packages; openssl makes the TLS test's certificates, curl runs the docs' API examples)..." >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server redis-tools openssl curl ca-certificates
fi
# The Debian package starts a system instance on port 6379; the tests never use it.

# GNU time measures the worker's peak memory in tests/it/streaming_memory.rs (and the benches').
if [ ! -x /usr/bin/time ]; then
  echo "installing time (Debian package; GNU time measures peak memory)..." >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends time
fi

# systemd-analyze checks contrib/ferry.service (tests/it/server.rs); nothing is started with it.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "installing systemd (for systemd-analyze verify of contrib/ferry.service)..." >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends systemd
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (Debian packages, for the web UI tests)..." >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi

# The notification tests start a real SMTP server (aiosmtpd) on a free port.
# Debian's own interpreter (/usr/bin/python3): a python3 earlier on PATH (pyenv) does not see it.
if ! /usr/bin/python3 -c "import aiosmtpd" >/dev/null 2>&1; then
  echo "installing python3-aiosmtpd (Debian package; the notification tests' SMTP server)..." >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-aiosmtpd
fi

# The MySQL tests (tests/it/mysql.rs) and benches/mysql.sh start their own MariaDB servers
# (mariadb-install-db into a temp dir, mariadbd on a free port); the Debian package's own
# service is not used.
if ! command -v mariadbd >/dev/null 2>&1 || ! command -v mariadb >/dev/null 2>&1 \
  || ! command -v mariadb-install-db >/dev/null 2>&1; then
  echo "installing mariadb-server and mariadb-client (Debian packages, for the MySQL tests)..." >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client
fi

# The PostgreSQL tests (tests/it/postgres.rs, tests/it/common/postgres.rs) initdb clusters of their own in
# temp dirs on free ports, as the `postgres` user when run as root; psql is the benchmark reference.
if ! [ -x /usr/lib/postgresql/15/bin/initdb ] && ! [ -x "$(pg_config --bindir 2>/dev/null)/initdb" ]; then
  echo "installing postgresql (Debian package; the PostgreSQL tests start their own clusters)..." >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql postgresql-client
fi

version=0.14.1
if command -v s3s-fs >/dev/null 2>&1 && s3s-fs --version 2>/dev/null | grep -q "$version"; then
  exit 0
fi
if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ] && "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" --version 2>/dev/null | grep -q "$version"; then
  exit 0
fi
echo "installing s3s-fs $version (about 3 minutes)..." >&2
cargo install s3s-fs --version "$version" --features binary --locked
