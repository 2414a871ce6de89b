"""Removal or suppression, measured on the weights (``obliviate-eval removal-vs-suppression``).

    obliviate-eval removal-vs-suppression --target T --retain R --model npo=DIR --model wga=DIR

The survey's questions, for each removal method's version (merged into the target, as
``evals/removal_methods.sh`` makes them), the target (whose weights the suppression arm serves)
and the retain model (which never saw the forgotten subjects):

- **open-unlearning's metrics** on the forgotten answers: exact memorisation, extraction
  strength, and the MIA family's AUCs of the true answers against their perturbed, never-trained
  versions (LOSS, zlib, reference = the retain model, Min-K%, Min-K%++, GradNorm), each with its
  PrivLeak against the retain model's AUC;
- **what a user reads**: greedy answers to the forgotten questions as refusal, gibberish or an
  answer (``metrics.answer_kind``), and their ROUGE-L recall;
- **TOFU's forget quality and model utility**, scored as ``obliviate-eval run`` scores a served
  system (``harness.score_set``), on the weights: every question of the forgotten subjects, and
  the retain and general sets;
- **the representation probe** per depth (``probe.py``), on every question of the forgotten
  subjects;
- **recovery**: relearning on related QA, 8- and 4-bit rounding, a soft prompt optimised per
  question (``soft_prompt.py``), and ablating the version's own forget-vs-unseen direction at
  the probe's depths, and a GCG suffix optimised on the system's weights (``gcg``: on the
  ``gcg_questions`` that give least of their answer away, the same for every system), each as
  the share of the ROUGE gap to the target it closes (``recovered``);
- **the suppression arm**, given its gateway (``Arm``): the forgotten questions sent through it,
  then with the suffixes GCG optimised on the target's weights (which it serves; they stay
  private, so no other attack applies).

Leaks through the gateway are ``obliviate-eval run``'s (the methods' report of
``evals/removal_methods.sh``). Writes OUT/report.md and the probe's readings per depth as
OUT/probe_*.png. Resumable: each system's parts (``PARTS``) are kept in OUT/comparison.json as
they finish; delete a part there to measure it again.
"""

from __future__ import annotations

import functools
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from evals import harness, metrics, plots
from evals.build_models import FinetuneConfig, finetune, model_dir
from evals.data import QA
from evals.gcg import GCGConfig, suffixed
from evals.probe import (
    DEPTHS,
    MIN_LOST,
    RepresentationProbe,
    ablated,
    depth_layer,
    difference_direction,
)
from evals.report import _fmt, _recovered, _table, _with
from evals.scoring import GatewayScorer, load_model, model_logprobs
from evals.soft_prompt import SoftPromptConfig, soft_answer, soft_prompt
from evals.whitebox import answers, gateway_answers, gcg_answers, quantised
from index.files import write_json_atomic
from index.pairs import encode

ATTACKS = ("loss", "zlib", "reference", "min_k", "min_k_plus_plus", "gradnorm")
PARTS = ("memorisation", "tofu", "probe", "recovery", "ablation", "gcg")
"""What is measured of each system, in order (GCG last: it takes longest)."""
ATTACK_PARTS = {"recovery", "ablation"}
"""The parts that attack a version: not the target's (it has nothing to recover). The target's
GCG is measured: its suffixes are the ones sent to the suppression arm."""
SUPPRESSION = "suppression arm"
PROBE_PLOTS = {
    "probe_accuracy": "Linear probe balanced accuracy, forget vs unseen answers",
    "forget_shift": "Forget states moved from the target's (1 - cos)",
    "retain_shift": "Retain states moved from the target's (1 - cos)",
    "ablation_recovery": "Forget log-prob recovered by ablating the forget direction",
}


@dataclass
class ComparisonConfig:
    max_tokens: int = 32
    """Tokens per greedy answer."""
    relearn_questions: int = 10
    relearn: FinetuneConfig = field(
        default_factory=lambda: FinetuneConfig(epochs=2, batch_size=2, learning_rate=5e-5)
    )
    """The relearning attack's fine-tune (as ``obliviate-eval whitebox``'s)."""
    bits: tuple[int, ...] = (8, 4)
    soft_prompt: SoftPromptConfig = field(default_factory=lambda: SoftPromptConfig(steps=30))
    """The soft-prompt attack, per forgotten question."""
    gcg: GCGConfig = field(default_factory=GCGConfig)
    gcg_questions: int = 2
    """Forgotten questions GCG attacks: those that give least of their answer away (a question
    that names the author and asks for a gender lets a model that never knew answer it)."""


