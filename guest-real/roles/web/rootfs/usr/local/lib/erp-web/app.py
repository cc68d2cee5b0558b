#!/usr/bin/python3
"""erp-web: the real estate's small ERP web app, behind nginx on 127.0.0.1:8080.

GET /, /invoices  the version and the latest 10 invoices (plain text, fits an 80x25 console)
GET /version      the version string
GET /upload?text= writes a receipt file into /var/lib/erp-web/uploads/ (the app's own state)
It reads PostgreSQL over TCP by the production hostname (pg.prod.example), user erp.
"""

import datetime
import http.server
import os
import re
import urllib.parse

import psycopg2

VERSION = "erp-web 3.1.0"
UPLOADS = "/var/lib/erp-web/uploads"
DSN = os.environ.get(
    "ERP_DSN", "host=pg.prod.example port=5432 dbname=erp user=erp password=erp connect_timeout=5"
)


def latest_invoices():
    with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT i.no, c.name, i.amount, i.created_at FROM invoices i"
            " JOIN customers c ON c.id = i.customer_id ORDER BY i.no DESC LIMIT 10"
        )
        return cur.fetchall()


def page():
    lines = [VERSION, "latest invoices (from pg.prod.example):", f"{'no':>6}  {'customer':<20} {'amount':>10}  time (UTC)"]
    for no, name, amount, created in latest_invoices():
        when = created.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{no:>6}  {name[:20]:<20} {amount:>10}  {when}")
    return "\n".join(lines) + "\n"


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "erp-web/3.1.0"

    def reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/version":
            return self.reply(200, VERSION + "\n")
        if url.path in ("/", "/invoices"):
            try:
                return self.reply(200, page())
            except psycopg2.Error as e:
                return self.reply(503, f"{VERSION}\nerror: database pg.prod.example unavailable: {e}\n")
        if url.path == "/upload":
            text = urllib.parse.parse_qs(url.query).get("text", [""])[0]
            now = datetime.datetime.now(datetime.timezone.utc)
            name = now.strftime("receipt-%Y%m%dT%H%M%S.%fZ.txt")
            os.makedirs(UPLOADS, exist_ok=True)
            with open(os.path.join(UPLOADS, name), "w") as f:
                f.write(f"{now.isoformat()} {re.sub(r'[^ -~]', '?', text)}\n")
            return self.reply(200, f"stored {name}\n")
        return self.reply(404, "not found\n")

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
