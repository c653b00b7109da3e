"""Servers the tests run on 127.0.0.1: webhook and SMTP receivers that record what they get, and PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), WebhookHandler)
        self.bodies: list[bytes] = []
        self.headers_seen: list[dict] = []
        self.statuses: deque[int] = deque()  # answered in order, then 200
        self.hang = False
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookServer

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.bodies.append(body)
        self.server.headers_seen.append(dict(self.headers))
        if self.server.hang:
            self.server.release.wait(10)
            self.close_connection = True
            return
        status = self.server.statuses.popleft() if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format, *args):
        pass


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), SmtpHandler)
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[bytes] = []
        self.mail_replies: deque[str] = deque()  # answered to MAIL FROM in order, then 250
        self.rcpt_reply = "250 ok"

    @property
    def port(self) -> int:
        return self.server_address[1]


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 for smtplib: greeting, EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, QUIT."""

    server: SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 127.0.0.1 test ESMTP")
        sender, recipients = None, []
        while line := self.rfile.readline():
            verb, _, arg = line.decode().rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply("250-127.0.0.1")
                self.reply("250 AUTH PLAIN")
            elif verb == "HELO":
                self.reply("250 127.0.0.1")
            elif verb == "AUTH":
                self.server.logins.append(base64.b64decode(arg.split()[1]))
                self.reply("235 authenticated")
            elif verb == "MAIL":
                answer = self.server.mail_replies.popleft() if self.server.mail_replies else "250 ok"
                if answer.startswith("250"):
                    sender, recipients = arg.removeprefix("FROM:").strip("<>"), []
                self.reply(answer)
            elif verb == "RCPT":
                if self.server.rcpt_reply.startswith("250"):
                    recipients.append(arg.removeprefix("TO:").strip("<>"))
                self.reply(self.server.rcpt_reply)
            elif verb == "DATA":
                self.reply("354 end with .")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                self.server.messages.append((sender, recipients, b"".join(lines)))
                self.reply("250 queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[socketserver.BaseServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        release = getattr(server, "release", None)
        if release is not None:
            release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclasses.dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    database: str

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads (trust authentication: any password)."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": "unused",
            "DAGSTER_PG_DB": self.database,
        }


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@contextlib.contextmanager
def postgres_server(bin_dir: Path, user: str = "dagster", database: str = "dagster") -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a free port, stopped and deleted afterwards. Postgres
    refuses to run as root, so as root the cluster belongs to the `postgres` system user."""
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="emonet-pg-"))
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if as_postgres:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
    subprocess.run([*as_postgres, bin_dir / "initdb", "-D", data, "-U", user, "-A", "trust"], **quiet)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    start = [*as_postgres, bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", folder / "log", "-w", "start"]
    subprocess.run(start, **quiet)
    try:
        create = [*as_postgres, bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", user, database]
        subprocess.run(create, **quiet)
        yield Postgres("127.0.0.1", port, user, database)
    finally:
        subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(folder, ignore_errors=True)
