"""What the embedded launcher asks of vLLM: its own defaults for a text-only stack; the plugin,
eager mode and the V1 model runner only where a stack has in-model layers."""

from __future__ import annotations

import pytest

from gateway.app import build_app
from gateway.config import Settings
from gateway.engine.launcher import VllmLauncher
from suppressors.vllm_plugin import LOGITS_PROCESSOR, WORKER_EXTENSION

PLUGIN_FLAGS = {"--enforce-eager", "--logits-processors", "--worker-extension-cls"}


def test_text_only_stack_starts_vllm_on_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_USE_V2_MODEL_RUNNER", raising=False)
    monkeypatch.delenv("VLLM_SERVER_DEV_MODE", raising=False)
    launcher = VllmLauncher(Settings(), 8100, plugin=False)
    assert not PLUGIN_FLAGS & set(launcher.command("/models/m"))
    env = launcher.environment()
    assert "VLLM_USE_V2_MODEL_RUNNER" not in env and "VLLM_SERVER_DEV_MODE" not in env


def test_in_model_stack_loads_the_plugin_on_the_v1_runner() -> None:
    launcher = VllmLauncher(Settings(), 8100, plugin=True)
    command = launcher.command("/models/m")
    assert set(command) >= PLUGIN_FLAGS | {LOGITS_PROCESSOR, WORKER_EXTENSION}
    env = launcher.environment()
    assert (env["VLLM_USE_V2_MODEL_RUNNER"], env["VLLM_SERVER_DEV_MODE"]) == ("0", "1")


def test_vllm_gets_a_tool_call_parser_unless_told_none() -> None:
    """vLLM refuses a named, required or auto tool choice without a tool-call parser."""
    command = VllmLauncher(Settings(), 8100, plugin=False).command("/models/m")
    assert command[command.index("--tool-call-parser") + 1] == "hermes"
    assert "--enable-auto-tool-choice" in command
    plain = VllmLauncher(Settings(vllm_tool_call_parser=""), 8100, plugin=False)
    assert "--tool-call-parser" not in plain.command("/models/m")


def test_in_model_layers_without_the_plugin_are_refused() -> None:
    settings = Settings(suppression_layers=["retrieval", "steering"], vllm_plugin=False)
    with pytest.raises(ValueError, match="in-model suppression layers need the vLLM plugin"):
        build_app(settings)


@pytest.mark.parametrize("layer", [1.5, -1, "six"])
def test_impossible_depths_are_refused_when_read(layer: object) -> None:
    with pytest.raises(ValueError, match=r"steering\.layer"):
        build_app(Settings(suppression_layers=[{"name": "steering", "layer": layer}]))
