#!/usr/bin/env bash
# P7 and P8, on the real ComfyUI and the six real custom nodes (the
# fixtures make e2e uses; requirements from PyPI, minutes):
#   P7  adding one small node to the six-node set reinstalls in at most
#       1/5 of the cold install's time (provision from an empty cache);
#   P8  ComfyUI's start-up and a CPU workflow under `start`, against the
#       same venv run unconfined, alternated rounds, medians: <= 1.02 each.
# Both are steps of scripts/e2e.sh (E2E_P8=1 adds P8), which builds the
# world; this prints their lines. Skipped, saying so, without the fixtures.
set -uo pipefail
cd "$(dirname "$0")/.."
FIXTURES="${CS_FIXTURES_REAL:-$PWD/../shared/fixtures/real}"
if [ ! -f "$FIXTURES/ComfyUI.bundle" ]; then
  echo "P7/P8: skipped: no real ComfyUI fixtures in $FIXTURES (set CS_FIXTURES_REAL)"
  exit 0
fi
log="$(mktemp /tmp/comfy-sandbox-p7p8.XXXXXX.log)"
E2E_P8=1 CS_BIN="${CS_BIN:-$PWD/dist/comfy-sandbox}" scripts/e2e.sh >"$log" 2>&1
rc=$?
grep -E "^   requirements: .* in [0-9.]+ s|^P7:|^P8:|^   round|^e2e:" "$log"
echo "(the whole run: $log)"
exit $rc
