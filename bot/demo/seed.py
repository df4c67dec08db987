"""The demo's first-start data: a year of a store's loyalty program, so that the owner's
`/stats`, `/digest` and `/export` show real-looking figures at once.

`seed_demo` fills an empty, migrated database and leaves one that has cards alone. The printed
ranges go in through `services.inventory.add_range` (what `cards add` runs). The year is then
planned in Python from one `random.Random(seed)` (same seed, same rows) and written in one unit
of work with bulk inserts; the cards' lifetime and monthly figures are recounted from the
ledger by `services.cards.refresh_totals`, as every write to the ledger does.

The plan follows the bot's own rules, so the rows read as if the bot had made them:

* customers agree to the terms and link a printed card (handed out from the start of each
  range), either before their first purchase (then they get the welcome offer, when
  WELCOME_BONUS_PCT is on) or at home after it (the card was issued at the till);
* every sale is priced by `services.pricing.quote` (the card's level, the tiers of the
  settings, the best active personal offer, which the sale redeems; a voided sale returns it);
* surveys, win-back and birthday offers are what their jobs would have written
  (`services.surveys`, `services.offers`), cooldowns included: a win-back round eight weeks
  before `now` and the daily sweeps since, the last one at `now`; so is why each member with
  three purchases takes part (`services.motivation`: asked once, answered by some). So the
  bot's own sweeps at its start find none of these customers, and no delivery is queued for
  them.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from config import Settings
from db.database import Database
from db.models import (
    Card,
    CardStatus,
    Client,
    Motivation,
    Offer,
    OfferKind,
    Purchase,
    PurchaseSource,
    Survey,
    UTCDateTime,
    WinbackAssignment,
)
from services import audit, inventory, pricing
from services.cards import refresh_totals
from services.delivery import quiet_until
from services.errors import InventoryError
from services.motivation import ASK_AT_PURCHASE, Reason
from services.surveys import LOOKBACK as SURVEY_LOOKBACK


@dataclass(frozen=True)
class DemoSeed:
    """What `seed_demo` wrote."""

    cards: int  # cards registered (printed ranges)
    clients: int  # customers created
    purchases: int  # purchases written (including voided ones)
    surveys: int  # NPS answers written
    winback_offers: int  # win-back offers of the round (and of the daily sweeps since)


# The owner's printed cards, as the README's runbook registers them: (from, to, pct, segment).
RANGES = ((100000, 104999, 5, "b2c"), (105000, 107999, 7, "b2c"), (108000, 109999, 10, "b2b"))
TIER_SHARES = (70, 22, 8)  # customers per range, percent
CLIENTS = 600
PAPER_CARDS = 14  # issued and never linked to Telegram
PAPER_BUYERS = 8  # of which bought with them
CASHIERS = (2, 3, 4)  # 2 is the demo's live cashier
CASHIER_4_FROM = timedelta(days=150)  # cashier 4 started this long before `now`
FIRST_TG_ID = 10_000_000  # lower ids belong to the demo's live users
HISTORY = timedelta(days=365)
WINBACK_ROUND = timedelta(days=56)  # inside the default 60-day cooldown: no repeat at start
STORE_HOURS = (10, 21)
HOUR_WEIGHTS = (3, 5, 7, 7, 6, 5, 6, 8, 8, 6, 3)  # 10:00 … 20:59
WEEKDAY_WEIGHTS = (0.8, 0.8, 0.85, 0.9, 1.1, 1.5, 1.3)  # Monday … Sunday
MONTH_WEIGHTS = (0.75, 0.85, 0.95, 1.0, 1.0, 0.95, 0.9, 0.95, 1.0, 1.0, 1.05, 1.7)
# Habits: (name, share %, mean days between visits, chance of stopping at some point).
HABITS = (
    ("loyal", 15, 10.0, 0.2),
    ("regular", 35, 28.0, 0.4),
    ("occasional", 28, 60.0, 0.45),
    ("once", 18, 40.0, 0.0),
    ("never", 4, 40.0, 0.0),
)
VOIDED_SHARE = 0.012  # visits with a mistyped sale voided before the right one
COMEBACK = {False: 0.2, True: 0.06}  # chance to come back within the window (offer, control)
BIRTHDAY_VISIT = 0.35
SURVEY_ANSWERED = 0.6
SCORES = (
    (range(9, 11), 62, (0.4, 0.6)),
    (range(7, 9), 26, (0.45, 0.55)),
    (range(0, 7), 12, (0.05, 0.03, 0.05, 0.1, 0.15, 0.27, 0.35)),
)
COMMENTED = {"detractor": 0.75, "passive": 0.25}
# Why members take part: how many answer, each reason's weight, and what "something else" said.
MOTIVATION_ANSWERED = 0.55
REASONS = ((Reason.DISCOUNT, 45), (Reason.STORE, 25), (Reason.CONVENIENCE, 20), (Reason.OTHER, 10))
WHY_ELSE = {
    "ru": "рядом с домом; вежливые продавцы; всегда есть мой размер; подарки на день рождения",
    "en": "close to home; friendly staff; my size is always in stock; the birthday gifts",
    "et": "kodu lähedal; sõbralik personal; minu suurus on alati olemas; sünnipäevakingitused",
}
# What detractors and passives wrote ("What could we do better?"), by language.
COMMENTS = {
    "ru": "долго ждать на кассе; нужного размера не было; скидка прошла не с первого раза; "
    "цены выросли; мало касс в выходные; хотелось бы больше акций; неудобная парковка",
    "en": "queue at the till was long; the size I wanted was out of stock; the discount did "
    "not apply at first; prices went up; more offers please; hard to park nearby",
    "et": "kassas oli pikk järjekord; vajalikku suurust polnud; hinnad on tõusnud; "
    "rohkem pakkumisi, palun",
}
LANGUAGES = (("ru", 75), ("en", 15), ("et", 10))
# First names as "native/latin" (the latin part makes usernames), by language and "female".
FIRST_NAMES = {
    ("ru", True): "Анна/anna Мария/maria Елена/elena Ольга/olga Наталья/natalia Ирина/irina "
    "Татьяна/tanya Светлана/sveta Екатерина/katya Юлия/yulia Дарья/dasha Полина/polina",
    ("ru", False): "Александр/alex Дмитрий/dima Сергей/sergey Андрей/andrey Алексей/alexey "
    "Михаил/misha Иван/ivan Максим/maxim Никита/nikita Павел/pavel Роман/roman Игорь/igor",
    ("en", True): "Emma/emma Olivia/olivia Sophie/sophie Grace/grace Lucy/lucy Chloe/chloe",
    ("en", False): "James/james Oliver/oliver Thomas/tom Daniel/dan Jack/jack Harry/harry",
    ("et", True): "Mari/mari Kadri/kadri Liis/liis Kertu/kertu Triin/triin Maarja/maarja",
    ("et", False): "Jaan/jaan Mart/mart Andres/andres Tõnu/tonu Rasmus/rasmus Kristjan/kristjan",
}
LAST_NAMES = {
    ("ru", True): "Иванова Смирнова Кузнецова Попова Соколова Волкова",
    ("ru", False): "Иванов Смирнов Кузнецов Попов Соколов Волков",
    ("en", True): "Smith Brown Taylor Wilson Clarke Evans",
    ("en", False): "Smith Brown Taylor Wilson Clarke Evans",
    ("et", True): "Tamm Saar Sepp Mägi Kask Rebane",
    ("et", False): "Tamm Saar Sepp Mägi Kask Rebane",
}
PHONE_PREFIXES = {"ru": ("+79", 9), "en": ("+447", 9), "et": ("+3725", 7)}


async def seed_demo(
    db: Database, settings: Settings, *, now: datetime, seed: int = 2026
) -> DemoSeed | None:
    """Fill an empty demo database; None (and nothing written) when it already has cards."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    now = now.astimezone(UTC)
    if await db.read(_has_cards):
        return None
    plan = _Planner(settings, now, random.Random(seed)).plan()
    registered = 0
    try:
        for first, last, pct, segment in RANGES:
            added = await inventory.add_range(
                db, first, last, pct, segment=segment, now=plan.registered_at
            )
            registered += added.added
    except InventoryError:
        if not registered:  # someone else registered them just now: theirs to seed
            return None
        raise
    return await db.write(_write, plan, settings, registered)


