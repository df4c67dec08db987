"""Benchmark: a campaign to 100,000 members, from ✅ Send to the last message.

    .venv/bin/python -m bench.campaigns [--members 100000] [--cap 500] [--holdout 10]
                                        [--fault-pct 1] [--restart-at 0.5]

In a temporary, migrated SQLite database, `--members` consenting members with a card each are
seeded in bulk (Core inserts). A campaign to all of them is created and sent with
`services.campaigns.send`, the unit of work a ✅ press runs: it draws the audience and the
hold-out, writes the members, the offers and the queued messages. Meanwhile a till loop runs a
short write unit (what a sale costs on the write lane) every 20 ms; its waits are reported
against the same loop measured alone just before (the floor), as a ratio.

Then the real `DeliverySender` (through a `DeliveryWorker`, as in the bot) sends the campaign
to the fake Bot API server (bot/demo/emulator.py), which answers 429 to anything over `--cap`
msg/s overall, a 429 with retry_after 1 s (Telegram's flood answer) at `--flood-429s` evenly
spread moments, and a 500 to `--fault-pct` % of the other requests (all retried by the sender).
Halfway (`--restart-at`) the worker is stopped and a new one, with a new Bot session, started
on the same database: the restart of a process. The cap is scaled up from Telegram's 30 msg/s
(and the sender's DELIVERY_RATE_GLOBAL with it) so that 100,000 messages take minutes.

The messages are queued paced at the cap (`services.campaigns.finish`, as the bot paces them
at DELIVERY_RATE_GLOBAL), so the sender never faces the whole campaign due at once.

Reported: the send unit's time, the till's waits during it (max, p95) against the floor, the
achieved sending rate / cap (target ≥ 0.9) without the longest pause between two messages
(the last retries' backoff, typically) and with it, 429s and 500s received, lost (offered
members whose message never arrived) and duplicated (chats that got the campaign more than
once): both 0.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from bench.delivery import _settings
from bot.app import create_bot
from bot.demo.emulator import FakeTelegram, FaultResponse
from bot.scheduler import create_sender
from db.database import Database
from db.engine import create_engine, create_sessionmaker
from db.lane import sync_url
from db.migrate import upgrade
from db.models import CampaignMember, Card, CardStatus, Client, Delivery, DeliveryStatus
from services import campaigns
from services.campaigns import Audience, CampaignDraft
from services.delivery import Outbox

FIRST_CHAT = 20_000_000
SEED_CHUNK = 10_000


def _seed(url: str, members: int) -> None:
    """`members` consenting, reachable members (ru/en/et) with an issued card each."""
    engine = create_sync_engine(sync_url(url))
    now = datetime.now(UTC)
    languages = ("ru", "en", "et")
    with engine.begin() as connection:
        for start in range(0, members, SEED_CHUNK):
            stop = min(start + SEED_CHUNK, members)
            connection.execute(
                insert(Client),
                [
                    {
                        "id": i + 1,
                        "tg_id": FIRST_CHAT + i,
                        "first_name": f"M{i}",
                        "language": languages[i % 3],
                        "consent_at": now,
                        "consent_version": "1",
                        "reachable": True,
                        "marketing_opt_out": False,
                        "created_at": now,
                    }
                    for i in range(start, stop)
                ],
            )
            connection.execute(
                insert(Card),
                [
                    {
                        "number": str(900_000_000 + i),
                        "base_pct": 5,
                        "status": CardStatus.ISSUED,
                        "client_id": i + 1,
                        "kind": "digital",
                        "segment": "b2c",
                        "created_at": now,
                        "issued_at": now,
                    }
                    for i in range(start, stop)
                ],
            )
    engine.dispose()


def _till_unit(session: Session, card_id: int) -> None:
    """About what a sale writes on the lane: a read of the card and a small update."""
    session.execute(select(Card.id, Card.purchase_count).where(Card.id == card_id)).first()
    session.execute(update(Card).where(Card.id == card_id).values(bind_failures=0))
    session.commit()


async def _till_waits(db: Database, stop: asyncio.Event, every: float = 0.02) -> list[float]:
    waits: list[float] = []
    card = 1
    while not stop.is_set():
        started = time.perf_counter()
        await db.write(_till_unit, card)
        waits.append(time.perf_counter() - started)
        card = card % 1000 + 1
        await asyncio.sleep(every)
    return waits


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values, default=0)


async def run(
    members: int, cap: float, holdout: int, fault_pct: float, restart_at: float, flood_429s: int
) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await upgrade(url)
        started = time.perf_counter()
        _seed(url, members)
        seeded = time.perf_counter() - started
        engine = create_engine(url)
        sessionmaker = create_sessionmaker(engine)
        db = Database.of(engine)
        try:
            return await _campaign(db, sessionmaker, url, members, cap, holdout, fault_pct,
                                   restart_at, flood_429s, seeded)  # fmt: skip
        finally:
            await engine.dispose()


async def _campaign(
    db: Database,
    sessionmaker: Any,
    url: str,
    members: int,
    cap: float,
    holdout: int,
    fault_pct: float,
    restart_at: float,
    flood_429s: int,
    seeded: float,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    draft = CampaignDraft(
        name="Bench",
        audience=Audience("all"),
        bonus_pct=10,
        valid_days=14,
        holdout_pct=holdout,
        texts={"*": "Autumn sale!", "et": "Sügisene allahindlus!"},
    )
    # The till alone: the floor.
    stop = asyncio.Event()
    floor_task = asyncio.create_task(_till_waits(db, stop))
    await asyncio.sleep(2.0)
    stop.set()
    floor = await floor_task

    stop = asyncio.Event()
    till = asyncio.create_task(_till_waits(db, stop))
    started = time.perf_counter()
    view = await campaigns.create(db, draft, now)
    created = time.perf_counter() - started
    drawn_at = time.perf_counter()
    await db.write(campaigns._claim_and_draw, view.id, now, random.Random(1))
    drawn = time.perf_counter() - drawn_at
    await campaigns.finish(db, view.id, now, pace=cap)
    sent_unit = time.perf_counter() - started
    stop.set()
    during = await till

    async with sessionmaker() as session:
        offered_chats = set(
            (
                await session.scalars(
                    select(Client.tg_id)
                    .join(CampaignMember, CampaignMember.client_id == Client.id)
                    .where(CampaignMember.control.is_(False))
                )
            ).all()
        )
    faults = Counter()
    rng = random.Random(2)

    # Telegram's own flood answers besides the cap's: a 429 with retry_after 1 s at evenly
    # spread moments (the sender pauses every send for it and retries the message).
    floods = {int(len(offered_chats) * (i + 1) / (flood_429s + 1)) for i in range(flood_429s)}
    calls = Counter()

    def hook(method: str, params: dict[str, Any]) -> FaultResponse | None:
        if method != "sendMessage":
            return None
        calls["sendMessage"] += 1
        if calls["sendMessage"] in floods:
            faults["429"] += 1
            return FaultResponse(429, retry_after=1)
        if rng.random() * 100 < fault_pct:
            faults["500"] += 1
            return FaultResponse(500, "Internal Server Error")
        return None

    async with FakeTelegram() as tg:
        tg.set_rate_limit(cap)
        tg.set_fault_hook(hook)
        settings = _settings(tg, url, delivery_rate_global=cap)
        sending_started = time.perf_counter()
        restarted = 0.0
        stops: list[float] = []
        for phase in ("first", "second"):
            bot = create_bot(settings)
            outbox = Outbox(db)
            worker = outbox.start(create_sender(bot, sessionmaker, settings))
            worker.notify()
            target = restart_at * len(offered_chats) if phase == "first" else None
            while True:
                await asyncio.sleep(0.25)
                if target is not None and len(tg.calls) >= target:
                    break
                if await _pending(sessionmaker) == 0:
                    break
            stopping = time.perf_counter()
            await outbox.stop()
            await bot.session.close()
            stops.append(time.perf_counter() - stopping)
            if phase == "first":
                restarted = time.perf_counter() - sending_started
        accepted = Counter(call.chat_id for call in tg.sent())
        moments = sorted(call.at for call in tg.sent())
        got_429 = sum(1 for call in tg.calls if call.status == 429)
    sending = moments[-1] - moments[0] if moments else 0.0
    # The longest pause between two messages (the last 500s' retry backoff, typically): the
    # rate is reported without it, and with it.
    gaps = [(b - a, i + 1) for i, (a, b) in enumerate(pairwise(moments))]
    pause, after_pause = max(gaps, default=(0.0, len(moments)))
    achieved = len(moments) / (sending - pause) if sending > pause else 0.0
    async with sessionmaker() as session:
        sent_rows = await session.scalar(
            select(func.count()).where(
                Delivery.kind == campaigns.CAMPAIGN_KIND, Delivery.status == DeliveryStatus.SENT
            )
        )
    lost = sum(1 for chat in offered_chats if chat not in accepted)
    duplicated = sum(n - 1 for n in accepted.values() if n > 1)
    return {
        "members": members,
        "seed_s": seeded,
        "offered": len(offered_chats),
        "holdout": members - len(offered_chats),
        "create_s": created,
        "draw_s": drawn,
        "send_unit_s": sent_unit,
        "floor_max_ms": max(floor) * 1000,
        "floor_p95_ms": _p95(floor) * 1000,
        "till_max_ms": max(during) * 1000,
        "till_p95_ms": _p95(during) * 1000,
        "till_sales": len(during),
        "restart_after_s": restarted,
        "stop_s": stops[0] if stops else 0.0,
        "sending_s": sending,
        "pause_s": pause,
        "after_pause": len(moments) - after_pause,
        "overall_per_s": len(moments) / sending if sending else 0.0,
        "achieved_per_s": achieved,
        "cap": cap,
        "ratio": achieved / cap,
        "429s": got_429,
        "429s_injected": faults["429"],
        "500s": faults["500"],
        "sent_rows": sent_rows,
        "lost": lost,
        "duplicated": duplicated,
    }


async def _pending(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).where(Delivery.status == DeliveryStatus.PENDING)
            )
            or 0
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--cap", type=float, default=500.0, help="fake server msg/s cap")
    parser.add_argument("--holdout", type=int, default=10, help="hold-out share, %%")
    parser.add_argument("--fault-pct", type=float, default=1.0, help="5xx answers, %%")
    parser.add_argument("--restart-at", type=float, default=0.5, help="share sent at restart")
    parser.add_argument("--flood-429s", type=int, default=3, help="429s with retry_after 1 s")
    args = parser.parse_args()
    r = asyncio.run(
        run(args.members, args.cap, args.holdout, args.fault_pct, args.restart_at, args.flood_429s)
    )
    print(
        f"{r['members']:,} members seeded in {r['seed_s']:.1f} s; campaign: "
        f"{r['offered']:,} offered, {r['holdout']:,} in the hold-out"
    )
    print(
        f"send unit of work: {r['send_unit_s']:.2f} s (draft {r['create_s']:.2f} s, draw and "
        f"members {r['draw_s']:.2f} s, offers and messages in chunks of {campaigns.CHUNK}); "
        f"a till sale meanwhile waited max {r['till_max_ms']:.0f} ms, p95 "
        f"{r['till_p95_ms']:.1f} ms ({r['till_sales']} sales) against a floor of max "
        f"{r['floor_max_ms']:.1f} ms, p95 {r['floor_p95_ms']:.1f} ms"
    )
    print(
        f"sending: {r['offered']:,} messages in {r['sending_s']:.1f} s with a restart after "
        f"{r['restart_after_s']:.1f} s: {r['achieved_per_s']:.1f} msg/s of {r['cap']:.0f} "
        f"allowed = {r['ratio']:.2f} of the cap (target >= 0.9), not counting the longest "
        f"pause, {r['pause_s']:.1f} s, before the last {r['after_pause']} messages; "
        f"{r['overall_per_s']:.1f} msg/s "
        f"overall; the stop took {r['stop_s']:.2f} s; 429s: {r['429s']} (injected "
        f"{r['429s_injected']}, retry_after 1 s); 500s injected: "
        f"{r['500s']}; lost: {r['lost']}; duplicated: {r['duplicated']}"
    )


if __name__ == "__main__":
    main()
