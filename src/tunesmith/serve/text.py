"""The answer text a client sees while tokens arrive: cut at stop sequences, and never taken back.

A streamed answer must join up to exactly the non-streamed one, so while generating we hold back what might
still change: a tail that could be the start of a stop sequence, a half-decoded character, and (for chat,
whose answers are stripped like ``tunesmith generate``'s) trailing whitespace.
"""

from __future__ import annotations


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the first stop sequence (excluded) and whether one was found."""
    cuts = [index for index in (text.find(s) for s in stops if s) if index >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def settled_text(text: str, stops: list[str], strip: bool) -> str:
    """The part of a still-growing answer that no later token can change."""
    text, stopped = cut_at_stop(text, stops)
    if stopped:
        return final_text(text, [], strip)
    text = text[: len(text) - _partial_stop(text, stops)].rstrip("\ufffd")
    return text.strip() if strip else text


def final_text(text: str, stops: list[str], strip: bool) -> str:
    """The finished answer."""
    text, _ = cut_at_stop(text, stops)
    return text.strip() if strip else text


def _partial_stop(text: str, stops: list[str]) -> int:
    # The longest tail of text that is a proper prefix of some stop sequence.
    return max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
