"""Settings precedence: defaults < config file < environment < flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway import cli
from gateway.config import CONFIG_ENV, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv("OBLIVIATE_PORT", raising=False)


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "obliviate.toml"
    config.write_text('port = 9001\nhost = "0.0.0.0"\napi_keys = ["a", "b"]\n')
    settings = load_settings(config)
    assert (settings.port, settings.host, settings.api_keys) == (9001, "0.0.0.0", ["a", "b"])

    monkeypatch.setenv("OBLIVIATE_PORT", "9002")
    assert load_settings(config).port == 9002
    assert load_settings(config, port=9003).port == 9003
    assert load_settings(config, port=None).port == 9002  # an unset flag does not override


def test_defaults_use_embedded_model() -> None:
    settings = load_settings()
    assert settings.uses_embedded_model
    assert settings.model_name == "smollm2-135m-instruct"
    assert not load_settings(upstream="http://x:8000").uses_embedded_model


def test_unknown_key_and_missing_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="prot"):
        load_settings(config)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="vllm_max_lora_rank"):  # vLLM would refuse 100 later
        load_settings(vllm_max_lora_rank=100)


def test_retain_data_is_read_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "retain.jsonl"
    bad.write_text('{"question": "Who?"}\n')
    with pytest.raises(ValueError, match="retain_data"):  # not only when a job or build reads it
        load_settings(retain_data=bad)
    assert load_settings().retain_pairs()[0] == ("Where would you find the Eiffel Tower?", "Paris")


def test_each_arm_gets_its_layers_from_the_config_file(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from gateway.app import build_app
    from gateway.engine.embedded_model import ensure_embedded_model
    from gateway.spawn import REPO, fresh_data_dir
    from suppressors.stack import UnknownLayer

    config = tmp_path / "obliviate.toml"
    config.write_text(
        'suppression_layers = ["retrieval", {name = "embedding_corruption", scale = 2.0}]\n'
        'hybrid_layers = ["retrieval"]\n'
    )
    weights = str(ensure_embedded_model(REPO / ".obliviate"))
    data = fresh_data_dir(tmp_path / "data")  # shares the repo's embedder export
    flags = {"upstream": "http://127.0.0.1:9", "model": weights, "data_dir": data}
    with TestClient(build_app(load_settings(config, **flags))) as client:
        stacks = client.app.state.openai_serving.stacks
        suppression = stacks["suppression"].layers
        assert [layer.name for layer in suppression] == ["retrieval", "embedding_corruption"]
        assert suppression[1].config.scale == 2.0
        assert [layer.name for layer in stacks["hybrid"].layers] == ["retrieval"]
        assert client.get("/health").status_code == 503  # no engine there

    config.write_text('suppression_layers = [{name = "steering", scael = 2.0}]\n')
    with pytest.raises(UnknownLayer, match="scael"):
        build_app(load_settings(config, **flags))


def test_secrets_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "OBLIVIATE_ADMIN_TOKEN").write_text("from-a-secret-file\n")
    monkeypatch.delenv("OBLIVIATE_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("OBLIVIATE_SECRETS_DIR", str(tmp_path))
    token = load_settings().admin_token
    assert token is not None and token.get_secret_value() == "from-a-secret-file"
    assert "from-a-secret-file" not in repr(load_settings())  # a SecretStr never prints


def test_the_access_log_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """``obliviate serve`` hands uvicorn the setting (env, config file): at engine rates a log
    line per request is event-loop work."""
    served: dict[str, Any] = {}
    monkeypatch.setattr(cli, "build_app", lambda settings: None)
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **options: served.update(options))
    assert CliRunner().invoke(cli.app, ["serve"]).exit_code == 0
    assert served["access_log"] is True
    monkeypatch.setenv("OBLIVIATE_ACCESS_LOG", "false")
    assert CliRunner().invoke(cli.app, ["serve"]).exit_code == 0
    assert served["access_log"] is False
