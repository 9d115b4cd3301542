#!/usr/bin/env bash
# make test-kernels: the root integration suites, and `status` and
# `check-sandbox` in a throwaway world, on Debian's packaged kernels under
# qemu: linux-image-6.1 (Debian 12: no fchmodat2, Landlock ABI 2) and
# linux-image-6.12 (Landlock ABI 6). `KERNELS="6.1 6.12 host"` adds the same
# run on the host's kernel (without a VM).
#
# Nothing is installed on the host but the tools (qemu-system-x86,
# busybox-static, kmod, xz-utils) and nothing of it is booted: each kernel
# package is fetched with `apt-get download` into $CS_KERNEL_CACHE and
# unpacked there (vmlinuz, modules). The VM boots that vmlinuz with a small
# initramfs made here (static busybox, that kernel's 9p and virtio modules,
# an /init written below) which builds the guest's root in RAM:
#   /usr, $SWIFT_DIR and this repository   the host's, read-only over 9p
#   /etc                                   a copy of the host's, in RAM
#   /tmp /var /run /root /home /dev/shm    empty, in RAM
#   /out                                   $OUT/<kernel>, writable over 9p
#   /run/kmod                              that kernel's modules (autoloaded
#                                          through /run/cs-modprobe)
# and runs this script again inside (`--guest`) as PID 1: the test bundle
# .build/debug/comfy-sandboxPackageTests.xctest for the suites in SUITES,
# then the report (scripts/world-lib.sh's world: a user, the stand-in
# ComfyUI served by git daemon, provision, `status`, `check-sandbox` with
# launcher.landlock true and "best-effort"), then powers off. KVM when
# /dev/kvm works, TCG otherwise (much slower).
#
# Variables: KERNELS ("6.1 6.12"), CS_KERNEL_CACHE (/var/cache/comfy-sandbox/
# test-kernels), OUT (/tmp/comfy-sandbox-test-kernels), CS_KERNEL_TIMEOUT
# (seconds per kernel, 1200), CS_KERNEL_JOBS (VMs at once, 1), SWIFT_DIR
# (/opt/swift), SUITES (a --filter regex).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="$ROOT/.build/debug/comfy-sandboxPackageTests.xctest"
BIN="$ROOT/.build/debug/comfy-sandbox"
# The root suites the issue names: privilege drop, check-sandbox (and what
# launcher.landlock does on this kernel), fix-permissions (and the missing
# calls), provision, nodes; and the two the kernel's own features decide: the
# one walker under attack (openat2's RESOLVE_* rules, fd bounds, mounts) and
# the session cgroup (CLONE_INTO_CGROUP on the guests' cgroup v2, the memory
# limit). The escape and must-work suites repeat what check-sandbox attacks;
# add them with SUITES when there is time.
SUITES="${SUITES:-IntegrationTests\.(PrivilegeDropTests|LauncherLaunchTests/(checkSandbox|seccompOff|hostMode)\(\)|LandlockOnThisKernelTests|FixPermissionsTests|OlderKernelSyscallTests|ProvisionTests|NodesTests|PythonEnvTests|WalkerAttackTests|LauncherLandlockModeTests/(sessionLimits|sessionCgroupV2)\()}"

# ---------------------------------------------------------------- the guest

