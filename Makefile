# comfy-sandbox: every entry point a user or CI needs. CONFIG= selects the config.
SHELL        := /bin/bash
SWIFT        ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
CONFIG       ?= $(or $(COMFY_SANDBOX_CONFIG),/etc/comfy-sandbox/config.json)
BIN          := dist/comfy-sandbox
DEBUG_BIN    := .build/debug/comfy-sandbox
PREFIX       ?= /usr/local
DEB_PACKAGES := libseccomp-dev libacl1-dev git acl iproute2 util-linux python3 python3-venv
# Only for make e2e: the browser that drives the real frontend (scripts/e2e/ui_browser.py).
E2E_PACKAGES := chromium
CS            = $(BIN) --config $(CONFIG)
# uv, the requirement installer (pip is the fallback): from PyPI into a
# root-owned venv of its own, where comfy-sandbox looks for it.
UV_VERSION   ?= 0.13.9
UV_DIR       := /usr/local/lib/comfy-sandbox/uv
NODE         ?=

.PHONY: all deps build release install provision plan fix-permissions update-volumes uninstall \
        update-nodes update-nodes-pull rollback-nodes update-comfyui update-all scan-nodes \
        record-models verify-models install-service start stop restart status logs shell check-sandbox \
        test test-make test-kernels e2e e2e-deps e2e-ui bench demo clean

all: build

## deps: install the Debian packages the build and the tool need (only what is missing)
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@if [ "$$(id -u)" = 0 ] && ! $(UV_DIR)/bin/uv --version 2>/dev/null | grep -q "^uv $(UV_VERSION)\b"; then \
	  echo "installing uv $(UV_VERSION) into $(UV_DIR) (from PyPI; the requirement installer)"; \
	  rm -rf $(UV_DIR) && umask 022 && /usr/bin/python3 -m venv $(UV_DIR) && \
	  $(UV_DIR)/bin/pip install -q --disable-pip-version-check --no-cache-dir "uv==$(UV_VERSION)" || \
	  { rm -rf $(UV_DIR); echo "uv could not be installed; requirements will be installed with pip"; }; \
	fi

## build: the release binary, self-contained (static Swift runtime and FoundationEssentials,
## static libseccomp/libacl): it runs without /opt/swift and starts in half
## the time of a dynamically linked one
build: deps
	SWIFT=$(SWIFT) scripts/build-release.sh

## release: the same self-contained binary, dist/comfy-sandbox (ldd shows only glibc)
release: build

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/comfy-sandbox
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/comfy-sandbox/README.md

provision: build
	$(CS) provision

plan: build
	$(CS) plan

fix-permissions: build
	$(CS) fix-permissions

update-volumes: build
	$(CS) provision --only tree

uninstall: build
	$(CS) uninstall

update-nodes: build
	$(CS) update-nodes $(NODE)

update-nodes-pull: build
	$(CS) update-nodes --pull $(NODE)

rollback-nodes: build
	$(CS) rollback-nodes $(NODE)

update-comfyui: build
	$(CS) update-comfyui

update-all: build
	$(CS) update-comfyui --pull && $(CS) update-nodes --pull

scan-nodes: build
	$(CS) scan-nodes $(NODE)

record-models: build
	$(CS) record-models

verify-models: build
	$(CS) verify-models

## install-service: the service and socket units, rendered from the config
install-service: install
	@units=$$($(CS) install-service --templates systemd --binary $(PREFIX)/bin/comfy-sandbox | tee /dev/stderr | sed -n 's/^units: //p'); \
	 if [ -d /run/systemd/system ]; then systemctl daemon-reload && systemctl enable $$units; \
	 else echo "systemd is not running here; the units are installed for the next boot"; fi

start: build
	@if [ -d /run/systemd/system ] && systemctl cat comfy-sandbox.service >/dev/null 2>&1; then systemctl start comfy-sandbox; \
	 elif [ -d /run/systemd/system ] && systemctl cat comfy-sandbox@.service >/dev/null 2>&1; then systemctl start 'comfy-sandbox@*.socket' 'comfy-sandbox@*.service'; \
	 else $(CS) start; fi

