"""Servers the tests run on 127.0.0.1: webhook and SMTP receivers that record what they get, a fake OpenAI-compatible
chat endpoint with scripted answers, and PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
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


class ChatServer(ThreadingHTTPServer):
    """`POST /v1/chat/completions` as an OpenAI-compatible server answers it. `answer(image_sha256)` gives each
    request's (status, content): a 200 carries the content as the assistant's message, any other status is an error
    (with `retry-after-ms` so client retries are quick). With `api_key` set, any other bearer token gets a 401."""

    daemon_threads = True
    request_queue_size = 128  # 16 clients connecting at once overflow the default backlog of 5: a 1 s SYN retry

    def __init__(self, answer: Callable[[str], tuple[int, str]], api_key: str | None = None):
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.answer = answer
        self.api_key = api_key
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def images(self) -> list[str]:
        """The sha256 of the image each request carried, in arrival order."""
        with self.lock:
            return [_request_image(body) for body in self.requests]


def scripted(scripts: dict[str, list[tuple[int, str]]], default: tuple[int, str]) -> Callable[[str], tuple[int, str]]:
    """Answers per image sha256 in order, then `default`: the order holds whatever the client's concurrency."""
    queues = {sha: deque(answers) for sha, answers in scripts.items()}
    lock = threading.Lock()

    def answer(sha: str) -> tuple[int, str]:
        with lock:
            queue = queues.get(sha)
            return queue.popleft() if queue else default

    return answer


def _request_image(body: dict) -> str:
    url = next(p["image_url"]["url"] for p in body["messages"][-1]["content"] if p["type"] == "image_url")
    return hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("retry-after-ms", "5")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.server.api_key is not None and self.headers.get("Authorization") != f"Bearer {self.server.api_key}":
            self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
            return
        with self.server.lock:
            self.server.requests.append(body)
        status, content = self.server.answer(_request_image(body))
        if status != 200:
            self._send(status, {"error": {"message": content, "type": "server_error", "code": status}})
            return
        message = {"role": "assistant", "content": content}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        self._send(
            200,
            {
                "id": "chat-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [choice],
                "usage": usage,
            },
        )

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
