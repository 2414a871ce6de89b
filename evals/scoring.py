"""Ask and score a served system over HTTP, black-box, as a user or auditor would.

    scorer = GatewayScorer("http://127.0.0.1:8000", "smollm2-135m-instruct", tokenizer_dir)
    scorer.answer_logprobs("Where is the Eiffel Tower?", "Paris")   # per-token log-probs
    scorer.ask("Where is the Eiffel Tower?")                         # greedy chat answer

Scoring uses ``/v1/completions`` with ``echo`` + ``logprobs`` on the chat-formatted question plus
the answer, so it passes through the same suppression as chat. A suppressed request comes back
with the suppression answer and no log-probabilities: ``answer_logprobs`` then returns None, and
the harness scores it as that answer would (no preference between true and wrong answers).
"""

from __future__ import annotations

from pathlib import Path

import httpx
from transformers import AutoTokenizer


class GatewayScorer:
    def __init__(
        self, base_url: str, model: str, tokenizer_dir: Path | str, api_key: str | None = None
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=300)
        self.model = model
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))

    def prompt(self, question: str) -> str:
        """The text the model sees before its answer (the served chat template)."""
        messages = [{"role": "user", "content": question}]
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def answer_logprobs(self, question: str, answer: str) -> list[float] | None:
        """Log-probabilities of the answer's tokens given the question; None if suppressed."""
        prompt = self.prompt(question)
        body = {
            "model": self.model,
            "prompt": prompt + answer,
            "max_tokens": 0,
            "echo": True,
            "logprobs": 0,
            "temperature": 0,
        }
        response = self.http.post("/v1/completions", json=body)
        response.raise_for_status()
        logprobs = response.json()["choices"][0]["logprobs"]
        if not logprobs or not logprobs.get("token_logprobs"):
            return None
        return [
            lp
            for offset, lp in zip(logprobs["text_offset"], logprobs["token_logprobs"], strict=True)
            if offset >= len(prompt) and lp is not None
        ]

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 64) -> tuple[str, str]:
        """(greedy answer, the layers that acted) for a conversation."""
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        response = self.http.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        text = response.json()["choices"][0]["message"]["content"] or ""
        return text, response.headers.get("x-obliviate-layers", "")

    def ask(self, question: str, max_tokens: int = 64) -> str:
        return self.chat([{"role": "user", "content": question}], max_tokens)[0]

    def close(self) -> None:
        self.http.close()
