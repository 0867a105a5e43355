"""Labelled documents for scoring the detectors: e-mails, SMS, CSV exports, spreadsheet
rows, call notes, prose with sparse findings, and hard negatives.

Every identifier is written through :class:`_Writer`, which records its span
``(entity, start, end)`` at the moment it is inserted, so a label is exactly the text
that was put there.  Hard negatives (order ids, timestamps, SKUs, Luhn-valid
non-cards, parcel tracking numbers, NINOs with unallocated prefixes, NHS numbers
failing mod 11, sort-code-like room numbers) are recorded apart in
``Document.negatives`` and never labelled.  Output depends only on the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from faker import Faker
from faker.providers.lorem.en_US import Provider as _EnglishLorem

from spillguard.inspection.corpus import identifiers as ids

__all__ = [
    "DOCUMENT_KINDS",
    "ENTITIES",
    "Document",
    "Span",
    "generate_corpus",
    "generate_documents",
]

ENTITIES = (
    "phone_number",
    "email_address",
    "uk_postcode",
    "payment_card",
    "iban",
    "uk_bank_account",
    "uk_nino",
    "nhs_number",
    "date_of_birth",
    "ip_address",
)

DOCUMENT_KINDS = ("email", "sms", "csv", "sheet", "call_note", "prose", "negative")

_WORDS = tuple(_EnglishLorem.word_list)
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


@dataclass(frozen=True)
class Span:
    """A labelled (or predicted) stretch of text: ``text[start:end]`` is the entity."""

    entity: str
    start: int
    end: int


@dataclass(frozen=True)
class Document:
    """One generated document with its labels.

    ``spans`` are the identifiers inserted; ``negatives`` the hard negatives inserted
    (their ``entity`` names the kind of look-alike, e.g. ``order_id``); ``rows`` holds
    the cells of tabular documents (header first).
    """

    id: str
    kind: str
    text: str
    spans: tuple[Span, ...]
    negatives: tuple[Span, ...] = ()
    rows: tuple[tuple[str, ...], ...] | None = None

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8"))


@dataclass
class _Writer:
    parts: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    negatives: list[Span] = field(default_factory=list)
    pos: int = 0

    def lit(self, text: str) -> None:
        self.parts.append(text)
        self.pos += len(text)

    def put(self, entity: str, value: str) -> None:
        self.spans.append(Span(entity, self.pos, self.pos + len(value)))
        self.lit(value)

    def neg(self, kind: str, value: str) -> None:
        self.negatives.append(Span(kind, self.pos, self.pos + len(value)))
        self.lit(value)

    def text(self) -> str:
        return "".join(self.parts)


class _Gen:
    """Draws values and phrases; one Faker en_GB and one Random, both seeded."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by design
        self.fake = Faker("en_GB")
        self.fake.seed_instance(seed)

    # values ---------------------------------------------------------------------
    def name(self) -> tuple[str, str]:
        return self.fake.first_name(), self.fake.last_name()

    def email(self, first: str | None = None, last: str | None = None) -> str:
        first = first or self.fake.first_name()
        last = last or self.fake.last_name()
        local = self.rng.choice(
            (f"{first}.{last}", f"{first[0]}{last}", f"{first}{self.rng.randrange(100)}")
        )
        local = "".join(c for c in local if c.isalnum() or c == ".").lower()
        domain = self.rng.choice((self.fake.free_email_domain(), self.fake.domain_name()))
        return f"{local}@{domain}"

    def phone(self) -> str:
        if self.rng.random() < 0.2:
            return ids.drama_landline(self.rng)
        style = self.rng.choices(
            ("spaced", "compact", "intl", "intl_compact", "0044", "hyphen", "intl_trunk"),
            weights=(40, 20, 20, 6, 4, 6, 4),
        )[0]
        return ids.format_phone(ids.mobile_national(self.rng), style)

    def card(self) -> str:
        style = self.rng.choices(("spaced", "compact", "hyphen"), weights=(5, 3, 2))[0]
        return ids.format_card(ids.card_number(self.rng), style)

    def iban(self) -> str:
        return ids.format_iban(ids.iban(self.rng), self.rng.choice(("spaced", "compact")))

    def bank(self) -> str:
        sep = self.rng.choice(("-", "-", " "))
        between = self.rng.choice((" ", " account ", ", a/c ", " / "))
        return ids.sort_code(self.rng, sep) + between + ids.account_number(self.rng)

    def nino(self) -> str:
        style = self.rng.choices(("spaced", "compact", "lower"), weights=(6, 3, 1))[0]
        return ids.format_nino(ids.nino_compact(self.rng), style)

    def nhs(self, *, context: bool) -> str:
        styles = ("spaced", "hyphen", "compact") if context else ("spaced", "hyphen")
        return ids.format_nhs(ids.nhs_number(self.rng), self.rng.choice(styles))

    def dob(self) -> str:
        day = date(1935, 1, 1) + timedelta(days=self.rng.randrange(365 * 70))
        style = self.rng.randrange(5)
        if style == 0:
            return day.strftime("%d/%m/%Y")
        if style == 1:
            return day.isoformat()
        if style == 2:
            return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"
        if style == 3:
            suffix = "th" if 10 <= day.day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}
            suffix = suffix if isinstance(suffix, str) else suffix.get(day.day % 10, "th")
            return f"{day.day}{suffix} {_MONTHS[day.month - 1]} {day.year}"
        return day.strftime("%d.%m.%Y")

    def ip(self) -> str:
        return ids.ipv6(self.rng) if self.rng.random() < 0.2 else ids.ipv4(self.rng)

    # text -----------------------------------------------------------------------
    def sentence(self) -> str:
        return str(self.fake.sentence(nb_words=self.rng.randint(6, 16), ext_word_list=_WORDS))

    def paragraph(self, sentences: int) -> str:
        return " ".join(self.sentence() for _ in range(sentences))

    # hard negatives -------------------------------------------------------------
    def negative(self, w: _Writer) -> None:
        """One hard negative, with its lead-in (some carry a misleading context word)."""
        r = self.rng
        kind = r.randrange(13)
        if kind == 0:
            w.lit("Order ")
            w.neg("order_id", f"ORD-{r.randint(2019, 2025)}-{r.randrange(10**6):06d}")
        elif kind == 1:
            stamp = f"{r.randint(2019, 2025)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
            clock = f"{r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d}"
            w.lit("logged at ")
            w.neg("timestamp", r.choice((f"{stamp}T{clock}Z", f"{stamp} {clock}")))
        elif kind == 2:
            w.lit("item ")
            w.neg("sku", f"SKU-{ids.luhn_number(r, '4', 16)}")
        elif kind == 3:
            w.lit("device ref ")
            w.neg("luhn_non_card", ids.luhn_non_card(r))
        elif kind == 4:
            w.lit("tracking ")
            w.neg(
                "tracking_number",
                r.choice(
                    (
                        f"{r.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{r.choice('ABCDEFGHJKLMN')}"
                        f"{ids.digits(r, 9)}GB",
                        f"1Z{ids.digits(r, 3)}AA{ids.digits(r, 10)}",
                    )
                ),
            )
        elif kind == 5:
            w.lit("NI number ")
            w.neg("invalid_nino", ids.format_nino(ids.invalid_nino_compact(r), "spaced"))
        elif kind == 6:
            w.lit("NHS number ")
            w.neg("invalid_nhs", ids.format_nhs(ids.invalid_nhs_number(r), "spaced"))
        elif kind == 7:
            w.lit("invoice ")
            w.neg("invoice", f"INV-{r.randrange(10**8):08d}")
        elif kind == 8:
            w.lit("build ")
            w.neg(
                "version",
                f"{r.randint(1, 12)}.{r.randrange(10)}.{r.randrange(30000)}.{r.randrange(9)}",
            )
        elif kind == 9:
            w.lit("gift card ")
            number = ids.card_number(r)
            bad = number[:-1] + str((int(number[-1]) + r.randint(1, 9)) % 10)
            w.neg("luhn_invalid_card", ids.format_card(bad, "spaced"))
        elif kind == 10:
            w.lit("IBAN ")
            good = ids.iban(r)
            bad_check = f"{(int(good[2:4]) + r.randint(1, 90)) % 97 + 2:02d}"
            bad = good[:2] + bad_check + good[4:]
            if ids.iban_valid(bad):  # the rare shift back onto a valid check
                bad = good[:2] + "00" + good[4:]
            w.neg("invalid_iban", ids.format_iban(bad, "spaced"))
        elif kind == 11:
            w.lit("postcode ")
            w.neg(
                "invalid_postcode",
                f"{r.choice('QVX')}{r.choice('IJZ')}{r.randint(1, 9)} {r.randint(0, 9)}CI",
            )
        else:
            w.lit("see room ")
            w.neg("room_number", f"{r.randrange(1, 60):02d}-{r.randrange(1, 60):02d}")


