"""Pricing as pure functions over decimals and a prefix index (contract §3, rules 1-7).

No I/O here: the handler loads a `TenantPlan` for a batch and calls `rate_call` per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import ROUND_DOWN, Context, Decimal, Inexact, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdr_rater.bands import Band
from cdrmodel import phone
from cdrmodel.money import ZERO

OUTBOUND = "outbound"
INBOUND = "inbound"
_SIXTY = Decimal(60)
# Rule 5 exactly: every step either is exact or raises (Inexact trapped), so the only
# rounding is the one half-up at the 8th place that `charge` does by hand.
_EXACT = Context(prec=120, rounding=ROUND_DOWN, traps=[Inexact, InvalidOperation])


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
    # None: any time (`default` or no band); see cdr_rater.bands and docs/rating.md.
    time_band: Band | None = None

    @property
    def first_increment(self) -> int:
        return self.increment if self.initial_increment is None else self.initial_increment

    def effective_at(self, at: datetime) -> bool:
        if self.effective_from is not None and at < self.effective_from:
            return False
        return self.effective_to is None or at < self.effective_to


def _precedence(line: RateLine) -> tuple[bool, int, float, str]:
    """Among lines of one prefix: a banded line before an unbanded one, a narrower band before
    a wider one, then the latest effective_from (an open start is the oldest), and last the
    band's spelling, so two overlapping bands of one width never leave the choice to the
    order the database returned the lines in (replicas, reloads and quotes agree)."""
    band = line.time_band
    start = float("-inf") if line.effective_from is None else line.effective_from.timestamp()
    if band is None:
        return (False, 0, start, "")
    return (True, -band.minutes, start, band.text)


class RateDeck:
    """A prefix index over one deck's lines, per direction, each prefix's lines in precedence
    order, so a match is one dict lookup per candidate prefix length."""

    __slots__ = ("_index", "_longest")

    def __init__(self, lines: Iterable[RateLine]) -> None:
        index: dict[str, dict[str, list[RateLine]]] = {}
        for line in lines:
            index.setdefault(line.direction, {}).setdefault(line.prefix, []).append(line)
        self._index = {
            direction: {
                prefix: tuple(sorted(bucket, key=_precedence, reverse=True))
                for prefix, bucket in by_prefix.items()
            }
            for direction, by_prefix in index.items()
        }
        self._longest = {d: max(map(len, by_prefix)) for d, by_prefix in index.items()}

    def match(
        self,
        number: str,
        at: datetime,
        direction: str = OUTBOUND,
        zone: str = "UTC",
    ) -> RateLine | None:
        """Rule 3 with time bands: the longest prefix with a line effective at `at` (and, for a
        banded line, whose band holds `at` on the wall clock of the IANA `zone`)."""
        by_prefix = self._index.get(direction)
        if by_prefix is None:
            return None
        local: datetime | None = None
        for length in range(min(len(number), self._longest[direction]), 0, -1):
            for line in by_prefix.get(number[:length], ()):
                if not line.effective_at(at):
                    continue
                band = line.time_band
                if band is not None:
                    if local is None:  # converted once per call, only when a band is met
                        local = at.astimezone(zone_of(zone))
                    if not band.contains(local):
                        continue
                return line
        return None


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
    """Rule 5: connect fee plus the per-minute rate over billed seconds, half-up to 8 places.

    Computed as (fee x 60 + rate x billed) / 60 in units of 10^-8 with an exact integer
    quotient and remainder: no intermediate rounding can move a digit, for any inputs.
    """
    if billed == 0:
        return ZERO
    ctx = _EXACT
    sixtieths = ctx.add(ctx.multiply(line.connect_fee, _SIXTY), ctx.multiply(line.rate, billed))
    units, rest = ctx.divmod(ctx.scaleb(sixtieths, 8), _SIXTY)
    if ctx.multiply(rest.copy_abs(), 2) >= _SIXTY:  # half-up: ties away from zero
        units = ctx.add(units, 1 if rest > 0 else -1)
    return ctx.scaleb(units, -8)


@lru_cache(maxsize=1024)
def zone_of(name: str) -> tzinfo:
    """The tenant's IANA zone; an unknown name is a ValueError (held unrated, not a crash)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


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
    # IANA zone the deck's time bands are read in (the tenant's `timezone`).
    timezone: str = "UTC"


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


