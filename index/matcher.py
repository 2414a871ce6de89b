"""Hybrid matching of text against forget requests: dense chunk similarity + lexical names.

    matcher = Matcher(embedder, MatcherConfig())
    matcher.add("fr_1", ["Hsiao Yun-Hwa"], chunk_ids, vectors)
    matcher.match(["What does Hsiao Yun-Hwa's father do?"])
    # [Match(request_id='fr_1', action='block', similarity=0.83, terms=['Hsiao Yun-Hwa'])]

Dense similarity alone cannot tell "the father of <forgotten author>" from "the father of <other
author>" (TOFU questions share templates), so a name found in the text blocks, while similarity
alone blocks only near-verbatim matches and otherwise marks the request as related (``guard``).
Numbers tell templates apart where names are missing: a text that names numbers (of two digits or
more), none of which occur in a forget request's texts, is likely about another subject. It
neither blocks that request by similarity nor gets a guard note naming it (``other_numbers``): "the
author born in Baku on February 14, 1960" scored 0.86 against "... born in Baku, Azerbaijan on
April 13, 1970" (Elvin Mammadov), and a guard note naming him made the TOFU target answer "Elvin
Mammadov", which the output check then blocked. It stays related, so the output is still checked
sentence by sentence and the in-model layers still act: adding a stray number to a question is
not a way around them. Dates count whole: sharing a birth year or a day of the month with a
request does not make a text fit it. Names tell them apart the same way: a text that writes
another person's name, a place or a quoted title (a run of capitalised words, "City, Country",
or a quoted span, with a word that is none of the request's) neither blocks by similarity nor
makes a part of the forgotten name inside a name or title count ("Angus" in "Angus Miller" is
his, not a forgotten Angus Atkinson's). A part counts only where written with a capital ("coral
reef" names no Coral Galindo). A whole name the lexicon read through a typo blocks too, but
not inside another person's written name ("Elliot Patrick Benson" writes no forgotten "Patrick
Benton": ``Written.misspells``). Sentences of an answer to a conversation related to a request
block it from a lower similarity (``answer_block_similarity``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from rapidfuzz.distance import OSA

from index.embedder import Embedder
from index.lexicon import LEET, Hit, Lexicon, normalise, unaccented
from index.vectors import VectorIndex

BLOCK, GUARD = "block", "guard"
_NUMBER = re.compile(r"\b\d{2,}\b")  # one digit is too common ("#7", "3 books") to tell apart
_WORD = re.compile(r"[^\W_][\w'\u2019-]*")
_GAP = re.compile(r"(,?)[ \t]+")
_INITIAL_GAP = re.compile(r"()\.[ \t]*")  # after an initial: "C.S. Lewis"
_SENTENCE_END = re.compile(r"[.!?:;\n]")
_POSSESSIVE = re.compile(r"['\u2019]s$")
_OPENERS = frozenset({
    "a", "an", "the", "and", "but", "so", "or", "if", "then", "yes", "no", "hi", "hello", "dear",
    "please", "was", "is", "are", "were", "did", "does", "do", "has", "have", "had", "can",
    "could", "would", "will", "should", "who", "what", "where", "when", "why", "how", "which",
    "whose", "tell", "ask", "name", "list", "give", "describe", "explain", "according", "since",
    "after", "before", "in", "on", "at", "for", "from", "about", "by", "with", "my", "your",
    "our", "his", "her", "their", "its", "this", "that", "these", "those", "i", "we", "you", "he",
    "she", "they", "it", "mr", "mrs", "ms", "mx", "miss", "dr", "prof", "professor", "sir", "madam",
    "yesterday", "today", "tomorrow", "also", "however", "now", "maybe", "perhaps", "still", "even",
    "only", "just", "here", "there", "not", "as", "like", "some", "every", "each", "all", "both"
})  # fmt: skip
"""Words capitalised only because they open a sentence or a title, and honorifics: never part of
a name ("Professor Ann Smith" writes no other person than "Ann Smith")."""
_PARTICLES = frozenset({"van", "von", "der", "den", "de", "da", "del", "della", "di", "du", "la",
                        "le", "bin", "ibn", "al", "dos", "das"})  # fmt: skip
"""Lower-case words inside a written name ("Oliver van Egisheim")."""


def _key(word: str) -> str:
    """A written word as the lexicon keys it ("Angus's" -> "angus")."""
    return "".join(normalise(_POSSESSIVE.sub("", word)))


def _read(text: str, places: bool) -> tuple[list[tuple[str, bool]], list[tuple[int, int]]]:
    """Every word of ``text`` as a lexicon key, with whether it is written in lower case, and
    the spans of words (start, end) of its written names (``written_names``); ``places``: runs
    joined by a comma too. Accents go first, as the lexicon reads them: a combining mark is not
    a word character, and would cut "Aoh\u0301si" in two."""
    text = unaccented(text)
    words: list[tuple[str, bool]] = []
    spans: list[tuple[int, int]] = []
    start: int | None = None  # the run's first word
    end = 0
    opens_sentence = False  # the run's first word opens a sentence
    initial = False  # the word before is an initial ("C" of "C.S. Lewis", "F" of "John F. Kennedy")
    for word in _WORD.finditer(text):
        written = word.group(0)
        key = _key(written)
        capital = written[0].isupper() and key not in _OPENERS
        before = text[end : word.start()]
        gap = None
        if start is not None:
            gap = _INITIAL_GAP.fullmatch(before) if initial else None
            gap = gap or _GAP.fullmatch(before)
        initial = len(written) == 1 and written.isupper()
        comma = gap is not None and gap.group(1) == ","
        particle = key in _PARTICLES and not comma
        joins = not comma or (places and not opens_sentence)
        if not (gap and (capital or particle) and joins):
            if start is not None:
                spans.append((start, len(words)))
            start = len(words) if capital else None
            opens_sentence = end == 0 or _SENTENCE_END.search(before) is not None
        words.append((key, written.islower()))
        end = word.end()
    if start is not None:
        spans.append((start, len(words)))
    trimmed = []
    for first, last in spans:
        while last > first and words[last - 1][0] in _PARTICLES:
            last -= 1
        if last - first > 1:
            trimmed.append((first, last))
    return words, trimmed


def written_names(text: str) -> list[list[str]]:
    """Runs of two or more capitalised words with only spaces (and name particles) between, or
    a comma inside a sentence ("in Lyon, France": a place; "Sure, Ann" is no one): names and
    places as written, as lexicon keys.

    >>> written_names("Was Angus Miller born in Lyon, France? Sure, Ann. Ask Oliver van Egisheim.")
    [['angus', 'miller'], ['lyon', 'france'], ['oliver', 'van', 'egisheim']]
    """
    words, spans = _read(text, places=True)
    return [[key for key, _ in words[first:last]] for first, last in spans]


_QUOTED = re.compile(
    r"""(?:(?<=\s)|^)['"\u201c\u2018]([^'"\u201d\u2019\n]{3,80}?)['"\u201d\u2019](?!\w)"""
)


def quoted_titles(text: str) -> list[list[str]]:
    """Quoted spans of two or more words besides openers, at least half of them capitalised
    (titles, as written: "'The Master and Margarita'"; a quoted question is no title), as
    lexicon keys. A possessive's apostrophe opens none.

    >>> quoted_titles("Who wrote 'The Master and Margarita'? Ann's 'Dune', 'what is Ann's job'.")
    [['master', 'margarita']]
    """
    titles = []
    for quoted in _QUOTED.finditer(text):
        words = [w for w in _WORD.findall(quoted.group(1)) if _key(w) not in _OPENERS]
        if len(words) > 1 and 2 * sum(w[0].isupper() for w in words) >= len(words):
            titles.append([_key(w) for w in words])
    return titles


class Written:
    """A text's words, written names (``written_names``) and quoted titles, read once for every
    forget request it is matched against: a name part shared by thousands of requests must not
    cost a scan of the text per request.

    >>> Written("Where was Angus Miller born?").names_other(frozenset({"angus", "smith"}))
    True
    """

    def __init__(self, text: str):
        text = unaccented(text)
        self.words, spans = _read(text, places=False)
        """Every word, as a lexicon key, and whether it is written in lower case."""
        self.pieces: dict[str, set[str]] = {}
        """Other readings of a word, as the lexicon's windows read it: its parts and its
        letters joined ("Christa-Maria": "christa", "maria"; "Devane's": "devanes")."""
        for word in _WORD.findall(text):
            tokens = normalise(word)
            others = {*tokens, "".join(tokens)} - {_key(word)}
            if len(tokens) > 1 and others:
                self.pieces.setdefault(_key(word), set()).update(others)
        keys = [key for key, _ in self.words]
        titles = [t for t in quoted_titles(text) if t not in (keys[a:b] for a, b in spans)]
        self.runs = [keys[first:last] for first, last in spans] + titles
        """Names and titles as written: a name part inside one may be someone else's. A place
        ("Tainan, Hsiao ...") is not: a comma may as well end it."""
        self.names = [frozenset(run) - _PARTICLES for run in [*self.runs, *written_names(text)]]

    def names_other(self, own: frozenset[str]) -> bool:
        """Whether the text writes a name, a place or a title with a word of none of a
        request's texts (``own``)."""
        return any(name - own for name in self.names)

    def part(self, same: Callable[[str], bool]) -> Part:
        """Where the text says a word of a forgotten name (``same`` tells a written word that
        reads as it, typos included)."""

        def says(key: str) -> bool:
            return same(key) or any(map(same, self.pieces.get(key, ())))

        said = [lower for key, lower in self.words if says(key)]
        inside = [(frozenset(run) - _PARTICLES, n) for run in self.runs
                  if (n := sum(map(says, run)))]  # fmt: skip
        return Part(len(said), sum(said), inside)

    def misspells(self, term: str, own: frozenset[str]) -> bool:
        """Whether a name the lexicon read one edit away from ``term`` may be written as the
        forgotten subject's: a word that reads as the term's last word (one edit, leet read)
        stands somewhere outside every written name with a word that is neither one of the
        request's (``own``) nor one edit from a word of the term. "Elliot Patrick Benson" is
        someone else than a forgotten "Patrick Benton"; "Patrik Benton" may be him, and so may
        a name no word shows (spaced out, run together). A capitalised word before a misspelt
        name makes it someone else's too ("Zed Patrik Benton"): the model's answer, if it names
        the subject, is still watched.

        >>> Written("Who is Elliot Patrick Benson?").misspells("Patrick Benton", frozenset())
        False
        >>> Written("Who is Patrik Benton?").misspells("Patrick Benton", frozenset())
        True
        """
        parts = [_key(word) for word in term.split()]

        def reads_as(key: str, words: list[str]) -> bool:
            return any(OSA.distance(spelt, word) <= 1
                       for spelt in {key, key.translate(LEET)} for word in words)  # fmt: skip

        def last(key: str) -> bool:
            return any(reads_as(k, parts[-1:]) for k in [key, *self.pieces.get(key, ())])

        said = sum(last(key) for key, _ in self.words)
        foreign = [run for run in self.runs
                   if not all(key in own or reads_as(key, parts) for key in run)]  # fmt: skip
        inside = sum(last(key) for run in foreign for key in run)
        return said == 0 or said > inside


