#!/usr/bin/env bash
# The headless browser of tests/test_web_demo.py: Debian's chromium + chromium-driver (no browser download).
# Idempotent and quiet: installs only what is missing.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "installed $(/usr/bin/chromium --version 2>/dev/null) and $(/usr/bin/chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
