"""`python -m bot demo` — the whole program on this machine, in a browser, without Telegram.

The real bot (the same dispatcher, outbox, scheduler and database code as `run`) polls a
built-in Telegram Bot API emulator (`bot.demo.emulator`); the emulator's server also serves a
page with three chats (`bot.demo.page`): a customer, the staff group where the cashier types,
and the owner. Nothing is read from `.env` and nothing leaves the machine: the demo has its own
SQLite database under `data/demo/` (seeded on first start with a year of history, so the
owner's reports show figures at once), its own secret key and a made-up bot token.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import secrets
import socket
import sys
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.logging_setup import setup_logging
from config import PROJECT_ROOT, Settings
from config.env import EnvSettings
from db.models import Card, CardStatus

log = logging.getLogger(__name__)

TOKEN: Final = "100200300:DEMO-token-of-the-built-in-emulator"
DEFAULT_DATA: Final = PROJECT_ROOT / "data" / "demo"
DATABASE_FILE: Final = "demo.db"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "demo",
        help="try the whole program in a browser, without Telegram or a token",
        description="Run the bot against a built-in Telegram emulator and serve a page with "
        "three chats (customer, staff group, owner) at http://HOST:PORT. Needs no .env, no "
        "token and no internet; the demo keeps its own database in --data.",
    )
    parser.add_argument("--port", type=_port, default=8080, help="the page's port (8080)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (127.0.0.1: this machine)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="the demo's folder: database and secret key (data/demo)",
    )
    parser.add_argument(
        "--reset", action="store_true", help="start over: a fresh, newly seeded database"
    )
    parser.set_defaults(func=_demo)


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        msg = f"expected a port number 1-65535, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def _demo(args: argparse.Namespace) -> int:
    data: Path = args.data
    try:
        data.mkdir(parents=True, exist_ok=True)
        if args.reset:
            for path in data.glob(f"{DATABASE_FILE}*"):  # the file, its -wal and -shm
                path.unlink()
    except OSError as exc:
        print(f"error: cannot use {data} for the demo's data: {exc.strerror}", file=sys.stderr)
        return 1
    settings = demo_settings(data, args.port, _free_port())
    setup_logging(settings.log_level)
    try:
        asyncio.run(run_demo(settings, host=args.host, port=args.port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"error: port {args.port} is in use; stop what uses it or pick another one "
                f"with --port (make demo PORT=8081)",
                file=sys.stderr,
            )
            return 1
        raise
    return 0


def _secret_key(data: Path) -> str:
    """The demo's own QR signing key, made once and kept with its database."""
    path = data / "secret_key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    key = secrets.token_urlsafe(32)
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    return key


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_settings(data: Path, port: int, app_port: int) -> Settings:
    """The demo's settings: none of them from `.env`, so a real installation's database,
    token and staff group are never touched. The bot serves its Mini App on `app_port` (the
    loopback only); the page passes /app/ through to it, as a reverse proxy does in front of
    a real installation, so the Mini App opens inside the page from the page's own address."""
    from bot.demo.page import OWNER_ID, STAFF_CHAT_ID

    env = EnvSettings(
        _env_file=None,
        bot_token=TOKEN,
        telegram_api_url=f"http://127.0.0.1:{port}",
        secret_key=_secret_key(data),
        database_url=f"sqlite+aiosqlite:///{data / DATABASE_FILE}",
        redis_url=None,
        owner_ids=[OWNER_ID],
        staff_chat_id=STAFF_CHAT_ID,
        store_name="Demo Store",
        store_address="Tverskaya 5, Moscow",
        store_latitude=55.7602,
        store_longitude=37.6110,
        store_hours="10:00-21:00",
        store_phone="+7 495 000-00-00",
        welcome_bonus_pct=5,
        quiet_hours="",  # a demo is watched now, whatever the hour
        survey_delay_min=1,
        backup_dir=data / "backups",
        webhook_url=None,
        miniapp_url=f"http://127.0.0.1:{port}/app/",
        web_host="127.0.0.1",
        web_port=app_port,
        log_level="WARNING",
    )
    return Settings.from_env(env)


async def run_demo(settings: Settings, *, host: str, port: int) -> None:
    """Start the emulator and its page on host:port, seed the demo database when it is new,
    then run the bot against it until Ctrl+C."""
    from bot.commands.run import run_polling
    from bot.demo.emulator import FakeTelegram
    from bot.demo.page import DemoPage, cast
    from bot.demo.seed import seed_demo
    from bot.i18n import create_i18n
    from db.database import Database
    from db.engine import create_engine
    from db.migrate import upgrade
    from services.clock import utc_now

    tg = FakeTelegram(TOKEN, username="loyalty_demo_bot", first_name="Loyalty Wallet")
    language = settings.store.default_language
    panes = cast(tg, language=language, staff_title=f"{settings.store.name} · staff")
    token = settings.telegram.bot_token.get_secret_value()
    upstream = f"http://127.0.0.1:{settings.miniapp.port}"
    page = DemoPage(tg, panes, create_i18n(language), token=token, miniapp=upstream)
    await tg.start(host, port, routes=page.install)  # first: a port in use changes nothing
    try:
        await upgrade(settings.database.url)
        engine = create_engine(settings.database.url)
        try:
            database = Database.of(engine)
            seeded = await seed_demo(database, settings, now=utc_now())
            page.hint_card = await database.read(_card_to_bind)
        finally:
            await engine.dispose()
        if seeded is not None:
            print(
                f"Seeded the demo: {seeded.cards:,} cards, {seeded.clients:,} customers, "
                f"{seeded.purchases:,} purchases over a year.",
                flush=True,
            )
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(f"Demo: open http://{shown}:{port} in a browser (Ctrl+C stops it).", flush=True)
        await run_polling(settings)
    finally:
        await tg.stop()


def _card_to_bind(session: Session) -> str:
    """A printed card still in stock, for the page's walkthrough (the last of the 5 % range:
    the seed hands cards out from the start of each range)."""
    number = session.scalar(
        select(Card.number)
        .where(Card.status == CardStatus.IN_STOCK, Card.base_pct == 5)
        .order_by(Card.number.desc())
        .limit(1)
    )
    return number or ""
