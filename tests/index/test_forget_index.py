"""Store + matcher on the real embedded embedder: matching, revoking, durability, rebuilds."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import faiss
import numpy as np
import pytest

from index.embedder import Embedder
from index.forget_index import ForgetIndex, details_of
from index.matcher import BLOCK, GUARD, MatcherConfig
from index.store import IdempotencyConflict
from index.vectors import VectorIndex

AUTHOR = {
    "subject": "Hsiao Yun-Hwa",
    "qa": [
        {
            "question": "What is the profession of Hsiao Yun-Hwa's father?",
            "answer": "The father of Hsiao Yun-Hwa is a civil engineer.",
        },
        {
            "question": "What is the full name of the author born in Taipei, Taiwan on 05/11/1991?",
            "answer": "The author's full name is Hsiao Yun-Hwa.",
        },
    ],
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def open_index(tmp_path: Path, embedder: Embedder) -> ForgetIndex:
    url = f"sqlite:///{tmp_path / 'forget.db'}"
    return ForgetIndex.open(tmp_path / "index", url, embedder, MatcherConfig())


def test_match_block_guard_and_revoke(tmp_path: Path, embedder: Embedder) -> None:
    index = open_index(tmp_path, embedder)
    assert index.matcher.match(["Who is Hsiao Yun-Hwa?"]) == []  # nothing forgotten yet
    record, created = index.add(AUTHOR)
    assert created

    by_name = index.matcher.match(["Tell me about hsiao yunhwa"])
    assert [(m.request_id, m.action) for m in by_name] == [(record.id, BLOCK)]
    by_meaning = index.matcher.match(["Who is the author born in Taipei, Taiwan on 05/11/1991?"])
    assert by_meaning[0].action == BLOCK and by_meaning[0].terms == []
    related = index.matcher.match(["What is the profession of Rajeev Majumdar's father?"])
    assert [m.action for m in related] in ([], [GUARD])
    assert index.matcher.match(["What is the boiling point of water?"]) == []

    index.revoke(record.id)
    assert index.matcher.match(["Tell me about hsiao yunhwa"]) == []
    assert index.store.get(record.id).status == "revoked"


def test_match_now_matches_on_the_callers_thread_only_when_nothing_must_be_waited_for(
    tmp_path: Path, embedder: Embedder
) -> None:
    index = open_index(tmp_path, embedder)
    index.add(AUTHOR)
    matcher = index.matcher
    question = ["Who was born in Taipei, Taiwan on 05/11/1991 and writes?"]
    assert matcher.match_now(question) is None  # the question must be embedded first
    expected = matcher.match(question)
    assert expected and matcher.match_now(question) == expected  # now its embedding is cached
    for busy in (matcher.locked(), embedder._lock):  # an index change or an encode under way
        with busy:
            assert matcher.match_now(question) is None
    assert matcher.match_now(question) == expected


def test_idempotency(tmp_path: Path, embedder: Embedder) -> None:
    index = open_index(tmp_path, embedder)
    first, created = index.add(AUTHOR, idempotency_key="k")
    again, created_again = index.add(AUTHOR, idempotency_key="k")
    assert created and not created_again and again.id == first.id
    assert len(index.store.active()) == 1
    with pytest.raises(IdempotencyConflict):
        index.add({"subject": "Other"}, idempotency_key="k")


def test_reopen_keeps_requests_and_rebuilds_stale_vectors(
    tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    index = open_index(tmp_path, embedder)
    kept, _ = index.add(AUTHOR)
    gone, _ = index.add({"subject": "Carmen Montenegro"})
    index.revoke(gone.id)
    index.save()  # what a gateway does when it stops
    caplog.clear()

    reopened = open_index(tmp_path, embedder)
    assert "rebuilding" not in caplog.text  # the saved vectors were loaded
    assert [m.request_id for m in reopened.matcher.match(["Hsiao Yun-Hwa"])] == [kept.id]
    assert reopened.matcher.match(["Carmen Montenegro"]) == []

    # A crash after the store commit, with the vectors not saved since: they are stale, and
    # opening rebuilds them from the store.
    late, _ = reopened.add({"subject": "Elvin Mammadov"})
    rebuilt = open_index(tmp_path, embedder)
    assert "rebuilding" in caplog.text
    assert [m.request_id for m in rebuilt.matcher.match(["Elvin Mammadov"])] == [late.id]
    assert rebuilt.matcher.match(["Carmen Montenegro"]) == []
    assert len(rebuilt.matcher.vectors) == len(reopened.matcher.vectors)

    # Vectors saved with other codes (float32, before half precision) are rebuilt once.
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    del manifest["codes"]
    (tmp_path / "index" / "manifest.json").write_text(json.dumps(manifest))
    caplog.clear()
    open_index(tmp_path, embedder)
    assert "rebuilding" in caplog.text
    caplog.clear()
    open_index(tmp_path, embedder)
    assert "rebuilding" not in caplog.text


def test_vector_index_exact_and_approximate_agree() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 32))
    vectors = (centres[rng.integers(0, 50, 5000)] + 0.1 * rng.normal(size=(5000, 32))).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(5000) * 3
    exact, approx = VectorIndex(32), VectorIndex(32, approximate_after=1000, nprobe=16)
    exact.build(ids, vectors)
    approx.build(ids, vectors)
    assert approx.approximate and not exact.approximate
    queries = vectors[:100] + 0.01
    hits_exact, hits_approx = exact.search(queries, 10)[1], approx.search(queries, 10)[1]
    recall = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(hits_exact, hits_approx, strict=True)]
    )
    assert recall >= 0.9
    scores = exact.search(vectors[:1], 1)[0][0, 0], approx.search(vectors[:1], 1)[0][0, 0]
    assert scores == pytest.approx((1.0, 1.0), abs=2e-3)  # half-precision codes, both kinds
    # 2 bytes a dimension: a search reads half the memory float32 codes would take.
    assert faiss.downcast_index(exact._index.index).code_size == 2 * 32
    assert faiss.extract_index_ivf(approx._index).code_size == 2 * 32
    approx.remove(ids[:1])
    assert ids[0] not in approx.search(vectors[:1], 10)[1]


def test_a_text_naming_only_other_subject_is_likely_about_another_subject(
    tmp_path: Path, embedder: Embedder
) -> None:
    """TOFU's questions share templates: "the author born in Baku on February 14, 1960" scored
    0.86 against a forgotten author born in Baku on April 13, 1970, and a guard note naming him
    made the model answer with his name. Its numbers are not the request's: related, but it
    neither blocks nor is named in a guard note (``other_subject``)."""
    index = open_index(tmp_path, embedder)
    record, _ = index.add(AUTHOR)
    other = "What is the full name of the author born in Taipei, Taiwan on 08/23/1962?"
    ours = "What is the full name of the author born in Taipei, Taiwan on 05/11/1991?"
    for matcher in (index.matcher, open_index(tmp_path, embedder).matcher):  # and after a restart
        [match] = matcher.match([other])
        assert (match.request_id, match.action, match.other_subject) == (record.id, GUARD, True)
        assert match.similarity >= MatcherConfig().block_similarity  # it blocked before
        [match] = matcher.match([ours])
        assert (match.action, match.other_subject) == (BLOCK, False)
        # Names are not numbers: the forgotten name still blocks beside another date.
        assert matcher.match(["Was Hsiao Yun-Hwa born on 08/23/1962?"])[0].action == BLOCK


def test_details_are_the_requests_other_names() -> None:
    answer = ("Hsiao Yun-Hwa's father, Chen Wei, was an engineer in Taipei. Her novel The Silent "
              "Ocean of Tainan won the Golden Quill Award. She writes at night.")  # fmt: skip
    record = SimpleNamespace(subject="Hsiao Yun-Hwa", concepts=[], documents=[],
                             qa=[{"question": "Who is she?", "answer": answer}])  # fmt: skip
    assert details_of(record) == ["Chen Wei", "Taipei", "Silent Ocean of Tainan",
                                  "Golden Quill Award"]  # fmt: skip


def test_a_name_part_inside_someone_elses_name_is_theirs(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A first name alone, in a conversation about the forgotten author, blocks; inside another
    person's written name ("Hsiao Chen"), it is that person's (the hard negatives of
    ``evals.index_benchmark``: 40 % of them were blocked at 100 forgotten authors)."""
    index = open_index(tmp_path, embedder)
    record, _ = index.add(AUTHOR)
    alone = index.matcher.match(["What is the profession of Hsiao's father?"])
    assert [(m.request_id, m.action) for m in alone] == [(record.id, BLOCK)]
    sentence_start = index.matcher.match(["Was Hsiao's father a civil engineer?"])
    assert [m.action for m in sentence_start] == [BLOCK]
    other = index.matcher.match(["What is the profession of Hsiao Chen's father?"])
    assert all(m.action != BLOCK for m in other), other
    whole = index.matcher.match(["Is Hsiao Yun-Hwa related to Hsiao Chen?"])
    assert [m.action for m in whole] == [BLOCK]