# -- templates ------------------------------------------------------------------------

_CONTEXT = {
    "phone_number": ("phone", "mobile", "call me on", "tel", "contact number"),
    "email_address": ("email", "e-mail", "contact", "reply to"),
    "uk_postcode": ("postcode", "address", "post code"),
    "payment_card": ("card", "card number", "paid with Visa", "debit card"),
    "iban": ("IBAN", "bank transfer to", "account IBAN"),
    "uk_bank_account": ("sort code", "bank details: sort code"),
    "uk_nino": ("NI number", "national insurance number", "NINO"),
    "nhs_number": ("NHS number", "NHS no", "patient NHS number"),
    "date_of_birth": ("DOB", "date of birth", "born"),
    "ip_address": ("login from IP", "client ip", "remote host"),
}


def _value(g: _Gen, entity: str, *, context: bool = True) -> str:
    if entity == "phone_number":
        return g.phone()
    if entity == "email_address":
        return g.email()
    if entity == "uk_postcode":
        return ids.postcode(g.rng)
    if entity == "payment_card":
        return g.card()
    if entity == "iban":
        return g.iban()
    if entity == "uk_bank_account":
        return g.bank()
    if entity == "uk_nino":
        return g.nino()
    if entity == "nhs_number":
        return g.nhs(context=context)
    if entity == "date_of_birth":
        return g.dob()
    return g.ip()


