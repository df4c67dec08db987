"""Several webhook workers act as one bot (PostgreSQL + Redis).

Three `python -m bot run --webhook` processes share one PostgreSQL database and one Redis; the
fake Bot API pushes updates to them round-robin, as a reverse proxy in front of them would. A
cashier's scan, amount and ✅ land on three different workers and make one sale; ten ✅ at once
across the workers make one purchase; exactly one worker (the leader) registers the webhook,
runs the jobs and sends the queued messages; when the leader is `kill -9`ed in the middle of a
sale, the conversation goes on on the others, a new leader takes over and sends what was
queued, and the week's digest and the customer's survey still go out once. The staff group's
budget of messages is the bot's: what any worker sends there is counted by the leader's sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from config import PROJECT_ROOT
from tests.conftest import (
    CASHIER_ID,
    CUSTOMER_ID,
    OWNER_ID,
    REDIS_URL,
    STAFF_CHAT_ID,
    on_postgres,
)
from tests.servers import free_port
from tests.till_helpers import (
    amount_prompts,
    purchases,
    quote_for,
    seed_bound,
    seed_card,
    staff_log_lines,
)

pytestmark = pytest.mark.skipif(
    not (on_postgres() and REDIS_URL), reason="several workers share PostgreSQL and Redis"
)

SECRET = "workers-Secret_token"
PATH = "/telegram/webhook"
LEADER_LINE = "this process is the leader"


@dataclass
class Worker:
    port: int
    log: Path
    process: asyncio.subprocess.Process | None = None
    offset: int = 0  # where this run's output starts in the log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def output(self) -> str:
        if not self.log.exists():
            return ""
        return self.log.read_bytes()[self.offset :].decode(errors="replace")

    def leads(self) -> bool:
        return self.process is not None and LEADER_LINE in self.output()


@dataclass
class Workers:
    tg: FakeTelegram
    env: dict[str, str]
    members: list[Worker] = field(default_factory=list)

    async def start(self, worker: Worker) -> None:
        env = {**self.env, "WEBHOOK_PORT": str(worker.port)}
        worker.offset = worker.log.stat().st_size if worker.log.exists() else 0
        with worker.log.open("ab") as log:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                "--webhook",
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        await _listening(worker)

    def kill(self, worker: Worker) -> None:
        assert worker.process is not None
        worker.process.send_signal(signal.SIGKILL)

    async def leader(self, timeout: float = 40.0) -> Worker:  # noqa: ASYNC109
        """The worker that says it leads (and is alive), waiting for an election."""
        async with asyncio.timeout(timeout):
            while True:
                alive = [w for w in self.members if w.process and w.process.returncode is None]
                leading = [w for w in alive if w.leads()]
                if leading:
                    assert len(leading) == 1, [w.port for w in leading]
                    return leading[0]
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for worker in self.members:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.members:
            if worker.process is None:
                continue
            try:
                await asyncio.wait_for(worker.process.wait(), 20)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()


async def _listening(worker: Worker, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Until the worker's webhook server answers (403 without the secret: it is up)."""
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
        while True:
            assert worker.process is not None
            if worker.process.returncode is not None:
                pytest.fail(f"worker on {worker.port} exited: {worker.output()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(worker.url, json={}) as answer:
                    if answer.status == 403:
                        return
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running_workers(
    tg: FakeTelegram, db_url: str, tmp_path: Path, **env: str
) -> AsyncIterator[Workers]:
    """Three workers on this database, the fake Bot API pushing updates to them round-robin;
    `env` adds to (or overrides) their environment."""
    env = {
        **os.environ,
        "BOT_TOKEN": tg.token,
        "SECRET_KEY": "test-secret-key-0123456789abcdef",
        "TELEGRAM_API_URL": tg.base_url,
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "WEBHOOK_URL": "https://bot.example.test",
        "WEBHOOK_SECRET": SECRET,
        "OWNER_IDS": str(OWNER_ID),
        "STAFF_CHAT_ID": str(STAFF_CHAT_ID),
        "SCHEDULER_ENABLED": "true",
        "DEFAULT_LANGUAGE": "en",
        "DIGEST_HOUR": "0",  # this week's digest is due whenever the test runs
        "SURVEY_DELAY_MIN": "0",  # a survey is due right after a purchase
        "QUIET_HOURS": "",
        "BACKUP_DIR": str(tmp_path / "backups"),
        "LOG_LEVEL": "INFO",
        **env,
    }
    group = Workers(tg, env)
    group.members = [Worker(free_port(), tmp_path / f"worker{i}.log") for i in range(3)]
    try:
        await asyncio.gather(*(group.start(w) for w in group.members))
        tg.start_webhook_delivery([w.url for w in group.members], SECRET)
        yield group
    finally:
        tg.stop_webhook_delivery()
        await group.stop()


@pytest.fixture
async def workers(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> AsyncIterator[Workers]:
    await seed_bound(sessionmaker, "100045", 7)
    tg.set_member(STAFF_CHAT_ID, CASHIER_ID, "member")
    async with running_workers(tg, db_url, tmp_path) as group:
        yield group


SURVEY = "Kui tõenäoliselt soovitaksid meid sõbrale?"  # the customer reads Estonian
# After a third purchase the survey pass asks why they take part instead (services.motivation).
WHY = "mis hoiab sind meie püsikliendiprogrammis?"


def _digests(tg: FakeTelegram) -> int:
    """Digests the owner got (their text; the chart follows as a photo of its own)."""
    return sum(
        1
        for call in tg.calls
        if call.method == "sendMessage"
        and int(call.params.get("chat_id", 0)) == OWNER_ID
        and "Weekly digest" in str(call.params.get("text") or "")
    )


async def _served(tg: FakeTelegram, first: int, count: int) -> list[str]:
    """The workers that took the `count` updates pushed from delivery number `first` on (a
    delivery is recorded once its HTTP call ended: just after the bot's answer)."""
    async with asyncio.timeout(10):
        while True:
            deliveries = tg.webhook_deliveries[first:]
            served = [target for _, target, status in deliveries if status == 200]
            if len(served) >= count:
                return served
            await asyncio.sleep(0.05)


async def test_three_workers_act_as_one_bot(
    workers: Workers, tg: FakeTelegram, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    leader = await workers.leader()
    await tg.wait_for(lambda c: c.method == "setWebhook", timeout=30)
    owner = tg.user(OWNER_ID, language_code="en")
    await owner.wait_message("Weekly digest", timeout=60)  # the leader's catch-up sent the digest

    # A sale whose scan, amount and ✅ land on three different workers (the conversation is in
    # Redis): one purchase, one note to the customer, sent by the leader.
    cashier = tg.user(CASHIER_ID, "Olga", language_code="en")
    first = len(tg.webhook_deliveries)
    quote = await quote_for(cashier)
    answer = await cashier.press(quote, "✅", timeout=30)
    assert answer.params.get("text") == "Recorded."
    served = await _served(tg, first, 3)
    assert len(set(served)) == 3, served
    await tg.user(CUSTOMER_ID).wait_message("säästsid", timeout=30)

    # Ten ✅ of one quote at once, spread over the workers: one purchase.
    quote = await quote_for(cashier, "1000")
    data = quote.find_button("✅")["callback_data"]
    answers = await asyncio.gather(
        *(cashier.press_data(quote.message_id, data, timeout=30) for _ in range(10))
    )
    texts = [a.params.get("text") for a in answers]
    assert texts.count("Recorded.") == 1, texts
    assert set(texts) == {"Recorded.", "Already confirmed."}, texts
    assert len(await purchases(sessionmaker)) == 2

    # The leader dies in the middle of a sale: the cashier's conversation goes on on the other
    # workers, a new leader is elected and sends what was queued meanwhile.
    await cashier.send("/sale 100045")
    await cashier.wait_message("Enter the purchase amount", timeout=30)
    # Between two steps: the prompt is read (this fake Bot API answers at once; Telegram takes
    # a round trip, during which the worker keeps the step).
    await tg.wait_for_idle(quiet=0.3, timeout=30)
    workers.kill(leader)
    await leader.process.wait()  # type: ignore[union-attr]
    await cashier.send("700")
    quote = await cashier.wait_message("To pay", timeout=30)
    answer = await cashier.press(quote, "✅", timeout=30)
    assert answer.params.get("text") == "Recorded."
    successor = await workers.leader(timeout=60)
    assert successor is not leader
    await tg.user(CUSTOMER_ID).wait_message(WHY, timeout=90)  # a leader's survey pass
    notes = [m for m in tg.messages_in(CUSTOMER_ID) if "säästsid" in (m.text or "")]
    async with asyncio.timeout(30):
        while len(notes) < 3:
            await asyncio.sleep(0.2)
            notes = [m for m in tg.messages_in(CUSTOMER_ID) if "säästsid" in (m.text or "")]
    assert len(await purchases(sessionmaker)) == 3

    # The killed worker comes back as a follower; everything was sent once.
    await workers.start(leader)
    await tg.wait_for_idle(quiet=1.0, timeout=30)
    assert len(notes) == 3
    assert _digests(tg) == 1  # the new leader's catch-up found this week's digest sent
    # The customer bought three times, from two leaders' time: one question — why they take
    # part, which takes the NPS survey's place (neither comes within a day of the other).
    asked = [m.text or "" for m in tg.messages_in(CUSTOMER_ID)]
    assert sum(WHY in text for text in asked) == 1
    assert sum(SURVEY in text for text in asked) == 0
    assert sum(c.method == "setWebhook" for c in tg.calls) == 2  # one per leader


async def test_the_staff_groups_budget_is_the_bots_not_a_workers(
    tg: FakeTelegram, db_url: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Cashiers scan in the staff group, their prompts sent by whichever worker took the
    update; then sales in private chats queue lines for the staff log, which only the leader
    sends. The group is capped like Telegram's, with time ten times faster (20 messages in
    any 6 s; the bot's budget a little under it): the leader counts the prompts the other
    workers sent too, so its staff log waits for room instead of running into the cap (a 429
    pauses every proactive message of the bot), and every sale is logged once."""
    tg.set_group_rate_limit(20, window=6.0)
    for number in ("100061", "100062", "100063"):
        await seed_card(sessionmaker, number, 5)
    scanners, seller = (2201, 2202), 2203
    for cashier_id in (*scanners, seller):
        tg.set_member(STAFF_CHAT_ID, cashier_id, "member")
    async with running_workers(
        tg, db_url, tmp_path, DELIVERY_RATE_GROUP_PER_MIN="150", FLOOD_LIMIT="1000"
    ) as workers:
        await workers.leader()
        group = tg.group(STAFF_CHAT_ID)

        async def scan(cashier_id: int) -> None:
            cashier = tg.user(cashier_id, language_code="en")
            for _ in range(10):
                await group.send(cashier, "100061")

        await asyncio.gather(*(scan(c) for c in scanners))
        async with asyncio.timeout(30):
            while amount_prompts(group) < 20:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        cashier = tg.user(seller, language_code="en")
        for number in ("100061", "100062", "100063"):
            quote = await quote_for(cashier, "1000", number)
            await cashier.press(quote, "✅", timeout=30)
            await cashier.wait_message("recorded", timeout=30)

        async with asyncio.timeout(60):
            while len(staff_log_lines(group)) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await tg.wait_for_idle(quiet=1.0, timeout=30)
    assert amount_prompts(group) == 20
    lines = staff_log_lines(group)
    assert len(lines) == len(set(lines)) == 3
    refused = [
        call
        for call in tg.calls
        if not call.ok
        and int(call.chat_id or 0) == STAFF_CHAT_ID
        and (call.text or "").startswith("🧾")
    ]
    assert refused == []  # the staff log never ran into the group's cap
