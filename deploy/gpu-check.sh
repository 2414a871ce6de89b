#!/usr/bin/env bash
# The GPU check a maintainer runs on a CUDA machine, in a few minutes. It installs nothing from
# the network: set up beforehand with `make setup EXTRA=gpu` (or `pip install --no-index
# --find-links WHEELS -e '.[gpu,test]'` from wheels carried to an offline machine).
#
#   deploy/gpu-check.sh                 # the embedded SmolLM2-135M-Instruct
#   MODEL=/models/llama-3-8b deploy/gpu-check.sh
#
# 1. A text-only stack: vLLM must start on its own defaults (no --enforce-eager, no plugin: CUDA
#    graphs, the V2 runner); a forget request is blocked; throughput at concurrency 1/16/64.
# 2. Every in-model layer: vLLM starts with the plugin, eager, on the V1 runner; steering, logit
#    difference and the n-gram penalty act (the penalty lowers the answer's prompt
#    log-probabilities); throughput again, for the eager/compiled ratio.
# 3. vLLM's V2 runner with the plugin's V2 logits processor: it loads, bans a token for its
#    request, answers a bad control with 400; a gateway with in-model layers in front of it
#    refuses it by name (VLLM_USE_V2_MODEL_RUNNER=0).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
PORT=${PORT:-8400}
export HF_HUB_OFFLINE=1 OBLIVIATE_ADMIN_TOKEN=${OBLIVIATE_ADMIN_TOKEN:-gpu-check}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" -c "import torch, vllm; assert torch.cuda.is_available(), 'no CUDA'; print('vllm', vllm.__version__, 'torch', torch.__version__)"

WORK=$(mktemp -d)
mkdir -p "$WORK/data/models"
# Reuse the embedded model converted by an earlier run, if any.
[ -d .obliviate/models ] && cp -rs "$PWD"/.obliviate/models/. "$WORK/data/models/" || true
GATEWAY=""
trap '[ -n "$GATEWAY" ] && kill -INT $GATEWAY 2>/dev/null; wait 2>/dev/null; echo "logs: $WORK"' EXIT

serve() {  # serve NAME LAYERS_JSON [extra flags]: a gateway on $PORT, waits for /health
    local name=$1 layers=$2; shift 2
    cat > "$WORK/$name.toml" <<TOML
data_dir = "$WORK/data"
suppression_layers = $layers
vllm_dtype = "bfloat16"
${MODEL:+model = \"$MODEL\"}
TOML
    "$VENV/bin/obliviate" serve --config "$WORK/$name.toml" --port "$PORT" "$@" \
        > "$WORK/$name.log" 2>&1 &
    GATEWAY=$!
    for _ in $(seq 900); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
        kill -0 $GATEWAY 2>/dev/null || { tail -50 "$WORK/$name.log"; return 1; }
        sleep 1
    done
    return 1
}
stop() { kill -INT $GATEWAY; wait $GATEWAY || true; GATEWAY=""; }
served() {
    curl -sf -H "Authorization: Bearer $OBLIVIATE_ADMIN_TOKEN" "http://127.0.0.1:$PORT/v1/models" \
        | "$PY" -c "import json, sys; print(json.load(sys.stdin)['data'][0]['id'])"
}
vllm_flags() {  # the flags of the gateway's vLLM, from its process
    pgrep -af "vllm.entrypoints.openai.api_server" | head -1
}

echo "== 1. text-only stack"
start=$(date +%s)
serve text '["retrieval", "guard_prompt"]'
echo "started in $(( $(date +%s) - start )) s: $(vllm_flags)"
vllm_flags | grep -q -- "--enforce-eager" && { echo "FAIL: text-only vLLM runs eager"; exit 1; }
grep -h "Model Runner V2\|V2 model runner\|GPUModelRunner" "$WORK"/data/logs/vllm.log | head -3 || true
"$PY" -m evals.gpu_check --url "http://127.0.0.1:$PORT" --model "$(served)" --text-only
stop

echo "== 2. every in-model layer (plugin, eager, V1 runner)"
start=$(date +%s)
serve in-model '["retrieval", "guard_prompt", "steering", "embedding_corruption", "logit_difference", "ngram_penalty"]'
echo "started in $(( $(date +%s) - start )) s: $(vllm_flags)"
"$PY" -m evals.gpu_check --url "http://127.0.0.1:$PORT" --model "$(served)"
ps -o rss=,args= -p $GATEWAY | awk '{print "gateway RSS with in-model layers:", $1 / 1024, "MiB"}'
stop

echo "== 3. vLLM's V2 runner with the V2 logits processor"
VPORT=$((PORT + 1))
WEIGHTS=${MODEL:-$(ls -d "$WORK"/data/models/*/ | head -1)}
VLLM_SERVER_DEV_MODE=1 "$PY" -m vllm.entrypoints.openai.api_server --model "$WEIGHTS" \
    --served-model-name served --port "$VPORT" --enforce-eager \
    --logits-processors suppressors.vllm_plugin.logits_v2:ObliviateLogitsProcessorV2 \
    --worker-extension-cls suppressors.vllm_plugin.worker.ObliviateWorkerExtension \
    > "$WORK/vllm-v2.log" 2>&1 &
VLLM=$!
for _ in $(seq 900); do
    curl -sf "http://127.0.0.1:$VPORT/health" >/dev/null && break
    kill -0 $VLLM 2>/dev/null || { tail -50 "$WORK/vllm-v2.log"; exit 1; }
    sleep 1
done
"$PY" -m evals.gpu_check --url "http://127.0.0.1:$VPORT" --model served --ban
OBLIVIATE_SUPPRESSION_LAYERS='["steering"]' "$VENV/bin/obliviate" serve --port "$PORT" \
    --upstream "http://127.0.0.1:$VPORT" --model "$WEIGHTS" --served-model-name served \
    --data-dir "$WORK/data-v2" > "$WORK/refused.log" 2>&1 &
GATEWAY=$!
for _ in $(seq 120); do grep -q "VLLM_USE_V2_MODEL_RUNNER=0" "$WORK/refused.log" && break; sleep 1; done
grep -m1 "VLLM_USE_V2_MODEL_RUNNER=0" "$WORK/refused.log" || { echo "FAIL: V2 not refused"; exit 1; }
stop
kill -INT $VLLM; wait $VLLM || true
echo "gpu-check: all passed"
