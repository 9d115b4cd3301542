#!/usr/bin/env bash
# P6: 20 custom nodes served by a local `git daemon`.
#  - update-nodes from empty vs a plain sequential `git clone` loop of the same repos (ratio; goal <= 0.5)
#  - a no-op update-nodes (every pinned commit present; goal <= 100 ms, no network)
# Runs in a throwaway world: a private mount namespace with a tmp copy of /etc bound over /etc.
set -euo pipefail
cd "$(dirname "$0")/.."
CS_BIN="${CS_BIN:-$PWD/dist/comfy-sandbox}"
N="${P6_NODES:-20}"
RUNS="${P6_RUNS:-3}"
[ -x "$CS_BIN" ] || { echo "P6: $CS_BIN missing (make build)"; exit 1; }

T=$(mktemp -d /tmp/cs-p6-XXXXXX); chmod 755 "$T"
DAEMON_PID=""
cleanup() { [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null; wait 2>/dev/null; rm -rf --one-file-system "$T"; }
trap cleanup EXIT
export HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1
source scripts/world-lib.sh
world_copy_etc "$T"
mkdir -p "$T/served" "$T/work" "$T/opt/ComfyUI" "$T/state"
chmod 755 "$T/opt" "$T/opt/ComfyUI"

# 20 small node repos: 3 commits of 12 files each (~40 files, ~150 KB per repo).
python3 - "$T/work" "$N" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    for c in (1, 2, 3):
        d = os.path.join(root, f"node{i:02d}", f"c{c}")
        os.makedirs(d, exist_ok=True)
        for f in range(12):
            r = random.Random(i * 1000 + c * 100 + f)
            with open(os.path.join(d, f"mod_{f}.py"), "w") as fh:
                fh.write("\n".join("x%d = %r" % (k, r.random()) for k in range(150)) + "\n")
PY
for i in $(seq -w 1 "$N"); do
  w="$T/work/node$i"
  git init -q --bare -b main "$T/served/node$i.git"
  git init -q -b main "$w"
  for c in 1 2 3; do
    git -C "$w" add "c$c"
    git -C "$w" -c user.name=b -c user.email=b@x commit -q -m "commit $c"
  done
  git -C "$w" push -q "$T/served/node$i.git" HEAD:main
done

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/lib/git-core/git-daemon --listen=127.0.0.1 --port="$PORT" --base-path="$T/served" --export-all \
  --enable=upload-pack --informative-errors --reuseaddr "$T/served" >/dev/null 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done

CONFIG="$T/config.json"
python3 - "$T" "$PORT" "$N" > "$CONFIG" <<'PY'
import json, sys
t, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(json.dumps({
  "version": 1, "primary_user": "alice", "state_dir": f"{t}/state",
  "comfyui": {"repo": f"git://127.0.0.1:{port}/node01.git", "rev": "main", "path": f"{t}/opt/ComfyUI", "install_requirements": False},
  "shares": [],
  "custom_nodes": [{"name": f"node{i:02d}", "repo": f"git://127.0.0.1:{port}/node{i:02d}.git", "rev": "main"} for i in range(1, n + 1)],
  "git": {"allowed_protocols": ["git"]},
}))
PY

in_world() { world_run "$T" "$@"; }
now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

clone_times=(); ours_times=()
for r in $(seq "$RUNS"); do
  rm -rf "$T/clones"; mkdir -p "$T/clones"
  s=$(now_ms)
  for i in $(seq -w 1 "$N"); do git clone -q "git://127.0.0.1:$PORT/node$i.git" "$T/clones/node$i"; done
  clone_times+=($(( $(now_ms) - s )))

  rm -rf "$T/opt/ComfyUI/custom_nodes" "$T/state/nodes"
  s=$(now_ms)
  in_world "$CS_BIN" update-nodes --config "$CONFIG" >/dev/null
  ours_times+=($(( $(now_ms) - s )))
done
clone_ms=$(printf '%s\n' "${clone_times[@]}" | median)
ours_ms=$(printf '%s\n' "${ours_times[@]}" | median)

# For reference: the clone loop with the object checks every fetch of ours does.
rm -rf "$T/clones"; mkdir -p "$T/clones"
s=$(now_ms)
for i in $(seq -w 1 "$N"); do git -c transfer.fsckObjects=true clone -q "git://127.0.0.1:$PORT/node$i.git" "$T/clones/node$i"; done
fsck_clone_ms=$(( $(now_ms) - s ))

# No-op: every pinned commit present; timed inside one world so unshare is not counted.
noop=$(in_world /bin/bash -c '
  for r in $(seq 20); do
    s=$(date +%s%N); "$0" update-nodes --config "$1" >/dev/null; e=$(date +%s%N)
    echo $(( (e - s) / 1000000 ))
  done' "$CS_BIN" "$CONFIG" | sort -n)
noop_ms=$(echo "$noop" | median)
noop_max=$(echo "$noop" | tail -1)

# Prove the no-op touched no network: stop the daemon and run it again.
kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""
offline=$(in_world "$CS_BIN" update-nodes --config "$CONFIG" | grep -c up_to_date || true)

ratio=$(awk -v a="$ours_ms" -v b="$clone_ms" 'BEGIN {printf "%.2f", a / b}')
# Per-run ratios too: each pair ran back to back, so load from elsewhere hits both alike.
pair_ratios=$(for k in "${!ours_times[@]}"; do awk -v a="${ours_times[$k]}" -v b="${clone_times[$k]}" 'BEGIN {printf "%.2f\n", a / b}'; done)
pair_median=$(echo "$pair_ratios" | median)
echo "P6 update-nodes from empty, $N nodes: ${ours_ms} ms (median of $RUNS; runs: ${ours_times[*]})"
echo "P6 sequential git clone loop, $N repos: ${clone_ms} ms (median of $RUNS; runs: ${clone_times[*]})"
echo "P6 ratio update-nodes / clone loop: $ratio of medians, $pair_median median of per-run ratios ($(echo $pair_ratios)) (goal <= 0.5)"
echo "P6 (reference) sequential clone loop with transfer.fsckObjects=true, as every fetch of ours: ${fsck_clone_ms} ms (one run)"
echo "P6 machine load while measuring: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "P6 no-op update-nodes: median ${noop_ms} ms, max ${noop_max} ms over 20 runs (goal <= 100 ms)"
echo "P6 no-op with the git daemon stopped: $offline/$N nodes up_to_date (no network needed)"
