"""The removal-vs-suppression report through its command, on tiny models and the session's
gateway as the suppression arm (toy scale: the readings' values mean nothing here, the suffixes
found on a tiny model least of all; that every section is measured, kept and resumed does)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from tests.conftest import ADMIN_TOKEN, MODEL, REPO, LiveGateway, tiny_llama


def changed(base: Path, folder: Path, scale: float) -> Path:
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        model.model.norm.weight.mul_(scale)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (base / name).exists():
            (folder / name).write_bytes((base / name).read_bytes())
    return folder


def test_the_report_measures_every_system_and_resumes(tmp_path: Path, gateway: LiveGateway) -> None:
    target = tiny_llama(tmp_path / "target")
    retain = changed(target, tmp_path / "retain", 0.5)
    version = changed(target, tmp_path / "ga", 3.0)
    out = tmp_path / "report"
    command = [
        str(Path(sys.executable).parent / "obliviate-eval"), "removal-vs-suppression",
        "--target", str(target), "--retain", str(retain), "--model", f"ga={version}",
        "--out", str(out), "--max-questions", "3", "--max-per-set", "6", "--max-tokens", "4",
        "--gcg-questions", "1", "--gcg-steps", "2", "--gcg-candidates", "4",
        "--url", gateway.url, "--admin-token", ADMIN_TOKEN, "--served-model", MODEL,
    ]  # fmt: skip
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    systems = json.loads((out / "comparison.json").read_text())["systems"]
    assert list(systems) == ["target", "suppression arm", "retain", "ga"]
    assert "soft_prompt" in systems["retain"]["recovery"]  # the control
    ga = systems["ga"]
    memorisation = ga["memorisation"]
    assert set(memorisation["mia_auc"]) == {"loss", "zlib", "reference", "min_k",
                                            "min_k_plus_plus", "gradnorm"}  # fmt: skip
    assert 0 <= memorisation["exact_memorization"] <= 1
    assert 0 <= memorisation["extraction_strength"] <= 1
    # TOFU's scores of every forgotten question (3 asked, the rest relearnt) and each utility set
    assert ga["tofu"]["forget"]["questions"] == 20
    assert set(ga["tofu"]["sets"]) == {"retain", "real_authors", "world_facts"}
    assert {"relearn", "int8", "int4", "soft_prompt"} <= set(ga["recovery"])
    assert set(ga["ablation"]) == {"ablate@0.25", "ablate@0.5", "ablate@0.75", "ablate@1"}
    assert "recovery" not in systems["target"] and "ablation" not in systems["target"]
    # GCG on every system's weights, the target's too: its suffixes go through the gateway
    attacked = systems["target"]["gcg"]["questions"]  # the one that gives least away
    assert len(attacked) == 1 and len(systems["target"]["gcg"]["suffixes"]) == 1
    assert all(systems[name]["gcg"]["questions"] == attacked for name in ("retain", "ga"))
    arm = systems["suppression arm"]
    assert arm["none"]["questions"] == [0, 1, 2] and arm["gcg"]["questions"] == attacked
    assert all(isinstance(reply, str) for reply in arm["none"]["replies"] + arm["gcg"]["replies"])
    assert [row["depth"] for row in ga["probe"]] == [0.25, 0.5, 0.75, 1.0]
    reference = systems["target"]["probe"]  # the suppression arm's states: nothing moved
    assert len(reference) == 4 and all(abs(row["forget_shift"]) < 1e-5 for row in reference)
    report = (out / "report.md").read_text()
    for section in ("Memorisation and membership", "forget quality and model utility",
                    "Representation probe", "Recovery"):  # fmt: skip
        assert section in report
    [arm_row] = [line for line in report.splitlines() if line.startswith("| suppression arm")]
    assert arm_row.count("n/a") == 8  # relearn, int8, int4, the soft prompt, 4 ablations
    for reading in ("probe_accuracy", "forget_shift", "retain_shift", "ablation_recovery"):
        assert (out / f"probe_{reading}.png").stat().st_size > 0  # per depth, one line a system
    stored = json.loads((out / "comparison.json").read_text())
    del stored["systems"]["ga"]["probe"]  # a part deleted is measured again, and nothing else
    (out / "comparison.json").write_text(json.dumps(stored))
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    measured = [line for line in again.stdout.splitlines() if "measuring" in line]
    assert measured == ["ga: measuring probe"]
