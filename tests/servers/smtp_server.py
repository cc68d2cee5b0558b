#!/usr/bin/env python3
"""A real SMTP server for reclab's notification tests: aiosmtpd with STARTTLS required.

Usage: smtp_server.py PORT CERT KEY OUTFILE

Every message received is appended to OUTFILE as one JSON line (sender, recipients, the raw
message, and whether the session was encrypted). Prints "ready" once listening; runs until
killed.
"""
import json
import signal
import ssl
import sys

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": session.ssl is not None,
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 OK"


def main():
    port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Recorder(out),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
    )
    controller.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    main()
