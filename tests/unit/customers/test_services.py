"""The customer directory in the database, on SQLite and PostgreSQL: incremental import,
no plaintext at rest, contact encryption and its reveal, and the index loaded back."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import LargeBinary, select, update
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event  # noqa: F401 - the services' audit helper
from spillguard.core.db import Base
from spillguard.core.errors import InvalidInput, PermissionDenied
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal, Role
from spillguard.customers.columns import map_columns
from spillguard.customers.edm import EdmIndexBuilder
from spillguard.customers.fields import (
    FieldKind,
    normalise_email,
    normalise_phone,
    normalise_postcode,
)
from spillguard.customers.models import Customer, CustomerContact, CustomerFieldHash, ImportRun
from spillguard.customers.services import (
    ContactService,
    ContactUnreadable,
    CustomerDirectoryService,
    CustomerImportService,
    EdmIndexLoader,
)
from tests.factories.customers import HEADER, Person, changed, people, to_csv
from tests.factories.users import UserFactory

SYSTEM = Principal.system("tests")
BASE = people(5000)


def do_import(
    db: Session, keys: KeyRing, data: bytes, principal: Principal = SYSTEM, **kwargs: object
) -> ImportRun:
    kwargs.setdefault("id_column", "Customer ID")
    run = CustomerImportService(db, principal, keys).import_csv(
        io.BytesIO(data), file_name="customers.csv", **kwargs
    )
    db.commit()
    return run


def csv_bytes(lines: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(lines)
    return buffer.getvalue().encode()


def counts(run: ImportRun) -> tuple[int, int, int, int, int]:
    return run.added, run.changed, run.unchanged, run.removed, run.invalid_rows


@pytest.fixture
def imported(db: Session, keys: KeyRing) -> ImportRun:
    return do_import(db, keys, to_csv(BASE))


def dpo(users: UserFactory) -> Principal:
    user = users.create(Role.DPO)
    return Principal("user", user.id, user.email, Role.DPO)


# --- import ----------------------------------------------------------------------------


def test_a_5000_customer_import_then_an_incremental_re_import_counts_exactly(
    db: Session, keys: KeyRing, imported: ImportRun
) -> None:
    assert counts(imported) == (5000, 0, 0, 0, 0)
    assert imported.rows == 5000
    changed_rows = {p.customer_id: changed(p, n) for n, p in enumerate(BASE[100:110])}
    removed = {p.customer_id for p in BASE[200:205]}
    newcomers = people(7, seed=99, start=900_000)
    second = [changed_rows.get(p.customer_id, p) for p in BASE if p.customer_id not in removed]
    run = do_import(db, keys, to_csv(second + newcomers))
    assert counts(run) == (7, 10, 4985, 5, 0)

    active = set(db.scalars(select(Customer.external_id).where(Customer.removed_at.is_(None))))
    assert len(active) == 5002
    assert not removed & active
    gone = db.scalars(select(Customer.id).where(Customer.external_id.in_(removed))).all()
    assert len(gone) == 5  # soft delete: the rows stay, their hashes and contacts do not
    assert not db.scalars(
        select(CustomerFieldHash).where(CustomerFieldHash.customer_id.in_(gone))
    ).all()
    assert not db.scalars(
        select(CustomerContact).where(CustomerContact.customer_id.in_(gone))
    ).all()

    # The same file again changes nothing; a removed customer coming back is "added".
    assert counts(do_import(db, keys, to_csv(second + newcomers))) == (0, 0, 5002, 0, 0)
    assert counts(do_import(db, keys, to_csv(BASE))) == (5, 10, 4985, 7, 0)

    events = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "customers:import:completed")
    ).all()
    assert [e.details["added"] for e in events] == [5000, 7, 0, 5]
    assert events[1].details["removed"] == 5 and events[1].details["changed"] == 10
    assert events[0].details["file_sha256"] == imported.file_sha256
    history, total = CustomerDirectoryService(db, SYSTEM).imports(limit=10, offset=0)
    assert total == 4 and history[0].removed == 7


def test_a_changed_contact_detail_alone_counts_as_changed(db: Session, keys: KeyRing) -> None:
    first = people(20)
    do_import(db, keys, to_csv(first))
    header = [*HEADER, "Town"]
    rows = [[*p.row(), "Leeds"] for p in first]
    rows[3][-1] = "York"
    data = csv_bytes([header, *rows])
    # "Town" is not a field kind, so it changes nothing the directory keeps.
    assert counts(do_import(db, keys, data)) == (0, 0, 20, 0, 0)
    renamed = [*first]
    renamed[5] = Person(**{**vars(first[5]), "address": "1 Other Road"})
    assert counts(do_import(db, keys, to_csv(renamed))) == (0, 1, 19, 0, 0)


def test_invalid_values_and_rows_are_counted_not_fatal(db: Session, keys: KeyRing) -> None:
    rows = people(5)
    bad = [
        Person(**{**vars(rows[0]), "email": "not an address"}),
        Person(**{**vars(rows[1]), "phone": "12"}),
        Person(**{**vars(rows[2]), "customer_id": "  "}),
        *rows[3:],
    ]
    run = do_import(db, keys, to_csv(bad))
    assert counts(run) == (4, 0, 0, 0, 1)
    assert run.invalid == {"email": 1, "phone": 1}


def test_header_auto_mapping_and_map_overrides(db: Session, keys: KeyRing) -> None:
    crowd = people(30)
    header = ["Ref", "Full Name", "E-mail Address", "Tel No", "Post Code", "Club", "Notes"]
    lines = [header] + [
        [p.customer_id, p.name, p.email, p.phone, p.postcode, f"LC{n:08d}", "VIP"]
        for n, p in enumerate(crowd)
    ]
    data = csv_bytes(lines)
    run = do_import(
        db,
        keys,
        data,
        id_column="Ref",
        overrides=["Club=loyalty_number", "Post Code=ignore"],
    )
    assert run.added == 30
    assert run.mapping == {
        "Ref": "id",
        "Full Name": "name",
        "E-mail Address": "email",
        "Tel No": "phone",
        "Club": "loyalty_number",
    }
    kinds = set(db.scalars(select(CustomerFieldHash.kind).distinct()))
    assert "loyalty_number" in kinds and "email" in kinds
    assert "postcode" not in kinds  # ignored by --map


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (to_csv(people(3)), {"id_column": "Account"}, "no column 'Account'"),
        (to_csv(people(3)), {"overrides": ["Email"]}, "--map expects COLUMN=KIND"),
        (to_csv(people(3)), {"overrides": ["Email=shoe size"]}, "unknown field kind"),
        (b"", {}, "is empty"),
        (os.urandom(4096) + bytes(range(32)) * 50, {}, "not readable text"),
        (to_csv(people(3) + people(1)), {}, "appears more than once"),
    ],
    ids=["unknown-id-column", "bad-map", "unknown-kind", "empty", "binary", "duplicate-id"],
)
def test_bad_input_is_a_one_line_error_and_stores_nothing(
    db: Session, keys: KeyRing, data: bytes, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        do_import(db, keys, data, **kwargs)
    db.rollback()
    assert message in caught.value.detail
    assert "\n" not in caught.value.detail
    assert "C0000000" not in caught.value.detail  # never the customer id itself
    assert db.scalar(select(Customer.id).limit(1)) is None
    assert db.scalar(select(ImportRun.id).limit(1)) is None


def test_a_missing_file_is_a_one_line_error(db: Session, keys: KeyRing, tmp_path) -> None:
    service = CustomerImportService(db, SYSTEM, keys)
    with pytest.raises(InvalidInput, match="no such file"):
        service.import_csv(tmp_path / "absent.csv", id_column="Customer ID")


def test_a_cp1252_file_is_detected_and_read(db: Session, keys: KeyRing, users: UserFactory) -> None:
    crowd = people(40)
    crowd[0] = Person(**{**vars(crowd[0]), "first_name": "Siân", "last_name": "Brontë"})
    run = do_import(db, keys, to_csv(crowd, encoding="cp1252"))
    assert run.added == 40 and run.encoding == "cp1252"
    [contact] = ContactService(db, dpo(users), keys).reveal_for_notification(
        [crowd[0].customer_id], "breach notice test"
    )
    assert contact.name == "Siân Brontë"


def test_only_the_import_permission_may_import(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    for role in (Role.HELPDESK, Role.SECURITY, Role.AUDITOR):
        user = users.create(role)
        with pytest.raises(PermissionDenied):
            do_import(db, keys, to_csv(people(2)), Principal("user", user.id, user.email, role))
    assert do_import(db, keys, to_csv(people(2)), dpo(users)).added == 2


# --- nothing in clear at rest ----------------------------------------------------------


def _all_cells(db: Session) -> Iterator[tuple[str, object]]:
    for table in Base.metadata.sorted_tables:
        for row in db.execute(select(table)):
            for column, value in zip(table.columns, row, strict=True):
                if table.name == "customers" and column.name == "external_id":
                    continue  # the opaque business key, stored as given on purpose
                if isinstance(column.type, LargeBinary) or isinstance(value, bytes):
                    yield "bytes", value
                elif value is not None:
                    yield "text", str(value)


def test_no_customer_value_is_stored_in_clear_anywhere(db: Session, keys: KeyRing) -> None:
    crowd = BASE[:1500]
    do_import(db, keys, to_csv(crowd))
    do_import(db, keys, to_csv([changed(p, 1) if p in crowd[:50] else p for p in crowd]))
    text_cells: list[str] = []
    blob_cells: list[bytes] = []
    for kind, value in _all_cells(db):
        if kind == "bytes":
            if value is not None:
                blob_cells.append(bytes(value))  # type: ignore[arg-type]
        else:
            text_cells.append(str(value).lower())
    text = "\x00".join(text_cells)
    words = set(re.findall(r"[^\W_]+", text))
    blobs = b"\x00".join(blob_cells)
    assert len(blobs) > 1500 * 50  # the hashes and ciphertexts are there
    for person in crowd + [changed(p, 1) for p in crowd[:50]]:
        planted = {
            person.email,
            person.phone,
            person.name,
            person.first_name,
            person.last_name,
            person.postcode,
            person.address,
            normalise_email(person.email) or "",
            normalise_phone(person.phone) or "",
            normalise_postcode(person.postcode) or "",
        }
        for value in planted:
            if len(value) < 3:
                continue
            lowered = value.lower()
            if " " in lowered:
                assert lowered not in text, (person.customer_id, value)
            else:  # a short word can hide inside another ("tom" in "customers")
                assert lowered not in words, (person.customer_id, value)
            if len(value) >= 6:  # shorter strings occur by chance in random bytes
                assert value.encode() not in blobs, (person.customer_id, value)
                assert value.lower().encode() not in blobs, (person.customer_id, value)


# --- contact details ---------------------------------------------------------------------


def test_contacts_decrypt_only_for_the_dpo_and_each_reveal_is_audited(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    crowd = people(50)
    do_import(db, keys, to_csv(crowd))
    for role in (Role.ADMIN, Role.HELPDESK, Role.SECURITY, Role.AUDITOR):
        user = users.create(role)
        principal = Principal("user", user.id, user.email, role)
        with pytest.raises(PermissionDenied):
            ContactService(db, principal, keys).reveal_for_notification(
                [crowd[0].customer_id], "curiosity"
            )
    officer = dpo(users)
    wanted = [crowd[7], crowd[3]]
    revealed = ContactService(db, officer, keys).reveal_for_notification(
        [p.customer_id for p in wanted], "Breach 2026-11: lost phone of J. Smith"
    )
    db.commit()
    assert [(c.customer_id, c.name, c.email) for c in revealed] == [
        (p.customer_id, p.name, p.email) for p in wanted
    ]
    assert revealed[0].postal_address == f"{wanted[0].address}, {wanted[0].postcode}"
    [event] = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "customers:contact:revealed")
    ).all()
    assert event.actor_id == officer.user_id
    assert event.details["customer_ids"] == [p.customer_id for p in wanted]
    assert event.details["purpose"] == "Breach 2026-11: lost phone of J. Smith"
    with pytest.raises(InvalidInput, match="purpose"):
        ContactService(db, officer, keys).reveal_for_notification([crowd[0].customer_id], "  ")


def test_another_master_key_cannot_decrypt(db: Session, keys: KeyRing, users: UserFactory) -> None:
    crowd = people(5)
    do_import(db, keys, to_csv(crowd))
    other = KeyRing(bytes([7]) * 32)
    assert other.master != keys.master
    with pytest.raises(ContactUnreadable):
        ContactService(db, dpo(users), other).reveal_for_notification(
            [crowd[0].customer_id], "notification"
        )


def _contact(db: Session, person: Person) -> CustomerContact:
    customer_id = db.scalar(select(Customer.id).where(Customer.external_id == person.customer_id))
    contact = db.get(CustomerContact, customer_id)
    assert contact is not None and contact.email is not None
    return contact


@pytest.mark.parametrize("attack", ["flip-a-bit", "swap-rows", "swap-fields"])
def test_tampered_or_moved_ciphertext_fails_authentication(
    db: Session, keys: KeyRing, users: UserFactory, attack: str
) -> None:
    crowd = people(5)
    do_import(db, keys, to_csv(crowd))
    a, b = _contact(db, crowd[0]), _contact(db, crowd[1])
    assert a.email and b.email and a.name
    if attack == "flip-a-bit":
        changes = [
            (a.customer_id, {"email": a.email[:20] + bytes([a.email[20] ^ 1]) + a.email[21:]})
        ]
    elif attack == "swap-rows":
        changes = [(a.customer_id, {"email": b.email}), (b.customer_id, {"email": a.email})]
    else:
        changes = [(a.customer_id, {"email": a.name, "name": a.email})]
    for customer_id, values in changes:
        db.execute(
            update(CustomerContact)
            .where(CustomerContact.customer_id == customer_id)
            .values(**values)
        )
    db.commit()
    db.expire_all()
    service = ContactService(db, dpo(users), keys)
    with pytest.raises(ContactUnreadable):
        service.reveal_for_notification([crowd[0].customer_id], "notification")
    # An untouched customer still decrypts.
    [ok] = service.reveal_for_notification([crowd[2].customer_id], "notification")
    assert ok.email == crowd[2].email


# --- the index, loaded back ---------------------------------------------------------------


def test_the_loaded_index_matches_the_same_customers_as_one_built_from_the_csv(
    db: Session, keys: KeyRing, imported: ImportRun
) -> None:
    loaded = EdmIndexLoader(db, SYSTEM, keys).load()
    mapping = map_columns(HEADER, id_column="Customer ID")
    builder = EdmIndexBuilder(keys)
    for person in BASE:
        builder.add(*mapping.read(person.row()))
    direct = builder.build()
    assert len(loaded) == len(direct) == 5000
    assert loaded.nbytes() == direct.nbytes()

    sample = BASE[::25]
    table = [[p.name, p.email.upper(), p.postcode.lower()] for p in sample]
    strangers = [[p.name, p.email, "ZZ99 9ZZ"] for p in people(20, seed=123, start=700_000)]
    from_db = loaded.match_rows(table + strangers)
    from_csv = direct.match_rows(table + strangers)
    assert from_db.customer_ids == from_csv.customer_ids == sorted(p.customer_id for p in sample)
    prose = " ".join(f"Call {p.first_name} on {p.phone} about {p.email}." for p in sample[:40])
    from spillguard.inspection import InspectionEngine

    findings = InspectionEngine().scan_text(prose).findings
    assert (
        loaded.match_text(prose, findings).customer_ids
        == direct.match_text(prose, findings).customer_ids
    )
    assert len(loaded.match_text(prose, findings).customer_ids) >= 35


def test_removed_customers_leave_the_loaded_index(db: Session, keys: KeyRing) -> None:
    crowd = people(30)
    do_import(db, keys, to_csv(crowd))
    do_import(db, keys, to_csv(crowd[5:]))
    index = EdmIndexLoader(db, SYSTEM, keys).load()
    rows = [[p.email, p.name] for p in crowd[:10]]
    assert index.match_rows(rows).customer_ids == [p.customer_id for p in crowd[5:10]]
    stats = CustomerDirectoryService(db, SYSTEM).stats()
    assert (stats.customers, stats.removed, stats.with_contact) == (25, 5, 25)
    assert stats.hashes_by_kind[FieldKind.EMAIL.value] == 25
