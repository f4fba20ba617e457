"""Streamed text never takes back what it sent, and ends where the non-streamed answer ends."""

from __future__ import annotations

import pytest

from tunesmith.serve.text import cut_at_stop, final_text, settled_text


def test_cut_at_the_earliest_stop() -> None:
    assert cut_at_stop("one two. three!", ["!", "."]) == ("one two", True)
    assert cut_at_stop("one two", ["!"]) == ("one two", False)
    assert cut_at_stop("one", [""]) == ("one", False)


@pytest.mark.parametrize(
    ("text", "stops", "strip", "settled"),
    [
        ("  hello wor", [], True, "hello wor"),  # leading space dropped like generate's strip
        ("hello  ", [], True, "hello"),  # trailing space may be followed by more text, or stripped
        ("hello  ", [], False, "hello  "),
        ("hello EN", ["END"], False, "hello "),  # "EN" may become the stop sequence
        ("hello E", ["END"], True, "hello"),
        ("hello END more", ["END"], False, "hello "),
        ("caf\ufffd", [], False, "caf"),  # half a UTF-8 character
    ],
)
def test_settled_text_holds_back_what_may_change(text: str, stops: list[str], strip: bool, settled: str) -> None:
    assert settled_text(text, stops, strip) == settled


def test_every_settled_prefix_leads_to_the_final_text() -> None:
    tokens = ["  Hey", " there", " E", "N", "D", " after"]
    for strip in (True, False):
        final = final_text("".join(tokens), ["END"], strip)
        sent = ""
        for i in range(1, len(tokens) + 1):
            settled = settled_text("".join(tokens[:i]), ["END"], strip)
            assert settled.startswith(sent) and final.startswith(settled)
            sent = settled
        assert final == ("Hey there" if strip else "  Hey there ")
