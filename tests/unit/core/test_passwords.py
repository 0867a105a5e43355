"""Password hashing (argon2id) and the rules a new password must meet.

These tests use the real (deliberately slow) argon2 parameters, so they hash sparingly.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from argon2 import Type, extract_parameters
from faker import Faker

from spillguard.core.errors import InvalidInput
from spillguard.core.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    check_password_rules,
    hash_password,
    needs_rehash,
    verify_password,
)

# The production parameters: these tests check the real hashing cost.
pytestmark = pytest.mark.real_argon2

fake = Faker("en_GB")


@pytest.fixture(scope="module")
def hashed() -> tuple[str, str]:
    """A password (with non-ASCII characters) and its hash, computed once."""
    password = fake.password(length=16) + "-pässwörd-日本-🔑"
    return password, hash_password(password)


def test_hash_is_argon2id_and_never_contains_the_password(hashed: tuple[str, str]) -> None:
    password, stored = hashed
    assert stored.startswith("$argon2id$")
    assert password not in stored
    assert needs_rehash(stored) is False


def test_hash_parameters_meet_the_owasp_minimum(hashed: tuple[str, str]) -> None:
    """OWASP: argon2id with at least 19 MiB of memory and 2 iterations, 128-bit salt."""
    params = extract_parameters(hashed[1])
    assert params.type is Type.ID
    assert params.memory_cost >= 19 * 1024
    assert params.time_cost >= 2
    assert params.salt_len >= 16


def test_the_same_password_hashes_differently_each_time(hashed: tuple[str, str]) -> None:
    password, stored = hashed
    assert hash_password(password) != stored


def test_verify_accepts_the_password(hashed: tuple[str, str]) -> None:
    assert verify_password(hashed[1], hashed[0]) is True


@pytest.mark.parametrize(
    "change", [lambda p: p + "x", lambda p: p.upper(), lambda p: p[:-1], lambda p: ""]
)
def test_verify_rejects_any_other_password(
    hashed: tuple[str, str], change: Callable[[str], str]
) -> None:
    password, stored = hashed
    assert verify_password(stored, change(password)) is False


def test_verify_against_no_hash_is_false(hashed: tuple[str, str]) -> None:
    """A user without a password (or an unknown account) can never log in."""
    assert verify_password(None, hashed[0]) is False
    assert verify_password(None, "spillguard-timing-equaliser") is False


@pytest.mark.parametrize("stored", ["", "not-a-hash", "$argon2id$broken", "$2b$12$abcdef"])
def test_verify_against_a_corrupt_hash_is_false_not_an_error(stored: str) -> None:
    assert verify_password(stored, "correct horse battery staple") is False


def test_minimum_and_maximum_are_12_and_1024() -> None:
    assert (MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH) == (12, 1024)


@pytest.mark.parametrize("length", [MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH])
def test_lengths_within_the_rules_are_accepted(length: int) -> None:
    candidate = (fake.password(length=40) * 40)[:length]
    check_password_rules(candidate)
    assert hash_password(candidate).startswith("$argon2id$")


@pytest.mark.parametrize(
    ("candidate", "words"),
    [
        ("a" * (MIN_PASSWORD_LENGTH - 1), "at least 12"),
        ("", "at least 12"),
        ("a" * (MAX_PASSWORD_LENGTH + 1), "at most 1024"),
        (" " * MIN_PASSWORD_LENGTH, "blank"),
        ("\t \n" * 10, "blank"),
    ],
    ids=["too-short", "empty", "too-long", "spaces", "whitespace"],
)
def test_passwords_breaking_the_rules_are_refused(candidate: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        check_password_rules(candidate)
    with pytest.raises(InvalidInput, match=words):
        hash_password(candidate)
