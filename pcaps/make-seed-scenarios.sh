#!/usr/bin/env bash
# make-seed-scenarios.sh — record one scenario capture per seed system into pcaps/seeds/.
#
# The same method as make-scenarios.sh (whose functions it sources: veth, firewall,
# tls, record, finish, ...): real traffic between network namespaces, through a real
# nftables forward chain, TLS by openssl s_client/s_server, DNS by dnsmasq and dig,
# HTTP by curl and python's http.server, LDAP, TDS (SQL Server), NTP and SNMP by
# tools/proto_peer.py; then tools/pcapedit.py rewrites the documentation addresses to
# realistic ones and moves the first packet to 2024-06-03T09:00:00Z.
#
#   seed-iphone   (198.51.100.10) ─┐                ┌─ seed-mdm    (.133) MDM server
#   seed-android  (198.51.100.11) ─┼─ br-lan ─ seed-fw ─ br-srv ─┼─ seed-gw     (.134) Citrix Gateway
#   seed-mac      (198.51.100.12) ─┘   .1   (router, │   .129    ├─ seed-ldap   (.140) AD / LDAP / GC
#                                               nftables,       ├─ seed-sql    (.141) SQL Server
#                                               dnsmasq)        ├─ seed-ndes   (.142) NDES / SCEP
#                                                  │            ├─ seed-portal (.145) BigFix plug-in portal
#                                                wan0           └─ seed-admin  (.146) admin / SNMP manager
#                                                  │
#                                               seed-cloud (203.0.113.x: Apple, Google, Microsoft, Citrix ADS, a shop)
#
# Two segments, so the recording is two span sessions merged (mergecap): br-lan
# whole, and br-srv without the packets that involve the LAN (198.51.100.0/25), which
# br-lan already holds; every packet is in the file once. Flows between two servers
# are bridged inside br-srv (seen because tcpdump puts the bridge in promiscuous
# mode); the firewall filters what the router forwards (LAN <-> servers <-> cloud).
#
#     sudo pcaps/make-seed-scenarios.sh                  # all five, into pcaps/seeds/
#     sudo pcaps/make-seed-scenarios.sh bigfix-server    # only this one
#     sudo OUT=/tmp/x pcaps/make-seed-scenarios.sh       # somewhere else
#     sudo pcaps/make-seed-scenarios.sh --hold 600       # keep the lab up
#
# Needs what make-scenarios.sh needs (mergecap comes with tshark). Live traffic only
# uses 198.51.100.0/24 and 203.0.113.0/24 inside the namespaces made here (deleted on
# exit). pcaps/seeds/README.md describes each file.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/seeds}
# shellcheck source=make-scenarios.sh
source "$HERE/make-scenarios.sh"      # functions only: its main runs when executed
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEER="python3 $HERE/tools/proto_peer.py"

NS_FW=seed-fw NS_CLOUD=seed-cloud
NS_IPHONE=seed-iphone NS_ANDROID=seed-android NS_MAC=seed-mac
NS_MDM=seed-mdm NS_GW=seed-gw NS_LDAP=seed-ldap NS_SQL=seed-sql NS_NDES=seed-ndes
NS_PORTAL=seed-portal NS_ADMIN=seed-admin
LAN_NS=("$NS_IPHONE" "$NS_ANDROID" "$NS_MAC")
SRV_NS=("$NS_MDM" "$NS_GW" "$NS_LDAP" "$NS_SQL" "$NS_NDES" "$NS_PORTAL" "$NS_ADMIN")
ALL_NS=("${LAN_NS[@]}" "${SRV_NS[@]}" "$NS_FW" "$NS_CLOUD")

