"""The synthetic subjects: seeded, consistent, repeating names and places as real lists do, with
hard negatives that share exactly one fact, in files the harness reads."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from evals.data import load_subjects, prepare
from evals.synthetic import GENRES, SLOTS, _fields, generate, hard_negatives, pairs
from tests.conftest import REPO


def test_a_seed_makes_the_same_distinct_authors_whose_names_and_places_repeat() -> None:
    authors = generate(100, seed=0)
    assert authors == generate(100, seed=0) and authors != generate(100, seed=1)
    assert len({a.name for a in authors}) == 100
    assert len({a.first for a in authors}) < 100 and len({a.city for a in authors}) < 100
    assert {a.genre for a in authors} == set(GENRES)


def test_a_seed_makes_the_same_authors_in_every_process() -> None:
    """Faker's Italian cities come in an order that changes with the process's string hashing:
    the index benchmark's embedding cache, named by content, missed on every run."""
    script = "from evals.synthetic import generate; print(repr(generate(300, seed=0)))"
    runs = {
        subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, capture_output=True,
                       text=True, env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout
        for h in (1, 2)
    }  # fmt: skip
    assert len(runs) == 1 and "Italy" in runs.pop()


def test_each_answer_states_its_fact_and_its_perturbations_another() -> None:
    authors = generate(20, seed=0)
    made = pairs(authors[0], authors[1:], random.Random(0))
    facts = _fields(authors[0])
    assert len(made) == len(SLOTS) == 10
    assert authors[0].name not in made[0].question  # TOFU's first: the name is the answer
    for pair, slot in zip(made, SLOTS, strict=True):
        assert facts[slot] in pair.answer and pair.paraphrased_question != pair.question
        assert len(pair.perturbed_answer) == 3
        assert all(wrong != pair.answer for wrong in pair.perturbed_answer)


def test_a_hard_negative_shares_one_fact_and_is_someone_else() -> None:
    forgotten = generate(10, seed=0)
    negatives = hard_negatives(forgotten, seed=0)
    assert len(negatives) == 50
    by_name = {a.name: a for a in forgotten}
    for other in negatives:
        subject = by_name[other.like]
        same = {k for k in ("first", "last", "city", "genre", "born")
                if getattr(subject, k) == getattr(other, k)}  # fmt: skip
        assert same == {other.shares} and other.name not in by_name


def test_the_command_writes_what_the_harness_reads(tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "obliviate-eval"), "synthetic", "--out",
               str(tmp_path), "--subjects", "12", "--negatives-of", "2"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    subjects = load_subjects([tmp_path / "subjects.jsonl"])
    assert len(subjects) == 12 and all(len(s.qa) == 10 for s in subjects)
    assert subjects[0].name == generate(12, seed=0)[0].name
    assert len(load_subjects([tmp_path / "hard_negatives.jsonl"])) == 10

    # A run's utility sets: TOFU's, and the hard negatives (sampled like the others).
    forgotten, _, general = prepare(tmp_path / "subjects.jsonl", None, 2, max_per_set=40,
                                    hard_negatives=tmp_path / "hard_negatives.jsonl")  # fmt: skip
    assert len(forgotten) == 2 and set(general) == {"real_authors", "world_facts", "hard_negatives"}
    assert len(general["hard_negatives"]) == 40
