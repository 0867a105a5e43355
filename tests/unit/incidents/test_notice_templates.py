"""Notice templates: refused when saved if they name an unknown placeholder, do not parse,
or try to leave the sandbox; the defaults carry what Art 34(2) asks, in clear words."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spillguard.incidents.models import NoticeChannel
from spillguard.incidents.notice_templates import (
    DEFAULT_TEMPLATES,
    PLACEHOLDERS,
    TemplateRefused,
    check_template,
    render_notice,
    sample_context,
)


@pytest.mark.parametrize("channel", [NoticeChannel.EMAIL, NoticeChannel.LETTER])
def test_the_defaults_pass_their_own_check_and_say_what_article_34_asks(
    channel: NoticeChannel,
) -> None:
    default = DEFAULT_TEMPLATES[channel]
    check_template(default.subject, default.body)
    content = render_notice(default.subject, default.body, sample_context())
    body = content.body
    for heading in (
        "What happened",
        "The information involved",
        "What this could mean for you",
        "What we have done",
        "What you can do",
        "Who to contact",
    ):
        assert heading in body
    ctx = sample_context()
    for value in (
        ctx.what_happened,
        ctx.data_involved,
        ctx.likely_consequences,
        ctx.measures_taken,
        ctx.advice,
        ctx.contact_point,
    ):
        assert value in body
    assert "INC-0" in content.subject
    assert "{{" not in body and "}}" not in body


@pytest.mark.parametrize(
    ("subject", "body", "unknown"),
    [
        ("Hi", "Dear {{ customer_nmae }}", ["customer_nmae"]),
        ("{{ card }}", "Dear {{ customer_name }}", ["card"]),
        ("Hi", "{% for x in items %}{{ x }}{% endfor %}", ["items"]),
        ("Hi", "{{ customer_name }} {{ a }} {{ b }}", ["a", "b"]),
    ],
)
def test_an_unknown_placeholder_is_refused_naming_it(
    subject: str, body: str, unknown: list[str]
) -> None:
    with pytest.raises(TemplateRefused) as refused:
        check_template(subject, body)
    assert refused.value.status == 422
    assert refused.value.extra["unknown"] == unknown
    for name in unknown:
        assert "{{ " + name + " }}" in refused.value.detail


def test_a_loop_variable_of_its_own_is_not_an_unknown_placeholder() -> None:
    check_template(
        "Hi", "{% set who = customer_name %}{{ who }}{% for c in advice %}{{ c }}{% endfor %}"
    )


@pytest.mark.parametrize(
    ("subject", "body", "words"),
    [
        ("Hi", "{% if %}", "not a valid template"),
        ("Hi", "{{ customer_name.__class__.__mro__ }}", "unsafe"),
        ("Hi", "{{ customer_name.format.__globals__ }}", "unsafe"),
        ("", "body", "subject is empty"),
        ("Hi", "   ", "body is empty"),
        ("Two\nlines", "x", "one line"),
        ("x" * 201, "x", "one line"),
        ("Hi", "x" * 20_001, "longer than"),
        ("Hi", "{{ customer_name + 1 }}", "cannot be rendered"),
    ],
)
def test_bad_templates_are_refused_at_save(subject: str, body: str, words: str) -> None:
    with pytest.raises(TemplateRefused) as refused:
        check_template(subject, body)
    assert words in refused.value.detail


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20))
def test_any_name_outside_the_set_is_refused_and_any_inside_accepted(name: str) -> None:
    body = "Dear {{ " + name + " }}"
    if name in PLACEHOLDERS:
        check_template("Hi", body)
    else:
        try:
            check_template("Hi", body)
        except TemplateRefused as refused:
            # A Jinja2 keyword (e.g. "not") is a syntax error instead; either way refused.
            assert (
                "unknown placeholder" in refused.detail
                or "not a valid" in refused.detail
                or ("cannot be rendered" in refused.detail)
            )
        else:
            assert name in {"true", "false", "none", "True", "False", "None"}


def test_rendering_keeps_the_subject_on_one_line() -> None:
    content = render_notice("About {{ what_happened }}", "x", sample_context())
    assert "\n" not in content.subject
