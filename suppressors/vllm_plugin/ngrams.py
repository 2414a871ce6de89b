"""N-gram tables of forgotten texts: which tokens would continue one, given the tokens before.

    >>> table = completions([[5, 6, 7, 8], [9, 6, 7, 10]], n=3)
    >>> table[(6, 7)] == {8, 10}
    True
    >>> penalised(table, 3, [1, 6, 7], first=1)   # logits after token 7 (offset 1 from ``first``)
    {1: {8, 10}}

Pure Python: the plugin's worker and the offline benchmark share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Completions = dict[tuple[int, ...], set[int]]
"""The n - 1 tokens before -> the tokens that complete an n-gram of the texts."""


def completions(sequences: Iterable[Sequence[int]], n: int) -> Completions:
    """The n-gram table of token sequences."""
    table: Completions = {}
    for tokens in sequences:
        for end in range(n - 1, len(tokens)):
            table.setdefault(tuple(tokens[end - n + 1 : end]), set()).add(tokens[end])
    return table


def penalised(
    table: Completions, n: int, context: Sequence[int], first: int
) -> dict[int, set[int]]:
    """For each position i >= ``first`` of ``context`` (its logits predict token i + 1), the
    tokens that would complete an n-gram there, keyed by i - ``first`` (none: left out)."""
    found = {}
    for i in range(max(first, n - 2), len(context)):
        if after := table.get(tuple(context[i - n + 2 : i + 1])):
            found[i - first] = after
    return found