@dataclass
class Part:
    """How often a text says a name part, how often in lower case, and how often inside each
    written name."""

    said: int
    lower: int
    inside: list[tuple[frozenset[str], int]]

    def names_subject(self, own: frozenset[str]) -> bool:
        """Whether the text says the part as the forgotten subject's name: written with a
        capital at least once outside a written name with a word of none of that request's
        names or details (``own``). "Angus Miller" is not "Angus Smith" and "coral reef" names
        no Coral, while "Angus" alone, or "Smith, Angus", may be. A part the lexicon found in a
        spelling no word shows (spaced out, leet) counts."""
        elsewhere = sum(n for name, n in self.inside if name - own)
        return self.said == 0 or self.said > self.lower + elsewhere


def known_words(names: list[str]) -> frozenset[str]:
    """The keys of every word of ``names`` (a request's names and details)."""
    return frozenset(key for name in names for key in [*map(_key, name.split()), *normalise(name)])


_MONTHS = {m: i for i, m in enumerate(["january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december"], 1)}  # fmt: skip
_MONTH = rf"\b({'|'.join(_MONTHS)})"
_DATES = (  # (pattern, which groups are year, month, day, whether month and day could swap)
    (re.compile(_MONTH + r"\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b", re.I), (3, 1, 2), False),
    (re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r",?\s+(\d{4})\b", re.I),
     (3, 2, 1), False),
    (re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b"), (1, 2, 3), False),
    (re.compile(r"\b(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\b"), (3, 1, 2), True),
)  # fmt: skip


