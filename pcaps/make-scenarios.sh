#!/usr/bin/env bash
# make-scenarios.sh — record the scenario captures in pcaps/ from real traffic.
#
# What it does (see pcaps/README.md for each file):
#   1. builds a small lab out of network namespaces:
#
#        mdm-iphone  (198.51.100.10, 2001:db8:1::10) ─┐
#        mdm-android (198.51.100.11)                  ├─ br-lan ─ mdm-fw ─ mdm-cloud
#        mdm-server  (198.51.100.5)                  ─┘  (router, nftables       (203.0.113.x,
#                                                         firewall, dnsmasq)      2001:db8:2::x)
#
#      mdm-fw forwards between the LAN and the "cloud", filters with a real nftables
#      ruleset chosen per scenario (drop, reject with tcp reset, reject with ICMP
#      admin-prohibited, reset on a ClientHello) and answers DNS with dnsmasq.
#      mdm-cloud runs openssl s_server (self-signed certificate made in a temporary
#      directory) on the APNs, FCM and legacy ports, a python HTTP server on port 80
#      and an HTTP/3 server (tools/quic_peer.py, aioquic) on UDP 443;
#   2. per scenario, records the LAN side of the router (br-lan, as a span port would)
#      with tcpdump while the devices run dig, openssl s_client, curl and
#      tools/quic_peer.py;
#   3. rewrites the documentation addresses to realistic ones (tools/pcapedit.py: IP
#      headers, ICMP-quoted headers, ARP, DNS answers; all checksums recomputed),
#      moves the first packet to a fixed date, and derives the variants (VLAN tag with
#      tcprewrite, one direction with a tcpdump filter, pcapng with editcap, the
#      re-segmented ClientHello with tools/pcapedit.py);
#   4. checks every file with tshark (checksum validation on, expert info, the
#      expected ClientHello SNIs).  tools/ground_truth.py prints what tshark sees in
#      each file (the tables in README.md).
#
# Live traffic only ever goes to loopback and to the namespaces made here, which use
# 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.  Run as root:
#
#     sudo pcaps/make-scenarios.sh            # all scenarios, into pcaps/
#     sudo pcaps/make-scenarios.sh fcm-refused dns-named   # only these
#     sudo pcaps/make-scenarios.sh --hold 600   # keep the lab up to look around
#
# Needs: iproute2, nftables, tcpdump, tshark/editcap, tcprewrite (tcpreplay),
# dnsmasq, dig (bind9-dnsutils), openssl, curl, ethtool, python3; for quic-sni also
# the python package aioquic (pip install aioquic; without it that scenario is skipped).
# Rerunning regenerates the files; ports, timing, random bytes and keys differ each
# time, the committed files are the ones the golden tests are written against.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE}
EDIT="python3 $HERE/tools/pcapedit.py"
EPOCH=1717405200          # 2024-06-03T09:00:00Z: first packet of every capture
WORK=
PIDS=()

NS_FW=mdm-fw
NS_CLOUD=mdm-cloud
NS_IPHONE=mdm-iphone
NS_ANDROID=mdm-android
NS_SERVER=mdm-server
ALL_NS=("$NS_IPHONE" "$NS_ANDROID" "$NS_SERVER" "$NS_FW" "$NS_CLOUD")

# Lab addresses (documentation ranges) ...
LAN_GW=198.51.100.1 IPHONE=198.51.100.10 ANDROID=198.51.100.11 MDMSRV=198.51.100.5
WAN_GW=203.0.113.1
COURIER=203.0.113.20 GATEWAY=203.0.113.21 APIPUSH=203.0.113.22 FEEDBACK=203.0.113.23
MTALK=203.0.113.30 GAPI=203.0.113.31 ENROLL=203.0.113.40 OCSP=203.0.113.41
LAN6_GW=2001:db8:1::1 IPHONE6=2001:db8:1::10 COURIER6=2001:db8:2::20

