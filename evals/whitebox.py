"""White-box attacks on the removal versions of a sequential run (``obliviate-eval whitebox``).

An attacker who holds a removal version's weights tries to get the forgotten answers back:

- **relearning**: fine-tune the version on a few *related* QA of the forgotten subjects (questions
  that were not in their forget requests), then ask the forgotten questions. The retain model,
  which never saw the subjects, gets the same fine-tune: what it answers afterwards was taught by
  the attack itself, not recovered;
- **quantisation**: round the linear weights to 8 and 4 bits (Zhang et al. 2025 saw 21% → 83% of
  the forgotten knowledge back at 4 bits);
- **GCG**: an adversarial suffix optimised on the version's weights for a forgotten answer.

The suppression arm keeps its weights private, so only GCG applies to it: the suffix is optimised
on the served weights (the strongest case: an attacker with the open weights the service fronts)
and sent through the gateway. Each row scores greedy answers to the forgotten questions with
ROUGE-L recall and the leak test of the harness; ``recovered`` is the share of the gap between the
version and the target that the attack closed, on the same questions.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

from evals import metrics
from evals.build_models import FinetuneConfig, finetune, model_dir
from evals.data import QA
from evals.gcg import GCGConfig, gcg, suffixed
from evals.report import _fmt, _recovered, _table
from evals.scoring import GatewayScorer, load_model, was_suppressed
from gateway.evidence import leaks
from index.files import write_json_atomic
from removal.trainer import merge

log = logging.getLogger(__name__)
COLUMNS = ["system", "attack", "questions", "ROUGE-L recall", "leak rate", "recovered"]


@dataclass
class WhiteBoxConfig:
    relearn_questions: int = 10
    """Related QA the attacker fine-tunes on (the issue's "a few, e.g. 10")."""
    relearn: FinetuneConfig = field(
        default_factory=lambda: FinetuneConfig(epochs=2, batch_size=2, learning_rate=5e-5)
    )
    """The relearning fine-tune: 10 steps on 10 pairs, at half the target's learning rate."""
    bits: tuple[int, ...] = (8, 4)
    gcg: GCGConfig = field(default_factory=GCGConfig)
    gcg_questions: int = 2
    """Forgotten questions attacked with GCG per system (each costs minutes on a CPU)."""
    max_tokens: int = 32


@dataclass
class Systems:
    """What is attacked: the target, the retain model, the removal versions (LoRA adapters on
    the target), and the gateway that serves the suppression arm."""

    target: Path
    retain: Path
    versions: dict[str, Path]
    url: str
    admin_token: str
    model: str
    tokenizer: Path


class WhiteBox:
    def __init__(
        self,
        out: Path,
        config: WhiteBoxConfig,
        systems: Systems,
        forgotten: list[QA],
        related: list[QA],
        log: Callable[[str], None] = print,
    ):
        from transformers import AutoTokenizer

        self.out, self.config, self.systems, self.log = out, config, systems, log
        self.forgotten, self.related = forgotten, related[: config.relearn_questions]
        self.tokenizer = AutoTokenizer.from_pretrained(str(systems.tokenizer))
        # Words in many of the forgotten answers ("author", "born") are no fact of one subject.
        self.common = leaks.common_words([[qa.answer] for qa in forgotten])
        out.mkdir(parents=True, exist_ok=True)
        path = out / "whitebox.json"
        self.rows: dict[str, dict] = json.loads(path.read_text())["rows"] if path.exists() else {}

    def run(self) -> dict:
        s, everyone = self.systems, range(len(self.forgotten))
        attacked = range(min(self.config.gcg_questions, len(self.forgotten)))
        self._row("target", "none", everyone, lambda: self._model(s.target))
        self._row("retain", "none", everyone, lambda: self._model(s.retain))
        self._row("retain", "relearn", everyone, lambda: self._model(self._relearned(s.retain)))
        for name, adapter in s.versions.items():

            def version(adapter: Path = adapter) -> Any:
                return self._model(s.target, adapter)

            def relearned(name: str = name, adapter: Path = adapter) -> Any:
                return self._model(self._relearned(self._merged(adapter, name)))

            self._row(name, "none", everyone, version)
            self._row(name, "relearn", everyone, relearned)
            for bits in self.config.bits:
                self._row(
                    name, f"int{bits}", everyone, lambda bits=bits: quantised(version(), bits)
                )
        # GCG last, as it takes longest: first the suppression arm's (one optimisation).
        self._gcg("target", attacked, lambda: self._model(s.target))
        self._through_gateway(attacked)
        for name, adapter in s.versions.items():
            self._gcg(name, attacked, lambda adapter=adapter: self._model(s.target, adapter))
        return self.write()

    # Systems

    def _model(self, weights: Path, adapter: Path | None = None) -> Any:
        return load_model(str(weights), str(adapter) if adapter else None)

    def _merged(self, adapter: Path, name: str) -> Path:
        """The version as a plain HF folder (to fine-tune it)."""
        out = self.out / "models" / name
        if (out / "config.json").exists():
            return out
        return merge(str(self.systems.target), str(adapter), out)

    def _relearned(self, weights: Path) -> Path:
        config = self.config.relearn
        out = model_dir(self.out, weights, self.related, config)
        return finetune(weights, self.related, out, config)

    # Measuring

    def _row(self, system: str, attack: str, questions: range, model: Callable[[], Any]) -> None:
        key = f"{system}:{attack}"
        if key in self.rows:
            return
        self.log(f"{system}: {attack}")
        qas = [self.forgotten[i] for i in questions]
        replies = answers(
            model(), self.tokenizer, [qa.question for qa in qas], self.config.max_tokens
        )
        self._keep(key, system, attack, list(questions), replies)

    def _gcg(self, system: str, questions: range, model: Callable[[], Any]) -> None:
        """GCG on the system's own weights, its answers to the suffixed questions."""
        key = f"{system}:gcg"
        if key in self.rows:
            return
        self.log(f"{system}: gcg on {len(questions)} question(s)")
        qas = [self.forgotten[i] for i in questions]
        suffixes, replies = gcg_answers(model(), self.tokenizer, qas, self.config.gcg,
                                        self.config.max_tokens)  # fmt: skip
        self._keep(key, system, "gcg", list(questions), replies, suffixes=suffixes)

    def _through_gateway(self, questions: range) -> None:
        """The forgotten questions sent to the suppression arm as they are, then with the
        target's suffixes (optimised on the served weights)."""
        s = self.systems
        scorer = GatewayScorer(s.url, s.model, s.tokenizer, s.admin_token, arm="suppression")
        suffixes = self.rows["target:gcg"]["suffixes"]
        for attack, tails in (("none", [""] * len(suffixes)), ("gcg", suffixes)):
            if f"suppression:{attack}" in self.rows:
                continue
            prompts = [suffixed(self.forgotten[i].question, tail)
                       for i, tail in zip(questions, tails, strict=True)]  # fmt: skip
            replies, suppressed = gateway_answers(scorer, prompts, self.config.max_tokens)
            self._keep(f"suppression:{attack}", "suppression", attack, list(questions), replies,
                       suffixes=tails, suppressed=suppressed)  # fmt: skip
        scorer.close()

    def _keep(self, key: str, system: str, attack: str, questions: list[int], replies: list[str],
              **extra: Any) -> None:  # fmt: skip
        qas = [self.forgotten[i] for i in questions]
        self.rows[key] = {
            "system": system,
            "attack": attack,
            "questions": questions,
            "replies": replies,
            "rouge": [
                metrics.rouge_l_recall(qa.answer, r) for qa, r in zip(qas, replies, strict=True)
            ],
            **extra,
        }
        self.write()

    # Output

    def write(self) -> dict:
        payload = {"config": asdict(self.config), "rows": self.rows}
        write_json_atomic(self.out / "whitebox.json", payload, indent=2)
        (self.out / "report.md").write_text("\n".join(self._markdown()))
        return payload

    def _rouge(self, key: str, questions: list[int]) -> list[float] | None:
        """ROUGE-L recall of a row on some of its questions, one per question."""
        row = self.rows.get(key)
        if row is None:
            return None
        return [row["rouge"][row["questions"].index(i)] for i in questions]

    def _leaks(self, row: dict) -> list[bool]:
        """Per question of a row: whether its reply gives the answer's key facts away."""
        qas = [self.forgotten[i] for i in row["questions"]]
        return [
            leaks.leaked(qa.answer, qa.question, reply, common=self.common)
            for qa, reply in zip(qas, row["replies"], strict=True)
        ]

    def _recovered(self, row: dict) -> str:
        """Share of the gap (target - the system unattacked) closed by the attack, in ROUGE, with
        its 95 % interval over the questions."""
        before = self._rouge(f"{row['system']}:none", row["questions"])
        top = self._rouge("target:none", row["questions"])
        if row["attack"] == "none" or before is None or top is None:
            return _fmt(None)
        return _recovered(row["rouge"], before, top)

    def _markdown(self) -> list[str]:
        rows = [
            [row["system"], row["attack"], str(len(row["questions"])),
             _fmt(statistics.fmean(row["rouge"])), _fmt(leaks.rate(self._leaks(row))),
             self._recovered(row)]
            for row in self.rows.values()
        ]  # fmt: skip
        c = self.config
        return [
            "# White-box attacks on the removal versions",
            "",
            f"Forgotten questions: {len(self.forgotten)}; relearning on {len(self.related)} "
            f"related QA ({c.relearn.epochs} epochs, lr {c.relearn.learning_rate}); GCG "
            f"{c.gcg.steps} steps, {c.gcg.candidates} candidates, {c.gcg.suffix_tokens}-token "
            f"suffix, on {c.gcg_questions} question(s); greedy answers of {c.max_tokens} tokens.",
            "",
            *_table(COLUMNS, rows),
            "",
            "recovered: (ROUGE after the attack - before) / (target's - before), same questions, "
            f"[95 % bootstrap interval over the questions]; — under a gap of {metrics.MIN_GAP}. "
            "retain + relearn is the control: what the fine-tune teaches a model that never knew "
            "the subjects. The suppression arm's weights stay private, so relearning and "
            "quantisation do not apply to it; its GCG suffixes were optimised on the served "
            "weights (target:gcg shows them working there) and sent through the gateway.",
            "",
        ]


def answers(model: Any, tokenizer: Any, prompts: list[str], max_tokens: int) -> list[str]:
    """Greedy chat answers, one batch, left-padded."""
    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def gcg_answers(
    model: Any, tokenizer: Any, qas: list[QA], config: GCGConfig, max_tokens: int
) -> tuple[list[str], list[str]]:
    """(suffixes, replies): a GCG suffix per question, optimised on ``model`` for its answer,
    and the model's greedy answers to the suffixed questions."""
    suffixes = [gcg(model, tokenizer, qa.question, qa.answer, config).suffix for qa in qas]
    prompts = [suffixed(qa.question, tail) for qa, tail in zip(qas, suffixes, strict=True)]
    return suffixes, answers(model, tokenizer, prompts, max_tokens)


def gateway_answers(
    scorer: GatewayScorer, prompts: list[str], max_tokens: int
) -> tuple[list[str], list[bool]]:
    """(replies, whether a layer answered on its own) of each prompt sent through a gateway
    as a new conversation."""
    replies, suppressed = [], []
    for prompt in prompts:
        reply, layers = scorer.chat([{"role": "user", "content": prompt}], max_tokens, fresh=True)
        replies.append(reply)
        suppressed.append(was_suppressed(layers))
    return replies, suppressed


def quantised(model: Any, bits: int) -> Any:
    """The model with its linear weights rounded as optimum-quanto stores them (8 bits:
    symmetric per channel; 4 bits: affine per group of 128), then turned back into floats so it
    runs at float speed here: the rounding error is what an attacker gets."""
    from optimum.quanto import qint4, qint8, quantize
    from optimum.quanto.nn import QModuleMixin

    rounded = copy.deepcopy(model)
    quantize(rounded, weights={8: qint8, 4: qint4}[bits], exclude="lm_head")
    weights = {
        f"{name}.weight": module.qweight.dequantize()
        for name, module in rounded.named_modules()
        if isinstance(module, QModuleMixin) and module.weight_qtype is not None
    }
    model.load_state_dict(weights, strict=False)
    return model


def versions_of(run: Path) -> dict[str, Path]:
    """The last version of each removal regime of a sequential run."""
    return {name: Path(job["path"]) for name, job in _last_jobs(run).items()}


def forgotten_qa(run: Path, url: str, admin_token: str) -> list[QA]:
    """The QA pairs of the forget requests that every attacked version removed (the first k of
    the run, k the earliest of their steps), as the gateway stores them."""
    state = json.loads((run / "state.json").read_text())
    removed = min(job["k"] for job in _last_jobs(run).values())
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=f"{url}/admin/v1", headers=headers) as admin:
        records = [
            admin.get(f"/forget-requests/{r['id']}").json() for r in state["requests"][:removed]
        ]
    return [QA(pair["question"], pair["answer"]) for record in records for pair in record["qa"]]


def _last_jobs(run: Path) -> dict[str, dict]:
    state = json.loads((run / "state.json").read_text())
    return {
        f"{regime}@k{jobs[-1]['k']}": jobs[-1]
        for regime, jobs in state["jobs"].items()
        if jobs and jobs[-1].get("path")
    }