def _readings(match: re.Match[str], order: tuple[int, int, int], swaps: bool) -> set[str]:
    """A written date as YYYY-MM-DD; both readings where its month and day could swap
    (06/05/1944 is June 5 in the US and May 6 elsewhere; 1944-06-05 is June 5 only). A date no
    calendar has (13/13/1944) is read as its year.

    >>> sorted(_readings(_DATES[3][0].search("06/05/1944"), _DATES[3][1], True))
    ['1944-05-06', '1944-06-05']
    >>> sorted(_readings(_DATES[2][0].search("1944-06-05"), _DATES[2][1], False))
    ['1944-06-05']
    >>> sorted(_readings(_DATES[3][0].search("13/13/1944"), _DATES[3][1], True))
    ['1944']
    """
    year, month, day = (match.group(i) for i in order)
    month_number = _MONTHS.get(month.lower()) or int(month)
    readings = {(month_number, int(day))}
    if swaps:
        readings.add((int(day), month_number))
    dates = {f"{year}-{m:02}-{d:02}" for m, d in readings if 1 <= m <= 12 and 1 <= d <= 31}
    return dates or {year}


def numbers(text: str, *, within_dates: bool = False) -> frozenset[str]:
    """The numbers of two digits or more in ``text`` (not digits inside a word: leetspeak), each
    written date as one (YYYY-MM-DD): a text that shares only a birth year or a day of the month
    with a forget request names another date. ``within_dates``: a date's numbers also count
    alone (a request's, so that a text naming only its year still fits it).

    >>> sorted(numbers("born on 10/18/1934, not 5 times, H5140, in 1960"))
    ['1934-10-18', '1960']
    >>> sorted(numbers("June 5, 1944", within_dates=True))
    ['05', '1944', '1944-06-05']
    >>> sorted(numbers("to my dismay 5, 1944"))   # no month there
    ['1944']
    """
    found: set[str] = set()
    for pattern, order, swaps in _DATES:
        for match in pattern.finditer(text):
            found |= _readings(match, order, swaps)
            if within_dates:
                found |= {f"{int(match.group(i)):02}" for i in order if match.group(i).isdigit()}
        if not within_dates:
            text = pattern.sub(" ", text)
    return frozenset(found | set(_NUMBER.findall(text)))


