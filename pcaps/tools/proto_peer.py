#!/usr/bin/env python3
"""proto_peer: tiny clients and servers for the plain-text protocols of the seed scenarios.

Used by pcaps/make-seed-scenarios.sh inside the lab's network namespaces, for the
services that openssl s_server, curl and dnsmasq do not cover. Each exchange is a
small but well-formed instance of the protocol, so tshark dissects it without a
malformed-packet item:

  ldap  TCP 389    simple bindRequest -> bindResponse(success), then unbindRequest
  tds   TCP 1433   TDS 7 PRELOGIN -> PRELOGIN response (encryption not supported)
  ntp   UDP 123    NTPv4 client request -> server reply (stratum 1, refid GPS)
  snmp  UDP 161    SNMPv2c GetRequest sysDescr.0 -> GetResponse
  trap  UDP 162    SNMPv2c SNMPv2-Trap (coldStart); the receiver only listens

    proto_peer.py server PROTO --bind ADDR [--port N]
    proto_peer.py client PROTO --connect ADDR [--port N]

Standard library only.
"""

import argparse
import socket
import struct
import sys
import time

PORTS = {"ldap": 389, "tds": 1433, "ntp": 123, "snmp": 161, "trap": 162}
UDP = {"ntp", "snmp", "trap"}

# ---------------------------------------------------------------- BER (LDAP, SNMP)


def ber_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, value):
    return bytes([tag]) + ber_len(len(value)) + value


def ber_int(tag, n):
    b = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)
    return tlv(tag, b)


def ber_oid(dotted):
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


SEQ, INT, OCTETS, NULL = 0x30, 0x02, 0x04, 0x05

# ---------------------------------------------------------------- LDAP


def ldap_bind_request(msgid, dn, password):
    op = ber_int(INT, 3) + tlv(OCTETS, dn.encode()) + tlv(0x80, password.encode())
    return tlv(SEQ, ber_int(INT, msgid) + tlv(0x60, op))


def ldap_bind_response(msgid):
    op = tlv(0x0A, b"\x00") + tlv(OCTETS, b"") + tlv(OCTETS, b"")
    return tlv(SEQ, ber_int(INT, msgid) + tlv(0x61, op))


def ldap_unbind(msgid):
    return tlv(SEQ, ber_int(INT, msgid) + tlv(0x42, b""))

# ---------------------------------------------------------------- TDS (SQL Server)


def tds_prelogin(tds_type, options):
    """options: list of (token, bytes); returns one TDS packet."""
    table_len = 5 * len(options) + 1
    table, data = bytearray(), bytearray()
    for token, value in options:
        table += struct.pack("!BHH", token, table_len + len(data), len(value))
        data += value
    payload = bytes(table) + b"\xff" + bytes(data)
    header = struct.pack("!BBHHBB", tds_type, 0x01, 8 + len(payload), 0, 1, 0)
    return header + payload


def tds_client_hello():
    return tds_prelogin(0x12, [
        (0x00, struct.pack("!IH", 0x0F000000, 0)),     # VERSION 15.0 (client library)
        (0x01, b"\x02"),                                # ENCRYPTION: not supported
        (0x02, b"\x00"),                                # INSTOPT: default instance
        (0x03, struct.pack("!I", 4242)),                # THREADID
        (0x04, b"\x00"),                                # MARS off
    ])


def tds_server_hello():
    return tds_prelogin(0x04, [
        (0x00, struct.pack("!IH", 0x0F0007D0, 0)),     # VERSION 15.0.2000 (SQL Server 2019)
        (0x01, b"\x02"),
        (0x02, b"\x00"),
        (0x03, b""),
        (0x04, b"\x00"),
    ])

# ---------------------------------------------------------------- NTP

NTP_DELTA = 2208988800


def ntp_ts(t):
    sec = int(t) + NTP_DELTA
    return struct.pack("!II", sec & 0xFFFFFFFF, int((t % 1) * 2**32))


