"""Content inspection: find customer data in files and messages.

DESIGN.md gives this module one job for every story: say whether a piece of content
holds customer data, which kinds, and (with exact data match, not built yet) whose.
This package holds the database-free core of that answer:

* ``detectors`` — one :class:`~spillguard.inspection.detectors.Detector` per kind of
  identifier (phone, e-mail, UK postcode, payment card, IBAN, UK bank account, NINO,
  NHS number, date of birth, IP address, and custom identifiers declared as data).
  Each couples a candidate pattern with a validator, context words and a confidence.
* ``engine`` — compiles every candidate pattern into one multi-pattern database
  (hyperscan, or google-re2 where hyperscan is unavailable), scans text in one pass,
  validates only the candidates and fails closed: a timeout or an engine failure
  yields ``uninspected``, never ``clean``.
* ``masking`` — the masked form in which findings are shown (``07700 9•••21``).

Findings carry the normalised value in memory only, for exact data match; it must
never be logged, stored or returned.  See docs/inspection.md.
"""

from __future__ import annotations

from spillguard.inspection.detectors import (
    CustomIdentifier,
    Detector,
    DetectorSettings,
    Entity,
    build_detectors,
)
from spillguard.inspection.engine import (
    BackendUnavailable,
    Finding,
    InspectionEngine,
    PatternError,
    ScanResult,
    ScanStatus,
)
from spillguard.inspection.masking import mask
from spillguard.inspection.scan import scan

__all__ = [
    "BackendUnavailable",
    "CustomIdentifier",
    "Detector",
    "DetectorSettings",
    "Entity",
    "Finding",
    "InspectionEngine",
    "PatternError",
    "ScanResult",
    "ScanStatus",
    "build_detectors",
    "mask",
    "scan",
]
