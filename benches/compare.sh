#!/usr/bin/env bash
# Whole-run comparison of mdmaudit with cat, a bare libpcap read loop, tcpdump,
# ndpiReader and tshark on a generated capture; writes benches/RESULTS.md.
# See benches/README.md. Usage:
#
#   benches/compare.sh [--flows N] [--seed S] [--rounds R] [--keep]
#                      [--sizes] [--concurrent] [--all] [--skip-main]
#                      [--handshake-flows N] [--concurrent-flows N]
#                      [--no-full-tshark] [--results FILE] [--clean]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

FLOWS=100000
SEED=1
ROUNDS=3
KEEP=0
SIZES=0
CONCURRENT=0
MAIN=1
HS_FLOWS=200000
CONC_FLOWS=10000000
CONC_FORMAT=text
CONC_TIMEOUT=900
FULL_TSHARK=1
CLEAN=0
RESULTS="$ROOT/benches/RESULTS.md"

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Options:
  --flows N             flows in the main (mixed) capture (default 100000: ~3 M packets, ~2.1 GB)
  --seed S              generator seed (default 1)
  --rounds R            rounds of alternating measurements; medians are reported (default 3)
  --handshake-flows N   flows in the handshake-heavy capture (default 200000; 0 skips it)
  --sizes               also measure throughput per GB on a 200 MB and a 4 GB capture
                        (and a 4 MB one, for the fixed cost of a run)
  --concurrent          also measure peak RSS with N concurrent flows (default 10 M)
  --concurrent-flows N  flows for --concurrent (default 10000000)
  --concurrent-format F report format for --concurrent: text (default: small, with the
                        eviction counters) or ndjson (its summary record; ~7 GB for 10 M flows)
  --concurrent-timeout S  kill the --concurrent run after S seconds (default 900)
  --all                 --sizes and --concurrent
  --skip-main           skip the main comparison (and the handshake capture)
  --no-full-tshark      answers check with tshark on the 10% slice only (saves ~2-3 min)
  --keep                keep the work directory (reports, tool outputs, slice) in
                        target/bench-data/last-run instead of deleting it
  --clean               delete the generated captures at the end (they are cached by default)
  --results FILE        where to write the results (default benches/RESULTS.md)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --flows) FLOWS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --sizes) SIZES=1; shift ;;
    --concurrent) CONCURRENT=1; shift ;;
    --all) SIZES=1; CONCURRENT=1; shift ;;
    --skip-main) MAIN=0; shift ;;
    --handshake-flows) HS_FLOWS=$2; shift 2 ;;
    --concurrent-flows) CONC_FLOWS=$2; shift 2 ;;
    --concurrent-format) CONC_FORMAT=$2; shift 2 ;;
    --concurrent-timeout) CONC_TIMEOUT=$2; shift 2 ;;
    --no-full-tshark) FULL_TSHARK=0; shift ;;
    --results) RESULTS=$2; shift 2 ;;
    --clean) CLEAN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Tools: install what is missing when root on Debian/Ubuntu.

declare -A PKG_OF=(
  [tshark]=tshark [editcap]=wireshark-common [ndpiReader]=libndpi-bin
  [python3]=python3 [pkg-config]=pkg-config [cc]=gcc
)
missing_pkgs=()
for cmd in "${!PKG_OF[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing_pkgs+=("${PKG_OF[$cmd]}")
done
if ! { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libpcap; } \
   && ! [ -e /usr/include/pcap/pcap.h ]; then
  missing_pkgs+=(libpcap-dev)
