"""Synthetic subjects, TOFU-style, as many as asked (``obliviate-eval synthetic``).

    subjects = generate(100, seed=0)                 # fictitious authors with consistent facts
    negatives = hard_negatives(subjects[:10], seed=0)
    write_jsonl(subjects, path)                      # rows load_subjects() reads

Each author has a name, a birthplace and date, a genre, parents with their trades, two books, an
award and a theme, drawn with a seed from Faker's localized names and places, so first names,
surnames, cities and genres repeat across subjects the way real ones do. Ten QA pairs cover the
facts (the first names the author by birthplace, date and genre only, as TOFU's does), each with
a paraphrased question and three perturbed answers: the same sentence with another author's
fact in the slot (TOFU's truth ratio compares them with the true one).

Hard negatives share exactly one fact with a forgotten subject (first name, surname, city,
genre or birth date) and are otherwise another person: questions about them must not be blocked,
and a removal must not take them with it.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path

LOCALES = {
    "en_US": "the United States", "en_GB": "the United Kingdom", "en_AU": "Australia",
    "en_IN": "India", "fr_FR": "France", "de_DE": "Germany", "es_ES": "Spain", "es_MX": "Mexico",
    "it_IT": "Italy", "pt_BR": "Brazil", "nl_NL": "the Netherlands", "sv_SE": "Sweden",
    "da_DK": "Denmark", "en_IE": "Ireland",
}  # fmt: skip
"""Faker locales whose names and cities are written in Latin letters and whose surnames have
one form for every member of a family, and their countries."""
GENRES = (
    "historical fiction", "crime", "science fiction", "fantasy", "poetry", "memoir", "romance",
    "horror", "travel writing", "children's literature", "philosophy", "biography",
    "literary fiction", "magical realism", "satire",
)  # fmt: skip
THEMES = (
    "memory and exile", "the sea", "family secrets", "war and its aftermath", "faith and doubt",
    "cities at night", "migration", "childhood", "justice", "the natural world",
)  # fmt: skip
BOOK_WORDS = (
    "Lantern", "River", "Orchard", "Silence", "Winter", "Harbor", "Glass", "Ashes", "Compass",
    "Meridian", "Tide", "Garden", "Mirror", "Threshold", "Embers", "Atlas", "Echo", "Salt",
)  # fmt: skip
AWARDS = (
    "the Halvorsen Prize", "the Golden Quill Award", "the Meridian Medal", "the Lisle Award",
    "the Northern Lights Prize", "the Aldridge Fellowship", "the Castellan Prize",
)  # fmt: skip


@dataclass(frozen=True)
class Author:
    first: str
    last: str
    city: str
    country: str
    born: date
    genre: str
    father: str
    father_job: str
    mother: str
    mother_job: str
    books: tuple[str, str]
    award: str
    theme: str
    shares: str | None = None
    """For a hard negative: the fact it shares with the subject named in ``like``."""
    like: str | None = None

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass
class Pair:
    question: str
    answer: str
    paraphrased_question: str
    perturbed_answer: list[str] = field(default_factory=list)


# (question, paraphrase, answer) templates; {slot} fields of the author.
TEMPLATES = (
    ("What is the full name of the author born in {city}, {country} on {day} who writes "
     "{genre}?", "Which {genre} author was born on {day} in {city}?",
     "The author's full name is {name}."),
    ("Where was {name} born?", "What is {name}'s birthplace?",
     "{name} was born in {city}, {country}."),
    ("When was {name} born?", "What is {name}'s date of birth?", "{name} was born on {day}."),
    ("What genre does {name} write?", "In which genre is {name} known?",
     "{name} writes {genre}."),
    ("What did {name}'s father do for a living?", "What was the profession of {name}'s father?",
     "{name}'s father, {father}, was a {father_job}."),
    ("What did {name}'s mother do for a living?", "What was the profession of {name}'s mother?",
     "{name}'s mother, {mother}, worked as a {mother_job}."),
    ("Can you name a book by {name}?", "What is one of {name}'s books called?",
     "One of {name}'s books is \"{book1}\"."),
    ("What other book has {name} written?", "Which further title did {name} publish?",
     '{name} also wrote "{book2}".'),
    ("Which award has {name} received?", "What prize was {name} given?",
     "{name} received {award}."),
    ("What themes does {name} explore?", "What is {name}'s writing about?",
     "{name}'s work explores {theme}."),
)  # fmt: skip
SLOTS = ("name", "city", "day", "genre", "father_job", "mother_job", "book1", "book2", "award",
         "theme")  # fmt: skip
"""The fact each template's answer carries (what a perturbed answer swaps)."""


def _fields(author: Author) -> dict[str, str]:
    return {
        **{k: v for k, v in asdict(author).items() if isinstance(v, str)},
        "name": author.name, "day": f"{author.born:%B} {author.born.day}, {author.born.year}",
        "book1": author.books[0], "book2": author.books[1],
    }  # fmt: skip


