"""Benchmark data: QA rows grouped by subject, forget/retain splits and perturbed answers.

Any JSONL data set of rows ``{"question", "answer"}`` with a grouping key (``author_index`` or
``subject``) works; the TOFU subset shipped in ``evals/data/tofu`` (MIT, its licence beside it)
is the default.

    >>> rows = [{"subject": "A", "question": "q1", "answer": "a1"},
    ...         {"subject": "B", "question": "q2", "answer": "a2"}]
    >>> [s.key for s in group(rows)]
    ['A', 'B']
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TOFU = Path(__file__).resolve().parent / "data" / "tofu"
GROUP_KEYS = ("author_index", "subject")
_NAME = re.compile(r"\b[A-Z][\w-]+(?:\s+[A-Z][\w-]+)+")
_WORD = re.compile(r"\w+")


@dataclass
class QA:
    question: str
    answer: str
    perturbed: list[str] = field(default_factory=list)


@dataclass
class Subject:
    key: str
    name: str
    qa: list[QA]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def group(rows: list[dict]) -> list[Subject]:
    """Rows grouped by ``author_index`` or ``subject``, in first-seen order."""
    key_name = next((k for k in GROUP_KEYS if k in rows[0]), None) if rows else None
    if key_name is None:
        raise ValueError(f"rows need a grouping key, one of {GROUP_KEYS}")
    groups: dict[str, list[QA]] = {}
    for row in rows:
        groups.setdefault(str(row[key_name]), []).append(QA(row["question"], row["answer"]))
    return [
        Subject(k, k if key_name == "subject" else infer_name(qa), qa) for k, qa in groups.items()
    ]


def infer_name(qa: list[QA]) -> str:
    """The subject's name: the capitalised multi-word sequence its QA mention most often."""
    counts = Counter(
        m.group(0) for pair in qa for m in _NAME.finditer(f"{pair.question} {pair.answer}")
    )
    return counts.most_common(1)[0][0] if counts else ""


def load_subjects(paths: list[Path]) -> list[Subject]:
    """Subjects of several files; keys are prefixed by the file name (TOFU reuses indices)."""
    subjects = []
    for path in paths:
        for subject in group(read_jsonl(path)):
            subject.key = f"{path.stem}:{subject.key}"
            subjects.append(subject)
    return subjects


def split(
    subjects: list[Subject], forget: int, seed: int = 0
) -> tuple[list[Subject], list[Subject]]:
    """(forget, retain): ``forget`` subjects chosen by seed, the rest retained."""
    if not 0 < forget <= len(subjects):
        raise ValueError(f"forget must be between 1 and {len(subjects)}")
    chosen = set(random.Random(seed).sample(range(len(subjects)), forget))
    return (
        [s for i, s in enumerate(subjects) if i in chosen],
        [s for i, s in enumerate(subjects) if i not in chosen],
    )


def add_perturbations(subjects: list[Subject], per_question: int = 3) -> None:
    """Perturbed (wrong) answers by swapping facts between subjects: the answers other subjects
    give to the most similar questions, with their names replaced by this subject's name."""

    def words(text: str, name: str) -> set[str]:
        return set(_WORD.findall(text.lower())) - set(_WORD.findall(name.lower()))

    for subject in subjects:
        for pair in subject.qa:
            mine = words(pair.question, subject.name)
            candidates = []
            for other in subjects:
                if other is subject:
                    continue
                for theirs in other.qa:
                    overlap = len(mine & words(theirs.question, other.name))
                    answer = (
                        theirs.answer.replace(other.name, subject.name)
                        if other.name
                        else theirs.answer
                    )
                    candidates.append((overlap, answer))
            candidates.sort(key=lambda c: -c[0])
            pair.perturbed = [a for _, a in candidates[:per_question] if a != pair.answer]


def general_sets(root: Path = TOFU) -> dict[str, list[QA]]:
    """TOFU's real-author and world-fact questions, with their shipped perturbed answers."""
    return {
        name: [
            QA(r["question"], r["answer"], list(r.get("perturbed_answer", [])))
            for r in read_jsonl(root / f"{name}.jsonl")
        ]
        for name in ("real_authors", "world_facts")
    }


def prepare(
    forget_data: Path | None,
    retain_data: Path | None,
    forget: int,
    seed: int = 0,
    max_questions: int | None = None,
    max_per_set: int | None = None,
    hard_negatives: Path | None = None,
) -> tuple[list[Subject], list[Subject], dict[str, list[QA]]]:
    """(forgotten, retained, general sets) of a run, with perturbed answers: ``forget`` subjects
    of the forget data chosen by seed (default: TOFU), the retain data, TOFU's general sets, and
    the ``hard_negatives`` set (people sharing one fact with a forgettable subject,
    ``obliviate-eval synthetic``) when given.

    ``max_questions`` keeps that many questions per subject and set and one retained subject;
    ``max_per_set`` a seeded sample of that many per retain / general set (quick runs)."""
    forgettable = load_subjects([forget_data or TOFU / "forget_authors.jsonl"])
    add_perturbations(forgettable)
    forgotten, _ = split(forgettable, forget, seed)
    retained = load_subjects([retain_data or TOFU / "retain_authors.jsonl"])
    add_perturbations(retained)
    general = general_sets()
    if hard_negatives is not None:
        near = load_subjects([hard_negatives])
        add_perturbations(near)
        general["hard_negatives"] = [qa for subject in near for qa in subject.qa]
    if max_questions is not None:
        for subject in forgotten + retained:
            subject.qa = subject.qa[:max_questions]
        retained = retained[:1]
        general = {name: qa[:max_questions] for name, qa in general.items()}
    if max_per_set is not None:
        sample = random.Random(seed)
        retained = retained[:max_per_set]  # at least one question per subject kept
        for subject in retained:
            subject.qa = sample.sample(
                subject.qa, min(len(subject.qa), max(1, max_per_set // len(retained)))
            )
        general = {n: sample.sample(qa, min(len(qa), max_per_set)) for n, qa in general.items()}
    return forgotten, retained, general
