#!/usr/bin/python3
"""A minimal ComfyUI client for scripts/e2e.sh: the standard library only.

Subcommands (URL is the UI's base, e.g. http://127.0.0.1:8188):
  wait URL SECONDS [PIDFILE]   poll URL/system_stats until it answers 200 with
                               JSON; exits 1 on timeout, 2 when the launcher
                               PIDFILE names is gone meanwhile
  object-info URL CLASS...     one line per class: "CLASS<TAB>yes|no"
  workflow URL                 EmptyImage -> ImageInvert -> SaveImage through
                               /prompt, followed on /ws; prints a JSON summary
  upload URL FILE              POST /upload/image, then GET /view; prints JSON
  make-png FILE W H R G B      writes a small solid-colour RGB PNG
  png-info FILE                prints JSON {width, height, first_pixel}
  closed URL SECONDS           waits until nothing accepts on URL's port
  logs URL                     what ComfyUI captured of its stdout/stderr
                               (/internal/logs/raw, its last 300 writes)
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib


def die(msg, code=1):
    print(msg, file=sys.stderr)
    sys.exit(code)


def http(url, data=None, headers=None, timeout=30, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def get_json(url, timeout=60):
    status, body = http(url, timeout=timeout)
    return json.loads(body)


# ---------------------------------------------------------------- WebSocket
class WebSocket:
    """RFC 6455, client side, enough to read ComfyUI's messages."""

    def __init__(self, url, timeout=30):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed during the WebSocket handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise ConnectionError(f"WebSocket handshake refused: {lines[0]}")
        want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        accept = [l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("sec-websocket-accept:")]
        if accept != [want]:
            raise ConnectionError(f"bad Sec-WebSocket-Accept: {accept}")

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("WebSocket closed by the server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, opcode, payload=b""):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self):
        """Returns (opcode, payload) of the next complete message: 1 text, 2 binary, 8 close."""
        message, first_op = b"", None
        while True:
            b0, b1 = self._read(2)
            fin, op = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if op == 9:          # ping
                self._send(10, payload)
                continue
            if op == 10:         # pong
                continue
            if op == 8:
                return 8, payload
            if op != 0:
                first_op = op
            message += payload
            if fin:
                return first_op, message

    def close(self):
        try:
            self._send(8, struct.pack(">H", 1000))
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- PNG
def png_bytes(w, h, rgb):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_info(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"not a PNG: header {data[:8]!r}")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = ihdr[:4]
    first = None
    if depth == 8 and ctype in (2, 6) and idat:
        # Whatever the first row's filter, its first pixel is stored as is
        # (the left, upper and upper-left neighbours all count as 0).
        row = zlib.decompress(idat)[:1 + 3]
        first = list(row[1:4])
    return {"width": w, "height": h, "bit_depth": depth, "color_type": ctype, "first_pixel": first}


# ---------------------------------------------------------------- commands
def cmd_wait(url, seconds, pidfile=None):
    started = time.monotonic()
    deadline = started + float(seconds)
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            status, body = http(url.rstrip("/") + "/system_stats", timeout=5)
            if status == 200:
                stats = json.loads(body)
                print(json.dumps(stats.get("system", stats)))
                return 0
            last = f"HTTP {status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (OSError, ValueError) as e:
            last = str(e)
        if pidfile:
            try:
                pid = int(open(pidfile).read().strip())
                os.kill(pid, 0)
            except FileNotFoundError as e:
                if time.monotonic() - started > 5:
                    print(f"the launcher is gone ({pidfile}: {e}); last answer: {last}", file=sys.stderr)
                    return 2
            except (OSError, ValueError) as e:
                print(f"the launcher is gone ({pidfile}: {e}); last answer: {last}", file=sys.stderr)
                return 2
        time.sleep(0.5)
    print(f"no answer from {url}/system_stats within {seconds} s; last: {last}", file=sys.stderr)
    return 1


def cmd_object_info(url, *classes):
    info = get_json(url.rstrip("/") + "/object_info", timeout=120)
    print(f"# object_info lists {len(info)} node classes", file=sys.stderr)
    for c in classes:
        print(f"{c}\t{'yes' if c in info else 'no'}")
    return 0


def cmd_workflow(url, timeout="120"):
    base = url.rstrip("/")
    cid = "e2e-" + uuid.uuid4().hex
    color = 0x102030
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "e2e"}},
    }
    ws_url = base.replace("http://", "ws://", 1) + "/ws?clientId=" + cid
    ws = WebSocket(ws_url)
    ws.sock.settimeout(float(timeout))
    op, first = ws.recv()  # the server's "status" greeting: the socket is registered
    seen, events, binary = [], [], 0
    if op == 1:
        seen.append(json.loads(first).get("type"))
    body = json.dumps({"prompt": graph, "client_id": cid}).encode()
    try:
        status, resp = http(base + "/prompt", data=body, headers={"Content-Type": "application/json"})
    except urllib.error.HTTPError as e:
        die(f"POST /prompt: HTTP {e.code}: {e.read()[:2000].decode(errors='replace')}")
    pid = json.loads(resp)["prompt_id"]
    done, error = None, None
    deadline = time.monotonic() + float(timeout)
    while done is None and time.monotonic() < deadline:
        op, payload = ws.recv()
        if op == 8:
            error = "the server closed the WebSocket"
            break
        if op == 2:
            binary += 1
            continue
        msg = json.loads(payload)
        t, d = msg.get("type"), msg.get("data") or {}
        seen.append(t)
        if d.get("prompt_id") not in (None, pid):
            continue
        if t in ("executing", "progress", "executed"):
            events.append({"type": t, "node": d.get("node")})
        if t == "execution_error":
            error = {k: d.get(k) for k in ("node_type", "exception_type", "exception_message")}
            break
        if t == "execution_success" or (t == "executing" and d.get("node") is None and d.get("prompt_id") == pid):
            done = t
    # ComfyUI sends execution_success and then executing(node=None): read on
    # briefly so the summary shows both when both come.
    if done:
        ws.sock.settimeout(2)
        try:
            while True:
                op, payload = ws.recv()
                if op == 1:
                    m = json.loads(payload)
                    seen.append(m.get("type"))
                    if m.get("type") == "executing" and (m.get("data") or {}).get("node") is None:
                        break
        except (OSError, ConnectionError):
            pass
    ws.close()
    history = {}
    for _ in range(20):
        history = get_json(f"{base}/history/{pid}").get(pid, {})
        if history.get("outputs"):
            break
        time.sleep(0.25)
    images = [img for out in history.get("outputs", {}).values() for img in out.get("images", [])]
    print(json.dumps({"prompt_id": pid, "client_id": cid, "done": done, "error": error,
                      "node_events": events, "message_types": seen, "binary_frames": binary,
                      "history_status": history.get("status"), "images": images,
                      "color": color}))
    return 0 if done and images else 1