def _has_cards(session: Session) -> bool:
    return session.scalar(select(Card.id).limit(1)) is not None


# --------------------------------------------------------------------------- the plan


@dataclass(eq=False)
class _Offer:
    person: _Person
    kind: OfferKind
    bonus_pct: int
    valid_from: datetime
    valid_until: datetime
    redeemed_by: _Sale | None = None
    id: int = 0


@dataclass(eq=False)
class _Assignment:
    person: _Person
    at: datetime
    control: bool
    window_until: datetime
    last_purchase_at: datetime
    offer: _Offer | None


@dataclass(eq=False)
class _Sale:
    card: _Card
    at: datetime
    amount: int
    cashier: int
    voided_at: datetime | None = None
    discount_pct: int = 0
    discount_amount: int = 0
    offer: _Offer | None = None
    id: int = 0


@dataclass(eq=False)
class _Survey:
    person: _Person
    sale: _Sale
    created_at: datetime
    sent_at: datetime
    score: int | None = None
    answered_at: datetime | None = None
    comment: str | None = None
    comment_at: datetime | None = None


@dataclass(eq=False)
class _Motivation:
    person: _Person
    asked_at: datetime
    answered_at: datetime | None = None
    reason: Reason | None = None
    comment: str | None = None


@dataclass(eq=False)
class _Card:
    tier: int  # index into RANGES
    issued_at: datetime
    issued_how: str  # bound | till | staff (the audit's "how")
    holder: _Person | None = None
    visits: list[datetime] = field(default_factory=list)  # sales that stand, sorted
    sales: list[_Sale] = field(default_factory=list)  # visits plus voided ones, by time
    number: str = ""
    id: int = 0