# Lab addresses. LAN 198.51.100.0/25, server zone 198.51.100.128/25.
LAN_GW=198.51.100.1 SRV_GW=198.51.100.129 WAN_GW=203.0.113.1
IPHONE=198.51.100.10 ANDROID=198.51.100.11 MAC=198.51.100.12
MDM=198.51.100.133 GW=198.51.100.134 LDAP=198.51.100.140 SQL=198.51.100.141
NDES=198.51.100.142 PORTAL=198.51.100.145 ADMIN=198.51.100.146
COURIER=203.0.113.20 GATEWAY=203.0.113.21 APIPUSH=203.0.113.22 FEEDBACK=203.0.113.23
MTALK=203.0.113.30 FCM=203.0.113.32 PLAY=203.0.113.33 GAPIS=203.0.113.34
ENROLL=203.0.113.40 VPP=203.0.113.42 DEPDEV=203.0.113.43 IPROFILES=203.0.113.44
ALBERT=203.0.113.45 TIME=203.0.113.46 CAPTIVE=203.0.113.47
INTUNE_ENROLL=203.0.113.50 MSLOGIN=203.0.113.51 INTUNE_FEF=203.0.113.52
ADS=203.0.113.60 SHOP=203.0.113.99
CLOUD_ADDRS=($COURIER $GATEWAY $APIPUSH $FEEDBACK $MTALK $FCM $PLAY $GAPIS $ENROLL $VPP
             $DEPDEV $IPROFILES $ALBERT $TIME $CAPTIVE $INTUNE_ENROLL $MSLOGIN $INTUNE_FEF
             $ADS $SHOP)

# ... and what they become in the files (pcaps/seeds/README.md has the table).
MAP=(
  --map "$LAN_GW=10.20.1.1" --map "$SRV_GW=10.20.5.1" --map "$WAN_GW=192.0.2.1"
  --map "$IPHONE=10.20.1.10" --map "$ANDROID=10.20.1.11" --map "$MAC=10.20.1.12"
  --map "$MDM=10.20.5.10" --map "$GW=10.20.5.20" --map "$LDAP=10.20.5.30"
  --map "$SQL=10.20.5.31" --map "$NDES=10.20.5.32" --map "$PORTAL=10.20.5.40"
  --map "$ADMIN=10.20.5.50"
  --map "$COURIER=17.57.146.20"        # courier.push.apple.com
  --map "$GATEWAY=17.188.166.21"       # gateway.push.apple.com (legacy)
  --map "$APIPUSH=17.188.180.22"       # api.push.apple.com
  --map "$FEEDBACK=17.188.166.23"      # feedback.push.apple.com (legacy)
  --map "$MTALK=142.250.102.188"       # mtalk.google.com
  --map "$FCM=142.250.185.74"          # fcm.googleapis.com
  --map "$PLAY=142.250.185.78"         # play.google.com
  --map "$GAPIS=142.250.185.110"       # apis.google.com
  --map "$ENROLL=17.32.194.40"         # mdmenrollment.apple.com
  --map "$VPP=17.154.66.42"            # vpp.itunes.apple.com
  --map "$DEPDEV=17.32.194.43"         # deviceenrollment.apple.com
  --map "$IPROFILES=17.32.194.44"      # iprofiles.apple.com
  --map "$ALBERT=17.32.194.45"         # albert.apple.com
  --map "$TIME=17.253.14.125"          # time.apple.com
  --map "$CAPTIVE=17.253.85.204"       # captive.apple.com
  --map "$INTUNE_ENROLL=52.168.117.50" # enterpriseenrollment.manage.microsoft.com
  --map "$MSLOGIN=20.190.151.68"       # login.microsoftonline.com
  --map "$INTUNE_FEF=52.168.117.52"    # fef.msua06.manage.microsoft.com
  --map "$ADS=13.32.145.60"            # discovery.cem.cloud.us (CloudFront)
  --map "$SHOP=192.0.2.80"             # www.example-shop.test (outside the catalog)
)

# ------------------------------------------------------------------ the lab

