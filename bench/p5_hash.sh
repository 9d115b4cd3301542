#!/usr/bin/env bash
# P5: model hashing and verification speed.
#  1. SHA-256 of 2 x 2 GiB page-cached files: comfy-sandbox's hasher (the one
#     record-models/verify-models use, via `__internal hash`) against
#     sha256sum, openssl dgst -sha256 and b3sum (installed if apt can), on one
#     file (one core) and on both files at once (two cores).
#     Goals: >= 1.5 GB/s on one core, >= 2.5 GB/s on two files.
#  2. verify-models of an unchanged 10,000-file share (trusted by stat: one
#     fstatat per file, no opens) against verify-models --rehash (reads and
#     hashes every byte). Goal: >= 1000x faster.
# Needs root (record-models writes root-owned state). Cleans up after itself.
# Timings are wall clock: on a busy machine every figure drops, the ratios less.
set -uo pipefail
cd "$(dirname "$0")/.."
CS_BIN="${CS_BIN:-$PWD/dist/comfy-sandbox}"
[ -x "$CS_BIN" ] || { echo "P5: $CS_BIN missing; run swift build -c release"; exit 1; }
GIB=$((1 << 30))

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
gbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f", b / s / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# --- 2. (run first in its own process, see the bottom) ---------------------------
# The share lies on a private tmpfs in a private mount namespace: its files are
# sparse (no machine holds 100+ GiB of models in RAM), and tmpfs hands out
# holes as the zero page where a disk file system would fill the page cache
# with zeroes and evict everyone else's.
verify_part() {
  # 10,000 files of 12 MiB: 117 GiB to hash (P5_FILES, P5_FILE_MIB for a quick try)
  local root="$1" N="${P5_FILES:-10000}" PER_FILE=$(( ${P5_FILE_MIB:-12} << 20 ))
  mkdir -p "$root/models" "$root/state"
  mount -t tmpfs -o size=256m,mode=0755 cs-p5 "$root/models" 2>/dev/null || echo "  (no private tmpfs: sparse files on $(df --output=fstype "$root" | tail -1))"
  echo "P5: creating a $N-file share ($((N * PER_FILE / GIB)) GiB, sparse) in $root/models"
  python3 - "$root/models" "$N" "$PER_FILE" <<'PY'
import os, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, f"dir{i // 100:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"model{i % 100:03d}.safetensors"), "wb") as f:
        f.truncate(size)
PY
  local user; user="$(getent passwd 1000 | cut -d: -f1)"; user="${user:-nobody}"
  cat >"$root/config.json" <<JSON
{ "version": 1, "primary_user": "$user", "state_dir": "$root/state",
  "shares": [ { "name": "models", "path": "$root/models", "mount": "models", "access": "read-only" } ] }
JSON
  local cfg=(--config "$root/config.json") t0 t1
  t0=$(now); "$CS_BIN" record-models "${cfg[@]}" >/dev/null || { echo "  record-models failed"; return 1; }; t1=$(now)
  local rec; rec=$(elapsed "$t0" "$t1")
  sleep 0.1
  # the no-op verify is milliseconds: the median of 11 runs
  local times=()
  for _ in $(seq 11); do
    t0=$(now); "$CS_BIN" verify-models "${cfg[@]}" >/dev/null || echo "  verify-models found a problem?"; t1=$(now)
    times+=("$(elapsed "$t0" "$t1")")
  done
  local noop; noop=$(printf "%s\n" "${times[@]}" | sort -g | sed -n 6p)
  t0=$(now); "$CS_BIN" verify-models --rehash "${cfg[@]}" >/dev/null || echo "  verify-models --rehash found a problem?"; t1=$(now)
  local full; full=$(elapsed "$t0" "$t1")
  echo "P5 verify, $N files ($((N * PER_FILE / GIB)) GiB):"
  awk -v r="$rec" -v n="$noop" -v f="$full" -v b=$((N * PER_FILE)) 'BEGIN {
    printf "  record-models           %9.3f s  (%.2f GB/s)\n", r, b / r / 1e9
    printf "  verify-models (no-op)   %9.4f s  (median of 11, whole command: one fstatat per file)\n", n
    printf "  verify-models --rehash  %9.3f s  (%.2f GB/s)\n", f, b / f / 1e9
    printf "  no-op vs --rehash: %.0fx faster; goal >= 1000x: %s\n", f / n, (f / n >= 1000 ? "met" : "NOT met") }'
}
if [ "${1:-}" = "--verify-part" ]; then
  verify_part "$2"
  exit $?
fi

# --- 1. the 2 x 2 GiB files ----------------------------------------------------
FILE_BYTES=$((2 * GIB))
base=/dev/shm   # tmpfs when it has room for 4 GiB, else the temp dir (warmed below)
[ "$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1)" -gt $((5 * GIB)) ] 2>/dev/null || base="${TMPDIR:-/tmp}"
work="$(mktemp -d "$base/cs-p5-XXXXXX")"
share_root="$(mktemp -d "${TMPDIR:-/tmp}/cs-p5-share-XXXXXX")"
cleanup() { rm -rf --one-file-system "$work" "$share_root"; }
trap cleanup EXIT INT TERM

