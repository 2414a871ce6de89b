# Sourced by the benchmark scripts: one `obliviate serve` at a time, as a user starts it.
#
#     start MODEL DATA_DIR LOG [ENV=VALUE ...]   # sets gateway_url and gateway_pid
#     stop
#     baseline RUN FORGET MAX_PER_SET TARGET RETAIN [EVAL_RUN_ARGS ...]
#
# DATA_DIR shares the repo's converted embedded model and embedder export (fresh_data_dir).
BIN=.venv/bin
gateway_url=""
gateway_pid=""
start() {
    local model=$1 data=$2 log=$3 port
    shift 3
    $BIN/python -c "import sys; from pathlib import Path; from gateway.spawn import \
fresh_data_dir; fresh_data_dir(Path(sys.argv[1]))" "$data"
    port=$($BIN/python -c 'from gateway.engine.launcher import free_port; print(free_port())')
    env "$@" $BIN/obliviate serve --model "$model" --served-model-name smollm2-135m-instruct \
        --port "$port" --data-dir "$data" >"$log" 2>&1 &
    gateway_pid=$!
    gateway_url=http://127.0.0.1:$port
    until curl -sf "$gateway_url/health" >/dev/null; do
        kill -0 "$gateway_pid" || { tail -50 "$log"; exit 1; }
        sleep 2
    done
}
stop() { kill -INT "$gateway_pid"; wait "$gateway_pid" || true; }
# What every benchmark report compares with, measured by `obliviate-eval run` into RUN unless done:
# the retain model, the target, and the target behind the default text stack (forget requests filed
# after the target is measured, on the same gateway). Needs OBLIVIATE_ADMIN_TOKEN.
baseline() {
    local run=$1 target=$4 retain=$5 tag
    local args=(--reference retain --forget "$2" --max-per-set "$3" --out "$run" "${@:6}")
    tag=$(printf '%s' "${*:6}" | tr -c 'A-Za-z0-9_' '-')  # a run with other args is another run
    mkdir -p "$run"
    if [ ! -f "$run/retain$tag.evaluated" ]; then
        start "$retain" "$run/gateway-retain" "$run/serve-retain.log"
        $BIN/obliviate-eval run --system retain="$gateway_url" "${args[@]}" >/dev/null
        stop
        touch "$run/retain$tag.evaluated"
    fi
    if [ ! -f "$run/stack$tag.evaluated" ]; then
        # Its own data directory: the previous runs' forget requests would suppress the target.
        start "$target" "$run/gateway-target$tag" "$run/serve-target.log"
        $BIN/obliviate-eval run --system target="$gateway_url" --system retain=unused \
            --system stack="$gateway_url" --suppress stack "${args[@]}" >/dev/null
        stop
        touch "$run/stack$tag.evaluated"
    fi
}
trap 'kill -INT $gateway_pid 2>/dev/null || true' EXIT
