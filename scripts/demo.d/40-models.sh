#!/usr/bin/env bash
# Demo step, models: link a model from a tiny fake Hugging Face cache into the
# models share (a hard link: same file system), record its SHA-256 manifest,
# verify it clean, then tamper with the model as the primary user -- one byte
# flipped, mtime put back with touch -d -- and watch verify-models catch it
# (exit 3) through the ctime.
# Env (from demo.sh): CS_BIN WORLD CONFIG DEMO_USER SANDBOX_USER SHARED_GROUP.
set -uo pipefail
source "$(dirname "$0")/../demo-lib.sh"

share="$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(next(s["path"] for s in c["shares"] if s["name"]=="models"))' "$CONFIG")"
cache="$WORLD/home/$DEMO_USER/.cache/huggingface/hub"
repo="$cache/models--demo-org--tiny-vae"
commit=0123456789abcdef0123456789abcdef01234567

echo "== a tiny Hugging Face cache of $DEMO_USER's, laid out as huggingface-cli does"
as_user "mkdir -p '$repo/blobs' '$repo/refs' '$repo/snapshots/$commit/split_files/vae' &&
  head -c 1048576 /dev/urandom > '$repo/blobs/5f1e0d4c-tiny-vae' &&
  ln -s ../../../../blobs/5f1e0d4c-tiny-vae '$repo/snapshots/$commit/split_files/vae/tiny_vae.safetensors' &&
  printf %s $commit > '$repo/refs/main'" || flunk "could not build the fake cache"
(cd "$cache" && find . -printf '  %M %u %p %l\n')

echo "== a config with models.links (as MODELS: demo-org/tiny-vae:split_files/vae/tiny_vae.safetensors:vae)"
config2="$WORLD/config-models.json"
python3 - "$CONFIG" "$config2" "$cache" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["models"] = {"hf_cache": sys.argv[3],
               "links": [{"repo": "demo-org/tiny-vae", "file": "split_files/vae/tiny_vae.safetensors", "dir": "vae"}]}
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["models"], indent=2))' "$config2"

echo "== plan shows the link, from the snapshot into the share"
out="$(cs plan --only models --config "$config2")"; echo "$out"
echo "$out" | grep -q "^models: hard-link .*/snapshots/$commit/split_files/vae/tiny_vae.safetensors -> $share/vae/tiny_vae.safetensors" \
  && pass "plan shows the hard link" || flunk "plan does not show the link"

echo "== provision --only models"
cs provision --only models --config "$config2" && pass "provision linked the model" || flunk "provision exited $?"
f="$share/vae/tiny_vae.safetensors"
ls -li "$f" "$repo/blobs/"
[ "$(stat -c %i "$f" 2>/dev/null)" = "$(stat -c %i "$repo/blobs/5f1e0d4c-tiny-vae")" ] && pass "the share entry is a hard link to the cache blob" || flunk "not a hard link to the blob"
[ "$(stat -c '%a %U:%G' "$share/vae" 2>/dev/null)" = "2755 $DEMO_USER:$SHARED_GROUP" ] && pass "vae/ was made 2755 $DEMO_USER:$SHARED_GROUP" || flunk "vae/ is $(stat -c '%a %U:%G' "$share/vae" 2>/dev/null)"
as_sandbox "head -c 16 '$f' >/dev/null" && pass "the sandbox can read the model (no access to the cache needed)" || flunk "the sandbox cannot read the model"
as_sandbox "printf x >> '$f'" 2>/dev/null && flunk "the sandbox could write the model" || pass "the sandbox cannot write the model"
[ "$(cs provision --only models --config "$config2" | tail -n 1)" = "provision: nothing to do" ] && pass "provision again: nothing to do" || flunk "provision is not idempotent for models"

echo "== record-models"
cs record-models --config "$config2" && pass "manifest recorded" || flunk "record-models exited $?"
[ "$(stat -c '%U %a' "$WORLD/state/models.manifest.json")" = "root 644" ] && pass "state_dir/models.manifest.json is root 0644" || flunk "manifest owner/mode"
sleep 0.05

echo "== verify-models: clean, nothing re-read"
out="$(cs verify-models --config "$config2")"; rc=$?; echo "$out"
[ "$rc" = 0 ] && echo "$out" | grep -q " 0 read" && pass "clean (exit 0), every file trusted by stat" || flunk "verify-models exited $rc"

echo "== $DEMO_USER flips one byte of the model and puts the mtime back with touch -d"
as_user "old=\"\$(stat -c %y '$f')\"; printf '\\377' | dd of='$f' bs=1 seek=4096 conv=notrunc status=none; touch -d \"\$old\" '$f'; stat -c '  mtime %y   ctime %z' '$f'"

echo "== verify-models: the restored mtime does not hide it (the ctime moved)"
out="$(cs verify-models --config "$config2")"; rc=$?; echo "$out"; echo "(exit status $rc)"
[ "$rc" = 3 ] && echo "$out" | grep -q "^changed: vae/tiny_vae.safetensors" && pass "the change is reported, exit 3 as expected" || flunk "verify-models did not report the change (exit $rc)"
cs status --config "$config2" 2>/dev/null | grep -i "verified" || true
exit "$fail"
