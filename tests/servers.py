"""Throwaway PostgreSQL and Redis servers for the test suite, on free local ports.

    python -m tests.servers -- pytest -q            # run a command with both servers up

Starts a fresh PostgreSQL cluster (`initdb` into a temporary directory, `pg_ctl start`) and a
Redis server, each on a free port of 127.0.0.1, runs the command with `TEST_POSTGRES_URL` and
`TEST_REDIS_URL` pointing at them, and stops and removes both afterwards — whatever the command
did. Run as root (CI), the servers run as the unprivileged user `nobody`: PostgreSQL refuses to
run as root, and a test server has no business with root's rights either. Durability is off
(`fsync=off`): a test database is thrown away anyway.

Exit codes: the command's own; 3 when PostgreSQL or Redis is not installed (the command is not
run; a one-line reason is printed) — 0 with `--optional`, for `make test` on a machine without
them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def find(program: str) -> str | None:
    """A server binary: on PATH, or in Debian's versioned PostgreSQL directory."""
    found = shutil.which(program)
    if found is None:
        for directory in PG_BIN_DIRS:
            candidate = directory / program
            if candidate.is_file():
                return str(candidate)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _demote() -> tuple[Callable[[], None] | None, int | None, int | None]:
    """When root: run servers as `nobody` (uid, gid for chown, and a preexec function)."""
    if os.geteuid() != 0:
        return None, None, None
    nobody = pwd.getpwnam("nobody")

    def preexec() -> None:
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return preexec, nobody.pw_uid, nobody.pw_gid


def _wait_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {seconds:.0f} s")


@contextlib.contextmanager
def postgres(root: Path) -> Iterator[str]:
    initdb, pg_ctl = find("initdb"), find("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise FileNotFoundError("PostgreSQL (initdb, pg_ctl) is not installed")
    preexec, uid, gid = _demote()
    data = root / "pg"
    data.mkdir()
    if uid is not None:
        os.chown(root, uid, gid or -1)
        os.chown(data, uid, gid or -1)
    run = {"preexec_fn": preexec, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run(
        [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        **run,  # type: ignore[arg-type]
    )
    port = free_port()
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    subprocess.run(
        [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "pg.log"), "-w", "start"],
        check=True,
        **run,  # type: ignore[arg-type]
    )
    try:
        _wait_port(port)
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            **run,  # type: ignore[arg-type]
        )


@contextlib.contextmanager
def redis(root: Path) -> Iterator[str]:
    server = find("redis-server")
    if server is None:
        raise FileNotFoundError("Redis (redis-server) is not installed")
    preexec, _uid, _gid = _demote()
    port = free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/tmp",
        ],
        preexec_fn=preexec,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a command with test PostgreSQL and Redis")
    parser.add_argument(
        "--optional", action="store_true", help="exit 0 when the servers are not installed"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = [part for part in args.command if part != "--"] or ["pytest", "-q"]
    if find("initdb") is None or find("redis-server") is None:
        print(
            "tests.servers: PostgreSQL or Redis is not installed: the PostgreSQL run is skipped",
            file=sys.stderr,
        )
        return 0 if args.optional else 3
    with tempfile.TemporaryDirectory(prefix="loyalty-servers-") as tmp:
        root = Path(tmp)
        with postgres(root) as pg_url, redis(root) as redis_url:
            env = {**os.environ, "TEST_POSTGRES_URL": pg_url, "TEST_REDIS_URL": redis_url}
            return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