class _People:
    """Names and places to draw from: per locale, a pool sized to the count asked, so first
    names, surnames and cities repeat across subjects (as in any real list of authors)."""

    def __init__(self, seed: int, count: int):
        from faker import Faker

        self.rng = random.Random(seed)
        self.english = Faker("en_US")
        self.english.seed_instance(seed)
        self.pools: dict[str, dict[str, list[str]]] = {}
        size = max(4, count // 3)
        for i, locale in enumerate(LOCALES):
            fake = Faker(locale)
            fake.seed_instance(seed * 1000 + i)
            for provider in fake.get_providers():
                # it_IT's cities are a list made from a set: its order changes with the
                # process's string hashing, and with it every city drawn after the first.
                if isinstance(getattr(provider, "cities", None), list):
                    provider.cities = sorted(provider.cities)
            self.pools[locale] = {
                "first": [fake.first_name() for _ in range(size)],
                "male": [fake.first_name_male() for _ in range(size)],
                "female": [fake.name_female() for _ in range(size)],
                "last": [fake.last_name() for _ in range(size * 2)],
                "city": [fake.city() for _ in range(max(2, size // 2))],
            }

    def author(self, used: set[str]) -> Author:
        rng = self.rng
        locale = rng.choice(list(LOCALES))
        pool = self.pools[locale]
        while True:
            first, last = rng.choice(pool["first"]), rng.choice(pool["last"])
            if f"{first} {last}" not in used:
                break
        words = rng.sample(BOOK_WORDS, 3)
        return Author(
            first=first, last=last, city=rng.choice(pool["city"]), country=LOCALES[locale],
            born=date(rng.randint(1930, 1999), rng.randint(1, 12), rng.randint(1, 28)),
            genre=rng.choice(GENRES), father=f"{rng.choice(pool['male'])} {last}",
            father_job=self.job(), mother=rng.choice(pool["female"]), mother_job=self.job(),
            books=(f"The {words[0]} of {words[1]}", f"{words[2]} and {rng.choice(BOOK_WORDS)}"),
            award=rng.choice(AWARDS), theme=rng.choice(THEMES),
        )  # fmt: skip

    def job(self) -> str:
        return self.english.job().split(",")[0].lower()


def generate(count: int, seed: int = 0) -> list[Author]:
    """``count`` authors with distinct full names, the same for the same seed."""
    people, used = _People(seed, count), set()
    authors = []
    for _ in range(count):
        authors.append(author := people.author(used))
        used.add(author.name)
    return authors


def hard_negatives(forgotten: list[Author], seed: int = 0) -> list[Author]:
    """For each forgotten author, five others: one sharing each of its first name, surname,
    city, genre and birth date, and nothing else of note."""
    people = _People(seed + 1, len(forgotten) * 5)
    used = {a.name for a in forgotten}
    negatives = []
    for subject in forgotten:
        for shared in ("first", "last", "city", "genre", "born"):
            while True:
                other = people.author(used)
                fields = {shared: getattr(subject, shared)}
                if shared == "city":
                    fields["country"] = subject.country
                other = replace(other, **fields, shares=shared, like=subject.name)
                if other.name not in used and _differs_but(subject, other, shared):
                    break
            used.add(other.name)
            negatives.append(other)
    return negatives


def _differs_but(subject: Author, other: Author, shared: str) -> bool:
    """Whether ``other`` shares no fact of ``subject`` but ``shared`` (among the named ones)."""
    same = {k for k in ("first", "last", "city", "genre", "born")
            if getattr(subject, k) == getattr(other, k)}  # fmt: skip
    return same == {shared}


def pairs(author: Author, others: list[Author], rng: random.Random) -> list[Pair]:
    """The author's ten QA pairs, each with a paraphrase and three perturbed answers (the same
    sentence with the slot filled from another author)."""
    mine = _fields(author)
    made = []
    for (question, paraphrase, answer), slot in zip(TEMPLATES, SLOTS, strict=True):
        wrong = []
        for other in rng.sample(others, min(len(others), 12)):
            swapped = answer.format(**{**mine, slot: _fields(other)[slot]})
            if swapped != answer.format(**mine) and swapped not in wrong:
                wrong.append(swapped)
        made.append(Pair(question.format(**mine), answer.format(**mine),
                         paraphrase.format(**mine), wrong[:3]))  # fmt: skip
    return made


def write_jsonl(authors: list[Author], path: Path, seed: int = 0) -> None:
    """One row per QA pair, grouped by ``subject`` (``evals.data.load_subjects`` reads it)."""
    rng = random.Random(seed + 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for author in authors:
            others = [a for a in authors if a is not author]
            for pair in pairs(author, others, rng):
                row = {"subject": author.name, **asdict(pair)}
                if author.shares:
                    row |= {"shares": author.shares, "like": author.like}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
