"""Lexical name matching and chunking (pure functions, no model)."""

from __future__ import annotations

import pytest

from index.chunking import chunk_request, split_document
from index.lexicon import Hit, Lexicon, spellings


@pytest.fixture
def lexicon() -> Lexicon:
    lexicon = Lexicon()
    lexicon.set("a", ["Hsiao Yun-Hwa"])
    lexicon.set("b", ["José Ñúñez", "Quintavalle Prize"])
    return lexicon


@pytest.mark.parametrize(
    "text",
    [
        "Who is Hsiao Yun-Hwa?",
        "who is HSIAO YUN HWA",
        "hsiaoyunhwa's books",
        "Hsaio Yun-Hwa",  # transposed letters
        "Hsiao  Yun -  Hwa",  # spacing
        "Hsiao Yun-Hwa.\nNext line",
        "H s i a o  Y u n - H w a",  # spaced-out letters
        "H5140 YunHw4",  # leet digits
    ],
)
def test_whole_name_variants(lexicon: Lexicon, text: str) -> None:
    assert [h.term for h in lexicon.find(text)["a"] if not h.partial] == ["Hsiao Yun-Hwa"]


def test_accents_and_partial_names(lexicon: Lexicon) -> None:
    assert lexicon.find("books by jose nunez")["b"][0].term == "José Ñúñez"
    partial = lexicon.find("the Quintavalle family")["b"]
    assert [(h.term, h.partial) for h in partial] == [("Quintavalle", True)]


@pytest.mark.parametrize(
    "text", ["Who wrote Hamlet?", "Hsiao", "the yun", "a prize", "", "🙂" * 1000, "\x00\x01"]
)
def test_no_whole_name_hits(lexicon: Lexicon, text: str) -> None:
    hits = [h for found in lexicon.find(text).values() for h in found]
    assert all(h.partial for h in hits)


def test_remove(lexicon: Lexicon) -> None:
    lexicon.remove("a")
    assert lexicon.find("Hsiao Yun-Hwa") == {}


def test_chunking() -> None:
    long = " ".join(f"Sentence number {i} is here." for i in range(60))
    chunks = split_document(long, max_chars=100)
    assert all(len(c) <= 100 for c in chunks)
    assert " ".join(chunks) == long
    assert split_document("x" * 250, max_chars=100) == ["x" * 100, "x" * 100, "x" * 50]
    kinds = [k for k, _ in chunk_request({"subject": "S", "concepts": ["C"], "documents": [long]})]
    assert kinds[:2] == ["subject", "concept"] and set(kinds[2:]) == {"document"}


def test_typos_are_one_edit() -> None:
    """One edit of a name, not a share of its length: at 10^4 forgotten names, two edits in a
    long one reached other people's ("Agnete Clausen" for "Agnete Laursen")."""
    lexicon = Lexicon()
    lexicon.set("a", ["Agnete Laursen"])
    lexicon.set("b", ["Madonna"])
    assert lexicon.find("Agnete Laursen")["a"] == [Hit("Agnete Laursen", False, typo=False)]
    # A typo: its parts are found too, since the name may be someone else's (``Matcher``)
    assert lexicon.find("Agnete Lavrsen")["a"] == [Hit("Agnete Laursen", False, typo=True),
                                                   Hit("Agnete", True, typo=False)]  # fmt: skip
    assert all(h.partial for h in lexicon.find("Agnete Clausen")["a"])
    # Under SUBSTITUTION_CHARS letters, a letter inserted or deleted, not changed
    assert lexicon.find("Madonnas")["b"] == [Hit("Madonna", False, typo=True)]
    assert "b" not in lexicon.find("Madonne")


def test_spaced_letters_beside_one_letter_words() -> None:
    """A spaced-out name joined with the article before it, or a letter after, is still one
    edit from the name at most once those are read apart."""
    lexicon = Lexicon()
    lexicon.set("a", ["Hsiao Yun-Hwa"])
    for text in ("once a H s i a o Y u n H w a a time", "i H s i a o Y u n H w x i said"):
        assert [h.term for h in lexicon.find(text)["a"] if not h.partial] == ["Hsiao Yun-Hwa"]


def test_plain_text_has_one_spelling() -> None:
    """A stream's watch reads every chunk's window: text with no spaced letters and no leet
    digit is read once, not once per way a name could be disguised."""
    assert spellings("once upon a time") == [[("once", 4), ("upon", 9), ("a", 11), ("time", 16)]]
    assert len(spellings("H s i a o")) == 5  # as written, and four ways of joining the letters
    assert len(spellings("H5140 wrote")) == 2  # as written, and leet read
