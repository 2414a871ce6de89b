"""Benchmark of the forget index: block and false-block rates, and matcher latency at scale.

    python -m evals.index_benchmark
    python -m evals.index_benchmark --sizes 1000,100000 --forget-lists 100,1000

Part 1 indexes 1, 10 and 100 forget requests (the TOFU forget authors with subject + QA, then
synthetic authors of ``evals.synthetic``) and reports, with the gateway's matcher and default
thresholds: the block rate on their questions and on hand-written paraphrases, and the
false-block rate on the TOFU retain authors, real authors and world facts. Part 2 forgets 10^2,
10^3 and 10^4 synthetic authors and reports the false-block rate on their hard negatives (people
sharing one fact with a forgotten author) and on TOFU's utility questions, as the forget list
grows (``hard_negative_rates``). Part 3 fills the vector index with
clustered synthetic 384-d vectors (uniform random vectors make approximate search look far worse
than on real embeddings) and reports search p50/p99 and recall@10 against exact search, plus the
cost of embedding one query and of the name lookup with 10^4 forgotten names.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Annotated

import faiss
import numpy as np
import typer

from evals.data import TOFU
from evals.synthetic import Author, generate, hard_negatives, pairs
from index.chunking import chunk_request
from index.embedder import Embedder, embedder_path
from index.forget_index import numbers_of, words_of
from index.lexicon import Lexicon, normalise
from index.matcher import BLOCK, Matcher, MatcherConfig
from index.vectors import VectorIndex
from suppressors.guard_prompt import MAX_SUBJECTS

DATA = Path(__file__).resolve().parent / "data"
NPROBES = [8, 16, 32, 64]
PLACES = ["Lisbon", "Nairobi", "Oslo", "Lima", "Hanoi", "Perth", "Quito", "Accra", "Riga", "Cusco"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def synthetic_requests(authors: list[Author], seed: int = 0) -> list[dict]:
    """Forget requests for synthetic authors (``evals.synthetic``): the name and the ten QA."""
    rng = random.Random(seed)
    return [
        {"subject": a.name,
         "qa": [{"question": q.question, "answer": q.answer} for q in pairs(a, [a], rng)]}
        for a in authors
    ]  # fmt: skip


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
    for person in synthetic_requests(generate(90)):
        requests.append(person)
        questions.append([pair["question"] for pair in person["qa"]])
    return requests, questions


def utility_questions() -> list[str]:
    """TOFU's questions about others: retain authors, real authors, world facts."""
    return [
        r["question"]
        for name in ("retain_authors.jsonl", "real_authors.jsonl", "world_facts.jsonl")
        for r in rows(TOFU / name)
    ]


CACHE = Path(".obliviate/bench-index")
"""Chunk embeddings kept between runs (10^4 synthetic subjects take an hour to embed on 2 cores)."""
CACHE_BATCH = 4096


def embedded(embedder: Embedder, texts: list[str], cache: Path = CACHE) -> np.ndarray:
    """``embedder.encode(texts)``, kept on disk in batches named by their content: an
    interrupted run resumes from the batches it saved."""
    parts = []
    for start in range(0, len(texts), CACHE_BATCH):
        batch = texts[start : start + CACHE_BATCH]
        digest = hashlib.sha256("\n".join([embedder.name, *batch]).encode()).hexdigest()[:24]
        path = cache / f"{digest}.npy"
        if not path.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with path.with_suffix(".tmp").open("wb") as out:
                np.save(out, embedder.encode(batch))
            path.with_suffix(".tmp").replace(path)  # a kill mid-save leaves no batch behind
        parts.append(np.load(path))
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)


def indexed(embedder: Embedder, requests: list[dict]) -> Matcher:
    """A matcher with ``requests`` enforced as the gateway enforces them."""
    matcher = Matcher(embedder, MatcherConfig())
    chunks = [[text for _, text in chunk_request(request)] for request in requests]
    vectors = embedded(embedder, [text for texts in chunks for text in texts])
    next_id = 0
    for i, (request, texts) in enumerate(zip(requests, chunks, strict=True)):
        ids = np.arange(next_id, next_id + len(texts))
        matcher.add(f"r{i}", [request["subject"]], ids, vectors[next_id : next_id + len(texts)],
                    numbers_of(request), words=words_of(request))  # fmt: skip
        next_id += len(texts)
    # As the gateway does past ``approximate_after`` chunks: IVF, not an exact index grown by adds.
    matcher.vectors.build(np.arange(next_id), vectors)
    return matcher


def block_rates(embedder: Embedder) -> None:
    requests, questions = forget_requests()
    unrelated = utility_questions()
    print(f"{'requests':>8} {'forget block':>14} {'paraphrase block':>17} {'false block':>12}")
    for k in (1, 10, 100):
        matcher = indexed(embedder, requests[:k])

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


