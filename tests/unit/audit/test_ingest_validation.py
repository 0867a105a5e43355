"""The wire format of one access event, reasons that never quote a value, the query
digest's normal form, and the per-source token bucket (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from faker import Faker
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from spillguard.audit.ingest import (
    AccessEventIn,
    TokenBucket,
    describe_errors,
    item_digest,
    normalise_query,
)

fake = Faker("en_GB")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def event(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": fake.uuid4(),
        "time": "2026-03-02T09:15:00+01:00",
        "actor": fake.user_name(),
        "action": "view",
        "system": "crm",
        "customer_ids": [str(fake.random_int(10_000, 99_999))],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def reason(item: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as info:
        AccessEventIn.model_validate(item, context={"now": NOW})
    return describe_errors(info.value)


def test_a_valid_event_keeps_its_offset_and_counts_its_customers() -> None:
    parsed = AccessEventIn.model_validate(
        event(customer_ids=["A1", 2, "A3"], source_address="2001:db8::1"), context={"now": NOW}
    )
    assert parsed.time == datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
    assert parsed.customer_ids == ["A1", "2", "A3"] and parsed.records == 3
    assert parsed.source_address == "2001:db8::1"


def test_records_fall_back_to_the_result_count() -> None:
    search = event(action="search", customer_ids=None, query="renewal due", result_count=412)
    assert AccessEventIn.model_validate(search, context={"now": NOW}).records == 412
    bare = event(customer_ids=None)
    assert AccessEventIn.model_validate(bare, context={"now": NOW}).records == 0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"time": "2026-03-02T09:15:00"}, "time: has no UTC offset"),
        ({"time": "2026-03-02T10:06:00Z"}, "time: more than 5 minutes in the future"),
        ({"time": "yesterday"}, "time: not an RFC 3339 date-time"),
        ({"time": "2026-02-30T10:00:00Z"}, "time: not a valid date-time"),
        ({"time": 1772445300}, "time: must be an RFC 3339 date-time string"),
        ({"actor": None}, "actor: missing"),
        ({"actor": "  "}, "actor: String should have at least 1 character"),
        ({"action": "delete"}, "action: Input should be"),
        ({"result_count": -1}, "result_count: Input should be greater than or equal to 0"),
        ({"source_address": "not-an-ip"}, "source_address: not an IP address"),
        ({"customer_id": "12345"}, "unknown field 'customer_id'"),
        ({"id": "x" * 201}, "id: String should have at most 200 characters"),
    ],
)
def test_bad_fields_are_named_with_a_reason(overrides: dict[str, object], expected: str) -> None:
    assert expected in reason(event(**overrides))


def test_a_time_within_the_tolerance_is_accepted_and_old_times_are_fine() -> None:
    near = (NOW + timedelta(minutes=4)).isoformat()
    assert AccessEventIn.model_validate(event(time=near), context={"now": NOW})
    old = "2019-01-01T00:00:00Z"
    assert AccessEventIn.model_validate(event(time=old), context={"now": NOW})


def test_reasons_never_quote_the_value() -> None:
    secret_query = fake.street_address()
    customer = fake.phone_number()
    text = reason(
        event(
            query=["not", secret_query],
            customer_ids=[customer, {"x": customer}],
            time=customer,
            actor=[customer],
        )
    )
    assert secret_query not in text and customer not in text
    assert "query" in text and "customer_ids" in text and "actor" in text


@given(st.dictionaries(st.sampled_from(sorted(event())), st.text(max_size=30)))
def test_no_item_crashes_validation_or_leaks_into_its_reason(item: dict[str, str]) -> None:
    try:
        AccessEventIn.model_validate(item, context={"now": NOW})
    except ValidationError as exc:
        text = describe_errors(exc)
        for value in item.values():
            if len(value) > 8:  # short strings can occur in the fixed wording by chance
                assert value not in text


def test_query_normal_form_and_item_digest() -> None:
    assert normalise_query("  Renewal   DUE\tMarch ") == "renewal due march"
    assert item_digest({"b": 1, "a": 2}) == item_digest({"a": 2, "b": 1})
    assert item_digest("line") != item_digest("line ")
    assert len(item_digest(b"\xff")) == 64


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=100, burst=500, clock=clock)
    assert bucket.try_take(500) == 0
    assert bucket.try_take(50) == pytest.approx(0.5)
    clock.now = 0.5
    assert bucket.try_take(50) == 0
    assert bucket.try_take(1) > 0


def test_a_batch_above_the_burst_waits_for_a_full_bucket_then_leaves_it_in_debt() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=100, burst=500, clock=clock)
    assert bucket.try_take(2_000) == 0  # full bucket: let through, 1,500 in debt
    assert bucket.try_take(1) == pytest.approx(15.01)


def test_take_blocking_sleeps_until_the_tokens_are_there() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=10, clock=clock)
    bucket.try_take(10)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    assert bucket.take_blocking(5, sleep=sleep) == pytest.approx(0.5)
    assert slept == [pytest.approx(0.5)]