stop: build
	@if [ -d /run/systemd/system ] && systemctl is-active -q comfy-sandbox 2>/dev/null; then systemctl stop comfy-sandbox; \
	 elif [ -d /run/systemd/system ] && systemctl cat comfy-sandbox@.service >/dev/null 2>&1; then systemctl stop 'comfy-sandbox@*.service'; \
	 else $(CS) stop; fi

restart: stop start

status: build
	$(CS) status

logs: build
	@if [ -d /run/systemd/system ] && systemctl cat comfy-sandbox.service >/dev/null 2>&1; then journalctl -u comfy-sandbox -n 200 --no-pager; \
	 else log=$$($(CS) status --json 2>/dev/null | python3 -c 'import json,sys; print(next((i["value"] for i in json.load(sys.stdin) if i["key"] == "log"), ""))'); \
	   if [ -n "$$log" ] && [ -f "$$log" ]; then tail -n 200 "$$log"; else echo "no log yet ($${log:-state_dir/launcher.log}); start ComfyUI with make start"; fi; fi

shell: build
	$(CS) shell

check-sandbox: build
	$(CS) check-sandbox

## test: the whole suite; root tests run in throwaway worlds. Fails if the
## host's /etc/passwd or /etc/group changed, or if a target imports one it
## does not declare (the layers of Package.swift hold only if that is checked).
test: deps
	$(SWIFT) build --build-tests --explicit-target-dependency-import-check error
	@sha256sum /etc/passwd /etc/group > /tmp/comfy-sandbox-etc.before
	@set -o pipefail; $(SWIFT) test --skip-build --parallel 2>&1 | grep -v '^◇' ; status=$$?; \
	 sha256sum /etc/passwd /etc/group > /tmp/comfy-sandbox-etc.after; \
	 if ! cmp -s /tmp/comfy-sandbox-etc.before /tmp/comfy-sandbox-etc.after; then \
	   echo "FAIL: the tests changed the host's /etc/passwd or /etc/group"; exit 1; fi; \
	 echo "host /etc/passwd and /etc/group unchanged"; [ $$status = 0 ] || exit $$status; \
	 $(MAKE) --no-print-directory test-make

## test-make: every make target the README names, run as typed in a throwaway
## world on the shipped config (part of make test)
test-make: build
	@sha256sum /etc/passwd /etc/group > /tmp/comfy-sandbox-etc.before
	@status=0; scripts/make-targets.sh || status=$$?; \
	 sha256sum /etc/passwd /etc/group > /tmp/comfy-sandbox-etc.after; \
	 if ! cmp -s /tmp/comfy-sandbox-etc.before /tmp/comfy-sandbox-etc.after; then \
	   echo "FAIL: make-targets changed the host's /etc/passwd or /etc/group"; exit 1; fi; exit $$status

## test-kernels: the root suites, status and check-sandbox under qemu on Debian's
## Linux 6.1 and 6.12 (KERNELS="6.1 6.12 host" adds the host's), scripts/test-kernels.sh
test-kernels: deps
	$(SWIFT) build --build-tests
	scripts/test-kernels.sh

## e2e: the real ComfyUI and six real custom nodes (../shared/fixtures/real),
## requirements from PyPI, a workflow through the relay, in a throwaway world
e2e: build e2e-deps
	CS_BIN=$(CURDIR)/$(BIN) scripts/e2e.sh

## e2e-deps: what make e2e needs beyond the build (Chromium), only what is missing
e2e-deps:
	@missing=""; for p in $(E2E_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## e2e-ui: the browser check alone, against a ComfyUI already served by the
## relay: headless Chromium loads URL (default http://127.0.0.1:8188/) under the
## relay's CSP, queues a workflow from the page, saves SCREENSHOT (ui-browser.png)
e2e-ui: e2e-deps
	python3 scripts/e2e/ui_browser.py $(or $(URL),http://127.0.0.1:8188/) $(or $(SCREENSHOT),ui-browser.png)

## bench: every benchmark with its anchor, printed as ratios
bench: build
	CS_BIN=$(CURDIR)/$(BIN) bench/run.sh

## demo: the whole flow offline in a throwaway world; touches nothing on the host
demo: build
	CS_BIN=$(CURDIR)/$(BIN) scripts/demo.sh

clean:
	rm -rf .build