lab_up() {
  local ns
  for ns in "${ALL_NS[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    quiet_ipv6 "$ns"
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    in_ns "$ns" ip link set lo up
    in_ns "$ns" sysctl -qw net.ipv4.tcp_syn_retries=2
    in_ns "$ns" sysctl -qw net.ipv4.tcp_syn_linear_timeouts=0 2>/dev/null || true
  done
  in_ns $NS_FW sysctl -qw net.ipv4.ip_forward=1
  in_ns $NS_FW sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
    net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 2>/dev/null || true
  in_ns $NS_FW ip link add br-lan address 00:1b:54:20:01:01 type bridge
  in_ns $NS_FW ip link add br-srv address 00:1b:54:20:05:01 type bridge

  # dev NS PORT BRIDGE MAC ADDR GW
  dev() {
    veth dev0 "$1" "$2" $NS_FW "$4"
    in_ns $NS_FW ip link set "$2" master "$3" up
    in_ns "$1" ip addr add "$5/25" dev dev0
    in_ns "$1" ip link set dev0 up
    in_ns "$1" ip route add default via "$6"
  }
  dev $NS_IPHONE  p-iphone  br-lan f0:18:98:20:01:10 $IPHONE  $LAN_GW   # Apple
  dev $NS_ANDROID p-android br-lan 8c:f5:a3:20:01:11 $ANDROID $LAN_GW   # Samsung
  dev $NS_MAC     p-mac     br-lan a4:83:e7:20:01:12 $MAC     $LAN_GW   # Apple (MacBook)
  dev $NS_MDM     p-mdm     br-srv 00:50:56:20:05:10 $MDM     $SRV_GW   # VMware VMs
  dev $NS_GW      p-gw      br-srv 00:50:56:20:05:20 $GW      $SRV_GW
  dev $NS_LDAP    p-ldap    br-srv 00:50:56:20:05:30 $LDAP    $SRV_GW
  dev $NS_SQL     p-sql     br-srv 00:50:56:20:05:31 $SQL     $SRV_GW
  dev $NS_NDES    p-ndes    br-srv 00:50:56:20:05:32 $NDES    $SRV_GW
  dev $NS_PORTAL  p-portal  br-srv 00:50:56:20:05:40 $PORTAL  $SRV_GW
  dev $NS_ADMIN   p-admin   br-srv 00:50:56:20:05:50 $ADMIN   $SRV_GW
  veth wan0 $NS_FW cloud0 $NS_CLOUD 02:00:5e:10:02:01
  in_ns $NS_CLOUD ip link set cloud0 address 02:00:5e:20:00:01
  local br
  for br in br-lan br-srv; do
    in_ns $NS_FW ethtool -K $br tx off >/dev/null 2>&1 || true
    in_ns $NS_FW ip link set $br up
  done
  in_ns $NS_FW ip addr add $LAN_GW/25 dev br-lan
  in_ns $NS_FW ip addr add $SRV_GW/25 dev br-srv
  in_ns $NS_FW ip addr add $WAN_GW/24 dev wan0
  in_ns $NS_FW ip link set wan0 up
  local a
  for a in "${CLOUD_ADDRS[@]}"; do in_ns $NS_CLOUD ip addr add "$a/24" dev cloud0; done
  in_ns $NS_CLOUD ip link set cloud0 up
  in_ns $NS_CLOUD ip route add default via $WAN_GW
}

svc() {  # svc NS CMD...: a service in a namespace, killed on exit
  ip netns exec "$@" </dev/null >/dev/null 2>&1 &
  PIDS+=("$!")
}

tls_server() {  # tls_server NS PORT...
  local ns=$1 port; shift
  for port in "$@"; do
    svc "$ns" openssl s_server -quiet -rev -accept "0.0.0.0:$port" \
      -cert "$WORK/cert.pem" -key "$WORK/key.pem"
  done
}

listening() {  # listening NS tcp|udp PORT
  in_ns "$1" ss -ln --"$2" | grep -q ":$3 "
}

