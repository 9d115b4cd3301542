#!/usr/bin/env bash
# P5: model hashing and verification speed.
#  1. SHA-256 of 2 x 2 GiB page-cached files: comfy-sandbox's hasher (the one
#     record-models/verify-models use, via `__internal hash`) against
#     sha256sum, openssl dgst -sha256 and b3sum (when installable), on one
#     file (one core) and on both files at once (two cores).
#     Goals: >= 1.5 GB/s on one core, >= 2.5 GB/s on two files.
#  2. verify-models of an unchanged 10,000-file share (trusted by stat: one
#     fstatat per file, no opens) against verify-models --rehash (reads and
#     hashes every byte). Goal: >= 1000x faster.
# Needs root (record-models writes root-owned state). Cleans up after itself.
set -uo pipefail
cd "$(dirname "$0")/.."
CS_BIN="${CS_BIN:-$PWD/.build/release/comfy-sandbox}"
[ -x "$CS_BIN" ] || { echo "P5: $CS_BIN missing; run swift build -c release"; exit 1; }

GIB=$((1 << 30))
FILE_BYTES=$((2 * GIB))
# tmpfs when it has room for 4 GiB, else the temp dir (page-cached by the warm-up read).
base=/dev/shm
[ "$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1)" -gt $((5 * GIB)) ] 2>/dev/null || base="${TMPDIR:-/tmp}"
work="$(mktemp -d "$base/cs-p5-XXXXXX")"
share_root="$(mktemp -d "${TMPDIR:-/tmp}/cs-p5-share-XXXXXX")"
cleanup() { rm -rf --one-file-system "$work" "$share_root"; }
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
# gbps BYTES SECONDS
gbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f", b / s / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# --- 1. the 2 x 2 GiB files ----------------------------------------------------
echo "P5: creating 2 x 2 GiB files in $work"
for i in 1 2; do
  # Pseudo-random content fast (AES-CTR keystream); hashing speed does not depend on it.
  if command -v openssl >/dev/null; then
    openssl enc -aes-128-ctr -pass pass:p5-$i -pbkdf2 -nosalt </dev/zero 2>/dev/null | head -c "$FILE_BYTES" >"$work/f$i.bin"
  else
    head -c "$FILE_BYTES" /dev/urandom >"$work/f$i.bin"
  fi
  cat "$work/f$i.bin" >/dev/null   # warm the page cache
done

if ! command -v b3sum >/dev/null; then
  (apt-get install -y -qq b3sum >/dev/null 2>&1) || true
fi

