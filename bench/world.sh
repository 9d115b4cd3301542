# Sourced by the benchmarks: runs the calling script inside a throwaway world
# (a private mount namespace with a temporary copy of /etc bind-mounted over
# /etc, temp dirs for homes and data), so useradd, groupadd and Ansible's user
# module change only the copy and the host stays untouched.
#   enter_world "$@"     # re-executes the script inside the world; sets WORLD
#   world_config NAME PRIMARY SHARE_PATH...   # writes $WORLD/NAME.json
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/world-lib.sh"
enter_world() {
  world_reexec CS_WORLD_INSIDE "$@"
  WORLD="$(mktemp -d /tmp/cs-bench.XXXXXX)"
  chmod 0755 "$WORLD"
  export WORLD
  world_bind_etc "$WORLD"
  mkdir -p "$WORLD/home" "$WORLD/opt" "$WORLD/data"
  chmod 0755 "$WORLD/home" "$WORLD/opt" "$WORLD/data"
  trap 'umount /etc 2>/dev/null; rm -rf --one-file-system "$WORLD"' EXIT
}

# mean seconds of a hyperfine JSON export
hf_mean() { python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["results"][0]["mean"])' "$1"; }
ratio() { python3 -c 'import sys; print("%.1f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
