# Sourced by the benchmark scripts: one `obliviate serve` at a time, as a user starts it.
#
#     start MODEL DATA_DIR LOG [ENV=VALUE ...]   # sets gateway_url and gateway_pid
#     stop
#
# DATA_DIR shares the repo's converted embedded model and embedder export (fresh_data_dir).
BIN=.venv/bin
gateway_url=""
gateway_pid=""
start() {
    local model=$1 data=$2 log=$3 port
    shift 3
    $BIN/python -c "import sys; from pathlib import Path; from evals.live_gateway import \
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
trap 'kill -INT $gateway_pid 2>/dev/null || true' EXIT