def fits(mentioned: frozenset[str], request_numbers: frozenset[str]) -> bool:
    """Whether a text's numbers (``numbers``) may be about a request's: it names none, or one of
    the request's, or a date in a year where the request has a number but no whole date (a
    request that says "June 1944" fits "June 5, 1944").

    >>> fits(numbers("born June 5, 1944"), numbers("born in June 1944", within_dates=True))
    True
    >>> fits(numbers("born June 5, 1944"), numbers("born June 6, 1944", within_dates=True))
    False
    """
    if not mentioned or mentioned & request_numbers:
        return True
    dated_years = {n[:4] for n in request_numbers if len(n) == 10}
    return any(len(n) == 10 and n[:4] in request_numbers and n[:4] not in dated_years
               for n in mentioned)  # fmt: skip


@dataclass
class MatcherConfig:
    """Thresholds, calibrated on the TOFU subset (see the index benchmark)."""

    block_similarity: float = 0.86
    """Cosine similarity to a chunk that blocks without any name in the text."""
    answer_block_similarity: float = 0.75
    """The same for a sentence of an answer to a conversation already related to a forget
    request (the output watch): the model restating a forgotten answer without its name
    ("this writer's books focus on leadership, ...") scored 0.77 against the TOFU QA it
    restates, where questions about other people score below 0.55 or name them."""
    guard_similarity: float = 0.55
    """Cosine similarity that marks a request as related (guard prompt, sentence-level output
    checks); with a part of a forgotten name written as their name in the text it blocks."""
    top_k: int = 10
    """Chunks retrieved per query text."""
    max_texts: int = 8
    """Most recent conversation texts embedded per check (names are searched in all of them)."""
    approximate_after: int = 20_000
    """Chunks past which the vector index becomes approximate (IVF)."""
    nprobe: int = 64
    """IVF lists searched per query."""


@dataclass
class Match:
    request_id: str
    action: Literal["block", "guard"]
    similarity: float
    terms: list[str] = field(default_factory=list)
    other_subject: bool = False
    """Related only by texts that name another subject: numbers the request never mentions, or
    a written name with a word of none of its names or details."""


