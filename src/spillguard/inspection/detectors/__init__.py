"""The detectors: one per kind of customer identifier, plus custom ones declared as data.

:func:`build_detectors` turns :class:`DetectorSettings` into the tuple of detectors an
:class:`~spillguard.inspection.engine.InspectionEngine` compiles.
"""

from __future__ import annotations

from collections.abc import Callable

from phonenumbers import PhoneMetadata
from pydantic import BaseModel, ConfigDict, Field, field_validator

from spillguard.inspection.detectors.banking import iban_detector, uk_bank_account_detector
from spillguard.inspection.detectors.base import Detector, Entity
from spillguard.inspection.detectors.checkdigits import CHECK_DIGITS
from spillguard.inspection.detectors.custom import CustomIdentifier
from spillguard.inspection.detectors.dob import date_of_birth_detector
from spillguard.inspection.detectors.email import email_detector
from spillguard.inspection.detectors.ip import ipv4_detector, ipv6_detector
from spillguard.inspection.detectors.nhs import nhs_detector, nhs_unspaced_detector
from spillguard.inspection.detectors.nino import nino_detector
from spillguard.inspection.detectors.payment_card import payment_card_detector
from spillguard.inspection.detectors.phone import phone_detector
from spillguard.inspection.detectors.postcode import postcode_detector

__all__ = [
    "BUILT_IN",
    "CHECK_DIGITS",
    "CustomIdentifier",
    "Detector",
    "DetectorSettings",
    "Entity",
    "build_detectors",
]

BUILT_IN: tuple[str, ...] = (
    "phone",
    "email",
    "uk_postcode",
    "payment_card",
    "iban",
    "uk_bank_account",
    "uk_nino",
    "nhs_number",
    "nhs_number_unspaced",
    "date_of_birth",
    "ipv4",
    "ipv6",
)
"""Names of the built-in detectors, in the order they are compiled."""


class DetectorSettings(BaseModel):
    """Which detectors to run and how: the inspection part of the configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phone_region: str = Field(default="GB", description="Region for numbers without +/00.")
    phone_requires_trunk_prefix: bool = Field(
        default=True, description="National numbers must start with the trunk prefix (0)."
    )
    phone_accept_drama_numbers: bool = Field(
        default=True, description="Treat Ofcom drama/test ranges as phone numbers."
    )
    disabled: frozenset[str] = Field(
        default=frozenset(), description="Built-in detectors to leave out, by name."
    )
    custom_identifiers: tuple[CustomIdentifier, ...] = ()

    @field_validator("phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.upper()
        if PhoneMetadata.metadata_for_region(region) is None:
            raise ValueError(f"unknown phone region {value!r}")
        return region

    @field_validator("disabled")
    @classmethod
    def _known_detectors(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(value - set(BUILT_IN))
        if unknown:
            raise ValueError(f"unknown detectors: {', '.join(unknown)}")
        return value

    @field_validator("custom_identifiers")
    @classmethod
    def _unique_names(cls, value: tuple[CustomIdentifier, ...]) -> tuple[CustomIdentifier, ...]:
        names = [item.name for item in value]
        taken = set(BUILT_IN) | {e.value for e in Entity}  # detector and entity names
        clashes = sorted({n for n in names if names.count(n) > 1 or n in taken})
        if clashes:
            raise ValueError(f"custom identifier names must be unique and new: {clashes}")
        return value


def build_detectors(settings: DetectorSettings | None = None) -> tuple[Detector, ...]:
    """Every enabled built-in detector, then the custom identifiers, for ``settings``."""
    settings = settings or DetectorSettings()
    factories: dict[str, Callable[[], Detector]] = {
        "phone": lambda: phone_detector(
            settings.phone_region,
            require_trunk_prefix=settings.phone_requires_trunk_prefix,
            accept_drama_numbers=settings.phone_accept_drama_numbers,
        ),
        "email": email_detector,
        "uk_postcode": postcode_detector,
        "payment_card": payment_card_detector,
        "iban": iban_detector,
        "uk_bank_account": uk_bank_account_detector,
        "uk_nino": nino_detector,
        "nhs_number": nhs_detector,
        "nhs_number_unspaced": nhs_unspaced_detector,
        "date_of_birth": date_of_birth_detector,
        "ipv4": ipv4_detector,
        "ipv6": ipv6_detector,
    }
    built = [factories[name]() for name in BUILT_IN if name not in settings.disabled]
    built.extend(custom.detector() for custom in settings.custom_identifiers)
    return tuple(built)