def cmd_cpu_bench(url, runs="2", timeout="600"):
    """P8's CPU workflow: EmptyImage 1024x1024 batch 8 -> ImageBlur ->
    ImageScaleBy -> ImageSharpen -> SaveImage, `runs` times, each with
    another colour (ComfyUI caches a node's output for equal inputs).
    Prints {"seconds": [...]}: POST /prompt to ComfyUI's own word that the
    prompt is done, on the WebSocket the page listens on. (Not by polling
    /history: every poll is a connection through the relay on the confined
    side only, CPU taken from the workflow on a small machine.)"""
    base = url.rstrip("/")
    cid = "p8-" + uuid.uuid4().hex
    ws = WebSocket(base.replace("http://", "ws://", 1) + "/ws?clientId=" + cid)
    ws.sock.settimeout(float(timeout))
    ws.recv()  # the server's "status" greeting: the socket is registered
    seconds = []
    for i in range(int(runs)):
        graph = {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 8,
                                                          "color": (0x203040 + 97 * i + int(time.time()) % 1000) & 0xFFFFFF}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 5, "sigma": 2.0}},
            "3": {"class_type": "ImageScaleBy", "inputs": {"image": ["2", 0], "upscale_method": "bilinear", "scale_by": 1.5}},
            "4": {"class_type": "ImageSharpen", "inputs": {"image": ["3", 0], "sharpen_radius": 2, "sigma": 1.0, "alpha": 1.0}},
            "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "p8"}},
        }
        t0 = time.monotonic()
        _, resp = http(base + "/prompt", data=json.dumps({"prompt": graph, "client_id": cid}).encode(),
                       headers={"Content-Type": "application/json"})
        pid = json.loads(resp)["prompt_id"]
        deadline = t0 + float(timeout)
        while True:
            if time.monotonic() > deadline:
                die("the P8 workflow did not finish in time")
            op, payload = ws.recv()
            if op == 8:
                die("the server closed the WebSocket during the P8 workflow")
            if op != 1:
                continue
            msg = json.loads(payload)
            t, d = msg.get("type"), msg.get("data") or {}
            if d.get("prompt_id") != pid:
                continue
            if t == "execution_error":
                die(f"the P8 workflow failed: {json.dumps(d)[:2000]}")
            if t == "execution_success" or (t == "executing" and d.get("node") is None):
                break
        seconds.append(round(time.monotonic() - t0, 3))
    ws.close()
    print(json.dumps({"seconds": seconds}))
    return 0


