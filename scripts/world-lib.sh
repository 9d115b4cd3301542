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
