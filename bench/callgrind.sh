#!/usr/bin/env bash
# Instructions per request on the gateway's hot path, counted by callgrind: deterministic, so
# usable on a busy shared machine where wall-clock figures are noise.
#
#   bench/callgrind.sh [plain|stream|both] [REQUESTS]
#   CONCURRENCY=64 bench/callgrind.sh plain 5000     # the same with 64 connections at once
#   CHUNKS=1 bench/callgrind.sh stream               # streams of 1 content chunk: with the
#                                                    # default 50, separates the cost per stream
#                                                    # (request, commit, head) from per chunk
#   UPSTREAM=anthropic bench/callgrind.sh stream     # the `anthropic` provider against the fake
#                                                    # Anthropic upstream: its events translated
#                                                    # into OpenAI chunks
#   HEADERS=openai bench/callgrind.sh plain          # the fake OpenAI upstream answers with the
#                                                    # ~20 headers api.openai.com sends (by
#                                                    # default 4)
#
# Starts the fake upstream ($CHUNKS, default 50, chunks; no delays) and the release gateway under callgrind with
# one server thread and its default logging, warms up with 200 requests, zeroes the counters,
# sends REQUESTS (default 1000; 200 for streams) at concurrency $CONCURRENCY (default 1) with
# loadgen, dumps, and prints the instructions per request (every thread of the gateway counted: the log writer too).
# The dumps stay in bench/.work/callgrind/ for callgrind_annotate. Everything listens on
# 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
WORK=$ROOT/bench/.work/callgrind
mkdir -p "$WORK"
GATEWAY=${SWITCHYARD_BIN:-$TARGET/switchyard}
KIND=${UPSTREAM:-openai}
FAKE_ARGS=()
case $KIND in
    openai)
        FAKE=switchyard-fake-upstream
        if [ "${HEADERS:-}" = openai ]; then FAKE_ARGS=(--openai-headers); fi
        ;;
    anthropic)
        FAKE=switchyard-fake-anthropic
        # An answer of as many words as chunks, so that each text delta carries one.
        FAKE_ARGS=(--reply "$(python3 -c "import sys; print(' '.join(f'word{i}' for i in range(int(sys.argv[1]))))" "${CHUNKS:-50}")")
        ;;
    *) echo "UPSTREAM: openai or anthropic" >&2; exit 2 ;;
esac
for bin in $FAKE loadgen; do
    [ -x "$TARGET/$bin" ] || { echo "$TARGET/$bin missing: cargo build --release first (same CARGO_TARGET_DIR)" >&2; exit 1; }
done
MODE=${1:-both}
C=${CONCURRENCY:-1}
N=${2:-}

source "$ROOT/bench/common.sh"
UP_PORT=$(free_port)
GW_PORT=$(free_port)
start_upstream "$TARGET/$FAKE" "$UP_PORT" "$WORK/upstream.log" "${FAKE_ARGS[@]}"
gateway_config "$GW_PORT" "$UP_PORT" "$KIND" >"$WORK/switchyard.toml"
rm -f "$WORK"/callgrind.out.*
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" \
    "$GATEWAY" serve --config "$WORK/switchyard.toml" >"$WORK/gateway.log" 2>&1 &
VG=$!
PIDS+=($VG)
wait_healthy "$GW_PORT" 300 "$WORK/gateway.log"

URL="http://127.0.0.1:$GW_PORT/v1/chat/completions"
measure() { # label, requests, loadgen flags...
    local label=$1 n=$2
    shift 2
    "$TARGET/loadgen" --url "$URL" --model up -c "$C" --requests $((200 > 4 * C ? 200 : 4 * C)) --warmup 0s --timeout 30s "$@" >/dev/null
    callgrind_control -z "$VG" >/dev/null
    "$TARGET/loadgen" --url "$URL" --model up -c "$C" --requests "$n" --warmup 0s --timeout 30s "$@" >"$WORK/$label.json"
    callgrind_control -d "$label" "$VG" >/dev/null
    sleep 0.5
    local dump ir ok
    dump=$(ls -t "$WORK"/callgrind.out.* | head -1)
    mv "$dump" "$WORK/$label.callgrind"
    ir=$(awk '/^summary:/ {print $2}' "$WORK/$label.callgrind")
    ok=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ok'])" "$WORK/$label.json")
    echo "$label: $ok ok of $n; $ir instructions; $((ir / n)) per request  ($WORK/$label.callgrind)"
}
case $MODE in
    plain) measure plain "${N:-1000}" ;;
    stream) measure stream "${N:-200}" --stream ;;
    both) measure plain "${N:-1000}"; measure stream "${N:-200}" --stream ;;
    *) echo "usage: $0 [plain|stream|both] [REQUESTS]" >&2; exit 2 ;;
esac
