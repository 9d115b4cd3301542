#!/usr/bin/env bash
# Runs every benchmark in this directory (bench/p*.sh), each printing its own
# figures and ratios against its anchor.
set -uo pipefail
cd "$(dirname "$0")/.."
export CS_BIN="${CS_BIN:-$PWD/dist/comfy-sandbox}"
# The anchors each benchmark compares against, from Debian (ansible-core comes
# from PyPI inside p1, b3sum is optional in p5).
missing=""
for pkg in hyperfine:hyperfine bwrap:bubblewrap firejail:firejail setpriv:util-linux curl:curl; do
  command -v "${pkg%%:*}" >/dev/null || missing="$missing ${pkg##*:}"
done
if [ -n "$missing" ]; then
  echo "installing the benchmark anchors:$missing"
  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
status=0
for b in bench/p*.sh; do
  [ -x "$b" ] || continue
  echo "=== $(basename "$b")"
  "$b" || { echo "!!! $b failed"; status=1; }
done
exit $status
