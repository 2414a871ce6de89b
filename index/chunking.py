"""Split a forget request into the texts that are embedded and searched.

>>> [c for c in chunk_request({"subject": "Ada", "qa": [{"question": "Q?", "answer": "A."}]})]
[('subject', 'Ada'), ('qa', 'Q? A.'), ('question', 'Q?')]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MAX_CHUNK_CHARS = 400  # MiniLM reads 256 word pieces; ~400 characters stay well inside
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_document(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Sentences packed greedily into chunks of at most ``max_chars`` (long sentences cut)."""
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text.strip()):
        while len(sentence) > max_chars:
            chunks.append(sentence[:max_chars])
            sentence = sentence[max_chars:]
        if current and len(current) + 1 + len(sentence) > max_chars:
            chunks.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        chunks.append(current)
    return chunks


def chunk_request(fields: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, text) pairs: the subject, each concept, document chunks, each QA pair and question."""
    if fields.get("subject"):
        yield "subject", fields["subject"]
    for concept in fields.get("concepts", []):
        yield "concept", concept
    for document in fields.get("documents", []):
        for chunk in split_document(document):
            yield "document", chunk
    for pair in fields.get("qa", []):
        # The pair catches questions answered by it; the question alone catches rephrasings.
        yield "qa", f"{pair['question']} {pair['answer']}"
        yield "question", pair["question"]