def names_forgotten(matcher: Matcher, name: str) -> bool:
    """Whether ``name``, whole, reads as a forgotten subject's whole name (exactly or one edit
    away): not merely a name inside it ("Elliot Patrick Benson" holds "Patrick Benson")."""
    key = matcher.lexicon.closest("".join(normalise(name)))
    hits = matcher.lexicon.find(name).values()
    return any(not h.partial and "".join(normalise(h.term)) == key for found in hits for h in found)


def hard_negative_rates(embedder: Embedder, sizes: list[int], sample: int = 300) -> None:
    """Suppression alone as the forget list grows: N synthetic subjects forgotten (the model
    need not know them), then the false-block rate on hard negatives (other people sharing one
    fact with a forgotten subject: its first name, surname, city, genre or birth date) and on
    TOFU's utility questions, the block rate on a sample of forgotten questions, the matcher's
    p50 per question besides embedding it (cached; ``embedding`` times that), and how many
    subjects one question names to the guard note at most (it names ``MAX_SUBJECTS`` of them,
    however many match).

    A hard negative whose whole name is a forgotten one's, or one edit from it (the typos the
    lexicon reads: "John Bruen" for a forgotten "John Bruun"), cannot be told from the forgotten
    subject by its name: it is blocked by design, and its questions are counted apart
    ("named as forgotten"); the false-block rate is given with and without them."""
    rng = random.Random(0)
    unrelated = utility_questions()
    print(f"{'requests':>8} {'forget block':>13} {'hard-negative false block':>26} "
          f"{'named as forgotten':>19} {'others':>16} {'utility false block':>20} "
          f"{'p50 ms':>7} {'most subjects matched':>22}")  # fmt: skip
    for n in sizes:
        authors = generate(n, seed=0)
        matcher = indexed(embedder, synthetic_requests(authors))
        negatives = hard_negatives(authors[: min(n, 20)], seed=0)
        questions = [(a.name, [p.question for p in pairs(a, [a], rng)]) for a in negatives]
        near = [q for _, qs in questions for q in qs]
        flags = [names_forgotten(matcher, name) for name, _ in questions]
        named = [q for (_, qs), flag in zip(questions, flags, strict=True) if flag for q in qs]
        others = [q for (_, qs), flag in zip(questions, flags, strict=True) if not flag for q in qs]
        forgotten = [q["question"] for r in synthetic_requests(rng.sample(authors, min(n, 30)))
                     for q in r["qa"]][:sample]  # fmt: skip
        embedder.encode(near + unrelated)  # cached: the p50 is the matcher's own work
        times, most, blocks = [], 0, {}
        for question in near + unrelated:
            start = time.perf_counter()
            matches = matcher.match([question])
            times.append(time.perf_counter() - start)
            most = max(most, len(matches))
            blocks[question] = any(m.action == BLOCK for m in matches)
        false_named, false_others, false_other = (
            sum(map(blocks.__getitem__, t)) for t in (named, others, unrelated)
        )
        hit, false_near = blocked(matcher, forgotten), false_named + false_others
        print(f"{n:>8} {hit / len(forgotten):>13.1%} {false_near:>6}/{len(near):<5} "
              f"({false_near / len(near):>6.2%}) {false_named:>8}/{len(named):<4}"
              f"{false_others:>10}/{len(others):<4}({false_others / max(len(others), 1):.2%}) "
              f"{false_other:>5}/{len(unrelated):<4} ({false_other / len(unrelated):.2%}) "
              f"{np.percentile(times, 50) * 1e3:>7.1f} "
              f"{most:>10} (note names <= {MAX_SUBJECTS})")  # fmt: skip
    print("* the matcher per question, its embedding cached (see 'embedding one query' below)")


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
        exact = faiss.IndexFlatIP(dim)  # float32 ground truth
        exact.add(vectors.astype(np.float32))
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
    requests = synthetic_requests(generate(10_000, seed=1))
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
        question = f"Which river flows past the old mill in {PLACES[i % len(PLACES)]}, town {i}?"
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
    for i, person in enumerate(synthetic_requests(generate(10_000, seed=1))):
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
    forget_lists: Annotated[
        str, typer.Option(help="Synthetic forget requests for the hard-negative part.")
    ] = "100,1000,10000",
) -> None:
    embedder = Embedder()
    print("== block rates (matcher with default thresholds) ==")
    block_rates(embedder)
    print("== hard negatives as the forget list grows ==")
    hard_negative_rates(embedder, [int(n) for n in forget_lists.split(",")])
    print("== matcher latency ==")
    latency([int(s) for s in sizes.split(",")], embedder)


if __name__ == "__main__":
    typer.run(main)
