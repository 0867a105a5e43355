"""The insider-risk detectors as pure functions: each fires on the behaviour it names,
stays quiet on ordinary days, explains itself, and never crashes or lowers its score as
the observed figure rises (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from spillguard.audit.detect import (
    DayCounts,
    Detector,
    StaffProfile,
    Thresholds,
    band_of,
    day_bounds,
    detect_after_hours,
    detect_departing,
    detect_mass_export,
    detect_off_duty,
    detect_peer_group,
    detect_volume,
    evaluate,
    is_after_hours,
    is_off_duty,
    local_day,
    profile_from,
    score_of,
    volume_band,
    worth_evaluating,
)
from spillguard.core.settings import Settings

T = Thresholds()
TODAY = date(2026, 11, 17)  # a Tuesday


def history(values: list[int], **fields: int) -> list[DayCounts]:
    """One active day per value, ending the day before TODAY."""
    return [
        DayCounts(TODAY - timedelta(days=len(values) - i), events=5, records=v, **fields)
        for i, v in enumerate(values)
    ]


def profile(**fields: object) -> StaffProfile:
    base: dict[str, object] = {"known": True, "team": "renewals", "duties": ["contract-renewal"]}
    base.update(fields)
    return profile_from("a.agent@example.co.uk", thresholds=T, **base)  # type: ignore[arg-type]


NORMAL = [38, 41, 40, 45, 36, 39, 42, 44, 37, 40, 43, 39, 41, 38, 40, 42, 36, 44, 40, 39]


def test_thresholds_follow_the_settings() -> None:
    t = Thresholds.from_settings(
        Settings(insider_volume_mad_k=3.5, insider_departing_days=7)  # type: ignore[call-arg]
    )
    assert t.volume_mad_k == 3.5 and t.departing_days == 7
    assert Thresholds.from_settings(Settings()) == Thresholds()


def test_volume_fires_on_forty_a_day_becoming_four_thousand() -> None:
    finding = detect_volume(profile(), DayCounts(TODAY, 90, 4000), history(NORMAL), T)
    assert finding is not None and finding.detector is Detector.VOLUME
    assert finding.evidence["baseline"] == 40 and finding.evidence["observed"] == 4000
    assert finding.evidence["threshold"] == 200  # the absolute floor wins over 40 + 8 x 10
    assert finding.severity == "high" and finding.score == 100
    assert "4,000" in finding.explanation and "baseline is 40" in finding.explanation


def test_volume_is_quiet_on_an_ordinary_day_and_without_history() -> None:
    assert detect_volume(profile(), DayCounts(TODAY, 5, 60), history(NORMAL), T) is None
    # a busy but ordinary day for a heavy user
    heavy = [1000 + 37 * (i % 7) for i in range(20)]
    assert detect_volume(profile(), DayCounts(TODAY, 5, 1300), history(heavy), T) is None
    # too little history: no baseline yet
    assert detect_volume(profile(), DayCounts(TODAY, 5, 4000), history([40, 40]), T) is None


def test_slow_theft_of_a_few_hundred_extra_records_is_caught_the_first_day() -> None:
    finding = detect_volume(profile(), DayCounts(TODAY, 60, 40 + 300), history(NORMAL), T)
    assert finding is not None and finding.severity == "medium" and 50 < finding.score < 66.7


def test_the_baseline_uses_the_last_active_days_within_the_lookback() -> None:
    old = [DayCounts(TODAY - timedelta(days=200), 5, 5000)]
    band = volume_band(old + history(NORMAL), TODAY, T)
    assert band is not None and band.median == 40 and band.days == 20
    assert volume_band(old, TODAY, T) is None


def test_peer_group_fires_on_a_member_far_outside_the_team() -> None:
    peers = [40.0, 38, 45, 41, 39, 44]
    finding = detect_peer_group(profile(), DayCounts(TODAY, 40, 900), peers, T)
    assert finding is not None and finding.evidence["team"] == "renewals"
    assert finding.evidence["peers"] == 6 and finding.evidence["threshold"] == 300
    assert detect_peer_group(profile(), DayCounts(TODAY, 40, 120), peers, T) is None
    assert detect_peer_group(profile(), DayCounts(TODAY, 40, 900), peers[:3], T) is None
    assert detect_peer_group(profile(team=None), DayCounts(TODAY, 40, 900), peers, T) is None


def test_after_hours_uses_hr_hours_and_the_defaults_for_unknown_actors() -> None:
    p = profile(work_start="09:00", work_end="17:30", work_days="12345", timezone="Europe/London")
    assert is_after_hours(p, datetime(2026, 11, 17, 2, 0, tzinfo=UTC))
    assert not is_after_hours(p, datetime(2026, 11, 17, 10, 0, tzinfo=UTC))
    assert is_after_hours(p, datetime(2026, 11, 17, 17, 30, tzinfo=UTC))
    assert is_after_hours(p, datetime(2026, 11, 21, 11, 0, tzinfo=UTC))  # Saturday
    summer = datetime(2026, 7, 14, 8, 30, tzinfo=UTC)  # 09:30 BST
    assert not is_after_hours(p, summer)
    night = profile(work_start="22:00", work_end="06:00", work_days="1234567")
    assert not is_after_hours(night, datetime(2026, 11, 17, 2, 0, tzinfo=UTC))
    assert is_after_hours(night, datetime(2026, 11, 17, 12, 0, tzinfo=UTC))
    unknown = profile_from("someone@example.co.uk", thresholds=T)
    assert not unknown.known and unknown.work_days == frozenset({1, 2, 3, 4, 5})
    assert is_after_hours(unknown, datetime(2026, 11, 17, 20, 0, tzinfo=UTC))
    bad = profile(timezone="Mars/Olympus", work_start="nonsense", work_days="")
    assert str(bad.tz) == "Europe/London" and bad.work_start.hour == 7


def test_after_hours_export_at_night_fires_and_a_late_evening_does_not() -> None:
    quiet = history(NORMAL, after_hours=2)
    finding = detect_after_hours(profile(), DayCounts(TODAY, 3, 2500, 2500, 2500), quiet, T)
    assert finding is not None and finding.evidence["observed"] == 2500
    assert finding.evidence["threshold"] == 100 and "working hours" in finding.explanation
    assert detect_after_hours(profile(), DayCounts(TODAY, 3, 60, 0, 25), quiet, T) is None
    # someone who always works late is judged against their own habit
    late = history(NORMAL, after_hours=300)
    assert detect_after_hours(profile(), DayCounts(TODAY, 3, 400, 0, 320), late, T) is None


def test_mass_export_by_one_event_or_by_the_day() -> None:
    by_event = detect_mass_export(profile(), DayCounts(TODAY, 1, 1500, 1500), [], 1500, T)
    assert by_event is not None and by_event.evidence["largest_event"] == 1500
    by_day = detect_mass_export(profile(), DayCounts(TODAY, 40, 2100, 2100), [], 100, T)
    assert by_day is not None and by_day.evidence["threshold"] == 2000
    assert detect_mass_export(profile(), DayCounts(TODAY, 40, 900, 900), [], 100, T) is None
    # a reporting clerk who exports 3,000 a day is judged against that
    clerk = history(NORMAL, exported=3000)
    assert detect_mass_export(profile(), DayCounts(TODAY, 9, 3500, 3500), clerk, 900, T) is None


def test_off_duty_records_need_duties_from_hr() -> None:
    p = profile(duties=["Billing", "complaints"])
    assert is_off_duty(p, "contract-renewal") and not is_off_duty(p, "billing")
    assert not is_off_duty(p, None)
    assert not is_off_duty(profile_from("x@example.co.uk", thresholds=T), "contract-renewal")
    assert not is_off_duty(profile(duties=[]), "contract-renewal")
    finding = detect_off_duty(p, DayCounts(TODAY, 30, 400, off_duty=380), history(NORMAL), T)
    assert finding is not None and finding.evidence["duties"] == ["billing", "complaints"]
    assert detect_off_duty(p, DayCounts(TODAY, 30, 60, off_duty=3), history(NORMAL), T) is None


def test_departing_user_with_unusual_volume_or_any_export() -> None:
    leaving = profile(leaving_on=TODAY + timedelta(days=10))
    busy = detect_departing(leaving, DayCounts(TODAY, 30, 160), history(NORMAL), T)
    assert busy is not None and busy.severity == "high"
    assert busy.evidence["days_to_leaving"] == 10 and busy.evidence["threshold"] == 100
    export = detect_departing(leaving, DayCounts(TODAY, 2, 60, 60), history(NORMAL), T)
    assert export is not None
    assert detect_departing(leaving, DayCounts(TODAY, 30, 45), history(NORMAL), T) is None
    far = profile(leaving_on=TODAY + timedelta(days=90))
    assert detect_departing(far, DayCounts(TODAY, 30, 500, 500), history(NORMAL), T) is None
    gone = profile(leaving_on=TODAY - timedelta(days=3))
    after = detect_departing(gone, DayCounts(TODAY, 30, 160), history(NORMAL), T)
    assert after is not None and after.severity == "critical" and "left on" in after.title


def test_evaluate_and_the_prefilter_agree() -> None:
    p = profile(leaving_on=TODAY + timedelta(days=5))
    today = DayCounts(TODAY, 80, 4000, 3000, 3000, 0)
    found = {f.detector for f in evaluate(p, today, history(NORMAL), [40.0] * 6, 3000, T)}
    assert found == {
        Detector.VOLUME,
        Detector.PEER_GROUP,
        Detector.AFTER_HOURS,
        Detector.MASS_EXPORT,
        Detector.DEPARTING,
    }
    assert worth_evaluating(p, today, 3000, T)
    assert not worth_evaluating(profile(), DayCounts(TODAY, 10, 45), 0, T)


def test_local_day_and_its_bounds() -> None:
    p = profile(timezone="America/New_York")
    at = datetime(2026, 11, 18, 3, 0, tzinfo=UTC)  # 22:00 on the 17th in New York
    assert local_day(p, at) == TODAY
    start, end = day_bounds(p, TODAY)
    assert start <= at < end and end - start == timedelta(hours=24)


def test_score_is_fifty_at_the_threshold_and_capped() -> None:
    assert score_of(200, 40, 200) == 50
    assert score_of(40, 40, 200) == 0
    assert score_of(200 + 3 * 160, 40, 200) == 100 and score_of(10**9, 40, 200) == 100
    assert band_of([], T.volume_mad_k, T).threshold == T.spread_floor * T.volume_mad_k


counts = st.integers(min_value=0, max_value=2**31 - 1)
days = st.builds(
    DayCounts,
    day=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
    events=counts,
    records=counts,
    exported=counts,
    after_hours=counts,
    off_duty=counts,
)
profiles = st.builds(
    profile_from,
    actor=st.text(min_size=1, max_size=40),
    thresholds=st.just(T),
    known=st.booleans(),
    team=st.none() | st.text(max_size=10),
    duties=st.lists(st.text(max_size=12), max_size=4),
    timezone=st.none() | st.sampled_from(["Europe/London", "Asia/Kolkata", "UTC", "Bad/Zone"]),
    work_start=st.none() | st.text(max_size=6),
    work_end=st.none() | st.sampled_from(["17:00", "06:00", "25:99"]),
    work_days=st.none() | st.text(max_size=8),
    leaving_on=st.none() | st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
)


@settings(max_examples=300, deadline=None)
@given(
    p=profiles,
    today=days,
    past=st.lists(days, max_size=30),
    peers=st.lists(st.floats(min_value=0, max_value=1e9), max_size=12),
    largest=counts,
)
def test_no_input_crashes_the_detectors(
    p: StaffProfile, today: DayCounts, past: list[DayCounts], peers: list[float], largest: int
) -> None:
    for finding in evaluate(p, today, past, peers, largest, T):
        assert 0 <= finding.score <= 100
        assert finding.severity in {"low", "medium", "high", "critical"}
        assert finding.explanation and finding.title
        assert "threshold" in finding.evidence
    worth_evaluating(p, today, largest, T)


@settings(max_examples=200, deadline=None)
@given(
    base=st.lists(st.integers(0, 5000), min_size=5, max_size=25),
    low=st.integers(0, 10**7),
    extra=st.integers(0, 10**7),
)
def test_score_never_falls_as_volume_rises(base: list[int], low: int, extra: int) -> None:
    past = history(base, after_hours=0, exported=0, off_duty=0)
    p = profile(leaving_on=TODAY + timedelta(days=3))
    high = low + extra

    def scores(n: int) -> dict[Detector, float]:
        today = DayCounts(TODAY, 10, n, n, n, n)
        found = evaluate(p, today, past, [float(b) for b in base], n, T)
        return {f.detector: f.score for f in found}

    before, after = scores(low), scores(high)
    for detector, score in before.items():
        assert detector in after and after[detector] >= score
