"""A synthetic operator for evaluating the insider-risk detectors (issue 7 §5).

``generate(SimulationConfig(...))`` builds, from a seed and nothing else, a mobile operator's
staff (teams, job roles, duties, working hours, some leaving), its customer base (ids
``C0000000``… as in the customer directory), weeks of ordinary access to customer records,
and, injected into that, labelled insider scenarios modelled on the T-Mobile case:

- ``slow_theft``: a renewals agent quietly opens a few hundred extra contract-renewal
  records every working day, in working hours, for the rest of the period;
- ``departure_burst``: a user whose leaving date HR has recorded exports thousands of
  records in their last working days;
- ``after_hours_export``: a user exports hundreds of records late one evening;
- ``honeytoken``: a user opens one of the honeytoken customer ids given by the caller.

The ordinary traffic is meant to make false alerts honestly possible: volumes differ by
role and by person, Mondays are busier than Fridays, some days are busy, people take days
off and holidays, some work an overtime evening, some roles make small legitimate exports,
the renewals team has a campaign day at several times its usual volume, new joiners arrive
without history, other people leave, and a few events touch record types outside a
person's duties.

Events are dictionaries in the ingestion wire format (docs/audit.md): ``id``, ``time``
(RFC 3339 with the local offset), ``actor``, ``action``, ``system``, ``record_type``,
``customer_ids`` or ``result_count``, ``query`` for searches, ``source_address``. Each is
sent by the source named after its system (``crm`` or ``billing``). Labels give each
scenario's actor, its start (the time of its first injected event) and the customer ids it
stole. ``Organisation.write(directory)`` writes ``staff.csv`` (the columns of
``spillguard audit staff import``), ``events-<source>.jsonl`` and ``labels.json``.

Same config, same output, byte for byte: one ``random.Random(seed)`` drives everything
(Faker en_GB, seeded from it, only names the staff).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

SCENARIOS = ("slow_theft", "departure_burst", "after_hours_export")
"""The injected insider scenarios that ``--scenarios all`` means (the honeytoken access is
added when honeytoken ids are given)."""
HONEYTOKEN = "honeytoken"

STAFF_COLUMNS = (
    "actor",
    "name",
    "team",
    "role",
    "duties",
    "leaving_on",
    "work_start",
    "work_end",
    "work_days",
    "timezone",
)

RECORD_TYPES = ("account", "billing", "contract-renewal", "porting")
SYSTEM_OF = {"account": "crm", "contract-renewal": "crm", "porting": "crm", "billing": "billing"}
SOURCES = ("crm", "billing")
QUERIES = (
    "contract_end_within:30d",
    "contract_end_within:90d",
    "status:arrears",
    "status:port-out-requested",
    "plan:sim-only",
    "plan:handset",
    "segment:business",
    "last_contact_before:180d",
    "open_complaint:true",
    "direct_debit:failed",
)


@dataclass(frozen=True)
class Role:
    """A kind of job: which team, what records it needs, how much it reads a day, its
    hours, and how often it legitimately exports or prints records."""

    team: str
    name: str
    share: float  # of the head count
    duties: tuple[str, ...]  # record types, most used first
    daily_records: float  # the role's mean records a working day
    shifts: tuple[tuple[str, str], ...]
    work_days: tuple[str, ...]
    search_share: float = 0.08  # of events
    search_results: tuple[int, int] = (1, 12)
    export_chance: float = 0.0  # per working day
    export_size: tuple[int, int] = (0, 0)
    export_action: str = "export"
    subnet: int = 10


ROLES: tuple[Role, ...] = (
    Role(
        "call-centre",
        "customer service advisor",
        0.30,
        ("account", "billing", "porting"),
        60,
        (("08:00", "16:00"), ("09:00", "17:00"), ("12:00", "20:00")),
        ("12345", "23456"),
        subnet=20,
    ),
    Role(
        "renewals",
        "renewals agent",
        0.15,
        ("contract-renewal", "account"),
        45,
        (("09:00", "17:30"),),
        ("12345",),
        subnet=30,
    ),
    Role(
        "retail-stores",
        "store advisor",
        0.19,
        ("account", "contract-renewal", "porting"),
        22,
        (("09:00", "18:00"), ("10:00", "19:00")),
        ("12345", "12346", "13456", "23456"),
        subnet=40,
    ),
    Role(
        "billing",
        "billing advisor",
        0.12,
        ("billing", "account"),
        40,
        (("08:30", "17:00"),),
        ("12345",),
        export_chance=0.03,
        export_size=(5, 30),
        export_action="print",
        subnet=50,
    ),
    Role(
        "back-office",
        "back office administrator",
        0.08,
        ("account", "billing"),
        50,
        (("08:00", "16:30"),),
        ("12345",),
        export_chance=0.15,
        export_size=(20, 120),
        subnet=60,
    ),
    Role(
        "fraud",
        "fraud analyst",
        0.05,
        ("account", "billing", "porting", "contract-renewal"),
        90,
        (("08:00", "18:00"),),
        ("12345",),
        search_share=0.3,
        search_results=(5, 60),
        export_chance=0.1,
        export_size=(10, 80),
        subnet=70,
    ),
    Role(
        "porting",
        "porting specialist",
        0.05,
        ("porting", "account"),
        35,
        (("09:00", "17:30"),),
        ("12345",),
        subnet=80,
    ),
)
TEAM_LEADER = "team leader"
TEAM_LEADER_SHARE = 0.06  # of each team's head count, at least one per team


@dataclass(frozen=True)
class SimulationConfig:
    """What to generate. ``start`` is the first day (local); ``days`` calendar days follow.

    ``ids_per_view`` is the mean number of customer ids a view event carries (an agent's
    screen of a few accounts), which scales the event count without changing the volume
    of records; ``customers`` defaults to 400 per user.
    """

    users: int = 500
    days: int = 30
    seed: int = 1
    start: date = date(2026, 10, 5)
    scenarios: tuple[str, ...] = SCENARIOS
    honeytoken_ids: tuple[str, ...] = ()
    customers: int | None = None
    ids_per_view: float = 3.0
    timezone: str = "Europe/London"

    def __post_init__(self) -> None:
        if self.users < 20:
            raise ValueError("users must be at least 20 (a few teams of several people)")
        if self.days < 14:
            raise ValueError("days must be at least 14 (the scenarios need a baseline)")
        unknown = sorted(set(self.scenarios) - set(SCENARIOS) - {HONEYTOKEN})
        if unknown:
            raise ValueError(f"unknown scenario {unknown[0]!r}: one of {', '.join(SCENARIOS)}")
        if self.ids_per_view < 1:
            raise ValueError("ids_per_view must be at least 1")
        if self.customers is not None and self.customers < 10_000:
            raise ValueError("customers must be at least 10,000")
        if HONEYTOKEN in self.scenarios and not self.honeytoken_ids:
            raise ValueError("the honeytoken scenario needs honeytoken ids")


@dataclass(frozen=True)
class Staff:
    """One synthetic member of staff, as HR would describe them (``staff.csv``), plus
    what drives their traffic (personal volume, first working day)."""

    actor: str
    name: str
    team: str
    role: str
    duties: tuple[str, ...]
    work_start: str
    work_end: str
    work_days: str
    timezone: str
    leaving_on: date | None
    joined_on: date | None  # a new joiner's first day in the period, else None
    volume: float  # mean records on a working day
    address: str

    def csv_row(self) -> list[str]:
        """The row of ``staff.csv`` (columns ``STAFF_COLUMNS``)."""
        return [
            self.actor,
            self.name,
            self.team,
            self.role,
            ";".join(self.duties),
            self.leaving_on.isoformat() if self.leaving_on else "",
            self.work_start,
            self.work_end,
            self.work_days,
            self.timezone,
        ]


class Event(NamedTuple):
    """One access event: the source that sends it, its time in seconds since the epoch
    (to sort and score), and the wire-format dictionary."""

    source: str
    epoch: int
    wire: dict[str, Any]

    @property
    def at(self) -> datetime:
        """The event's time, UTC."""
        return datetime.fromtimestamp(self.epoch, UTC)