fi
if [ ${#missing_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing_pkgs[@]}" >/dev/null || log "warning: apt-get install failed"
  else
    log "warning: missing ${missing_pkgs[*]} (not root: run apt-get install -y ${missing_pkgs[*]})"
  fi
fi
command -v python3 >/dev/null || die "python3 is required"
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH" || die "cargo is required"
fi
HAVE_TSHARK=0; command -v tshark >/dev/null && command -v editcap >/dev/null && HAVE_TSHARK=1
HAVE_NDPI=0; command -v ndpiReader >/dev/null && HAVE_NDPI=1
HAVE_TCPDUMP=0; command -v tcpdump >/dev/null && HAVE_TCPDUMP=1

# ---------------------------------------------------------------------------
# Build.

log "building release: mdmaudit, examples gencap, pcaploop, walk and timed"
cargo build --release --quiet --bin mdmaudit --example gencap --example pcaploop --example walk --example timed
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MDM=$TARGET_DIR/release/mdmaudit
GENCAP=$TARGET_DIR/release/examples/gencap
PCAPLOOP=$TARGET_DIR/release/examples/pcaploop
WALK=$TARGET_DIR/release/examples/walk
TIMED=$TARGET_DIR/release/examples/timed
NPROC=$(nproc)

if "$MDM" audit --help 2>/dev/null | grep -q -- '--threads'; then
  THREADS_OK=1
else
  THREADS_OK=0
  log "note: this mdmaudit has no --threads flag; every mdmaudit run uses its default"
fi

DATA=$TARGET_DIR/bench-data
mkdir -p "$DATA"
if [ "$KEEP" = 1 ]; then
  W=$DATA/last-run
  rm -rf "$W"
  mkdir -p "$W"
else
  W=$(mktemp -d "${TMPDIR:-/tmp}/mdmaudit-bench.XXXXXX")
  trap 'rm -rf "$W"' EXIT
fi
RES=$W/results.tsv
CTX=$W/context.tsv
: >"$RES"
: >"$CTX"
ctx() { printf '%s\t%s\n' "$1" "$2" >>"$CTX"; }

# The generator's sources key the cache, so a changed generator regenerates.
GENHASH=$(cat benches/gen/*.rs | sha256sum | cut -c1-10)

# gen PROFILE FLOWS BYTES -> prints the capture path (cached by parameters).
gen() {
  local profile=$1 flows=$2 bytes=$3
  local f="$DATA/${profile}-f${flows:-x}-b${bytes:-x}-s${SEED}-${GENHASH}.pcap"
  if [ -s "$f" ] && [ -s "$f.meta.json" ]; then
    log "using cached $f"
  else
    local args=(--out "$f.tmp" --seed "$SEED" --profile "$profile")
    [ -n "$flows" ] && args+=(--flows "$flows")
    [ -n "$bytes" ] && args+=(--target-bytes "$bytes")
    log "generating $f"
    "$GENCAP" "${args[@]}" >&2
    mv "$f.tmp.meta.json" "$f.meta.json"
    mv "$f.tmp" "$f"
  fi
  printf '%s\n' "$f"
}

# warm FILE: put FILE in the page cache the way a capture read from disk is: written
# back, dropped from the cache, then read once. How a file's pages sit in the cache
# depends on how they got there: a capture the generator had just written cost
# mdmaudit (and, we expect, every reader) 15-45% more per GB than the same file once
# dropped and read back from disk (2026-12-05, packets phase: 200 MB capture 0.051 ->
# 0.035 s, main capture 2 threads 0.390 -> 0.298 s, handshake 1 thread 0.560 ->
# 0.431 s; our guess: the written file is held in smaller page-cache folios, and
# every read(2) or page fault walks them). Without this, figures depended on whether
# the guest had evicted and re-read a capture since it was generated.
warm() {
  sync "$1" 2>/dev/null || sync
  python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$1" || true
  cat "$1" >/dev/null
}

meta() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1.meta.json" "$2"; }

# measure SECTION LABEL ROUND CMD... : one timed run; stdout to $W/SECTION-LABEL.out.
# benches/floor/timed.rs starts the command and waits for it with wait4(2): wall time
# from the monotonic clock around exactly that, user and system time (microseconds)
# and peak RSS from the child's rusage. Until 2026-12-05 the wall time came from
# `date +%s%N` around `/usr/bin/time`, which put the second `date` and time's own
# fork and exec inside the interval: about 2.8 ms a run, 6-8% of the 200 MB
# capture's wall time and a quarter of `cat`'s on it (benches/README.md, "What is
# measured").
measure() {
  local section=$1 label=$2 round=$3
  shift 3
  local rc=0 wall user sys rss
  "$TIMED" "$W/time.tmp" "$W/$section-$label.out" "$W/$section-$label.err" -- "$@" || rc=$?
  if [ "$rc" = 0 ] && read -r wall user sys rss rc <"$W/time.tmp"; then
    :
  else
    wall=nan user=nan sys=nan rss=0 rc=${rc:-127}
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$label" "$round" "$wall" "$user" "$sys" "$rss" "$rc" >>"$RES"
  log "  $section $label round $round: wall ${wall} s, user ${user} s, sys ${sys} s, max RSS ${rss} KB (exit $rc)"
}

# mdm_variants SECTION CAPTURE ROUND: mdmaudit with 1 thread, N threads, the default.
# Each run's previous report is removed just before it: replacing it would make the
# timed run also pay for freeing the old file's pages (a 100-200 MB file), which is
# no part of producing a report. Removing all three at once (as this script did
# before 2026-12-04) gave the first variant of each round the pages the three had
# just freed and the later ones whatever the host had reclaimed meanwhile (see
# README, noise). The variants' order also rotates from round to round, so that no
# variant always runs first.
mdm_variants() {
  local section=$1 cap=$2 round=$3
  local variants=(t1 tN default)
  [ "$THREADS_OK" = 1 ] || variants=(default)
  local n=${#variants[@]} k v
  for ((k = 0; k < n; k++)); do
    v=${variants[$(((round - 1 + k) % n))]}
    rm -f "$W/$section-$v.json"
    case $v in
      t1) measure "$section" mdm-t1 "$round" "$MDM" audit "$cap" --format json -o "$W/$section-t1.json" --threads 1 ;;
      tN) measure "$section" mdm-tN "$round" "$MDM" audit "$cap" --format json -o "$W/$section-tN.json" --threads "$NPROC" ;;
      default) measure "$section" mdm-default "$round" "$MDM" audit "$cap" --format json -o "$W/$section-default.json" ;;
    esac
  done
}

ctx date "$(date -u '+%Y-%m-%d %H:%M UTC')"
ctx nproc "$NPROC"
ctx cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
ctx mem "$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
ctx kernel "$(uname -sr)"
ctx commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
ctx threads_ok "$THREADS_OK"
ctx rounds "$ROUNDS"
ctx load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
ctx work "$W"
[ "$HAVE_TSHARK" = 1 ] && ctx tshark_version "$(tshark --version 2>/dev/null | head -n1)"
[ "$HAVE_NDPI" = 1 ] && ctx ndpi_version "$(ndpiReader -h 2>&1 | grep -m1 -o 'nDPI [0-9.]*' || true)"
ctx libpcap_version "$(tcpdump --version 2>&1 | grep -m1 -i libpcap || echo unknown)"

# ---------------------------------------------------------------------------
# Main comparison.

if [ "$MAIN" = 1 ]; then
  CAP=$(gen mixed "$FLOWS" "")
  PACKETS=$(meta "$CAP" packets)
  ctx main_capture "$CAP"
  log "warming the page cache"
  warm "$CAP"
  if [ "$HAVE_TSHARK" = 1 ]; then
    SLICE_N=$((PACKETS / 10))
    SLICE=$W/slice.pcap
    editcap -r "$CAP" "$SLICE" "1-$SLICE_N" 2>/dev/null
    ctx slice_packets "$SLICE_N"
    warm "$SLICE"
  fi
  for r in $(seq 1 "$ROUNDS"); do
    log "main round $r/$ROUNDS"
    measure main cat "$r" sh -c 'cat "$1" >/dev/null' sh "$CAP"
    measure main pcaploop "$r" "$PCAPLOOP" "$CAP"
    [ "$HAVE_TCPDUMP" = 1 ] && measure main tcpdump "$r" tcpdump -r "$CAP" -w /dev/null
    measure main walk "$r" "$WALK" "$CAP"
    mdm_variants main "$CAP" "$r"
    [ "$HAVE_NDPI" = 1 ] && measure main ndpiReader "$r" ndpiReader -i "$CAP" -q -C "$W/ndpi.csv"
    [ "$HAVE_TSHARK" = 1 ] && measure main tshark-slice "$r" \
      tshark -r "$SLICE" -Y 'tls.handshake.type==1' -T fields \
      -e tls.handshake.extensions_server_name -e udp.srcport
  done
  if [ "$HAVE_TSHARK" = 1 ]; then
    log "answers: mdmaudit on the slice"
    "$MDM" audit "$SLICE" --format json -o "$W/slice-mdm.json" >/dev/null 2>&1 || true
    if [ "$FULL_TSHARK" = 1 ]; then
      log "answers: tshark on the whole capture (one run, timed)"
      measure main tshark-full 1 tshark -r "$CAP" -Y 'tls.handshake.type==1' -T fields \
        -e tls.handshake.extensions_server_name -e udp.srcport
    fi
    log "tshark expert info on the slice (malformed-packet check)"
    tshark -r "$SLICE" -q -z expert >"$W/expert.txt" 2>/dev/null || true
  fi

  if [ "$HS_FLOWS" != 0 ]; then
    HCAP=$(gen handshake "$HS_FLOWS" "")
    ctx handshake_capture "$HCAP"
    warm "$HCAP"
    for r in $(seq 1 "$ROUNDS"); do
      log "handshake round $r/$ROUNDS"
      measure handshake cat "$r" sh -c 'cat "$1" >/dev/null' sh "$HCAP"
      mdm_variants handshake "$HCAP" "$r"
    done
  fi
fi

# ---------------------------------------------------------------------------
# Throughput per GB from 200 MB to 4 GB. A 4 MB capture of the same mix is timed
# too: its run is nearly all fixed cost (start, catalog, threads, buffers, exit),
# which summarize.py uses to tell a run's fixed cost from its cost per GB.

if [ "$SIZES" = 1 ]; then
  for sz in 4M 200M 4G; do
    SCAP=$(gen mixed "" "$sz")
    ctx "size_${sz}_capture" "$SCAP"
    warm "$SCAP"
    for r in $(seq 1 "$ROUNDS"); do
      log "size $sz round $r/$ROUNDS"
      measure "size-$sz" cat "$r" sh -c 'cat "$1" >/dev/null' sh "$SCAP"
      rm -f "$W/size-$sz-default.json"
      measure "size-$sz" mdm-default "$r" "$MDM" audit "$SCAP" --format json -o "$W/size-$sz-default.json"
    done
    rm -f "$W/size-$sz-default.json"
  done
fi

# ---------------------------------------------------------------------------
# Peak RSS with many concurrent flows (one run; address space capped at 16 GiB and
# time at --concurrent-timeout, so that a runaway cannot take the machine down).

if [ "$CONCURRENT" = 1 ]; then
  CCAP=$(gen concurrent "$CONC_FLOWS" "")
  ctx concurrent_capture "$CCAP"
  ctx concurrent_format "$CONC_FORMAT"
  ctx concurrent_timeout "$CONC_TIMEOUT"
  warm "$CCAP"
  log "concurrent: $CONC_FLOWS flows"
  ( ulimit -v $((16 * 1024 * 1024))
    measure concurrent mdm-default 1 timeout --foreground --signal=KILL "$CONC_TIMEOUT" \
      "$MDM" audit "$CCAP" --format "$CONC_FORMAT" -o "$W/concurrent.report" )
  # Keep only the summary record (ndjson) or the counters line (text).
  if [ "$CONC_FORMAT" = ndjson ]; then
    tail -n 1 "$W/concurrent.report" >"$W/concurrent-summary.json" 2>/dev/null || true
  else
    grep -m1 'evicted' "$W/concurrent.report" >"$W/concurrent-summary.txt" 2>/dev/null || true
  fi
  # A killed run leaves the report's temporary file behind.
  rm -f "$W/concurrent.report" "$W"/.concurrent.report*
fi

# ---------------------------------------------------------------------------

ctx load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$ROOT/benches/summarize.py" "$W" "$RESULTS"
log "wrote $RESULTS"
if [ "$CLEAN" = 1 ]; then
  log "removing the cached captures in $DATA"
  rm -f "$DATA"/*.pcap "$DATA"/*.pcap.meta.json
fi