@dataclass(eq=False)
class _Person:
    tg_id: int
    language: str
    first_name: str
    last_name: str | None
    username: str | None
    phone: str | None
    birthday: date | None
    bound_at: datetime  # consent and the card linked, in one visit to the bot
    gap: float  # mean days between visits
    card: _Card
    opt_out_at: datetime | None = None
    offers: list[_Offer] = field(default_factory=list)
    assignments: list[_Assignment] = field(default_factory=list)
    last_seen_at: datetime | None = None
    id: int = 0

    def contactable(self, at: datetime) -> bool:
        """Linked (and agreed) by `at`, offers not turned off yet."""
        return self.bound_at <= at and (self.opt_out_at is None or at < self.opt_out_at)


@dataclass
class _Plan:
    registered_at: datetime
    people: list[_Person]
    cards: list[_Card]
    offers: list[_Offer]
    assignments: list[_Assignment]
    sales: list[_Sale]
    surveys: list[_Survey]
    motivations: list[_Motivation]


class _Planner:
    """The year in Python: who joined when, their visits, offers, sales and surveys."""

    def __init__(self, settings: Settings, now: datetime, rng: random.Random) -> None:
        self.settings = settings
        self.engagement = settings.engagement
        self.tz = settings.store.tz
        self.rng = rng
        self.now = now
        self.start = now - HISTORY
        # No sale so recent that the survey sweep has yet to ask about it.
        self.end = now - timedelta(minutes=self.engagement.survey_delay_min + 2)
        self.today = now.astimezone(self.tz).date()
        first_day = self.start.astimezone(self.tz).date() + timedelta(days=1)
        last_day = self.end.astimezone(self.tz).date()
        self.days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
        raw = {day: self._season(day) for day in self.days}
        mean = sum(raw.values()) / len(raw)
        self.weight = {day: value / mean for day, value in raw.items()}
        self.minor = 10**settings.store.currency_exponent
        # Joining: a launch rush in the first weeks, then a steady trickle.
        self.join_weights = [
            (1 + 6 * math.exp(-i / 60)) * WEEKDAY_WEIGHTS[day.weekday()]
            for i, day in enumerate(self.days)
        ]

    @staticmethod
    def _season(day: date) -> float:
        weight = WEEKDAY_WEIGHTS[day.weekday()] * MONTH_WEIGHTS[day.month - 1]
        return weight * (1.2 if day.month == 12 and day.day >= 20 else 1.0)

    def plan(self) -> _Plan:
        tg_ids = self.rng.sample(range(FIRST_TG_ID, 8_000_000_000), CLIENTS)
        people = [self._person(tg_id) for tg_id in tg_ids]
        cards = [person.card for person in people] + self._paper_cards()
        for person in people:
            if person.birthday is not None:
                self._birthday_offers(person)
        assignments = self._winback(people)
        self._number(cards)
        sales = self._sales(cards)
        offers = sorted(
            (offer for person in people for offer in person.offers),
            key=lambda offer: offer.valid_from,
        )
        surveys = [survey for person in people for survey in self._surveys(person)]
        motivations = [m for person in people if (m := self._motivation(person)) is not None]
        return _Plan(
            registered_at=self.start - timedelta(days=7),
            people=people,
            cards=cards,
            offers=offers,
            assignments=assignments,
            sales=sales,
            surveys=surveys,
            motivations=motivations,
        )

    # --------------------------------------------------------------------- moments

    def _moment(self, day: date) -> datetime | None:
        """A time in store hours on the store day `day` (UTC); None when after the history."""
        hour = self.rng.choices(range(*STORE_HOURS), HOUR_WEIGHTS)[0]
        local = time(hour, self.rng.randrange(60), self.rng.randrange(60))
        at = datetime.combine(day, local, self.tz).astimezone(UTC)
        return at if at <= self.end else None

    def _local_day(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    # ----------------------------------------------------------------------- people

    def _person(self, tg_id: int) -> _Person:
        rng = self.rng
        language = rng.choices([lang for lang, _ in LANGUAGES], [w for _, w in LANGUAGES])[0]
        female = rng.random() < 0.58
        first_name, latin = rng.choice(FIRST_NAMES[language, female].split()).split("/")
        last_name = (
            rng.choice(LAST_NAMES[language, female].split()) if rng.random() < 0.55 else None
        )
        username = f"{latin}{rng.randrange(1, 1000)}" if rng.random() < 0.4 else None
        prefix, digits = PHONE_PREFIXES[language]
        phone = prefix + "".join(rng.choices("0123456789", k=digits))
        habit, _share, gap, stops = rng.choices(HABITS, [habit[1] for habit in HABITS])[0]
        tier = rng.choices(range(len(RANGES)), TIER_SHARES)[0]
        if RANGES[tier][3] == "b2b":
            gap *= 0.7
        joined = self._join_moment()
        # Linked before the first purchase (welcome offer), or at home after it.
        link_first = habit == "never" or rng.random() < 0.4
        if link_first:
            bound_at = joined
            card = _Card(tier, issued_at=joined, issued_how="bound")
            first = joined + timedelta(minutes=rng.randint(2, 15))
        else:
            first = joined
            card = _Card(tier, issued_at=joined, issued_how="till")
            later = (
                timedelta(minutes=rng.randint(10, 90))
                if rng.random() < 0.6
                else timedelta(days=rng.uniform(1, 3))
            )
            bound_at = min(joined + later, self.end)
        person = _Person(
            tg_id=tg_id,
            language=language,
            first_name=first_name,
            last_name=last_name,
            username=username,
            phone=phone if rng.random() < 0.5 else None,
            birthday=self._birthday() if rng.random() < 0.45 else None,
            bound_at=bound_at,
            gap=gap,
            card=card,
        )
        card.holder = person
        if rng.random() < 0.03:
            person.opt_out_at = min(bound_at + timedelta(days=rng.uniform(1, 60)), self.end)
        if habit != "never" and first <= self.end:
            card.visits.append(first)
            if habit != "once":
                churn = None
                if rng.random() < stops:
                    churn = self._local_day(first) + timedelta(days=rng.randint(20, 330))
                self._visits(card, first, gap, churn)
        if self.engagement.welcome_bonus_pct > 0 and link_first:
            valid = timedelta(days=self.engagement.welcome_valid_days)
            pct = self.engagement.welcome_bonus_pct
            person.offers.append(_Offer(person, OfferKind.WELCOME, pct, bound_at, bound_at + valid))
        return person

    def _join_moment(self) -> datetime:
        while True:
            at = self._moment(self.rng.choices(self.days, self.join_weights)[0])
            if at is not None:
                return at

    def _birthday(self) -> date:
        """A birthday whose next occurrence is not due soon: the birthday sweep at the bot's
        start (and in its first weeks) must find none of these customers."""
        soon = self.engagement.birthday_days_before + 30
        while True:
            born = date(self.rng.randint(1960, 2004), self.rng.randint(1, 12), 1)
            born = born.replace(day=self.rng.randint(1, 28))
            next_one = born.replace(year=self.today.year)
            if next_one < self.today:
                next_one = next_one.replace(year=self.today.year + 1)
            if (next_one - self.today).days > soon:
                return born

    def _paper_cards(self) -> list[_Card]:
        """Cards handed out and never linked to Telegram; some are used at the till."""
        cards = []
        for i in range(PAPER_CARDS):
            at = self._join_moment()
            if i < PAPER_BUYERS:
                card = _Card(tier=0, issued_at=at, issued_how="till", visits=[at])
                self._visits(card, at, 40.0, None)
            else:
                card = _Card(
                    tier=0 if self.rng.random() < 0.8 else 1, issued_at=at, issued_how="staff"
                )
            cards.append(card)
        return cards

    def _visits(self, card: _Card, after: datetime, gap: float, churn: date | None) -> None:
        """Visits on the store days after `after`: a daily chance that follows the season and
        the weekday, none within a third of the usual gap of the last one, none after `churn`."""
        rng, weight = self.rng, self.weight
        pause = max(1, round(gap * 0.35))
        chance = 1 / max(gap - pause, 1.0)
        last = self._local_day(after)
        day = last + timedelta(days=pause)
        stop = self.days[-1] if churn is None else min(churn, self.days[-1])
        while day <= stop:
            if rng.random() < chance * weight[day] and (at := self._moment(day)) is not None:
                bisect.insort(card.visits, at)
                last = day
                day += timedelta(days=pause)
            else:
                day += timedelta(days=1)

    def _number(self, cards: list[_Card]) -> None:
        """Each range is handed out from its start, in the order the cards were issued."""
        for tier, (first, *_rest) in enumerate(RANGES):
            issued = sorted((c for c in cards if c.tier == tier), key=lambda c: c.issued_at)
            for i, card in enumerate(issued):
                card.number = str(first + i)

    # ----------------------------------------------------------------------- offers

    def _birthday_offers(self, person: _Person) -> None:
        """What the daily birthday sweep gave this customer over the year (`offers`)."""
        e = self.engagement
        assert person.birthday is not None
        if e.birthday_bonus_pct <= 0:
            return
        for year in range(self.start.year, self.now.year + 1):
            target = person.birthday.replace(year=year)
            day = target - timedelta(days=e.birthday_days_before)
            at = datetime.combine(day, time(e.winback_hour, 5), self.tz).astimezone(UTC)
            if not (self.start <= at <= self.now and person.contactable(at)):
                continue
            until = at + timedelta(days=e.birthday_valid_days)
            person.offers.append(
                _Offer(person, OfferKind.BIRTHDAY, e.birthday_bonus_pct, at, until)
            )
            if self.rng.random() < BIRTHDAY_VISIT:
                self._come_back(person.card, at, until)

    def _winback(self, people: list[_Person]) -> list[_Assignment]:
        """The win-back sweeps (`offers.winback_sweep`'s rules): a round eight weeks before
        `now`, then daily at WINBACK_HOUR, and a last one at `now`. Some come back."""
        e = self.engagement
        moments = []
        day = self._local_day(self.now - WINBACK_ROUND)
        while (at := datetime.combine(day, time(e.winback_hour), self.tz)) <= self.now:
            moments.append(at.astimezone(UTC))
            day += timedelta(days=1)
        moments.append(self.now)
        assignments = []
        for at in moments:
            for person in people:
                last = self._winback_last(person, at)
                if last is None:
                    continue
                control = self.rng.random() * 100 < e.winback_holdout_pct
                until = at + timedelta(days=e.winback_valid_days)
                offer = None
                if not control:
                    offer = _Offer(person, OfferKind.WINBACK, e.winback_bonus_pct, at, until)
                    person.offers.append(offer)
                assignment = _Assignment(person, at, control, until, last, offer)
                person.assignments.append(assignment)
                assignments.append(assignment)
                back = None
                if self.rng.random() < COMEBACK[control]:
                    back = self._come_back(person.card, at, until)
                if back is not None and self.rng.random() < 0.5:  # and stays
                    self._visits(person.card, back, person.gap, None)
        return assignments

    def _winback_last(self, person: _Person, at: datetime) -> datetime | None:
        """The customer's last purchase when win-back takes them at `at`, else None."""
        e = self.engagement
        if not person.contactable(at):
            return None
        visits = person.card.visits
        n = bisect.bisect_right(visits, at)
        if n == 0 or at - visits[n - 1] < timedelta(days=e.winback_min_days):
            return None
        cooldown = timedelta(days=max(e.winback_cooldown_days, 1))
        if person.assignments and person.assignments[-1].at > at - cooldown:
            return None
        threshold = float(e.winback_min_days)
        gaps = [(b - a).total_seconds() / 86400 for a, b in itertools.pairwise(visits[:n])]
        if gaps:
            threshold = max(threshold, e.winback_factor * statistics.median(gaps))
        if (at - visits[n - 1]).total_seconds() < threshold * 86400 - 1e-6:
            return None
        return visits[n - 1]

    def _come_back(self, card: _Card, after: datetime, until: datetime) -> datetime | None:
        """One visit in the days after `after`, before `until` (its moment, if any)."""
        days = max((until - after).days - 1, 1)
        at = self._moment(self._local_day(after) + timedelta(days=self.rng.randint(1, days)))
        if at is None or not after < at < until:
            return None
        bisect.insort(card.visits, at)
        return at

    # ------------------------------------------------------------------------ sales

    def _sales(self, cards: list[_Card]) -> list[_Sale]:
        """Every card's visits as sales (a few with a mistyped sale voided first), priced in
        order as the till prices them."""
        for card in cards:
            for i, at in enumerate(card.visits):
                cashier = self._cashier(at)
                amount = self._amount(card, at)
                if i and self.rng.random() < VOIDED_SHARE:
                    wrong = amount * 10 if self.rng.random() < 0.5 else amount + 100 * self.minor
                    typed = at - timedelta(minutes=self.rng.randint(5, 9))
                    voided = at - timedelta(minutes=self.rng.randint(1, 3))
                    wrong = min(wrong, self.settings.pricing.max_purchase)
                    card.sales.append(_Sale(card, typed, wrong, cashier, voided_at=voided))
                card.sales.append(_Sale(card, at, amount, cashier))
            self._price(card)
        return sorted((sale for card in cards for sale in card.sales), key=lambda s: s.at)

    def _cashier(self, at: datetime) -> int:
        if at < self.now - CASHIER_4_FROM:
            return self.rng.choices(CASHIERS[:2], (55, 45))[0]
        return self.rng.choices(CASHIERS, (40, 35, 25))[0]

    def _amount(self, card: _Card, at: datetime) -> int:
        """300–8,000 (major units) mostly, a long tail; business cards buy more, December too."""
        median = 4500 if RANGES[card.tier][3] == "b2b" else 1400
        major = self.rng.lognormvariate(math.log(median), 0.8)
        if at.astimezone(self.tz).month == 12:
            major *= 1.25
        major = max(major, 120.0)
        whole = self.rng.random() < 0.6  # most prices are whole; some have cents
        minor = round(major) * self.minor if whole else round(major * self.minor)
        return min(minor, self.settings.pricing.max_purchase)

    def _price(self, card: _Card) -> None:
        """`pricing.quote` for each sale in order: spend so far, the best offer then active."""
        p = self.settings.pricing
        spend = 0
        for sale in card.sales:
            offer = self._best_offer(card.holder, sale.at)
            quote = pricing.quote(
                amount=sale.amount,
                base_pct=RANGES[card.tier][2],
                spend_before=spend,
                amount_tiers=p.amount_tiers,
                cumulative_tiers=p.cumulative_tiers,
                offer_pct=offer.bonus_pct if offer else 0,
                max_pct=p.discount_max_pct,
            )
            sale.discount_pct, sale.discount_amount, sale.offer = (
                quote.discount_pct,
                quote.discount_amount,
                offer,
            )
            if sale.voided_at is None:  # a void returns the offer and the spend
                spend += sale.amount
                if offer is not None:
                    offer.redeemed_by = sale

    @staticmethod
    def _best_offer(person: _Person | None, at: datetime) -> _Offer | None:
        """The offer the till applies at `at`: the largest bonus, then the soonest to end."""
        if person is None or at < person.bound_at:
            return None
        active = [
            o for o in person.offers if o.valid_from <= at < o.valid_until and o.redeemed_by is None
        ]
        return min(active, key=lambda o: (-o.bonus_pct, o.valid_until), default=None)

    # ---------------------------------------------------------------------- surveys

    def _surveys(self, person: _Person) -> list[_Survey]:
        """What the survey sweep asked (`surveys`), and what was answered.

        The cooldown is taken a day shorter than the sweep's: a purchase it could still pick
        up after `now` (within its one-day lookback) is then asked about here or covered by a
        survey the sweep will still count."""
        e = self.engagement
        delay = timedelta(minutes=e.survey_delay_min)
        cooldown = timedelta(days=max(e.survey_cooldown_days - 1, 0))
        window = self.settings.delivery.quiet_window
        surveys: list[_Survey] = []
        for sale in person.card.sales:
            if sale.voided_at is not None:
                continue
            at = max(sale.at + delay, person.bound_at)
            if at >= sale.at + delay + SURVEY_LOOKBACK or at > self.now:
                continue
            if not person.contactable(at):
                continue
            if surveys and surveys[-1].created_at > at - cooldown:
                continue
            sent = quiet_until(at, window, self.tz) or at
            survey = _Survey(person, sale, created_at=at, sent_at=sent)
            surveys.append(survey)
            if self.rng.random() < SURVEY_ANSWERED:
                self._answer(survey)
        return surveys

    def _answer(self, survey: _Survey) -> None:
        rng = self.rng
        limit = timedelta(days=self.engagement.survey_answer_days) - timedelta(minutes=1)
        after = timedelta(minutes=min(rng.lognormvariate(3.4, 1.1), limit.total_seconds() / 60))
        answered = survey.sent_at + after
        if answered > self.now:
            return
        scores, _share, weights = rng.choices(SCORES, [group[1] for group in SCORES])[0]
        survey.score = rng.choices(scores, weights)[0]
        survey.answered_at = answered
        person = survey.person
        kind = "detractor" if survey.score <= 6 else "passive" if survey.score <= 8 else None
        commented = answered + timedelta(minutes=rng.randint(1, 4))
        if kind and rng.random() < COMMENTED[kind] and commented <= self.now:
            survey.comment = rng.choice(COMMENTS[person.language].split("; "))
            survey.comment_at = commented
        seen = survey.comment_at or answered
        if person.last_seen_at is None or seen > person.last_seen_at:
            person.last_seen_at = seen

    # ------------------------------------------------------------------- motivation

    def _motivation(self, person: _Person) -> _Motivation | None:
        """Why they take part (`services.motivation`): asked once, after the sale that was
        their third that stands (or when they linked their card, if that came later), unless
        they had turned offers off by then; answered by some."""
        standing = [sale for sale in person.card.sales if sale.voided_at is None]
        if len(standing) < ASK_AT_PURCHASE:
            return None
        delay = timedelta(minutes=self.engagement.survey_delay_min)
        asked = max(standing[ASK_AT_PURCHASE - 1].at + delay, person.bound_at)
        if asked > self.now or not person.contactable(asked):
            return None
        motivation = _Motivation(person, asked)
        sent = quiet_until(asked, self.settings.delivery.quiet_window, self.tz) or asked
        answered = sent + timedelta(minutes=self.rng.lognormvariate(3.0, 1.0))
        if self.rng.random() < MOTIVATION_ANSWERED and answered <= self.now:
            reasons, weights = zip(*REASONS, strict=True)
            motivation.reason = self.rng.choices(reasons, weights)[0]
            motivation.answered_at = answered
            if motivation.reason is Reason.OTHER and self.rng.random() < 0.7:
                motivation.comment = self.rng.choice(WHY_ELSE[person.language].split("; "))
            if person.last_seen_at is None or answered > person.last_seen_at:
                person.last_seen_at = answered
        return motivation


# -------------------------------------------------------------------------- the write


def _write(session: Session, plan: _Plan, settings: Settings, registered: int) -> DemoSeed:
    """The plan in one transaction: bulk inserts in the order the foreign keys need."""
    _insert_people(session, plan.people, settings)
    _bind_cards(session, plan.cards)
    _insert_offers(session, plan.offers)
    _insert_assignments(session, plan.assignments)
    _insert_sales(session, plan.sales)
    offers = Offer.__table__
    session.execute(
        update(offers)
        .where(offers.c.id == bindparam("b_id"))
        .values(
            redeemed_purchase_id=bindparam("b_purchase"),
            redeemed_at=bindparam("b_at", type_=UTCDateTime()),
        ),
        [
            {"b_id": o.id, "b_purchase": o.redeemed_by.id, "b_at": o.redeemed_by.at}
            for o in plan.offers
            if o.redeemed_by is not None
        ],
    )
    _insert_surveys(session, plan.surveys)
    _insert_motivations(session, plan.motivations)
    audit.insert_many(session, sorted(_audit_events(plan, settings), key=lambda e: e["at"]))
    refresh_totals(session, sorted(card.id for card in plan.cards if card.sales))
    session.commit()
    return DemoSeed(
        cards=registered,
        clients=len(plan.people),
        purchases=len(plan.sales),
        surveys=sum(1 for survey in plan.surveys if survey.score is not None),
        winback_offers=sum(1 for offer in plan.offers if offer.kind == OfferKind.WINBACK),
    )


def _inserted_ids(session: Session, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert `rows` in one statement per batch; their new ids, in the order of `rows`."""
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return list(session.execute(statement, rows).scalars())


def _insert_people(session: Session, people: list[_Person], settings: Settings) -> None:
    rows = [
        {
            "tg_id": p.tg_id,
            "first_name": p.first_name,
            "last_name": p.last_name,
            "username": p.username,
            "language": p.language,
            "consent_at": p.bound_at,
            "consent_version": settings.privacy.policy_version,
            "phone": p.phone,
            "birthday": p.birthday,
            "reachable": True,
            "marketing_opt_out": p.opt_out_at is not None,
            "created_at": p.bound_at,
            "last_seen_at": max(
                at for at in (p.bound_at, p.opt_out_at, p.last_seen_at) if at is not None
            ),
        }
        for p in people
    ]
    for person, new_id in zip(people, _inserted_ids(session, Client.__table__, rows), strict=True):
        person.id = new_id


def _bind_cards(session: Session, cards: list[_Card]) -> None:
    table = Card.__table__
    ids = dict(
        session.execute(
            select(table.c.number, table.c.id).where(
                table.c.number.in_([card.number for card in cards])
            )
        ).all()
    )
    for card in cards:
        card.id = ids[card.number]
    session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            status=CardStatus.ISSUED.value,
            issued_at=bindparam("b_issued", type_=UTCDateTime()),
            client_id=bindparam("b_client"),
            bound_at=bindparam("b_bound", type_=UTCDateTime()),
        ),
        [
            {
                "b_id": card.id,
                "b_issued": card.issued_at,
                "b_client": card.holder.id if card.holder else None,
                "b_bound": card.holder.bound_at if card.holder else None,
            }
            for card in cards
        ],
    )


def _insert_offers(session: Session, offers: list[_Offer]) -> None:
    rows = [
        {
            "client_id": o.person.id,
            "kind": o.kind.value,
            "bonus_pct": o.bonus_pct,
            "valid_from": o.valid_from,
            "valid_until": o.valid_until,
            "created_at": o.valid_from,
        }
        for o in offers
    ]
    if rows:
        for offer, new_id in zip(
            offers, _inserted_ids(session, Offer.__table__, rows), strict=True
        ):
            offer.id = new_id


def _insert_assignments(session: Session, assignments: list[_Assignment]) -> None:
    if not assignments:
        return
    session.execute(
        insert(WinbackAssignment.__table__),
        [
            {
                "client_id": a.person.id,
                "assigned_at": a.at,
                "control": a.control,
                "offer_id": a.offer.id if a.offer else None,
                "window_until": a.window_until,
                "last_purchase_at": a.last_purchase_at,
            }
            for a in assignments
        ],
    )


def _insert_sales(session: Session, sales: list[_Sale]) -> None:
    rows = [
        {
            "card_id": s.card.id,
            "amount": s.amount,
            "discount_pct": s.discount_pct,
            "discount_amount": s.discount_amount,
            "paid_amount": s.amount - s.discount_amount,
            "offer_id": s.offer.id if s.offer else None,
            "cashier_id": s.cashier,
            "source": PurchaseSource.BOT.value,
            "created_at": s.at,
            "voided_at": s.voided_at,
            "voided_by": s.cashier if s.voided_at else None,
        }
        for s in sales
    ]
    for sale, new_id in zip(sales, _inserted_ids(session, Purchase.__table__, rows), strict=True):
        sale.id = new_id


def _insert_surveys(session: Session, surveys: list[_Survey]) -> None:
    if not surveys:
        return
    session.execute(
        insert(Survey.__table__),
        [
            {
                "client_id": s.person.id,
                "purchase_id": s.sale.id,
                "created_at": s.created_at,
                "sent_at": s.sent_at,
                "score": s.score,
                "answered_at": s.answered_at,
                "comment": s.comment,
                "comment_at": s.comment_at,
            }
            for s in surveys
        ],
    )


def _insert_motivations(session: Session, motivations: list[_Motivation]) -> None:
    if not motivations:
        return
    session.execute(
        insert(Motivation.__table__),
        [
            {
                "client_id": m.person.id,
                "asked_at": m.asked_at,
                "answered_at": m.answered_at,
                "reason": m.reason.value if m.reason is not None else None,
                "comment": m.comment,
            }
            for m in motivations
        ],
    )


def _audit_events(plan: _Plan, settings: Settings) -> list[dict[str, Any]]:
    """The audit trail the wallet and the till leave: consent, cards issued and linked, sales,
    voids, offers used, offers turned off."""
    events = []
    for person in plan.people:
        card, tg_id = person.card, person.tg_id
        events.append(
            audit.values(
                "client.consent",
                at=person.bound_at,
                actor_id=tg_id,
                client_id=person.id,
                version=settings.privacy.policy_version,
            )
        )
        events.append(
            audit.values(
                "card.bound",
                at=person.bound_at,
                actor_id=tg_id,
                card_id=card.id,
                client_id=person.id,
                replaced=None,
            )
        )
        if person.opt_out_at is not None:
            events.append(audit.values("marketing.off", at=person.opt_out_at, client_id=person.id))
    for card in plan.cards:
        actor = card.holder.tg_id if card.issued_how == "bound" and card.holder else None
        if card.issued_how == "till":
            actor = card.sales[0].cashier
        elif card.issued_how == "staff":
            actor = CASHIERS[0]
        events.append(
            audit.values(
                "card.issued",
                at=card.issued_at,
                actor_id=actor,
                card_id=card.id,
                how=card.issued_how,
            )
        )
    for offer in plan.offers:
        if offer.kind == OfferKind.WELCOME:
            events.append(
                audit.values(
                    "offer.welcome",
                    at=offer.valid_from,
                    client_id=offer.person.id,
                    offer_id=offer.id,
                    pct=offer.bonus_pct,
                )
            )
    for sale in plan.sales:
        holder = sale.card.holder
        client_id = holder.id if holder and holder.bound_at <= sale.at else None
        offer_id = sale.offer.id if sale.offer else None
        events.append(
            audit.values(
                "sale.confirmed",
                at=sale.at,
                actor_id=sale.cashier,
                card_id=sale.card.id,
                client_id=client_id,
                purchase_id=sale.id,
                draft_id=None,
                amount=sale.amount,
                discount_pct=sale.discount_pct,
                discount_amount=sale.discount_amount,
                offer_id=offer_id,
            )
        )
        if sale.voided_at is not None:
            events.append(
                audit.values(
                    "sale.voided",
                    at=sale.voided_at,
                    actor_id=sale.cashier,
                    card_id=sale.card.id,
                    client_id=client_id,
                    purchase_id=sale.id,
                    amount=sale.amount,
                    offer_returned=offer_id is not None,
                )
            )
        elif sale.offer is not None:
            events.append(
                audit.values(
                    "offer.redeemed",
                    at=sale.at,
                    actor_id=sale.cashier,
                    card_id=sale.card.id,
                    client_id=client_id,
                    purchase_id=sale.id,
                    offer_id=offer_id,
                )
            )
    return events
