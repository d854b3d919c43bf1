"""Start and stop a local llama.cpp OpenAI-compatible server (127.0.0.1) for a local judge.

Runs `python -m harness.llama_server` (the wrapper with the safe buffer settings),
waits until /v1/models answers, and stops the process by its PID. Used by tests and
benchmarks/judge_throughput.py; a user can do the same by hand and point the
`local-openai` judge at it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server by its PID: SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout_s)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_llama_server(model_path: str | Path, *, port: int | None = None, n_ctx: int = 2048,
                       n_threads: int | None = None, log_path: Path | None = None,
                       timeout_s: float = 180.0) -> LocalServer:
    """A running server for this GGUF on 127.0.0.1; raises HarnessError (with the log's tail) if it won't start."""
    port = port or free_port()
    log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"harness-llama-server-{port}.log"
    cmd = [sys.executable, "-m", "harness.llama_server", "--model", str(model_path), "--port", str(port),
           "--n_ctx", str(n_ctx), "--host", "127.0.0.1"]
    if n_threads:
        cmd += ["--n_threads", str(n_threads), "--n_threads_batch", str(n_threads)]
    log = open(log_path, "wb")
    try:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    server = LocalServer(process, port, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise HarnessError(f"the llama.cpp server exited with code {process.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as r:
                if r.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.25)
    server.stop()
    raise HarnessError(f"the llama.cpp server did not answer on port {port} within {timeout_s:.0f} s; log: {log_path}")