services_up() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=lab.example" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
  # The cloud: every vendor service on its ports, told apart by address (DNS).
  tls_server $NS_CLOUD 443 2195 2196 2197 5223 5228
  mkdir -p "$WORK/www"
  printf '<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>\n' \
    >"$WORK/www/hotspot-detect.html"
  svc $NS_CLOUD python3 -m http.server 80 --bind 0.0.0.0 --directory "$WORK/www"
  svc $NS_CLOUD $PEER server ntp --bind $TIME
  # The site's servers.
  tls_server $NS_MDM 443 8443 5671
  svc $NS_MDM $PEER server snmp --bind $MDM
  tls_server $NS_GW 443
  svc $NS_LDAP $PEER server ldap --bind $LDAP
  tls_server $NS_LDAP 636 3269
  svc $NS_SQL $PEER server tds --bind $SQL
  mkdir -p "$WORK/ndes/certsrv/mscep"
  printf 'POSTPKIOperation\nGetNextCACert\nRenewal\nSHA-256\nAES\n' \
    >"$WORK/ndes/certsrv/mscep/mscep.dll"
  svc $NS_NDES python3 -m http.server 8080 --bind $NDES --directory "$WORK/ndes"
  svc $NS_ADMIN $PEER server trap --bind $ADMIN

  # The site's resolver on the router, for both segments. CNAME chains as the real
  # services have them; internal names for the site's servers.
  svc $NS_FW dnsmasq --conf-file=/dev/null --no-daemon --no-resolv --no-hosts \
    --bind-interfaces --listen-address=$LAN_GW --listen-address=$SRV_GW \
    --except-interface=lo --user=root --log-facility=/dev/null \
    --cname=courier.push.apple.com,courier-push-apple.com.akadns.net \
    --host-record=courier-push-apple.com.akadns.net,$COURIER \
    --host-record=gateway.push.apple.com,$GATEWAY \
    --host-record=feedback.push.apple.com,$FEEDBACK \
    --cname=api.push.apple.com,api-vs.push-apple.com.akadns.net \
    --host-record=api-vs.push-apple.com.akadns.net,$APIPUSH \
    --cname=mtalk.google.com,mobile-gtalk.l.google.com \
    --host-record=mobile-gtalk.l.google.com,$MTALK \
    --host-record=fcm.googleapis.com,$FCM \
    --host-record=play.google.com,$PLAY \
    --host-record=apis.google.com,$GAPIS \
    --cname=mdmenrollment.apple.com,mdmenrollment.apple.com.akadns.net \
    --host-record=mdmenrollment.apple.com.akadns.net,$ENROLL \
    --host-record=vpp.itunes.apple.com,$VPP \
    --host-record=deviceenrollment.apple.com,$DEPDEV \
    --host-record=iprofiles.apple.com,$IPROFILES \
    --host-record=albert.apple.com,$ALBERT \
    --cname=time.apple.com,time.g.aaplimg.com \
    --host-record=time.g.aaplimg.com,$TIME \
    --cname=captive.apple.com,captive.g.aaplimg.com \
    --host-record=captive.g.aaplimg.com,$CAPTIVE \
    --host-record=enterpriseenrollment.manage.microsoft.com,$INTUNE_ENROLL \
    --cname=login.microsoftonline.com,login.mso.msidentity.com \
    --host-record=login.mso.msidentity.com,$MSLOGIN \
    --host-record=fef.msua06.manage.microsoft.com,$INTUNE_FEF \
    --host-record=discovery.cem.cloud.us,$ADS \
    --host-record=www.example-shop.test,$SHOP \
    --host-record=zenworks.example.com,$MDM \
    --host-record=bigfix.example.com,$MDM \
    --host-record=xms.example.com,$MDM \
    --host-record=citrix.example.com,$GW \
    --host-record=dc01.corp.example.com,$LDAP \
    --host-record=sql01.corp.example.com,$SQL \
    --host-record=ndes.corp.example.com,$NDES

  local i
  for i in $(seq 80); do
    if listening $NS_CLOUD tcp 5228 && listening $NS_CLOUD tcp 80 && listening $NS_CLOUD udp 123 \
       && listening $NS_MDM tcp 5671 && listening $NS_MDM udp 161 && listening $NS_GW tcp 443 \
       && listening $NS_LDAP tcp 389 && listening $NS_LDAP tcp 3269 && listening $NS_SQL tcp 1433 \
       && listening $NS_NDES tcp 8080 && listening $NS_ADMIN udp 162 \
       && listening $NS_FW udp 53; then
      return 0
    fi
    sleep 0.1
  done
  echo "services did not start" >&2
  exit 1
}

# ------------------------------------------------------------------ traffic