# The report: status and check-sandbox of a provisioned throwaway world, on
# this kernel, with launcher.landlock true and then "best-effort".
report() {
  local out="$1"
  source "$ROOT/scripts/world-lib.sh"
  WORLD="$(mktemp -d /tmp/cs-kernel-report.XXXXXX)"
  chmod 0755 "$WORLD"
  export WORLD
  (
    set +e
    world_bind_etc "$WORLD"
    mkdir -p "$WORLD/home" "$WORLD/opt" "$WORLD/git"
    chmod 0755 "$WORLD/home" "$WORLD/opt"
    world_add_user alice
    world_git_repo "$ROOT/fixtures/comfyui-standin" "$WORLD/git/ComfyUI.git"
    world_git_daemon "$WORLD/git"
    port="$(world_free_port 8188)"
    H="$WORLD/home/alice/workspace/ai"
    config() {
      cat >"$WORLD/config.json" <<JSON
{
  "primary_user": "alice",
  "sandbox_user": { "name": "comfyui_sandbox", "home": "$WORLD/home/comfyui_sandbox" },
  "state_dir": "$WORLD/state",
  "comfyui": { "repo": "$GIT_BASE_URL/ComfyUI.git", "rev": "main", "path": "$WORLD/opt/comfy-sandbox/ComfyUI",
               "install_requirements": false, "extra_requirements": [] },
  "shares": [
    { "name": "models", "path": "$H/models", "access": "read-only" },
    { "name": "workflows", "path": "$H/comfy/workflows", "mount": "user/default/workflows", "access": "read-write" },
    { "name": "input", "path": "$H/input", "access": "read-write" },
    { "name": "output", "path": "$H/output", "access": "read-write" }
  ],
  "git": { "allowed_protocols": ["git"] },
  "launcher": { "port": $port, "gpu": "none", "landlock": $1 }
}
JSON
    }
    cs() { "$BIN" --config "$WORLD/config.json" "$@"; }
    echo "== comfy-sandbox __internal kernel-probe"
    "$BIN" __internal kernel-probe
    local t0 t1
    t0=$(date +%s%N); for _ in 1 2 3 4 5; do "$BIN" __internal kernel-probe >/dev/null; done; t1=$(date +%s%N)
    echo "binary start: $(( (t1 - t0) / 5000000 )) ms (the debug build, mean of 5)"
    config true
    echo "== provision --only accounts,tree,comfyui"
    cs provision --only accounts,tree,comfyui >"$WORLD/provision.log" 2>&1
    echo "exit $?"; tail -n 3 "$WORLD/provision.log"
    for mode in true '"best-effort"'; do
      config "$mode"
      echo
      echo "######## launcher.landlock = $mode"
      echo "== status (launcher section)"
      cs status >"$WORLD/status.txt" 2>&1; echo "status exit $?"
      sed -n '/^launcher/,/^[a-z]/p' "$WORLD/status.txt" | grep -E 'kernel|capabilities|seccomp|landlock|network' || cat "$WORLD/status.txt"
      echo "== check-sandbox"
      cs check-sandbox >"$WORLD/check.txt" 2>"$WORLD/check.err"; rc=$?
      echo "check-sandbox exit $rc"
      sed 's/^/stderr: /' "$WORLD/check.err"
      cat "$WORLD/check.txt"
      cs check-sandbox --json >"$out/check-sandbox.$( [ "$mode" = true ] && echo true || echo best-effort ).json" 2>/dev/null
    done
    kill "$GIT_DAEMON_PID" 2>/dev/null
  )
  rm -rf --one-file-system "$WORLD"
}

# Runs the suites and the report, writing under $1; prints a summary.
run_kernel_checks() {
  local out="$1" start end rc
  start=$(date +%s)
  echo "cs-kernel: $(uname -r): tests"
  rc=0
  # From /, not the repository: a git worktree's .git names a directory the
  # guest does not have, and the tests' own git commands would find it.
  (cd / && timeout -s KILL "${CS_TEST_TIMEOUT:-900}" "$BUNDLE" --testing-library swift-testing --filter "$SUITES") \
    >"$out/tests.log" 2>&1 || rc=$?
  echo "$rc" >"$out/tests.rc"
  end=$(date +%s)
  echo "$((end - start))" >"$out/tests.seconds"
  echo "cs-kernel: $(uname -r): report"
  # In a private mount namespace: the world's /etc is bound over /etc there only.
  unshare --mount --propagation private /bin/bash "$ROOT/scripts/test-kernels.sh" --report "$out" >"$out/report.txt" 2>&1 || true
  echo "$(( $(date +%s) - start ))" >"$out/seconds"
  uname -r >"$out/release"
}

guest() {
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb
  # What the host was asked for (SUITES, CS_TEST_TIMEOUT).
  [ -f /out/env ] && source /out/env
  # The host's link protection and similar settings, as the suites expect them there.
  if [ -f /out/sysctl ]; then
    while read -r key value; do echo "$value" >"/proc/sys/$key" 2>/dev/null || true; done </out/sysctl
  fi
  hostname cs-test-kernel 2>/dev/null || true
  ip link set lo up
  sha256sum /etc/passwd /etc/group >/tmp/etc.before
  run_kernel_checks /out || true
  sha256sum /etc/passwd /etc/group | cmp -s - /tmp/etc.before && echo same >/out/etc || echo CHANGED >/out/etc
  echo done >/out/finished
  sync
  /usr/bin/busybox poweroff -f 2>/dev/null || echo o >/proc/sysrq-trigger
  sleep 10
}

