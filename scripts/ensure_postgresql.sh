#!/usr/bin/env bash
# Installs Debian's PostgreSQL server for the class store's tests when it is missing and we may
# install it. The tests start a throwaway server of their own (initdb + pg_ctl in a temporary
# folder) and never touch a system cluster. Without it the PostgreSQL tests are skipped with a
# reason, and every other test still runs.
set -u
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL is not installed and this user cannot install it: its tests will be skipped."
  exit 0
fi
echo "Installing PostgreSQL for the class store's tests (apt-get)..."
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }; then
  echo "Could not install PostgreSQL: its tests will be skipped."
fi
exit 0