def cmd_upload(url, path):
    base = url.rstrip("/")
    data = open(path, "rb").read()
    name = os.path.basename(path)
    boundary = "e2e" + uuid.uuid4().hex
    parts = []
    for field, value in (("type", "input"), ("overwrite", "true")):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode())
    parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                  "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    try:
        status, resp = http(base + "/upload/image", data=b"".join(parts),
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    except urllib.error.HTTPError as e:
        die(f"POST /upload/image: HTTP {e.code}: {e.read()[:2000].decode(errors='replace')}")
    answer = json.loads(resp)
    q = urllib.parse.urlencode({"filename": answer["name"], "subfolder": answer.get("subfolder", ""), "type": "input"})
    try:
        vstatus, view = http(f"{base}/view?{q}")
    except urllib.error.HTTPError as e:
        vstatus, view = e.code, b""
    print(json.dumps({"upload": answer, "view_status": vstatus, "view_same_bytes": view == data,
                      "view_bytes": len(view)}))
    return 0 if view == data else 1


def cmd_logs(url):
    raw = get_json(url.rstrip("/") + "/internal/logs/raw")
    sys.stdout.write("".join(e.get("m", "") for e in raw.get("entries", [])))
    return 0


def cmd_closed(url, seconds):
    u = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + float(seconds)
    while True:
        try:
            socket.create_connection((u.hostname, u.port), timeout=1).close()
        except OSError as e:
            print(f"{u.hostname}:{u.port}: {e.strerror or e}")
            return 0
        if time.monotonic() > deadline:
            print(f"{u.hostname}:{u.port} still accepts connections after {seconds} s")
            return 1
        time.sleep(0.2)


def main(argv):
    if len(argv) < 2:
        die(__doc__, 64)
    cmd, args = argv[1], argv[2:]
    try:
        if cmd == "wait":
            return cmd_wait(*args)
        if cmd == "object-info":
            return cmd_object_info(*args)
        if cmd == "workflow":
            return cmd_workflow(*args)
        if cmd == "upload":
            return cmd_upload(*args)
        if cmd == "cpu-bench":
            return cmd_cpu_bench(*args)
        if cmd == "logs":
            return cmd_logs(*args)
        if cmd == "closed":
            return cmd_closed(*args)
        if cmd == "make-png":
            path, w, h, r, g, b = args
            open(path, "wb").write(png_bytes(int(w), int(h), (int(r), int(g), int(b))))
            return 0
        if cmd == "png-info":
            print(json.dumps(png_info(open(args[0], "rb").read())))
            return 0
    except TypeError as e:
        die(f"{cmd}: bad arguments ({e})\n{__doc__}", 64)
    except (OSError, ConnectionError, ValueError, KeyError) as e:
        die(f"{cmd}: {type(e).__name__}: {e}")
    die(f"unknown subcommand {cmd!r}\n{__doc__}", 64)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
