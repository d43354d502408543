"""Start the real ``vqdb serve`` in a subprocess on a free loopback port, and talk HTTP to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import vqdb
from vqdb.server.settings import Settings

REPO_ROOT = str(Path(vqdb.__file__).resolve().parent.parent)

# service settings a developer may have exported; the tests set their own
INHERITED_SETTINGS = {f"VQDB_{name.upper()}" for name in Settings.model_fields} | {"VQDB_DATA_DIR"}
KEYS = {"admin": "admin-key-0123", "write": "write-key-4567", "read": "read-key-89ab"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_keys_file(path: Path) -> Path:
    path.write_text("# scope key\n" + "".join(f"{scope} {key}\n" for scope, key in KEYS.items()))
    return path


class Server:
    """One ``python -m vqdb.cli serve`` process; ``start()`` waits until ``/readyz`` answers 200."""

    def __init__(
        self,
        data: Path,
        *,
        keys_file: Path | None = None,
        demo: bool = False,
        env: dict | None = None,
        extra_args: list[str] | None = None,
        max_open_files: int | None = None,
    ):
        self.data = Path(data)
        self.keys_file = keys_file
        self.demo = demo
        self.env = env or {}
        self.extra_args = extra_args or []
        self.max_open_files = max_open_files  # RLIMIT_NOFILE (soft and hard) of the server process
        self.port = None
        self.proc: subprocess.Popen | None = None
        self.log = self.data.parent / f"{self.data.name}-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "vqdb.cli",
            "serve",
            "--data",
            str(self.data),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        if self.keys_file is not None:
            cmd += ["--keys-file", str(self.keys_file)]
        if not self.demo:
            cmd.append("--no-demo")
        return cmd + self.extra_args

    def start(self, timeout: float = 300.0) -> Server:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in INHERITED_SETTINGS}
        env.update({"PYTHONUNBUFFERED": "1", **self.env})
        # the server imports the same vqdb as the tests, installed or not
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=self._limit_files if self.max_open_files else None,
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.read_log()}")
                try:
                    if http.get("/readyz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.read_log()}")

    def _limit_files(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_open_files, self.max_open_files))

    def open_files(self) -> int:
        """File descriptors the server process holds now."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def read_log(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""

    def stop(self, timeout: float = 30.0) -> int:
        """Graceful stop (SIGTERM: collections are saved and closed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._logf.close()

    def kill(self) -> None:
        """Crash (SIGKILL): nothing is flushed except what the WAL already holds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_logf", None):
            self._logf.close()

    def client(self, scope: str | None = "admin", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {KEYS[scope]}"} if scope else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)
