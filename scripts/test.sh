#!/usr/bin/env bash
# npm test: makes sure the reference tools are present (qemu-img and qemu-io
# from qemu-utils, Debian's chromium for the browser tests), builds and
# type-checks (the engine without the DOM library), then runs the whole suite
# and ends with one "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || missing+=(qemu-utils)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "Installing ${missing[*]} with apt-get ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "npm test needs ${missing[*]}: install with 'sudo apt-get install ${missing[*]}' and run it again."
    exit 1
  fi
fi

node scripts/build.mjs
npx tsc -p engine/tsconfig.json
npx tsc -p tsconfig.json
npx tsc -p web/tsconfig.json

mkdir -p test/.out
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=test/.out/results.json "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync("test/.out/results.json", "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' || true
exit $status
