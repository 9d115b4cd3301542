#!/usr/bin/env bash
# The README's make targets, run as a user types them (`make TARGET
# CONFIG=...`), on the shipped config/comfy-sandbox.json with only the paths,
# the users, the repository URLs (and their protocol) and a busy port changed.
# It runs in a throwaway world (private mount namespace, own /etc; homes,
# shares, ComfyUI and state under a temporary directory): the stand-in
# ComfyUI, tagged with the shipped comfyui.rev, and a stand-in node are
# served by a real git daemon on 127.0.0.1. Every target is checked by its
# exit status and by what it did on disk. `make test` runs it.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/world-lib.sh"
world_require_root
world_reexec CS_MAKE_TARGETS_INSIDE "$@"
set -e

WORLD="$(mktemp -d /tmp/comfy-sandbox-make.XXXXXX)"
chmod 0755 "$WORLD"
export WORLD
GIT_DAEMON_PID=""
CONFIG="$WORLD/config.json"
cleanup() {
  "$ROOT/dist/comfy-sandbox" stop --config "$CONFIG" >/dev/null 2>&1 || true
  [ -n "$GIT_DAEMON_PID" ] && kill "$GIT_DAEMON_PID" 2>/dev/null || true
  umount /etc 2>/dev/null || true
  rm -rf --one-file-system "$WORLD"
}
trap cleanup EXIT
world_bind_etc "$WORLD"
mkdir -p "$WORLD/home" "$WORLD/opt" "$WORLD/git/served"
chmod 0755 "$WORLD/home" "$WORLD/opt"
world_add_user alice

rev="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["comfyui"]["rev"])' "$ROOT/config/comfy-sandbox.json")"
world_git_repo "$ROOT/fixtures/comfyui-standin" "$WORLD/git/served/ComfyUI.git" "$rev"
world_git_repo "$ROOT/fixtures/nodes/clean-node" "$WORLD/git/served/clean-node.git"
world_git_daemon "$WORLD/git/served"
port="$(world_free_port 8188)"

# The shipped config, with only what must differ in this world changed.
python3 - "$ROOT/config/comfy-sandbox.json" "$CONFIG" "$WORLD" "$GIT_BASE_URL" "$port" <<'PY'
import json, sys
src, dst, world, base, port = sys.argv[1:]
c = json.load(open(src))
def rebase(p): return world + p
c["sandbox_user"]["home"] = rebase(c["sandbox_user"]["home"])
c["state_dir"] = rebase(c["state_dir"])
c["comfyui"]["path"] = rebase(c["comfyui"]["path"])
c["comfyui"]["repo"] = base + "/ComfyUI.git"
for s in c["shares"]: s["path"] = rebase(s["path"])
c["custom_nodes"] = [{"name": "clean-node", "repo": base + "/clean-node.git", "rev": "main"}]
c["git"]["allowed_protocols"] = ["git"]
c["launcher"]["port"] = int(port)
json.dump(c, open(dst, "w"), indent=2)
PY

passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
flunk() { echo "FAIL: $*"; failed=$((failed + 1)); }
# mk TARGET [WANT_STATUS]: `make TARGET CONFIG=...` as typed; its output is in $out.
mk() {
  local want="${2:-0}" rc=0
  echo "\$ make $1 CONFIG=$CONFIG"
  out="$(make -s -C "$ROOT" "$1" CONFIG="$CONFIG" 2>&1)" || rc=$?
  # The build's own lines (make build runs first for every target) are left out.
  printf '%s\n' "$out" | grep -v -e '^dist/comfy-sandbox (' -e '\.so' -e '^Building' -e '^Build complete' -e '^\[[0-9]' \
    | sed 's/^/    /' | head -n 60
  if [ "$rc" = "$want" ]; then pass "make $1 exited $rc"; return 0; fi
  flunk "make $1 exited $rc, want $want"
  return 1
}
record() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORLD/var/lib/comfy-sandbox/nodes/clean-node.json" "$1"; }
H="$WORLD/home/alice/workspace/ai"

