# shellcheck shell=bash
# The throwaway world the demo and the benchmarks run in (the tests have their
# own, in Swift: Tests/IntegrationTests/Support/World.swift): a temporary copy
# of /etc bind-mounted over /etc in a private mount namespace, so useradd and
# groupadd change only the copy and the host's accounts stay as they were.
# Two ways in:
#   world_reexec MARK "$@"  re-executes the calling script once in a private
#                           mount namespace (MARK, an env var name, tells the
#                           inside); then, inside it,
#   world_bind_etc DIR      copies /etc to DIR/etc and binds it over /etc.
# Or, one namespace per command:
#   world_copy_etc DIR      copies /etc to DIR/etc, then
#   world_run DIR CMD...    runs CMD in a fresh private mount namespace with
#                           DIR/etc bound over /etc.
# `unshare --propagation private` makes every mount private first, so the
# bind never propagates back to the host's namespace.

world_require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$(basename "$0"): needs root (it creates users, but only inside its own throwaway world)" >&2
    exit 1
  fi
}

world_reexec() {
  local mark="$1"; shift
  world_require_root
  if [ "${!mark:-}" != 1 ]; then
    export "$mark=1"
    exec unshare --mount --propagation private "$0" "$@"
  fi
}

world_bind_etc() {
  cp -a /etc "$1/etc"
  mount --make-rprivate /
  mount --bind "$1/etc" /etc
}

world_copy_etc() { cp -a /etc "$1/etc"; }

world_run() {
  local dir="$1"; shift
  WORLD="$dir" unshare --mount --propagation private /bin/sh -c 'mount --bind "$WORLD/etc" /etc && exec "$@"' sh "$@"
}

# A primary user as a person has one: a login shell and a 0700 home under
# $WORLD/home.
world_add_user() {
  useradd -m -d "$WORLD/home/$1" -s /bin/bash -U "$1"
  chmod 0700 "$WORLD/home/$1"
}

# world_git_daemon DIR: serves the bare repositories in DIR read-only on
# 127.0.0.1 with a real git daemon; sets GIT_BASE_URL and GIT_DAEMON_PID.
world_git_daemon() {
  local base="$1" port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  git daemon --listen=127.0.0.1 --port="$port" --export-all --base-path="$base" --reuseaddr "$base" \
    >"$base/../git-daemon.log" 2>&1 &
  GIT_DAEMON_PID=$!
  GIT_BASE_URL="git://127.0.0.1:$port"
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "git daemon did not start on 127.0.0.1:$port" >&2
  return 1
}

# world_git_repo SRC DIR/NAME.git [TAG...]: a bare repository holding one
# commit of the files in SRC (branch main), tagged with each TAG.
world_git_repo() {
  local src="$1" bare="$2" work
  shift 2
  work="$(mktemp -d)"
  cp -a "$src/." "$work/"
  git -C "$work" init -q -b main
  git -C "$work" add -A
  git -C "$work" -c user.name=world -c user.email=world@invalid commit -q -m "$(basename "$src")"
  for tag in "$@"; do git -C "$work" tag "$tag"; done
  git clone -q --bare "$work" "$bare"
  rm -rf "$work"
}

# world_free_port [PREFERRED]: PREFERRED when nothing listens there, else a free one.
world_free_port() {
  python3 - "${1:-0}" <<'PY'
import socket, sys
want = int(sys.argv[1])
for port in ([want] if want else []) + [0]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); print(s.getsockname()[1]); break
    except OSError:
        pass
    finally:
        s.close()
PY
}
