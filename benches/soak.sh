#!/bin/sh
# Soak benchmark of `mdmaudit live` (not a test): replay generated traffic onto a
# veth pair between two network namespaces for DURATION seconds, with tcpreplay
# --unique-ip so every loop brings new flows, and sample mdmaudit's resident memory.
# Memory must stay flat (within 10%) after the warm-up, once every cap is full.
#
#   sudo benches/soak.sh                    # 600 s at 50 Mbit/s
#   sudo DURATION=60 MBPS=50 benches/soak.sh
#
# Needs root, iproute2, tcpreplay. Uses only namespaces it creates (deleted on exit).
set -eu
DURATION=${DURATION:-600}
WARMUP=${WARMUP:-120}
MBPS=${MBPS:-50}
FLOWS=${FLOWS:-50000}
# Caps small enough to be reached during the warm-up, so "flat" means "bounded".
LIVE_ARGS=${LIVE_ARGS:---max-records 20000 --tcp-idle 60 --tcp-attempt-idle 30 --udp-idle 30}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/mdmaudit
WORK=$(mktemp -d /tmp/mdmaudit-soak.XXXXXX)
A=mdsoak-a-$$; B=mdsoak-b-$$
cleanup() {
    ip netns pids "$A" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns pids "$B" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
[ "$(id -u)" = 0 ] || { echo "soak.sh: needs root (namespaces, capture)" >&2; exit 2; }
cd "$ROOT"
cargo build --release --quiet
cargo run --release --quiet --example gencap -- --out "$WORK/soak.pcap" --flows "$FLOWS" --seed 7 >/dev/null
ip netns add "$A"; ip netns add "$B"
ip link add sa0 netns "$A" type veth peer name sb0 netns "$B"
ip -n "$A" link set sa0 up; ip -n "$B" link set sb0 up
ip netns exec "$A" "$BIN" live -i sa0 $LIVE_ARGS -f json -o "$WORK/report.json" >/dev/null 2>"$WORK/live.err" &
LIVE=$!
sleep 1
ip netns exec "$B" tcpreplay -q --loop 0 --unique-ip --mbps "$MBPS" -i sb0 "$WORK/soak.pcap" >/dev/null 2>&1 &
REPLAY=$!
PID=$(ip netns pids "$A" | head -1)
echo "t_s rss_kib"
t=0
: > "$WORK/rss"
while [ $t -lt "$DURATION" ]; do
    sleep 10; t=$((t + 10))
    rss=$(awk '/VmRSS/ {print $2}' /proc/"$PID"/status)
    echo "$t $rss" | tee -a "$WORK/rss"
done
kill "$REPLAY" 2>/dev/null || true
kill -INT "$PID"
wait "$LIVE" || true
awk -v w="$WARMUP" '$1 > w { if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 }
    END { printf "after %d s warm-up: min %d KiB, max %d KiB, spread %.1f%%\n", w, min, max, 100 * (max - min) / min }' "$WORK/rss"
python3 - "$WORK/report.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["capture"]["counters"]
print("packets", c["packets"], "flows", d["flow_counters"]["flows_created"],
      "evicted_idle", d["flow_counters"]["flows_evicted_idle"],
      "evicted_cap", d["flow_counters"]["flows_evicted_cap"],
      "live", json.dumps(c["live"]))
PY
