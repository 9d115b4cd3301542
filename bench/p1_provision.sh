#!/usr/bin/env bash
# P1: provisioning the four-share tree, comfy-sandbox vs ansible-playbook doing
# the same with the group, user and file modules (connection=local,
# gather_facts off). First run on a fresh world, then no-op re-runs.
# Goal: no-op provision <= 1/100 of Ansible's time. ansible-core is pip
# installed into a venv (/tmp/cs-bench-ansible) the first time.
# Both run in the same throwaway world, with different names and paths.
set -euo pipefail
cd "$(dirname "$0")/.."
CS_BIN="${CS_BIN:-$PWD/dist/comfy-sandbox}"
VENV="${ANSIBLE_VENV:-/tmp/cs-bench-ansible}"
if [ ! -x "$VENV/bin/ansible-playbook" ]; then
  echo "P1: installing ansible-core into $VENV (pip)..."
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q ansible-core
fi
. bench/world.sh
enter_world "$@"

useradd -m -d "$WORLD/home/bench" -U -s /bin/bash bench
chmod 0700 "$WORLD/home/bench"

# comfy-sandbox: accounts + tree (the areas Ansible is asked to do too).
cs_h="$WORLD/home/bench/cs"
cat >"$WORLD/p1.json" <<JSON
{ "primary_user": "bench",
  "sandbox_user": { "name": "comfyui_sandbox", "home": "$WORLD/home/comfyui_sandbox" },
  "shared_group": { "name": "comfyshared" },
  "state_dir": "$WORLD/state", "comfyui": { "path": "$WORLD/opt/cs/ComfyUI" },
  "shares": [
    { "name": "models", "path": "$cs_h/models", "mount": "models", "access": "read-only" },
    { "name": "workflows", "path": "$cs_h/comfy/workflows", "mount": "user/default/workflows", "access": "read-write" },
    { "name": "input", "path": "$cs_h/input", "mount": "input", "access": "read-write" },
    { "name": "output", "path": "$cs_h/output", "mount": "output", "access": "read-write" } ] }
JSON
export COMFY_SANDBOX_CONFIG="$WORLD/p1.json"
cs="$CS_BIN provision --only accounts,tree"

# Ansible: the same accounts, directories, modes and links.
a_h="$WORLD/home/bench/ans"
cat >"$WORLD/p1.yml" <<YAML
- hosts: localhost
  gather_facts: false
  tasks:
    - group: { name: ansshared, system: true }
    - user: { name: ans_sandbox, system: true, group: ansshared, home: "$WORLD/home/ans_sandbox", create_home: false, shell: /usr/sbin/nologin, password: "!" }
    - user: { name: bench, groups: ansshared, append: true }
    - file: { path: "$WORLD/home/ans_sandbox", state: directory, owner: ans_sandbox, group: ansshared, mode: "0700" }
    - file: { path: "$a_h", state: directory, owner: bench, group: bench, mode: "0711" }
    - file: { path: "$a_h/comfy", state: directory, owner: bench, group: bench, mode: "0711" }
    - file: { path: "$a_h/models", state: directory, owner: bench, group: ansshared, mode: "2755" }
    - file: { path: "$a_h/comfy/workflows", state: directory, owner: bench, group: ansshared, mode: "2775" }
    - file: { path: "$a_h/input", state: directory, owner: bench, group: ansshared, mode: "2775" }
    - file: { path: "$a_h/output", state: directory, owner: bench, group: ansshared, mode: "2775" }
    - file: { path: "$WORLD/opt/ans/ComfyUI/user/default", state: directory, owner: root, group: root, mode: "0755" }
    - file: { src: "$a_h/models", dest: "$WORLD/opt/ans/ComfyUI/models", state: link }
    - file: { src: "$a_h/comfy/workflows", dest: "$WORLD/opt/ans/ComfyUI/user/default/workflows", state: link }
    - file: { src: "$a_h/input", dest: "$WORLD/opt/ans/ComfyUI/input", state: link }
    - file: { src: "$a_h/output", dest: "$WORLD/opt/ans/ComfyUI/output", state: link }
YAML
export ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_INVENTORY_UNPARSED_WARNING=False ANSIBLE_NOCOLOR=1
ans="$VENV/bin/ansible-playbook -i localhost, -c local -e ansible_python_interpreter=$VENV/bin/python $WORLD/p1.yml"

t() { local s e; s=$(date +%s.%N); eval "$1" >"$WORLD/out.log" 2>&1 || { cat "$WORLD/out.log"; exit 1; }; e=$(date +%s.%N); python3 -c "print('%.4f' % ($e - $s))"; }
cs_first=$(t "$cs")
ans_first=$(t "$ans")
"$CS_BIN" plan --only accounts,tree | grep -q "plan: nothing to do" || { echo "P1: provision left work"; exit 1; }

hyperfine -N --style basic --warmup 2 --runs 20 --export-json "$WORLD/cs.json" "$cs" >/dev/null 2>&1
hyperfine --style basic --runs "${P1_ANSIBLE_RUNS:-3}" --export-json "$WORLD/ans.json" "$ans" >/dev/null 2>&1
cs_noop=$(hf_mean "$WORLD/cs.json"); ans_noop=$(hf_mean "$WORLD/ans.json")
echo "P1 first run: comfy-sandbox ${cs_first}s, ansible-playbook ${ans_first}s -> $(ratio "$ans_first" "$cs_first")x faster"
echo "P1 no-op:     comfy-sandbox ${cs_noop}s, ansible-playbook ${ans_noop}s -> 1/$(ratio "$ans_noop" "$cs_noop") of Ansible's time (goal <= 1/100)"
echo "P1 note: Ansible is not asked for the default ACLs and the traverse ACL (ansible.posix is not in ansible-core); comfy-sandbox does them."