echo "P5: creating 2 x 2 GiB files in $work"
for i in 1 2; do
  # pseudo-random content, fast (AES-CTR keystream); hashing speed does not depend on it
  if command -v openssl >/dev/null; then
    openssl enc -aes-128-ctr -pass pass:p5-$i -pbkdf2 -nosalt </dev/zero 2>/dev/null | head -c "$FILE_BYTES" >"$work/f$i.bin"
  else
    head -c "$FILE_BYTES" /dev/urandom >"$work/f$i.bin"
  fi
  cat "$work/f$i.bin" >/dev/null   # warm the page cache
done
command -v b3sum >/dev/null || (apt-get install -y -qq b3sum >/dev/null 2>&1) || true

declare -A ONE TWO
declare -A CPU
time_one() {   # NAME CMD...: one file, one process; wall clock and CPU time (user+sys)
  local name="$1"; shift
  local t0 t1; t0=$(now)
  /usr/bin/time -f "%U %S" -o "$work/cpu" "$@" "$work/f1.bin" >/dev/null 2>&1 || { echo "  $name: failed"; return; }
  t1=$(now)
  ONE[$name]=$(gbps "$FILE_BYTES" "$(elapsed "$t0" "$t1")")
  CPU[$name]=$(awk -v b="$FILE_BYTES" '{ printf "%.2f", b / ($1 + $2) / 1e9 }' "$work/cpu")
}
time_two() {   # NAME CMD...: both files, one process each, in parallel
  local name="$1"; shift
  local t0 t1 p1 p2; t0=$(now)
  "$@" "$work/f1.bin" >/dev/null 2>&1 & p1=$!
  "$@" "$work/f2.bin" >/dev/null 2>&1 & p2=$!
  wait $p1 && wait $p2 || { echo "  $name: failed"; return; }
  t1=$(now)
  TWO[$name]=$(gbps $((2 * FILE_BYTES)) "$(elapsed "$t0" "$t1")")
}

tools=(comfy-sandbox sha256sum openssl)
time_one comfy-sandbox "$CS_BIN" __internal hash --jobs 1
# ours on two files: one process whose worker pool takes a file per core
t0=$(now); "$CS_BIN" __internal hash --jobs 2 "$work/f1.bin" "$work/f2.bin" >/dev/null 2>&1; t1=$(now)
TWO[comfy-sandbox]=$(gbps $((2 * FILE_BYTES)) "$(elapsed "$t0" "$t1")")
time_one sha256sum sha256sum
time_two sha256sum sha256sum
time_one openssl openssl dgst -sha256
time_two openssl openssl dgst -sha256
if command -v b3sum >/dev/null; then
  tools+=(b3sum)
  time_one b3sum b3sum --num-threads 1
  time_two b3sum b3sum --num-threads 1
else
  echo "  (b3sum not installed and not installable: skipped)"
fi
rm -f "$work"/f*.bin

echo "P5 hash, one 2 GiB page-cached file on one core; 2 x 2 GiB on two cores:"
for t in "${tools[@]}"; do
  printf "  %-14s one core %6s GB/s (%5s GB per CPU-second)   two files %6s GB/s\n" "$t" "${ONE[$t]:-n/a}" "${CPU[$t]:-n/a}" "${TWO[$t]:-n/a}"
done
for t in "${tools[@]}"; do
  [ "$t" = comfy-sandbox ] && continue
  printf "  comfy-sandbox / %-10s one core %sx   two files %sx\n" "$t" \
    "$(ratio "${ONE[comfy-sandbox]:-0}" "${ONE[$t]:-0}")" "$(ratio "${TWO[comfy-sandbox]:-0}" "${TWO[$t]:-0}")"
done
awk -v a="${ONE[comfy-sandbox]:-0}" -v b="${TWO[comfy-sandbox]:-0}" 'BEGIN {
  printf "  goal one core >= 1.5 GB/s: %s (%.2f)\n", (a >= 1.5 ? "met" : "NOT met"), a
  printf "  goal two files >= 2.5 GB/s: %s (%.2f)\n", (b >= 2.5 ? "met" : "NOT met"), b }'
echo "  (b3sum is BLAKE3, not SHA-256: a speed reference, not a replacement. GB per CPU-second is"
echo "   bytes / (user+sys time): what one idle core would do, when other work shares the CPUs)"

# --- 2. verify of an unchanged 10,000-file share ----------------------------------
if unshare --mount --propagation private true 2>/dev/null; then
  unshare --mount --propagation private "$0" --verify-part "$share_root"
else
  "$0" --verify-part "$share_root"
fi