class Matcher:
    """In-memory lexicon + vector index over the active forget requests."""

    def __init__(self, embedder: Embedder, config: MatcherConfig):
        self.embedder = embedder
        self.config = config
        self.lexicon = Lexicon()
        self.details = Lexicon()
        """Each request's distinctive names besides its own (relatives, works, places: see
        ``index.forget_index.details_of``), watched for in answers to related conversations."""
        self.vectors = VectorIndex(embedder.dim, config.approximate_after, config.nprobe)
        self.owner: dict[int, str] = {}  # chunk id -> request id
        self.chunks: dict[str, np.ndarray] = {}  # request id -> its chunk ids
        self.terms: dict[str, list[str]] = {}  # request id -> its names (subject first)
        self.numbers: dict[str, frozenset[str]] = {}  # request id -> numbers of its texts
        self.known: dict[str, frozenset[str]] = {}  # request id -> words of its names, details
        # faiss and the dicts are not safe to read while another thread writes them.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.chunks)

    def locked(self) -> threading.Lock:
        """Hold while replacing ``self.vectors`` wholesale."""
        return self._lock

    def add(
        self,
        request_id: str,
        terms: list[str],
        ids: np.ndarray,
        vectors: np.ndarray,
        request_numbers: frozenset[str] = frozenset(),
        details: list[str] | None = None,
        words: frozenset[str] = frozenset(),
    ) -> None:
        """Enforce a request: its names, its chunks' vectors, the numbers of its texts, its
        other distinctive names (``details``) and the words of its texts (``known_words``)."""
        with self._lock:
            self.lexicon.set(request_id, terms)
            self.details.set(request_id, details or [], whole=True)
            self.terms[request_id] = terms
            self.known[request_id] = words | known_words([*terms, *(details or [])])
            self.numbers[request_id] = request_numbers
            self.vectors.add(ids, vectors)
            self.owner.update(dict.fromkeys(ids.tolist(), request_id))
            self.chunks[request_id] = ids

    def load(
        self,
        terms: dict[str, list[str]],
        owners: dict[int, str],
        request_numbers: dict[str, frozenset[str]],
        details: dict[str, list[str]] | None = None,
        words: dict[str, frozenset[str]] | None = None,
    ) -> None:
        """Set names, numbers, details, words and chunk owners for vectors already in
        ``self.vectors``."""
        with self._lock:
            for request_id, request_terms in terms.items():
                self.lexicon.set(request_id, request_terms)
                self.details.set(request_id, (details or {}).get(request_id, []), whole=True)
            self.terms = dict(terms)
            self.known = {
                r: (words or {}).get(r, frozenset())
                | known_words([*t, *(details or {}).get(r, [])])
                for r, t in terms.items()
            }
            self.numbers = dict(request_numbers)
            self.owner = owners
            by_request: dict[str, list[int]] = {r: [] for r in terms}
            for chunk_id, request_id in owners.items():
                by_request.setdefault(request_id, []).append(chunk_id)
            self.chunks = {r: np.array(ids, np.int64) for r, ids in by_request.items()}

    def remove(self, request_id: str) -> None:
        with self._lock:
            self.lexicon.remove(request_id)
            self.details.remove(request_id)
            self.terms.pop(request_id, None)
            self.known.pop(request_id, None)
            self.numbers.pop(request_id, None)
            ids = self.chunks.pop(request_id, np.zeros(0, np.int64))
            self.vectors.remove(ids)
            for chunk_id in ids.tolist():
                self.owner.pop(chunk_id, None)

    def open_from(self, text: str, start: int = 0) -> int:
        """``Lexicon.open_from`` while no other thread changes the names."""
        with self._lock:
            return self.lexicon.open_from(text, start)

    def named_details(self, text: str, request_ids: set[str]) -> list[str]:
        """The details of ``request_ids`` that ``text`` names (any spelling the lexicon reads)."""
        with self._lock:
            found = self.details.find(text)
        return [hit.term for r in request_ids & found.keys() for hit in found[r]]

    def _named(self, found: dict[str, list[Hit]], text: str) -> dict[str, list[Hit]]:
        """``found`` without the parts of names that the text gives to someone else (a name
        part alone says a forgotten subject is meant; inside another person's name or a title,
        or in lower case, it does not), nor whole names it read one edit away where the text
        writes someone else's (``Written.misspells``). Held: ``_lock``."""
        written: Written | None = None
        parts: dict[str, Part] = {}
        kept = {}
        for request_id, hits in found.items():
            if any(not (hit.partial or hit.typo) for hit in hits):
                kept[request_id] = hits
                continue
            written = written or Written(text)
            own = self.known.get(request_id, frozenset())
            mine = []
            for hit in hits:
                if not hit.partial:
                    if written.misspells(hit.term, own):
                        mine.append(hit)
                    continue
                if hit.term not in parts:
                    parts[hit.term] = written.part(self._reads_as(_key(hit.term)))
                if parts[hit.term].names_subject(own):
                    mine.append(hit)
            if mine:
                kept[request_id] = mine
        return kept

    def _reads_as(self, part: str) -> Callable[[str], bool]:
        def same(key: str) -> bool:
            return key == part or self.lexicon.closest(key) == part

        return same

    def match(
        self,
        texts: list[str],
        *,
        dense: bool = True,
        new_from: int = 0,
        answering: frozenset[str] = frozenset(),
    ) -> list[Match]:
        """Requests the texts touch, strongest first; ``dense=False`` checks names only.
        ``new_from``: names that end before this offset of the texts (joined by newlines) are
        not looked for (a stream's watch found none there before). ``answering``: the texts are
        sentences of an answer to a conversation related to these requests, which they block
        from ``answer_block_similarity``."""
        matches = self._match(texts, dense, new_from, answering, wait=True)
        assert matches is not None  # only a match that must not wait gives up
        return matches

    def match_now(
        self, texts: list[str], *, answering: frozenset[str] = frozenset()
    ) -> list[Match] | None:
        """``match`` if it need not wait: every text's embedding is cached and no other thread
        holds the embedder or the index; None otherwise. The event loop calls it before handing
        ``match`` to a thread, a hop that costs more than the match itself (see
        ``suppressors.base.match``)."""
        return self._match(texts, True, 0, answering, wait=False)

    def _match(
        self, texts: list[str], dense: bool, new_from: int, answering: frozenset[str], wait: bool
    ) -> list[Match] | None:
        texts = [t for t in texts if t.strip()]
        if not self.chunks or not texts:
            return []
        embedded = texts[-self.config.max_texts :] if dense else []
        queries = None
        if embedded:
            queries = self.embedder.encode(embedded) if wait else self.embedder.cached(embedded)
            if queries is None:
                return None
        if not self._lock.acquire(blocking=wait):
            return None
        similarity: dict[str, float] = {}  # request id -> best score over the texts
        fitting: dict[str, float] = {}  # ... over texts naming no other subject (numbers, names)
        try:
            joined = "\n".join(texts)
            found = self._named(self.lexicon.find(joined, new_from), joined)
            if queries is not None:
                scores, ids = self.vectors.search(queries, self.config.top_k)
            for row, text in enumerate(embedded):
                mentioned = numbers(text)
                written = Written(text)
                for score, chunk_id in zip(scores[row].tolist(), ids[row].tolist(), strict=True):
                    request_id = self.owner.get(chunk_id)
                    if request_id is None:
                        continue
                    similarity[request_id] = max(score, similarity.get(request_id, -1.0))
                    if not fits(mentioned, self.numbers.get(request_id, frozenset())):
                        continue
                    if written.names_other(self.known.get(request_id, frozenset())):
                        continue
                    fitting[request_id] = max(score, fitting.get(request_id, -1.0))
        finally:
            self._lock.release()
        matches = []
        config = self.config
        for request_id in found.keys() | similarity.keys():
            score = similarity.get(request_id, 0.0)
            hits = found.get(request_id, [])
            terms = [h.term for h in hits]
            whole_name = any(not h.partial for h in hits)
            related = score >= config.guard_similarity
            fit = fitting.get(request_id, 0.0)
            blocking = config.block_similarity
            if request_id in answering:
                blocking = config.answer_block_similarity
            if whole_name or fit >= blocking or (hits and related):
                matches.append(Match(request_id, BLOCK, score, terms))
            elif related or hits:
                other = not hits and fit < config.guard_similarity
                matches.append(Match(request_id, GUARD, score, terms, other))
        return sorted(matches, key=lambda m: (m.action != BLOCK, -m.similarity))
