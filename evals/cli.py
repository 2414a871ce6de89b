"""The ``obliviate-eval`` command: benchmarks of a served system, driven over HTTP like any
client (a console script of its own, so the gateway never imports evals).

obliviate-eval build-models --forget 1                      # TOFU target + retain model
obliviate-eval run --system target=URL ... --out runs/x     # TOFU metrics through the gateway
obliviate-eval sequential --url URL ...                     # suppression vs removal as k grows
obliviate-eval whitebox --run runs/sequential ...           # attacks on held weights
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli import parse_params

TOKENIZER = typer.Option(
    help="Folder of the served model's tokenizer and chat template (the scored prompts use "
    "them); default: the embedded model's."
)
app = typer.Typer(help="Benchmarks of the served system (the evals package).")
HARD_NEGATIVES = typer.Option(
    help="JSONL of hard negatives (`obliviate-eval synthetic`): a utility set of its own, with "
    "its false-block rate."
)


@app.command("build-models")
def build_models(
    forget: Annotated[int, typer.Option(help="Subjects of the forget data to forget.")] = 1,
    forget_data: Annotated[
        Path | None,
        typer.Option(help="JSONL of the forgettable subjects (default: TOFU forget authors)."),
    ] = None,
    retain_data: Annotated[
        list[Path] | None,
        typer.Option(help="JSONL always retained, repeatable (default: TOFU retain authors)."),
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Where the models are saved.")] = Path(
        ".obliviate"
    ),
    epochs: Annotated[int, typer.Option(help="Passes over the QA pairs.")] = 5,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and of training.")] = 0,
    device: Annotated[
        str, typer.Option(help="cpu, cuda, or auto (a GPU where one is present).")
    ] = "auto",
) -> None:
    """Fine-tune the embedded base into a target (all QA) and a retain model (retain QA only).
    Interrupted, it resumes from its last checkpoint when run again."""
    # Imported here: the serving path never loads training code.
    from evals.build_models import FinetuneConfig
    from evals.build_models import build_models as build
    from evals.data import TOFU, load_subjects, split
    from gateway.engine.embedded_model import ensure_embedded_model

    forgettable = load_subjects([forget_data or TOFU / "forget_authors.jsonl"])
    forgotten, kept = split(forgettable, forget, seed)
    kept += load_subjects(retain_data or [TOFU / "retain_authors.jsonl"])
    config = FinetuneConfig(epochs=epochs, max_steps=max_steps, seed=seed, device=device)
    base = ensure_embedded_model(data_dir)
    models = build(data_dir, base, forgotten, kept, config)
    typer.echo(f"forgotten subjects: {[s.name for s in forgotten]}")
    for name, folder in models.items():
        typer.echo(f"{name}: {folder}   (serve it: obliviate serve --model {folder})")


@app.command("merge")
def merge_version(
    adapter: Annotated[Path, typer.Argument(help="A model version's folder (LoRA adapter).")],
    out: Annotated[Path, typer.Option(help="Folder for the merged model.")],
    base: Annotated[
        str | None, typer.Option(help="Base model folder (default: the embedded model).")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Holds the embedded model.")] = Path(".obliviate"),
) -> None:
    """Merge a model version into its base weights, to serve (and score) it without LoRA."""
    from gateway.engine.embedded_model import ensure_embedded_model
    from removal.trainer import merge

    folder = merge(base or str(ensure_embedded_model(data_dir)), str(adapter), out)
    typer.echo(f"{folder}   (serve it: obliviate serve --model {folder})")


@app.command("run")
def eval_run(
    system: Annotated[
        list[str],
        typer.Option(
            help="NAME=URL of a served system (a gateway); NAME=URL#ARM measures one arm of it "
            "(--api-key must then be the admin token). Repeatable."
        ),
    ],
    reference: Annotated[str, typer.Option(help="NAME of the system serving the retain model.")],
    out: Annotated[
        Path, typer.Option(help="Run folder for the reports; rerunning resumes from it.")
    ],
    forget: Annotated[int, typer.Option(help="Subjects of the forget data forgotten.")] = 1,
    suppress: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME of a system to send the forgotten subjects as forget requests "
            "(admin API) before measuring it, timing how soon they take effect."
        ),
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(envvar="OBLIVIATE_ADMIN_TOKEN", help="Admin token of --suppress systems."),
    ] = None,
    forget_data: Annotated[Path | None, typer.Option(help="JSONL of forgettable subjects.")] = None,
    retain_data: Annotated[Path | None, typer.Option(help="JSONL of retained subjects.")] = None,
    max_questions: Annotated[
        int | None, typer.Option(help="Cap on questions per set (quick runs).")
    ] = None,
    max_per_set: Annotated[
        int | None,
        typer.Option(
            help="Seeded sample of at most this many retain / real-author / world-fact "
            "questions per set (the forget set is always whole)."
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Tokens per greedy answer.")] = 64,
    concurrency: Annotated[int, typer.Option(help="Questions in flight per system.")] = 16,
    model: Annotated[
        str, typer.Option(help="Model name the systems serve.")
    ] = "smollm2-135m-instruct",
    api_key: Annotated[str | None, typer.Option(help="User API key of the systems.")] = None,
    data_dir: Annotated[Path, typer.Option(help="Holds the embedded model (tokenizer).")] = Path(
        ".obliviate"
    ),
    tokenizer: Annotated[Path | None, TOKENIZER] = None,
    seed: Annotated[int, typer.Option(help="Seed of the forget/retain split.")] = 0,
    hard_negatives: Annotated[Path | None, HARD_NEGATIVES] = None,
    family: Annotated[
        list[str] | None,
        typer.Option(
            help="Attack family to measure leaks with, repeatable (default: every one; e.g. "
            "`--family direct` for a quick run)."
        ),
    ] = None,
) -> None:
    """Measure served systems black-box and write a report (TOFU metrics, leaks per attack)."""

    from evals import harness, report
    from evals.checkpoint import Checkpoint
    from evals.data import prepare
    from evals.forgetting import forget_subjects
    from evals.scoring import GatewayScorer
    from gateway.engine.embedded_model import ensure_embedded_model
    from gateway.evidence.probes import FAMILIES

    systems = dict(s.split("=", 1) for s in system)
    suppress = suppress or []
    if reference not in systems:
        raise typer.BadParameter(f"--reference must name one of {sorted(systems)}")
    if not set(suppress) <= set(systems):
        raise typer.BadParameter(f"--suppress must name systems among {sorted(systems)}")
    if suppress and not admin_token:
        raise typer.BadParameter("--suppress needs --admin-token (or OBLIVIATE_ADMIN_TOKEN)")
    if unknown := set(family or []) - set(FAMILIES):
        raise typer.BadParameter(f"unknown --family {sorted(unknown)}; one of {list(FAMILIES)}")
    forgotten, retained, general = prepare(
        forget_data, retain_data, forget, seed, max_questions, max_per_set, hard_negatives
    )
    tokenizer = tokenizer or ensure_embedded_model(data_dir)
    reports = []
    for name, target in systems.items():
        url, _, arm = target.partition("#")
        checkpoint = Checkpoint(out / "cache" / f"{name}.jsonl")
        scorer = GatewayScorer(url, model, tokenizer, api_key, checkpoint, arm or None)
        delay = None
        if name in suppress:
            typer.echo(f"sending {len(forgotten)} forget request(s) to {name} ...")
            delay = forget_subjects(scorer, url, admin_token or "", forgotten)
        typer.echo(f"evaluating {name} at {url} ...")
        result = harness.evaluate(
            scorer, name, forgotten, retained, general, max_tokens, concurrency, family
        )
        result.time_to_effect_s = delay
        reports.append(result)
        scorer.close()
    harness.finish(reports, next(r for r in reports if r.name == reference))
    meta = {"title": f"forget {forget}", "forgotten": [s.name for s in forgotten], "seed": seed,
            "systems": systems, "reference": reference, "suppressed": suppress,
            "max_tokens": max_tokens, "max_questions": max_questions,
            "max_per_set": max_per_set, "families": family or list(FAMILIES)}  # fmt: skip
    report.write(out, reports, meta)
    typer.echo((out / "report.md").read_text())


@app.command("sequential")
def eval_sequential(
    url: Annotated[str, typer.Option(help="The gateway under test: serves the target, LoRA on.")],
    target: Annotated[Path, typer.Option(help="The target's weights (HF folder) it serves.")],
    reference: Annotated[
        str, typer.Option(help="URL (or URL#ARM) of a gateway serving the retain model.")
    ],
    reference_weights: Annotated[Path, typer.Option(help="The retain model's weights.")],
    out: Annotated[Path, typer.Option(help="Run folder; rerunning resumes from it.")],
    subjects: Annotated[int, typer.Option(help="Forget requests, one subject each.")] = 10,
    batch_every: Annotated[int, typer.Option(help="removal-batch trains every m requests.")] = 5,
    method: Annotated[str, typer.Option(help="Removal method of every job.")] = "simnpo",
    param: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE of the method's config (repeatable).")
    ] = None,
    content: Annotated[
        str, typer.Option(help="What a forget request holds: qa, documents or subject.")
    ] = "qa",
    regimes: Annotated[
        str,
        typer.Option(help="Regimes measured, comma-separated (default all of them)."),
    ] = "suppression,removal-seq,removal-batch,hybrid",
    admin_token: Annotated[
        str, typer.Option(envvar="OBLIVIATE_ADMIN_TOKEN", help="Admin token of both gateways.")
    ] = "",
    forget_data: Annotated[Path | None, typer.Option(help="JSONL of forgettable subjects.")] = None,
    retain_data: Annotated[Path | None, typer.Option(help="JSONL of retained subjects.")] = None,
    max_questions: Annotated[
        int | None, typer.Option(help="Questions per forgotten subject (quick runs).")
    ] = None,
    max_per_set: Annotated[
        int | None, typer.Option(help="Seeded sample per retain / general set.")
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Tokens per greedy answer.")] = 48,
    concurrency: Annotated[int, typer.Option(help="Questions in flight.")] = 8,
    model: Annotated[str, typer.Option(help="Model name served.")] = "smollm2-135m-instruct",
    data_dir: Annotated[Path, typer.Option(help="Holds the embedded model (tokenizer).")] = Path(
        ".obliviate"
    ),
    tokenizer: Annotated[Path | None, TOKENIZER] = None,
    seed: Annotated[int, typer.Option(help="Seed of the order of the subjects.")] = 0,
    hard_negatives: Annotated[Path | None, HARD_NEGATIVES] = None,
) -> None:
    """Suppression vs removal as forget requests pile up: curves, table and raw JSON in OUT."""
    from evals.data import prepare
    from evals.sequential import REGIMES, Gateway, Sequential, SequentialConfig
    from gateway.engine.embedded_model import ensure_embedded_model

    if content not in ("qa", "documents", "subject"):
        raise typer.BadParameter("--content must be qa, documents or subject")
    chosen = tuple(r.strip() for r in regimes.split(",") if r.strip())
    if not chosen or not set(chosen) <= set(REGIMES):
        raise typer.BadParameter(f"--regimes must name some of {', '.join(REGIMES)}")
    config = SequentialConfig(
        subjects=subjects, batch_every=batch_every, method=method,
        params=parse_params(param) or SequentialConfig().params, content=content,  # type: ignore[arg-type]
        max_tokens=max_tokens, concurrency=concurrency, regimes=chosen,
    )  # fmt: skip
    # The utility sets are sampled by --max-per-set alone: cut to a question or two, their
    # harmonic means would be 0 as soon as one answer scores 0.
    forgotten, retained, general = prepare(
        forget_data, retain_data, subjects, seed, None, max_per_set, hard_negatives
    )
    for subject in forgotten:
        subject.qa = subject.qa[:max_questions]
    gateway = Gateway(url.rstrip("/"), admin_token, model, target, reference, reference_weights,
                      tokenizer or ensure_embedded_model(data_dir))  # fmt: skip
    Sequential(out, config, gateway, forgotten, retained, general, typer.echo).run()
    typer.echo((out / "report.md").read_text())


@app.command("whitebox")
def eval_whitebox(
    run: Annotated[Path, typer.Option(help="A sequential run folder: its removal versions.")],
    url: Annotated[str, typer.Option(help="The run's gateway (its forget requests, its arms).")],
    target: Annotated[Path, typer.Option(help="The target's weights (HF folder) it serves.")],
    reference_weights: Annotated[Path, typer.Option(help="The retain model's weights.")],
    admin_token: Annotated[
        str, typer.Option(envvar="OBLIVIATE_ADMIN_TOKEN", help="The gateway's admin token.")
    ] = "",
    relearn_questions: Annotated[
        int, typer.Option(help="Related QA of the forgotten subjects to relearn from.")
    ] = 10,
    gcg_questions: Annotated[int, typer.Option(help="Forgotten questions attacked by GCG.")] = 2,
    gcg_steps: Annotated[int, typer.Option(help="GCG iterations.")] = 50,
    gcg_candidates: Annotated[int, typer.Option(help="GCG suffixes scored per step.")] = 32,
    max_tokens: Annotated[int, typer.Option(help="Tokens per greedy answer.")] = 32,
    forget_data: Annotated[Path | None, typer.Option(help="JSONL of forgettable subjects.")] = None,
    model: Annotated[str, typer.Option(help="Model name served.")] = "smollm2-135m-instruct",
    data_dir: Annotated[Path, typer.Option(help="Holds the embedded model (tokenizer).")] = Path(
        ".obliviate"
    ),
    tokenizer: Annotated[Path | None, TOKENIZER] = None,
) -> None:
    """Relearning, quantisation and GCG against a sequential run's removal versions, and GCG
    through the gateway against its suppression arm; report in RUN/whitebox."""
    from evals.data import TOFU, load_subjects
    from evals.gcg import GCGConfig
    from evals.whitebox import Systems, WhiteBox, WhiteBoxConfig, forgotten_qa, versions_of
    from gateway.engine.embedded_model import ensure_embedded_model

    url = url.rstrip("/")
    forgotten = forgotten_qa(run, url, admin_token)
    asked = {qa.question for qa in forgotten}
    subjects = [s for s in load_subjects([forget_data or TOFU / "forget_authors.jsonl"])
                if any(qa.question in asked for qa in s.qa)]  # fmt: skip
    # Round-robin over the subjects, so each lends some of its other questions.
    others = [[qa for qa in s.qa if qa.question not in asked] for s in subjects]
    related = [qa for row in itertools.zip_longest(*others) for qa in row if qa is not None]
    config = WhiteBoxConfig(
        relearn_questions=relearn_questions, gcg_questions=gcg_questions, max_tokens=max_tokens,
        gcg=GCGConfig(steps=gcg_steps, candidates=gcg_candidates),
    )  # fmt: skip
    systems = Systems(target, reference_weights, versions_of(run), url, admin_token, model,
                      tokenizer or ensure_embedded_model(data_dir))  # fmt: skip
    WhiteBox(run / "whitebox", config, systems, forgotten, related, typer.echo).run()
    typer.echo((run / "whitebox" / "report.md").read_text())


@app.command("removal-vs-suppression")
def eval_removal_vs_suppression(
    target: Annotated[Path, typer.Option(help="The target's weights (HF folder).")],
    retain: Annotated[Path, typer.Option(help="The retain model's weights.")],
    out: Annotated[Path, typer.Option(help="Report folder; rerunning resumes from it.")],
    model: Annotated[
        list[str] | None,
        typer.Option(help="NAME=DIR of a removal version merged into the target (repeatable)."),
    ] = None,
    forget: Annotated[int, typer.Option(help="Subjects of the forget data forgotten.")] = 1,
    forget_data: Annotated[Path | None, typer.Option(help="JSONL of forgettable subjects.")] = None,
    max_questions: Annotated[
        int | None, typer.Option(help="Forgotten questions per subject; the rest are relearnt.")
    ] = None,
    max_per_set: Annotated[
        int, typer.Option(help="QA per retain and general set (utility; the probe reads retain).")
    ] = 40,
    max_tokens: Annotated[int, typer.Option(help="Tokens per greedy answer.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    gcg_questions: Annotated[
        int, typer.Option(min=1, help="Forgotten questions GCG attacks on every system.")
    ] = 2,
    gcg_steps: Annotated[int, typer.Option(help="GCG iterations.")] = 50,
    gcg_candidates: Annotated[int, typer.Option(help="GCG suffixes scored per step.")] = 32,
    url: Annotated[
        str | None,
        typer.Option(
            help="The gateway serving the target with the subjects forgotten: the "
            "suppression arm's row."
        ),
    ] = None,
    admin_token: Annotated[
        str, typer.Option(envvar="OBLIVIATE_ADMIN_TOKEN", help="The gateway's admin token.")
    ] = "",
    served_model: Annotated[str, typer.Option(help="Model name the gateway serves.")] = (
        "smollm2-135m-instruct"
    ),
) -> None:
    """Memorisation, membership, TOFU's forget quality and utility, the representation probe
    and recovery of each removal version beside the target (the suppression arm's weights) and
    the retain model, and with --url the suppression arm through its gateway; report in OUT."""
    from transformers import AutoTokenizer

    from evals.data import prepare
    from evals.gcg import GCGConfig
    from evals.removal_vs_suppression import SUPPRESSION, Arm, Comparison, ComparisonConfig

    models = {}
    for item in model or []:
        name, _, folder = item.partition("=")
        if not folder:
            raise typer.BadParameter(f"--model {item!r}: write NAME=DIR")
        if name in ("target", "retain", SUPPRESSION):
            raise typer.BadParameter(f"--model {item!r}: {name!r} names a system of its own")
        models[name] = Path(folder)
    forgotten, retained, general = prepare(forget_data, None, forget, seed, None, max_per_set)
    asked = [qa for s in forgotten for qa in s.qa[:max_questions]]
    related = [qa for s in forgotten for qa in s.qa[len(s.qa[:max_questions]) :]]
    config = ComparisonConfig(
        max_tokens=max_tokens, gcg_questions=gcg_questions,
        gcg=GCGConfig(steps=gcg_steps, candidates=gcg_candidates),
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(target)
    utility = {"retain": [qa for s in retained for qa in s.qa], **general}
    arm = Arm(url.rstrip("/"), served_model, admin_token) if url else None
    Comparison(out, config, target, retain, models, asked, related, utility, tokenizer,
               typer.echo, arm).run()  # fmt: skip
    typer.echo((out / "report.md").read_text())


@app.command("synthetic")
def eval_synthetic(
    out: Annotated[Path, typer.Option(help="Folder of subjects.jsonl and hard_negatives.jsonl.")],
    subjects: Annotated[int, typer.Option(help="Fictitious authors to make.")] = 100,
    negatives_of: Annotated[
        int, typer.Option(help="The first N subjects get hard negatives (5 each).")
    ] = 10,
    seed: Annotated[int, typer.Option(help="Seed of everything drawn.")] = 0,
) -> None:
    """TOFU-style fictitious authors with their QA (paraphrases, perturbed answers), and hard
    negatives that share one fact each with a subject; `--forget-data` reads the files."""
    from evals.synthetic import generate, hard_negatives, write_jsonl

    authors = generate(subjects, seed)
    write_jsonl(authors, out / "subjects.jsonl", seed)
    write_jsonl(hard_negatives(authors[:negatives_of], seed), out / "hard_negatives.jsonl", seed)
    typer.echo(f"{subjects} subjects and {5 * min(negatives_of, subjects)} hard negatives in {out}")