def ntp_request():
    return struct.pack("!BBbb", 0x23, 0, 0, 0) + b"\0" * 36 + ntp_ts(time.time())


def ntp_reply(request):
    now = time.time()
    return (struct.pack("!BBbb", 0x24, 1, request[2] or 6, -20) + struct.pack("!II", 0, 0x10)
            + b"GPS\0" + ntp_ts(now - 16) + request[40:48] + ntp_ts(now) + ntp_ts(now))

# ---------------------------------------------------------------- SNMP

SYSDESCR = "1.3.6.1.2.1.1.1.0"


def snmp_message(pdu_tag, reqid, varbinds, community=b"public"):
    vbs = b"".join(tlv(SEQ, ber_oid(oid) + val) for oid, val in varbinds)
    pdu = tlv(pdu_tag, ber_int(INT, reqid) + ber_int(INT, 0) + ber_int(INT, 0) + tlv(SEQ, vbs))
    return tlv(SEQ, ber_int(INT, 1) + tlv(OCTETS, community) + pdu)


def snmp_get():
    return snmp_message(0xA0, 31337, [(SYSDESCR, tlv(NULL, b""))])


def snmp_response(reqid=31337):
    return snmp_message(0xA2, reqid, [(SYSDESCR, tlv(OCTETS, b"XenMobile Server 10.16"))])


def snmp_trap():
    return snmp_message(0xA7, 4711, [
        ("1.3.6.1.2.1.1.3.0", tlv(0x43, (123456).to_bytes(3, "big"))),        # sysUpTime.0
        ("1.3.6.1.6.3.1.1.4.1.0", ber_oid("1.3.6.1.6.3.1.1.5.1")),           # coldStart
    ])

# ---------------------------------------------------------------- peers


def recv_some(conn):
    conn.settimeout(5)
    return conn.recv(65536)


def serve(proto, bind, port):
    if proto in UDP:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((bind, port))
        while True:
            data, peer = s.recvfrom(65536)
            if proto == "ntp" and len(data) >= 48:
                s.sendto(ntp_reply(data), peer)
            elif proto == "snmp":
                s.sendto(snmp_response(), peer)
            # trap: a receiver does not answer
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((bind, port))
    s.listen(8)
    while True:
        conn, _ = s.accept()
        try:
            if proto == "ldap":
                recv_some(conn)                      # bindRequest
                conn.sendall(ldap_bind_response(1))
                recv_some(conn)                      # unbindRequest, then the client closes
            elif proto == "tds":
                recv_some(conn)
                conn.sendall(tds_server_hello())
                recv_some(conn)                      # the client closes
        except OSError:
            pass
        finally:
            conn.close()


def client(proto, addr, port):
    if proto in UDP:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((addr, port))
        s.send({"ntp": ntp_request, "snmp": snmp_get, "trap": snmp_trap}[proto]())
        if proto != "trap":
            s.settimeout(5)
            s.recv(65536)
        s.close()
        return
    s = socket.create_connection((addr, port), timeout=10)
    if proto == "ldap":
        s.sendall(ldap_bind_request(1, "CN=svc-mdm,OU=Service Accounts,DC=corp,DC=example,DC=com",
                                    "lab-only"))
        recv_some(s)
        s.sendall(ldap_unbind(2))
    elif proto == "tds":
        s.sendall(tds_client_hello())
        recv_some(s)
    time.sleep(0.1)
    s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["server", "client"])
    ap.add_argument("proto", choices=sorted(PORTS))
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--connect")
    ap.add_argument("--port", type=int)
    a = ap.parse_args()
    port = a.port or PORTS[a.proto]
    if a.mode == "server":
        serve(a.proto, a.bind, port)
    else:
        if not a.connect:
            sys.exit("client needs --connect")
        client(a.proto, a.connect, port)


if __name__ == "__main__":
    main()
