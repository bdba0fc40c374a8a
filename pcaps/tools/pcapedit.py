#!/usr/bin/env python3
"""pcapedit: the post-processing step of pcaps/make-scenarios.sh.

The scenario captures are recorded from real traffic between network namespaces
that use documentation addresses (198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32).
This program turns such a recording into the committed capture:

  rewrite     map addresses (IPv4 and IPv6) everywhere they occur: IP headers,
              headers quoted inside ICMP/ICMPv6 errors, ARP, IPv6 neighbour
              discovery targets and DNS A/AAAA answers; then recompute every
              checksum (IPv4 header, TCP, UDP, ICMP, ICMPv6, and the quoted
              headers of ICMP errors).  Packets cut by the snaplen get their
              checksums adjusted incrementally (RFC 1624) instead, since the
              bytes needed for a full recomputation are not in the file.
  split-hello re-segment the first TLS ClientHello of the capture into three
              TCP segments sent in the order 1,3,2 (the middle one, which holds
              the second half of the SNI host name, arrives last), with correct
              sequence numbers, IP identifiers and checksums, and a duplicate
              ACK with a SACK block from the receiver, as a real stack sends it.
  timeshift   move all timestamps so the first packet is at a fixed epoch.

Only classic pcap files (either byte order, micro- or nanosecond) with Ethernet
(802.1Q tags allowed), Linux cooked v1/v2 or raw IP link types are handled; that is
all tcpdump writes here.  Standard library only, so that the script runs anywhere
python3 does.
"""

import argparse
import ipaddress
import struct
import sys

# ---------------------------------------------------------------- pcap I/O

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276


