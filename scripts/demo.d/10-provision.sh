#!/usr/bin/env bash
# Demo step: plan, provision, plan again (nothing to do for accounts and the
# tree), then a hostile sandbox user plants a symlink to /etc/shadow and the
# primary user moves in a file with the wrong group and mode; fix-permissions
# repairs the file, skips the link, and /etc/shadow is untouched.
set -uo pipefail
source "$(dirname "$0")/../demo-lib.sh"
H="$WORLD/home/$DEMO_USER/workspace/ai"

echo "== plan (nothing is changed)"
cs plan || flunk "plan exited $?"
[ -e "$H" ] && flunk "plan created $H" || pass "plan changed nothing on disk"

echo "== provision"
if cs provision; then pass "provision succeeded"; else flunk "provision exited $?"; fi

echo "== plan again"
again="$(cs plan --only accounts,tree)"
echo "$again"
if [ "$(echo "$again" | tail -n 1)" = "plan: nothing to do" ]; then pass "after provision, plan has nothing to do (accounts, tree)"
else flunk "plan still lists changes after provision"; fi
echo "(full plan, every registered area:)"; cs plan || true

echo "== what was made"
id "$SANDBOX_USER" && pass "sandbox user exists: $(getent passwd "$SANDBOX_USER")" || flunk "no sandbox user"
[ "$(getent passwd "$SANDBOX_USER" | cut -d: -f7)" = /usr/sbin/nologin ] && pass "sandbox shell is nologin" || flunk "sandbox shell"
case "$(getent shadow "$SANDBOX_USER" | cut -d: -f2)" in '!'*|'*'*) pass "sandbox has no password";; *) flunk "sandbox password";; esac
for s in models:2755 comfy/workflows:2775 input:2775 output:2775; do
  d="$H/${s%%:*}"; want="${s##*:}"
  got="$(stat -c '%a %U:%G' "$d")"
  [ "$got" = "$want $DEMO_USER:$SHARED_GROUP" ] && pass "share $d is $got" || flunk "share $d is $got, want $want $DEMO_USER:$SHARED_GROUP"
done
getfacl -p "$H/input" 2>/dev/null | grep -q "^default:group:$SHARED_GROUP:rwx" && pass "input has the default ACL group:$SHARED_GROUP:rwx" || flunk "input default ACL"
getfacl -p "$WORLD/home/$DEMO_USER" 2>/dev/null | grep -q "^group:$SHARED_GROUP:--x" && pass "the demo home has a traverse-only ACL (--x) for $SHARED_GROUP" || flunk "home traverse ACL"
as_sandbox "ls '$WORLD/home/$DEMO_USER'" >/dev/null 2>&1 && flunk "the sandbox can list the demo home" || pass "the sandbox cannot list the demo home"
as_sandbox "touch '$H/models/x'" 2>/dev/null && flunk "the sandbox wrote the read-only models share" || pass "the sandbox cannot write the read-only models share"
as_sandbox "touch '$H/output/made-by-sandbox.png'" && pass "the sandbox can write the output share" || flunk "sandbox cannot write output"
[ "$(readlink "$WORLD/opt/comfy-sandbox/ComfyUI/models")" = "$H/models" ] && pass "ComfyUI sees models at comfyui.path/models" || flunk "models view link"
[ "$(stat -c '%U %a' "$WORLD/state/journal.log")" = "root 644" ] && pass "journal: $(wc -l < "$WORLD/state/journal.log") lines in state_dir/journal.log (root, 0644)" || flunk "journal"

echo "== hostile tree"
shadow_before="$(stat -c '%u %g %a %Z' /etc/shadow)"
as_sandbox "ln -s /etc/shadow '$H/input/model.safetensors'" && echo "sandbox planted: input/model.safetensors -> /etc/shadow"
as_user "umask 077 && echo notes > '$WORLD/home/$DEMO_USER/notes.txt' && mv '$WORLD/home/$DEMO_USER/notes.txt' '$H/input/notes.txt'" && echo "$DEMO_USER moved in: input/notes.txt ($(stat -c '%a %G' "$H/input/notes.txt"))"
out="$(cs fix-permissions)"; rc=$?
echo "$out"
[ $rc = 0 ] && pass "fix-permissions succeeded" || flunk "fix-permissions exited $rc"
[ "$(stat -c '%u %g %a %Z' /etc/shadow)" = "$shadow_before" ] && pass "/etc/shadow untouched (uid, gid, mode, ctime)" || flunk "/etc/shadow changed"
[ "$(stat -c '%a %G' "$H/input/notes.txt")" = "664 $SHARED_GROUP" ] && pass "notes.txt repaired to 0664 $SHARED_GROUP" || flunk "notes.txt is $(stat -c '%a %G' "$H/input/notes.txt")"
echo "$out" | grep -q "skipped $H/input/model.safetensors: symbolic link" && pass "the symlink was skipped and reported" || flunk "symlink not reported"
[ -L "$H/input/model.safetensors" ] && pass "the symlink itself was left as it was" || flunk "symlink removed"

exit $fail
