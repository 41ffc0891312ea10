"""Run `llamavid serve` (or another OpenAI-compatible server taking `--host` and `--port`, such as vLLM's) as a
child process on a free loopback port: for tests, benchmarks and scripts.

The server is a real process (its own interpreter, uvicorn, sockets), so what is measured or tested is what a
client sees. Waiting for it is bounded; its log goes to a file the caller can read.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`with ServerProcess(["--model", dir], log=path) as server: server.url ...`

    `program`: the command before `--host ... --port ...` and `args` (default `llamavid serve`); `env`: variables
    added to this process's environment."""

    def __init__(
        self,
        args: list[str],
        log: str | os.PathLike,
        startup_timeout_s: float = 120.0,
        program: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        self.args = list(args)
        self.log_path = Path(log)
        self.startup_timeout_s = startup_timeout_s
        self.program = program or [sys.executable, "-m", "llamavid.cli", "serve"]
        self.env = dict(env or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **self.env}
        command = [*self.program, "--host", "127.0.0.1", "--port", str(self.port)]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(command + self.args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        self.__exit__()
        raise TimeoutError(f"the server did not answer /health within {self.startup_timeout_s:g} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()
