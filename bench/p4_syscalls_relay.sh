#!/usr/bin/env bash
# P4: the cost of the confinement for running code, and of the relay.
#  1. syscall-heavy Python under `comfy-sandbox run` vs unconfined: seccomp
#     and Landlock are on that path. Goal <= 1.02x. Timed inside the scripts
#     (interpreter start excluded). Two scripts: a loop of nothing but hooked
#     calls (getpid, stat, open+close), the worst case; and ComfyUI-like file
#     work (small JSON files written, walked, stat'ed, read back, deleted) in
#     RAM (on disk the journal's timing varies threefold from run to run and
#     hides what is measured). Beside both, the kernel's floor: unconfined
#     plus the cheapest use of each mechanism (a one-instruction allow-all
#     seccomp filter, a three-rule Landlock ruleset) installed by the script
#     itself, which no filter or ruleset can go below.
#  2. HTTP through the relay vs direct, against the stand-in ComfyUI: latency of
#     GET / (a new connection each) and throughput of a 10 MB /file.
cd "$(dirname "$0")/.."
source bench/launcher-world.sh
APP="$BW/opt/comfy-sandbox/ComfyUI"
# The floor, installed by the measured script itself (argv[1]).
cat > "$APP/floor.py" <<'PY'
import ctypes, os, sys

def install(mode):
    """The cheapest use of seccomp and/or Landlock: what the kernel charges
    for having any filter or any ruleset at all."""
    if mode not in ("seccomp", "landlock", "both"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.prctl(38, 1, 0, 0, 0) != 0:                      # PR_SET_NO_NEW_PRIVS
        sys.exit("no_new_privs failed")
    if mode in ("landlock", "both"):
        abi = libc.syscall(444, None, ctypes.c_size_t(0), 1)  # LANDLOCK_CREATE_RULESET_VERSION
        handled = (1 << 13) - 1
        if abi >= 2: handled |= 1 << 13                        # REFER
        if abi >= 3: handled |= 1 << 14                        # TRUNCATE
        if abi >= 5: handled |= 1 << 15                        # IOCTL_DEV
        attr = ctypes.c_uint64(handled)
        rs = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(8), 0)
        class Beneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]
        # Everything everywhere; /dev/null and /dev/shm get rules of their
        # own as the launcher's rules have them (a path's walk ends at the
        # nearest rule that grants all it asks).
        for path, rights in (("/", handled), ("/dev/shm", handled), ("/dev/null", 2 | 4 | (1 << 14) | (1 << 15))):
            rule = Beneath(rights & handled, os.open(path, os.O_PATH | os.O_CLOEXEC))
            if libc.syscall(445, rs, 1, ctypes.byref(rule), 0) != 0:
                sys.exit("landlock_add_rule failed")
        if libc.syscall(446, rs, 0) != 0:
            sys.exit("landlock_restrict_self failed")
    if mode in ("seccomp", "both"):
        class Insn(ctypes.Structure):
            _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]
        insns = (Insn * 1)(Insn(0x06, 0, 0, 0x7FFF0000))     # BPF_RET|BPF_K SECCOMP_RET_ALLOW
        if libc.prctl(22, 2, ctypes.byref(Prog(1, insns)), 0, 0) != 0:   # PR_SET_SECCOMP, FILTER
            sys.exit("seccomp failed")
PY
LOOP="$APP/loop.py"
cat > "$LOOP" <<'PY'
import os, sys, time
import floor
floor.install(sys.argv[2] if len(sys.argv) > 2 else "")   # argv[1] is a placeholder
N = int(os.environ.get("P4_N", "100000"))
best = None
for _ in range(5):
    t = time.perf_counter()
    for _ in range(N):
        os.getpid(); os.stat("/usr"); os.close(os.open("/dev/null", os.O_RDONLY))
    d = time.perf_counter() - t
    best = d if best is None else min(best, d)
