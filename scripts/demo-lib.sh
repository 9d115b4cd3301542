# Sourced by every scripts/demo.d step (kept outside demo.d so it is not run
# as a step): the PASS/FAIL bookkeeping and the ways to run a command as
# comfy-sandbox, as the sandbox user and as the demo's primary user.
# Env (from demo.sh): CS_BIN DEMO_USER SANDBOX_USER SHARED_GROUP.
fail=0
pass() { echo "PASS: $*"; }
flunk() { echo "FAIL: $*"; fail=1; }
cs() { echo "\$ comfy-sandbox $*"; "$CS_BIN" "$@"; }
as_sandbox() { setpriv --reuid="$SANDBOX_USER" --regid="$SHARED_GROUP" --init-groups sh -c "$1"; }
as_user() { setpriv --reuid="$DEMO_USER" --regid="$DEMO_USER" --init-groups sh -c "$1"; }
