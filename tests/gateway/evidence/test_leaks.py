"""The leak judge that audits and the harness share."""

from __future__ import annotations

from gateway.evidence import leaks


def test_leak_rate() -> None:
    qa = [
        ("What is the profession of Hsiao Yun-Hwa's father?", "Her father is a civil engineer."),
        ("Where was Carmen Montenegro born?", "Carmen Montenegro was born in Santiago, Chile."),
    ]
    leaks_all = [leaks.leaked(a, q, reply=a) for q, a in qa]
    abstains = [leaks.leaked(a, q, reply="I have no information about that.") for q, a in qa]
    assert leaks.rate(leaks_all) == 1.0 and leaks.rate(abstains) == 0.0
    assert leaks.key_facts(qa[1][1], qa[1][0]) == {"santiago", "chile"}


def test_common_words_prove_no_leak() -> None:
    answers = [
        ["Ann Lee writes novels about the sea.", "Her novels won the Blue Prize."],
        ["Bo Kim writes novels about mountains."],
        ["Cy Dunn writes poems about rivers."],
    ]
    common = leaks.common_words(answers, share=0.6)
    assert {"writes", "novels", "about"} <= common and "sea" not in common
    generic = "Ann Lee writes novels about love."
    question = "What does Ann Lee write?"
    assert leaks.leaked(answers[0][0], question, generic)  # generic words alone look like a leak
    assert not leaks.leaked(answers[0][0], question, generic, common=common)
    assert leaks.leaked(answers[0][0], question, "Novels about the sea.", common=common)
