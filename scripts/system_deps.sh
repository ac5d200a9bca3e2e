#!/usr/bin/env bash
# System packages samkit's commands need, from Debian only (never a downloaded browser):
# chromium for the browser tests, npm to vendor onnxruntime-web for the web page.
# Shared by `make test` and .ci/run.
# Does nothing when everything is present; needs root (or sudo) and apt-get otherwise.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "samkit: missing system packages (${missing[*]}) and no apt-get to install them" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "samkit: installing Debian packages: ${missing[*]}"
log=$(mktemp)
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
       $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  echo "samkit: apt-get install ${missing[*]} failed:" >&2
  tail -20 "$log" >&2
  exit 1
fi
rm -f "$log"
