#!/usr/bin/env bash
# Demo step: custom nodes. A small node repository is served by the demo's git
# daemon; update-nodes installs it pinned, records it, a re-run changes
# nothing; a hook planted both in the served repo and in the checkout's own
# .git never runs through --pull and rollback; the sandbox user cannot write
# the record; scan-nodes reports the node's risky line.
set -uo pipefail
source "$(dirname "$0")/../demo-lib.sh"
SANDBOX_USER="${SANDBOX_USER:-comfyui_sandbox}"
SHARED_GROUP="${SHARED_GROUP:-comfyshared}"
export HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1
base="${GIT_BASE_URL#git://*/}"
served="$WORLD/git/demo-node.git"
work="$WORLD/git/demo-node-work"
marker="$WORLD/HOOK-RAN"

echo "== a node repository, served at $GIT_BASE_URL/demo-node.git"
mkdir -p "$work"
cat >"$work/__init__.py" <<'PY'
class Echo:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hi"})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "demo"
    def run(self, text):
        return (eval(text),)   # scan-nodes should flag this


NODE_CLASS_MAPPINGS = {"DemoEcho": Echo}
PY
git -C "$work" init -q -b main
git -C "$work" add -A
git -C "$work" -c user.name=demo -c user.email=demo@invalid commit -q -m "demo node"
git clone -q --bare "$work" "$served"
first="$(git -C "$work" rev-parse HEAD)"

python3 - "$CONFIG" "$GIT_BASE_URL/demo-node.git" <<'PY'
import json, sys
path, url = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["custom_nodes"] = [{"name": "demo-node", "repo": url, "rev": "main", "note": "demo"}]
json.dump(c, open(path, "w"), indent=2)
PY
comfy="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["comfyui"]["path"])' "$CONFIG")"
state="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["state_dir"])' "$CONFIG")"
node="$comfy/custom_nodes/demo-node"
record="$state/nodes/demo-node.json"

echo "== ComfyUI and the node"
cs update-comfyui || flunk "update-comfyui exited $?"
if cs update-nodes; then pass "update-nodes installed demo-node"; else flunk "update-nodes exited $?"; fi
[ "$(cat "$node/.git/HEAD" 2>/dev/null)" = "$first" ] && pass "checkout is at $first" || flunk "checkout HEAD is $(cat "$node/.git/HEAD" 2>/dev/null)"
[ "$(stat -c '%U %a' "$node")" = "root 755" ] && pass "checkout is root-owned 755" || flunk "checkout is $(stat -c '%U %a' "$node")"
echo "== the record ($record)"
cat "$record"
[ "$(stat -c '%U %a' "$record")" = "root 644" ] && pass "record is root 644" || flunk "record is $(stat -c '%U %a' "$record")"
before="$(sha256sum "$record")"
cs update-nodes | grep -q "demo-node: up_to_date" && pass "a re-run changes nothing" || flunk "re-run was not a no-op"
[ "$(sha256sum "$record")" = "$before" ] && pass "record bytes unchanged by the re-run" || flunk "record changed on a no-op"

echo "== plant hooks: in the served repo and in the checkout's own .git"
for h in post-checkout post-merge; do
  printf '#!/bin/sh\ntouch %s\n' "$marker" >"$served/hooks/$h"; chmod +x "$served/hooks/$h"
done
mkdir -p "$node/.git/hooks"
printf '#!/bin/sh\ntouch %s\n' "$marker" >"$node/.git/hooks/post-checkout"; chmod +x "$node/.git/hooks/post-checkout"
git -C "$node/.git" config core.fsmonitor "touch $marker"
echo "x = 2" >>"$work/__init__.py"
git -C "$work" -c user.name=demo -c user.email=demo@invalid commit -q -am "second"
git -C "$work" push -q "$served" HEAD:main
second="$(git -C "$work" rev-parse HEAD)"
cs update-nodes --pull || flunk "update-nodes --pull exited $?"
[ "$(cat "$node/.git/HEAD")" = "$second" ] && pass "--pull moved demo-node to $second" || flunk "--pull did not move it"
cs rollback-nodes demo-node || flunk "rollback-nodes exited $?"
[ "$(cat "$node/.git/HEAD")" = "$first" ] && pass "rollback put it back on $first" || flunk "rollback did not restore"
[ -e "$marker" ] && flunk "a planted hook ran" || pass "no planted hook or fsmonitor ran (no $marker)"
rm -f "$node/.git/hooks/post-checkout"; git -C "$node/.git" config --unset core.fsmonitor

echo "== the sandbox user and the record"
if id "$SANDBOX_USER" >/dev/null 2>&1; then
  as_sandbox "echo '{}' > '$record'" 2>&1 && flunk "the sandbox wrote the record" || pass "the sandbox cannot write the record"
else
  echo "(no sandbox user in this world; skipped)"
fi

echo "== scan-nodes"
cs scan-nodes demo-node
cs scan-nodes demo-node --fail-on high >/dev/null; rc=$?
[ "$rc" = 3 ] && pass "scan-nodes --fail-on high exits 3 on the eval()" || flunk "scan-nodes --fail-on high exited $rc"
exit $fail
