"""Lexical evidence: find forgotten names in text, tolerant of case, accents, spacing and typos.

    >>> lexicon = Lexicon()
    >>> lexicon.set("fr_1", ["Hsiao Yun-Hwa"])
    >>> lexicon.find("who is hsiao yunhwa?")
    {'fr_1': [Hit(term='Hsiao Yun-Hwa', partial=False)]}
    >>> lexicon.find("what did Hsaio Yun Hwa write")   # one transposition
    {'fr_1': [Hit(term='Hsiao Yun-Hwa', partial=False)]}
    >>> lexicon.find("books by Yun-Hwa")               # a part of the name: weaker evidence
    {'fr_1': [Hit(term='Yun-Hwa', partial=True)]}

Text and terms are normalised (NFKD, accents stripped, lower case, punctuation to spaces); a term
matches a window of text tokens whose letters, spaces removed, are within a small edit distance.
The parts of a multi-word name (of at least ``MIN_PART_CHARS`` letters) are partial terms: alone
they are common words or other people's names too often to block on.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from typing import NamedTuple

from rapidfuzz import fuzz, process

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
# Shorter terms must match exactly: one edit in a short name matches ordinary words.
MIN_FUZZY_CHARS = 7
FUZZY_SCORE = 88.0  # rapidfuzz ratio (0-100); ~1 edit per 8 letters
MIN_PART_CHARS = 5


class Hit(NamedTuple):
    term: str
    partial: bool


def normalise(text: str) -> list[str]:
    """Tokens of ``text``: accents stripped, lower case, split on anything but letters/digits."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return [t for t in _NON_ALNUM.split(ascii_text) if t]


class Lexicon:
    """Names per forget request, searchable in text."""

    def __init__(self) -> None:
        self._terms: dict[str, tuple[str, Hit]] = {}  # key (letters only) -> (request id, hit)
        self._by_request: dict[str, list[str]] = defaultdict(list)
        self._max_tokens = 1
        self._keys: list[str] = []  # rapidfuzz's choices, rebuilt on change
        self.max_chars = 0  # longest name, in characters as written

    def set(self, request_id: str, terms: list[str]) -> None:
        self.remove(request_id)
        entries = {}
        for term in terms:
            parts = term.split()
            if len(parts) > 1:
                for part in parts:
                    entries.setdefault("".join(normalise(part)), Hit(part, partial=True))
            entries["".join(normalise(term))] = Hit(term, partial=False)
            self._max_tokens = max(self._max_tokens, len(normalise(term)) + 1)
            self.max_chars = max(self.max_chars, len(term))
        for key, hit in entries.items():
            if len(key) >= (MIN_PART_CHARS if hit.partial else 1) and key not in self._terms:
                self._terms[key] = (request_id, hit)
                self._by_request[request_id].append(key)
        self._keys = list(self._terms)

    def remove(self, request_id: str) -> None:
        for key in self._by_request.pop(request_id, []):
            self._terms.pop(key, None)
        self._keys = list(self._terms)

    def __len__(self) -> int:
        return len(self._terms)

    def find(self, text: str) -> dict[str, list[Hit]]:
        """Request id -> the terms of that request found in ``text``."""
        if not self._terms:
            return {}
        tokens = normalise(text)
        windows = {
            "".join(tokens[i : i + n])
            for n in range(1, self._max_tokens + 1)
            for i in range(len(tokens) - n + 1)
        }
        found: dict[str, list[Hit]] = defaultdict(list)
        for window in windows:
            if window in self._terms:
                hit = window
            elif len(window) >= MIN_FUZZY_CHARS:
                best = process.extractOne(
                    window, self._keys, scorer=fuzz.ratio, score_cutoff=FUZZY_SCORE
                )
                if best is None or len(best[0]) < MIN_FUZZY_CHARS:
                    continue
                hit = best[0]
            else:
                continue
            request_id, term = self._terms[hit]
            if term not in found[request_id]:
                found[request_id].append(term)
        # A whole name says all its parts say.
        return {
            request_id: [h for h in hits if not h.partial] or hits
            for request_id, hits in found.items()
        }