def _mention(g: _Gen, w: _Writer, entity: str) -> None:
    """``<context phrase> <value>`` the way people write it in a sentence."""
    w.lit(g.rng.choice(_CONTEXT[entity]) + g.rng.choice((" ", ": ", " is ")))
    w.put(entity, _value(g, entity))


def _email_doc(g: _Gen, w: _Writer) -> None:
    first, last = g.name()
    w.lit(f"From: {first} {last} <")
    w.put("email_address", g.email(first, last))
    w.lit(">\nTo: ")
    w.put("email_address", f"support@{g.fake.domain_name()}")
    w.lit("\nDate: ")
    day = f"{g.rng.randint(1, 28)} {_MONTHS[g.rng.randrange(12)][:3]} {g.rng.randint(2020, 2025)}"
    w.neg("timestamp", f"{day} {g.rng.randrange(24):02d}:{g.rng.randrange(60):02d}:00 +0000")
    w.lit(f"\nSubject: {g.fake.bs().capitalize()}\n\nHello,\n\n{g.paragraph(2)}\n\n")
    for entity in g.rng.sample(ENTITIES, g.rng.randint(1, 3)):
        _mention(g, w, entity)
        w.lit(". ")
    if g.rng.random() < 0.5:
        g.negative(w)
        w.lit(". ")
    w.lit(f"{g.sentence()}\n\nKind regards,\n{first} {last}\n")
    if g.rng.random() < 0.6:
        w.lit(g.rng.choice(("M: ", "Mobile: ", "Tel ")))
        w.put("phone_number", g.phone())
        w.lit("\n")


