#!/usr/bin/env bash
# GPU: a bf16 matmul and a short torch training loop under `comfy-sandbox run`
# vs unconfined (the same sandbox user, same environment, no confinement),
# alternated in rounds, medians compared. Goal: >= 0.99x. Also runs check-sandbox on
# this machine's kernel and GPU. Skipped, and says so, on a machine without an
# NVIDIA GPU or without a Python that imports torch (GPU_PYTHON picks one).
cd "$(dirname "$0")/.."
if [ ! -e /dev/nvidiactl ] && ! command -v nvidia-smi >/dev/null 2>&1 && [ "${GPU_FORCE:-}" != 1 ]; then
  echo "GPU: no NVIDIA GPU on this machine: skipped (the GPU figures need one)"
  exit 0
fi
PY="${GPU_PYTHON:-}"
if [ -z "$PY" ]; then
  for p in python3 /opt/conda/bin/python /usr/local/bin/python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c "import torch" 2>/dev/null; then PY="$(command -v "$p")"; break; fi
  done
fi
if [ -z "$PY" ]; then
  echo "GPU: no Python that imports torch (set GPU_PYTHON): skipped"
  exit 0
fi
# Not resolved: a venv's python is a symlink out of the venv, which it needs.
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L | sed 's/^/GPU device: /'
echo "GPU python: $PY ($("$PY" -c 'import torch, sys; print("torch", torch.__version__, "CUDA", torch.version.cuda, "python", sys.version.split()[0])' 2>&1))"
# Landlock's ABI, asked of the kernel (landlock_create_ruleset's version query).
abi=$(python3 -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); l.syscall.restype = ctypes.c_long; print(l.syscall(444, None, ctypes.c_size_t(0), 1))' 2>/dev/null || echo -1)
[ "${abi:--1}" -ge 1 ] 2>/dev/null && LANDLOCK=true || LANDLOCK=best-effort
unshare --net true 2>/dev/null && NETWORK=loopback-only || NETWORK=host
echo "GPU kernel $(uname -r): Landlock ABI ${abi} (launcher.landlock ${LANDLOCK}), network ${NETWORK}"

source bench/launcher-world.sh
python3 - "$CONFIG" "$PY" "$LANDLOCK" "$NETWORK" <<'PY'
import json, sys
path, py, landlock, network = sys.argv[1:]
c = json.load(open(path))
c["comfyui"]["python"] = py
c["launcher"].update({"gpu": "auto", "network": network, "landlock": True if landlock == "true" else landlock})
json.dump(c, open(path, "w"))
PY
APP="$BW/opt/comfy-sandbox/ComfyUI"
cat > "$APP/gpu.py" <<'PY'
import json, os, sys, time
try:
    import torch
except Exception as e:
    print(json.dumps({"error": f"import torch: {e}"})); sys.exit(0)
if not torch.cuda.is_available():
    print(json.dumps({"error": "torch.cuda.is_available() is False"})); sys.exit(0)
dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = True

def best_of(rounds, fn):
    fn()                                   # warm-up (kernels, cuBLAS handles)
    torch.cuda.synchronize()
    best = None
    for _ in range(rounds):
        t = time.perf_counter(); fn(); torch.cuda.synchronize()
        d = time.perf_counter() - t
        best = d if best is None else min(best, d)
    return best

n, iters = 8192, 50
a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
def mm():
    for _ in range(iters): a @ b
tflops = 2 * n ** 3 * iters / best_of(5, mm) / 1e12

# A short training loop: a small conv net, forward + backward + SGD step, in
# bf16 autocast, the kind of mixed work (many small kernels, Python between
# them) where a slower launch path or syscall would show.
model = torch.nn.Sequential(
    torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(64, 128, 3, padding=1, stride=2), torch.nn.ReLU(),
    torch.nn.Conv2d(128, 128, 3, padding=1, stride=2), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 1000)).to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(64, 3, 224, 224, device=dev)
y = torch.randint(0, 1000, (64,), device=dev)
steps = 30
def train():
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
steps_per_s = steps / best_of(3, train)
print(json.dumps({"device": torch.cuda.get_device_name(0), "tflops": tflops, "steps_per_s": steps_per_s,
                  "visible": os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")}))
PY
chmod 644 "$APP/gpu.py"
SB_HOME="$BW/home/comfyui_sandbox"
# The launcher's environment, minus the confinement: same GPUs visible (auto:
# every /dev/nvidiaN), same caches.
visible=$(ls /dev | sed -n 's/^nvidia\([0-9][0-9]*\)$/\1/p' | sort -n | paste -sd, -)
bare_env=(env -i HOME="$SB_HOME" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PYTHONNOUSERSITE=1
          CUDA_VISIBLE_DEVICES="$visible" CUDA_CACHE_PATH="$SB_HOME/.nv/ComputeCache" TRITON_CACHE_DIR="$SB_HOME/.triton")
unconfined() { in_world setpriv --reuid="$SB_UID" --regid="$SB_GID" --init-groups "${bare_env[@]}" "$PY" "$APP/gpu.py" 2>&1 | tail -1; }
confined() { in_world "$CS_BIN" run --config "$CONFIG" -- "$PY" "$APP/gpu.py" 2>"$BW/run.err" | tail -1; }
# Rounds alternate which side goes first, with a pause before each run: a
# GPU's clocks follow its temperature and power, so the side that always ran
# second on a warmer card would lose a few percent for nothing it did.
results=()
for r in $(seq "${GPU_ROUNDS:-4}"); do
  sleep "${GPU_PAUSE:-3}"
  if [ $((r % 2)) = 1 ]; then u=$(unconfined); sleep "${GPU_PAUSE:-3}"; c=$(confined)
  else c=$(confined); sleep "${GPU_PAUSE:-3}"; u=$(unconfined); fi
  echo "GPU round $r unconfined: $u"
  echo "GPU round $r confined:   $c"
  results+=("$u" "$c")
done
sed 's/^/GPU run stderr: /' "$BW/run.err" | head -5
status=0
python3 - "${results[@]}" <<'PY' || status=$?
import json, sys
rows = [json.loads(s) if s.startswith("{") else {"error": s} for s in sys.argv[1:]]
bare, conf = rows[0::2], rows[1::2]
errors = [r["error"] for r in rows if "error" in r]
if errors:
    print("GPU: could not measure:", errors[0]); sys.exit(1)
import statistics
for k, what in (("tflops", "bf16 matmul 8192^3, TFLOPS"), ("steps_per_s", "conv net training steps/s")):
    bs, cs = [r[k] for r in bare], [r[k] for r in conf]
    b, c = statistics.median(bs), statistics.median(cs)
    print(f"GPU {what}: unconfined {b:.1f}, under run {c:.1f} (medians of {len(bs)} rounds), ratio {c / b:.3f}x "
          f"(goal >= 0.99: {'MET' if c / b >= 0.99 else 'NOT MET'}); best of each {max(cs) / max(bs):.3f}x")
print(f"GPU device: {conf[0]['device']}; CUDA_VISIBLE_DEVICES under run: {conf[0]['visible']}")
PY
echo "GPU check-sandbox on this machine:"
in_world "$CS_BIN" check-sandbox --config "$CONFIG" 2>&1 | tail -4 | sed 's/^/  /' || true
in_world "$CS_BIN" status --config "$CONFIG" 2>&1 | grep -iE "seccomp|landlock|gpu|network" | head -8 | sed 's/^/  status: /' || true
exit $status
