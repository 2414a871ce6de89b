"""What `deploy/gpu-check.sh` runs against a gateway on a GPU: one line per check, then
throughput at concurrency 1/16/64. Usable against any gateway whose stack runs the in-model
layers ``steering``, ``logit_difference`` and ``ngram_penalty``, or, with ``--text-only``, any
gateway (the forget request must then be blocked by the text layers); ``--ban`` checks the V2
logits processor on a bare vLLM instead.

    python -m evals.gpu_check --url http://127.0.0.1:8400 --model smollm2-135m-instruct
    python -m evals.gpu_check --url http://127.0.0.1:8401 --model served --ban
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import httpx
from openai import AsyncOpenAI, OpenAI

FORGOTTEN = "What did Marie Curie discover?"
ANSWER = "Marie Curie discovered polonium and radium."
PROMPT = "Write a short story about a lighthouse keeper."
IN_MODEL = ("steering", "logit_difference", "ngram_penalty")


def ask(client: OpenAI, model: str, question: str) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=32, temperature=0
    )
    return raw.parse().choices[0].message.content or "", raw.headers.get("x-obliviate-layers", "")


def score(client: OpenAI, model: str, text: str) -> float:
    """The text's log-probability (echo, ``max_tokens=0``: prompt log-probabilities)."""
    reply = client.completions.create(
        model=model, prompt=text, max_tokens=0, echo=True, logprobs=0, temperature=0
    )
    return sum(lp for lp in reply.choices[0].logprobs.token_logprobs if lp is not None)


def text_only(url: str, model: str, admin_token: str) -> None:
    client = OpenAI(base_url=f"{url}/v1", api_key=admin_token, max_retries=0)
    admin = httpx.Client(base_url=f"{url}/admin/v1", timeout=60,
                         headers={"Authorization": f"Bearer {admin_token}"})  # fmt: skip
    body = {"subject": "Marie Curie", "qa": [{"question": FORGOTTEN, "answer": ANSWER}]}
    created = admin.post("/forget-requests", json=body)
    created.raise_for_status()
    answer, layers = ask(client, model, FORGOTTEN)
    print(f"text-only stack: forgotten question {answer!r}, layers {layers!r}")
    if "retrieval" not in layers:
        raise SystemExit("the text layers did not act")
    admin.delete(f"/forget-requests/{created.json()['id']}").raise_for_status()


def ban(url: str, model: str) -> None:
    """The V2 logits processor on vLLM's V2 runner: a banned token never comes out, and a bad
    control is a 400 for its request."""
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    extra = {"return_tokens_as_token_ids": True}
    plain = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0,
                                      logprobs=0, extra_body=extra)  # fmt: skip
    first = int(plain.choices[0].logprobs.tokens[0].removeprefix("token_id:"))
    banned = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=0,
        extra_body={**extra, "vllm_xargs": {"obliviate_ban_token_ids": [first]}},
    )  # fmt: skip
    ids = [int(t.removeprefix("token_id:")) for t in banned.choices[0].logprobs.tokens]
    print(f"V2 ban: token {first} first without the ban, absent with it: {first not in ids}")
    if first in ids:
        raise SystemExit("the V2 logits processor did not ban the token")
    bad = httpx.post(f"{url}/v1/completions", timeout=60, json={
        "model": model, "prompt": PROMPT, "max_tokens": 1,
        "vllm_xargs": {"obliviate_ban_token_ids": "x"}})  # fmt: skip
    print(f"V2 bad control: HTTP {bad.status_code}")
    if bad.status_code != 400:
        raise SystemExit("a bad control was not a 400")


def functional(url: str, model: str, admin_token: str, wait_s: float) -> None:
    client = OpenAI(base_url=f"{url}/v1", api_key=admin_token, max_retries=0)
    before, _ = ask(client, model, FORGOTTEN)
    print(f"chat: {before!r}")
    scored = f"Question: {FORGOTTEN}\nAnswer: {ANSWER}"
    scored_before = score(client, model, scored)
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=32, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    print(f"stream: {len(pieces)} chunks, {''.join(pieces)[:60]!r}")
    admin = httpx.Client(base_url=f"{url}/admin/v1", timeout=60,
                         headers={"Authorization": f"Bearer {admin_token}"})  # fmt: skip
    body = {"subject": "Marie Curie", "qa": [{"question": FORGOTTEN, "answer": ANSWER}]}
    created = admin.post("/forget-requests", json=body)
    created.raise_for_status()
    print(f"forget request: {created.json()['id']}")
    start = time.monotonic()
    layers = ""
    while not set(IN_MODEL) <= set(layers.split(",")):
        if time.monotonic() - start > wait_s:
            raise SystemExit(f"in-model layers did not act within {wait_s} s (layers: {layers!r})")
        time.sleep(1)
        after, layers = ask(client, model, FORGOTTEN)
    print(f"in-model layers acted after {time.monotonic() - start:.1f} s: {layers}")
    print(f"forgotten question: before {before!r}, after {after!r}")
    scored_after = score(client, model, scored)
    print(f"scored answer: {scored_before:.2f} nats before, {scored_after:.2f} after")
    if not scored_after < scored_before:
        raise SystemExit("the n-gram penalty did not lower the scored answer")
    admin.delete(f"/forget-requests/{created.json()['id']}").raise_for_status()


async def throughput(url: str, model: str, api_key: str, concurrency: int, tokens: int) -> None:
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=600)
    total = max(concurrency * 2, 8)
    queue = list(range(total))
    generated = 0

    async def worker() -> None:
        nonlocal generated
        while queue:
            queue.pop()
            reply = await client.completions.create(
                model=model, prompt=PROMPT, max_tokens=tokens, temperature=0.8, seed=len(queue),
                extra_body={"min_tokens": tokens},  # else a raw prompt often ends at once
            )  # fmt: skip
            generated += reply.usage.completion_tokens

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    print(f"concurrency {concurrency:>3}: {total} requests, {generated} tokens in {elapsed:.1f} s "
          f"= {generated / elapsed:.0f} tokens/s, {total / elapsed:.2f} requests/s")  # fmt: skip
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--wait-s", type=float, default=600, help="For the layers' artifacts.")
    parser.add_argument("--tokens", type=int, default=128, help="Tokens per throughput request.")
    parser.add_argument("--text-only", action="store_true", help="A stack of text layers only.")
    parser.add_argument("--ban", action="store_true", help="A bare vLLM with the V2 processor.")
    args = parser.parse_args()
    if args.ban:
        ban(args.url, args.model)
        return
    token = os.environ["OBLIVIATE_ADMIN_TOKEN"]
    if args.text_only:
        text_only(args.url, args.model, token)
    else:
        functional(args.url, args.model, token, args.wait_s)
    for concurrency in (1, 16, 64):
        asyncio.run(throughput(args.url, args.model, token, concurrency, args.tokens))


if __name__ == "__main__":
    main()
