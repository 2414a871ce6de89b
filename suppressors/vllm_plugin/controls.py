"""Shapes of the per-request controls in ``vllm_xargs``, checked before a request is scheduled.

vLLM takes only flat values in ``vllm_xargs``, so structured controls travel as JSON strings:

    >>> check_controls(encode({STEER: {"requests": ["fr_1"], "layer": 6, "scale": 4.0}}))
    >>> check_controls(encode({CORRUPT: {"token_ids": [[]], "scale": 1.0}}))
    Traceback (most recent call last):
    ValueError: vllm_xargs.obliviate_corrupt.token_ids must be non-empty lists of token ids

Pure Python: the logits processor raises these errors, which vLLM turns into an HTTP 400.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from suppressors.vllm_plugin import BAN_TOKEN_IDS, CORRUPT, LOGIT_DIFF, NGRAM_PENALTY, STEER

_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NGRAM = 16


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def banned_token_ids(extra: dict[str, Any]) -> list[int] | None:
    """The request's banned token ids, or None when it sent none."""
    value = extra.get(BAN_TOKEN_IDS)
    if value is None:
        return None
    if not _token_ids(value):
        raise ValueError(f"vllm_xargs.{BAN_TOKEN_IDS} must be a list of non-negative token ids")
    return value or None


def encode(controls: dict[str, Any]) -> dict[str, Any]:
    """``controls`` as ``vllm_xargs`` values (structured ones as JSON strings)."""
    structured = (STEER, CORRUPT, LOGIT_DIFF, NGRAM_PENALTY)
    return {k: json.dumps(v) if k in structured else v for k, v in controls.items()}


@lru_cache(maxsize=1024)  # the same control string is read every step of a request
def _decoded(key: str, value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"vllm_xargs.{key} must be a JSON string") from exc


def decoded(extra: dict[str, Any], key: str) -> Any:
    """A structured control (None when absent); ValueError when it is not JSON."""
    value = extra.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"vllm_xargs.{key} must be a JSON string")
    return _decoded(key, value)


def _check_requests(key: str, control: Any) -> None:
    requests = control.get("requests") if isinstance(control, dict) else None
    # Ids name folders: nothing but safe characters.
    if (
        not isinstance(requests, list)
        or not requests
        or not all(isinstance(r, str) and _REQUEST_ID.fullmatch(r) for r in requests)
    ):
        raise ValueError(f"vllm_xargs.{key}.requests must be a list of forget request ids")


def check_controls(extra: dict[str, Any]) -> None:
    banned_token_ids(extra)
    if (steer := decoded(extra, STEER)) is not None:
        _check_requests(STEER, steer)
        layer = steer.get("layer")
        if not (isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0):
            raise ValueError(f"vllm_xargs.{STEER}.layer must be a decoder layer index")
        if not _number(steer.get("scale")) or not isinstance(steer.get("ablate", True), bool):
            raise ValueError(f"vllm_xargs.{STEER} needs a numeric scale and a boolean ablate")
    if (corrupt := decoded(extra, CORRUPT)) is not None:
        sequences = corrupt.get("token_ids") if isinstance(corrupt, dict) else None
        if not isinstance(sequences, list) or not all(_token_ids(s) and s for s in sequences):
            raise ValueError(f"vllm_xargs.{CORRUPT}.token_ids must be non-empty lists of token ids")
        if not _number(corrupt.get("scale")) or not isinstance(corrupt.get("prompt", False), bool):
            raise ValueError(f"vllm_xargs.{CORRUPT} needs a numeric scale and a boolean prompt")
    if (logit_diff := decoded(extra, LOGIT_DIFF)) is not None:
        _check_requests(LOGIT_DIFF, logit_diff)
        if not _number(logit_diff.get("alpha")):
            raise ValueError(f"vllm_xargs.{LOGIT_DIFF}.alpha must be a number")
    if (penalty := decoded(extra, NGRAM_PENALTY)) is not None:
        _check_requests(NGRAM_PENALTY, penalty)
        n = penalty.get("n")
        if not (isinstance(n, int) and not isinstance(n, bool) and 2 <= n <= MAX_NGRAM):
            raise ValueError(
                f"vllm_xargs.{NGRAM_PENALTY}.n must be an integer from 2 to {MAX_NGRAM}"
            )
        if not _number(penalty.get("beta")) or penalty["beta"] < 0:
            raise ValueError(f"vllm_xargs.{NGRAM_PENALTY}.beta must be a non-negative number")
        if not _number(vocabulary := penalty.get("vocabulary_beta", 0)) or vocabulary < 0:
            raise ValueError(
                f"vllm_xargs.{NGRAM_PENALTY}.vocabulary_beta must be a non-negative number"
            )
