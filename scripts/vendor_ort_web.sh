#!/usr/bin/env bash
# Vendor onnxruntime-web (the npm package, pinned and checked) into samkit/server/static/vendor/,
# so the web page decodes prompts in the browser without any CDN. Run by `make vendor` (and by
# `make test`); needs npm and the npm registry once. The files are not committed (11 MB of wasm).
set -euo pipefail

VERSION=1.22.0
DEST="$(cd "$(dirname "$0")/.." && pwd)/samkit/server/static/vendor"
# sha256 of each file we take from the package, so a changed package is noticed
FILES="65e09376df69107e881b5c34d2d37aed333a366b6d941073ec518168e269b87d ort.wasm.min.js
71aef04959c5c1b6de461b6538e2058e306610034a85aad2742d0c7fd4533fe4 ort-wasm-simd-threaded.wasm
30dd851d9c00622940500f71ddd2ff8820c5cb65270816080175b958705385a8 ort-wasm-simd-threaded.mjs"

if [ -f "$DEST/VERSION" ] && [ "$(cat "$DEST/VERSION")" = "$VERSION" ] &&
   (cd "$DEST" && echo "$FILES" | sha256sum --check --quiet --status); then
  exit 0
fi
command -v npm >/dev/null || { echo "vendor_ort_web.sh: npm is needed (apt-get install -y npm)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "onnxruntime-web@$VERSION" >/dev/null && tar xzf onnxruntime-web-*.tgz)
(cd "$work/package/dist" && echo "$FILES" | sha256sum --check --quiet)
mkdir -p "$DEST"
echo "$FILES" | while read -r _ name; do cp "$work/package/dist/$name" "$DEST/$name"; done
cp "$work/package/package.json" "$DEST/package.json"  # MIT, per its "license"
echo "$VERSION" > "$DEST/VERSION"
echo "onnxruntime-web $VERSION -> $DEST"
