"""One leader among the bot's processes: exactly one runs the scheduler and the sender; when it
goes, another takes over (on the engine under test: a file lock on SQLite, an advisory lock on
PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.leader import Leadership, lock_for
from tests.conftest import on_postgres

FAST = 0.05  # seconds between attempts in these tests (production: RETRY)


class Worker:
    """A process's view of the election: whether it leads now, and how often it was elected."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.leading = False
        self.elected = 0

    async def elected_now(self) -> None:
        self.leading = True
        self.elected += 1

    async def deposed(self) -> None:
        self.leading = False


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_exactly_one_of_three_leads_and_another_takes_over(db_url: str) -> None:
    workers = [Worker(name) for name in "abc"]
    elections = [
        Leadership(lock_for(db_url), w.elected_now, w.deposed, retry=FAST) for w in workers
    ]
    for election in elections:
        election.start()
    await until(lambda: sum(w.leading for w in workers) == 1)
    await asyncio.sleep(FAST * 5)  # and it stays one: nobody else is elected meanwhile
    [first] = [w for w in workers if w.leading]
    assert sum(w.elected for w in workers) == 1

    index = workers.index(first)
    await elections[index].stop()  # the leader goes (a restart, a deploy)
    assert not first.leading
    await until(lambda: sum(w.leading for w in workers) == 1)
    assert not first.leading
    for election in elections:
        await election.stop()
    assert not any(w.leading for w in workers)


async def test_a_leader_whose_connection_dies_steps_down(db_url: str) -> None:
    """PostgreSQL releases the lock with the connection that held it (the process was killed,
    the network went): the old leader notices and steps down, another one is elected."""
    if not on_postgres():
        return  # a file lock goes only with its process (tests/test_worker_processes.py)
    import asyncpg

    old, new = Worker("old"), Worker("new")
    first = Leadership(lock_for(db_url), old.elected_now, old.deposed, retry=FAST)
    first.start()
    await until(lambda: old.leading)
    second = Leadership(lock_for(db_url), new.elected_now, new.deposed, retry=FAST)
    second.start()
    pid = first.lock.connection.get_server_pid()  # type: ignore[attr-defined]
    admin = await asyncpg.connect(first.lock.dsn)  # type: ignore[attr-defined]
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await until(lambda: new.leading and not old.leading)
    await first.stop()
    await second.stop()
