"""Lexical evidence: find forgotten names in text, tolerant of case, accents, spacing and typos.

    >>> lexicon = Lexicon()
    >>> lexicon.set("fr_1", ["Hsiao Yun-Hwa"])
    >>> lexicon.find("who is hsiao yunhwa?")
    {'fr_1': [Hit(term='Hsiao Yun-Hwa', partial=False, typo=False)]}
    >>> [(h.term, h.typo) for h in lexicon.find("what did Hsaio Yun Hwa write")["fr_1"]]  # a swap
    [('Hsiao Yun-Hwa', True), ('Yun-Hwa', False)]
    >>> lexicon.find("books by Yun-Hwa")           # a part of the name: weaker evidence
    {'fr_1': [Hit(term='Yun-Hwa', partial=True, typo=False)]}
    >>> lexicon.find("H s i a o  Y u n - H w a, or H5140 YunHw4?")   # spaced out, leet
    {'fr_1': [Hit(term='Hsiao Yun-Hwa', partial=False, typo=False)]}

Text and terms are normalised (NFKD, accents stripped, lower case, punctuation to spaces); a term
matches a window of text tokens whose letters, spaces removed, are equal to its own or, for terms
of at least ``MIN_FUZZY_CHARS`` letters, one edit away (a deleted or inserted letter; from
``SUBSTITUTION_CHARS`` letters also a changed one or two neighbours swapped). One edit, not a
share of the length: with 10^4 forgotten names, two edits in a long name reached other people's
("Agnete Clausen" read as "Agnete Laursen").
The parts of a multi-word name (of at least ``MIN_PART_CHARS`` letters) are partial terms: alone
they are common words or other people's names too often to block on.

A stream's watch asks where a name could still be starting (``Lexicon.open_from``): the
earliest word from which the text so far, read as the lexicon reads it, is a prefix of some term
within the edits it tolerates; everything before it can go out::

    >>> lexicon.open_from("The author from Taipei wrote under Hsi")   # "Hsi" could be "Hsiao"
    35
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import defaultdict
from typing import NamedTuple

from rapidfuzz.distance import OSA, Indel

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
# Shorter terms must match exactly: one edit in a short name matches ordinary words.
MIN_FUZZY_CHARS = 7
MIN_PART_CHARS = 5


class Hit(NamedTuple):
    term: str
    partial: bool
    typo: bool = False
    """Written one edit away from the term: another person's name may read so too."""


def unaccented(text: str) -> str:
    """``text`` without accents (NFKD, combining marks dropped), in its own case."""
    if text.isascii():  # most streamed text is: no accents to strip
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalise(text: str) -> list[str]:
    """Tokens of ``text``: accents stripped, lower case, split on anything but letters/digits."""
    return [t for t in _NON_ALNUM.split(unaccented(text).lower()) if t]


LEET = str.maketrans("4310572", "aeiostz")


def _squash(tokens: list[tuple[str, int]], trim: tuple[int, int]) -> list[tuple[str, int]]:
    """Runs of one-letter tokens joined: spaced-out spelling ("H s i a o") becomes a word.
    ``trim``: letters left apart at a run's start and end, which may be words of their own
    ("a H s i a o ...": the article is no letter of the name)."""
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and len(tokens[j][0]) == 1:
            j += 1
        head, tail = trim if j - i - sum(trim) >= 2 else (0, 0)
        if j - i < 2:
            j = i + 1
            out.append(tokens[i])
        else:
            run = tokens[i + head : j - tail]
            out += [*tokens[i : i + head], ("".join(t for t, _ in run), run[-1][1])]
            out += tokens[j - tail : j]
        i = j
    return out


_TOKEN = re.compile(r"[0-9a-z]+")


def spellings(text: str) -> list[list[tuple[str, int]]]:
    """The text's tokens as written, with spaced letters joined (a run's first or last letter
    also apart), and with leet digits read; each with where it ends in ``text`` (for text that
    is not ASCII, its length: unknown). Text with neither has one spelling: a stream's watch
    reads every chunk's window, and most text has neither."""
    if text.isascii():  # lower-casing keeps every offset
        lowered = text.lower()
        tokens = [(m.group(), m.end()) for m in _TOKEN.finditer(lowered)]
        spaced, leet = _SPACED.search(lowered), _LEET_DIGIT.search(lowered)
    else:
        tokens = [(token, len(text)) for token in normalise(text)]
        spaced = any(len(a) == len(b) == 1 for (a, _), (b, _) in itertools.pairwise(tokens))
        leet = any(_LEET_DIGIT.search(token) for token, _ in tokens)
    squashed = [_squash(tokens, trim) for trim in _TRIMS] if spaced else []
    spelled = [tokens, *squashed]
    if leet:
        spelled += [[(t.translate(LEET), end) for t, end in s] for s in squashed or [tokens]]
    return spelled


