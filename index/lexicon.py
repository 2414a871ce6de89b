"""Lexical evidence: find forgotten names in text, tolerant of case, accents, spacing and typos.

    >>> lexicon = Lexicon()
    >>> lexicon.set("fr_1", ["Hsiao Yun-Hwa"])
    >>> lexicon.find("who is hsiao yunhwa?")
    {'fr_1': [Hit(term='Hsiao Yun-Hwa', partial=False)]}
    >>> lexicon.find("what did Hsaio Yun Hwa write")   # one transposition
    {'fr_1': [Hit(term='Hsiao Yun-Hwa', partial=False)]}
    >>> lexicon.find("books by Yun-Hwa")               # a part of the name: weaker evidence
    {'fr_1': [Hit(term='Yun-Hwa', partial=True)]}
    >>> lexicon.find("H s i a o  Y u n - H w a, or H5140 YunHw4?")   # spaced out, leet
    {'fr_1': [Hit(term='Hsiao Yun-Hwa', partial=False)]}

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


_LEET = str.maketrans("4310572", "aeiostz")


def _squash(tokens: list[str]) -> list[str]:
    """Runs of one-letter tokens joined: spaced-out spelling ("H s i a o") becomes a word."""
    out: list[str] = []
    for token, previous in zip(tokens, [None, *tokens], strict=False):
        if len(token) == 1 and previous is not None and len(previous) == 1 and out:
            out[-1] += token
        else:
            out.append(token)
    return out


def spellings(text: str) -> list[list[str]]:
    """The text's tokens as written, with spaced letters joined, and with leet digits read."""
    tokens = normalise(text)
    squashed = _squash(tokens)
    return [tokens, squashed, [t.translate(_LEET) for t in squashed]]


def _deletions(key: str) -> set[str]:
    return {key[:i] + key[i + 1 :] for i in range(len(key))}


class Lexicon:
    """Names per forget request, searchable in text.

    Typos are found through one-deletion neighbourhoods (as SymSpell does): a key and a text
    window within one edit share a deletion, so each window costs a few dict look-ups however
    many names there are; candidates are then confirmed with rapidfuzz's ratio.
    """

    def __init__(self) -> None:
        self._terms: dict[str, dict[str, Hit]] = defaultdict(dict)  # key -> request id -> hit
        self._by_request: dict[str, list[str]] = defaultdict(list)
        self._deletions: dict[str, set[str]] = defaultdict(set)  # deletion -> keys
        self._max_tokens = 1
        self.max_chars = 0  # longest name, in characters as written

    def set(self, request_id: str, terms: list[str]) -> None:
        self.remove(request_id)
        entries: dict[str, Hit] = {}
        for term in terms:
            parts = term.split()
            if len(parts) > 1:
                for part in parts:
                    entries.setdefault("".join(normalise(part)), Hit(part, partial=True))
            entries["".join(normalise(term))] = Hit(term, partial=False)
            self._max_tokens = max(self._max_tokens, len(normalise(term)) + 1)
            self.max_chars = max(self.max_chars, len(term))
        for key, hit in entries.items():
            if len(key) < (MIN_PART_CHARS if hit.partial else 1):
                continue
            self._terms[key][request_id] = hit
            self._by_request[request_id].append(key)
            if len(key) >= MIN_FUZZY_CHARS:
                for deletion in _deletions(key):
                    self._deletions[deletion].add(key)

    def remove(self, request_id: str) -> None:
        for key in self._by_request.pop(request_id, []):
            owners = self._terms[key]
            owners.pop(request_id, None)
            if owners:
                continue
            del self._terms[key]
            for deletion in _deletions(key) if len(key) >= MIN_FUZZY_CHARS else ():
                self._deletions[deletion].discard(key)
                if not self._deletions[deletion]:
                    del self._deletions[deletion]

    def __len__(self) -> int:
        return len(self._terms)

    def _closest(self, window: str) -> str | None:
        """The key equal to ``window``, else the closest within one edit, else None."""
        if window in self._terms:
            return window
        if len(window) < MIN_FUZZY_CHARS - 1:
            return None
        candidates = set(self._deletions.get(window, ()))
        for deletion in _deletions(window):
            candidates |= self._deletions.get(deletion, set())
            if deletion in self._terms and len(deletion) >= MIN_FUZZY_CHARS:
                candidates.add(deletion)
        best = process.extractOne(window, candidates, scorer=fuzz.ratio, score_cutoff=FUZZY_SCORE)
        return best[0] if best else None

    def find(self, text: str) -> dict[str, list[Hit]]:
        """Request id -> the terms of that request found in ``text``."""
        if not self._terms:
            return {}
        windows = {
            "".join(tokens[i : i + n])
            for tokens in spellings(text)
            for n in range(1, self._max_tokens + 1)
            for i in range(len(tokens) - n + 1)
        }
        found: dict[str, list[Hit]] = defaultdict(list)
        for window in windows:
            key = self._closest(window)
            for request_id, hit in self._terms.get(key, {}).items() if key else ():
                if hit not in found[request_id]:
                    found[request_id].append(hit)
        # A whole name says all its parts say.
        return {
            request_id: [h for h in hits if not h.partial] or hits
            for request_id, hits in found.items()
        }
