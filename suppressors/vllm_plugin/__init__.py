"""The obliviate plugin that runs inside vLLM.

The gateway sends per-request controls in the OpenAI body field ``vllm_xargs``, which vLLM
copies into ``SamplingParams.extra_args``; the plugin applies them only to that request's rows.
Start vLLM with the plugin (the embedded launcher does this; a GPU server must do the same)::

    python -m vllm.entrypoints.openai.api_server --model DIR --enforce-eager \\
        --logits-processors suppressors.vllm_plugin.logits:ObliviateLogitsProcessor \\
        --worker-extension-cls suppressors.vllm_plugin.worker.ObliviateWorkerExtension

This package's ``__init__`` imports neither torch nor vLLM, so the gateway can use the names below.
"""

LOGITS_PROCESSOR = "suppressors.vllm_plugin.logits:ObliviateLogitsProcessor"
WORKER_EXTENSION = "suppressors.vllm_plugin.worker.ObliviateWorkerExtension"

# vllm_xargs key: token ids this request may never sample (a list of ints).
BAN_TOKEN_IDS = "obliviate_ban_token_ids"


def vllm_plugin_args() -> list[str]:
    """The vLLM server flags that load this plugin."""
    return ["--logits-processors", LOGITS_PROCESSOR, "--worker-extension-cls", WORKER_EXTENSION]
