#!/usr/bin/env bash
# make demo: the whole flow offline in a throwaway world that touches nothing
# on the host.
#
# The world is a private mount namespace (unshare --mount --propagation
# private) in which a temporary copy of /etc is bind-mounted over /etc, so
# useradd/groupadd change only the copy; homes, shares, ComfyUI and state live
# in a temporary directory. A stand-in ComfyUI repository (fixtures/) is served
# over a local `git daemon` on 127.0.0.1. Every scripts/demo.d/*.sh then runs
# in order with these variables exported:
#   CS_BIN  WORLD  CONFIG  COMFY_SANDBOX_CONFIG  GIT_BASE_URL  DEMO_USER
#   SANDBOX_USER  SHARED_GROUP
# Each prints PASS/FAIL lines; the demo exits non-zero when any step fails.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CS_BIN="${CS_BIN:-$ROOT/dist/comfy-sandbox}"

source "$ROOT/scripts/world-lib.sh"
world_require_root
if [ ! -x "$CS_BIN" ]; then
  echo "demo: $CS_BIN is missing; run: make build (or set CS_BIN)" >&2
  exit 1
fi

world_reexec CS_DEMO_INSIDE "$@"

WORLD="$(mktemp -d /tmp/comfy-sandbox-demo.XXXXXX)"
chmod 0755 "$WORLD"
export WORLD
GIT_DAEMON_PID=""
cleanup() {
  [ -n "$GIT_DAEMON_PID" ] && kill "$GIT_DAEMON_PID" 2>/dev/null || true
  umount /etc 2>/dev/null || true
  rm -rf --one-file-system "$WORLD"
}
trap cleanup EXIT

echo "== world: $WORLD (private mount namespace, own /etc)"
world_bind_etc "$WORLD"
mkdir -p "$WORLD/home" "$WORLD/opt"
chmod 0755 "$WORLD/home" "$WORLD/opt"

export DEMO_USER=demo SANDBOX_USER=comfyui_sandbox SHARED_GROUP=comfyshared
world_add_user "$DEMO_USER"
echo "== demo primary user: $DEMO_USER ($WORLD/home/$DEMO_USER, 0700)"

# The stand-in ComfyUI as a git repository, served read-only on loopback.
mkdir -p "$WORLD/git"
world_git_repo "$ROOT/fixtures/comfyui-standin" "$WORLD/git/ComfyUI.git" v0.0.1-standin
world_git_daemon "$WORLD/git"
export GIT_BASE_URL
echo "== stand-in ComfyUI served at $GIT_BASE_URL/ComfyUI.git"

H="$WORLD/home/$DEMO_USER/workspace/ai"
export CONFIG="$WORLD/config.json"
export COMFY_SANDBOX_CONFIG="$CONFIG"
cat >"$CONFIG" <<JSON
{
  "version": 1,
  "primary_user": "$DEMO_USER",
  "sandbox_user": { "name": "$SANDBOX_USER", "home": "$WORLD/home/$SANDBOX_USER" },
  "shared_group": { "name": "$SHARED_GROUP" },
  "state_dir": "$WORLD/state",
  "comfyui": { "repo": "$GIT_BASE_URL/ComfyUI.git", "rev": "main", "path": "$WORLD/opt/comfy-sandbox/ComfyUI",
               "python": "/usr/bin/python3", "install_requirements": false },
  "shares": [
    { "name": "models",    "path": "$H/models",          "mount": "models",                 "access": "read-only" },
    { "name": "workflows", "path": "$H/comfy/workflows", "mount": "user/default/workflows", "access": "read-write" },
    { "name": "input",     "path": "$H/input",           "mount": "input",                  "access": "read-write" },
    { "name": "output",    "path": "$H/output",          "mount": "output",                 "access": "read-write" }
  ],
  "custom_nodes": [],
  "git": { "allowed_protocols": ["git"] },
  "launcher": { "listen": "127.0.0.1", "port": 8188 }
}
JSON
echo "== config: $CONFIG"

status=0
for step in "$ROOT"/scripts/demo.d/*.sh; do
  [ -f "$step" ] || continue
  echo
  echo "######## $(basename "$step")"
  if ! bash "$step"; then
    echo "!!! $(basename "$step") failed"
    status=1
  fi
done
echo
if [ "$status" = 0 ]; then echo "demo: every step passed"; else echo "demo: some steps FAILED"; fi
exit "$status"