set +e
mk plan && { [ ! -e "$H" ] && pass "plan changed nothing on disk" || flunk "plan created $H"; }
mk provision && {
  id comfyui_sandbox >/dev/null 2>&1 && pass "the sandbox user exists" || flunk "no sandbox user"
  [ "$(stat -c '%a %U:%G' "$H/output")" = "2775 alice:comfyshared" ] && pass "the output share is 2775 alice:comfyshared" || flunk "output share: $(stat -c '%a %U:%G' "$H/output")"
  [ -f "$WORLD/opt/comfy-sandbox/ComfyUI/main.py" ] && pass "ComfyUI is checked out at $rev" || flunk "no ComfyUI checkout"
}
mk plan && { printf '%s\n' "$out" | grep -q "nothing to do" && pass "after provision, plan has nothing to do" || flunk "plan still lists changes"; }
mk update-nodes && { [ -n "$(record current_sha)" ] && pass "clean-node is recorded at $(record current_sha | cut -c1-12)" || flunk "no record"; }
first="$(record current_sha)"
# Upstream moves: a new commit on the node's branch.
work="$(mktemp -d)"
git clone -q "$WORLD/git/served/clean-node.git" "$work" && echo "# v2" >> "$work/__init__.py" &&
  git -C "$work" -c user.name=w -c user.email=w@invalid commit -qam v2 && git -C "$work" push -q origin main
mk update-nodes && { [ "$(record current_sha)" = "$first" ] && pass "plain update-nodes keeps the node where it was" || flunk "update-nodes moved the node"; }
mk update-nodes-pull && { [ "$(record current_sha)" != "$first" ] && [ "$(record previous_sha)" = "$first" ] && pass "update-nodes-pull moved it to upstream's commit" || flunk "update-nodes-pull did not move it"; }
mk rollback-nodes && { [ "$(record current_sha)" = "$first" ] && [ "$(record status)" = rolled_back ] && pass "rollback-nodes put it back on $(echo "$first" | cut -c1-12)" || flunk "rollback-nodes: $(record status) $(record current_sha)"; }
mk update-comfyui
mk scan-nodes
setpriv --reuid=alice --regid=alice --init-groups sh -c "umask 077; echo notes > '$WORLD/home/alice/n.txt'; mv '$WORLD/home/alice/n.txt' '$H/input/n.txt'"
mk fix-permissions && { [ "$(stat -c '%a %G' "$H/input/n.txt")" = "664 comfyshared" ] && pass "fix-permissions repaired a moved-in file" || flunk "n.txt is $(stat -c '%a %G' "$H/input/n.txt")"; }
mk check-sandbox
mk start && {
  curl -fsS "http://127.0.0.1:$port/" >/dev/null && pass "the UI answers on 127.0.0.1:$port as soon as start returns" || flunk "no answer after start"
}
mk status && {
  printf '%s\n' "$out" | grep -q "ui: .* answers" && pass "status says the UI answers" || flunk "status has no ui line that answers"
  printf '%s\n' "$out" | grep -q "clean-node: [0-9a-f]\{12\}" && pass "status lists the node with its commit" || flunk "status does not list the node"
  printf '%s\n' "$out" | grep -q "commit: [0-9a-f]\{12\}" && pass "status gives ComfyUI's commit" || flunk "status has no ComfyUI commit"
}
mk logs
mk stop && { curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && flunk "the UI still answers after stop" || pass "the UI is gone after stop"; }
head -c 4096 /dev/urandom > "$H/models/m.safetensors"; chmod 0644 "$H/models/m.safetensors"
mk record-models && { [ -f "$WORLD/var/lib/comfy-sandbox/models.manifest.json" ] && pass "the manifest was written" || flunk "no manifest"; }
mk verify-models
echo tampered >> "$H/models/m.safetensors"
mk verify-models 2 && { printf '%s\n' "$out" | grep -q "m.safetensors" && pass "verify-models names the changed file (make passes on exit 3 as its status 2)" || flunk "verify-models did not name the file"; }
gid="$(getent group comfyshared | cut -d: -f3)"
mk uninstall && {
  id comfyui_sandbox >/dev/null 2>&1 && flunk "the sandbox user is still there" || pass "the sandbox user is gone"
  [ -d "$H/output" ] && pass "the shares and their data stay" || flunk "a share was removed"
  left="$(find "$WORLD/home/alice" -xdev -gid "$gid" 2>/dev/null | head -n 3; getfacl -R -n -p --physical "$WORLD/home/alice" 2>/dev/null | grep -m 3 ":$gid:")"
  [ -z "$left" ] && pass "nothing in alice's home keeps the removed group's gid $gid" || flunk "still naming gid $gid: $left"
}
echo
echo "make-targets: $passed passed, $failed failed"
[ "$failed" = 0 ]
