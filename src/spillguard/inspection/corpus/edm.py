"""Customers and documents about them, written in format variants, for scoring EDM.

A directory of Faker en_GB customers (stored in one canonical form) and, for each,
documents that mention a primary value (e-mail or phone) and a supporting value
(name, postcode or date of birth) written differently from the directory: e-mail
upper or mixed case, phone with ``+44`` / ``0`` / ``0044`` prefixes and other
spacing, postcode lower case or without its space, date ISO or ``dd/mm/yyyy`` or with
the month's name, name in capitals.  Unrelated documents describe people who are not
customers (their own e-mail and phone), some next to a real customer's name and
postcode: any record match there is false.  Deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from faker import Faker

from spillguard.inspection.corpus import identifiers as ids

__all__ = ["VARIANTS", "EdmCase", "EdmCorpus", "EdmCustomer", "generate_edm_corpus"]

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

VARIANTS = (
    "email_upper",
    "email_mixed_case",
    "phone_plus44",
    "phone_0_compact",
    "phone_0044",
    "phone_0_spaced",
    "postcode_lower_nospace",
    "dob_iso",
    "dob_dmy",
    "dob_month_name",
    "name_upper",
    "row_plus44_postcode_lower",
)


@dataclass(frozen=True)
class EdmCustomer:
    id: str
    first: str
    last: str
    email: str
    phone: str  # national, 11 digits
    postcode: str
    dob: date

    def directory_values(self) -> dict[str, str]:
        """The row as it sits in the customer list (canonical forms), by field kind."""
        return {
            "first_name": self.first,
            "last_name": self.last,
            "email": self.email,
            "phone": f"{self.phone[:5]} {self.phone[5:]}",
            "postcode": self.postcode,
            "date_of_birth": self.dob.strftime("%d/%m/%Y"),
        }


@dataclass(frozen=True)
class EdmCase:
    """A document about one customer: text, or a table (``rows``), and its variant."""

    variant: str
    customer_id: str
    text: str
    rows: tuple[tuple[str, ...], ...] | None = None


@dataclass(frozen=True)
class EdmCorpus:
    customers: tuple[EdmCustomer, ...]
    cases: tuple[EdmCase, ...]
    unrelated: tuple[str, ...]


def _customer(fake: Faker, rng: random.Random, number: int, prefix: str) -> EdmCustomer:
    first, last = fake.first_name(), fake.last_name()
    local = "".join(c for c in f"{first}.{last}" if c.isalpha() or c == ".").lower()
    domain = rng.choice((fake.free_email_domain(), fake.domain_name()))
    return EdmCustomer(
        id=f"{prefix}{number:07d}",
        first=first,
        last=last,
        # The number makes every address unique: a shared address would be a true match.
        email=f"{local}{number}{prefix.lower()}@{domain}",
        phone=ids.mobile_national(rng),
        postcode=ids.postcode(rng),
        dob=date(1935, 1, 1) + timedelta(days=rng.randrange(365 * 70)),
    )


def _mixed_case(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


def _case(fake: Faker, rng: random.Random, c: EdmCustomer, variant: str) -> EdmCase:
    name = f"{c.first} {c.last}"
    filler = fake.sentence(nb_words=8)
    intl = f"+44 {c.phone[1:5]} {c.phone[5:]}"
    if variant == "row_plus44_postcode_lower":
        rows = (
            ("Forename", "Surname", "Mobile", "Postcode", "Notes"),
            (c.first.upper(), c.last, intl, c.postcode.lower(), filler),
        )
        return EdmCase(variant, c.id, "\n".join("\t".join(r) for r in rows), rows)
    if variant == "email_upper":
        body = f"Spoke to {name} today; please update {c.email.upper()} on file."
    elif variant == "email_mixed_case":
        body = f"From {_mixed_case(rng, c.email)} - {name} asked about the refund."
    elif variant == "phone_plus44":
        body = f"Callback requested on {intl}, postcode {c.postcode}."
    elif variant == "phone_0_compact":
        body = f"{c.first} {c.last} rang from {c.phone} about the invoice."
    elif variant == "phone_0044":
        body = f"Mobile 0044 {c.phone[1:5]} {c.phone[5:]} (customer {name})."
    elif variant == "phone_0_spaced":
        body = f"Please call {c.phone[:5]} {c.phone[5:8]} {c.phone[8:]} - {name}."
    elif variant == "postcode_lower_nospace":
        body = f"Parcel for {c.email} at {c.postcode.replace(' ', '').lower()} was returned."
    elif variant == "dob_iso":
        body = f"Caller on {c.phone[:5]} {c.phone[5:]} gave DOB {c.dob.isoformat()}."
    elif variant == "dob_dmy":
        body = f"Account {c.email}, date of birth {c.dob.strftime('%d/%m/%Y')}."
    elif variant == "dob_month_name":
        spoken = f"{c.dob.day} {_MONTHS[c.dob.month - 1]} {c.dob.year}"
        body = f"Customer born {spoken}, contact {intl}."
    else:  # name_upper
        body = f"{name.upper()} - {c.phone[:5]} {c.phone[5:]} - complaint escalated."
    return EdmCase(variant, c.id, f"{filler} {body} {fake.sentence(nb_words=10)}")


def _unrelated(fake: Faker, rng: random.Random, number: int, customers: list[EdmCustomer]) -> str:
    s = _customer(fake, rng, number, "S")
    style = rng.randrange(4)
    if style == 0:
        return (
            f"Dear {s.first} {s.last}, we have your e-mail {s.email} and mobile "
            f"{s.phone[:5]} {s.phone[5:]}; postcode {s.postcode}, born "
            f"{s.dob.strftime('%d/%m/%Y')}. {fake.sentence()}"
        )
    # A stranger's contact details next to a real customer's name, postcode or birthday.
    c = rng.choice(customers)
    if style == 1:
        return f"{c.first} {c.last} forwarded {s.email} - postcode {c.postcode}. {fake.sentence()}"
    if style == 2:
        return f"Mobile {s.phone} belongs to {c.first} {c.last}'s neighbour at {c.postcode}."
    return f"Contact +44 {s.phone[1:]} re DOB {c.dob.isoformat()}, {c.last}. {fake.sentence()}"


def generate_edm_corpus(
    customers: int = 300, unrelated: int = 2000, *, seed: int = 44
) -> EdmCorpus:
    """``customers`` directory entries, one case per customer and variant, and
    ``unrelated`` documents about people outside the directory."""
    rng = random.Random(seed)  # noqa: S311 - synthetic test data, reproducible by design
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    people = [_customer(fake, rng, n, "K") for n in range(customers)]
    cases = [_case(fake, rng, c, v) for c in people for v in VARIANTS]
    others = [_unrelated(fake, rng, n, people) for n in range(unrelated)]
    return EdmCorpus(tuple(people), tuple(cases), tuple(others))
