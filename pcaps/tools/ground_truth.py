#!/usr/bin/env python3
"""ground_truth: what tshark sees in each scenario capture, as markdown for the README.

    python3 pcaps/tools/ground_truth.py pcaps/*.pcap pcaps/*.pcapng

Per file: the ClientHellos (TLS over TCP, reassembled even out of order, and QUIC
Initial) with frame, addresses, ports and SNI; the DNS answers; and one line per
TCP/UDP flow with its first frame, packets each way, SYN/SYN-ACK/RST counts, ICMP
errors quoting it and the outcome named as in SPEC.md section 3.  Everything comes from
tshark fields (Wireshark's dissectors), so it is independent of mdmaudit's decoders;
only the outcome column applies the spec's definitions to those fields.
"""

import os
import subprocess
import sys

PREFS = ["-o", "tcp.reassemble_out_of_order:TRUE", "-o", "tcp.analyze_sequence_numbers:TRUE"]


def tshark(path, dfilter, fields):
    cmd = ["tshark", "-r", path, *PREFS, "-Y", dfilter, "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def first(value):
    return value.split(",")[0] if value else ""


def addr(v4, v6):
    return first(v4) or first(v6)


def hellos(path):
    rows = tshark(path, "tls.handshake.type == 1",
                  ["frame.number", "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport",
                   "ip.dst", "ipv6.dst", "tcp.dstport", "udp.dstport",
                   "tls.handshake.extensions_server_name"])
    out = []
    for r in rows:
        proto = "udp" if r[4] else "tcp"
        out.append((r[0], addr(r[1], r[2]), r[3] or r[4], addr(r[5], r[6]), r[7] or r[8],
                    proto, r[9] or "(none)"))
    return out


def dns_answers(path):
    rows = tshark(path, "dns.flags.response == 1",
                  ["frame.number", "dns.qry.name", "dns.cname", "dns.a", "dns.aaaa"])
    return [(r[0], r[1], " -> ".join(x for x in [r[2].replace(",", " -> ")] if x),
             ", ".join(x for x in (r[3], r[4]) if x)) for r in rows]


def flows(path):
    """TCP and UDP flows (DNS included), keyed on the initiator's view."""
    rows = tshark(path, "(tcp or udp or icmp or icmpv6) and not arp",
                  ["frame.number", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
                   "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
                   "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.reset",
                   "icmp.type", "icmpv6.type", "icmp.code", "icmpv6.code", "tcp.len", "udp.length"])
    table = {}
    order = []
    for r in rows:
        frame = r[0]
        icmp_type = first(r[12]) or first(r[13])
        if icmp_type in ("3", "1"):          # an ICMP/ICMPv6 error quoting a packet
            # The quoted packet's fields come second in each aggregated list.
            src = (r[1].split(",") + [""])[1] or (r[2].split(",") + [""])[1]
            dst = (r[3].split(",") + [""])[1] or (r[4].split(",") + [""])[1]
            sport, dport = first(r[5]) or first(r[7]), first(r[6]) or first(r[8])
            proto = "tcp" if r[5] else "udp"
            key = (proto, src, sport, dst, dport)
            if key in table:
                code = first(r[14]) or first(r[15])
                table[key]["icmp"].append(f"{frame}:type {icmp_type} code {code}")
            continue
        if icmp_type:
            continue
        src, dst = addr(r[1], r[2]), addr(r[3], r[4])
        if r[5]:
            proto, sport, dport = "tcp", r[5], r[6]
        else:
            proto, sport, dport = "udp", r[7], r[8]
        fwd, rev = (proto, src, sport, dst, dport), (proto, dst, dport, src, sport)
        if fwd in table:
            f, d = table[fwd], "a"
        elif rev in table:
            f, d = table[rev], "b"
        else:
            f = table[fwd] = dict(first=frame, key=fwd, a=0, b=0, syn=0, synack=0, rst_b=0,
                                  rst_a=0, icmp=[], data_a=0, data_b=0,
                                  syn_first=(r[9] == "1" and r[10] == "0"))
            order.append(fwd)
            d = "a"
        f[d] += 1
        if proto == "tcp":
            syn, ack, rst = r[9] == "1", r[10] == "1", r[11] == "1"
            if syn and not ack and d == "a":
                f["syn"] += 1
            if syn and ack and d == "b":
                f["synack"] += 1
            if rst:
                f["rst_" + d] += 1
            if r[16] and int(r[16]) > 0:
                f["data_" + d] += 1
    out = []
    for key in order:
        f = table[key]
        proto = key[0]
        if proto == "udp":
            outcome = "answered" if f["b"] else "unanswered"
        elif not f["syn_first"]:
            outcome = "midstream" if f["data_a"] and f["data_b"] else "midstream (one way)"
        elif f["synack"]:
            outcome = "reset" if f["rst_a"] or f["rst_b"] else "established"
            if not f["b"] - f["synack"] and not f["rst_b"]:
                outcome += " (one way)"
        elif f["rst_b"]:
            outcome = "refused"
        elif f["icmp"]:
            outcome = "unreachable"
        elif not f["b"] and f["a"] > f["syn"]:
            outcome = "one way: SYN then ACKs/data, nothing back"
        elif not f["b"]:
            outcome = "unanswered"
        else:
            outcome = "?"
        out.append((f["first"], proto, endpoint(key[1], key[2]), endpoint(key[3], key[4]),
                    f["a"], f["b"], f["syn"], f["synack"], f["rst_a"] + f["rst_b"],
                    " ".join(f["icmp"]) or "-", outcome))
    return out


def endpoint(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main():
    for path in sys.argv[1:]:
        print(f"#### {os.path.basename(path)}\n")
        h = hellos(path)
        if h:
            print(table(["frame", "src", "sport", "dst", "dport", "proto", "sni"], h) + "\n")
        else:
            print("No ClientHello that tshark can read.\n")
        d = dns_answers(path)
        if d:
            print(table(["frame", "query", "cname chain", "answer"], d) + "\n")
        print(table(["first frame", "proto", "initiator", "responder", "pkts i->r", "pkts r->i",
                     "SYN", "SYN-ACK", "RST", "ICMP errors (frame:type/code)", "outcome"],
                    flows(path)) + "\n")


if __name__ == "__main__":
    main()
