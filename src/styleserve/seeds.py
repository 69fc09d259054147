"""Integer lists on command lines (seeds, ws indices): ``'0-7,12'``, as the official ``gen_images.py`` reads them.

One parser for every command line of the project (``styleserve generate|grid|walk|batch``, ``styleserve-render``):
:func:`parse_spans` checks the text and returns its items as half-open spans without expanding them (so
``0-4294967295`` costs nothing); :func:`parse_range` expands them; :func:`merge_spans` sorts and merges them.
Errors are ``ValueError`` with a message that quotes the text and shows an example.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["merge_spans", "parse_range", "parse_spans"]

_ITEM_RE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")


def parse_spans(text: str, *, example: str = "0-3,7", maximum: int | None = None) -> list[tuple[int, int]]:
    """``'0-3,7'`` -> ``[(0, 4), (7, 8)]``: one half-open span per item, in the order written (repeats kept).

    Items are ``N`` or ``A-B`` (inclusive, ``A <= B``) of non-negative integers; ``maximum`` bounds every value.
    """
    if not text.strip():
        raise ValueError(f"empty range; expected e.g. {example!r}")
    spans: list[tuple[int, int]] = []
    for part in text.split(","):
        item = part.strip()
        m = _ITEM_RE.match(item)
        if m is None:
            what = "empty item" if not item else f"bad item {item!r}"
            raise ValueError(f"{what} in {text!r}; expected N or A-B (non-negative integers), e.g. {example!r}")
        a = int(m.group(1))
        b = a if m.group(2) is None else int(m.group(2))
        if b < a:
            raise ValueError(f"descending range {item!r} in {text!r}; write it as {b}-{a}")
        if maximum is not None and b > maximum:
            raise ValueError(f"{b} in {text!r} is above the largest value {maximum}")
        spans.append((a, b + 1))
    return spans


def parse_range(
    text: str, *, max_items: int = 100_000, example: str = "0-3,7", maximum: int | None = None
) -> list[int]:
    """``'0-3,7'`` -> ``[0, 1, 2, 3, 7]`` (order and repeats kept); ValueError beyond ``max_items`` items."""
    out: list[int] = []
    for a, b in parse_spans(text, example=example, maximum=maximum):
        if len(out) + (b - a) > max_items:
            raise ValueError(f"{text!r} expands to more than {max_items} items")
        out.extend(range(a, b))
    return out


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open spans -> sorted, disjoint, merged spans (repeats and overlaps collapse)."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged
