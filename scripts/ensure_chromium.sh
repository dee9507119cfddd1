#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests when it is missing and we may install it.
# Without it the browser tests are skipped with a reason, and every other test still runs.
set -u
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is not installed and this user cannot install it: browser tests will be skipped."
  exit 0
fi
echo "Installing Chromium for the browser tests (apt-get)..."
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
  echo "Could not install Chromium: browser tests will be skipped."
fi
exit 0
