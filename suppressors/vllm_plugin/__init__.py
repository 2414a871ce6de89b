"""The obliviate plugin that runs inside vLLM.

The gateway sends per-request controls in the OpenAI body field ``vllm_xargs``, which vLLM
copies into ``SamplingParams.extra_args``; the plugin applies them only to that request's rows.
Start vLLM with the plugin when a stack has in-model layers (the embedded launcher does this; a
GPU server must do the same, V1 runner included)::

    VLLM_SERVER_DEV_MODE=1 VLLM_USE_V2_MODEL_RUNNER=0 \\
    python -m vllm.entrypoints.openai.api_server --model DIR --enforce-eager \\
        --logits-processors suppressors.vllm_plugin.logits:ObliviateLogitsProcessor \\
        --worker-extension-cls suppressors.vllm_plugin.worker.ObliviateWorkerExtension

The gateway then installs the model hooks through ``POST /collective_rpc`` (dev mode exposes it;
keep vLLM's port private). This package's ``__init__`` imports neither torch nor vLLM, so the
gateway can use the names below.
"""

LOGITS_PROCESSOR = "suppressors.vllm_plugin.logits:ObliviateLogitsProcessor"
LOGITS_PROCESSOR_V2 = "suppressors.vllm_plugin.logits_v2:ObliviateLogitsProcessorV2"
WORKER_EXTENSION = "suppressors.vllm_plugin.worker.ObliviateWorkerExtension"
INSTALL_METHOD = "obliviate_install"

# vllm_xargs keys (see controls.py for their shapes).
BAN_TOKEN_IDS = "obliviate_ban_token_ids"
STEER = "obliviate_steer"
CORRUPT = "obliviate_corrupt"
LOGIT_DIFF = "obliviate_logit_diff"
NGRAM_PENALTY = "obliviate_ngram_penalty"

# Per forget request, in the artifacts folder: ARTIFACTS/<request id>/<file>.
STEERING_FILE = "steering.safetensors"
ASSISTANT_FILE = "assistant.safetensors"
ANSWERS_FILE = "answers.safetensors"


V1_RUNNER_ENV = {"VLLM_USE_V2_MODEL_RUNNER": "0"}
"""The worker extension's hooks read the V1 model runner's request state (``input_batch``,
``requests``, ``query_start_loc``), which vLLM's V2 runner (the default wherever Triton imports,
i.e. every CUDA install) does not have: every vLLM that loads the hooks runs the V1 runner."""
PLUGIN_ENV = {"VLLM_SERVER_DEV_MODE": "1", **V1_RUNNER_ENV}
"""Dev mode serves ``/collective_rpc``, through which the gateway installs the hooks."""


def vllm_plugin_args() -> list[str]:
    """The vLLM server flags that load this plugin: eager mode, since forward hooks do not fire in
    compiled graphs. A stack without in-model layers needs none of them (nor ``PLUGIN_ENV``)."""
    return [
        "--enforce-eager",
        "--logits-processors", LOGITS_PROCESSOR,
        "--worker-extension-cls", WORKER_EXTENSION,
    ]  # fmt: skip