@dataclass(frozen=True)
class ScenarioLabel:
    """The truth about one injected scenario, for scoring: who, from when (the time of its
    first injected event, UTC), until when, and which customers it took."""

    scenario: str
    actor: str
    start: datetime
    end: datetime
    customer_ids: tuple[str, ...]
    event_ids: tuple[str, ...]
    records: int
    description: str

    def as_json(self) -> dict[str, Any]:
        """The label as ``labels.json`` holds it."""
        return {
            "scenario": self.scenario,
            "actor": self.actor,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "records": self.records,
            "description": self.description,
            "event_ids": list(self.event_ids),
            "customer_ids": list(self.customer_ids),
        }


@dataclass
class Organisation:
    """The generated operator: staff, time-ordered events, scenario labels."""

    config: SimulationConfig
    staff: list[Staff]
    events: list[Event]
    labels: list[ScenarioLabel]
    campaign_day: date | None = None
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def start(self) -> datetime:
        """Midnight UTC of the first day."""
        return datetime.combine(self.config.start, datetime.min.time(), UTC)

    @property
    def end(self) -> datetime:
        """Midnight UTC after the last day."""
        return self.start + timedelta(days=self.config.days)

    def staff_csv(self) -> str:
        """``staff.csv``: one row per member of staff, duties separated by ``;``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(STAFF_COLUMNS)
        for member in self.staff:
            writer.writerow(member.csv_row())
        return buffer.getvalue()

    def events_of(self, source: str | None = None) -> Iterator[dict[str, Any]]:
        """The wire-format events (of one source, or all), in time order."""
        for event in self.events:
            if source is None or event.source == source:
                yield event.wire

    def events_jsonl(self, source: str) -> str:
        """One source's events as JSON lines."""
        return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in self.events_of(source))

    def labels_json(self) -> str:
        """``labels.json``: the scenarios and the generator's settings."""
        document = {
            "seed": self.config.seed,
            "users": self.config.users,
            "days": self.config.days,
            "start": self.config.start.isoformat(),
            "campaign_day": self.campaign_day.isoformat() if self.campaign_day else None,
            "scenarios": [label.as_json() for label in self.labels],
        }
        return json.dumps(document, indent=2) + "\n"

    def write(self, directory: Path) -> list[Path]:
        """Write ``staff.csv``, ``events-<source>.jsonl`` and ``labels.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        written = [directory / "staff.csv"]
        written[0].write_text(self.staff_csv(), encoding="utf-8")
        for source in SOURCES:
            path = directory / f"events-{source}.jsonl"
            path.write_text(self.events_jsonl(source), encoding="utf-8")
            written.append(path)
        labels = directory / "labels.json"
        labels.write_text(self.labels_json(), encoding="utf-8")
        written.append(labels)
        return written


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class _Clock:
    """Local wall-clock times to UTC seconds and to RFC 3339 text with the local offset.

    The offset is looked up once per (day, hour): time zone rules change offsets only on
    the hour. An event's text is the day's prefix, its time of day and the offset.
    """

    def __init__(self, tz_name: str) -> None:
        self.tz = ZoneInfo(tz_name)
        self._hours: dict[tuple[date, int], tuple[int, str]] = {}

    def _hour(self, day: date, hour: int) -> tuple[int, str]:
        key = (day, hour)
        found = self._hours.get(key)
        if found is None:
            local = datetime(day.year, day.month, day.day, hour, tzinfo=self.tz)
            delta = local.utcoffset() or timedelta(0)
            offset = int(delta.total_seconds())
            sign = "-" if offset < 0 else "+"
            text = f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
            midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
            found = (midnight - offset, f"{day.isoformat()}T{{}}{text}")
            self._hours[key] = found
        return found

    def at(self, day: date, second_of_day: int) -> tuple[int, str]:
        """(UTC epoch seconds, RFC 3339 local text) of a second of a local day; seconds
        past midnight run on into the next day."""
        if second_of_day >= 86_400:
            day += timedelta(days=second_of_day // 86_400)
            second_of_day %= 86_400
        hour = second_of_day // 3600
        base, template = self._hour(day, hour)
        minute, second = divmod(second_of_day % 3600, 60)
        return base + second_of_day, template.format(f"{hour:02d}:{minute:02d}:{second:02d}")


_WEEKDAY_FACTOR = {1: 1.2, 2: 1.05, 3: 1.0, 4: 0.95, 5: 0.85, 6: 0.9, 7: 0.8}


class _Builder:
    """Holds the random state and the running event counters while generating."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)  # noqa: S311 - synthetic data, reproducible
        self._random = self.rng.random
        self.clock = _Clock(config.timezone)
        self.customers = config.customers or config.users * 400
        self.honeytokens = frozenset(config.honeytoken_ids)
        self.days = [config.start + timedelta(days=n) for n in range(config.days)]
        self.events: list[Event] = []
        self.sequence = dict.fromkeys(SOURCES, 0)
        self.taken: set[str] = set()  # customer ids already stolen by a scenario

    # --- staff ---------------------------------------------------------------------------

    def staff(self) -> list[Staff]:
        from faker import Faker  # only here: a test dependency, names only

        fake = Faker("en_GB")
        fake.seed_instance(self.rng.getrandbits(32))
        rng = self.rng
        count = self.config.users
        heads = {role.team: max(3, round(count * role.share)) for role in ROLES}
        heads[ROLES[0].team] += count - sum(heads.values())  # rounding: the largest team
        plan: list[tuple[Role, bool]] = []
        for role in ROLES:
            leaders = max(1, round(heads[role.team] * TEAM_LEADER_SHARE))
            plan.extend([(role, True)] * leaders)
            plan.extend([(role, False)] * (heads[role.team] - leaders))
        rng.shuffle(plan)
        members = []
        last_day = self.days[-1]
        for n, (role, leader) in enumerate(plan):
            first, last = fake.first_name(), fake.last_name()
            handle = "".join(ch for ch in f"{first}.{last}".lower() if ch.isalpha() or ch == ".")
            shift = rng.choice(role.shifts)
            volume = role.daily_records * rng.lognormvariate(0.0, 0.3)
            if leader:
                volume *= 0.35
            joined = None
            leaving = None
            luck = rng.random()
            if luck < 0.04:  # a new joiner, somewhere after the first week
                joined = self.days[rng.randrange(7, len(self.days))]
            elif luck < 0.06:  # leaving during the period, in the ordinary way
                leaving = self.days[rng.randrange(len(self.days) // 2, len(self.days))]
            elif luck < 0.07:  # leaving soon after the period
                leaving = last_day + timedelta(days=rng.randrange(3, 40))
            members.append(
                Staff(
                    actor=f"{handle}.{n:04d}@staff.operator.example",
                    name=f"{first} {last}",
                    team=role.team,
                    role=TEAM_LEADER if leader else role.name,
                    duties=role.duties,
                    work_start=shift[0],
                    work_end=shift[1],
                    work_days=rng.choice(role.work_days),
                    timezone=self.config.timezone,
                    leaving_on=leaving,
                    joined_on=joined,
                    volume=volume,
                    address=f"10.{role.subnet}.{n // 250}.{n % 250 + 1}",
                )
            )
        return members

    # --- events --------------------------------------------------------------------------

    def _next_id(self, source: str) -> str:
        self.sequence[source] += 1
        return f"{source}-{self.sequence[source]:09d}"

    def _customer(self) -> str:
        while True:
            cid = f"C{int(self._random() * self.customers):07d}"
            if cid not in self.honeytokens:
                return cid

    def _between(self, low: int, high: int) -> int:
        """A uniform integer in ``[low, high]`` (``randint`` without its overhead)."""
        return low + int(self._random() * (high - low + 1))

    def emit(
        self,
        member: Staff,
        day: date,
        second: int,
        action: str,
        record_type: str,
        customer_ids: Sequence[str] = (),
        result_count: int | None = None,
        query: str | None = None,
    ) -> Event:
        """Add one event by ``member`` at ``second`` of local ``day``."""
        source = SYSTEM_OF[record_type]
        epoch, text = self.clock.at(day, second)
        wire: dict[str, Any] = {
            "id": self._next_id(source),
            "time": text,
            "actor": member.actor,
            "action": action,
            "system": source,
            "record_type": record_type,
        }
        if customer_ids:
            wire["customer_ids"] = list(customer_ids)
        if result_count is not None:
            wire["result_count"] = result_count
        if query is not None:
            wire["query"] = query
        wire["source_address"] = member.address
        event = Event(source, epoch, wire)
        self.events.append(event)
        return event

    def _record_type(self, member: Staff) -> str:
        draw = self._random()
        if draw < 0.01:  # a customer's question outside the usual work
            return RECORD_TYPES[int(self._random() * len(RECORD_TYPES))]
        duties = member.duties
        # The first duty is the main one (60 %); the others share the rest.
        if len(duties) == 1 or draw < 0.604:
            return duties[0]
        return duties[1 + int(self._random() * (len(duties) - 1))]

    def ordinary_day(self, member: Staff, role: Role, day: date, factor: float) -> None:
        """One working day of ordinary access by ``member``."""
        rng = self.rng
        rand = self._random
        between = self._between
        customer = self._customer
        records = round(member.volume * factor * rng.lognormvariate(0.0, 0.25))
        if records <= 0:
            return
        start = _minutes(member.work_start) * 60 + int(rand() * 1200)
        end = _minutes(member.work_end) * 60 - int(rand() * 1200)
        span = end - start
        high = max(1, round(2 * self.config.ids_per_view - 1))
        searches = role.search_share
        updates = searches + 0.07
        while records > 0:
            second = start + int(rand() * span)
            record_type = self._record_type(member)
            draw = rand()
            if draw < searches:
                count = between(*role.search_results)
                query = QUERIES[int(rand() * len(QUERIES))]
                self.emit(
                    member, day, second, "search", record_type, result_count=count, query=query
                )
            elif draw < updates:
                count = 1
                self.emit(member, day, second, "update", record_type, [customer()])
            else:
                count = min(records, between(1, high))
                ids = [customer() for _ in range(count)]
                self.emit(member, day, second, "view", record_type, ids)
            records -= count
        # Rarely an overtime evening: a little more work 30 to 110 minutes after hours.
        if rand() < 0.03:
            for _ in range(between(1, 4)):
                second = end + 1200 + between(600, 5400)
                ids = [customer() for _ in range(between(1, 3))]
                self.emit(member, day, second, "view", self._record_type(member), ids)
        if role.export_chance and rand() < role.export_chance:
            ids = [customer() for _ in range(between(*role.export_size))]
            second = start + int(rand() * span)
            action = role.export_action
            self.emit(member, day, second, action, self._record_type(member), ids)

    def stolen(self, count: int) -> list[str]:
        """``count`` customer ids no scenario has taken yet (and no honeytoken)."""
        if len(self.taken) + count > self.customers * 3 // 4:
            raise ValueError(
                f"the scenarios would take more than 3/4 of the {self.customers:,} "
                "customers: give a larger customer base"
            )
        result: list[str] = []
        while len(result) < count:
            cid = self._customer()
            if cid not in self.taken:
                self.taken.add(cid)
                result.append(cid)
        return result


def works_on(member: Staff, day: date) -> bool:
    """Whether ``day`` is one of ``member``'s working days while employed."""
    if str(day.isoweekday()) not in member.work_days:
        return False
    if member.joined_on is not None and day < member.joined_on:
        return False
    return not (member.leaving_on is not None and day >= member.leaving_on)


def generate(config: SimulationConfig) -> Organisation:
    """Build the operator described by ``config`` (deterministic for a given config)."""
    b = _Builder(config)
    rng = b.rng
    staff = b.staff()
    role_of = {r.team: r for r in ROLES}
    n_days = len(b.days)

    # Scenario actors: established people (no joiner, no leaver) of suitable teams.
    wanted = [s for s in config.scenarios if s != HONEYTOKEN]
    if config.honeytoken_ids and HONEYTOKEN not in wanted:
        wanted.append(HONEYTOKEN)
    teams_for = {
        "slow_theft": ("renewals",),
        "departure_burst": ("call-centre", "renewals", "retail-stores"),
        "after_hours_export": ("billing", "back-office", "call-centre"),
        HONEYTOKEN: ("call-centre", "retail-stores"),
    }
    chosen: dict[str, int] = {}
    used: set[int] = set()
    for scenario in wanted:
        candidates = [
            i
            for i, s in enumerate(staff)
            if s.team in teams_for[scenario]
            and s.role != TEAM_LEADER
            and s.joined_on is None
            and s.leaving_on is None
            and s.work_days == "12345"
            and i not in used
        ]
        if not candidates:
            raise ValueError(
                f"too few established staff in {', '.join(teams_for[scenario])} for the "
                f"{scenario} scenario: generate more users"
            )
        pick = rng.choice(candidates)
        chosen[scenario] = pick
        used.add(pick)

    # Scenario timing: a weekday in the last 40 % of the period, after a baseline.
    def weekdays(first: int, last: int) -> list[int]:
        return [i for i in range(first, last) if b.days[i].isoweekday() <= 5]

    late = weekdays(max(7, int(n_days * 0.6)), n_days - 1)
    plans = {scenario: rng.choice(late) for scenario in wanted}
    if "slow_theft" in plans:
        # Slow theft goes on for weeks: it starts between 40 % and 60 % of the period.
        plans["slow_theft"] = rng.choice(weekdays(max(7, int(n_days * 0.4)), int(n_days * 0.6)))
    if "departure_burst" in chosen:
        # HR knows the leaving date; the burst takes the last three working days before it.
        leave_index = min(n_days - 1, plans["departure_burst"] + 5)
        i = chosen["departure_burst"]
        staff[i] = replace(staff[i], leaving_on=b.days[leave_index])
        burst_days = [d for d in b.days[:leave_index] if d.isoweekday() <= 5][-3:]
        plans["departure_burst"] = b.days.index(burst_days[0])
    scenario_actors = {staff[i].actor for i in chosen.values()}

    # Ordinary traffic, day by day.
    holidays: dict[int, set[date]] = {}
    for i, member in enumerate(staff):
        off = {d for d in b.days if rng.random() < 0.04}
        if rng.random() < 0.3:
            first = rng.randrange(n_days)
            off.update(b.days[first : first + 7])
        if member.actor in scenario_actors:
            off = set()
        holidays[i] = off
    campaign = b.days[
        rng.choice([i for i in range(n_days // 3, n_days) if b.days[i].isoweekday() <= 5])
    ]
    busy = {d for d in b.days if rng.random() < 0.06}
    for day in b.days:
        weekday = _WEEKDAY_FACTOR[day.isoweekday()]
        day_factor = weekday * (1.6 if day in busy else 1.0)
        for i, member in enumerate(staff):
            if not works_on(member, day) or day in holidays[i]:
                continue
            factor = day_factor
            if member.team == "renewals" and day == campaign:
                factor *= 2.5
            if member.leaving_on is not None and (member.leaving_on - day).days <= 3:
                factor *= 0.6  # handing over
            b.ordinary_day(member, role_of[member.team], day, factor)

    labels: list[ScenarioLabel] = []
    for scenario in wanted:
        member = staff[chosen[scenario]]
        first_index = plans[scenario]
        before = len(b.events)
        if scenario == "slow_theft":
            days = [d for d in b.days[first_index:] if works_on(member, d)]
            for day in days:
                extra = rng.randint(200, 400)
                span_start = _minutes(member.work_start) * 60 + 1800
                span = _minutes(member.work_end) * 60 - 1800 - span_start
                while extra > 0:
                    take = min(extra, rng.randint(5, 25))
                    second = span_start + rng.randrange(span)
                    b.emit(member, day, second, "view", "contract-renewal", b.stolen(take))
                    extra -= take
            description = "a renewals agent opens 200-400 extra contract-renewal records a day"
        elif scenario == "departure_burst":
            days = b.days[first_index : b.days.index(member.leaving_on)]  # type: ignore[arg-type]
            days = [d for d in days if works_on(member, d)]
            for day in days:
                for _ in range(rng.randint(2, 4)):
                    second = _minutes(member.work_start) * 60 + rng.randrange(3600, 6 * 3600)
                    b.emit(
                        member,
                        day,
                        second,
                        "export",
                        rng.choice(("contract-renewal", "account")),
                        b.stolen(rng.randint(400, 1200)),
                    )
            description = "a departing user exports thousands of records in their last days"
        elif scenario == "after_hours_export":
            day = b.days[first_index]
            second = 22 * 3600 + rng.randrange(0, 5400)
            for k in range(rng.randint(1, 3)):
                b.emit(
                    member,
                    day,
                    second + k * rng.randrange(60, 600),
                    "export",
                    rng.choice(member.duties),
                    b.stolen(rng.randint(300, 800)),
                )
            description = "an export of hundreds of records late in the evening"
        else:
            day = b.days[first_index]
            second = _minutes(member.work_start) * 60 + rng.randrange(3600, 5 * 3600)
            token = rng.choice(sorted(b.honeytokens))
            b.emit(member, day, second, "view", "account", [token])
            description = "a user opens a honeytoken customer's account"
        injected = b.events[before:]
        ids = [cid for e in injected for cid in e.wire.get("customer_ids", ())]
        labels.append(
            ScenarioLabel(
                scenario=scenario,
                actor=member.actor,
                start=min(e.at for e in injected),
                end=max(e.at for e in injected),
                customer_ids=tuple(sorted(set(ids))),
                event_ids=tuple(e.wire["id"] for e in injected),
                records=len(ids),
                description=description,
            )
        )

    b.events.sort(key=lambda e: (e.epoch, e.source, e.wire["id"]))
    notes = {
        "events": len(b.events),
        "records": sum(
            len(e.wire.get("customer_ids", ())) + e.wire.get("result_count", 0) for e in b.events
        ),
        "joiners": sum(1 for s in staff if s.joined_on is not None),
        "leavers": sum(1 for s in staff if s.leaving_on is not None),
    }
    return Organisation(config, staff, b.events, labels, campaign, notes)


# --- scoring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertSeen:
    """An alert as the evaluation sees it: which detector, on whom, and when it was first
    raised (the simulated time of the batch that raised it)."""

    detector: str
    actor: str | None
    first_seen_at: datetime
    severity: str = "medium"


@dataclass(frozen=True)
class ScenarioResult:
    """Whether a scenario was caught: its first alert on the actor at or after its start,
    the delay from the start, and every detector that fired on it."""

    label: ScenarioLabel
    detected: bool
    delay: timedelta | None
    detectors: tuple[str, ...]
    first_detector: str | None


@dataclass(frozen=True)
class Evaluation:
    """Detection of each scenario and the false alerts (alerts on actors with no
    scenario, or on a scenario's actor before it started), per detector."""

    scenarios: list[ScenarioResult]
    false_alerts: list[AlertSeen]
    users: int
    weeks: float

    @property
    def false_per_100_users_week(self) -> float:
        """False alerts per 100 users per week (issue 7 §5: goal under 1)."""
        return len(self.false_alerts) / (self.users / 100) / self.weeks

    def false_by_detector(self) -> dict[str, int]:
        """False alerts per detector, most first."""
        counts: dict[str, int] = {}
        for alert in self.false_alerts:
            counts[alert.detector] = counts.get(alert.detector, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def evaluate(org: Organisation, alerts: Sequence[AlertSeen]) -> Evaluation:
    """Score ``alerts`` against the organisation's labels."""
    by_actor: dict[str, ScenarioLabel] = {label.actor: label for label in org.labels}
    results = []
    for label in org.labels:
        hits = sorted(
            (a for a in alerts if a.actor == label.actor and a.first_seen_at >= label.start),
            key=lambda a: a.first_seen_at,
        )
        results.append(
            ScenarioResult(
                label=label,
                detected=bool(hits),
                delay=hits[0].first_seen_at - label.start if hits else None,
                detectors=tuple(sorted({a.detector for a in hits})),
                first_detector=hits[0].detector if hits else None,
            )
        )
    false = [
        a for a in alerts if a.actor not in by_actor or a.first_seen_at < by_actor[a.actor].start
    ]
    return Evaluation(results, false, org.config.users, org.config.days / 7)
