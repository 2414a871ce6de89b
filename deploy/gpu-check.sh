#!/usr/bin/env bash
# The GPU check a maintainer runs on a CUDA machine. It installs nothing from the network: set up
# beforehand with `make setup EXTRA=gpu` (or `pip install --no-index --find-links WHEELS
# -e '.[gpu,test]'` from wheels carried to an offline machine).
#
#   deploy/gpu-check.sh                 # the embedded SmolLM2-135M-Instruct
#   MODEL=/models/llama-3-8b deploy/gpu-check.sh
#
# It starts the gateway on the GPU vLLM with the in-model layers, then checks chat, streaming, a
# forget request acted on by per-request steering, logit difference and the n-gram penalty (which
# must also lower the answer's prompt log-probabilities), and prints throughput at concurrency 1,
# 16 and 64.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PORT=${PORT:-8400}
export HF_HUB_OFFLINE=1 OBLIVIATE_ADMIN_TOKEN=${OBLIVIATE_ADMIN_TOKEN:-gpu-check}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$VENV/bin/python" -c "import torch, vllm; assert torch.cuda.is_available(), 'no CUDA'; print('vllm', vllm.__version__, 'torch', torch.__version__)"

WORK=$(mktemp -d)
cat > "$WORK/obliviate.toml" <<TOML
data_dir = "$WORK/data"
suppression_layers = ["steering", "logit_difference", "ngram_penalty"]
vllm_dtype = "bfloat16"
${MODEL:+model = \"$MODEL\"}
TOML
mkdir -p "$WORK/data/models"
# Reuse the embedded model converted by an earlier run, if any.
[ -d .obliviate/models ] && cp -rs "$PWD"/.obliviate/models/. "$WORK/data/models/" || true

"$VENV/bin/obliviate" serve --config "$WORK/obliviate.toml" --port "$PORT" > "$WORK/gateway.log" 2>&1 &
GATEWAY=$!
trap 'kill -INT $GATEWAY 2>/dev/null; wait $GATEWAY 2>/dev/null; echo "logs: $WORK"' EXIT
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    kill -0 $GATEWAY 2>/dev/null || { tail -50 "$WORK/gateway.log"; exit 1; }
    sleep 1
done
SERVED=$(curl -sf -H "Authorization: Bearer $OBLIVIATE_ADMIN_TOKEN" "http://127.0.0.1:$PORT/v1/models" \
    | "$VENV/bin/python" -c "import json, sys; print(json.load(sys.stdin)['data'][0]['id'])")
"$VENV/bin/python" -m evals.gpu_check --url "http://127.0.0.1:$PORT" --model "$SERVED"
