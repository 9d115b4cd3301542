#!/usr/bin/env bash
# Demo, models: link a model from a (tiny, fake) Hugging Face cache into the
# models share, record its SHA-256 manifest, verify it clean, then tamper with
# the model as the primary user -- one byte flipped, mtime restored with
# touch -d -- and watch verify-models catch it (exit 3).
# Env (from demo.sh): CS_BIN, WORLD, CONFIG, DEMO_USER. Runs as root in the demo world.
set -uo pipefail
: "${CS_BIN:?}" "${WORLD:?}" "${CONFIG:?}" "${DEMO_USER:?}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

share="$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(next(s["path"] for s in c["shares"] if s["name"]=="models"))' "$CONFIG")"
cache="$WORLD/hf-cache/hub"
repo="$cache/models--demo-org--tiny-vae"
commit=0123456789abcdef0123456789abcdef01234567

say "a tiny Hugging Face cache owned by $DEMO_USER (as huggingface-cli lays it out)"
mkdir -p "$repo/blobs" "$repo/refs" "$repo/snapshots/$commit/split_files/vae"
head -c 1048576 /dev/urandom >"$repo/blobs/blob-tiny-vae"
ln -sfn ../../../../blobs/blob-tiny-vae "$repo/snapshots/$commit/split_files/vae/tiny_vae.safetensors"
printf '%s' "$commit" >"$repo/refs/main"
chown -R "$DEMO_USER:" "$WORLD/hf-cache"
find "$WORLD/hf-cache" -printf '  %M %u %p%l\n' | sed "s|$WORLD|\$WORLD|g"

say "a config with models.links (the MODELS form would be demo-org/tiny-vae:split_files/vae/tiny_vae.safetensors:vae)"
config2="$WORLD/config-models.json"
python3 - "$CONFIG" "$config2" "$cache" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.setdefault("models", {})
c["models"]["hf_cache"] = sys.argv[3]
c["models"]["links"] = [{"repo": "demo-org/tiny-vae", "file": "split_files/vae/tiny_vae.safetensors", "dir": "vae"}]
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["models"], indent=2))' "$config2"

say "plan shows the link (from the snapshot -> into the share)"
printf '$ %s\n' "$CS_BIN plan --config $config2 | grep models:"
"$CS_BIN" plan --config "$config2" | grep '^models:' || echo "(plan printed no models line)"

say "provision makes it: a hard link to the cache blob (same file system)"
run "$CS_BIN" provision --config "$config2" >/dev/null || echo "(provision reported a problem; see above)"
run ls -li "$share/vae/" "$repo/blobs/"

say "record-models: the SHA-256 manifest of the share"
run "$CS_BIN" record-models --config "$config2"

say "verify-models: clean (exit 0), nothing re-read"
run "$CS_BIN" verify-models --config "$config2"; echo "exit status: $?"

say "tamper as $DEMO_USER: flip one byte, put the mtime back with touch -d"
f="$share/vae/tiny_vae.safetensors"
run runuser -u "$DEMO_USER" -- sh -c "old=\"\$(stat -c %y '$f')\"; printf '\\377' | dd of='$f' bs=1 seek=4096 conv=notrunc status=none; touch -d \"\$old\" '$f'; stat -c 'mtime %y  ctime %z' '$f'"

say "verify-models: the restored mtime does not hide it (ctime moved) -> exit 3, as expected"
run "$CS_BIN" verify-models --config "$config2"; rc=$?
echo "exit status: $rc (3 = a problem found, as expected)"
[ "$rc" -eq 3 ]
