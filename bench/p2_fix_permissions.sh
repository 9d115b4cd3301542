#!/usr/bin/env bash
# P2: fix-permissions on a share of 100,000 entries (100 dirs x 1,000 files),
# already right and all wrong, against `chgrp -R` + `chmod -R` on a copy.
# Goals: already-right >= 7x faster than coreutils; all-wrong no slower.
set -euo pipefail
cd "$(dirname "$0")/.."
CS_BIN="${CS_BIN:-$PWD/dist/comfy-sandbox}"
. bench/world.sh
enter_world "$@"
RUNS="${P2_RUNS:-5}"

useradd -m -d "$WORLD/home/bench" -U -s /bin/bash bench
share="$WORLD/data/share"
copy="$WORLD/data/copy"
cat >"$WORLD/p2.json" <<JSON
{ "primary_user": "bench",
  "sandbox_user": { "name": "comfyui_sandbox", "home": "$WORLD/home/comfyui_sandbox" },
  "state_dir": "$WORLD/state", "comfyui": { "path": "$WORLD/opt/ComfyUI" },
  "shares": [ { "name": "data", "path": "$share", "mount": "data", "access": "read-write" } ] }
JSON
export COMFY_SANDBOX_CONFIG="$WORLD/p2.json"
"$CS_BIN" provision --only accounts,tree >/dev/null

echo "P2: populating 100 dirs x 1,000 files..."
python3 - "$share" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    p = os.path.join(root, "d%03d" % d)
    os.mkdir(p)
    for f in range(1000):
        open(os.path.join(p, "f%04d.png" % f), "w").close()
PY
"$CS_BIN" fix-permissions >/dev/null
cp -a "$share" "$copy"
entries=$(find "$share" | wc -l)
echo "P2: $entries entries"

fix="$CS_BIN fix-permissions data"
core="chgrp -R comfyshared $copy && chmod -R u=rwX,g=rwX,o=rX $copy"
wrong_share="chgrp -R root $share && chmod -R u=rwX,go= $share"
wrong_copy="chgrp -R root $copy && chmod -R u=rwX,go= $copy"

hyperfine -N --style basic --runs "$RUNS" --warmup 1 --export-json "$WORLD/right-fix.json" "$fix" >/dev/null 2>&1
hyperfine --style basic --runs "$RUNS" --warmup 1 --export-json "$WORLD/right-core.json" "$core" >/dev/null 2>&1
hyperfine --style basic --runs "$RUNS" --prepare "$wrong_share" --export-json "$WORLD/wrong-fix.json" "$fix" >/dev/null 2>&1
hyperfine --style basic --runs "$RUNS" --prepare "$wrong_copy" --export-json "$WORLD/wrong-core.json" "$core" >/dev/null 2>&1

# Sanity: the all-wrong runs really repaired the share.
bad=$(find "$share" \( ! -group comfyshared -o -type f ! -perm 0664 -o -type d ! -perm 2775 \) | wc -l)
[ "$bad" = 0 ] || { echo "P2: fix-permissions left $bad entries wrong"; exit 1; }

rf=$(hf_mean "$WORLD/right-fix.json"); rc=$(hf_mean "$WORLD/right-core.json")
wf=$(hf_mean "$WORLD/wrong-fix.json"); wc_=$(hf_mean "$WORLD/wrong-core.json")
echo "P2 already-right: fix-permissions ${rf}s, chgrp -R + chmod -R ${rc}s -> $(ratio "$rc" "$rf")x faster (goal >= 7x)"
echo "P2 all-wrong:     fix-permissions ${wf}s, chgrp -R + chmod -R ${wc_}s -> time ratio $(python3 -c "print('%.2f' % ($wf/$wc_))") (goal <= 1.0)"