# resolve NS NAME: ask the router's resolver on the host's own segment.
resolve() {
  local server=$SRV_GW ns
  for ns in "${LAN_NS[@]}"; do [[ $1 == "$ns" ]] && server=$LAN_GW; done
  in_ns "$1" dig +tries=1 +time=2 +short "@$server" "$2" A | tail -n1
}

# name NS NAME: resolve and check the answer is the expected lab address.
name() {
  local got
  got=$(resolve "$1" "$2")
  [[ -n $got ]] || { echo "$2 did not resolve" >&2; exit 1; }
  printf '%s' "$got"
}

# peer NS CLIENT-ARGS...: one proto_peer client exchange.
peer() { local ns=$1; shift; in_ns "$ns" timeout 15 $PEER client "$@"; }

# http NS URL ADDR PORT [curl args]: one HTTP GET with the URL's Host, to ADDR.
http() {
  local ns=$1 url=$2 addr=$3 port=$4; shift 4
  local host=${url#http://}; host=${host%%[:/]*}
  in_ns "$ns" curl -sS -o /dev/null --max-time 10 --connect-to "$host:$port:$addr:$port" "$@" "$url"
}

# Both segments, merged (see the header). record_both NAME; then stop_both.
record_both() {
  record "$1.lan" "$V4" $NS_FW br-lan; REC_LAN=$REC_PID
  record "$1.srv" "($V4) and not net 198.51.100.0/25" $NS_FW br-srv; REC_SRV=$REC_PID
}
stop_both() {
  stop "$REC_LAN"; stop "$REC_SRV"
  mergecap -F pcap -w "$WORK/$1.raw.pcap" "$WORK/$1.lan.raw.pcap" "$WORK/$1.srv.raw.pcap"
  finish "$1"
}

# ------------------------------------------------------------------ scenarios

# ZENworks MDM server (seed 000): devices enroll and check in on 443; the server
# uses the APNs provider API (443 and 2197), FCM, the Apple enrollment and Apps and
# Books APIs; devices keep their push channels (5223, 5228). No firewall rule.
scenario_zenworks_server() {
  firewall
  record_both zenworks-server
  local a
  a=$(name $NS_IPHONE zenworks.example.com)
  tls $NS_IPHONE "$a" 443 -servername zenworks.example.com -alpn http/1.1
  a=$(name $NS_ANDROID zenworks.example.com)
  tls $NS_ANDROID "$a" 443 -servername zenworks.example.com -alpn http/1.1
  a=$(name $NS_MDM api.push.apple.com)
  tls $NS_MDM "$a" 443 -servername api.push.apple.com -alpn h2
  tls $NS_MDM "$a" 2197 -servername api.push.apple.com -alpn h2
  a=$(name $NS_MDM fcm.googleapis.com)
  tls $NS_MDM "$a" 443 -servername fcm.googleapis.com -alpn h2
  a=$(name $NS_MDM mdmenrollment.apple.com)
  tls $NS_MDM "$a" 443 -servername mdmenrollment.apple.com -alpn http/1.1
  a=$(name $NS_MDM vpp.itunes.apple.com)
  tls $NS_MDM "$a" 443 -servername vpp.itunes.apple.com -alpn http/1.1
  a=$(name $NS_IPHONE courier.push.apple.com)
  tls $NS_IPHONE "$a" 5223 -servername courier.push.apple.com -alpn apns-security-v3
  a=$(name $NS_ANDROID mtalk.google.com)
  tls $NS_ANDROID "$a" 5228 -servername mtalk.google.com
  stop_both zenworks-server
}

# BigFix MDM server (seed 001): devices on 443, the plug-in portal's AMQP (TLS) on
# 5671 and REST on 8443, the WebUI/admin host on 8443, LDAPS to AD, SCEP to NDES on
# 8080, APNs through the legacy binary gateway 2195 and the HTTP/2 API on 443, a Mac
# to APNs 5223. No firewall rule.
scenario_bigfix_server() {
  firewall
  record_both bigfix-server
  local a
  a=$(name $NS_IPHONE bigfix.example.com)
  tls $NS_IPHONE "$a" 443 -servername bigfix.example.com -alpn http/1.1
  a=$(name $NS_ANDROID bigfix.example.com)
  tls $NS_ANDROID "$a" 443 -servername bigfix.example.com -alpn http/1.1
  a=$(name $NS_PORTAL bigfix.example.com)
  tls $NS_PORTAL "$a" 5671 -servername bigfix.example.com -alpn amqp
  tls $NS_PORTAL "$a" 8443 -servername bigfix.example.com -alpn http/1.1
  a=$(name $NS_ADMIN bigfix.example.com)
  tls $NS_ADMIN "$a" 8443 -servername bigfix.example.com -alpn http/1.1
  a=$(name $NS_MDM dc01.corp.example.com)
  tls $NS_MDM "$a" 636 -servername dc01.corp.example.com
  a=$(name $NS_MDM ndes.corp.example.com)
  http $NS_MDM "http://ndes.corp.example.com:8080/certsrv/mscep/mscep.dll?operation=GetCACaps&message=bigfix" \
    "$a" 8080 -A 'BigFix-MDM-SCEP/3.0'
  a=$(name $NS_MDM gateway.push.apple.com)
  tls $NS_MDM "$a" 2195 -servername gateway.push.apple.com
  a=$(name $NS_MDM api.push.apple.com)
  tls $NS_MDM "$a" 443 -servername api.push.apple.com -alpn h2
  a=$(name $NS_MAC courier.push.apple.com)
  tls $NS_MAC "$a" 5223 -servername courier.push.apple.com -alpn apns-security-v3
  stop_both bigfix-server
}

# An iPhone enrolling in Intune through Automated Device Enrollment (Setup
# Assistant): captive-portal probe, NTP, activation, ADE lookup and profile,
# Entra ID sign-in, Intune enrollment, APNs, first Intune check-in. No firewall rule.
scenario_intune_iphone_enroll() {
  firewall
  record_both intune-iphone-enroll
  local a
  a=$(name $NS_IPHONE captive.apple.com)
  http $NS_IPHONE http://captive.apple.com/hotspot-detect.html "$a" 80 \
    -A 'CaptiveNetworkSupport-481.100.1 wispr'
  a=$(name $NS_IPHONE time.apple.com)
  peer $NS_IPHONE ntp --connect "$a"
  a=$(name $NS_IPHONE albert.apple.com)
  tls $NS_IPHONE "$a" 443 -servername albert.apple.com -alpn http/1.1
  a=$(name $NS_IPHONE deviceenrollment.apple.com)
  tls $NS_IPHONE "$a" 443 -servername deviceenrollment.apple.com -alpn http/1.1
  a=$(name $NS_IPHONE iprofiles.apple.com)
  tls $NS_IPHONE "$a" 443 -servername iprofiles.apple.com -alpn http/1.1
  a=$(name $NS_IPHONE login.microsoftonline.com)
  tls $NS_IPHONE "$a" 443 -servername login.microsoftonline.com -alpn h2
  a=$(name $NS_IPHONE enterpriseenrollment.manage.microsoft.com)
  tls $NS_IPHONE "$a" 443 -servername enterpriseenrollment.manage.microsoft.com -alpn http/1.1
  a=$(name $NS_IPHONE courier.push.apple.com)
  tls $NS_IPHONE "$a" 5223 -servername courier.push.apple.com -alpn apns-security-v3
  a=$(name $NS_IPHONE fef.msua06.manage.microsoft.com)
  tls $NS_IPHONE "$a" 443 -servername fef.msua06.manage.microsoft.com -alpn http/1.1
  stop_both intune-iphone-enroll
}

# XenMobile 10.x (seed 003, 2016): legacy binary APNs (2195, feedback 2196); iOS
# enrollment on 8443 refused by the firewall (TCP reset), Android enrollment on 443
# works; SQL Server 1433 and LDAP 389 from XenMobile; the iPhone also talks to a
# shop outside the catalog.
scenario_xenmobile10_legacy_apns() {
  firewall "ip daddr $MDM tcp dport 8443 counter reject with tcp reset"
  record_both xenmobile10-legacy-apns
  local a
  a=$(name $NS_MDM gateway.push.apple.com)
  tls $NS_MDM "$a" 2195 -servername gateway.push.apple.com
  a=$(name $NS_MDM feedback.push.apple.com)
  tls $NS_MDM "$a" 2196 -servername feedback.push.apple.com
  a=$(name $NS_IPHONE xms.example.com)
  tls_blocked $NS_IPHONE "$a" 8443 -servername xms.example.com -alpn http/1.1
  pause 1
  tls_blocked $NS_IPHONE "$a" 8443 -servername xms.example.com -alpn http/1.1
  a=$(name $NS_ANDROID xms.example.com)
  tls $NS_ANDROID "$a" 443 -servername xms.example.com -alpn http/1.1
  a=$(name $NS_MDM sql01.corp.example.com)
  peer $NS_MDM tds --connect "$a"
  a=$(name $NS_MDM dc01.corp.example.com)
  peer $NS_MDM ldap --connect "$a"
  a=$(name $NS_IPHONE www.example-shop.test)
  tls $NS_IPHONE "$a" 443 -servername www.example-shop.test -alpn h2,http/1.1
  stop_both xenmobile10-legacy-apns
}

# Current XenMobile Server behind a Citrix Gateway (seed 004): devices to the gateway
# on 443 (and, from the LAN, Android directly to XenMobile on 443), the gateway to
# XenMobile on 8443 and 443; XenMobile to SQL 1433, LDAPS 636
# and the global catalog 3269, APNs 443 and 2197, Google Play; the SNMP manager polls
# XenMobile (161) and receives a trap (162); the admin's browser loads the Managed
# Google Play iframe; Secure Hub on Android reaches the AutoDiscovery service.
scenario_xenmobile_gateway() {
  firewall
  record_both xenmobile-gateway
  local a
  a=$(name $NS_ANDROID discovery.cem.cloud.us)
  tls $NS_ANDROID "$a" 443 -servername discovery.cem.cloud.us -alpn http/1.1
  a=$(name $NS_IPHONE citrix.example.com)
  tls $NS_IPHONE "$a" 443 -servername citrix.example.com -alpn http/1.1
  a=$(name $NS_ANDROID citrix.example.com)
  tls $NS_ANDROID "$a" 443 -servername citrix.example.com -alpn http/1.1
  a=$(name $NS_ANDROID xms.example.com)   # on the LAN, Android enrolls with XenMobile directly
  tls $NS_ANDROID "$a" 443 -servername xms.example.com -alpn http/1.1
  a=$(name $NS_GW xms.example.com)
  tls $NS_GW "$a" 8443 -servername xms.example.com -alpn http/1.1
  tls $NS_GW "$a" 443 -servername xms.example.com -alpn http/1.1
  a=$(name $NS_MDM sql01.corp.example.com)
  peer $NS_MDM tds --connect "$a"
  a=$(name $NS_MDM dc01.corp.example.com)
  tls $NS_MDM "$a" 636 -servername dc01.corp.example.com
  tls $NS_MDM "$a" 3269 -servername dc01.corp.example.com
  a=$(name $NS_MDM api.push.apple.com)
  tls $NS_MDM "$a" 443 -servername api.push.apple.com -alpn h2
  tls $NS_MDM "$a" 2197 -servername api.push.apple.com -alpn h2
  a=$(name $NS_MDM play.google.com)
  tls $NS_MDM "$a" 443 -servername play.google.com -alpn h2,http/1.1
  peer $NS_ADMIN snmp --connect $MDM
  peer $NS_MDM trap --connect $ADMIN
  a=$(name $NS_ADMIN play.google.com)
  tls $NS_ADMIN "$a" 443 -servername play.google.com -alpn h2,http/1.1
  a=$(name $NS_ADMIN apis.google.com)
  tls $NS_ADMIN "$a" 443 -servername apis.google.com -alpn h2,http/1.1
  stop_both xenmobile-gateway
}

ALL_SCENARIOS=(zenworks_server bigfix_server intune_iphone_enroll xenmobile10_legacy_apns
               xenmobile_gateway)

# ------------------------------------------------------------------ checks

declare -A EXPECT_SNI=(
  [zenworks-server.pcap]="zenworks.example.com zenworks.example.com api.push.apple.com api.push.apple.com fcm.googleapis.com mdmenrollment.apple.com vpp.itunes.apple.com courier.push.apple.com mtalk.google.com"
  [bigfix-server.pcap]="bigfix.example.com bigfix.example.com bigfix.example.com bigfix.example.com bigfix.example.com dc01.corp.example.com gateway.push.apple.com api.push.apple.com courier.push.apple.com"
  [intune-iphone-enroll.pcap]="albert.apple.com deviceenrollment.apple.com iprofiles.apple.com login.microsoftonline.com enterpriseenrollment.manage.microsoft.com courier.push.apple.com fef.msua06.manage.microsoft.com"
  [xenmobile10-legacy-apns.pcap]="gateway.push.apple.com feedback.push.apple.com xms.example.com www.example-shop.test"
  [xenmobile-gateway.pcap]="discovery.cem.cloud.us citrix.example.com citrix.example.com xms.example.com xms.example.com xms.example.com dc01.corp.example.com dc01.corp.example.com api.push.apple.com api.push.apple.com play.google.com play.google.com apis.google.com"
)

# seed_verify: tshark with checksum validation finds nothing malformed or bad, the
# ClientHellos are the expected ones, and the plain-text protocols dissect.
seed_verify() {
  local f name bad=0 expert got
  for f in "$OUT"/*.pcap; do
    [[ -e $f ]] || continue
    name=$(basename "$f")
    expert=$(tshark -r "$f" -q -z expert,warn \
      -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE 2>&1 || true)
    if grep -Eiq 'malformed|checksum|bad|error' <<<"$expert"; then
      echo "!! $name: tshark complains:" >&2; echo "$expert" >&2; bad=1
    fi
    if [[ -v EXPECT_SNI[$name] ]]; then
      got=$(hellos "$f")
      if [[ $got != "${EXPECT_SNI[$name]}" ]]; then
        echo "!! $name: ClientHello SNIs are \"$got\", expected \"${EXPECT_SNI[$name]}\"" >&2
        bad=1
      fi
    fi
  done
  check() {  # check FILE FILTER MIN: at least MIN packets match a display filter
    [[ -e $OUT/$1 ]] || return 0
    local n
    n=$(tshark -r "$OUT/$1" -Y "$2" 2>/dev/null | wc -l)
    if ((n < $3)); then echo "!! $1: $n packets match '$2', expected >= $3" >&2; bad=1; fi
  }
  check xenmobile10-legacy-apns.pcap 'tcp.dstport == 8443 && tcp.flags.syn == 1 && tcp.flags.ack == 0' 2
  check xenmobile10-legacy-apns.pcap 'tcp.srcport == 8443 && tcp.flags.reset == 1' 2
  check xenmobile10-legacy-apns.pcap 'tds.type == 0x12' 1
  check xenmobile10-legacy-apns.pcap 'ldap.protocolOp == 1 && ldap.resultCode == 0' 1
  check xenmobile-gateway.pcap 'tds.type == 0x04' 1
  check xenmobile-gateway.pcap 'snmp.get_response_element' 1
  check xenmobile-gateway.pcap 'snmp.snmpV2_trap_element' 1
  check intune-iphone-enroll.pcap 'ntp.flags.mode == 4' 1
  check intune-iphone-enroll.pcap 'http.host == "captive.apple.com"' 1
  check bigfix-server.pcap 'http.request.uri contains "GetCACaps"' 1
  return $bad
}

seed_main() {
  need
  command -v mergecap >/dev/null || { echo "missing mergecap (tshark/wireshark-common)" >&2; exit 1; }
  WORK=$(mktemp -d /tmp/mdm-seed-scenarios.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$OUT"
  if [[ ${1:-} == --hold ]]; then
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
  if seed_verify; then log "done: all files check out"; else log "FAILED checks"; exit 1; fi
}

seed_main "$@"