case "${1:-}" in
  --guest) guest; exit 0 ;;
  --report) report "$2"; exit 0 ;;
esac

# ---------------------------------------------------------------- the host

CACHE="${CS_KERNEL_CACHE:-/var/cache/comfy-sandbox/test-kernels}"
OUT="${OUT:-/tmp/comfy-sandbox-test-kernels}"
KERNELS="${KERNELS:-6.1 6.12}"
SWIFT_DIR="${SWIFT_DIR:-/opt/swift}"
TIMEOUT="${CS_KERNEL_TIMEOUT:-1200}"
JOBS="${CS_KERNEL_JOBS:-1}"

say() { echo "test-kernels: $*"; }
die() { echo "test-kernels: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (the suites create users, in throwaway worlds)"
[ -x "$BUNDLE" ] && [ -x "$BIN" ] || die "$BUNDLE is missing: run swift build --build-tests first (make test-kernels does)"
[ -d "$SWIFT_DIR/usr/lib/swift/linux" ] || die "SWIFT_DIR=$SWIFT_DIR has no usr/lib/swift/linux (the test bundle's runtime)"

# The tools, from Debian, when missing.
need=""
command -v qemu-system-x86_64 >/dev/null || need="$need qemu-system-x86"
[ -x /usr/bin/busybox ] && ! ldd /usr/bin/busybox >/dev/null 2>&1 || need="$need busybox-static"
command -v depmod >/dev/null || need="$need kmod"
command -v xz >/dev/null || need="$need xz-utils"
if [ -n "$need" ]; then
  say "installing:$need"
  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
[ -x /usr/bin/busybox ] || die "busybox-static is needed (/usr/bin/busybox)"

# The packages' names (package_for sets PKG): the newest 6.1 (linux-image-amd64 on Debian 12) and
# 6.12 (linux-image-6.12-amd64, bookworm-security; on other releases
# bookworm-backports, added to a private apt configuration for the download
# only).
PRIVATE_APT=()
apt_private() {
  local dir="$CACHE/apt"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  echo "deb http://deb.debian.org/debian bookworm-backports main" >"$dir/sources.list"
  PRIVATE_APT=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::lists=$dir/lists"
               -o "Dir::Cache=$dir/cache" -o "APT::Get::List-Cleanup=0")
  apt-get "${PRIVATE_APT[@]}" update -qq
}
package_for() {
  local series="$1" meta pkg list
  case "$series" in
    6.1) meta=linux-image-amd64 ;;
    *) meta="linux-image-$series-amd64" ;;
  esac
  local re="^linux-image-${series//./\\.}[.-][0-9][^ ]*-amd64(-unsigned)?\$"
  for attempt in plain backports; do
    [ "$attempt" = backports ] && { [ "${#PRIVATE_APT[@]}" -gt 0 ] || apt_private; }
    # The meta package's choice, else the newest image of the series (backports has only -unsigned ones).
    pkg="$(apt-cache "${PRIVATE_APT[@]}" depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
    echo "$pkg" | grep -qE "$re" && { PKG="$pkg"; return 0; }
    list="$(apt-cache "${PRIVATE_APT[@]}" search --names-only "$re" 2>/dev/null | awk '{print $1}' | grep -E "$re" \
            | grep -vE -- '-(cloud|rt)-amd64' | sort -V)" || true
    pkg="$(echo "$list" | tail -n 1)"
    echo "$list" | grep -qx -- "${pkg%-unsigned}" && pkg="${pkg%-unsigned}"
    [ -n "$pkg" ] && { PKG="$pkg"; return 0; }
  done
  die "no $meta (Linux $series) in the apt sources"
}
fetch_kernel() {
  local pkg="$1" dir="$CACHE/$1"
  if [ ! -f "$dir/.unpacked" ]; then
    mkdir -p "$CACHE"
    if ! ls "$CACHE/${pkg}_"*.deb >/dev/null 2>&1; then
      say "downloading $pkg"
      (cd "$CACHE" && apt-get "${PRIVATE_APT[@]}" -o APT::Sandbox::User=root download "$pkg" >/dev/null)
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$(ls "$CACHE/${pkg}_"*.deb | head -n 1)" "$dir"
    depmod -b "$dir" "$(ls "$dir/lib/modules")"
    touch "$dir/.unpacked"
  fi
}