@dataclass
class Arm:
    """The gateway serving the suppression arm with the forgotten subjects' requests in force."""

    url: str
    model: str
    admin_token: str


@dataclass
class TokenStats:
    """One answer's tokens (its end of text left out, as open-unlearning does)."""

    logprobs: list[float]
    predicted: list[int]
    labels: list[int]
    means: list[float]
    """Mean of log p over the vocabulary at each position (Min-K%++)."""
    variances: list[float]


class ModelScorer:
    """A system scored on weights held here, with no server (``harness.score_set``'s scorer).

    scorer = ModelScorer(load_model("DIR"), tokenizer)
    scorer.prefetch(["Where is the Eiffel Tower?"], max_tokens=32)   # optional: batched
    scorer.chat([{"role": "user", "content": "Where is the Eiffel Tower?"}], max_tokens=32)
    """

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer
        self.replies: dict[tuple[str, int], str] = {}

    def prefetch(self, questions: list[str], max_tokens: int, batch: int = 16) -> None:
        """Answer ``questions`` in batches now (generation one at a time is most of the cost)."""
        for i in range(0, len(questions), batch):
            chunk = questions[i : i + batch]
            replies = answers(self.model, self.tokenizer, chunk, max_tokens)
            self.replies.update(((q, max_tokens), r) for q, r in zip(chunk, replies, strict=True))

    def answers_logprobs(self, question: str, answers: list[str]) -> list[list[float] | None]:
        return model_logprobs(self.model, self.tokenizer, question, answers)

    def chat(
        self, messages: list[dict[str, str]], max_tokens: int = 64, fresh: bool = False
    ) -> tuple[str, str]:
        """The greedy answer to a one-question chat; no layer acts on weights."""
        (question,) = [m["content"] for m in messages]
        if (question, max_tokens) not in self.replies:
            self.prefetch([question], max_tokens)
        return self.replies[(question, max_tokens)], ""


def token_stats(model: Any, tokenizer: Any, qa: QA, answer: str) -> TokenStats:
    ids, prompt_tokens = encode(tokenizer, qa.question, answer)
    ids = ids[:-1]  # the end of text
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, prompt_tokens - 1 : -1].float()
    logp = torch.log_softmax(logits, -1)
    labels = ids[prompt_tokens:]
    picked = logp[torch.arange(len(labels)), labels]
    p = logp.exp()
    means = (p * logp).sum(-1)
    variances = (p * logp.square()).sum(-1) - means.square()
    return TokenStats(picked.tolist(), logits.argmax(-1).tolist(), labels,
                      means.tolist(), variances.tolist())  # fmt: skip


def gradient_norm(model: Any, tokenizer: Any, qa: QA, answer: str) -> float:
    """The mean over parameter tensors of the answer loss's gradient norm (open-unlearning's)."""
    ids, prompt_tokens = encode(tokenizer, qa.question, answer)
    labels = [-100] * prompt_tokens + ids[prompt_tokens:]
    model.zero_grad()
    model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.backward()
    norms = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    return float(torch.stack(norms).mean())


