"""Pure rules behind the audit console, without a database: the activity chart's line is
the volume detector's own threshold (a bar reaching it is exactly a day that alerts,
checked against ``detect.detect_volume`` itself over generated histories), and the
redaction that hides which customers are honeytokens from principals who may not know."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spillguard.audit.alerts import ActivityDay
from spillguard.audit.browse import activity_chart, volume_alert_threshold, with_alert_thresholds
from spillguard.audit.detect import DayCounts, Thresholds, detect_volume, profile_from, volume_band
from spillguard.audit.honeytokens import HONEYTOKEN_MARKER, redact_evidence, redact_refs

TODAY = date(2026, 11, 17)
PROFILE = profile_from("a.agent@example.co.uk", thresholds=Thresholds())


def day_of(records: int, history: list[DayCounts], t: Thresholds) -> ActivityDay:
    """The day as ``AlertService.activity`` reports it: the band's median and threshold."""
    band = volume_band(history, TODAY, t)
    return ActivityDay(
        day=TODAY,
        events=1,
        records=records,
        exported=0,
        after_hours=0,
        off_duty=0,
        baseline=band.median if band else None,
        threshold=band.threshold if band else None,
    )


thresholds = st.builds(
    Thresholds,
    volume_mad_k=st.floats(1, 12),
    volume_min_ratio=st.floats(1, 6),
    volume_min_records=st.integers(0, 500),
    baseline_min_days=st.integers(1, 8),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(0, 3000), max_size=25),
    gaps=st.lists(st.booleans(), min_size=25, max_size=25),
    today=st.integers(0, 20_000),
    t=thresholds,
)
def test_a_bar_reaches_the_drawn_line_exactly_when_the_volume_detector_alerts(
    values: list[int], gaps: list[bool], today: int, t: Thresholds
) -> None:
    history = [
        DayCounts(TODAY - timedelta(days=len(values) - i), events=0 if gaps[i] else 3, records=v)
        for i, v in enumerate(values)
    ]
    [shown] = with_alert_thresholds([day_of(today, history, t)], t)
    alerts = detect_volume(PROFILE, DayCounts(TODAY, 1, today), history, t) is not None
    [bar] = activity_chart([shown]).bars
    assert bar.over == alerts
    if alerts:  # the line drawn is the threshold the alert's evidence states
        finding = detect_volume(PROFILE, DayCounts(TODAY, 1, today), history, t)
        assert finding is not None and shown.threshold is not None
        assert float(finding.evidence["threshold"]) == pytest.approx(shown.threshold, abs=0.01)


def test_the_line_is_not_the_band_when_a_floor_is_higher() -> None:
    t = Thresholds()
    history = [DayCounts(TODAY - timedelta(days=d), 5, 30) for d in range(12, 0, -1)]
    # median 30, spread floor 10: band threshold 110; but the detector needs 3 x 30 and 200.
    band = volume_band(history, TODAY, t)
    assert band is not None and band.threshold == 110
    assert volume_alert_threshold(band.median, band.threshold, t) == 200
    for records, over in [(150, False), (199, False), (200, True), (900, True)]:
        [shown] = with_alert_thresholds([day_of(records, history, t)], t)
        assert shown.threshold == 200
        assert activity_chart([shown]).bars[0].over is over
        assert (
            detect_volume(PROFILE, DayCounts(TODAY, 1, records), history, t) is not None
        ) is over
    assert volume_alert_threshold(None, None, t) is None  # too little history: no line


def test_redacted_refs_keep_no_position_or_count_of_the_honeytokens() -> None:
    refs = ["C100", "C200", "C300", "C400"]
    assert redact_refs(refs, {"C200", "C300"}) == ["C100", "C400", HONEYTOKEN_MARKER]
    assert redact_refs(refs, {"C400"}) == ["C100", "C200", "C300", HONEYTOKEN_MARKER]
    assert redact_refs(refs, set()) == refs
    assert redact_refs(["C200"], {"C200"}) == [HONEYTOKEN_MARKER]


def test_redacted_evidence_hides_ids_at_any_depth_and_keeps_the_rest() -> None:
    evidence = {
        "trigger": "access-event",
        "why": "honeytoken customers exist only to be left alone",
        "honeytokens": ["C200", "C300"],
        "honeytoken_count": 2,
        "matches": {"C200": "record", "C300": "primary-only"},
        "events": [
            {"event_id": 7, "system": "crm", "action": "export", "honeytokens": ["C300"]},
        ],
        "events_total": 1,
        "day": "2026-11-17",
    }
    shown = redact_evidence(evidence, {"C200", "C300"})
    assert shown == {
        "trigger": "access-event",
        "why": "honeytoken customers exist only to be left alone",
        "honeytokens": [HONEYTOKEN_MARKER],
        "matches": {HONEYTOKEN_MARKER: "record"},
        "events": [
            {"event_id": 7, "system": "crm", "action": "export", "honeytokens": [HONEYTOKEN_MARKER]}
        ],
        "events_total": 1,
        "day": "2026-11-17",
    }
    assert "C200" not in repr(shown) and "C300" not in repr(shown)
    assert evidence["honeytokens"] == ["C200", "C300"]  # the stored evidence is untouched