# The initramfs: static busybox, the modules 9p over virtio needs (in load
# order, decompressed), the params and /init.
make_initramfs() {
  local dir="$1" out="$2" work ver moddir
  ver="$(ls "$dir/lib/modules")"
  moddir="$dir/lib/modules/$ver"
  work="$(mktemp -d)"
  mkdir -p "$work/bin" "$work/modules"
  cp /usr/bin/busybox "$work/bin/busybox"
  python3 - "$moddir" "$work" virtio_pci 9pnet_virtio 9p <<'PY'
import os, subprocess, sys
moddir, work, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
deps = {}
for line in open(os.path.join(moddir, "modules.dep")):
    path, _, rest = line.partition(":")
    deps[path] = rest.split()
byname = {os.path.basename(p).split(".ko")[0].replace("-", "_"): p for p in deps}
order, seen = [], set()
def load(path):
    if path in seen: return
    seen.add(path)
    for d in reversed(deps[path]): load(d)
    order.append(path)
for name in wanted:
    if name in byname: load(byname[name])      # else built in
with open(os.path.join(work, "modules.order"), "w") as f:
    for path in order:
        base = os.path.basename(path).split(".ko")[0] + ".ko"
        src = os.path.join(moddir, path)
        data = subprocess.run(["xz", "-dc", src], capture_output=True, check=True).stdout if path.endswith(".xz") \
            else subprocess.run(["zstd", "-dc", src], capture_output=True, check=True).stdout if path.endswith(".zst") \
            else open(src, "rb").read()
        open(os.path.join(work, "modules", base), "wb").write(data)
        f.write(base + "\n")
PY
  cat >"$work/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod "/modules/$m" || echo "init: insmod $m failed"; done
. /params
R=/newroot
mkdir -p $R
mount -t tmpfs -o mode=0755,size=75% root $R
m9() { mkdir -p "$R$2" && mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,$3" "$1" "$R$2" || echo "init: cannot mount $1 on $2"; }
m9 usr /usr ro,cache=loose
m9 swift "$SWIFT_DIR" ro,cache=loose
m9 repo "$REPO" ro,cache=loose
m9 out /out rw
m9 etc /.hostetc ro
cp -a $R/.hostetc $R/etc && umount $R/.hostetc && rmdir $R/.hostetc
for l in $LINKS; do ln -s "${l#*:}" "$R/${l%%:*}"; done
mkdir -p $R/proc $R/sys $R/dev $R/tmp $R/run $R/root $R/home $R/mnt $R/var/tmp $R/var/lib $R/var/log $R/var/cache $R/var/spool
chmod 1777 $R/tmp $R/var/tmp
chmod 0700 $R/root
ln -s /run $R/var/run
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t tmpfs -o mode=1777,size=75% tmp $R/tmp
mount -t tmpfs -o mode=0755 run $R/run
# Module autoload as on an installed system (sock_diag's inet_diag, say): this
# kernel's modules over 9p, and the host's modprobe pointed at them.
mkdir -p $R/run/kmod
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose kmod $R/run/kmod || echo "init: cannot mount the modules"
printf '#!/bin/sh\nexec /usr/sbin/modprobe -d /run/kmod "$@"\n' >$R/run/cs-modprobe
chmod 0755 $R/run/cs-modprobe
echo /run/cs-modprobe >/proc/sys/kernel/modprobe
echo "init: $(uname -r), root ready; running the checks"
exec switch_root $R /bin/bash "$REPO/scripts/test-kernels.sh" --guest
INIT
  chmod 0755 "$work/init"
  {
    echo "REPO='$ROOT'"
    echo "SWIFT_DIR='$SWIFT_DIR'"
    links=""
    for l in bin sbin lib lib32 lib64 libx32; do
      [ -L "/$l" ] && links="$links $l:$(readlink "/$l")"
    done
    echo "LINKS='$links'"
  } >"$work/params"
  (cd "$work" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$out"
  rm -rf "$work"
}

# KVM, when /dev/kvm opens and a kernel actually boots under it: a nested
# KVM can answer every ioctl and still run a guest thousands of times slower
# than TCG (seen on a Firecracker host: the decompressor alone took minutes).
# The probe boots the kernel with no root and waits for its first line.
ACCEL_CHOICE=""
choose_accel() {
  local vmlinuz="$1" probe
  [ -n "$ACCEL_CHOICE" ] && return 0
  case "${CS_KERNEL_ACCEL:-auto}" in
    kvm) ACCEL_CHOICE=kvm; return 0 ;;
    tcg) ACCEL_CHOICE=tcg; return 0 ;;
  esac
  ACCEL_CHOICE=tcg
  if ! python3 -c 'import fcntl, os; fd = os.open("/dev/kvm", os.O_RDWR); assert fcntl.ioctl(fd, 0xAE00) == 12' 2>/dev/null; then
    say "no usable /dev/kvm: TCG"
    return 0
  fi
  probe="$(mktemp)"
  qemu-system-x86_64 "${KVM_ACCEL[@]}" -m 512M -display none -monitor none -no-reboot -nic none \
    -serial "file:$probe" -kernel "$vmlinuz" -append "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1" </dev/null >/dev/null 2>&1 &
  local pid=$! i
  for i in $(seq 1 40); do
    grep -q 'Linux version' "$probe" 2>/dev/null && { ACCEL_CHOICE=kvm; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$probe"
  [ "$ACCEL_CHOICE" = kvm ] || say "/dev/kvm opens, but a kernel under it printed nothing in 20 s (a nested KVM that crawls): TCG"
}
# -arch-capabilities: qemu 7.2 on a nested AMD KVM aborts setting that MSR.
KVM_ACCEL=(-enable-kvm -cpu host,-arch-capabilities)
TCG_ACCEL=(-accel tcg,thread=multi -cpu max)

# One kernel in a VM: writes $OUT/<series>/.
run_vm() {
  local series="$1" pkg dir out vmlinuz accel start rc
  package_for "$series"   # sets PKG (and PRIVATE_APT when it took backports)
  pkg="$PKG"
  fetch_kernel "$pkg"
  dir="$CACHE/$pkg"
  out="$OUT/$series"
  rm -rf "$out" && mkdir -p "$out"
  vmlinuz="$(ls "$dir"/boot/vmlinuz-*)"
  make_initramfs "$dir" "$out/initramfs.gz"
  # Landlock must be among the LSMs; Debian's CONFIG_LSM lists it first.
  local append="console=ttyS0 panic=-1 loglevel=4"
  grep -q '^CONFIG_LSM=.*landlock' "$dir"/boot/config-* || append="$append lsm=landlock,lockdown,yama,integrity,apparmor"
  printf 'SUITES=%q\nCS_TEST_TIMEOUT=%q\n' "$SUITES" "${CS_TEST_TIMEOUT:-$((TIMEOUT - 120))}" >"$out/env"
  for key in fs/protected_hardlinks fs/protected_symlinks fs/protected_regular fs/protected_fifos kernel/yama/ptrace_scope; do
    [ -r "/proc/sys/$key" ] && echo "$key $(cat "/proc/sys/$key")"
  done >"$out/sysctl"
  choose_accel "$vmlinuz"
  if [ "$ACCEL_CHOICE" = kvm ]; then accel=("${KVM_ACCEL[@]}"); else accel=("${TCG_ACCEL[@]}"); fi
  echo "$ACCEL_CHOICE" >"$out/accel"
  say "$series: $pkg, $ACCEL_CHOICE, log $out/console.log"
  start=$(date +%s)
  rc=0
  timeout -s KILL "$TIMEOUT" qemu-system-x86_64 "${accel[@]}" -m 4G -smp 2 -display none -monitor none -no-reboot -nic none \
    -serial "file:$out/console.log" \
    -kernel "$vmlinuz" -initrd "$out/initramfs.gz" -append "$append" \
    -virtfs "local,path=/usr,mount_tag=usr,security_model=none,readonly=on" \
    -virtfs "local,path=/etc,mount_tag=etc,security_model=none,readonly=on" \
    -virtfs "local,path=$SWIFT_DIR,mount_tag=swift,security_model=none,readonly=on" \
    -virtfs "local,path=$ROOT,mount_tag=repo,security_model=none,readonly=on" \
    -virtfs "local,path=$out,mount_tag=out,security_model=none" \
    -virtfs "local,path=$dir,mount_tag=kmod,security_model=none,readonly=on" \
    </dev/null >"$out/qemu.log" 2>&1 || rc=$?
  echo "$(( $(date +%s) - start ))" >"$out/vm.seconds"
  [ "$rc" = 0 ] || echo "qemu exited $rc (137: killed after ${TIMEOUT}s)" >>"$out/qemu.log"
  rm -f "$out/initramfs.gz"
}

# The host's own kernel, without a VM (world-lib keeps its /etc untouched).
run_host() {
  local out="$OUT/host" before
  rm -rf "$out" && mkdir -p "$out"
  start=$(date +%s)
  before="$(sha256sum /etc/passwd /etc/group)"
  run_kernel_checks "$out"
  [ "$(sha256sum /etc/passwd /etc/group)" = "$before" ] && echo same >"$out/etc" || echo CHANGED >"$out/etc"
  echo "$(( $(date +%s) - start ))" >"$out/vm.seconds"
  echo done >"$out/finished"
}

summarize() {
  local series="$1" out="$OUT/$1" status=0 line
  echo
  echo "==== Linux $series: $(cat "$out/release" 2>/dev/null || echo '?')"
  if [ ! -f "$out/finished" ]; then
    echo "  the VM did not finish: see $out/console.log and $out/qemu.log"
    tail -n 15 "$out/console.log" 2>/dev/null | sed 's/^/  | /'
    return 1
  fi
  line="$(grep -E '^(✔|✘) Test run with' "$out/tests.log" | tail -n 1)"
  echo "  tests: ${line:-no result line (exit $(cat "$out/tests.rc"))} (exit $(cat "$out/tests.rc"))"
  grep -E '^✘ Test .* (failed|recorded an issue)' "$out/tests.log" | head -n 20 | sed 's/^/    /'
  [ "$(cat "$out/tests.rc")" = 0 ] || status=1
  echo "  /etc/passwd and /etc/group of the $([ "$series" = host ] && echo host || echo guest): $(cat "$out/etc")"
  [ "$(cat "$out/etc")" = same ] || status=1
  grep -E '^(openat2|fchmodat2|landlock abi|binary start):' "$out/report.txt" | sed 's/^/  /' | awk '!seen[$0]++'
  grep -m1 -E '^ *!? *landlock: ' "$out/report.txt" | sed -E 's/^ *!? */  status: /'
  awk '/^######## launcher.landlock/ {mode=$0} /^(check-sandbox exit|stderr: comfy-sandbox:|[0-9]+ checks,|NOT enforced on this kernel|Landlock: every rule)/ && mode != "" {print "  [" substr(mode, 10) "] " $0}' \
    "$out/report.txt" | awk '!seen[$0]++'
  grep -E 'NOT ENFORCED' "$out/report.txt" | awk '!seen[$0]++' | sed 's/  */ /g; s/^/  row: /' 
  echo "  time: tests $(cat "$out/tests.seconds")s, whole VM $(cat "$out/vm.seconds")s ($(cat "$out/accel" 2>/dev/null || echo no VM))"
  return $status
}

mkdir -p "$OUT"
total_start=$(date +%s)
say "kernels: $KERNELS; output in $OUT"
# KVM or TCG, decided once with the first kernel (the VMs may run in parallel subshells).
for series in $KERNELS; do
  [ "$series" = host ] && continue
  package_for "$series"; fetch_kernel "$PKG"; choose_accel "$(ls "$CACHE/$PKG"/boot/vmlinuz-*)"
  break
done
pids=()
for series in $KERNELS; do
  if [ "$series" = host ]; then
    run_host
  elif [ "$JOBS" -gt 1 ]; then
    run_vm "$series" & pids+=($!)
    [ "${#pids[@]}" -ge "$JOBS" ] && { wait "${pids[0]}" || true; pids=("${pids[@]:1}"); }
  else
    run_vm "$series"
  fi
done
for p in "${pids[@]}"; do wait "$p" || true; done

status=0
for series in $KERNELS; do summarize "$series" || status=1; done
echo
say "total $(( $(date +%s) - total_start ))s; $([ $status = 0 ] && echo 'every kernel passed' || echo 'FAILED')"
exit $status
