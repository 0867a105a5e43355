"""Numbers typed into console forms: only ASCII digits are a number ("²" and "٣" are
digits to str.isdigit, and int() refuses the first), so nothing typed is a 500."""

from __future__ import annotations

import pytest

from spillguard.core.errors import InvalidInput
from spillguard.incidents.notices_views import _whole_number
from spillguard.incidents.views import _optional_int


@pytest.mark.parametrize("typed", ["²", "٣", "1²", "abc", "-1", "1" * 19])
def test_what_is_not_a_number_is_refused_or_ignored(typed: str) -> None:
    with pytest.raises(InvalidInput, match="must be a number"):
        _optional_int(typed, "owner_id")
    assert not _whole_number(typed)


def test_numbers_are_read() -> None:
    assert _optional_int(" 42 ", "owner_id") == 42
    assert _optional_int("", "owner_id") is None
    assert _whole_number("42") and _whole_number("1" * 18)