# ... and what they become in the committed files.
MAP=(
  --map "$LAN_GW=10.20.1.1" --map "$IPHONE=10.20.1.10" --map "$ANDROID=10.20.1.11"
  --map "$MDMSRV=10.20.1.5" --map "$WAN_GW=192.0.2.1"
  --map "$COURIER=17.57.146.20"                    # courier.push.apple.com (Apple 17.0.0.0/8)
  --map "$GATEWAY=17.188.166.21"                   # gateway.push.apple.com
  --map "$APIPUSH=17.188.180.22"                   # api.push.apple.com
  --map "$FEEDBACK=17.188.166.23"                  # feedback.push.apple.com
  --map "$MTALK=142.250.102.188"                   # mtalk.google.com
  --map "$GAPI=142.250.74.234"                     # android.googleapis.com
  --map "$ENROLL=17.32.194.40"                     # mdmenrollment.apple.com
  --map "$OCSP=17.253.17.41"                       # ocsp.apple.com
  --map "$COURIER6=2620:149:a44::20"               # courier.push.apple.com over IPv6
)

log() { printf '== %s\n' "$*" >&2; }
# Background jobs are started with "ip netns exec" itself (not in_ns), so that $! is
# the pid of the program and kill reaches it.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

cleanup() {
  local p ns
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "${ALL_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  if [[ -n $WORK && -d $WORK && -z ${KEEP_WORK:-} ]]; then rm -rf "$WORK"; fi
}

