"""Benchmark: what serving removal versions as LoRA adapters costs, side by side in one run.

    python -m evals.experiments.lora_benchmark --rounds 3 --max-tokens 64

Starts two embedded vLLMs (through gateways, to use their launcher): one without LoRA, one with
``--enable-lora``, into which it hot-loads a random rank-8 adapter on every linear layer (the
shape of a removal version). Rounds alternate the three targets: base weights on the plain vLLM,
base weights on the LoRA vLLM, and the adapter. Prints the adapter's load time and streamed
output tokens/s at concurrency 1 and 16, with ratios to the plain vLLM.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from evals.gateway_overhead import Samples, run_round
from gateway.engine.embedded_model import EMBEDDED_MODEL_NAME, ensure_embedded_model
from gateway.engine.launcher import free_port
from gateway.spawn import REPO, start_gateway, stop
from removal.methods.base import ALL_LINEAR


def random_adapter(base: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules=list(ALL_LINEAR), init_lora_weights=False
    )
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(out)
    return out


def main(
    rounds: Annotated[int, typer.Option(help="Alternating rounds per target and concurrency.")] = 3,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per streamed request.")] = 64,
) -> None:
    work = Path(tempfile.mkdtemp())
    adapter = random_adapter(ensure_embedded_model(REPO / ".obliviate"), work / "adapter")
    ports = {"plain": free_port(), "lora": free_port()}
    processes = []
    try:
        for name, port in ports.items():
            print(f"starting vLLM ({name}) ...", flush=True)
            env = {"OBLIVIATE_VLLM_LORA": str(name == "lora").lower()}
            args = ("--vllm-port", str(port))
            processes.append(start_gateway(work / f"{name}.log", *args, env=env)[1])
        lora_url = f"http://127.0.0.1:{ports['lora']}"
        start = time.perf_counter()
        body = {"lora_name": "adapter", "lora_path": str(adapter)}
        httpx.post(f"{lora_url}/v1/load_lora_adapter", json=body, timeout=120).raise_for_status()
        print(f"adapter hot-load: {(time.perf_counter() - start) * 1e3:.0f} ms")
        targets = {
            "base, plain vLLM": (f"http://127.0.0.1:{ports['plain']}", EMBEDDED_MODEL_NAME),
            "base, LoRA vLLM": (lora_url, EMBEDDED_MODEL_NAME),
            "adapter, LoRA vLLM": (lora_url, "adapter"),
        }
        for url, model in targets.values():
            asyncio.run(run_round(url, Samples(), 1, 8, model))  # warm-up
        for concurrency in (1, 16):
            samples = {name: Samples() for name in targets}
            for _ in range(rounds):
                for name, (url, model) in targets.items():
                    asyncio.run(run_round(url, samples[name], concurrency, max_tokens, model))
            rates = {name: s.tokens / s.wall_s for name, s in samples.items()}
            print(f"streams, concurrency {concurrency}, {max_tokens} tokens:")
            for name, rate in rates.items():
                ratio = rate / rates["base, plain vLLM"]
                print(f"  {name:<20} {rate:8.1f} tok/s   ratio {ratio:.3f}")
    finally:
        for process in processes:
            stop(process)


if __name__ == "__main__":
    typer.run(main)
