# Shared by bench/callgrind.sh and bench/pgo.sh (sourced): free loopback ports, processes
# stopped by PID on exit, the fake upstream, a one-target gateway config, waiting for /health.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start_upstream BIN PORT LOG [ARGS...]: a fake upstream (OpenAI's or Anthropic's), $CHUNKS
# (default 50) content chunks per stream, no delays.
start_upstream() {
    "$1" --listen "127.0.0.1:$2" --chunks "${CHUNKS:-50}" "${@:4}" >"$3" 2>&1 &
    PIDS+=($!)
}

# gateway_config GW_PORT UP_PORT [KIND]: one server thread, alias `up` -> the fake upstream
# (KIND `openai`, the default, or `anthropic`: the fake Anthropic upstream, whose stream the
# gateway translates into OpenAI chunks).
gateway_config() {
    local base="http://127.0.0.1:$2/v1"
    [ "${3:-openai}" = anthropic ] && base="http://127.0.0.1:$2"
    cat <<CONF
[server]
listen = "127.0.0.1:$1"
threads = 1

[providers.up]
kind = "${3:-openai}"
base_url = "$base"
api_key = "sk-bench"

[models.up]
targets = ["up/gpt-4o-mini"]
CONF
}

# wait_healthy PORT TRIES LOG: until the gateway answers /health (every 0.2 s), or fail.
wait_healthy() {
    for _ in $(seq 1 "$2"); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "the gateway did not start: $3" >&2
    exit 1
}
