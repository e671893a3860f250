"""Pricing as pure functions over decimals and a prefix index (contract §3, rules 1-7).

No I/O here: the handler loads a `TenantPlan` for a batch and calls `rate_call` per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from cdrmodel import phone
from cdrmodel.money import ZERO, round8

OUTBOUND = "outbound"
INBOUND = "inbound"


@dataclass(frozen=True, slots=True)
class RateLine:
    prefix: str
    rate: Decimal
    increment: int = 60
    initial_increment: int | None = None
    connect_fee: Decimal = ZERO
    destination: str = ""
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    direction: str = OUTBOUND

    @property
    def first_increment(self) -> int:
        return self.increment if self.initial_increment is None else self.initial_increment

    def effective_at(self, at: datetime) -> bool:
        if self.effective_from is not None and at < self.effective_from:
            return False
        return self.effective_to is None or at < self.effective_to


class RateDeck:
    """A prefix index over one deck's lines: longest prefix first, then latest effective_from."""

    def __init__(self, lines: Iterable[RateLine]) -> None:
        index: dict[tuple[str, str], list[RateLine]] = {}
        for line in lines:
            index.setdefault((line.direction, line.prefix), []).append(line)
        for bucket in index.values():
            bucket.sort(key=_from_key, reverse=True)
        self._index = index

    def match(self, number: str, at: datetime, direction: str = OUTBOUND) -> RateLine | None:
        for length in range(len(number), 0, -1):
            for line in self._index.get((direction, number[:length]), ()):
                if line.effective_at(at):
                    return line
        return None


def _from_key(line: RateLine) -> float:
    # Lines always carry aware datetimes (timestamptz); an open start sorts first-oldest.
    return float("-inf") if line.effective_from is None else line.effective_from.timestamp()


def billed_seconds(duration: int, answered: bool, line: RateLine) -> int:
    """Rule 4: initial increment, then whole increments rounded up."""
    if duration <= 0 or not answered:
        return 0
    first = line.first_increment
    if duration <= first:
        return first
    step = line.increment if line.increment > 0 else 1
    return first + -(-(duration - first) // step) * step


def charge(line: RateLine, billed: int) -> Decimal:
    """Rule 5: connect fee plus the per-minute rate over billed seconds, half-up to 8 places."""
    if billed == 0:
        return ZERO
    return round8(line.connect_fee + line.rate * billed / Decimal(60))


@dataclass(frozen=True, slots=True)
class Extension:
    package_id: str | None
    account: str | None = None
    client: str | None = None


@dataclass(frozen=True, slots=True)
class Package:
    route_id: str | None
    deck: RateDeck


@dataclass(slots=True)
class TenantPlan:
    """What rating needs of one tenant's configuration (only the parts a batch touches)."""

    home_country: str = "US"
    extensions: Mapping[str, Extension] = field(default_factory=dict)
    packages: Mapping[str, Package] = field(default_factory=dict)
    routes: Mapping[str, RateDeck] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Call:
    originating: str
    destination: str
    start_time: datetime | None
    duration: int
    disposition: str = "ANSWERED"


@dataclass(slots=True)
class Rating:
    rated: bool
    unrated_reason: str | None = None
    direction: str = OUTBOUND
    extension: str | None = None
    package_id: str | None = None
    route_id: str | None = None
    account: str | None = None
    client: str | None = None
    number: str = ""
    call_type: str | None = None
    destination_name: str | None = None
    matched_prefix: str | None = None
    billed_seconds: int = 0
    rate: Decimal | None = None
    total: Decimal | None = None
    cost: Decimal | None = None
    # The lines that priced the call (sell, cost): what explain and the history describe.
    line: RateLine | None = None
    cost_line: RateLine | None = None

    @property
    def call_billing(self) -> str | None:
        if not self.rated or self.total is None:
            return None
        return "free" if self.total == 0 else "billed"


def party_number(call: Call, plan: TenantPlan) -> tuple[str, str]:
    """(direction, normalised number to match): the caller for inbound, else the callee."""
    if call.destination in plan.extensions and call.originating not in plan.extensions:
        return INBOUND, phone.normalize(call.originating, plan.home_country)
    return OUTBOUND, phone.normalize(call.destination, plan.home_country)


def rate_call(call: Call, plan: TenantPlan, *, default_package: str | None) -> Rating:
    """Price one call (rules 1-7). Unpriceable calls come back unrated with a reason."""
    origin = plan.extensions.get(call.originating)
    target = plan.extensions.get(call.destination)
    direction, number = party_number(call, plan)
    party = call.originating if direction == INBOUND else call.destination
    local = phone.local_only(party, plan.home_country)
    # A local-form number lacks its area code, so no area line can be said to cover it:
    # only the home country's country-wide line may price it (docs/rating.md).
    deck_number = phone.calling_code(plan.home_country) if local else number

    if origin is not None and target is not None:
        return Rating(
            rated=True,
            direction=OUTBOUND,
            extension=call.originating,
            package_id=origin.package_id,
            account=origin.account,
            client=origin.client,
            number=call.destination,
            call_type=phone.ON_NET,
            total=ZERO,
            rate=ZERO,
        )

    ext_name = call.destination if direction == INBOUND else call.originating
    ext = target if direction == INBOUND else origin
    package_id = ext.package_id if ext is not None else default_package
    rating = Rating(
        rated=False,
        direction=direction,
        extension=ext_name if ext is not None else None,
        package_id=package_id,
        account=ext.account if ext else None,
        client=ext.client if ext else None,
        number=number,
    )
    if call.start_time is None:
        rating.unrated_reason = "invalid_start_time"
        return rating
    package = plan.packages.get(package_id) if package_id else None
    if package is None:
        rating.unrated_reason = "no_package"
        return rating
    rating.route_id = package.route_id
    answered = call.disposition == "ANSWERED"

    line = package.deck.match(deck_number, call.start_time, direction)
    if direction == INBOUND:
        rating.call_type = phone.INBOUND
        if line is None:  # inbound without an inbound line is free
            rating.rated, rating.total, rating.rate = True, ZERO, ZERO
            rating.cost, rating.cost_line = _cost(plan, package, deck_number, call, answered)
            return rating
    else:
        rating.call_type = phone.dialled_type(party, plan.home_country) or phone.classify(
            number, plan.home_country
        )
        if line is None:
            rating.unrated_reason = "no_rate"
            return rating

    rating.rated = True
    rating.line = line
    rating.destination_name = line.destination or None
    rating.matched_prefix = line.prefix
    rating.rate = line.rate
    rating.billed_seconds = billed_seconds(call.duration, answered, line)
    rating.total = charge(line, rating.billed_seconds)
    rating.cost, rating.cost_line = _cost(plan, package, deck_number, call, answered)
    return rating


def _cost(
    plan: TenantPlan, package: Package, number: str, call: Call, answered: bool
) -> tuple[Decimal | None, RateLine | None]:
    """Rule 6: the same formula over the package's route (termination) deck."""
    if package.route_id is None or call.start_time is None:
        return None, None
    deck = plan.routes.get(package.route_id)
    direction = INBOUND if call.destination in plan.extensions else OUTBOUND
    line = deck.match(number, call.start_time, direction) if deck is not None else None
    if line is None:
        return None, None
    return charge(line, billed_seconds(call.duration, answered, line)), line
