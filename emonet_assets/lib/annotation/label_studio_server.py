"""A local Label Studio server run from its own virtual environment (`make label-studio` makes it): SQLite in a
data folder, bound to 127.0.0.1, one user whose API token is known, and local-files serving of a document root.
`make annotate` and the tests start it through here, and stop exactly the process group they started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class LabelStudioServerError(RuntimeError):
    """The server did not start; the message ends with the tail of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LabelStudioServer:
    executable: Path
    data_dir: Path
    document_root: Path
    username: str
    password: str
    token: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def template(self) -> Path:
        """A data folder `label-studio init` migrated once (`make label-studio` makes it beside the executable): a
        new server starts from a copy in seconds instead of running Label Studio's migrations for a minute."""
        return self.executable.parent.parent / "template-data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self, timeout_s: float = 300) -> float:
        """Start it and wait until /health answers; returns the seconds that took. A new data folder starts as a
        copy of the template when there is one; otherwise Label Studio migrates it first, most of the time."""
        if not self.executable.exists():
            raise LabelStudioServerError(f"{self.executable} is missing: `make label-studio` installs Label Studio")
        if not (self.data_dir / "label_studio.sqlite3").exists() and (self.template / "label_studio.sqlite3").exists():
            shutil.copytree(self.template, self.data_dir, dirs_exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",  # else each start asks PyPI for a newer release
            "no_proxy": "*",
        }
        args = [
            str(self.executable),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            f"--username={self.username}",
            f"--password={self.password}",
            f"--user-token={self.token}",
            "--enable-legacy-api-token",
            "--log-level",
            "WARNING",
        ]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir, start_new_session=True
            )
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise LabelStudioServerError(f"label-studio exited with {self.process.returncode}: {self._tail()}")
            if self.healthy():
                return time.monotonic() - started
            time.sleep(0.5)
        self.stop()
        raise LabelStudioServerError(
            f"label-studio did not answer on {self.url} within {timeout_s:.0f} s: {self._tail()}"
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM to the process group it started (Label Studio's own children included), SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        except ProcessLookupError:
            pass

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
