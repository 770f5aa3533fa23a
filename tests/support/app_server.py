"""Start and stop ``streamlit run app.py`` on a free loopback port; the browser's launch options.

Shared by the real-browser tests (``tests/e2e``) and ``bench/bench_app_load.py``; it raises
``RuntimeError`` (a test fixture turns it into a failure). The server is started with
``python -m streamlit`` from the repository root, in its own process session, with its
output in a log file; :func:`app_server` yields once ``/_stcore/health`` answers and stops the
server (SIGTERM, then SIGKILL after a grace period) when the block ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)
HEALTH_PATH = "/_stcore/health"
STOP_GRACE_S = 15.0


@dataclass
class AppServer:
    """A running Streamlit server.

    ``started`` is the ``time.monotonic()`` just before the process was spawned and
    ``healthy_after_s`` the seconds from then until ``/_stcore/health`` answered 200.
    """

    url: str
    process: subprocess.Popen
    log: Path
    started: float
    healthy_after_s: float

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's output."""
        return self.log.read_text(errors="replace")[-chars:]


def chromium_path() -> str:
    """Debian's chromium (never a playwright download).

    Raises
    ------
    RuntimeError
        If ``chromium`` is not on the PATH.
    """
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("chromium is not on the PATH (apt-get install chromium)")
    return executable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def app_server(env: Mapping[str, str], log: Path, *, timeout_s: float = 90.0,
               app: str = "app.py") -> Iterator[AppServer]:
    """Serve ``app`` headless on a free 127.0.0.1 port until the block ends.

    Parameters
    ----------
    env
        Variables added to this process's environment for the server (``FAIRVLM_HOME``,
        ``FAIRVLM_DATA_ROOTS``, ...).
    log
        File receiving the server's stdout and stderr.
    timeout_s
        Seconds to wait for ``/_stcore/health``.

    Raises
    ------
    RuntimeError
        The server exited, or did not answer within ``timeout_s``; the message ends with the
        tail of its log.
    """
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", app, "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port)]
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as handle:
        process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        healthy = wait_healthy(url, process, log, timeout_s) - started
        yield AppServer(url=url, process=process, log=log, started=started,
                        healthy_after_s=healthy)
    finally:
        stop(process)


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> float:
    """Poll ``url``'s health endpoint every 0.1 s; the ``time.monotonic()`` it answered 200.

    Raises
    ------
    RuntimeError
        As :func:`app_server`.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {process.returncode}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url + HEALTH_PATH, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"streamlit did not answer {HEALTH_PATH} in {timeout_s:.0f} s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM ``process``; SIGKILL it if it has not exited after :data:`STOP_GRACE_S`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