print(best)
PY
chmod 644 "$APP"/*.py
# The three alternated (A B C A B C ...), each one's best kept: on a shared
# machine the load changes faster than a single long run can average out.
# $1 names the figure; the rest is the script and its arguments.
compare() {
  local what="$1"; shift
  local bare=999 conf=999 flo=999 b c f
  for _ in $(seq "${P4_ROUNDS:-4}"); do
    b=$(in_world setpriv --reuid="$SB_UID" --regid="$SB_GID" --init-groups /usr/bin/python3 "$@")
    c=$(in_world "$CS_BIN" run --config "$CONFIG" -- /usr/bin/python3 "$@" 2>/dev/null)
    f=$(in_world setpriv --reuid="$SB_UID" --regid="$SB_GID" --init-groups /usr/bin/python3 "$@" both)
    bare=$(python3 -c "print(min($bare, $b))"); conf=$(python3 -c "print(min($conf, $c))"); flo=$(python3 -c "print(min($flo, $f))")
  done
  python3 -c "b=$bare; c=$conf; f=$flo; print(f'P4 {\"$what\"}: unconfined {b:.3f} s, confined {c:.3f} s, ratio {c/b:.3f}x (goal <= 1.02: {\"MET\" if c/b <= 1.02 else \"NOT MET\"}); kernel floor {f:.3f} s = {f/b:.3f}x, confined / floor {c/f:.3f}')"
}
compare "syscall loop (worst case)" "$LOOP" -

# The file-work script, in a RAM directory the sandbox user owns (the launcher
# allows /dev/shm; ComfyUI's own temp is there too).
WALK="$APP/walk.py"
cat > "$WALK" <<'PY'
import os, sys, time, json
import floor
root = sys.argv[1]
floor.install(sys.argv[2] if len(sys.argv) > 2 else "")
best = None
for r in range(5):
    d = os.path.join(root, f"p4-{os.getpid()}-{r}")
    t = time.perf_counter()
    for i in range(20):
        os.makedirs(os.path.join(d, f"dir{i}"), exist_ok=True)
        for j in range(50):
            with open(os.path.join(d, f"dir{i}", f"f{j}.json"), "w") as f:
                json.dump({"i": i, "j": j, "prompt": "a photo of a cat"}, f)
    n = 0
    for dirpath, dirnames, filenames in os.walk(d):
        for name in filenames:
            p = os.path.join(dirpath, name)
            os.stat(p)
            with open(p) as f:
                n += json.load(f)["j"]
    for dirpath, dirnames, filenames in os.walk(d, topdown=False):
        for name in filenames: os.unlink(os.path.join(dirpath, name))
        os.rmdir(dirpath)
    best = min(best or 9e9, time.perf_counter() - t)
print(best)
PY
chmod 644 "$WALK"
RAMDIR="$(mktemp -d /dev/shm/cs-p4-XXXXXX)"
chown "$SB_UID" "$RAMDIR"
trap 'rm -rf --one-file-system "$BW" "$RAMDIR"' EXIT
compare "file work (1,000 JSON files written, walked, read, deleted, in RAM)" "$WALK" "$RAMDIR"
rm -rf --one-file-system "$RAMDIR"
trap 'rm -rf --one-file-system "$BW"' EXIT

# Where the difference goes: each call of the loop timed alone (ns per call),
# unconfined, confined, and confined with Landlock or seccomp switched off;
# then the kernel's floor: unconfined plus a one-instruction allow-all seccomp
# filter, or a three-rule Landlock ruleset, installed by the script itself. What
# the floor costs, no filter or ruleset can avoid.
OPS="$APP/ops.py"
cat > "$OPS" <<'PY'
import os, sys, time
import floor
N = 200000

def best(f):
    b = 9.0
    for _ in range(5):
        t = time.perf_counter(); f(); b = min(b, time.perf_counter() - t)
    return b * 1e9 / N
def getpid():
    for _ in range(N): os.getpid()
def stat():
    for _ in range(N): os.stat("/usr")
def openclose():
    for _ in range(N): os.close(os.open("/dev/null", os.O_RDONLY))
floor.install(sys.argv[1] if len(sys.argv) > 1 else "")
print(" ".join(f"{best(f):.0f}" for f in (getpid, stat, openclose)))
PY
chmod 644 "$OPS"
python3 - "$CONFIG" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for name, ll, sc in (("no-landlock", False, True), ("no-seccomp", True, False)):
    d = json.loads(json.dumps(c)); d["launcher"]["landlock"] = ll; d["launcher"]["seccomp"] = sc
    json.dump(d, open(sys.argv[1].replace("config.json", f"config-{name}.json"), "w"))
PY
# Interleaved rounds, each configuration's best per call kept (as above).
ops_bare=""; ops_conf=""; ops_noll=""; ops_nosc=""; ops_fsc=""; ops_fll=""
for _ in $(seq "${P4_ROUNDS:-4}"); do
  ops_bare+="$(in_world setpriv --reuid="$SB_UID" --regid="$SB_GID" --clear-groups /usr/bin/python3 "$OPS");"
  ops_fsc+="$(in_world setpriv --reuid="$SB_UID" --regid="$SB_GID" --clear-groups /usr/bin/python3 "$OPS" seccomp);"
  ops_fll+="$(in_world setpriv --reuid="$SB_UID" --regid="$SB_GID" --clear-groups /usr/bin/python3 "$OPS" landlock);"
  ops_conf+="$(in_world "$CS_BIN" run --config "$CONFIG" -- /usr/bin/python3 "$OPS" 2>/dev/null);"
  ops_noll+="$(in_world "$CS_BIN" run --config "$BW/config-no-landlock.json" -- /usr/bin/python3 "$OPS" 2>/dev/null);"
  ops_nosc+="$(in_world "$CS_BIN" run --config "$BW/config-no-seccomp.json" -- /usr/bin/python3 "$OPS" 2>/dev/null);"
done
python3 - "$ops_bare" "$ops_conf" "$ops_noll" "$ops_nosc" "$ops_fsc" "$ops_fll" <<'PY'
import sys
def best(runs):
    rs = [list(map(float, r.split())) for r in runs.split(";") if r.strip()]
    return [min(col) for col in zip(*rs)]
rows = [best(a) for a in sys.argv[1:]]
names = ("unconfined", "confined", "no Landlock", "no seccomp", "seccomp floor", "Landlock floor")
print("P4 ns per call        getpid    stat  open+close")
for n, r in zip(names, rows):
    print(f"P4   {n:14s} {r[0]:8.0f} {r[1]:7.0f} {r[2]:10.0f}")
b, c, nl, ns, fsc, fll = rows
print(f"P4   seccomp's share (confined - no seccomp): getpid {c[0]-ns[0]:+.0f}, stat {c[1]-ns[1]:+.0f}, open+close {c[2]-ns[2]:+.0f} ns")
print(f"P4   Landlock's share (confined - no Landlock): getpid {c[0]-nl[0]:+.0f}, stat {c[1]-nl[1]:+.0f}, open+close {c[2]-nl[2]:+.0f} ns")
print(f"P4   the kernel's floor, unconfined + the cheapest use of one mechanism:")
print(f"P4     any seccomp filter (one allow-all instruction): getpid {fsc[0]-b[0]:+.0f}, stat {fsc[1]-b[1]:+.0f}, open+close {fsc[2]-b[2]:+.0f} ns")
print(f"P4     any Landlock ruleset (/, /dev/shm, /dev/null): getpid {fll[0]-b[0]:+.0f}, stat {fll[1]-b[1]:+.0f}, open+close {fll[2]-b[2]:+.0f} ns")
extra = [c[i] - b[i] - (fsc[i] - b[i]) - (fll[i] - b[i]) for i in range(3)]
print(f"P4     what the launcher's filter and rules add beyond both floors: getpid {extra[0]:+.0f}, stat {extra[1]:+.0f}, open+close {extra[2]:+.0f} ns")
PY

# HTTP: the stand-in under `launch` (relay) and the same stand-in unconfined.
DIRECT_PORT=$((BENCH_PORT + 1))
in_world "$CS_BIN" launch --config "$CONFIG" >"$BW/launch.log" 2>&1 &
/usr/bin/python3 fixtures/comfyui-standin/main.py --listen 127.0.0.1 --port "$DIRECT_PORT" >/dev/null 2>&1 &
direct_pid=$!
cleanup_http() { in_world "$CS_BIN" stop --config "$CONFIG" >/dev/null 2>&1 || true; kill "$direct_pid" 2>/dev/null || true; }
trap 'cleanup_http; rm -rf --one-file-system "$BW"' EXIT
python3 - "$BENCH_PORT" "$DIRECT_PORT" <<'PY'
import socket, sys, time
relay, direct = int(sys.argv[1]), int(sys.argv[2])
def get(port, path, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    n = 0
    while True:
        b = s.recv(1 << 20)
        if not b: break
        n += len(b)
    s.close()
    return n
for port in (relay, direct):
    for _ in range(100):
        try:
            if get(port, "/") > 0: break
        except OSError:
            time.sleep(0.1)
def latency(port, n=200):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); get(port, "/"); ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2] * 1000
def throughput(port, n=10, size=10 * 1024 * 1024):
    t = time.perf_counter()
    for _ in range(n):
        assert get(port, f"/file/{size}") >= size
    return n * size / (time.perf_counter() - t) / 1e6
lr, ld = latency(relay), latency(direct)
tr, td = throughput(relay), throughput(direct)
print(f"P4 GET / median latency: relay {lr:.2f} ms, direct {ld:.2f} ms, ratio {lr/ld:.2f}x")
print(f"P4 10 MB throughput: relay {tr:.0f} MB/s, direct {td:.0f} MB/s, ratio {tr/td:.2f}x")
PY