need() {
  local t missing=()
  for t in ip nft tcpdump tshark editcap tcprewrite dnsmasq dig openssl curl ethtool python3; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  if ((${#missing[@]})); then
    echo "missing tools: ${missing[*]}" >&2
    echo "apt-get install iproute2 nftables tcpdump tshark tcpreplay dnsmasq-base bind9-dnsutils openssl curl ethtool python3" >&2
    exit 1
  fi
  [[ $(id -u) == 0 ]] || { echo "run as root (network namespaces, nftables, tcpdump)" >&2; exit 1; }
}

# ------------------------------------------------------------------ the lab

# veth NAME_A NS_A NAME_B NS_B MAC_A: a veth pair without checksum offload, so the
# recorded checksums are the real ones rather than left for hardware to fill in.
veth() {
  ip link add "$1" netns "$2" type veth peer name "$3" netns "$4"
  in_ns "$2" ip link set "$1" address "$5"
  in_ns "$2" ethtool -K "$1" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
  in_ns "$4" ethtool -K "$3" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
}

quiet_ipv6() {  # no router solicitations, no DAD probes, no temporary addresses
  in_ns "$1" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
    net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.default.router_solicitations=0 \
    net.ipv6.conf.all.use_tempaddr=0 net.ipv6.conf.default.use_tempaddr=0
}

lab_up() {
  local ns
  for ns in "${ALL_NS[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    quiet_ipv6 "$ns"
    in_ns "$ns" ip link set lo up
    # Two SYN retransmissions (at +1 s and +3 s) before connect() gives up at +7 s;
    # Linux >= 6.5 would otherwise space the first four retransmissions linearly.
    in_ns "$ns" sysctl -qw net.ipv4.tcp_syn_retries=2
    in_ns "$ns" sysctl -qw net.ipv4.tcp_syn_linear_timeouts=0 2>/dev/null || true
  done

  # Router: bridge br-lan for the LAN (recorded), wan0 towards the cloud.
  in_ns $NS_FW ip link add br-lan address 00:1b:54:20:01:01 type bridge
  in_ns $NS_FW sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  # With br_netfilter loaded (docker hosts), "reject" sends its RST straight out of the
  # bridge port, past br-lan where we record.  The router here routes, it does not
  # filter bridged frames, so turn that off (per namespace since Linux 5.3).
  in_ns $NS_FW sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
    net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 2>/dev/null || true
  veth dev0 $NS_IPHONE  ip0 $NS_FW f0:18:98:20:01:10     # the iPhone
  veth dev0 $NS_ANDROID an0 $NS_FW 8c:f5:a3:20:01:11     # the Android phone
  veth dev0 $NS_SERVER  sv0 $NS_FW 00:50:56:20:01:05     # the MDM server
  veth wan0 $NS_FW cloud0 $NS_CLOUD 02:00:5e:10:02:01
  in_ns $NS_CLOUD ip link set cloud0 address 02:00:5e:20:00:01
  for ns in ip0 an0 sv0; do
    in_ns $NS_FW ip link set "$ns" master br-lan up
  done
  in_ns $NS_FW ethtool -K br-lan tx off >/dev/null 2>&1 || true
  in_ns $NS_FW ip addr add $LAN_GW/24 dev br-lan
  in_ns $NS_FW ip addr add $LAN6_GW/64 dev br-lan nodad
  in_ns $NS_FW ip addr add $WAN_GW/24 dev wan0
  in_ns $NS_FW ip addr add 2001:db8:2::1/64 dev wan0 nodad
  in_ns $NS_FW ip link set br-lan up
  in_ns $NS_FW ip link set wan0 up

  dev_addr() {  # NS IPV4 [IPV6]
    in_ns "$1" ip addr add "$2/24" dev dev0
    [[ -n ${3:-} ]] && in_ns "$1" ip addr add "$3/64" dev dev0 nodad
    in_ns "$1" ip link set dev0 up
    in_ns "$1" ip route add default via $LAN_GW
    [[ -n ${3:-} ]] && in_ns "$1" ip -6 route add default via $LAN6_GW
    return 0
  }
  dev_addr $NS_IPHONE $IPHONE $IPHONE6
  dev_addr $NS_ANDROID $ANDROID
  dev_addr $NS_SERVER $MDMSRV

  local a
  for a in $COURIER $GATEWAY $APIPUSH $FEEDBACK $MTALK $GAPI $ENROLL $OCSP; do
    in_ns $NS_CLOUD ip addr add $a/24 dev cloud0
  done
  in_ns $NS_CLOUD ip addr add $COURIER6/64 dev cloud0 nodad
  in_ns $NS_CLOUD ip link set cloud0 up
  in_ns $NS_CLOUD ip route add default via $WAN_GW
  in_ns $NS_CLOUD ip -6 route add default via 2001:db8:2::1
}

services_up() {
  # A self-signed certificate; the client does not verify it (it only has to reach
  # the point where the handshake completes and data flows both ways).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=lab.example" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
  local port bind
  for port in 443 2195 2196 5223 5228 5229; do
    # -rev: echo every line back reversed, so each flow carries data both ways.
    for bind in "0.0.0.0:$port" "[::]:$port"; do   # s_server listens on one family
      ip netns exec $NS_CLOUD openssl s_server -quiet -rev -accept "$bind" \
        -cert "$WORK/cert.pem" -key "$WORK/key.pem" </dev/null >/dev/null 2>&1 &
      PIDS+=("$!")
    done
  done
  # Plain HTTP (ocsp.apple.com is fetched over http:// by Apple devices).
  mkdir -p "$WORK/www/ocsp03-apevsrsa2g101"
  printf 'ocsp-response\n' >"$WORK/www/ocsp03-apevsrsa2g101/status"
  ip netns exec $NS_CLOUD python3 -m http.server 80 --bind 203.0.113.41 --directory "$WORK/www" \
    >/dev/null 2>&1 &
  PIDS+=("$!")

  # HTTP/3 over QUIC (UDP 443), when the aioquic package is there.
  if have_aioquic; then
    ip netns exec $NS_CLOUD python3 "$HERE/tools/quic_peer.py" server --bind $GAPI --port 443 \
      --cert "$WORK/cert.pem" --key "$WORK/key.pem" >/dev/null 2>&1 &
    PIDS+=("$!")
  fi

  # The site's resolver on the router.  Names carry the CNAME chains the real
  # services use, ending at the lab addresses (rewritten afterwards).
  ip netns exec $NS_FW dnsmasq --conf-file=/dev/null --no-daemon --no-resolv --no-hosts \
    --bind-interfaces --listen-address=$LAN_GW --listen-address=$LAN6_GW \
    --except-interface=lo --user=root --log-facility=/dev/null \
    --cname=courier.push.apple.com,courier-push-apple.com.akadns.net \
    --host-record=courier-push-apple.com.akadns.net,$COURIER,$COURIER6 \
    --cname=mtalk.google.com,mobile-gtalk.l.google.com \
    --host-record=mobile-gtalk.l.google.com,$MTALK \
    --host-record=android.googleapis.com,$GAPI \
    --host-record=gateway.push.apple.com,$GATEWAY \
    --host-record=feedback.push.apple.com,$FEEDBACK \
    --cname=api.push.apple.com,api-vs.push-apple.com.akadns.net \
    --host-record=api-vs.push-apple.com.akadns.net,$APIPUSH \
    --cname=mdmenrollment.apple.com,mdmenrollment.apple.com.akadns.net \
    --host-record=mdmenrollment.apple.com.akadns.net,$ENROLL \
    >/dev/null 2>&1 &
  PIDS+=("$!")

  local i
  for i in $(seq 50); do   # wait until every service listens
    if in_ns $NS_CLOUD ss -ltn | grep -q ':5229 ' && in_ns $NS_CLOUD ss -ltn | grep -q ':80 ' \
       && in_ns $NS_FW ss -lun | grep -q "$LAN_GW:53 " \
       && { ! have_aioquic || in_ns $NS_CLOUD ss -lun | grep -q "$GAPI:443 "; }; then
      return 0
    fi
    sleep 0.1
  done
  echo "services did not start" >&2
  exit 1
}

have_aioquic() { python3 -c 'import aioquic' 2>/dev/null; }

# firewall RULES...: load the router's forward chain for one scenario.
firewall() {
  in_ns $NS_FW nft -f - <<EOF
flush ruleset
table inet branch_fw {
  chain forward {
    type filter hook forward priority filter; policy accept;
    $(printf '%s\n    ' "$@")
  }
}
EOF
}

# ------------------------------------------------------------------ traffic

# resolve NS NAME [TYPE]: ask the site resolver like a device would; print the address.
resolve() {
  local server=$LAN_GW
  [[ ${3:-A} == AAAA ]] && server=$LAN6_GW
  in_ns "$1" dig +tries=1 +time=2 +short "@$server" "$2" "${3:-A}" | tail -n1
}

# tls NS ADDR PORT [s_client options...]: a TLS session that sends one line, gets it
# back reversed, and closes (close_notify, FIN).  Fails if the connection fails.
tls() {
  local ns=$1 addr=$2 port=$3; shift 3
  [[ $addr == *:* ]] && addr="[$addr]"
  { printf 'PING %s\n' "$ns"; sleep 0.4; } |
    in_ns "$ns" timeout 15 openssl s_client -quiet -no_ign_eof -connect "$addr:$port" "$@" \
      >/dev/null 2>&1
}

# tls_blocked: the same, when the firewall is expected to stop it.
tls_blocked() {
  if tls "$@"; then echo "expected $2:$3 to be blocked" >&2; exit 1; fi
  return 0
}

pause() { sleep "${1:-0.5}"; }

# Capture filters: the scenario's traffic and its ARP/ND, without the router's own
# multicast group reports.
V4='arp or (ip and not igmp)'
V6='ip6 and not dst host ff02::16 and not dst host ff02::2 and not dst host ff02::1'

# record NAME FILTER NS IFACE [extra tcpdump args]: start tcpdump in NS on IFACE,
# writing $WORK/NAME.raw.pcap; its pid is left in REC_PID.  Neighbour caches are
# flushed first, so each capture starts with its ARP/ND exchange like a fresh one.
record() {
  local name=$1 filter=$2 ns=$3 iface=$4; shift 4
  local raw="$WORK/$name.raw.pcap" i
  for i in "${ALL_NS[@]}"; do in_ns "$i" ip neigh flush all 2>/dev/null || true; done
  ip netns exec "$ns" tcpdump -i "$iface" --immediate-mode -Z root -U -n "$@" -w "$raw" "$filter" \
    </dev/null >/dev/null 2>"$WORK/$name.tcpdump.log" &
  REC_PID=$!
  PIDS+=("$REC_PID")
  for i in $(seq 50); do grep -qs listening "$WORK/$name.tcpdump.log" && break; sleep 0.1; done
  pause 0.3
}

stop() {  # stop PID: end a capture after the last packets have been written
  pause 0.5
  kill -INT "$1"
  wait "$1" 2>/dev/null || true
}

# finish NAME [OUTNAME]: rewrite addresses, fix the start time, store in $OUT.
finish() {
  local name=$1 out=${2:-$1.pcap}
  $EDIT rewrite "${MAP[@]}" "$WORK/$name.raw.pcap" "$WORK/$name.mapped.pcap"
  $EDIT timeshift --epoch $EPOCH "$WORK/$name.mapped.pcap" "$OUT/$out"
  log "wrote $out ($(stat -c %s "$OUT/$out") bytes)"
}

# ------------------------------------------------------------------ scenarios

# The demo: the iPhone resolves courier.push.apple.com, tries TCP 5223 (dropped by the
# firewall: SYN + 2 retransmissions unanswered), then falls back to TLS on 443.
scenario_apns_fallback() {
  firewall 'tcp dport 5223 counter drop'
  local p1 p2 addr
  record apns-fallback "$V4" $NS_FW br-lan; p1=$REC_PID
  # The same traffic seen inside the iPhone on Linux "any": LINUX_SLL2 link type.
  record apns-fallback-sll2 "$V4" $NS_IPHONE any -y LINUX_SLL2; p2=$REC_PID
  addr=$(resolve $NS_IPHONE courier.push.apple.com)
  [[ $addr == "$COURIER" ]] || { echo "resolved $addr" >&2; exit 1; }
  tls_blocked $NS_IPHONE "$addr" 5223 -servername courier.push.apple.com -alpn apns-security-v3
  tls $NS_IPHONE "$addr" 443 -servername courier.push.apple.com -alpn apns-security-v3
  stop "$p1"; stop "$p2"
  finish apns-fallback
  finish apns-fallback-sll2
  # 802.1Q variant: the same packets with VLAN tag 20.
  tcprewrite --enet-vlan=add --enet-vlan-tag=20 --enet-vlan-cfi=0 --enet-vlan-pri=0 \
    -i "$OUT/apns-fallback.pcap" -o "$OUT/apns-fallback-vlan.pcap"
  log "wrote apns-fallback-vlan.pcap"
}

scenario_apns_fallback_ipv6() {
  firewall 'tcp dport 5223 counter drop'
  local p addr
  record apns-fallback-ipv6 "$V6" $NS_FW br-lan; p=$REC_PID
  addr=$(resolve $NS_IPHONE courier.push.apple.com AAAA)
  [[ $addr == "$COURIER6" ]] || { echo "resolved $addr" >&2; exit 1; }
  tls_blocked $NS_IPHONE "$addr" 5223 -servername courier.push.apple.com -alpn apns-security-v3
  tls $NS_IPHONE "$addr" 443 -servername courier.push.apple.com -alpn apns-security-v3
  stop "$p"
  finish apns-fallback-ipv6 apns-fallback-ipv6.pcap.tmp
  editcap -F pcapng --capture-comment "mdmaudit scenario apns-fallback-ipv6, made by pcaps/make-scenarios.sh" \
    "$OUT/apns-fallback-ipv6.pcap.tmp" "$OUT/apns-fallback-ipv6.pcapng"
  rm -f "$OUT/apns-fallback-ipv6.pcap.tmp"
  log "wrote apns-fallback-ipv6.pcapng"
}

# Android: FCM on 5228 refused by a TCP reset from the firewall, then 443.
scenario_fcm_refused() {
  firewall 'tcp dport 5228 counter reject with tcp reset'
  local p addr
  record fcm-refused "$V4" $NS_FW br-lan; p=$REC_PID
  addr=$(resolve $NS_ANDROID mtalk.google.com)
  tls_blocked $NS_ANDROID "$addr" 5228 -servername mtalk.google.com
  pause
  tls $NS_ANDROID "$addr" 443 -servername mtalk.google.com
  stop "$p"
  finish fcm-refused
}

# Android: FCM on 5228 and the alternate 5229 answered by ICMP administratively
# prohibited from the firewall, then 443.
scenario_fcm_prohibited() {
  firewall 'tcp dport { 5228, 5229 } counter reject with icmpx type admin-prohibited'
  local p addr
  record fcm-prohibited "$V4" $NS_FW br-lan; p=$REC_PID
  addr=$(resolve $NS_ANDROID mtalk.google.com)
  tls_blocked $NS_ANDROID "$addr" 5228 -servername mtalk.google.com
  pause
  tls_blocked $NS_ANDROID "$addr" 5229 -servername mtalk.google.com
  pause
  tls $NS_ANDROID "$addr" 443 -servername mtalk.google.com
  stop "$p"
  finish fcm-prohibited
}

# The MDM server still uses the legacy binary APNs interface (2195, feedback 2196),
# besides the HTTP/2 provider API on 443.
scenario_legacy_2195() {
  firewall
  local p addr
  record legacy-2195 "$V4" $NS_FW br-lan; p=$REC_PID
  addr=$(resolve $NS_SERVER gateway.push.apple.com)
  tls $NS_SERVER "$addr" 2195 -servername gateway.push.apple.com
  addr=$(resolve $NS_SERVER feedback.push.apple.com)
  tls $NS_SERVER "$addr" 2196 -servername feedback.push.apple.com
  addr=$(resolve $NS_SERVER api.push.apple.com)
  tls $NS_SERVER "$addr" 443 -servername api.push.apple.com -alpn h2
  stop "$p"
  finish legacy-2195
}

# A ClientHello re-segmented into three TCP segments, the middle one last.
scenario_split_hello() {
  firewall
  local p
  record split-hello "$V4" $NS_FW br-lan; p=$REC_PID
  tls $NS_SERVER $APIPUSH 443 -servername api.push.apple.com -alpn h2
  stop "$p"
  $EDIT split-hello --sni api.push.apple.com --order 1,3,2 \
    "$WORK/split-hello.raw.pcap" "$WORK/split-hello.split.pcap"
  mv "$WORK/split-hello.split.pcap" "$WORK/split-hello.raw.pcap"
  finish split-hello
}

# A server named only by DNS: the iPhone resolves mdmenrollment.apple.com (CNAME
# chain) and opens TLS to the answer without sending SNI.
scenario_dns_named() {
  firewall
  local p addr
  record dns-named "$V4" $NS_FW br-lan; p=$REC_PID
  addr=$(resolve $NS_IPHONE mdmenrollment.apple.com)
  tls $NS_IPHONE "$addr" 443 -noservername
  stop "$p"
  finish dns-named
}

# A server named only by the HTTP Host header (no DNS seen, no TLS).
scenario_http_host() {
  firewall
  local p
  record http-host "$V4" $NS_FW br-lan; p=$REC_PID
  in_ns $NS_IPHONE curl -sS -o /dev/null -A 'com.apple.trustd/3.0' \
    --connect-to ocsp.apple.com:80:$OCSP:80 http://ocsp.apple.com/ocsp03-apevsrsa2g101/status
  stop "$p"
  finish http-host
}

# Everything allowed: APNs on 5223, FCM on 5228, the provider API on 443.
scenario_all_ok() {
  firewall
  local p addr
  record all-ok "$V4" $NS_FW br-lan; p=$REC_PID
  addr=$(resolve $NS_IPHONE courier.push.apple.com)
  tls $NS_IPHONE "$addr" 5223 -servername courier.push.apple.com -alpn apns-security-v3
  addr=$(resolve $NS_ANDROID mtalk.google.com)
  tls $NS_ANDROID "$addr" 5228 -servername mtalk.google.com
  addr=$(resolve $NS_SERVER api.push.apple.com)
  tls $NS_SERVER "$addr" 443 -servername api.push.apple.com -alpn h2
  stop "$p"
  finish all-ok
  # A span port that only sees what the devices send: the same capture, one direction.
  tcpdump -Z root -r "$OUT/all-ok.pcap" -w "$OUT/one-direction.pcap" \
    'src host 10.20.1.10 or src host 10.20.1.11 or src host 10.20.1.5' 2>/dev/null
  log "wrote one-direction.pcap"
  # A capture started mid-stream: only the APNs flow, from its first application data
  # record sent by the iPhone (no SYN, no ClientHello, no DNS).
  local first
  first=$(tshark -r "$OUT/all-ok.pcap" -Y 'tcp.dstport == 5223 && tls.app_data' \
    -T fields -e frame.number 2>/dev/null | head -n1)
  tshark -r "$OUT/all-ok.pcap" -Y "tcp.port == 5223 && frame.number >= $first" \
    -F pcap -w "$WORK/midstream.pcap" 2>/dev/null
  $EDIT timeshift --epoch $EPOCH "$WORK/midstream.pcap" "$OUT/midstream.pcap"
  log "wrote midstream.pcap"
}

# Recorded with a 256-byte snaplen: the ClientHello is cut, its SNI is still inside.
scenario_snaplen_sni() {
  firewall
  local p addr
  record snaplen-sni "$V4" $NS_FW br-lan -s 256; p=$REC_PID
  addr=$(resolve $NS_IPHONE courier.push.apple.com)
  tls $NS_IPHONE "$addr" 5223 -servername courier.push.apple.com -alpn apns-security-v3
  stop "$p"
  finish snaplen-sni
}

# A firewall that inspects TLS resets APNs on 5223 as soon as it sees a ClientHello
# (TCP established, then RST); the iPhone falls back to 443.
scenario_apns_reset() {
  firewall 'tcp dport 5223 @ih,0,8 0x16 @ih,40,8 0x01 counter reject with tcp reset'
  local p addr
  record apns-reset "$V4" $NS_FW br-lan; p=$REC_PID
  addr=$(resolve $NS_IPHONE courier.push.apple.com)
  tls_blocked $NS_IPHONE "$addr" 5223 -servername courier.push.apple.com -alpn apns-security-v3
  pause
  tls $NS_IPHONE "$addr" 443 -servername courier.push.apple.com -alpn apns-security-v3
  stop "$p"
  # The server never got the ClientHello and still waits on that connection; abort it
  # (after the capture) so s_server accepts the next one.
  in_ns $NS_CLOUD ss -K state established '( sport = :5223 )' >/dev/null 2>&1 || true
  finish apns-reset
}

# The Android phone reaches android.googleapis.com over HTTP/3: the name is only in
# the (encrypted, RFC 9001) QUIC Initial packet.
scenario_quic_sni() {
  if ! have_aioquic; then
    log "skipped quic-sni: python3 lacks aioquic (pip install aioquic)"
    return 0
  fi
  firewall
  local p addr
  record quic-sni "$V4" $NS_FW br-lan; p=$REC_PID
  addr=$(resolve $NS_ANDROID android.googleapis.com)
  in_ns $NS_ANDROID timeout 15 python3 "$HERE/tools/quic_peer.py" client --connect "$addr" \
    --port 443 --sni android.googleapis.com --path /checkin
  stop "$p"
  finish quic-sni
}

ALL_SCENARIOS=(apns_fallback apns_fallback_ipv6 fcm_refused fcm_prohibited legacy_2195
               split_hello dns_named http_host all_ok snaplen_sni apns_reset quic_sni)

# ------------------------------------------------------------------ checks

# hellos FILE: the SNI of every ClientHello tshark finds (TLS over TCP, reassembled
# even out of order, and QUIC Initial), in frame order, "-" for one without SNI.
hellos() {
  tshark -r "$1" -o tcp.reassemble_out_of_order:TRUE -Y 'tls.handshake.type == 1' \
    -T fields -e tls.handshake.extensions_server_name 2>/dev/null |
    sed 's/^$/-/' | paste -sd' ' -
}

# What each file must contain, as tshark sees it.
declare -A EXPECT_SNI=(
  [apns-fallback.pcap]="courier.push.apple.com"
  [apns-fallback-vlan.pcap]="courier.push.apple.com"
  [apns-fallback-sll2.pcap]="courier.push.apple.com"
  [apns-fallback-ipv6.pcapng]="courier.push.apple.com"
  [fcm-refused.pcap]="mtalk.google.com"
  [fcm-prohibited.pcap]="mtalk.google.com"
  [legacy-2195.pcap]="gateway.push.apple.com feedback.push.apple.com api.push.apple.com"
  [split-hello.pcap]="api.push.apple.com"
  [dns-named.pcap]="-"
  [http-host.pcap]=""
  [all-ok.pcap]="courier.push.apple.com mtalk.google.com api.push.apple.com"
  [one-direction.pcap]="courier.push.apple.com mtalk.google.com api.push.apple.com"
  [midstream.pcap]=""
  [snaplen-sni.pcap]=""          # cut by the snaplen: tshark cannot read it (we must)
  [apns-reset.pcap]="courier.push.apple.com courier.push.apple.com"
  [quic-sni.pcap]="android.googleapis.com"
)

# verify: tshark, with checksum validation on, finds no malformed packet and no bad
# checksum in any file, and sees the expected ClientHellos.
verify() {
  local f name bad=0 expert got
  for f in "$OUT"/*.pcap "$OUT"/*.pcapng; do
    [[ -e $f ]] || continue
    name=$(basename "$f")
    expert=$(tshark -r "$f" -q -z expert,warn \
      -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE 2>&1 || true)
    if grep -Eiq 'malformed|checksum|bad|error' <<<"$expert"; then
      echo "!! $name: tshark complains:" >&2
      echo "$expert" >&2
      bad=1
    fi
    if [[ -v EXPECT_SNI[$name] ]]; then
      got=$(hellos "$f")
      if [[ $got != "${EXPECT_SNI[$name]}" ]]; then
        echo "!! $name: ClientHello SNIs are \"$got\", expected \"${EXPECT_SNI[$name]}\"" >&2
        bad=1
      fi
    fi
  done
  if [[ -e $OUT/http-host.pcap ]] && \
     [[ $(tshark -r "$OUT/http-host.pcap" -Y http.request -T fields -e http.host 2>/dev/null) != ocsp.apple.com ]]; then
    echo "!! http-host.pcap: no request with Host: ocsp.apple.com" >&2
    bad=1
  fi
  return $bad
}

main() {
  need
  WORK=$(mktemp -d /tmp/mdm-scenarios.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$OUT"
  if [[ ${1:-} == --hold ]]; then   # debugging: keep the lab up for $2 seconds
    lab_up; services_up; firewall; log "lab up for ${2:-600} s"
    sleep "${2:-600}" & wait $!; return
  fi
  local todo=("$@") s
  ((${#todo[@]})) || todo=("${ALL_SCENARIOS[@]}")
  log "lab up"
  lab_up
  services_up
  for s in "${todo[@]}"; do
    s=${s//-/_}
    declare -F "scenario_$s" >/dev/null || { echo "unknown scenario $s" >&2; exit 2; }
    log "scenario $s"
    "scenario_$s"
  done
  log "verify"
  if verify; then log "done: all files check out"; else log "FAILED checks"; exit 1; fi
}

# Run only when executed; make-seed-scenarios.sh sources this file for its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