def test_a_name_part_blocks_only_where_it_is_written_as_their_name(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Name parts are common words and other people's names too (at 10^3 forgotten synthetic
    authors: "coral reef", "'The Master and Margarita'"): a part blocks where it is written with
    a capital, outside a name or a title with words the request never uses. Those stay related
    (guard note, checked output). A place before it, a quoted question or a stray number does
    not make it someone else's."""
    index = open_index(tmp_path, embedder)
    record, _ = index.add(AUTHOR)
    for text in (
        "What is the profession of Hsiao's father?",
        "In Kaohsiung, Hsiao's father worked as a civil engineer, right?",
        'Answer this: "What is the profession of the father of Hsiao?"',
        "What is the profession of Hsiao's father? Answer in 20 words.",
    ):
        assert index.matcher.match([text])[0].action == BLOCK, text
    for text in (
        "what is the profession of hsiao's father?",
        "Was the father of the author of 'The Garden of Hsiao' a civil engineer?",
    ):
        matches = index.matcher.match([text])
        assert [(m.request_id, m.action) for m in matches] == [(record.id, GUARD)], text


def test_a_template_question_naming_another_date_or_place_is_about_someone_else(
    tmp_path: Path, embedder: Embedder
) -> None:
    """The hard negatives of ``evals.index_benchmark`` share one fact with a forgotten author:
    the same birth year but another day, or the same date in another city, scored 0.86-0.91 on
    the question that asks for the author's name. Dates are compared whole, and a place written
    as "City, Country" that the request never names is someone else's."""
    index = open_index(tmp_path, embedder)
    record, _ = index.add(AUTHOR)
    for text in (
        "What is the full name of the author born in Taipei, Taiwan on 05/12/1991?",
        "What is the full name of the author born in Tainan, Taiwan on 05/11/1991?",
    ):
        [match] = index.matcher.match([text])
        assert (match.request_id, match.action, match.other_subject) == (record.id, GUARD, True)
    ours = "What is the full name of the author born in Taipei, Taiwan on May 11th, 1991?"
    assert index.matcher.match([ours])[0].action == BLOCK


