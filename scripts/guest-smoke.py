#!/usr/bin/env python3
"""Small QEMU helpers for scripts/guest-smoke (Python stdlib only).

  wait-agent SOCK TIMEOUT          sync + ping the guest agent until it answers (exit 1 on timeout)
  exec SOCK TIMEOUT PATH [ARG...]  guest-exec with captured output; prints stdout, exits with the guest's code
  shutdown SOCK                    guest-shutdown (powerdown)
  hmp SOCK COMMAND                 runs a human monitor command through a -qmp unix socket
  screendump SOCK FILE.ppm         takes a screendump through a -qmp unix socket
  ppm2png IN.ppm OUT.png           converts a screendump and prints "distinct_colors non_background_pixels"
"""

import base64
import json
import os
import socket
import struct
import sys
import time
import zlib


class Agent:
    """A guest-agent connection over a QEMU chardev unix socket."""

    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("agent socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def call(self, cmd, args=None, want_reply=True):
        msg = {"execute": cmd}
        if args is not None:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        if not want_reply:
            return None
        while True:
            line = self._line().strip()
            if not line:
                continue
            reply = json.loads(line)
            if "error" in reply:
                raise RuntimeError(f"{cmd}: {reply['error']}")
            if "return" in reply:
                return reply["return"]

    def sync(self):
        """guest-sync with a fresh id; discards stale replies of earlier (timed-out) commands."""
        ident = int(time.time() * 1000) % 2_000_000_000
        self.sock.sendall(b"\xff")  # guest-sync-delimited style resync byte is harmless for guest-sync
        self.sock.sendall(json.dumps({"execute": "guest-sync", "arguments": {"id": ident}}).encode() + b"\n")
        while True:
            line = self._line().strip().lstrip(b"\xff")
            if not line:
                continue
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if reply.get("return") == ident:
                return


def wait_agent(path, timeout):
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            agent = Agent(path, 2)
            try:
                agent.sync()
                agent.call("guest-ping")
                return 0
            finally:
                agent.close()
        except (OSError, ConnectionError, RuntimeError, ValueError) as e:
            last = str(e) or type(e).__name__
        time.sleep(0.3)
    print(f"guest agent on {path} did not answer within {timeout} s (last error: {last})", file=sys.stderr)
    return 1


def guest_exec(path, timeout, argv):
    agent = Agent(path, 5)
    try:
        agent.sync()
        pid = agent.call("guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True})["pid"]
        deadline = time.monotonic() + timeout
        while True:
            st = agent.call("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                break
            if time.monotonic() > deadline:
                print(f"guest-exec {argv[0]} did not finish within {timeout} s", file=sys.stderr)
                return 124
            time.sleep(0.05)
    finally:
        agent.close()
    sys.stdout.write(base64.b64decode(st.get("out-data", "")).decode(errors="replace"))
    sys.stderr.write(base64.b64decode(st.get("err-data", "")).decode(errors="replace"))
    if "signal" in st:
        return 128 + st["signal"]
    return st.get("exitcode", 1)


def shutdown(path):
    agent = Agent(path, 5)
    try:
        agent.sync()
        agent.call("guest-shutdown", {"mode": "powerdown"}, want_reply=False)
    finally:
        agent.close()
    return 0


def qmp(path, command, args=None):
    """Runs one QMP command on a -qmp unix socket and returns its result."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    f = s.makefile("rwb")

    def reply():
        while True:
            msg = json.loads(f.readline())
            if "event" in msg or "QMP" in msg:
                continue
            if "error" in msg:
                raise RuntimeError(f"{command}: {msg['error'].get('desc', msg['error'])}")
            return msg["return"]

    json.loads(f.readline())  # greeting
    f.write(json.dumps({"execute": "qmp_capabilities"}).encode() + b"\n")
    f.flush()
    reply()
    msg = {"execute": command}
    if args is not None:
        msg["arguments"] = args
    f.write(json.dumps(msg).encode() + b"\n")
    f.flush()
    result = reply()
    s.close()
    return result


def hmp(path, command):
    """Runs a human monitor command through QMP (no terminal echo to filter)."""
    out = qmp(path, "human-monitor-command", {"command-line": command})
    sys.stdout.write(out)
    return 1 if "rror" in out else 0


def ppm2png(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    # Binary PPM: "P6\n<w> <h>\n<max>\n" then RGB bytes.
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    pos += 1
    if fields[0] != b"P6":
        raise SystemExit(f"{src}: not a binary PPM")
    w, h = int(fields[1]), int(fields[2])
    pixels = data[pos : pos + w * h * 3]
    raw = b"".join(b"\x00" + pixels[y * w * 3 : (y + 1) * w * 3] for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    with open(dst, "wb") as f:
        f.write(png)
    colors = {}
    for i in range(0, len(pixels), 3):
        px = pixels[i : i + 3]
        colors[px] = colors.get(px, 0) + 1
    background = max(colors.values()) if colors else 0
    print(f"{w}x{h} {len(colors)} {w * h - background}")
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "wait-agent":
        return wait_agent(argv[2], float(argv[3]))
    if len(argv) >= 5 and argv[1] == "exec":
        return guest_exec(argv[2], float(argv[3]), argv[4:])
    if len(argv) == 3 and argv[1] == "shutdown":
        return shutdown(argv[2])
    if len(argv) == 4 and argv[1] == "hmp":
        return hmp(argv[2], argv[3])
    if len(argv) == 4 and argv[1] == "screendump":
        qmp(argv[2], "screendump", {"filename": argv[3]})
        return 0
    if len(argv) == 4 and argv[1] == "ppm2png":
        return ppm2png(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
