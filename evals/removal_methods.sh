#!/usr/bin/env bash
# Benchmark: every removal method on the TOFU target, scored like the other systems.
#
#     evals/removal_methods.sh     # FORGET=1 METHODS="ga npo" MAX_PER_SET=40 FAMILIES=all
#
# Uses only the commands a user has: serve the target with LoRA, file the forgotten subjects as
# forget requests, run one removal job per method (each from the base weights, retain data = TOFU
# retain authors) and merge each version into the target. First the white-box comparison of those
# versions (`obliviate-eval removal-vs-suppression`: open-unlearning's metrics, the representation
# probe, recovery with GCG, and the suppression arm through the training gateway; tens of
# minutes per model) goes to RUN/weights. Then each version
# is served and `obliviate-eval run` beside the target and retain model (hours on a CPU): the
# target/retain/stack answers of RUN are reused, measured first if missing (`baseline`,
# evals/gateway.sh); the report goes to RUN/methods. It measures forget quality, utility and the
# `direct` attack's leaks; FAMILIES=all adds every attack family (many hours more). Resumable:
# a merged version is not trained again, nor a measured model measured again, nor a cached answer
# asked again.
set -euo pipefail
cd "$(dirname "$0")/.."
source evals/gateway.sh  # BIN, start, stop

FORGET=${FORGET:-1}
METHODS=${METHODS:-"ga graddiff npo simnpo rmu idkdpo wga satimp memsel undial task_arithmetic"}
MAX_PER_SET=${MAX_PER_SET:-40}
FAMILIES=${FAMILIES:-direct}
RUN=${RUN:-.obliviate/runs/tofu-forget$FORGET}
WORK=$RUN/removal
export OBLIVIATE_ADMIN_TOKEN=${OBLIVIATE_ADMIN_TOKEN:-bench-admin}
mkdir -p "$WORK"

models=$($BIN/obliviate-eval build-models --forget "$FORGET")
TARGET=$(sed -n 's/^target: \([^ ]*\).*/\1/p' <<<"$models")
RETAIN=$(sed -n 's/^retain: \([^ ]*\).*/\1/p' <<<"$models")

# The target behind the gateway that trains the versions and serves the suppression arm.
start "$TARGET" "$WORK/gateway-train" "$WORK/train.log" OBLIVIATE_VLLM_LORA=true \
    OBLIVIATE_RETAIN_DATA=evals/data/tofu/retain_authors.jsonl
# The forgotten subjects as forget requests (their names as idempotency keys).
ids=$($BIN/python - "$gateway_url" "$FORGET" <<'PY'
import os, sys, httpx
from evals.data import TOFU, load_subjects, split
subjects, _ = split(load_subjects([TOFU / "forget_authors.jsonl"]), int(sys.argv[2]), 0)
for s in subjects:
    body = {"subject": s.name, "qa": [{"question": q.question, "answer": q.answer} for q in s.qa]}
    headers = {"Authorization": f"Bearer {os.environ['OBLIVIATE_ADMIN_TOKEN']}",
               "Idempotency-Key": s.name}
    reply = httpx.post(f"{sys.argv[1]}/admin/v1/forget-requests", json=body, headers=headers)
    print(reply.raise_for_status().json()["id"])
PY
)
for method in $METHODS; do
    [ -f "$WORK/models/$method/config.json" ] && continue
    start_s=$(date +%s)
    $BIN/obliviate unlearn --method "$method" --parent base --url "$gateway_url" \
        $(printf -- '--forget-request %s ' $ids) 2>>"$WORK/unlearn.log" | tee "$WORK/$method.job"
    echo "$method wall_s $(($(date +%s) - start_s))" | tee -a "$WORK/wall.txt"
    version=$(sed -n 's/^succeeded: //p' "$WORK/$method.job")
    adapter=$(curl -sf -H "Authorization: Bearer $OBLIVIATE_ADMIN_TOKEN" \
        "$gateway_url/admin/v1/model-versions/$version" |
        $BIN/python -c 'import json,sys; print(json.load(sys.stdin)["path"])')
    $BIN/obliviate-eval merge "$adapter" --base "$TARGET" --out "$WORK/models/$method"
done

# The same versions on their weights, beside the target (the suppression arm's) and retain model,
# and the suppression arm through this gateway: asked 10 of each forgotten subject's questions,
# relearning from the others.
$BIN/obliviate-eval removal-vs-suppression --target "$TARGET" --retain "$RETAIN" \
    --forget "$FORGET" --max-questions 10 --out "$RUN/weights" --url "$gateway_url" \
    $(printf -- '--model %s ' $(for m in $METHODS; do echo "$m=$WORK/models/$m"; done))
stop

# Answers are cached per system; the methods' report reuses the target/retain/stack answers.
families=()
[ "$FAMILIES" = all ] || for family in $FAMILIES; do families+=(--family "$family"); done
baseline "$RUN" "$FORGET" "$MAX_PER_SET" "$TARGET" "$RETAIN" "${families[@]}"
mkdir -p "$RUN/methods/cache"
cp "$RUN"/cache/{target,retain,stack}.jsonl "$RUN/methods/cache/"  # a superset of any copy
systems=(--system target=unused --system retain=unused --system stack=unused)
for method in $METHODS; do
    systems+=(--system "$method=unused")
    if [ ! -f "$WORK/$method-${FAMILIES// /-}.evaluated" ]; then
        start "$WORK/models/$method" "$WORK/gateway-serve-$method" "$WORK/serve-$method.log"
        $BIN/obliviate-eval run --system "$method=$gateway_url" --system retain=unused \
            --reference retain --forget "$FORGET" --max-per-set "$MAX_PER_SET" "${families[@]}" \
            --api-key "$OBLIVIATE_ADMIN_TOKEN" --out "$RUN/methods" >/dev/null
        stop
        touch "$WORK/$method-${FAMILIES// /-}.evaluated"
    fi
done
# One report over every system, from the cached answers.
$BIN/obliviate-eval run "${systems[@]}" --reference retain --forget "$FORGET" \
    --max-per-set "$MAX_PER_SET" "${families[@]}" --api-key "$OBLIVIATE_ADMIN_TOKEN" \
    --out "$RUN/methods"
