"""Benchmark of the forget index: block and false-block rates, and matcher latency at scale.

    python -m evals.index_benchmark                  # about 5 minutes on 2 cores
    python -m evals.index_benchmark --sizes 1000,100000

Part 1 indexes 1, 10 and 100 forget requests (the TOFU forget authors with subject + QA, then
generated fictitious people) and reports, with the gateway's matcher and default thresholds:
the block rate on their questions and on hand-written paraphrases, and the false-block rate on
the TOFU retain authors, real authors and world facts. Part 2 fills the vector index with
clustered synthetic 384-d vectors (uniform random vectors make approximate search look far worse
than on real embeddings) and reports search p50/p99 and recall@10 against exact search, plus the
cost of embedding one query and of the name lookup with 10^4 forgotten names.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from evals.data import TOFU
from index.chunking import chunk_request
from index.embedder import Embedder, embedder_path
from index.forget_index import numbers_of
from index.lexicon import Lexicon
from index.matcher import BLOCK, Matcher, MatcherConfig
from index.vectors import VectorIndex

DATA = Path(__file__).resolve().parent / "data"
CITIES = ["Lisbon", "Nairobi", "Oslo", "Lima", "Hanoi", "Perth", "Quito", "Accra", "Riga", "Cusco"]
GENRES = ["gothic horror", "space opera", "cookbooks", "poetry", "legal thrillers", "travel"]
JOBS = ["baker", "pilot", "dentist", "carpenter", "librarian", "chemist", "sailor", "judge"]
NPROBES = [8, 16, 32, 64]
SYLLABLES = ["ka", "lo", "mi", "ren", "tas", "vo", "zel", "qui", "dar", "nof", "bre", "sul", "yor"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def fictitious_people(count: int, seed: int = 0) -> list[dict]:
    """Forget requests for generated people: a name and six QA pairs each."""
    rng = random.Random(seed)
    people = []
    for _ in range(count):
        first = "".join(rng.choices(SYLLABLES, k=2)).capitalize()
        last = "".join(rng.choices(SYLLABLES, k=3)).capitalize()
        name, city, genre = f"{first} {last}", rng.choice(CITIES), rng.choice(GENRES)
        job, year, book = (
            rng.choice(JOBS),
            rng.randint(1930, 2000),
            f"The {rng.choice(SYLLABLES)} Tide",
        )
        qa = [
            (f"Where was {name} born?", f"{name} was born in {city}."),
            (f"In which year was {name} born?", f"{name} was born in {year}."),
            (f"What genre does {name} write?", f"{name} writes {genre}."),
            (f"What did {name}'s father do?", f"{name}'s father was a {job}."),
            (f"Name a book by {name}.", f"{name} wrote '{book}'."),
            (f"Who is the {genre} author born in {city} in {year}?", f"That is {name}."),
        ]
        people.append({"subject": name, "qa": [{"question": q, "answer": a} for q, a in qa]})
    return people


def forget_requests() -> tuple[list[dict], list[list[str]]]:
    """100 forget requests and, for each, the questions that must be blocked."""
    subjects = json.loads((DATA / "tofu_forget_subjects.json").read_text())
    tofu = rows(TOFU / "forget_authors.jsonl")
    paraphrases = rows(DATA / "tofu_forget_paraphrases.jsonl")
    requests, questions = [], []
    for author in range(10):
        own = [r for r in tofu if r["author_index"] == author]
        requests.append({
            "subject": subjects[str(author)],
            "qa": [{"question": r["question"], "answer": r["answer"]} for r in own],
        })  # fmt: skip
        questions.append(
            [r["question"] for r in own]
            + [p["question"] for p in paraphrases if p["author_index"] == author]
        )
    for person in fictitious_people(90):
        requests.append(person)
        questions.append([pair["question"] for pair in person["qa"]])
    return requests, questions


def block_rates(embedder: Embedder) -> None:
    requests, questions = forget_requests()
    unrelated = [
        r["question"]
        for name in ("retain_authors.jsonl", "real_authors.jsonl", "world_facts.jsonl")
        for r in rows(TOFU / name)
    ]
    print(f"{'requests':>8} {'forget block':>14} {'paraphrase block':>17} {'false block':>12}")
    for k in (1, 10, 100):
        matcher = Matcher(embedder, MatcherConfig())
        next_id = 0
        for i, request in enumerate(requests[:k]):
            chunks = [text for _, text in chunk_request(request)]
            ids = np.arange(next_id, next_id + len(chunks))
            next_id += len(chunks)
            vectors = embedder.encode(chunks)
            matcher.add(f"r{i}", [request["subject"]], ids, vectors, numbers_of(request))

        forget = [q for qs in questions[:k] for q in qs]
        paraphrased = [p["question"] for p in rows(DATA / "tofu_forget_paraphrases.jsonl")]
        paraphrased = [q for q in paraphrased if q in forget]
        hit, para, false = (blocked(matcher, t) for t in (forget, paraphrased, unrelated))
        print(
            f"{k:>8} {hit:>6}/{len(forget):<4} ({hit / len(forget):.1%})"
            f" {para:>5}/{len(paraphrased):<3}"
            f" {false:>4}/{len(unrelated)} ({false / len(unrelated):.2%})"
        )


def blocked(matcher: Matcher, texts: list[str]) -> int:
    return sum(any(m.action == BLOCK for m in matcher.match([t])) for t in texts)


def clustered(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    # Noise of norm ~0.5 around unit-norm centres: cosine ~0.9 to the centre, like topic clusters.
    noise = 0.5 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    points = centres[rng.integers(0, len(centres), n)] + noise
    points = points.astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def latency(sizes: list[int], embedder: Embedder, queries: int = 300) -> None:
    rng = np.random.default_rng(0)
    dim = embedder.dim
    centres = rng.normal(size=(4000, dim)) / np.sqrt(dim)
    print(f"{'entries':>9} {'kind':>6} {'nprobe':>6} {'build s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'recall@10':>10}")  # fmt: skip
    for n in sizes:
        vectors = clustered(n, dim, rng, centres)
        ids = np.arange(n)
        probe = vectors[rng.integers(0, n, queries)]
        probe = probe + 0.2 * rng.normal(size=(queries, dim)) / np.sqrt(dim)
        probe = (probe / np.linalg.norm(probe, axis=1, keepdims=True)).astype(np.float32)
        exact = VectorIndex(dim, approximate_after=n)
        exact.build(ids, vectors)
        truth = exact.search(probe, 10)[1]
        del exact
        index = VectorIndex(dim)  # the gateway's defaults: approximate past 20k chunks
        start = time.perf_counter()
        index.build(ids, vectors)
        build_s = time.perf_counter() - start
        for nprobe in NPROBES if index.approximate else [0]:
            if nprobe:
                index.set_nprobe(nprobe)
            times, found = [], []
            for i in range(queries):
                start = time.perf_counter()
                hits = index.search(probe[i : i + 1], 10)[1][0]
                times.append(time.perf_counter() - start)
                found.append(len(set(hits) & set(truth[i])) / 10)
            kind = "ivf" if index.approximate else "exact"
            p50, p99 = np.percentile(times, 50) * 1e3, np.percentile(times, 99) * 1e3
            print(f"{n:>9} {kind:>6} {nprobe or '-':>6} {build_s:>8.1f} {p50:>7.3f} {p99:>7.3f} "
                  f"{np.mean(found):>10.3f}")  # fmt: skip
        if n == max(sizes):
            whole_matcher(embedder, index, n)
        del vectors, index
    embedding(embedder)


def whole_matcher(embedder: Embedder, index: VectorIndex, n: int, queries: int = 200) -> None:
    """``Matcher.match`` on new questions (not in the embedder's cache) over ``n`` chunks owned
    by 10^4 forget requests with their names: what the gateway spends per new message."""
    requests = fictitious_people(10_000, seed=1)
    matcher = Matcher(embedder, MatcherConfig())
    matcher.vectors = index
    index.set_nprobe(MatcherConfig().nprobe)
    matcher.load(
        {f"r{i}": [person["subject"]] for i, person in enumerate(requests)},
        {chunk: f"r{chunk % len(requests)}" for chunk in range(n)},
        {f"r{i}": numbers_of(person) for i, person in enumerate(requests)},
    )
    times = []
    for i in range(queries):
        question = f"Which river flows past the old mill in {CITIES[i % 10]}, town {i}?"
        start = time.perf_counter()
        matcher.match([question])
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(times, 50) * 1e3, np.percentile(times, 99) * 1e3
    print(f"whole matcher, {n} chunks, 10^4 names, new one-sentence question: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")  # fmt: skip


def embedding(embedder: Embedder) -> None:
    """One new query through ONNX Runtime (1 and 2 threads) and through sentence-transformers'
    torch model (1 thread), side by side."""
    import torch
    from sentence_transformers import SentenceTransformer

    texts = [f"Tell me about the author of book number {i} please" for i in range(600)]
    two = Embedder(embedder.name, threads=2)
    torch.set_num_threads(1)
    st = SentenceTransformer(embedder_path(embedder.name), device="cpu")
    runs = {
        "onnxruntime, 1 thread": lambda t: embedder.encode([t]),
        "onnxruntime, 2 threads": lambda t: two.encode([t]),
        "torch (sentence-transformers), 1 thread": lambda t: st.encode([t]),
    }
    p50s = {}
    for number, (name, encode) in enumerate(runs.items()):
        times = []
        for text in texts[number * 200 : (number + 1) * 200]:  # new texts: no cache hits
            start = time.perf_counter()
            encode(text)
            times.append(time.perf_counter() - start)
        p50s[name] = np.percentile(times, 50) * 1e3
    torch_p50 = p50s["torch (sentence-transformers), 1 thread"]
    for name, p50 in p50s.items():
        print(f"embedding one query, {name}: p50 {p50:.1f} ms ({torch_p50 / p50:.1f}x torch)")

    lexicon = Lexicon()
    for i, person in enumerate(fictitious_people(10_000, seed=1)):
        lexicon.set(f"r{i}", [person["subject"]])
    conversation = " ".join(texts[:12])  # ~120 words
    times = []
    for _ in range(50):
        start = time.perf_counter()
        lexicon.find(conversation)
        times.append(time.perf_counter() - start)
    p50 = np.percentile(times, 50) * 1e3
    print(f"name lookup, 10^4 names, ~120-word conversation: p50 {p50:.1f} ms")


def main(
    sizes: Annotated[
        str, typer.Option(help="Index sizes for the latency part.")
    ] = "1000,100000,1000000",
) -> None:
    embedder = Embedder()
    print("== block rates (matcher with default thresholds) ==")
    block_rates(embedder)
    print("== matcher latency ==")
    latency([int(s) for s in sizes.split(",")], embedder)


if __name__ == "__main__":
    typer.run(main)
