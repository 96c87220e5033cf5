"""Formatting helpers: Markdown code spans that show any text as is."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from costtrack.format import code, ms


def _spans(markdown: str) -> list[str]:
    tokens = MarkdownIt("commonmark").parseInline(markdown)
    return [child.content for token in tokens for child in token.children or [] if child.type == "code_inline"]


@pytest.mark.parametrize("text", [
    "costtrack stats",
    "costtrack stats --database-url 'sqlite:///a`b.db'",
    "`starts with one",
    "ends with two``",
    "a ``` run of three and one ` more",
    "`",
    " ",
    "  two spaces  ",
])  # fmt: skip
def test_a_code_span_shows_its_text_as_is(text):
    """A backtick in a database URL or an endpoint ended the span early and broke the command it showed."""
    assert _spans(f"Run {code(text)} now.") == [text]


def test_an_empty_text_is_still_a_code_span():
    """Two backticks opened a span nothing closed: the text around it showed them as they are."""
    assert _spans(f"Run {code('')} now.") == [" "]


def test_line_breaks_become_spaces():
    assert _spans(code("a\nb\r\nc")) == ["a b  c"]


def test_negative_milliseconds_get_a_thousands_separator_as_positive_ones():
    """A confidence interval's lower end printed as -3147.53 ms beside 7,305 ms (review finding)."""
    assert (ms(-3147.53), ms(7305.2), ms(-4.5), ms(4.5), ms(None)) == ("-3,148 ms", "7,305 ms", "-4.50 ms", "4.50 ms", "-")


def test_a_count_is_exact_past_two_to_the_53() -> None:
    """Review finding: a count went through a float, so 2**63 summed by Postgres printed ...808 for ...807."""
    from costtrack.format import count

    assert count(2**63 - 1) == "9,223,372,036,854,775,807" and count(1234.0) == "1,234" and count(None) == "-"


@pytest.mark.parametrize("value", [0.1365499999999991, 0.13655000000000006, 0.13655])
def test_dollars_round_the_same_whatever_the_float_noise_of_a_sum(value) -> None:
    """Review finding: $0.13655 summed by Postgres (0.1365499999999991) read $0.1365, by SQLite $0.1366."""
    from costtrack.format import usd
    from costtrack.reports.operands import as_shown

    assert usd(value) == "$0.1366" and as_shown(value, 4) == 0.1366  # a formula's operands are checked as shown


def test_dollars_keep_their_cents_and_python_s_rounding_of_an_exact_value() -> None:
    """Review of the first fix: 12 significant digits dropped the cents of $12,345,678,901.23, and rounding halves up
    made formulas checked with Python's rounding fail to add up ($758.385 read $758.39, checked as 758.38)."""
    from costtrack.format import usd
    from costtrack.reports.operands import as_shown

    assert usd(12345678901.23) == "$12,345,678,901.23" and usd(987654321098.76) == "$987,654,321,098.76"
    assert usd(758.385, 2) == f"${758.385:.2f}" == f"${as_shown(758.385, 2):.2f}"
    assert usd(5.0, 30) == "$5." + "0" * 30
