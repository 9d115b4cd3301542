#!/usr/bin/env bash
# Runs every benchmark in this directory (bench/p*.sh), each printing its own
# figures and ratios against its anchor.
set -uo pipefail
cd "$(dirname "$0")/.."
export CS_BIN="${CS_BIN:-$PWD/.build/release/comfy-sandbox}"
status=0
for b in bench/p*.sh; do
  [ -x "$b" ] || continue
  echo "=== $(basename "$b")"
  "$b" || { echo "!!! $b failed"; status=1; }
done
exit $status
