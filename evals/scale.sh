#!/usr/bin/env bash
# Benchmark (sequential scale): suppression, removal and hybrid as forget requests pile up to
# k = SUBJECTS synthetic authors, with hard negatives.
#
#     evals/scale.sh        # SUBJECTS=100 NEGATIVES_OF=20 BATCH_EVERY=10 MAX_PER_SET=40 to change
#
# Uses only the commands a user has:
# 1. `obliviate-eval synthetic`: SUBJECTS fictitious authors, and five hard negatives (people who
#    share one fact) for each of the first NEGATIVES_OF;
# 2. `obliviate-eval build-models --forget SUBJECTS`: a target that knows every author, the hard
#    negatives and TOFU's retain authors, and a retain model that knows all but the SUBJECTS
#    authors (hours on a CPU, minutes on a GPU; checkpointed);
# 3. the target served with LoRA, the retain model beside it, and `obliviate-eval sequential` to
#    k = SUBJECTS, the hard negatives a utility set of their own. Report, curves with intervals
#    and raw JSON in RUN.
# Resumable at any moment: rerun the same command.
set -euo pipefail
cd "$(dirname "$0")/.."
source evals/gateway.sh  # BIN, start, stop

SUBJECTS=${SUBJECTS:-100}
NEGATIVES_OF=${NEGATIVES_OF:-20}
BATCH_EVERY=${BATCH_EVERY:-10}
MAX_PER_SET=${MAX_PER_SET:-40}
RUN=${RUN:-.obliviate/runs/scale-$SUBJECTS}
DATA=$RUN/data
TOFU_RETAIN=evals/data/tofu/retain_authors.jsonl
export OBLIVIATE_ADMIN_TOKEN=${OBLIVIATE_ADMIN_TOKEN:-bench-admin}
mkdir -p "$RUN"

[ -f "$DATA/hard_negatives.jsonl" ] ||
    $BIN/obliviate-eval synthetic --out "$DATA" --subjects "$SUBJECTS" --negatives-of "$NEGATIVES_OF"
models=$($BIN/obliviate-eval build-models --forget "$SUBJECTS" --forget-data "$DATA/subjects.jsonl" \
    --retain-data "$TOFU_RETAIN" --retain-data "$DATA/hard_negatives.jsonl")
TARGET=$(sed -n 's/^target: \([^ ]*\).*/\1/p' <<<"$models")
RETAIN=$(sed -n 's/^retain: \([^ ]*\).*/\1/p' <<<"$models")

start "$RETAIN" "$RUN/gateway-retain" "$RUN/serve-retain.log"
retain_url=$gateway_url retain_pid=$gateway_pid
# Versions chain one LoRA adapter per request; past vLLM's rank limit they are consolidated.
start "$TARGET" "$RUN/gateway-target" "$RUN/serve-target.log" OBLIVIATE_VLLM_LORA=true \
    OBLIVIATE_VLLM_MAX_LORA_RANK=64 OBLIVIATE_RETAIN_DATA="$TOFU_RETAIN"
trap 'kill -INT $gateway_pid $retain_pid 2>/dev/null || true' EXIT
$BIN/obliviate-eval sequential --url "$gateway_url" --target "$TARGET" \
    --reference "$retain_url#baseline" --reference-weights "$RETAIN" --out "$RUN/sequential" \
    --subjects "$SUBJECTS" --batch-every "$BATCH_EVERY" --max-per-set "$MAX_PER_SET" \
    --forget-data "$DATA/subjects.jsonl" --retain-data "$TOFU_RETAIN" \
    --hard-negatives "$DATA/hard_negatives.jsonl"
stop
gateway_pid=$retain_pid
stop
