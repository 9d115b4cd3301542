#!/usr/bin/env bash
# Demo step: the launcher. Runs in the demo world (CS_BIN, WORLD, CONFIG set
# by scripts/demo.sh; the world's accounts and the stand-in ComfyUI exist).
set -euo pipefail
: "${CS_BIN:?}" "${CONFIG:?}"
port=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('launcher',{}).get('port',8188))" "$CONFIG")
listen=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('launcher',{}).get('listen','127.0.0.1'))" "$CONFIG")

echo "== comfy-sandbox run -- id   (the sandbox user, no capabilities)"
"$CS_BIN" run --config "$CONFIG" -- id
"$CS_BIN" run --config "$CONFIG" -- /bin/grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status

echo "== comfy-sandbox check-sandbox   (attacks its own confinement)"
"$CS_BIN" check-sandbox --config "$CONFIG" || echo "check-sandbox found a problem (exit $?)"

echo "== comfy-sandbox start   (ComfyUI in the background, UI through the relay)"
"$CS_BIN" start --config "$CONFIG"
for _ in $(seq 50); do
  curl -fsS "http://$listen:$port/" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "GET http://$listen:$port/ through the relay:"
curl -fsS "http://$listen:$port/" || echo "(no answer)"
echo "ComfyUI's own view (/status, capability lines):"
curl -fsS "http://$listen:$port/status" | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps(d.get('status', d), indent=1))" 2>/dev/null || true
"$CS_BIN" status --config "$CONFIG" | sed -n '/^launcher:/,/^[a-z]/p' || true
echo "== comfy-sandbox stop"
"$CS_BIN" stop --config "$CONFIG"
