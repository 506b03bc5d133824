"""Real servers for the trust tests: gunicorn on a free loopback port, a throwaway redis-server."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from html import unescape as html_unescape
from pathlib import Path

import requests

from tests.conftest import REPO_ROOT

# The machine's, plus the roots the suite adds for its temporary models and files (tests/conftest.py).
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "MODEL_ROOTS", "DATA_ROOTS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment of a child Django process: nothing of this test session's settings."""
    env = {key: os.environ[key] for key in BASE_ENV_KEYS if key in os.environ}
    env.update(overrides)
    return env


def manage(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


def start_gunicorn(env: dict[str, str], log_path: Path, *, workers: int = 4, threads: int = 1) -> Server:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "gunicorn"), "studyapp.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", str(threads), "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return server
        except requests.RequestException:  # still booting
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"gunicorn did not answer /healthz within 60 s:\n{server.log()}")


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) it with append-only persistence, as a production broker runs."""
        binary = redis_server_binary()
        assert binary, "redis-server is not installed"
        command = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:  # not listening yet
                pass
            time.sleep(0.1)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


class HttpRater:
    """A rater walking a real server with ``requests``: one session (cookies), forms filled
    from the page's hidden inputs, sliders answered with fixed scores."""

    def __init__(self, base_url: str, study_slug: str, pid: str, *, session_id: str | None = None) -> None:
        self.session = requests.Session()
        self.base = base_url
        self.slug = study_slug
        self.pid = pid
        self.session_id = session_id or f"s-{pid}"

    def enter(self) -> requests.Response:
        query = {"PROLIFIC_PID": self.pid, "STUDY_ID": "prolific-study", "SESSION_ID": self.session_id}
        return self.session.get(f"{self.base}/r/{self.slug}/", params=query, timeout=30)

    def form(self, html: str) -> dict[str, str]:
        data = {name: html_unescape(value) for name, value in HIDDEN.findall(html)}
        for name in data:
            if name.startswith("score-") or name == "response":
                data[name] = "100" if name == "response" else "42"
        return data

    def post(self, path: str, data: dict[str, str]) -> requests.Response:
        return self.session.post(
            self.base + path, data=data, allow_redirects=False, timeout=60, headers={"Referer": self.base}
        )

    def to_rating_page(self) -> requests.Response:
        """Enter, agree, read the instructions, do the practice: the first rating page."""
        page = self.enter()
        for extra in ({"choice": "agree"}, {}, {}):
            path = page.url.removeprefix(self.base)
            answer = self.post(path, self.form(page.text) | extra)
            assert answer.status_code == 303, (path, answer.status_code, answer.text[:300])
            page = self.session.get(self.base + answer.headers["Location"], timeout=30)
        assert page.url.endswith("/-/rate/"), page.url
        return page

    def finish(self, page: requests.Response, limit: int = 50) -> requests.Response:
        """Answer every page until the completion page."""
        for _ in range(limit):
            path = page.url.removeprefix(self.base)
            if path.endswith("/-/done/"):
                return page
            extra = {"choice": "agree"} if path.endswith("/-/consent/") else {}
            answer = self.post(path, self.form(page.text) | extra)
            assert answer.status_code == 303, (path, answer.status_code, answer.text[:300])
            page = self.session.get(self.base + answer.headers["Location"], timeout=30)
            assert page.status_code == 200, (page.url, page.status_code)
        raise AssertionError("no completion page")
