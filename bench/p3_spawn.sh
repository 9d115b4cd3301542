#!/usr/bin/env bash
# P3: cost of starting a confined process. `comfy-sandbox run -- /bin/true`
# (identity drop, empty bounding set, NNP, Landlock, seccomp, a fresh
# loopback-only network namespace, the constructed root with its init and
# cgroup) against bare /bin/true and against the anchors with comparable
# options: setpriv (identity + caps + NNP only), bwrap building a comparable
# root (all namespaces, caps dropped, new session) and firejail (caps,
# seccomp, NNP, no network). Goal: no slower than bwrap; stretch: setpriv.
cd "$(dirname "$0")/.."
source bench/launcher-world.sh
OUT="$BW/p3.json"
# bwrap building a root comparable to ours (RootLayout): the system and the
# /etc entries read-only, the venv-less stand-in ComfyUI, the shares with
# their access, the sandbox home, a fresh /proc and /dev, private tmpfs for
# /tmp, /dev/shm and /run, the /sys parts CUDA reads; all namespaces but the
# network (ours makes its loopback-only one ahead, on a thread).
BWRAP_ROOT="bwrap --unshare-all --share-net --die-with-parent --new-session --cap-drop ALL --uid $SB_UID --gid $SB_GID \
 --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/sbin /sbin --symlink usr/lib /lib --symlink usr/lib64 /lib64"
for e in hosts host.conf nsswitch.conf resolv.conf ld.so.cache ld.so.conf ld.so.conf.d ssl ca-certificates alternatives localtime passwd group; do
  [ -e "/etc/$e" ] && BWRAP_ROOT+=" --ro-bind /etc/$e /etc/$e"
done
BWRAP_ROOT+=" --ro-bind $BW/opt/comfy-sandbox/ComfyUI $BW/opt/comfy-sandbox/ComfyUI --bind $BW/opt/comfy-sandbox/ComfyUI/user $BW/opt/comfy-sandbox/ComfyUI/user"
BWRAP_ROOT+=" --ro-bind $W/models $W/models --bind $W/output $W/output --bind $BW/home/comfyui_sandbox $BW/home/comfyui_sandbox"
BWRAP_ROOT+=" --proc /proc --dev /dev --tmpfs /tmp --tmpfs /dev/shm --tmpfs /run --dir /run/jit"
for d in /sys/devices /sys/bus /sys/module /sys/class/drm /sys/kernel/mm/transparent_hugepage; do
  [ -e "$d" ] && BWRAP_ROOT+=" --ro-bind $d $d"
done
BWRAP_ROOT+=" /bin/true"
cmds=(
  "/bin/true"
  "$CS_BIN run --config $CONFIG -- /bin/true"
  "setpriv --reuid=$SB_UID --regid=$SB_GID --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs /bin/true"
  "$BWRAP_ROOT"
)
names=(bare comfy-sandbox setpriv bwrap)
if command -v firejail >/dev/null && firejail --quiet --noprofile --caps.drop=all --seccomp --nonewprivs --net=none /bin/true 2>/dev/null; then
  cmds+=("firejail --quiet --noprofile --caps.drop=all --seccomp --nonewprivs --net=none /bin/true")
  names+=(firejail)
fi
args=()
for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
# Rounds: hyperfine measures one command after another, and on a shared VM
# the host's load drifts within a run by more than the differences measured
# here. Each round measures every command; the figures are the medians of the
# rounds' means, and every round's own ratio to bwrap is printed too.
ROUNDS="${P3_ROUNDS:-3}"
for r in $(seq "$ROUNDS"); do
  in_world hyperfine -N --warmup 5 --runs "${P3_RUNS:-60}" --style none --export-json "$OUT.$r" "${args[@]}" >/dev/null 2>&1 \
    || in_world hyperfine -N --warmup 5 --runs "${P3_RUNS:-60}" --export-json "$OUT.$r" "${args[@]}"
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
rounds = [{x["command"]: x for x in json.load(open(f"{sys.argv[1]}.{r}"))["results"]} for r in range(1, int(sys.argv[2]) + 1)]
names = list(rounds[0])
ms = {k: statistics.median(r[k]["mean"] * 1000 for r in rounds) for k in names}
sd = {k: statistics.median(r[k]["stddev"] * 1000 for r in rounds) for k in names}
for k in names:
    print(f"P3 {k:14s} mean {ms[k]:7.2f} ms  ± {sd[k]:5.2f}   (median of {len(rounds)} rounds)")
cs = ms["comfy-sandbox"]
for anchor in ("bwrap", "setpriv", "firejail", "bare"):
    if anchor in ms:
        print(f"P3 comfy-sandbox / {anchor:8s} = {cs / ms[anchor]:5.2f}x")
print("P3 per-round comfy-sandbox / bwrap:", " ".join(f"{r['comfy-sandbox']['mean'] / r['bwrap']['mean']:.2f}" for r in rounds))
print("P3 goal (<= bwrap), hyperfine:", "MET" if cs <= ms["bwrap"] else "NOT MET")
PY

# The same two, alternated run by run in shuffled pairs: the host's load
# drifts within a hyperfine round by more than the difference measured, and
# pairing puts both sides of each comparison under the same load.
PAIRS="${P3_PAIRS:-300}"
in_world python3 - "$PAIRS" "${cmds[1]}" "${cmds[3]}" <<'PY'
import random, statistics, subprocess, sys, time
pairs, cs, bw = int(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
def once(argv):
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t
for argv in (cs, bw, cs, bw):
    once(argv)
a, b = [], []
for _ in range(pairs):
    if random.random() < 0.5:
        a.append(once(cs)); b.append(once(bw))
    else:
        b.append(once(bw)); a.append(once(cs))
ma, mb = statistics.median(a) * 1000, statistics.median(b) * 1000
wins = sum(x <= y for x, y in zip(a, b))
print(f"P3 alternated, {pairs} shuffled pairs, medians: comfy-sandbox {ma:.2f} ms, bwrap {mb:.2f} ms = {ma / mb:.2f}x "
      f"(comfy-sandbox faster in {wins} of {pairs} pairs)")
print("P3 goal (<= bwrap), alternated:", "MET" if ma <= mb else "NOT MET")
PY
