"""Building KPI test data straight with the models (no cashier flow needed), and reading the
reports back through the service the bot uses (`ReportService`, units of work)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from config import Settings
from db.database import Database
from db.models import Branch, Card, Client, Offer, Purchase, Survey, WinbackAssignment
from services.cards import refresh_totals
from services.reports import ReportService

MSK = ZoneInfo("Europe/Moscow")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A UTC moment (aware)."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def msk(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    """A store-time (Moscow) moment as aware UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=MSK).astimezone(UTC)


def report_service(engine: AsyncEngine, settings: Settings) -> ReportService:
    """The owner's reports over the test's database, as the bot builds them."""
    return ReportService(Database.of(engine), settings)


class Data:
    def __init__(self, session: AsyncSession, first_tg: int = 700000) -> None:
        self.session = session
        self._tg = first_tg  # a second `Data` over the same database needs other Telegram ids

    async def client(self, *, username: str | None = None, phone: str | None = None) -> Client:
        self._tg += 1
        client = Client(
            tg_id=self._tg,
            first_name=f"Client{self._tg}",
            username=username,
            phone=phone,
            consent_at=msk(2026, 1, 1),
        )
        self.session.add(client)
        await self.session.flush()
        return client

    async def card(
        self,
        number: str,
        *,
        issued_at: datetime | None = None,
        segment: str = "b2c",
        client: Client | None = None,
        bound_at: datetime | None = None,
        pct: int = 5,
        kind: str = "printed",
        branch: int | None = None,
    ) -> Card:
        card = Card(
            number=number,
            base_pct=pct,
            segment=segment,
            kind=kind,
            status="issued" if issued_at else "in_stock",
            issued_at=issued_at,
            client_id=client.id if client else None,
            bound_at=(bound_at or issued_at) if client else None,
            created_at=msk(2025, 1, 1),
        )
        if branch is not None:  # else the column's default: the first shop
            card.branch_id = branch
        self.session.add(card)
        await self.session.flush()
        return card

    async def buy(
        self,
        card: Card,
        at: datetime,
        amount: int,
        *,
        discount: int | None = None,
        voided: bool = False,
        cashier: int | None = None,
        branch: int | None = None,
    ) -> Purchase:
        disc = amount * card.base_pct // 100 if discount is None else discount
        purchase = Purchase(
            card_id=card.id,
            amount=amount,
            discount_pct=card.base_pct,
            discount_amount=disc,
            paid_amount=amount - disc,
            cashier_id=cashier,
            source="import",
            created_at=at,
            voided_at=at + timedelta(minutes=1) if voided else None,
        )
        if branch is not None:  # else the column's default: the first shop
            purchase.branch_id = branch
        self.session.add(purchase)
        await self.session.flush()
        await self.session.run_sync(refresh_totals, card.id)
        return purchase

    async def survey(
        self,
        client: Client,
        at: datetime,
        score: int | None,
        comment: str | None = None,
        *,
        purchase: Purchase | None = None,
    ) -> Survey:
        survey = Survey(
            client_id=client.id,
            purchase_id=None if purchase is None else purchase.id,
            created_at=at - timedelta(hours=2),
            sent_at=at - timedelta(hours=2),
            score=score,
            answered_at=at if score is not None else None,
            comment=comment,
        )
        self.session.add(survey)
        await self.session.flush()
        return survey

    async def winback(
        self,
        client: Client,
        at: datetime,
        *,
        control: bool,
        days: int = 14,
        redeemed: bool = False,
    ) -> WinbackAssignment:
        offer = None
        if not control:
            offer = Offer(
                client_id=client.id,
                kind="winback",
                bonus_pct=5,
                valid_from=at,
                valid_until=at + timedelta(days=days),
                created_at=at,
                redeemed_at=at + timedelta(days=1) if redeemed else None,
            )
            self.session.add(offer)
            await self.session.flush()
        assignment = WinbackAssignment(
            client_id=client.id,
            assigned_at=at,
            control=control,
            offer_id=offer.id if offer else None,
            window_until=at + timedelta(days=days),
        )
        self.session.add(assignment)
        await self.session.flush()
        return assignment

    async def branch(self, name: str, *, chat: int, closed_at: datetime | None = None) -> Branch:
        """A branch of the chain (branch 1, the first shop, exists from the migration)."""
        branch = Branch(name=name, staff_chat_id=chat, closed_at=closed_at)
        self.session.add(branch)
        await self.session.flush()
        return branch

    async def commit(self) -> None:
        await self.session.commit()
