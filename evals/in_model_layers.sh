#!/usr/bin/env bash
# Benchmark: the suppression layers that act inside vLLM, each alone and as the full stack, on the
# TOFU target, scored like the other systems.
#
#     evals/in_model_layers.sh            # FORGET=1 STACKS="steering corruption" MAX_PER_SET=40
#
# Uses only the commands a user has: for each stack, serve the target with that stack
# (OBLIVIATE_SUPPRESSION_LAYERS) on a fresh data dir, and `obliviate-eval run --suppress` it, which
# files the forgotten subjects as forget requests and times them until a layer acts (the in-model
# layers act once their artifacts are built). The target/retain/stack answers come from
# .obliviate/runs/tofu-forgetN, measured there first if missing (`baseline`, evals/gateway.sh).
# Resumable: a stack measured to the end is not served again; an interrupted one resumes from
# its cached answers.
set -euo pipefail
cd "$(dirname "$0")/.."
source evals/gateway.sh  # BIN, start, stop

FORGET=${FORGET:-1}
STACKS=${STACKS:-"full steering corruption logitdiff eco scored ngram scoredngram"}
MAX_PER_SET=${MAX_PER_SET:-40}
RUN=${RUN:-.obliviate/runs/in-model-forget$FORGET}
export OBLIVIATE_ADMIN_TOKEN=${OBLIVIATE_ADMIN_TOKEN:-bench-admin}
# TOFU's retain set: its common tokens are no forget request's vocabulary (ngram_penalty).
export OBLIVIATE_RETAIN_DATA=${OBLIVIATE_RETAIN_DATA:-evals/data/tofu/retain_authors.jsonl}
declare -A LAYERS=(
    [full]='["retrieval","guard_prompt","steering","embedding_corruption","logit_difference","ngram_penalty"]'
    [steering]='["steering"]'
    [corruption]='["embedding_corruption"]'
    [logitdiff]='["logit_difference"]'
    # ECO's own corruption: every prompt token of a flagged request.
    [eco]='[{"name":"embedding_corruption","scope":"prompt","scale":16}]'
    # The text layers answer every chat; a request that only scores its prompt goes to the
    # corrupted forward pass (retrieval's score_in_model), so forget quality measures it.
    [scored]='[{"name":"retrieval","score_in_model":true},"guard_prompt",{"name":"embedding_corruption","scope":"prompt","scale":16},"logit_difference"]'
    [ngram]='["ngram_penalty"]'
    # The same with the n-gram penalty as the one in-model layer (the best forget quality offline).
    [scoredngram]='[{"name":"retrieval","score_in_model":true},"guard_prompt","ngram_penalty"]'
)

models=$($BIN/obliviate-eval build-models --forget "$FORGET")
TARGET=$(sed -n 's/^target: \([^ ]*\).*/\1/p' <<<"$models")
RETAIN=$(sed -n 's/^retain: \([^ ]*\).*/\1/p' <<<"$models")
baseline .obliviate/runs/tofu-forget"$FORGET" "$FORGET" "$MAX_PER_SET" "$TARGET" "$RETAIN"
mkdir -p "$RUN/cache"
cp -n .obliviate/runs/tofu-forget"$FORGET"/cache/{target,retain,stack}.jsonl "$RUN/cache/"

systems=(--system target=unused --system retain=unused --system stack=unused)
for name in $STACKS; do
    systems+=(--system "$name=unused")
    [ -f "$RUN/$name.evaluated" ] && continue
    start "$TARGET" "$RUN/gateway-$name" "$RUN/serve-$name.log" \
        OBLIVIATE_SUPPRESSION_LAYERS="${LAYERS[$name]}"
    $BIN/obliviate-eval run --system "$name=$gateway_url" --system retain=unused \
        --reference retain --suppress "$name" --forget "$FORGET" --max-per-set "$MAX_PER_SET" \
        --out "$RUN" >/dev/null
    stop
    touch "$RUN/$name.evaluated"
done
# One report over every system, from the cached answers and times to effect.
$BIN/obliviate-eval run "${systems[@]}" --reference retain $(printf -- '--suppress %s ' $STACKS) \
    --forget "$FORGET" --max-per-set "$MAX_PER_SET" --out "$RUN"