declare -A ONE TWO
# time_one NAME CMD...: one file on one core
time_one() {
  local name="$1"; shift
  local t0 t1; t0=$(now); "$@" "$work/f1.bin" >/dev/null 2>&1 || { echo "  $name: failed"; return; }; t1=$(now)
  ONE[$name]=$(gbps "$FILE_BYTES" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
}
# time_two NAME CMD...: both files, one process each, in parallel
time_two() {
  local name="$1"; shift
  local t0 t1; t0=$(now)
  "$@" "$work/f1.bin" >/dev/null 2>&1 & local p1=$!
  "$@" "$work/f2.bin" >/dev/null 2>&1 & local p2=$!
  wait $p1 && wait $p2 || { echo "  $name: failed"; return; }
  t1=$(now)
  TWO[$name]=$(gbps $((2 * FILE_BYTES)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
}

tools=("comfy-sandbox" "sha256sum" "openssl")
time_one comfy-sandbox "$CS_BIN" __internal hash --jobs 1
# ours on two files: one process, its worker pool takes a file per core
t0=$(now); "$CS_BIN" __internal hash --jobs 2 "$work/f1.bin" "$work/f2.bin" >/dev/null 2>&1; t1=$(now)
TWO[comfy-sandbox]=$(gbps $((2 * FILE_BYTES)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
time_one sha256sum sha256sum
time_two sha256sum sha256sum
time_one openssl openssl dgst -sha256
time_two openssl openssl dgst -sha256
if command -v b3sum >/dev/null; then
  tools+=("b3sum")
  time_one b3sum b3sum --num-threads 1
  time_two b3sum b3sum --num-threads 1
else
  echo "  (b3sum not installed and not installable: skipped)"
fi

echo "P5 hash, 2 GiB page-cached file, one core; 2 x 2 GiB, two files in parallel:"
for t in "${tools[@]}"; do
  printf "  %-14s one core %6s GB/s   two files %6s GB/s\n" "$t" "${ONE[$t]:-n/a}" "${TWO[$t]:-n/a}"
done
for t in "${tools[@]}"; do
  [ "$t" = comfy-sandbox ] && continue
  printf "  comfy-sandbox / %-10s one core %sx   two files %sx\n" "$t" \
    "$(ratio "${ONE[comfy-sandbox]:-0}" "${ONE[$t]:-0}")" "$(ratio "${TWO[comfy-sandbox]:-0}" "${TWO[$t]:-0}")"
done
awk -v a="${ONE[comfy-sandbox]:-0}" -v b="${TWO[comfy-sandbox]:-0}" 'BEGIN {
  printf "  goal one core >= 1.5 GB/s: %s (%.2f)\n", (a >= 1.5 ? "met" : "NOT met"), a
  printf "  goal two files >= 2.5 GB/s: %s (%.2f)\n", (b >= 2.5 ? "met" : "NOT met"), b }'
rm -f "$work"/f*.bin

# --- 2. verify of an unchanged 10,000-file share --------------------------------
N=10000
PER_FILE=$((6 << 20))   # 6 MiB each, sparse: 59 GiB to hash, no disk or RAM used
echo "P5: creating a $N-file share ($((N * PER_FILE / GIB)) GiB sparse) in $share_root"
mkdir -p "$share_root/models" "$share_root/state"
python3 - "$share_root/models" "$N" "$PER_FILE" <<'PY'
import os, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, f"dir{i // 100:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"model{i % 100:03d}.safetensors"), "wb") as f:
        f.truncate(size)
PY
user="$(getent passwd 1000 | cut -d: -f1)"; user="${user:-nobody}"
cat >"$share_root/config.json" <<JSON
{ "version": 1, "primary_user": "$user", "state_dir": "$share_root/state",
  "shares": [ { "name": "models", "path": "$share_root/models", "mount": "models", "access": "read-only" } ] }
JSON
CFG=(--config "$share_root/config.json")
t0=$(now); "$CS_BIN" record-models "${CFG[@]}" >/dev/null || { echo "  record-models failed"; exit 1; }; t1=$(now)
rec=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
sleep 0.1
# no-op verify: median of 11 runs (it is milliseconds)
times=()
for _ in $(seq 11); do
  t0=$(now); "$CS_BIN" verify-models "${CFG[@]}" >/dev/null || echo "  verify-models found a problem?"; t1=$(now)
  times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")
done
noop=$(printf "%s\n" "${times[@]}" | sort -g | sed -n 6p)
t0=$(now); "$CS_BIN" verify-models --rehash "${CFG[@]}" >/dev/null || echo "  verify-models --rehash found a problem?"; t1=$(now)
full=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
echo "P5 verify, $N files ($((N * PER_FILE / GIB)) GiB):"
awk -v r="$rec" -v n="$noop" -v f="$full" -v b=$((N * PER_FILE)) 'BEGIN {
  printf "  record-models           %8.3f s  (%.2f GB/s)\n", r, b / r / 1e9
  printf "  verify-models (no-op)   %8.4f s  (median of 11, whole command)\n", n
  printf "  verify-models --rehash  %8.3f s  (%.2f GB/s)\n", f, b / f / 1e9
  printf "  no-op vs --rehash: %.0fx faster; goal >= 1000x: %s\n", f / n, (f / n >= 1000 ? "met" : "NOT met") }'
