# Sourced by bench/p3_spawn.sh and bench/p4_syscalls_relay.sh: a throwaway
# world (a copy of /etc bind-mounted in a private mount namespace, temp homes
# and shares) with the sandbox accounts, so the benches never touch the host.
# Usage: source it, then `in_world CMD...` runs CMD inside that namespace.
set -euo pipefail
CS_BIN="${CS_BIN:-$PWD/dist/comfy-sandbox}"
[ -x "$CS_BIN" ] || { echo "no comfy-sandbox binary at $CS_BIN (make build)" >&2; exit 1; }
BW="$(mktemp -d /tmp/cs-bench-XXXXXX)"
chmod 755 "$BW"
trap 'rm -rf --one-file-system "$BW"' EXIT
source scripts/world-lib.sh
world_copy_etc "$BW"
mkdir -p "$BW/home" "$BW/state" "$BW/opt/comfy-sandbox/ComfyUI/user"
chmod 755 "$BW/home" "$BW/opt" "$BW/opt/comfy-sandbox"
cp fixtures/comfyui-standin/main.py "$BW/opt/comfy-sandbox/ComfyUI/main.py"
BENCH_PORT="${BENCH_PORT:-18911}"
W="$BW/home/alice/workspace/ai"
cat > "$BW/config.json" <<JSON
{"version":1,"primary_user":"alice","sandbox_user":{"name":"comfyui_sandbox","home":"$BW/home/comfyui_sandbox"},
 "shared_group":{"name":"comfyshared"},"state_dir":"$BW/state",
 "comfyui":{"repo":"https://example.invalid/ComfyUI.git","rev":"main","path":"$BW/opt/comfy-sandbox/ComfyUI","python":"/usr/bin/python3","install_requirements":false},
 "shares":[{"name":"models","path":"$W/models","mount":"models","access":"read-only"},
           {"name":"output","path":"$W/output","mount":"output","access":"read-write"}],
 "custom_nodes":[],"launcher":{"port":$BENCH_PORT}}
JSON
CONFIG="$BW/config.json"
in_world() { world_run "$BW" "$@"; }
in_world sh -c "
  groupadd comfyshared
  useradd -m -d $BW/home/alice -s /bin/bash -U alice && chmod 711 $BW/home/alice && usermod -aG comfyshared alice
  useradd -m -d $BW/home/comfyui_sandbox -s /usr/sbin/nologin -U -G comfyshared comfyui_sandbox && chmod 700 $BW/home/comfyui_sandbox
  mkdir -p $W/models $W/output && chown -R alice:comfyshared $BW/home/alice/workspace
  chmod 755 $BW/home/alice/workspace $W && chmod 2755 $W/models && chmod 2775 $W/output
"
SB_UID="$(awk -F: '$1=="comfyui_sandbox"{print $3}' "$BW/etc/passwd")"
SB_GID="$(awk -F: '$1=="comfyui_sandbox"{print $4}' "$BW/etc/passwd")"
