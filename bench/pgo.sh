#!/usr/bin/env bash
# Builds the gateway with profile-guided optimisation (PGO): an instrumented build serves a
# training load (plain and streamed chat completions, a failover past a refused target) against
# the fake upstream, and the release build is then compiled with that profile. LLVM uses it to
# inline along the hot path, lay the hot code out together and move the cold code away, which
# cuts the instructions per request and the code pages a running gateway keeps resident.
#
#   bench/pgo.sh            # prints the path of the PGO binary on its last line
#
# Needs llvm-profdata of the same LLVM major version as rustc (`rustc -vV`); if it is missing and
# this runs as root, installs Debian's llvm-N package. Build products go to
# $CARGO_TARGET_DIR/pgo-gen and $CARGO_TARGET_DIR/pgo (the binary: $CARGO_TARGET_DIR/pgo/release/
# switchyard). Everything listens on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$ROOT/bench/.work/pgo
mkdir -p "$WORK"
log() { echo "[pgo] $*" >&2; }

llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=""
for cand in "${LLVM_PROFDATA:-}" "llvm-profdata-$llvm_major" llvm-profdata; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 && "$cand" --version 2>/dev/null | grep -q "LLVM version $llvm_major\."; then
        profdata=$(command -v "$cand")
        break
    fi
done
if [ -z "$profdata" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing llvm-$llvm_major for llvm-profdata (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "llvm-$llvm_major" >"$WORK/apt.log" 2>&1 || true
    fi
    if command -v "llvm-profdata-$llvm_major" >/dev/null 2>&1; then
        profdata=$(command -v "llvm-profdata-$llvm_major")
    else
        echo "llvm-profdata for LLVM $llvm_major not found (rustc uses LLVM $llvm_major): install llvm-$llvm_major or set LLVM_PROFDATA" >&2
        exit 1
    fi
fi

log "building the fake upstream and the load generator"
cargo build --release -q -p switchyard-fakes -p switchyard-bench --bins --manifest-path "$ROOT/Cargo.toml"
REL=$TARGET_DIR/release

RAW=$WORK/raw
rm -rf "$RAW"
mkdir -p "$RAW"
log "building the instrumented gateway"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$RAW" CARGO_TARGET_DIR=$TARGET_DIR/pgo-gen \
    cargo build --release -q -p switchyard --manifest-path "$ROOT/Cargo.toml"

source "$ROOT/bench/common.sh"
UP=$(free_port)
GW=$(free_port)
DEAD=$(free_port) # nothing listens here: connections are refused
start_upstream "$REL/switchyard-fake-upstream" "$UP" "$WORK/upstream.log"
{
    gateway_config "$GW" "$UP"
    cat <<EOF

[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:$DEAD/v1"
api_key = "sk-pgo"

[models.failover]
targets = ["dead/gpt-4o-mini", "up/gpt-4o-mini"]
EOF
} >"$WORK/switchyard.toml"
"$TARGET_DIR/pgo-gen/release/switchyard" serve --config "$WORK/switchyard.toml" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
wait_healthy "$GW" 50 "$WORK/gateway.log"

log "training load"
URL="http://127.0.0.1:$GW/v1/chat/completions"
run() { "$REL/loadgen" --url "$URL" --warmup 0s --timeout 30s "$@" >/dev/null; }
run --model up -c 1 --requests 4000
run --model up -c 32 --requests 8000
run --model up -c 1 --requests 400 --stream
run --model up -c 16 --requests 800 --stream
run --model failover -c 1 --requests 1000
run --model failover -c 1 --requests 200 --stream
kill -TERM "$GW_PID" # a clean exit writes the profile
wait "$GW_PID" 2>/dev/null || true

"$profdata" merge -o "$WORK/merged.profdata" "$RAW"
# The profile's path names its contents: cargo tracks RUSTFLAGS, not the file they point to, so a
# new profile under the same name would leave every unchanged crate built with the old one.
PROFILE=$WORK/switchyard-$(sha256sum "$WORK/merged.profdata" | cut -c1-16).profdata
find "$WORK" -maxdepth 1 -name 'switchyard-*.profdata' ! -path "$PROFILE" -delete
mv "$WORK/merged.profdata" "$PROFILE"
log "building the PGO gateway"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PROFILE" CARGO_TARGET_DIR=$TARGET_DIR/pgo \
    cargo build --release -q -p switchyard --manifest-path "$ROOT/Cargo.toml"
echo "$TARGET_DIR/pgo/release/switchyard"