class Pcap:
    def __init__(self, endian, nanos, header, linktype, packets):
        self.endian = endian      # '<' or '>'
        self.nanos = nanos        # timestamps in ns (True) or us (False)
        self.header = header      # the 24 global header bytes, written back unchanged
        self.linktype = linktype
        self.packets = packets    # list of [ts_sec, ts_frac, orig_len, bytearray]


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        sys.exit(f"{path}: not a pcap file (only {len(data)} bytes)")
    magic_le = struct.unpack("<I", data[:4])[0]
    if magic_le in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif struct.unpack(">I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D):
        endian = ">"
    else:
        sys.exit(f"{path}: not a classic pcap file (pcapng? convert with editcap -F pcap)")
    magic = struct.unpack(endian + "I", data[:4])[0]
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    packets = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            sys.exit(f"{path}: truncated packet record at byte {off - 16}")
        packets.append([sec, frac, orig, bytearray(data[off:off + incl])])
        off += incl
    return Pcap(endian, magic == 0xA1B23C4D, data[:24], linktype, packets)


def write_pcap(pcap, path):
    out = bytearray(pcap.header)
    for sec, frac, orig, pkt in pcap.packets:
        out += struct.pack(pcap.endian + "IIII", sec, frac, len(pkt), max(orig, len(pkt)))
        out += pkt
    with open(path, "wb") as f:
        f.write(out)


def l3_offset(linktype, pkt):
    """Return (offset of the network header, ethertype) or (None, None)."""
    if linktype == LINKTYPE_ETHERNET:
        if len(pkt) < 14:
            return None, None
        off, etype = 14, struct.unpack("!H", pkt[12:14])[0]
        while etype in (0x8100, 0x88A8) and len(pkt) >= off + 4:
            etype = struct.unpack("!H", pkt[off + 2:off + 4])[0]
            off += 4
        return off, etype
    if linktype == LINKTYPE_LINUX_SLL2:
        return (20, struct.unpack("!H", pkt[0:2])[0]) if len(pkt) >= 20 else (None, None)
    if linktype == LINKTYPE_LINUX_SLL:
        return (16, struct.unpack("!H", pkt[14:16])[0]) if len(pkt) >= 16 else (None, None)
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not pkt:
            return None, None
        return 0, 0x0800 if pkt[0] >> 4 == 4 else 0x86DD
    sys.exit(f"unsupported link type {linktype}")


# ---------------------------------------------------------------- checksums

def ones_sum(data, acc=0):
    if len(data) % 2:
        data = bytes(data) + b"\0"
    for (w,) in struct.iter_unpack("!H", data):
        acc += w
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


def finish(acc):
    return (~acc) & 0xFFFF


def pseudo_v4(src, dst, proto, length):
    return bytes(src) + bytes(dst) + struct.pack("!BBH", 0, proto, length)


def pseudo_v6(src, dst, proto, length):
    return bytes(src) + bytes(dst) + struct.pack("!IxxxB", length, proto)


def incremental(old_csum, old_bytes, new_bytes):
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    acc = (~old_csum) & 0xFFFF
    for (w,) in struct.iter_unpack("!H", bytes(old_bytes)):
        acc += (~w) & 0xFFFF
    for (w,) in struct.iter_unpack("!H", bytes(new_bytes)):
        acc += w
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return finish(acc)


def l4_checksum_offset(proto):
    return {6: 16, 17: 6, 58: 2, 1: 2}.get(proto)


def set_l4_checksum(buf, l4, end, proto, pseudo):
    """Recompute the TCP/UDP/ICMP/ICMPv6 checksum of buf[l4:end] in place."""
    co = l4_checksum_offset(proto)
    if co is None or end - l4 < co + 2:
        return
    buf[l4 + co:l4 + co + 2] = b"\0\0"
    acc = ones_sum(buf[l4:end], ones_sum(pseudo) if pseudo is not None else 0)
    c = finish(acc)
    if proto == 17 and c == 0:
        c = 0xFFFF
    buf[l4 + co:l4 + co + 2] = struct.pack("!H", c)


def set_ipv4_checksum(buf, ip):
    ihl = (buf[ip] & 0x0F) * 4
    buf[ip + 10:ip + 12] = b"\0\0"
    buf[ip + 10:ip + 12] = struct.pack("!H", finish(ones_sum(buf[ip:ip + ihl])))


# ---------------------------------------------------------------- address map

class AddrMap:
    def __init__(self, pairs):
        self.v4, self.v6 = {}, {}
        for pair in pairs:
            old, new = pair.split("=", 1)
            a, b = ipaddress.ip_address(old), ipaddress.ip_address(new)
            if a.version != b.version:
                sys.exit(f"--map {pair}: both sides must be the same IP version")
            (self.v4 if a.version == 4 else self.v6)[a.packed] = b.packed

    def apply(self, buf, off, size):
        """Map the address stored at buf[off:off+size]; return (old, new) bytes."""
        old = bytes(buf[off:off + size])
        new = (self.v4 if size == 4 else self.v6).get(old, old)
        buf[off:off + size] = new
        return old, new


# ---------------------------------------------------------------- DNS

def skip_name(msg, off):
    while off < len(msg):
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n
    raise ValueError("name runs past the message")


def rewrite_dns(msg, amap):
    """Map A/AAAA rdata in a DNS message (a bytearray). Returns True if changed."""
    if len(msg) < 12:
        return False
    qd, an, ns, ar = struct.unpack("!HHHH", msg[4:12])
    off, changed = 12, False
    try:
        for _ in range(qd):
            off = skip_name(msg, off) + 4
        for _ in range(an + ns + ar):
            off = skip_name(msg, off)
            rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            if rtype == 1 and rdlen == 4 or rtype == 28 and rdlen == 16:
                old, new = amap.apply(msg, off, rdlen)
                changed |= old != new
            off += rdlen
    except (ValueError, struct.error):
        pass
    return changed


# ---------------------------------------------------------------- rewrite

def rewrite_quoted(buf, q, end, amap):
    """Rewrite an IP header (and the start of its transport header) quoted in an ICMP error."""
    if end - q < 20:
        return
    if buf[q] >> 4 == 4:
        ihl = (buf[q] & 0x0F) * 4
        proto = buf[q + 9]
        s_old, s_new = amap.apply(buf, q + 12, 4)
        d_old, d_new = amap.apply(buf, q + 16, 4)
        if end - q >= ihl:
            set_ipv4_checksum(buf, q)
        l4 = q + ihl
    elif buf[q] >> 4 == 6 and end - q >= 40:
        proto = buf[q + 6]
        s_old, s_new = amap.apply(buf, q + 8, 16)
        d_old, d_new = amap.apply(buf, q + 24, 16)
        l4 = q + 40
    else:
        return
    co = l4_checksum_offset(proto)
    if proto in (6, 17) and co is not None and end >= l4 + co + 2:
        old = struct.unpack("!H", buf[l4 + co:l4 + co + 2])[0]
        new = incremental(old, s_old + d_old, s_new + d_new)
        buf[l4 + co:l4 + co + 2] = struct.pack("!H", new)


def rewrite_ipv4(buf, ip, amap, complete):
    ihl = (buf[ip] & 0x0F) * 4
    total = struct.unpack("!H", buf[ip + 2:ip + 4])[0]
    proto = buf[ip + 9]
    frag = struct.unpack("!H", buf[ip + 6:ip + 8])[0]
    s_old, s_new = amap.apply(buf, ip + 12, 4)
    d_old, d_new = amap.apply(buf, ip + 16, 4)
    set_ipv4_checksum(buf, ip)
    l4, end = ip + ihl, ip + total
    if frag & 0x1FFF or frag & 0x2000:
        return  # fragments: the transport checksum spans several packets; leave it
    rewrite_l4(buf, l4, end, proto, amap, complete,
               lambda length: pseudo_v4(buf[ip + 12:ip + 16], buf[ip + 16:ip + 20], proto, length),
               s_old + d_old, s_new + d_new)


def rewrite_ipv6(buf, ip, amap, complete):
    plen = struct.unpack("!H", buf[ip + 4:ip + 6])[0]
    nh = buf[ip + 6]
    s_old, s_new = amap.apply(buf, ip + 8, 16)
    d_old, d_new = amap.apply(buf, ip + 24, 16)
    off, end = ip + 40, ip + 40 + plen
    while nh in (0, 43, 60) and off + 2 <= len(buf):
        nh, off = buf[off], off + (buf[off + 1] + 1) * 8
    if nh == 44:
        return  # fragment: see rewrite_ipv4
    rewrite_l4(buf, off, end, nh, amap, complete,
               lambda length: pseudo_v6(buf[ip + 8:ip + 24], buf[ip + 24:ip + 40], nh, length),
               s_old + d_old, s_new + d_new)


def rewrite_l4(buf, l4, end, proto, amap, complete, pseudo, old_addrs, new_addrs):
    if not complete:
        # Cut by the snaplen: the payload is not all here, so adjust the checksum
        # for the address change only (RFC 1624).
        co = l4_checksum_offset(proto)
        if proto in (6, 17, 58) and co is not None and len(buf) >= l4 + co + 2:
            old = struct.unpack("!H", buf[l4 + co:l4 + co + 2])[0]
            buf[l4 + co:l4 + co + 2] = struct.pack("!H", incremental(old, old_addrs, new_addrs))
        return
    if proto == 17 and end - l4 >= 8:
        sport, dport = struct.unpack("!HH", buf[l4:l4 + 4])
        if 53 in (sport, dport):
            msg = bytearray(buf[l4 + 8:end])
            if rewrite_dns(msg, amap):
                buf[l4 + 8:end] = msg
    elif proto == 1 and end - l4 >= 8 and buf[l4] in (3, 11, 12):
        rewrite_quoted(buf, l4 + 8, end, amap)
    elif proto == 58 and end - l4 >= 8:
        if buf[l4] in (1, 2, 3, 4):
            rewrite_quoted(buf, l4 + 8, end, amap)
        elif buf[l4] in (135, 136, 137) and end - l4 >= 24:
            amap.apply(buf, l4 + 8, 16)
    set_l4_checksum(buf, l4, end, proto, None if proto == 1 else pseudo(end - l4))


def rewrite_arp(buf, off, amap):
    if len(buf) >= off + 28 and buf[off + 4] == 6 and buf[off + 5] == 4:
        amap.apply(buf, off + 14, 4)
        amap.apply(buf, off + 24, 4)


def cmd_rewrite(args):
    pcap = read_pcap(args.input)
    amap = AddrMap(args.map)
    for rec in pcap.packets:
        orig, pkt = rec[2], rec[3]
        off, etype = l3_offset(pcap.linktype, pkt)
        if off is None:
            continue
        complete = len(pkt) >= orig
        if etype == 0x0800 and len(pkt) >= off + 20:
            rewrite_ipv4(pkt, off, amap, complete)
        elif etype == 0x86DD and len(pkt) >= off + 40:
            rewrite_ipv6(pkt, off, amap, complete)
        elif etype == 0x0806:
            rewrite_arp(pkt, off, amap)
    write_pcap(pcap, args.output)


# ---------------------------------------------------------------- split-hello

def parse_tcp(linktype, pkt):
    """Return a dict describing an unfragmented TCP/IP packet, or None."""
    off, etype = l3_offset(linktype, pkt)
    if off is None:
        return None
    if etype == 0x0800 and len(pkt) >= off + 20 and pkt[off + 9] == 6:
        ihl = (pkt[off] & 0x0F) * 4
        total = struct.unpack("!H", pkt[off + 2:off + 4])[0]
        src, dst = bytes(pkt[off + 12:off + 16]), bytes(pkt[off + 16:off + 20])
        l4, end = off + ihl, off + total
    elif etype == 0x86DD and len(pkt) >= off + 40 and pkt[off + 6] == 6:
        src, dst = bytes(pkt[off + 8:off + 24]), bytes(pkt[off + 24:off + 40])
        l4, end = off + 40, off + 40 + struct.unpack("!H", pkt[off + 4:off + 6])[0]
    else:
        return None
    if len(pkt) < l4 + 20:
        return None
    sport, dport, seq, ack = struct.unpack("!HHII", pkt[l4:l4 + 12])
    doff = (pkt[l4 + 12] >> 4) * 4
    return dict(ip=off, v=4 if etype == 0x0800 else 6, src=src, dst=dst, l4=l4, end=end,
                sport=sport, dport=dport, seq=seq, ack=ack, doff=doff,
                flags=pkt[l4 + 13], payload=bytes(pkt[l4 + doff:end]))


def client_hello_sni(payload):
    """The SNI host name of a ClientHello that starts this payload, else None."""
    if len(payload) < 9 or payload[0] != 0x16 or payload[5] != 1:
        return None
    p = 9 + 2 + 32
    try:
        p += 1 + payload[p]                                            # session id
        p += 2 + struct.unpack("!H", payload[p:p + 2])[0]              # cipher suites
        p += 1 + payload[p]                                            # compression
        ext_end = p + 2 + struct.unpack("!H", payload[p:p + 2])[0]
        p += 2
        while p + 4 <= ext_end:
            etype, elen = struct.unpack("!HH", payload[p:p + 4])
            if etype == 0:
                nlen = struct.unpack("!H", payload[p + 7:p + 9])[0]
                return p + 9, payload[p + 9:p + 9 + nlen].decode()
            p += 4 + elen
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


def build_tcp(linktype, template, info, seq, ack, flags, payload, ip_id=None, options=None):
    """A copy of template with a new TCP payload/seq/ack/flags; checksums recomputed."""
    ip, l4 = info["ip"], info["l4"]
    opts = bytes(template[l4 + 20:l4 + info["doff"]]) if options is None else options
    tcp = bytearray(template[l4:l4 + 20]) + opts
    tcp[4:12] = struct.pack("!II", seq, ack)
    tcp[12] = (len(tcp) // 4) << 4
    tcp[13] = flags
    pkt = bytearray(template[:l4]) + tcp + payload
    if info["v"] == 4:
        struct.pack_into("!H", pkt, ip + 2, len(pkt) - ip)
        if ip_id is not None:
            struct.pack_into("!H", pkt, ip + 4, ip_id)
        set_ipv4_checksum(pkt, ip)
        pseudo = pseudo_v4(info["src"], info["dst"], 6, len(pkt) - l4)
    else:
        struct.pack_into("!H", pkt, ip + 4, len(pkt) - ip - 40)
        pseudo = pseudo_v6(info["src"], info["dst"], 6, len(pkt) - l4)
    set_l4_checksum(pkt, l4, len(pkt), 6, pseudo)
    return pkt


def ts_to_ns(pcap, rec):
    return rec[0] * 10**9 + rec[1] * (1 if pcap.nanos else 1000)


def ns_to_ts(pcap, ns):
    sec, rem = divmod(ns, 10**9)
    return sec, rem if pcap.nanos else rem // 1000


def timestamp_option(opts):
    """The TCP timestamp option (NOP NOP TS) out of an option block, or b''."""
    p = 0
    while p < len(opts):
        kind = opts[p]
        if kind == 0:
            break
        if kind == 1:
            p += 1
            continue
        if p + 1 >= len(opts):
            break
        if kind == 8:
            return b"\x01\x01" + bytes(opts[p:p + 10])
        p += max(2, opts[p + 1])
    return b""


def cmd_split_hello(args):
    pcap = read_pcap(args.input)
    pkts = pcap.packets
    idx = None
    for i, rec in enumerate(pkts):
        info = parse_tcp(pcap.linktype, rec[3])
        if info and (sni := client_hello_sni(info["payload"])):
            if args.sni is None or sni[1] == args.sni:
                idx, ch, (name_off, name) = i, info, sni
                break
    if idx is None:
        sys.exit("no ClientHello found" + (f" with SNI {args.sni}" if args.sni else ""))
    payload = ch["payload"]
    if len(pkts[idx][3]) < ch["end"]:
        sys.exit("the ClientHello packet is cut by the snaplen")
    # Cut 1: inside the client random.  Cut 2: in the middle of the SNI host name, so
    # that neither the first two segments nor the last two alone hold the name.
    cuts = [0, 9 + 2 + 16, name_off + len(name) // 2, len(payload)]
    segs = [(cuts[k], payload[cuts[k]:cuts[k + 1]]) for k in range(3)]
    order = [int(x) - 1 for x in args.order.split(",")]
    if sorted(order) != [0, 1, 2]:
        sys.exit("--order must be a permutation of 1,2,3")

    template = pkts[idx][3]
    base_id = struct.unpack("!H", template[ch["ip"] + 4:ch["ip"] + 6])[0] if ch["v"] == 4 else 0
    # The next packet in the capture bounds the time the three segments may take.
    t0 = ts_to_ns(pcap, pkts[idx])
    t1 = ts_to_ns(pcap, pkts[idx + 1]) if idx + 1 < len(pkts) else t0 + 1_000_000
    step = max(2, min(150_000, (t1 - t0) // 5))

    # The receiver's first packet after the ClientHello serves as the template for its
    # duplicate ACKs: whenever a segment arrives after a hole, a real stack answers at
    # once with an ACK of the in-order part and SACK blocks for the rest (RFC 2018).
    reply_i = next((j for j in range(idx + 1, len(pkts))
                    if (r := parse_tcp(pcap.linktype, pkts[j][3]))
                    and r["src"] == ch["dst"] and r["sport"] == ch["dport"]
                    and r["dst"] == ch["src"] and r["dport"] == ch["sport"]), None)
    reply = parse_tcp(pcap.linktype, pkts[reply_i][3]) if reply_i is not None else None
    r_id = struct.unpack("!H", pkts[reply_i][3][reply["ip"] + 4:reply["ip"] + 6])[0] \
        if reply and reply["v"] == 4 else 0

    new, received, dup_acks = [], set(), 0
    for n, k in enumerate(order):
        off, data = segs[k]
        pkt = build_tcp(pcap.linktype, template, ch, (ch["seq"] + off) & 0xFFFFFFFF, ch["ack"],
                        ch["flags"], data, ip_id=(base_id + n) & 0xFFFF)
        sec, frac = ns_to_ts(pcap, t0 + n * step)
        new.append([sec, frac, len(pkt), pkt])
        received.add(k)
        prefix = 0
        while prefix in received:
            prefix += 1
        if reply is None or prefix == 3 or received == set(range(prefix)):
            continue   # no hole: the receiver may delay its ACK
        sack = b""
        for j in sorted(received - set(range(prefix))):
            sack += struct.pack("!II", (ch["seq"] + cuts[j]) & 0xFFFFFFFF,
                                (ch["seq"] + cuts[j + 1]) & 0xFFFFFFFF)
        opts = timestamp_option(pkts[reply_i][3][reply["l4"] + 20:reply["l4"] + reply["doff"]])
        opts += b"\x01\x01\x05" + bytes([2 + len(sack)]) + sack
        dup = build_tcp(pcap.linktype, pkts[reply_i][3], reply, reply["seq"],
                        (ch["seq"] + cuts[prefix]) & 0xFFFFFFFF, 0x10, b"",
                        ip_id=(r_id + dup_acks) & 0xFFFF if r_id else None, options=opts)
        sec, frac = ns_to_ts(pcap, t0 + n * step + step // 2)
        new.append([sec, frac, len(dup), dup])
        dup_acks += 1

    # Later packets keep unique, increasing IPv4 identifiers (Linux numbers the packets
    # of a connection consecutively).
    if ch["v"] == 4 and base_id:
        shift_ip_id(pcap, pkts, idx + 1, ch, 2)
    if reply and reply["v"] == 4 and r_id and dup_acks:
        shift_ip_id(pcap, pkts, reply_i, reply, dup_acks)
    # Keep the capture in time order: later packets go after the new ones.
    last = t0 + len(order) * step
    for rec in pkts[idx + 1:]:
        if ts_to_ns(pcap, rec) <= last:
            last += 1000
            rec[0], rec[1] = ns_to_ts(pcap, last)
        else:
            break
    pcap.packets = pkts[:idx] + new + pkts[idx + 1:]
    write_pcap(pcap, args.output)
    print(f"split the ClientHello of frame {idx + 1} (SNI {name}, {len(payload)} bytes) into "
          f"segments of {[len(s[1]) for s in segs]} bytes, sent in the order {args.order}, "
          f"with {dup_acks} duplicate ACK(s)", file=sys.stderr)


def shift_ip_id(pcap, pkts, start, flow, delta):
    """Add delta to the IPv4 identifier of later packets sent by flow's source."""
    for rec in pkts[start:]:
        info = parse_tcp(pcap.linktype, rec[3])
        if info and info["v"] == 4 and info["src"] == flow["src"] and info["sport"] == flow["sport"] \
                and info["dst"] == flow["dst"] and info["dport"] == flow["dport"]:
            ip = info["ip"]
            old = struct.unpack("!H", rec[3][ip + 4:ip + 6])[0]
            if old:
                struct.pack_into("!H", rec[3], ip + 4, (old + delta) & 0xFFFF)
                set_ipv4_checksum(rec[3], ip)


# ---------------------------------------------------------------- timeshift

def cmd_timeshift(args):
    pcap = read_pcap(args.input)
    if pcap.packets:
        delta = args.epoch * 10**9 - ts_to_ns(pcap, pcap.packets[0])
        for rec in pcap.packets:
            rec[0], rec[1] = ns_to_ts(pcap, ts_to_ns(pcap, rec) + delta)
    write_pcap(pcap, args.output)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("rewrite", help="map addresses and fix checksums")
    p.add_argument("--map", action="append", default=[], metavar="OLD=NEW")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_rewrite)
    p = sub.add_parser("split-hello", help="re-segment the first ClientHello")
    p.add_argument("--sni", help="pick the first ClientHello with this SNI")
    p.add_argument("--order", default="1,3,2", help="order the three segments are sent in")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_split_hello)
    p = sub.add_parser("timeshift", help="start the capture at a fixed time")
    p.add_argument("--epoch", type=int, required=True, help="seconds since 1970 of the first packet")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_timeshift)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
