"""The obliviate plugin that runs inside vLLM.

The gateway sends per-request controls in the OpenAI body field ``vllm_xargs``, which vLLM
copies into ``SamplingParams.extra_args``; the plugin applies them only to that request's rows.
Start vLLM with the plugin (the embedded launcher does this; a GPU server must do the same)::

    VLLM_SERVER_DEV_MODE=1 python -m vllm.entrypoints.openai.api_server --model DIR \\
        --enforce-eager \\
        --logits-processors suppressors.vllm_plugin.logits:ObliviateLogitsProcessor \\
        --worker-extension-cls suppressors.vllm_plugin.worker.ObliviateWorkerExtension

The gateway then installs the model hooks through ``POST /collective_rpc`` (dev mode exposes it;
keep vLLM's port private). This package's ``__init__`` imports neither torch nor vLLM, so the
gateway can use the names below.
"""

LOGITS_PROCESSOR = "suppressors.vllm_plugin.logits:ObliviateLogitsProcessor"
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


def vllm_plugin_args() -> list[str]:
    """The vLLM server flags that load this plugin."""
    return ["--logits-processors", LOGITS_PROCESSOR, "--worker-extension-cls", WORKER_EXTENSION]