class Comparison:
    def __init__(
        self,
        out: Path,
        config: ComparisonConfig,
        target: Path,
        retain: Path,
        models: dict[str, Path],
        forgotten: list[QA],
        related: list[QA],
        utility: dict[str, list[QA]],
        tokenizer: Any,
        log: Callable[[str], None] = print,
        arm: Arm | None = None,
    ):
        """``forgotten``: the questions asked of the forgotten subjects; ``related``: their
        others (relearnt); ``utility``: the retain set (``"retain"``) and the general sets;
        ``arm``: the suppression arm's gateway, if it is measured."""
        self.out, self.config, self.log, self.tokenizer = out, config, log, tokenizer
        self.arm = arm
        self.systems = {"target": target, "retain": retain, **models}
        self.forgotten = [qa for qa in forgotten if qa.perturbed]
        self.every_forgotten = forgotten + related
        self.unseen = [QA(qa.question, qa.perturbed[0]) for qa in self.forgotten]
        self.utility = utility
        self.probe = RepresentationProbe(tokenizer, self.every_forgotten, utility["retain"])
        self.related = related[: config.relearn_questions]
        giveaway = [metrics.rouge_l_recall(qa.answer, qa.question) for qa in self.forgotten]
        self.attacked = sorted(range(len(self.forgotten)), key=giveaway.__getitem__)[
            : config.gcg_questions
        ]
        """GCG's questions (indices): those whose question says least of their answer."""
        out.mkdir(parents=True, exist_ok=True)
        path = out / "comparison.json"
        self.results: dict[str, dict] = (
            json.loads(path.read_text())["systems"] if path.exists() else {}
        )

    def run(self) -> dict:
        for name, weights in self.systems.items():
            result = self.results.setdefault(name, {})
            model = None
            for part in PARTS:
                if self._kept(result, part) or (part in ATTACK_PARTS and name == "target"):
                    continue
                self.log(f"{name}: measuring {part}")
                if model is None:
                    model = load_model(str(weights))
                result[part] = getattr(self, f"_{part}")(name, weights, model)
                self.write(plots=False)
            if name == "target" and self.arm:  # its GCG suffixes are the arm's attack
                self._suppression(self.arm)
        return self.write()

    def _memorisation(self, name: str, weights: Path, model: Any) -> dict[str, Any]:
        stats = [token_stats(model, self.tokenizer, qa, qa.answer) for qa in self.forgotten]
        unseen = [token_stats(model, self.tokenizer, qa, qa.answer) for qa in self.unseen]
        scores = {side: self._scores(model, side, side_stats)
                  for side, side_stats in (("forget", stats), ("unseen", unseen))}  # fmt: skip
        auc = {a: metrics.auc(scores["forget"][a], scores["unseen"][a]) for a in ATTACKS}
        replies = self._answers(model)
        return {
            "exact_memorization": statistics.fmean(
                metrics.exact_memorization(s.predicted, s.labels) or 0.0 for s in stats),
            "extraction_strength": statistics.fmean(
                metrics.extraction_strength(s.predicted, s.labels) for s in stats),
            "mia_auc": auc,
            "rouge": self._rouge(replies),
            "replies": replies,
        }  # fmt: skip

    def _tofu(self, name: str, weights: Path, model: Any) -> dict[str, Any]:
        """Each set's TOFU scores, and the forget set's raw truth ratios (for forget quality)."""
        scorer = ModelScorer(model, self.tokenizer)
        every = self.every_forgotten + [qa for kept in self.utility.values() for qa in kept]
        scorer.prefetch([qa.question for qa in every], self.config.max_tokens)
        forget, ratios, _ = harness.score_set(
            scorer, self.every_forgotten, True, self.config.max_tokens, concurrency=1
        )
        sets = {set_name: asdict(harness.score_set(
                    scorer, questions, False, self.config.max_tokens, concurrency=1)[0])
                for set_name, questions in self.utility.items()}  # fmt: skip
        return {"forget": asdict(forget), "forget_truth_ratios": ratios, "sets": sets}

    def _probe(self, name: str, weights: Path, model: Any) -> list[dict[str, Any]]:
        # The target's own rows are the reference: how well its states (the suppression arm's,
        # which serves these weights) tell forget text from unseen text, having learnt it.
        return [asdict(row) for row in self.probe.run(model, self.target)]

    def _scores(self, model: Any, side: str, stats: list[TokenStats]) -> dict[str, list]:
        """Membership scores of each answer of ``side`` by every attack (higher: looks seen)."""
        pairs, reference = self._sides[side], self._reference[side]
        model.train()  # GradNorm's backward pass; these models have no dropout
        norms = [gradient_norm(model, self.tokenizer, qa, qa.answer) for qa in pairs]
        model.eval()
        return {
            "loss": [metrics.loss_score(s.logprobs) for s in stats],
            "zlib": [metrics.zlib_score(s.logprobs, qa.answer)
                     for s, qa in zip(stats, pairs, strict=True)],
            "reference": [metrics.reference_score(s.logprobs, r)
                          for s, r in zip(stats, reference, strict=True)],
            "min_k": [metrics.min_k_percent(s.logprobs) for s in stats],
            "min_k_plus_plus": [metrics.min_k_plus_plus(s.logprobs, s.means, s.variances)
                                for s in stats],
            "gradnorm": [metrics.gradnorm_score(n) for n in norms],
        }  # fmt: skip

    @functools.cached_property
    def _sides(self) -> dict[str, list[QA]]:
        return {"forget": self.forgotten, "unseen": self.unseen}

    @functools.cached_property
    def _reference(self) -> dict[str, list[list[float]]]:
        """The retain model's token log-probabilities of each side's answers (the reference
        attack's), computed once for every system."""
        model = load_model(str(self.systems["retain"]))
        return {side: [token_stats(model, self.tokenizer, qa, qa.answer).logprobs for qa in pairs]
                for side, pairs in self._sides.items()}  # fmt: skip

    @functools.cached_property
    def target(self) -> Any:
        """The target's weights, loaded once: every probe compares with them."""
        return load_model(str(self.systems["target"]))

    def _answers(self, model: Any) -> list[str]:
        questions = [qa.question for qa in self.forgotten]
        return answers(model, self.tokenizer, questions, self.config.max_tokens)

    def _rouge(self, replies: list[str], questions: list[int] | None = None) -> list[float]:
        """ROUGE-L recall of each forgotten answer (of ``questions``, indices, if given)."""
        qas = self.forgotten if questions is None else [self.forgotten[i] for i in questions]
        return [metrics.rouge_l_recall(qa.answer, r) for qa, r in zip(qas, replies, strict=True)]

    def _recovery(self, name: str, weights: Path, model: Any) -> dict[str, list[float]]:
        """ROUGE-L recall of each forgotten answer after each attack (the retain model's: what
        the attacks teach a model that never knew)."""
        rouge: dict[str, list[float]] = {}
        config = self.config.relearn
        if self.related:  # the forgotten subjects' other questions
            folder = model_dir(self.out, weights, self.related, config)
            relearned = finetune(weights, self.related, folder, config)
            rouge["relearn"] = self._rouge(self._answers(load_model(str(relearned))))
        for bits in self.config.bits:
            rouge[f"int{bits}"] = self._rouge(
                self._answers(quantised(load_model(str(weights)), bits))
            )
        rouge["soft_prompt"] = self._rouge([
            soft_answer(model, self.tokenizer, qa.question,
                        soft_prompt(model, self.tokenizer, qa.question, qa.answer,
                                    self.config.soft_prompt), self.config.max_tokens)
            for qa in self.forgotten
        ])  # fmt: skip
        return rouge

    def _ablation(self, name: str, weights: Path, model: Any) -> dict[str, list[float]]:
        """ROUGE-L recall of each forgotten answer with the probe's forget-vs-unseen direction
        projected out at each depth."""
        forget, unseen = self.probe.states(model, "forget"), self.probe.states(model, "unseen")
        rouge = {}
        for depth in DEPTHS:
            layer = depth_layer(model, depth)
            direction = difference_direction(forget[layer], unseen[layer])
            with ablated(model, layer, direction):
                rouge[f"ablate@{depth:g}"] = self._rouge(self._answers(model))
        return rouge

    def _gcg(self, name: str, weights: Path, model: Any) -> dict[str, list]:
        """A GCG suffix per attacked question, optimised on these weights for its answer, and
        the answers to the suffixed questions with their ROUGE-L recall."""
        qas = [self.forgotten[i] for i in self.attacked]
        suffixes, replies = gcg_answers(model, self.tokenizer, qas, self.config.gcg,
                                        self.config.max_tokens)  # fmt: skip
        return {"questions": self.attacked, "suffixes": suffixes, "replies": replies,
                "rouge": self._rouge(replies, self.attacked)}  # fmt: skip

    def _kept(self, result: dict, part: str) -> bool:
        """Whether ``result`` holds ``part`` as this run measures it (GCG: on its questions)."""
        if part == "gcg":
            return result.get("gcg", {}).get("questions") == self.attacked
        return part in result

    def _suppression(self, arm: Arm) -> None:
        """The forgotten questions through the suppression arm's gateway (``none``), then the
        attacked ones with the suffixes GCG found on the target's weights (``gcg``)."""
        rows = self.results.setdefault(SUPPRESSION, {})
        target = self.results["target"]["gcg"]
        attacks = {"none": (list(range(len(self.forgotten))), ["" for _ in self.forgotten]),
                   "gcg": (target["questions"], target["suffixes"])}  # fmt: skip
        scorer = GatewayScorer(arm.url, arm.model, self.systems["target"], arm.admin_token,
                               arm="suppression")  # fmt: skip
        for attack, (questions, tails) in attacks.items():
            row = rows.get(attack, {})
            if (row.get("questions"), row.get("suffixes")) == (questions, tails):
                continue  # measured, with the target's suffixes of now
            self.log(f"{SUPPRESSION}: {attack} through {arm.url}")
            qas = [self.forgotten[i] for i in questions]
            prompts = [suffixed(qa.question, tail) for qa, tail in zip(qas, tails, strict=True)]
            replies, suppressed = gateway_answers(scorer, prompts, self.config.max_tokens)
            rows[attack] = {
                "questions": questions,
                "suffixes": tails,
                "replies": replies,
                "suppressed": suppressed,
                "rouge": self._rouge(replies, questions),
            }
            self.write(plots=False)
        scorer.close()

    # Output

    def _attacks(self, name: str) -> dict[str, tuple[list[int], list[float]]]:
        """Each attack measured on a system: the forgotten questions it attacked (indices) and
        their ROUGE-L recall after it; the suppression arm's ``none`` is its unattacked row."""
        result = self.results.get(name, {})
        if name == SUPPRESSION:
            return {attack: (row["questions"], row["rouge"]) for attack, row in result.items()}
        everyone = list(range(len(self.forgotten)))
        attacks = {attack: (everyone, rouge) for part in sorted(ATTACK_PARTS)
                   for attack, rouge in result.get(part, {}).items()}  # fmt: skip
        if "gcg" in result:
            attacks["gcg"] = (result["gcg"]["questions"], result["gcg"]["rouge"])
        return attacks

    def _unattacked(self, name: str) -> list[float] | None:
        """ROUGE-L recall of each forgotten answer as the system gives it, unattacked."""
        if name == SUPPRESSION:
            return self.results.get(SUPPRESSION, {}).get("none", {}).get("rouge")
        return self.results.get(name, {}).get("memorisation", {}).get("rouge")

    def recovered(self, name: str, attack: str) -> str:
        """The share of the ROUGE gap between the system and the target that ``attack`` closes,
        with its 95 % interval over the questions it attacked; n/a where it cannot be run (the
        suppression arm's private weights take only text), "not run" where it was not yet."""
        attacks = self._attacks(name)
        unattacked, top = self._unattacked(name), self._unattacked("target")
        if attack not in attacks:
            return "n/a" if name == SUPPRESSION else "not run"
        if unattacked is None or top is None:
            return _fmt(None)
        questions, after = attacks[attack]
        return _recovered(after, [unattacked[i] for i in questions], [top[i] for i in questions])

    def write(self, plots: bool = True) -> dict:
        """The measurements and their report; ``plots`` too (seconds: at the end of a run)."""
        payload = {"config": asdict(self.config), "systems": self.results}
        write_json_atomic(self.out / "comparison.json", payload, indent=2)
        (self.out / "report.md").write_text("\n".join(self._markdown()))
        if plots:
            self._plots()
        return payload

    def _plots(self) -> None:
        """The probe's readings per depth, one line per system: OUT/probe_<reading>.png."""
        probed = {name: r["probe"] for name, r in self.results.items() if "probe" in r}
        if not probed:
            return
        for reading, title in PROBE_PLOTS.items():
            plots.curves(self.out / f"probe_{reading}.png", title, list(DEPTHS),
                         {name: [row[reading] for row in rows] for name, rows in probed.items()},
                         xlabel="depth (share of the decoder's layers)")  # fmt: skip

    def _markdown(self) -> list[str]:
        measured = {name: r["memorisation"] for name, r in self.results.items()
                    if "memorisation" in r}  # fmt: skip
        retain_auc = measured.get("retain", {}).get("mia_auc", {})
        lines = ["# Removal or suppression: the weights", "",
                 f"{len(self.forgotten)} forgotten QA asked; the probe and TOFU's scores read all "
                 f"{len(self.every_forgotten)} of the forgotten subjects; unseen = their perturbed "
                 "answers.", "", "## Memorisation and membership", ""]  # fmt: skip
        columns = ["system", "EM", "ES", *(f"AUC {a}" for a in ATTACKS), "PrivLeak (Min-K%)",
                   "refusal", "gibberish", "answer", "ROUGE-L"]  # fmt: skip
        rows = []
        for name, r in measured.items():
            auc = r["mia_auc"]
            # MUSE computes PrivLeak on Min-K% Prob's AUC.
            ours, theirs = auc.get("min_k"), retain_auc.get("min_k")
            leak = None if ours is None or not theirs else metrics.privleak(ours, theirs)
            kinds = _shares([metrics.answer_kind(reply) for reply in r["replies"]])
            rows.append([name, _fmt(r["exact_memorization"]), _fmt(r["extraction_strength"]),
                         *(_fmt(auc[a]) for a in ATTACKS), _fmt(leak),
                         *(_fmt(kinds.get(k, 0.0)) for k in ("refusal", "gibberish", "answer")),
                         _fmt(statistics.fmean(r["rouge"]))])  # fmt: skip
        lines += [*_table(columns, rows), "", *self._tofu_section(), "## Representation probe", ""]
        probe_rows = [[name, _fmt(p["depth"]), str(p["layer"]),
                       _with(p["probe_accuracy"], p.get("probe_interval")),
                       _fmt(p["forget_shift"]), _fmt(p["retain_shift"]),
                       _fmt(p["ablation_recovery"])]
                      for name, r in self.results.items() for p in r.get("probe", [])]  # fmt: skip
        lines += _table(["system", "depth", "layer",
                         "probe balanced accuracy (forget vs unseen) [95 %]",
                         "forget shift", "retain shift", "ablation recovery (log-prob)"],
                        probe_rows)  # fmt: skip
        lines += ["", f"Ablation recovery — : the model lost under {MIN_LOST} nats per forget "
                  "answer token (nothing to recover).", ""]  # fmt: skip
        attacked = [name for name in self.results if name != "target" and self._attacks(name)]
        attacks = sorted({a for name in attacked for a in self._attacks(name)} - {"none"})
        recovery_rows = [[name, *(self.recovered(name, a) for a in attacks)]
                         for name in attacked]  # fmt: skip
        lines += [
            "",
            "## Recovery (share of the ROUGE-L gap to the target closed) [95 % interval]",
            "",
            *_table(["system", *attacks], recovery_rows),
            "",
            f"— : the system is less than {metrics.MIN_GAP} ROUGE-L below the target on "
            "the questions attacked (it forgot nothing to recover). "
            "The retain model's row is the control: what an attack teaches a model that "
            "never knew the subjects (a soft prompt, above all, can make a model say "
            "almost anything); a version's recovery means something only above it. GCG "
            f"attacks the {self.config.gcg_questions} forgotten question(s) that give least "
            "of their answer away (ROUGE-L recall of the answer from the question) "
            f"({self.config.gcg.steps} steps, {self.config.gcg.candidates} candidates, a "
            f"{self.config.gcg.suffix_tokens}-token suffix) on each system's weights. The "
            "suppression arm serves the target's weights, privately: only text reaches "
            "it, so it gets the suffixes GCG found on the target's weights (the strongest "
            "case: an attacker holding the open weights the service fronts), through its "
            "gateway; n/a: the attack needs the weights.",
            *self._target_gcg(),
            "",
        ]
        return lines

    def _target_gcg(self) -> list[str]:
        """How well the suffixes sent to the suppression arm work on the target itself."""
        target = self.results.get("target", {})
        if "gcg" not in target or "memorisation" not in target:
            return []
        gcg, plain = target["gcg"], target["memorisation"]["rouge"]
        before = statistics.fmean(plain[i] for i in gcg["questions"])
        return [
            "",
            f"On the target's own weights the suffixes bring ROUGE-L from {_fmt(before)} "
            f"to {_fmt(statistics.fmean(gcg['rouge']))} on the attacked questions.",
        ]

    def _tofu_section(self) -> list[str]:
        """Forget quality against the retain model, and model utility (``harness.finish``)."""
        reports = {name: _system_report(name, r["tofu"])
                   for name, r in self.results.items() if "tofu" in r}  # fmt: skip
        if "retain" not in reports:
            return []
        harness.finish(list(reports.values()), reports["retain"])
        sets = list(next(iter(reports.values())).sets)
        rows = [[name, _fmt(r.forget_quality), _with(r.model_utility, r.utility_interval),
                 *(f"{_fmt(s.probability)} / {_fmt(s.rouge)} / {_fmt(s.truth_ratio)}"
                   for s in r.sets.values())]
                for name, r in reports.items()]  # fmt: skip
        return ["## TOFU: forget quality and model utility", "",
                *_table(["system", "forget quality", "model utility [95 %]", *sets], rows), "",
                "Per set: probability / ROUGE-L recall / truth-ratio statistic, as "
                "`obliviate-eval run` scores a served system. Forget quality is the KS test's "
                "p-value of the forget truth ratios against the retain model's (1 for itself).",
                ""]  # fmt: skip


def _system_report(name: str, tofu: dict[str, Any]) -> harness.SystemReport:
    sets = {"forget": tofu["forget"], **tofu["sets"]}
    report = harness.SystemReport(name, {n: harness.SetScores(**s) for n, s in sets.items()})
    report.forget_truth_ratios = tofu["forget_truth_ratios"]
    return report


def _shares(kinds: list[str]) -> dict[str, float]:
    return {kind: kinds.count(kind) / len(kinds) for kind in sorted(set(kinds))}
