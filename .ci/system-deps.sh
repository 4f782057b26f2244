#!/usr/bin/env bash
# System packages the test suite needs: Debian's Chromium for the browser test (never a
# downloaded browser). Installs it when missing and this user can (root or passwordless sudo).
set -u
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: no apt-get; install Chromium yourself for the browser test" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "warning: cannot install chromium (not root); the browser test needs /usr/bin/chromium" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || echo "warning: apt-get install chromium failed" >&2
exit 0
