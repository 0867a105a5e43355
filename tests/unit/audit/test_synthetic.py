"""The synthetic operator of the insider-risk evaluation (audit.synthetic): the same seed
gives the same files, the labels say exactly what was injected, every event is in the
ingestion wire format, and the ordinary traffic looks like the roles it claims."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from spillguard.audit.ingest import AccessEventIn
from spillguard.audit.synthetic import (
    HONEYTOKEN,
    SCENARIOS,
    STAFF_COLUMNS,
    AlertSeen,
    Organisation,
    SimulationConfig,
    evaluate,
    generate,
    works_on,
)

HONEYTOKENS = ("C9900001", "C9900002")
START = date(2026, 10, 5)  # a Monday; the clocks go back on 25 October


@cache
def org(seed: int = 3) -> Organisation:
    return generate(
        SimulationConfig(users=120, days=28, seed=seed, start=START, honeytoken_ids=HONEYTOKENS)
    )


def test_the_same_config_gives_the_same_files_and_another_seed_others(tmp_path: Path) -> None:
    config = SimulationConfig(users=60, days=21, seed=11, start=START)
    first = generate(config).write(tmp_path / "a")
    second = generate(config).write(tmp_path / "b")
    assert [p.name for p in first] == [
        "staff.csv",
        "events-crm.jsonl",
        "events-billing.jsonl",
        "labels.json",
    ]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    other = generate(SimulationConfig(users=60, days=21, seed=12, start=START))
    assert other.staff_csv() != generate(config).staff_csv()
    assert other.events_jsonl("crm") != first[1].read_text()


def test_labels_name_exactly_the_injected_events() -> None:
    o = org()
    assert [label.scenario for label in o.labels] == [*SCENARIOS, HONEYTOKEN]
    by_id = {e.wire["id"]: e for e in o.events}
    taken: set[str] = set()
    for label in o.labels:
        events = [by_id[i] for i in label.event_ids]
        assert events, label.scenario
        assert {e.wire["actor"] for e in events} == {label.actor}
        ids = [c for e in events for c in e.wire["customer_ids"]]
        assert label.records == len(ids)
        assert set(label.customer_ids) == set(ids)
        assert label.start == min(e.at for e in events)
        assert label.end == max(e.at for e in events)
        # Each scenario took customers no other took.
        assert not taken & set(label.customer_ids), label.scenario
        taken |= set(label.customer_ids)
    actors = [label.actor for label in o.labels]
    assert len(set(actors)) == len(actors)
    document = json.loads(o.labels_json())
    assert [s["actor"] for s in document["scenarios"]] == actors
    assert document["scenarios"][0]["customer_ids"] == list(o.labels[0].customer_ids)


def test_honeytokens_appear_only_in_the_honeytoken_access() -> None:
    o = org()
    (label,) = [x for x in o.labels if x.scenario == HONEYTOKEN]
    touching = [e for e in o.events if set(e.wire.get("customer_ids", ())) & set(HONEYTOKENS)]
    assert [e.wire["id"] for e in touching] == list(label.event_ids)
    assert len(label.customer_ids) == 1 and label.customer_ids[0] in HONEYTOKENS


def test_scenarios_look_like_what_they_model() -> None:
    o = org()
    staff = {s.actor: s for s in o.staff}
    labels = {x.scenario: x for x in o.labels}
    by_id = {e.wire["id"]: e for e in o.events}
    tz = ZoneInfo("Europe/London")

    theft = labels["slow_theft"]
    thief = staff[theft.actor]
    assert thief.role == "renewals agent" and thief.leaving_on is None
    assert theft.start >= o.start + timedelta(days=7)  # after a baseline
    days = {by_id[i].at.astimezone(tz).date() for i in theft.event_ids}
    assert len(days) >= 5  # every working day, for weeks
    for i in theft.event_ids:
        event = by_id[i].wire
        local = datetime.fromisoformat(event["time"])
        assert event["record_type"] == "contract-renewal" and event["action"] == "view"
        assert thief.work_start <= f"{local:%H:%M}" < thief.work_end  # quietly, in hours

    burst = labels["departure_burst"]
    leaver = staff[burst.actor]
    assert leaver.leaving_on is not None
    burst_days = {by_id[i].at.astimezone(tz).date() for i in burst.event_ids}
    assert max(burst_days) < leaver.leaving_on
    assert (leaver.leaving_on - min(burst_days)).days <= 7
    assert burst.records >= 1000
    assert {by_id[i].wire["action"] for i in burst.event_ids} == {"export"}

    night = labels["after_hours_export"]
    for i in night.event_ids:
        local = datetime.fromisoformat(by_id[i].wire["time"])
        assert f"{local:%H:%M}" >= "22:00" or f"{local:%H:%M}" < "06:00"
        assert by_id[i].wire["action"] == "export"
    assert night.records >= 300


def test_every_event_is_in_the_wire_format_and_in_time_order() -> None:
    o = org()
    now = o.end + timedelta(days=1)
    for event in o.events:
        parsed = AccessEventIn.model_validate(event.wire, context={"now": now})
        assert parsed.time.astimezone(UTC) == event.at
        assert event.source == parsed.system
    times = [e.epoch for e in o.events]
    assert times == sorted(times)
    assert len({(e.source, e.wire["id"]) for e in o.events}) == len(o.events)


def test_local_times_carry_the_offset_of_the_day() -> None:
    o = org()
    offsets = {e.wire["time"][10:11] + e.wire["time"][-6:] for e in o.events}
    assert offsets == {"T+01:00", "T+00:00"}  # BST, then GMT after 25 October
    for event in o.events[:: max(1, len(o.events) // 500)]:
        local = datetime.fromisoformat(event.wire["time"])
        assert local.utcoffset() == local.replace(tzinfo=ZoneInfo("Europe/London")).utcoffset()


def test_staff_csv_has_the_import_columns() -> None:
    o = org()
    rows = list(csv.DictReader(io.StringIO(o.staff_csv())))
    assert tuple(rows[0]) == STAFF_COLUMNS
    assert len(rows) == 120
    assert len({r["actor"] for r in rows}) == 120
    teams = {r["team"] for r in rows}
    assert teams == {
        "call-centre",
        "renewals",
        "retail-stores",
        "billing",
        "back-office",
        "fraud",
        "porting",
    }
    for row in rows:
        assert row["duties"] and all(
            d in {"account", "billing", "contract-renewal", "porting"}
            for d in row["duties"].split(";")
        )
        assert row["timezone"] == "Europe/London"
        assert set(row["work_days"]) <= set("1234567")
    assert any(r["leaving_on"] for r in rows)


def test_nobody_works_before_joining_or_after_leaving_and_roles_differ() -> None:
    o = org()
    staff = {s.actor: s for s in o.staff}
    tz = ZoneInfo("Europe/London")
    per_day: dict[tuple[str, date], int] = defaultdict(int)
    for event in o.events:
        member = staff[event.wire["actor"]]
        day = event.at.astimezone(tz).date()
        if member.joined_on is not None:
            assert day >= member.joined_on
        if member.leaving_on is not None:
            assert day < member.leaving_on
        per_day[(member.actor, day)] += len(event.wire.get("customer_ids", ())) + event.wire.get(
            "result_count", 0
        )
    scenario_actors = {x.actor for x in o.labels}
    by_role: dict[str, list[int]] = defaultdict(list)
    for (actor, day), records in per_day.items():
        if actor not in scenario_actors:
            by_role[staff[actor].role].append(records)
    medians = {role: statistics.median(v) for role, v in by_role.items()}
    assert medians["fraud analyst"] > medians["customer service advisor"]
    assert medians["customer service advisor"] > medians["store advisor"]
    assert medians["store advisor"] > medians["team leader"]
    # Everyone, thieves included, is active only on their own working days.
    for actor, day in per_day:
        assert works_on(staff[actor], day), (actor, day)


def test_without_scenarios_nothing_is_labelled_and_exports_stay_small() -> None:
    o = generate(SimulationConfig(users=60, days=21, seed=5, start=START, scenarios=()))
    assert o.labels == []
    exports = [
        len(e.wire["customer_ids"]) for e in o.events if e.wire["action"] in ("export", "print")
    ]
    assert exports and max(exports) <= 120


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"users": 5}, "users must be at least 20"),
        ({"days": 6}, "days must be at least 14"),
        ({"scenarios": ("heist",)}, "unknown scenario 'heist'"),
        ({"scenarios": (HONEYTOKEN,)}, "the honeytoken scenario needs honeytoken ids"),
        ({"ids_per_view": 0.5}, "ids_per_view must be at least 1"),
    ],
)
def test_bad_configs_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulationConfig(**change)  # type: ignore[arg-type]


def test_a_customer_base_too_small_for_the_scenarios_is_refused() -> None:
    with pytest.raises(ValueError, match="larger customer base"):
        generate(SimulationConfig(users=60, days=60, seed=1, start=START, customers=10_000))


def test_scoring_counts_detection_delay_and_false_alerts() -> None:
    o = org()
    labels = {x.scenario: x for x in o.labels}
    theft, night = labels["slow_theft"], labels["after_hours_export"]
    bystander = next(s.actor for s in o.staff if s.actor not in {x.actor for x in o.labels})
    alerts = [
        AlertSeen("volume", theft.actor, theft.start - timedelta(days=3)),  # before: false
        AlertSeen("volume", theft.actor, theft.start + timedelta(hours=5)),
        AlertSeen("peer-group", theft.actor, theft.start + timedelta(hours=9)),
        AlertSeen("after-hours", night.actor, night.start + timedelta(days=2)),
        AlertSeen("departing", bystander, o.start + timedelta(days=9)),
        AlertSeen("volume", bystander, o.start + timedelta(days=10)),
    ]
    ev = evaluate(o, alerts)
    results = {r.label.scenario: r for r in ev.scenarios}
    assert results["slow_theft"].detected and results["slow_theft"].delay == timedelta(hours=5)
    assert results["slow_theft"].detectors == ("peer-group", "volume")
    assert results["slow_theft"].first_detector == "volume"
    assert results["after_hours_export"].delay == timedelta(days=2)
    assert not results["departure_burst"].detected and results["departure_burst"].delay is None
    assert len(ev.false_alerts) == 3
    assert ev.false_by_detector() == {"volume": 2, "departing": 1}
    # 3 false alerts, 120 users, 4 weeks: 3 / 1.2 / 4.
    assert ev.false_per_100_users_week == pytest.approx(0.625)