def _parties(call: Call, plan: TenantPlan) -> tuple[str, phone.Number, str, str, str | None]:
    """(direction, the other party as dialled, its normalised number, the digits matched
    against the deck, the area code of the tenant's own side). The other party is the caller
    for inbound, the callee otherwise.

    A local-form number (`8220000`) lacks its area code: it takes the area of the tenant's own
    number when that is a geographic number, else only the home country's country-wide line
    may price it (docs/rating.md).
    """
    home = plan.home_country
    if call.destination in plan.extensions and call.originating not in plan.extensions:
        direction, party, own = INBOUND, call.originating, call.destination
    else:
        direction, party, own = OUTBOUND, call.destination, call.originating
    own_area = phone.describe(own, home).area
    other = phone.describe(party, home)
    number = other.digits
    if other.local_only:
        full = phone.complete_local(party, home, own_area)
        if full is None:
            return direction, other, number, phone.calling_code(home), own_area
        number = full
    return direction, other, number, number, own_area


def party_number(call: Call, plan: TenantPlan) -> tuple[str, str]:
    """(direction, the digits the call is matched on in the deck): what a batch must load."""
    direction, _, _, deck_number, _ = _parties(call, plan)
    return direction, deck_number


def rate_call(call: Call, plan: TenantPlan, *, default_package: str | None) -> Rating:
    """Price one call (rules 1-7). Unpriceable calls come back unrated with a reason."""
    origin = plan.extensions.get(call.originating)
    target = plan.extensions.get(call.destination)
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

    direction, other, number, deck_number, own_area = _parties(call, plan)
    if direction == INBOUND:
        ext_name, ext = call.destination, target
        call_type = phone.inbound_type(phone.describe(call.destination, plan.home_country), other)
    else:
        ext_name, ext = call.originating, origin
        call_type = phone.outbound_type(other, own_area)
    # An extension without a package of its own falls back to the account's default.
    package_id = (ext.package_id if ext is not None else None) or default_package
    rating = Rating(
        rated=False,
        direction=direction,
        extension=ext_name if ext is not None else None,
        package_id=package_id,
        account=ext.account if ext else None,
        client=ext.client if ext else None,
        number=number,
    )
    start = call.start_time
    if start is None:
        rating.unrated_reason = "invalid_start_time"
        return rating
    package = plan.packages.get(package_id) if package_id else None
    if package is None:
        rating.unrated_reason = "no_package"
        return rating
    # Typed only once a package is known: queries and feeds filter no_package records out of
    # the call types (tests/inprocess/test_queries.py); a no_rate record keeps its type.
    rating.route_id, rating.call_type = package.route_id, call_type
    answered = call.disposition == "ANSWERED"
    zone = plan.timezone

    line = package.deck.match(deck_number, start, direction, zone)
    if line is None:
        if direction == OUTBOUND:
            rating.unrated_reason = "no_rate"
            return rating
        # Inbound without an inbound line is free (rule 1); its cost still counts.
        rating.rated, rating.total, rating.rate = True, ZERO, ZERO
    else:
        rating.rated = True
        rating.line = line
        rating.destination_name = line.destination or None
        rating.matched_prefix = line.prefix
        rating.rate = line.rate
        rating.billed_seconds = billed_seconds(call.duration, answered, line)
        rating.total = charge(line, rating.billed_seconds)
    route = plan.routes.get(package.route_id) if package.route_id is not None else None
    cost_line = route.match(deck_number, start, direction, zone) if route is not None else None
    if cost_line is not None:  # rule 6: the same formula over the route (termination) deck
        rating.cost_line = cost_line
        rating.cost = charge(cost_line, billed_seconds(call.duration, answered, cost_line))
    return rating
