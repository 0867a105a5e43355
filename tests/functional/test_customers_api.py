"""The customer-directory API through the real app, on SQLite and PostgreSQL: import and
incremental re-import of a CSV upload, the import history and directory counts, who may
do what, and bad files refused as problems with nothing half-imported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.app import create_app
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.settings import Settings
from spillguard.customers.models import Customer, ImportRun
from tests.factories.customers import HEADER, changed, people, to_csv
from tests.factories.users import UserFactory
from tests.functional.test_api_errors import assert_clean_problem

BASE = people(60, seed=31)
URL = "/api/v1/customers/imports"


def upload(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    *,
    name: str = "customers.csv",
    id_column: str | None = "Customer ID",
    maps: list[str] | None = None,
):
    form: dict[str, object] = {}
    if id_column is not None:
        form["id_column"] = id_column
    if maps:
        form["map"] = maps
    return client.post(URL, files={"file": (name, data, "text/csv")}, data=form, headers=headers)


@pytest.fixture
def dpo(users: UserFactory) -> dict[str, str]:
    return users.auth("dpo")


def nothing_stored(db: Session) -> bool:
    db.expire_all()
    customers = db.scalar(select(func.count()).select_from(Customer))
    runs = db.scalar(select(func.count()).select_from(ImportRun))
    return customers == 0 and runs == 0


def test_import_re_import_history_and_counts(
    client: TestClient, dpo: dict[str, str], users: UserFactory, db: Session
) -> None:
    first = upload(client, dpo, to_csv(BASE))
    assert first.status_code == 201, first.text
    run = first.json()
    assert (run["rows"], run["added"], run["changed"], run["removed"]) == (60, 60, 0, 0)
    assert run["mapping"] == {
        "Customer ID": "id",
        "First Name": "first_name",
        "Surname": "last_name",
        "Email": "email",
        "Mobile": "phone",
        "Postcode": "postcode",
        "Address": "address",
        "DOB": "date_of_birth",
    }
    assert run["file_name"] == "customers.csv" and run["encoding"]

    edits = {p.customer_id: changed(p, n) for n, p in enumerate(BASE[:4])}
    second_rows = [edits.get(p.customer_id, p) for p in BASE[:-3]] + people(2, start=9000)
    second = upload(client, dpo, to_csv(second_rows), name="december.csv")
    assert second.status_code == 201, second.text
    counts = second.json()
    assert [counts[k] for k in ("added", "changed", "unchanged", "removed")] == [2, 4, 53, 3]

    auditor = users.auth("auditor")
    listing = client.get(URL, params={"limit": 1}, headers=auditor)
    assert listing.status_code == 200
    page = listing.json()
    assert page["total"] == 2 and page["limit"] == 1
    assert page["items"][0]["id"] == counts["id"]  # newest first
    older = client.get(URL, params={"limit": 1, "offset": 1}, headers=auditor).json()
    assert older["items"][0]["file_name"] == "customers.csv"
    one = client.get(f"{URL}/{run['id']}", headers=auditor)
    assert one.status_code == 200 and one.json() == run
    assert_clean_problem(client.get(f"{URL}/999999", headers=auditor), 404)

    stats = client.get("/api/v1/customers", headers=auditor)
    assert stats.status_code == 200, stats.text
    body = stats.json()
    assert (body["customers"], body["removed"], body["with_contact"]) == (59, 3, 59)
    assert set(body["fields_present"]) >= {"email", "phone", "postcode", "first_name"}
    assert body["hashes_by_kind"]["email"] == 59
    assert body["last_import"]["id"] == counts["id"]

    everything = first.text + second.text + listing.text + stats.text
    for person in BASE[:20]:
        assert person.email not in everything and person.last_name not in everything
    actions = db.scalars(
        select(AuditEvent.action).where(AuditEvent.action.startswith("customers:"))
    ).all()
    assert actions == ["customers:import:completed"] * 2


def test_map_overrides_and_a_recognised_id_column(client: TestClient, dpo: dict[str, str]) -> None:
    header = ["Ref", "Mobile No", "E-mail", "Notes"]
    rows = [[p.customer_id, p.phone, p.email, "vip"] for p in BASE[:5]]
    data = ("\n".join(",".join(r) for r in [header, *rows]) + "\n").encode()
    response = upload(client, dpo, data, id_column=None, maps=["Ref=id", "Mobile No=phone", ""])
    assert response.status_code == 201, response.text
    assert response.json()["mapping"] == {"Ref": "id", "Mobile No": "phone", "E-mail": "email"}
    # The id column found by its header name when not given.
    recognised = upload(client, dpo, to_csv(BASE[:5]), id_column=None)
    assert recognised.status_code == 201, recognised.text


@pytest.mark.parametrize(
    ("role", "view", "load"),
    [
        ("admin", 200, 201),
        ("dpo", 200, 201),
        ("security", 200, 403),
        ("auditor", 200, 403),
        ("helpdesk", 403, 403),
    ],
)
def test_who_may_view_and_import(
    client: TestClient, users: UserFactory, role: str, view: int, load: int
) -> None:
    headers = users.auth(role)
    assert client.get("/api/v1/customers", headers=headers).status_code == view
    assert client.get(URL, headers=headers).status_code == view
    response = upload(client, headers, to_csv(BASE[:3]))
    assert response.status_code == load, response.text


@pytest.mark.parametrize(
    ("data", "fields", "says"),
    [
        (to_csv(BASE[:3]), {"id_column": "Client Number"}, "no column 'Client Number'"),
        (
            to_csv(BASE[:3], header=["Ref", *HEADER[1:]]),
            {"id_column": None},
            "no customer id column",
        ),
        (to_csv(BASE[:3]), {"maps": ["Mobile=telephone"]}, "unknown field kind 'telephone'"),
        (to_csv(BASE[:3]), {"maps": ["Mobile"]}, "COLUMN=KIND"),
        (to_csv(BASE[:3]), {"maps": ["Nope=phone"]}, "no column 'Nope'"),
        (to_csv([BASE[0], BASE[1], BASE[0]]), {}, "more than once"),
        (b"", {}, "empty"),
        (b"\x00\xff\xfe\x00\x81" * 400, {}, "not readable text"),
        (
            b'Customer ID,Email\nC1,"a@example.com\nC2,b@example.com\n' + b"x" * 200_000,
            {},
            "malformed CSV",
        ),
        (
            to_csv(BASE[:3], header=["Customer ID", "Colour", "Size"] + [""] * 5),
            {},
            "no column holds",
        ),
        (b'Customer ID,Email\nC1,"a@example.com\nC2,b@example.com\n', {}, "malformed CSV"),
    ],
)
def test_bad_files_are_problems_and_store_nothing(
    client: TestClient, dpo: dict[str, str], db: Session, data: bytes, fields: dict, says: str
) -> None:
    kwargs = {"id_column": "Customer ID", **fields}
    response = upload(client, dpo, data, id_column=kwargs["id_column"], maps=kwargs.get("maps"))
    body = assert_clean_problem(response, 422)
    assert says in body["detail"], body
    assert nothing_stored(db)


def test_a_quote_left_open_refuses_the_file_and_removes_nobody(
    client: TestClient, dpo: dict[str, str], db: Session
) -> None:
    """A stray quote read the rest of the file as one field, and every customer after it
    was removed as missing from the list: the file is refused, the directory unchanged."""
    assert upload(client, dpo, to_csv(BASE[:40])).status_code == 201
    lines = to_csv(BASE[:40]).decode().splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\r\n") + ',"unclosed\r\n'
    response = upload(client, dpo, "".join(lines).encode())
    assert "malformed CSV" in assert_clean_problem(response, 422)["detail"]
    db.expire_all()
    active = select(func.count()).select_from(Customer).where(Customer.removed_at.is_(None))
    assert db.scalar(active) == 40


def test_wrong_requests_are_problems(client: TestClient, dpo: dict[str, str]) -> None:
    as_json = client.post(URL, json={"file": "Customer ID\nC1\n"}, headers=dpo)
    assert "body.file" in {e["field"] for e in assert_clean_problem(as_json, 422)["errors"]}
    no_file = client.post(URL, data={"id_column": "Customer ID"}, headers=dpo)
    assert_clean_problem(no_file, 422)
    assert_clean_problem(client.get(f"{URL}/0", headers=dpo), 422)
    assert_clean_problem(client.get(URL, params={"limit": 501}, headers=dpo), 422)


@pytest.fixture
def small_cap(app: FastAPI, settings: Settings, keys: KeyRing) -> Iterator[TestClient]:
    """The app with a 4 KiB import cap (``app`` empties the tables afterwards)."""
    capped = create_app(
        settings.model_copy(update={"customers_import_max_upload_bytes": 4096}), keys
    )
    with TestClient(capped) as test_client:
        yield test_client
    capped.state.engine.dispose()


def test_an_oversize_upload_is_413_and_points_to_the_cli(
    small_cap: TestClient, users: UserFactory, db: Session
) -> None:
    headers = users.auth("dpo")
    data = to_csv(BASE)
    assert len(data) > 4096
    body = assert_clean_problem(upload(small_cap, headers, data), 413)
    assert "spillguard customers import" in body["detail"]
    huge = upload(small_cap, headers, data * 300)
    assert_clean_problem(huge, 413)
    assert nothing_stored(db)
    small = upload(small_cap, headers, to_csv(BASE[:5]))
    assert small.status_code == 201, small.text
