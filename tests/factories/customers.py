"""Customer lists for the directory tests: Faker en_GB people written as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace

from faker import Faker

HEADER = ["Customer ID", "First Name", "Surname", "Email", "Mobile", "Postcode", "Address", "DOB"]


@dataclass(frozen=True)
class Person:
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    postcode: str
    address: str
    dob: str

    def row(self) -> list[str]:
        return [
            self.customer_id,
            self.first_name,
            self.last_name,
            self.email,
            self.phone,
            self.postcode,
            self.address,
            self.dob,
        ]

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def people(count: int, seed: int = 4, start: int = 0) -> list[Person]:
    """``count`` distinct customers with ids C0000000…, valid UK mobiles and postcodes."""
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    result = []
    for n in range(start, start + count):
        first, last = fake.first_name(), fake.last_name()
        result.append(
            Person(
                customer_id=f"C{n:07d}",
                first_name=first,
                last_name=last,
                email=f"{first}.{last}.{n}@{fake.free_email_domain()}".lower(),
                # 07400 000000 to 07409 999999: valid UK mobiles (unlike 07700 9xxxxx, which
                # libphonenumber rejects outside Ofcom's drama block), distinct per n.
                phone=f"0740{n % 10} {n // 10 % 1_000_000:06d}",
                postcode=fake.postcode(),
                address=fake.street_address().replace("\n", ", "),
                dob=fake.date_of_birth(minimum_age=18, maximum_age=90).strftime("%d/%m/%Y"),
            )
        )
    return result


def changed(person: Person, seed: int) -> Person:
    """The same customer with a new e-mail address and postcode."""
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    return replace(
        person,
        email=f"new.{seed}.{person.email}",
        postcode=fake.postcode(),
    )


def to_csv(rows: list[Person], header: list[str] = HEADER, encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for person in rows:
        writer.writerow(person.row())
    return buffer.getvalue().encode(encoding)
