"""Property tests of the matcher's text handling (hypothesis): any text, no crash, no miss."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.embedder import Embedder
from index.matcher import BLOCK, Matcher, MatcherConfig

NAME = "Hsiao Yun-Hwa"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    matcher = Matcher(Embedder(), MatcherConfig())
    matcher.add("a", [NAME], np.array([0]), matcher.embedder.encode([NAME]))
    return matcher


@FUZZ
@given(texts=st.lists(st.text(), max_size=4))
def test_any_text_is_matched_without_error(matcher: Matcher, texts: list[str]) -> None:
    matches = matcher.match(texts)
    assert all(m.request_id == "a" for m in matches)


@FUZZ
@given(before=st.text(), after=st.text())
def test_the_name_is_found_whatever_surrounds_it(matcher: Matcher, before: str, after: str) -> None:
    matches = matcher.match([f"{before} {NAME} {after}"], dense=False)
    assert [(m.request_id, m.action) for m in matches] == [("a", BLOCK)]


def test_huge_and_control_character_texts_stay_fast(matcher: Matcher) -> None:
    texts = ["\x00\x1b[2J\u202e" * 1000, "word " * 20_000 + NAME, "\n" * 50_000]
    start = time.perf_counter()
    matches = matcher.match(texts)
    assert time.perf_counter() - start < 10
    assert [m.request_id for m in matches] == ["a"]
