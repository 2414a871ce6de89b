"""Settings precedence: defaults < config file < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

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