_TRIMS = ((0, 0), (1, 0), (0, 1), (1, 1))
_SPACED = re.compile(r"(?<![0-9a-z])[0-9a-z][^0-9a-z]+[0-9a-z](?![0-9a-z])")
"""Two one-character tokens in a row (lower-cased text): letters spaced out."""
_LEET_DIGIT = re.compile("[4310572]")


def _deletions(key: str) -> set[str]:
    return {key[:i] + key[i + 1 :] for i in range(len(key))}


SUBSTITUTION_CHARS = 9
"""Shorter keys take one inserted or deleted letter only: a letter changed in a short name reads
as a neighbour's too often ("Stephan" for "Stephen")."""


def _one_edit(window: str, key: str) -> bool:
    """Whether ``window`` is one edit from ``key`` (optimal string alignment: a transposition of
    neighbours is one), substitutions and transpositions only in long keys."""
    if len(key) < SUBSTITUTION_CHARS:
        return Indel.distance(window, key) <= 1
    return OSA.distance(window, key) <= 1


CACHE_SIZE = 100_000
"""Windows whose resolution a lexicon remembers, at most."""
_WORD_START = re.compile(r"(?<![^\W_])[^\W_]")


class _Node:
    """A trie node over the terms' keys. ``edits``: whether some key below tolerates an edit
    (``MIN_FUZZY_CHARS``); ``swaps``: a changed letter or two swapped (``SUBSTITUTION_CHARS``)."""

    __slots__ = ("children", "count", "edits", "swaps")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.count = 0
        self.edits = 0
        self.swaps = False


class _PrefixTrie:
    """The keys of the lexicon, to tell whether a text could be the start of one of them."""

    def __init__(self) -> None:
        self.root = _Node()

    def add(self, key: str) -> None:
        edits, swaps = int(len(key) >= MIN_FUZZY_CHARS), len(key) >= SUBSTITUTION_CHARS
        node = self.root
        for char in [*key, ""]:
            node.count += 1
            node.edits = max(node.edits, edits)
            node.swaps = node.swaps or swaps
            if char:
                node = node.children.setdefault(char, _Node())

    def remove(self, key: str) -> None:
        node = self.root
        for char in key:
            node.count -= 1
            child = node.children[char]
            if child.count == 1:
                del node.children[char]
                return
            node = child
        node.count -= 1

    def starts(self, text: str) -> bool:
        """Whether ``text`` is within a key's tolerated edit (``_one_edit``'s) of a prefix of
        that key."""
        if not text:
            return True
        row = list(range(len(text) + 1))  # edit distances of text[:j] to the path so far
        return self._starts(self.root, text, row, row, "")

    def _starts(self, node: _Node, text: str, row: list[int], above: list[int], char: str) -> bool:
        """Optimal string alignment down the trie: ``row`` at ``node``, ``above`` at its parent,
        ``char`` the letter between them. A changed letter costs 2 (a deletion and an insertion,
        as Indel counts it) below nodes whose keys take no substitution."""
        if row[-1] <= node.edits:
            return True
        if min(row) > node.edits and min(above) >= node.edits:
            return False  # no cell can come back within the edits (a swap costs one more)
        for letter, child in node.children.items():
            changed = 1 if child.swaps else 2
            below = [row[0] + 1]
            for j, mine in enumerate(text, 1):
                cost = min(below[j - 1] + 1, row[j] + 1, row[j - 1] + changed * (mine != letter))
                if child.swaps and j > 1 and mine == char and text[j - 2] == letter:
                    cost = min(cost, above[j - 2] + 1)  # neighbours swapped
                below.append(cost)
            if self._starts(child, text, below, row, letter):
                return True
        return False