def _sms_doc(g: _Gen, w: _Writer) -> None:
    first, _last = g.name()
    entity = g.rng.choice(("phone_number", "email_address", "uk_postcode", "date_of_birth"))
    w.lit(f"Hi {first}, ")
    if g.rng.random() < 0.3:
        w.lit(g.sentence() + " ")
        if g.rng.random() < 0.5:
            g.negative(w)
            w.lit(" ")
    else:
        _mention(g, w, entity)
        w.lit(f". {g.sentence()}")


_COLUMNS: dict[str, tuple[str, str | None]] = {
    # column id: (header, entity or None for unlabelled cells)
    "id": ("customer_id", None),
    "first": ("first_name", None),
    "last": ("last_name", None),
    "email": ("email", "email_address"),
    "phone": ("phone", "phone_number"),
    "postcode": ("postcode", "uk_postcode"),
    "dob": ("date_of_birth", "date_of_birth"),
    "nino": ("ni_number", "uk_nino"),
    "nhs": ("nhs_number", "nhs_number"),
    "card": ("card_number", "payment_card"),
    "iban": ("iban", "iban"),
    "bank": ("sort_code,account_number", "uk_bank_account"),
    "order": ("last_order", None),
    "seen": ("last_seen", None),
    "ip": ("last_login_ip", "ip_address"),
}
_SHEET_HEADERS = {
    "id": "Customer No",
    "first": "Forename",
    "last": "Surname",
    "email": "E-mail",
    "phone": "Mobile",
    "postcode": "Postcode",
    "dob": "DOB",
    "nino": "NI Number",
    "nhs": "NHS No",
    "card": "Card",
    "iban": "IBAN",
    "bank": "Sort code\tAccount",
    "order": "Last order",
    "seen": "Last seen",
    "ip": "IP",
}


def _table_doc(g: _Gen, w: _Writer, *, sheet: bool) -> list[tuple[str, ...]]:
    optional = ["dob", "nino", "nhs", "card", "iban", "bank", "order", "seen", "ip"]
    columns = ["id", "first", "last", "email", "phone", "postcode"]
    columns += g.rng.sample(optional, g.rng.randint(2, 5))
    sep = "\t" if sheet else ","
    headers = [
        (_SHEET_HEADERS if sheet else {k: v[0] for k, v in _COLUMNS.items()})[c] for c in columns
    ]
    header_line = sep.join(h.replace(",", sep).replace("\t", sep) for h in headers)
    rows: list[tuple[str, ...]] = [tuple(header_line.split(sep))]
    w.lit(header_line + "\n")
    for n in range(g.rng.randint(20, 60)):
        cells: list[str] = []
        first, last = g.name()
        for i, column in enumerate(columns):
            if i:
                w.lit(sep)
            entity = _COLUMNS[column][1]
            if column == "id":
                w.neg("customer_ref", value := f"CUST-{g.rng.randrange(10**6):06d}")
            elif column == "first":
                w.lit(value := first)
            elif column == "last":
                w.lit(value := last)
            elif column == "order":
                w.neg("order_id", value := f"ORD-{g.rng.randint(2019, 2025)}-{n:06d}")
            elif column == "seen":
                day = f"2024-{g.rng.randint(1, 12):02d}-{g.rng.randint(1, 28):02d}"
                value = f"{day}T10:{n % 60:02d}:00Z"
                w.neg("timestamp", value)
            elif column == "bank":
                code, account = ids.sort_code(g.rng), ids.account_number(g.rng)
                value = code + sep + account
                w.put("uk_bank_account", value)
                cells.append(code)
                cells.append(account)
                continue
            elif column == "email":
                w.put("email_address", value := g.email(first, last))
            else:
                assert entity is not None
                # A column header is context only for the first rows: exports hold NHS numbers
                # both spaced and as bare ten-digit runs.
                w.put(entity, value := _value(g, entity))
            cells.append(value)
        w.lit("\n")
        rows.append(tuple(cells))
    return rows


