"""A small HTTP load driver and a gunicorn runner for the page benchmarks (loopback only).

Clients are threads with their own keep-alive ``http.client`` connection and cookie jar. A
run stops by itself at whichever comes first: its time limit or its request budget, and every
socket has a timeout, so nothing here can run on. Standard library only.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

HOST = "127.0.0.1"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
SOCKET_TIMEOUT = 120.0
MAX_ERRORS = 50  # a run that keeps failing stops early instead of spinning


class BadReply(RuntimeError):
    """The server answered something other than what the benchmark expects."""


# --- HTTP client ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class HttpClient:
    """One browser-like client: a keep-alive connection and the cookies it was given."""

    def __init__(self, port: int, timeout: float = SOCKET_TIMEOUT):
        self.port = port
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get(self, path: str, headers: dict | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def post_form(self, path: str, fields) -> Reply:
        body = urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.request("POST", path, body, headers)

    def request(self, method: str, path: str, body=None, headers=None) -> Reply:
        """Send one request; reconnect once if the server had closed the idle connection."""
        for attempt in (1, 2):
            fresh = self._conn is None
            try:
                return self._send(method, path, body, headers or {})
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if fresh or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def stream(self, path: str, chunk: int = 256 * 1024) -> tuple[Reply, int, int]:
        """GET a large body, discarding it as it arrives; return (the reply with only the
        body's first chunk, bytes, line feeds). Raises on a body cut short."""
        conn = self._connection()
        conn.request("GET", path, headers=self._cookie_header({}))
        response = conn.getresponse()
        self._keep_cookies(response)
        head = response.read(chunk)
        size, lines = len(head), head.count(b"\n")
        while data := response.read(chunk):
            size += len(data)
            lines += data.count(b"\n")
        if response.will_close:
            self.close()
        return Reply(response.status, response.headers, head), size, lines

    def local_port(self) -> int | None:
        """The client side's port of the open connection (None when none is open)."""
        if self._conn is None or self._conn.sock is None:
            return None
        return self._conn.sock.getsockname()[1]

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        return self._conn

    def _send(self, method, path, body, headers) -> Reply:
        conn = self._connection()
        conn.request(method, path, body=body, headers=self._cookie_header(headers))
        response = conn.getresponse()
        data = response.read()
        self._keep_cookies(response)
        if response.will_close:
            self.close()
        return Reply(response.status, response.headers, data)

    def _cookie_header(self, headers: dict) -> dict:
        if self.cookies:
            headers = {**headers, "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        return headers

    def _keep_cookies(self, response) -> None:
        for raw in response.headers.get_all("Set-Cookie") or ():
            name, _, rest = raw.partition("=")
            value = rest.split(";", 1)[0]
            if value and "expires=thu, 01 jan 1970" not in raw.lower():
                self.cookies[name.strip()] = value
            else:
                self.cookies.pop(name.strip(), None)


def csrf_token(html: bytes) -> str:
    match = CSRF.search(html.decode("utf-8", "replace"))
    if not match:
        raise BadReply("no csrf_token on the page")
    return match.group(1)


def csv_rows(body: bytes, lines: int | None = None) -> int:
    """Data rows of a CSV export: its lines minus the ``# `` provenance lines and the header.
    ``body`` may be just the beginning of the file when ``lines`` (all of its line feeds) is
    given. Assumes no line breaks inside cells (the synthetic data has none)."""
    comments = sum(1 for line in body.split(b"\r\n") if line.startswith(b"# "))
    if lines is None:
        lines = body.count(b"\n")
    return lines - comments - 1


def login(client: HttpClient, username: str, password: str) -> None:
    """Log in through the form, as tests/conftest.py does: GET /login, POST with its token."""
    token = csrf_token(client.get("/login").body)
    reply = client.post_form(
        "/login", {"username": username, "password": password, "csrf_token": token}
    )
    location = reply.headers.get("Location", "")
    if reply.status != 302 or "/login" in location:
        raise BadReply(f"login as {username} failed: HTTP {reply.status} -> {location!r}")


# --- load loop -----------------------------------------------------------------------------

# A task makes one iteration's requests and returns how long each took, by label
# ({"post": 0.012, "form": 0.004}); it raises BadReply on an unexpected answer.
Task = Callable[[HttpClient, int], dict[str, float]]


@dataclass
class LoadResult:
    iterations: int = 0
    errors: int = 0
    seconds: float = 0.0
    timings: dict[str, list[float]] = field(default_factory=dict)
    error_kinds: Counter = field(default_factory=Counter)
    client_cpu: float = 0.0  # CPU seconds the driver process itself used meanwhile
    server_cpu: float = 0.0  # CPU seconds the server's processes used meanwhile

    @property
    def per_second(self) -> float:
        return self.iterations / self.seconds if self.seconds else 0.0

    def median_ms(self, label: str) -> float:
        values = self.timings.get(label) or [float("nan")]
        return statistics.median(values) * 1000

    def p95_ms(self, label: str) -> float:
        values = sorted(self.timings.get(label) or [float("nan")])
        return values[min(len(values) - 1, int(0.95 * len(values)))] * 1000

    def server_cpu_ms(self) -> float:
        return self.server_cpu / self.iterations * 1000 if self.iterations else float("nan")


def run_load(
    task: Task,
    clients: list[HttpClient],
    *,
    seconds: float,
    max_iterations: int,
    server_pid: int | None = None,
) -> LoadResult:
    """Run ``task`` from every client at once until ``seconds`` pass or ``max_iterations``
    iterations are done (whichever is first); in-flight requests are allowed to finish."""
    result = LoadResult()
    lock = threading.Lock()
    issued = iter(range(max_iterations))
    start_gate = threading.Barrier(len(clients) + 1)
    deadline = [0.0]

    def next_number() -> int | None:
        with lock:
            if time.perf_counter() >= deadline[0] or result.errors >= MAX_ERRORS:
                return None
            return next(issued, None)

    def worker(client: HttpClient) -> None:
        start_gate.wait()
        while (number := next_number()) is not None:
            try:
                timings = task(client, number)
            except (BadReply, OSError, http.client.HTTPException) as error:
                client.close()
                with lock:
                    result.errors += 1
                    result.error_kinds[f"{type(error).__name__}: {str(error)[:80]}"] += 1
                continue
            with lock:
                result.iterations += 1
                for label, value in timings.items():
                    result.timings.setdefault(label, []).append(value)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    cpu_before, server_before = time.process_time(), tree_cpu_seconds(server_pid)
    began = time.perf_counter()
    deadline[0] = began + seconds
    start_gate.wait()
    for thread in threads:
        thread.join(seconds + 2 * SOCKET_TIMEOUT)  # the socket timeout bounds each request
    result.seconds = time.perf_counter() - began
    result.client_cpu = time.process_time() - cpu_before
    result.server_cpu = tree_cpu_seconds(server_pid) - server_before
    return result


def timed(call: Callable[[], Reply], expect: int) -> tuple[Reply, float]:
    began = time.perf_counter()
    reply = call()
    elapsed = time.perf_counter() - began
    if reply.status != expect:
        raise BadReply(f"HTTP {reply.status}, expected {expect}")
    return reply, elapsed


# --- gunicorn ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    port: int
    pid: int
    log: Path


@contextmanager
def gunicorn(
    app_spec: str,
    env: dict[str, str],
    log: Path,
    *,
    workers: int = 2,
    threads: int = 4,
    pythonpath: str | None = None,
    ready_path: str = "/login",
) -> Iterator[Server]:
    """Serve ``app_spec`` with gunicorn (gthread: keep-alive) on 127.0.0.1 and a free port;
    stop its whole process group on the way out, whatever happened."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}",
        "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
        "--timeout", "300", "--keep-alive", "30", "--log-level", "warning",
        "--error-logfile", str(log),
    ]  # fmt: skip
    if pythonpath:
        command += ["--pythonpath", pythonpath]
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            [*command, app_spec],
            env={**os.environ, **env},
            stdout=sink,
            stderr=sink,
            start_new_session=True,  # its own process group: one signal stops master and workers
        )
    try:
        _wait_ready(process, port, ready_path, log)
        yield Server(port, process.pid, log)
    finally:
        stop_group(process)


def _wait_ready(process: subprocess.Popen, port: int, path: str, log: Path, limit=90.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{tail(log)}")
        probe = HttpClient(port, timeout=5)
        try:
            if probe.get(path).status < 500 and len(tree_pids(process.pid)) > 1:
                return
        except OSError:
            pass
        finally:
            probe.close()
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer on port {port} within {limit:.0f} s:\n{tail(log)}")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not gone in 15 s."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- keep-alive connections spread evenly over the workers ---------------------------------


def balance_connections(
    server: Server, clients: list[HttpClient], warm: Callable[[HttpClient], None]
) -> Counter:
    """Reconnect clients until the workers hold equal shares of the keep-alive connections.

    Whichever worker accepts a connection keeps it for the whole run, and which one does is
    chance: with 8 clients on 2 workers, all of them on one worker halves the throughput (one
    GIL), and the same app measured twice differed by 2.2x. Balancing makes runs comparable.
    ``warm`` sends one request on a client, opening its connection. Returns connections per
    worker; it gives up after a bounded number of reconnections and reports what it got.
    """
    workers = [pid for pid in tree_pids(server.pid) if pid != server.pid]
    for client in clients:
        if client.local_port() is None:
            warm(client)
    if len(workers) < 2:
        return Counter(connection_owners(server, clients))
    share = -(-len(clients) // len(workers))
    for _ in range(20 * len(clients)):
        owners = connection_owners(server, clients)
        counts = Counter(owners)
        crowded = next(
            (c for c, o in zip(clients, owners, strict=True) if o is None or counts[o] > share),
            None,
        )
        if crowded is None:
            return counts
        crowded.close()
        warm(crowded)
    return Counter(connection_owners(server, clients))


def connection_owners(server: Server, clients: list[HttpClient]) -> list[int | None]:
    """For each client, the pid of the worker holding the server end of its connection,
    from /proc: the socket's inode in /proc/net/tcp, then the worker that has it open."""
    inode_by_peer_port = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        peer_port = int(fields[2].rsplit(":", 1)[1], 16)
        if local_port == server.port and fields[3] == "01":  # ESTABLISHED
            inode_by_peer_port[peer_port] = fields[9]
    owner_of_inode = {}
    for pid in tree_pids(server.pid):
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in descriptors:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and pid != server.pid:
                owner_of_inode[target[8:-1]] = pid
    return [
        owner_of_inode.get(inode_by_peer_port.get(client.local_port(), "")) for client in clients
    ]


# --- CPU accounting from /proc (Linux) ------------------------------------------------------


def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants (gunicorn's master and workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                children.setdefault(int(stat[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int | None) -> float:
    """User + system CPU seconds of a process tree so far (0 when there is no tree)."""
    if root is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in tree_pids(root):
        stat = _stat(pid)
        if stat:
            total += int(stat[11]) + int(stat[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM) in MB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name: [state, ppid, ...]."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()