class Lexicon:
    """Names per forget request, searchable in text.

    Typos are found through one-deletion neighbourhoods (as SymSpell does): a key and a text
    window within one edit share a deletion, so each window costs a few dict look-ups however
    many names there are; candidates are then confirmed by their edit distance (rapidfuzz's
    optimal string alignment: a transposition of neighbours is one edit).
    """

    def __init__(self) -> None:
        self._terms: dict[str, dict[str, Hit]] = defaultdict(dict)  # key -> request id -> hit
        self._by_request: dict[str, list[str]] = defaultdict(list)
        self._deletions: dict[str, set[str]] = defaultdict(set)  # deletion -> keys
        self._max_tokens = 1
        self.max_chars = 0  # longest name, in characters as written
        self._prefixes = _PrefixTrie()
        # A stream's watch reads the same windows again as text arrives, and streams share
        # words: what they resolve to is kept until the terms change.
        self._resolved: dict[str, str | None] = {}
        self._opens: dict[str, bool] = {}
        self.generation = 0
        """Changes with every change of the terms (a search's results from before may differ)."""

    def set(self, request_id: str, terms: list[str], whole: bool = False) -> None:
        """The request's terms; ``whole``: no term's words are terms of their own."""
        self.remove(request_id)  # which forgets what was resolved, too
        entries: dict[str, Hit] = {}
        for term in terms:
            parts = term.split()
            if len(parts) > 1 and not whole:
                for part in parts:
                    entries.setdefault("".join(normalise(part)), Hit(part, partial=True))
            entries["".join(normalise(term))] = Hit(term, partial=False)
            self._max_tokens = max(self._max_tokens, len(normalise(term)) + 1)
            self.max_chars = max(self.max_chars, len(term))
        for key, hit in entries.items():
            if len(key) < (MIN_PART_CHARS if hit.partial else 1):
                continue
            if not self._terms.get(key):
                self._prefixes.add(key)
            self._terms[key][request_id] = hit
            self._by_request[request_id].append(key)
            if len(key) >= MIN_FUZZY_CHARS:
                for deletion in _deletions(key):
                    self._deletions[deletion].add(key)

    def remove(self, request_id: str) -> None:
        self._forget_resolved()
        for key in self._by_request.pop(request_id, []):
            owners = self._terms[key]
            owners.pop(request_id, None)
            if owners:
                continue
            del self._terms[key]
            self._prefixes.remove(key)
            for deletion in _deletions(key) if len(key) >= MIN_FUZZY_CHARS else ():
                self._deletions[deletion].discard(key)
                if not self._deletions[deletion]:
                    del self._deletions[deletion]

    def __len__(self) -> int:
        return len(self._terms)

    def _forget_resolved(self) -> None:
        self._resolved.clear()
        self._opens.clear()
        self.generation += 1

    def closest(self, window: str) -> str | None:
        """``_search``, remembered (bounded: cleared when it grows past ``CACHE_SIZE``)."""
        if window in self._resolved:
            return self._resolved[window]
        if len(self._resolved) > CACHE_SIZE:
            self._resolved.clear()
        key = self._resolved[window] = self._search(window)
        return key

    def _opens_a_term(self, rest: str) -> bool:
        """Whether ``rest`` (normalised, spaces removed) could begin a term, remembered."""
        if rest in self._opens:
            return self._opens[rest]
        if len(self._opens) > CACHE_SIZE:
            self._opens.clear()
        leet = rest.translate(LEET)
        opens = self._opens[rest] = self._prefixes.starts(rest) or self._prefixes.starts(leet)
        return opens

    def _search(self, window: str) -> str | None:
        """The key equal to ``window``, else the closest one edit away, else None."""
        if window in self._terms:
            return window
        if len(window) < MIN_FUZZY_CHARS - 1:
            return None
        candidates = set(self._deletions.get(window, ()))
        for deletion in _deletions(window):
            candidates |= self._deletions.get(deletion, set())
            if deletion in self._terms and len(deletion) >= MIN_FUZZY_CHARS:
                candidates.add(deletion)
        # Sorted: of two keys one edit away, every process picks the same.
        return next((key for key in sorted(candidates) if _one_edit(window, key)), None)

    def open_from(self, text: str, start: int = 0) -> int:
        """The earliest index at or after ``start`` where a term could be starting in ``text``,
        as the lexicon reads it (any case, accents, spacing, leet, tolerated typos); the text's
        length if none. ``start``: an earlier answer for a shorter text (a text that cannot
        begin a term cannot once it grows)."""
        if not self._terms:
            return len(text)
        for word in _WORD_START.finditer(text, start):
            if self._opens_a_term("".join(normalise(text[word.start() :]))):
                return word.start()
        return len(text)

    def find(self, text: str, new_from: int = 0) -> dict[str, list[Hit]]:
        """Request id -> the terms of that request found in ``text``; ``new_from``: only terms
        that end after this offset (a stream's watch looked at what ends before it already)."""
        if not self._terms:
            return {}
        windows = set()
        for spelled in {tuple(tokens) for tokens in spellings(text)}:  # mostly one spelling
            tokens = [token for token, _ in spelled]
            for j, (_, end) in enumerate(spelled):
                if end > new_from:
                    for i in range(max(0, j + 1 - self._max_tokens), j + 1):
                        windows.add("".join(tokens[i : j + 1]))
        found: dict[str, dict[str, Hit]] = defaultdict(dict)  # request id -> term -> hit
        for window in windows:
            key = self.closest(window)
            for request_id, hit in self._terms.get(key, {}).items() if key else ():
                hit = hit._replace(typo=key != window)
                if found[request_id].setdefault(hit.term, hit).typo and not hit.typo:
                    found[request_id][hit.term] = hit  # written as it is somewhere
        # A whole name as written says all its parts say; one read through a typo may be
        # someone else's (``Matcher``), and then its parts still count.
        kept = {}
        for request_id, hits in found.items():
            exact = any(not (hit.partial or hit.typo) for hit in hits.values())
            kept[request_id] = sorted((h for h in hits.values() if not (exact and h.partial)),
                                      key=lambda h: (h.partial, h.term))  # fmt: skip
        return kept