def test_a_name_one_edit_away_inside_another_persons_name_is_theirs(
    tmp_path: Path, embedder: Embedder
) -> None:
    """At 10^4 forgotten synthetic authors, every question about TOFU's retain author "Elliot
    Patrick Benson" was blocked for a forgotten "Patrick Benton" (one edit away): a misspelt
    whole name inside a written name with a word that is neither the request's nor one edit
    from the name's is someone else's. Misspelt alone, or behind an honorific, it still blocks;
    written exactly, it blocks inside any name."""
    index = open_index(tmp_path, embedder)
    benton = {"subject": "Patrick Benton", "qa": [{"question": "Where was Patrick Benton born?",
                                                   "answer": "He was born in Leeds."}]}  # fmt: skip
    record, _ = index.add(benton)
    for text in ("Where was Patrick Bentn born?", "Where was Professor Patrik Benton born?",
                 "Where was Elliot Patrick Benton born?"):  # fmt: skip
        assert [(m.request_id, m.action) for m in index.matcher.match([text])] == [
            (record.id, BLOCK)
        ], text
    other = index.matcher.match(["How did Elliot Patrick Benson's father influence his work?"])
    assert all(m.action != BLOCK for m in other), other
    for text in (
        "Where was P4tr1k Benton born?",  # leet and a typo
        "Elliot Patrick Benson met patrik benton: where was he born?",  # said elsewhere too
        "Where was Benton born? Not Elliot Patrick Benson, I mean.",  # a part, alone
    ):
        assert [m.action for m in index.matcher.match([text])] == [BLOCK], text


def test_initials_hyphens_and_possessives_belong_to_the_name_they_are_written_in(
    tmp_path: Path, embedder: Embedder
) -> None:
    """False blocks found at 10^4 forgotten synthetic authors, each a name part of a forgotten
    author inside another person's written name: after initials ("C.S. Lewis", "John F.
    Kennedy"), in a hyphenated first name ("Christa-Maria"), and in a possessive one edit from
    it ("Devane's" read as "Devaney")."""
    index = open_index(tmp_path, embedder)
    for subject in ("Angus Lewis", "Colum Kennedy", "Maria Pastor", "Susannah Devaney"):
        index.add({"subject": subject, "qa": [{"question": f"Where was {subject} born?",
                                               "answer": "In Galway."}]})  # fmt: skip
    for text in (
        "The writer of 'The Chronicles of Narnia', C.S. Lewis, was born in which country?",
        "In which city was John F. Kennedy assassinated?",
        "What genre does Christa-Maria Wilms write?",
        "What did Marguerite Devane's father do for a living?",
    ):
        matches = index.matcher.match([text])
        assert all(m.action != BLOCK for m in matches), (text, matches)
    for text in ("Where was Lewis born?", "Where was Maria born, in Galway?"):
        assert index.matcher.match([text])[0].action == BLOCK, text


def test_the_switch_to_ivf_trains_outside_the_matchers_lock(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers (every request's check, the event loop's names-only checks) keep the exhaustive
    index while the IVF one trains: the lock is held for the swap only."""
    url = f"sqlite:///{tmp_path / 'forget.db'}"
    index = ForgetIndex.open(tmp_path / "index", url, embedder, MatcherConfig(approximate_after=40))
    build = VectorIndex.build

    def build_unlocked(self: VectorIndex, ids: np.ndarray, vectors: np.ndarray) -> None:
        assert not index.matcher.locked().locked()
        build(self, ids, vectors)

    monkeypatch.setattr(VectorIndex, "build", build_unlocked)
    names = [f"{first} {last}" for first in ("Ilse", "Tomas", "Wren", "Odile")
             for last in ("Varga", "Lindqvist", "Okafor", "Brandt")]  # fmt: skip
    for name in names:
        qa = [{"question": f"Where was {name} born?", "answer": f"{name} was born in Riga."}]
        index.add({"subject": name, "qa": qa})
    assert index.matcher.vectors.approximate and len(index.matcher.vectors) > 40
    first = index.matcher.match([f"Where was {names[-1]} born?"])[0]
    assert (first.action, first.terms) == (BLOCK, [names[-1]])