def _call_note(g: _Gen, w: _Writer) -> None:
    first, last = g.name()
    agent = " ".join(g.name())
    title = g.rng.choice(("Mr", "Mrs", "Ms", "Dr"))
    w.lit(f"Call notes - agent {agent}\nCaller: {title} {first} {last}\n")
    w.lit(f"Reason: {g.fake.bs()}.\n")
    mentions = g.rng.sample(ENTITIES, g.rng.randint(2, 5))
    w.lit("Verified ")
    for i, entity in enumerate(mentions):
        if i:
            w.lit(", " if i < len(mentions) - 1 else " and ")
        _mention(g, w, entity)
    w.lit(f".\n{g.sentence()}\n")
    if g.rng.random() < 0.4:
        g.negative(w)
        w.lit(".\n")
    w.lit(f"Outcome: {g.fake.catch_phrase()}; follow up in {g.rng.randint(1, 14)} days.\n")


def _prose(g: _Gen, w: _Writer, *, findings: bool) -> None:
    """About 3-6 KB of paragraphs; at most two findings and a few hard negatives."""
    target = g.rng.randint(3000, 6000)
    planted = g.rng.randint(0, 2) if findings else 0
    negatives = g.rng.randint(1, 3)
    while w.pos < target:
        w.lit(g.paragraph(g.rng.randint(3, 7)))
        roll = g.rng.random()
        if planted and roll < 0.35:
            w.lit(" Please note the " if g.rng.random() < 0.5 else " Their ")
            _mention(g, w, g.rng.choice(ENTITIES))
            w.lit(".")
            planted -= 1
        elif negatives and roll < 0.7:
            w.lit(" ")
            g.negative(w)
            w.lit(".")
            negatives -= 1
        w.lit("\n\n")


def _one(g: _Gen, kind: str, number: int) -> Document:
    w = _Writer()
    rows: list[tuple[str, ...]] | None = None
    if kind == "email":
        _email_doc(g, w)
    elif kind == "sms":
        _sms_doc(g, w)
    elif kind in ("csv", "sheet"):
        rows = _table_doc(g, w, sheet=kind == "sheet")
    elif kind == "call_note":
        _call_note(g, w)
    elif kind == "prose":
        _prose(g, w, findings=True)
    else:
        _prose(g, w, findings=False)
    return Document(
        id=f"{kind}-{number:05d}",
        kind=kind,
        text=w.text(),
        spans=tuple(w.spans),
        negatives=tuple(w.negatives),
        rows=tuple(rows) if rows is not None else None,
    )


def generate_documents(kind: str, count: int, *, seed: int = 4) -> list[Document]:
    """``count`` documents of one kind (see :data:`DOCUMENT_KINDS`)."""
    if kind not in DOCUMENT_KINDS:
        raise ValueError(f"unknown document kind {kind!r}")
    g = _Gen(seed * 1000 + DOCUMENT_KINDS.index(kind))
    return [_one(g, kind, n) for n in range(count)]


def generate_corpus(counts: dict[str, int] | None = None, *, seed: int = 4) -> list[Document]:
    """A mixed corpus: ``counts`` documents per kind (default a few hundred in all)."""
    counts = counts or {
        "email": 120,
        "sms": 200,
        "csv": 12,
        "sheet": 12,
        "call_note": 120,
        "prose": 40,
        "negative": 40,
    }
    out: list[Document] = []
    for kind in DOCUMENT_KINDS:
        out.extend(generate_documents(kind, counts.get(kind, 0), seed=seed))
    return out
