#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (see fuzz/README.md) from real captures.

Reads every capture under the given directories (default: ../shared/pcaps/{real,
malformed,tcpdump-tests} and pcaps/ of the project), the project's rules/*.toml, and
writes one file per seed, named by its SHA-1, under OUT/<target>/ (default
fuzz/corpus/<target>/). The captures are other projects' test data: the seeds derived
from them are build products (fuzz/corpus is git-ignored), never committed.

* decode_frame        selector byte + one frame, a few frames of every capture whose
                      link type mdmaudit decodes.
* flow_table          table limits + the first frames of each capture as records, and
                      a few synthetic conversations (handshake + ClientHello, refused
                      SYN, DNS answer, ICMP unreachable).
* tls_sni             every TCP ClientHello tshark finds (reassembled when split).
* tls_hello_segments  those ClientHellos cut in segments: in order, reversed, with
                      overlaps and duplicates, with a hole, with the last cut short,
                      without the SYN, around a sequence-number wrap.
* quic_initial        the client Initial datagrams of each QUIC flow tshark finds, in
                      order, and each alone.
* dns_response        every DNS response payload (UDP, and TCP with its length prefix).
* http_host           every HTTP request's first segment, plus hand-written requests.
* file_reader         every capture file, cut to its first 64 KiB (a cut is damage
                      the reader must report, the same way both ways).
* catalog_parse       the whole built-in catalog, rules/*.toml alone and after the
                      profiles, each requirement alone with the profiles it names, and
                      the TOML examples of docs/catalog-format.md.

Frames are read with a small pcap reader; pcapng files are converted with
`editcap -F pcap` first. Payloads are found with tshark. The input formats written here
are the ones documented in fuzz/src/lib.rs.
"""

import argparse
import hashlib
import os
import re
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Same order as LINKTYPES in fuzz/src/lib.rs: the selector byte is the index.
LINKTYPES = [0, 1, 9, 12, 14, 50, 51, 101, 108, 113, 228, 229, 239, 276]

# Ports tshark should decode as TLS besides 443 (as in ../shared/pcaps/README.md).
TLS_PORTS = [5223, 5228, 5229, 5230, 2197, 8443, 4433]

FRAMES_PER_CAPTURE = 6  # decode_frame seeds per capture
FLOW_FRAMES = 48  # frames per flow_table seed
FLOW_CHUNKS = 2  # flow_table seeds per capture
MAX_FRAME = 4096  # frames are cut to this many bytes in flow_table seeds
MAX_HELLOS = 80  # ClientHellos turned into segment plans
MAX_FILE_SEED = 65536  # file_reader seeds: the first bytes of each capture file


def log(msg):
    print(msg, file=sys.stderr)


class Corpus:
    def __init__(self, out):
        self.out = out
        self.counts = {}

    def add(self, target, data):
        d = os.path.join(self.out, target)
        os.makedirs(d, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()
        path = os.path.join(d, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
            self.counts[target] = self.counts.get(target, 0) + 1


# ------------------------------------------------------------------------------------
# Reading captures
# ------------------------------------------------------------------------------------


def read_pcap(data):
    """(linktype, [(ts_ns, frame)]) of a classic pcap file, or None."""
    if len(data) < 24:
        return None
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return None
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
    frames = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(e + "IIII", data[off : off + 16])
        off += 16
        if incl > len(data) - off:
            break  # a cut file: keep what is whole
        ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
        frames.append((ts, data[off : off + incl]))
        off += incl
    return linktype, frames


def load_capture(path):
    with open(path, "rb") as f:
        data = f.read()
    got = read_pcap(data)
    if got is not None:
        return got
    with tempfile.NamedTemporaryFile(suffix=".pcap") as tmp:
        r = subprocess.run(
            ["editcap", "-F", "pcap", path, tmp.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if r.returncode != 0:
            return None
        with open(tmp.name, "rb") as f:
            return read_pcap(f.read())


def tshark_fields(path, display_filter, fields, text=False):
    args = ["tshark", "-n", "-r", path, "-Y", display_filter, "-T", "fields"]
    for p in TLS_PORTS:
        args += ["-d", f"tcp.port=={p},tls"]
    for fld in fields:
        args += ["-e", fld]
    try:
        r = subprocess.run(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120
        )
    except subprocess.TimeoutExpired:
        return []
    rows = []
    for line in r.stdout.decode("ascii", "replace").splitlines():
        cols = line.split("\t")
        if text:
            rows.append(cols)
            continue
        vals = []
        for c in cols:
            c = c.split(",")[0].replace(":", "")
            try:
                vals.append(bytes.fromhex(c) if c else b"")
            except ValueError:
                vals.append(b"")
        rows.append(vals)
    return rows


# ------------------------------------------------------------------------------------
# Encoders of the input formats of fuzz/src/lib.rs
# ------------------------------------------------------------------------------------


def limits(flows=3, dns=3, hello=31, tcp_idle=255, attempt_idle=255, udp_idle=59):
    """TableLimits: max_flows = 1 + flows % 8, and so on."""
    return bytes([flows, dns, hello, tcp_idle, attempt_idle, udp_idle])


def record(kind, dt_10ms, body):
    body = body[:65535]
    dt = max(-32768, min(32767, dt_10ms))
    return struct.pack("<BhH", kind, dt, len(body)) + body


HOST = {"client": 0, "apple": 1, "site": 2, "client6": 3, "ms6": 4, "mapped": 5}
PORT = {443: 0, 80: 1, 53: 2, 5223: 3, 5228: 4, 49152: 5, 49153: 6, 0: 7}
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10


def synthetic(proto, src, dst, sport, dport, seq=0, ack=0, flags=0, cut=0,
              icmp_type=0, icmp_code=0, payload=b""):
    """A Synthetic record body (17-byte header, then the payload)."""
    head = struct.pack(
        "<BBBBBIIBBBB",
        {"tcp": 0, "udp": 1, "icmp": 2}[proto],
        HOST[src],
        HOST[dst],
        PORT[sport],
        PORT[dport],
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        flags,
        cut,
        icmp_type,
        icmp_code,
    )
    assert len(head) == 17
    return head + payload


def segment_plan(syn_seen, isn, segments, stream):
    """SegmentPlan: segments are (start, len, seq_shift, truncated)."""
    out = struct.pack("<BIB", 1 if syn_seen else 0, isn & 0xFFFFFFFF, len(segments))
    for start, length, shift, trunc in segments:
        out += struct.pack("<HHhB", start, min(length, 0xFFFF), shift, 1 if trunc else 0)
    return out + stream


# ------------------------------------------------------------------------------------
# Seeds
# ------------------------------------------------------------------------------------


def pick(frames, n):
    if len(frames) <= n:
        return list(range(len(frames)))
    idx = set(range(n // 2))
    step = len(frames) / (n - n // 2)
    idx.update(int(i * step) for i in range(n - n // 2))
    return sorted(idx)[:n]


def frame_seeds(corpus, path, cap):
    linktype, frames = cap
    if linktype not in LINKTYPES:
        return
    sel = LINKTYPES.index(linktype)
    for i in pick(frames, FRAMES_PER_CAPTURE):
        corpus.add("decode_frame", bytes([sel]) + frames[i][1])
    for chunk in range(FLOW_CHUNKS):
        part = frames[chunk * FLOW_FRAMES : (chunk + 1) * FLOW_FRAMES]
        if not part:
            break
        data = bytearray(limits(flows=chunk * 5 + 3))
        prev = part[0][0]
        for ts, frame in part:
            data += record(sel, (ts - prev) // 10_000_000, frame[:MAX_FRAME])
            prev = ts
        corpus.add("flow_table", bytes(data))


def hello_plans(corpus, hello, n):
    L = len(hello)
    a, b = max(1, L // 3), max(2, 2 * L // 3)
    isn = [0x1000, 0xFFFFFF80, 0x7FFFFFF0][n % 3]
    plans = [
        (True, [(0, L, 0, False)]),
        (True, [(0, a, 0, False), (a, b - a, 0, False), (b, L - b, 0, False)]),
        (True, [(b, L - b, 0, False), (a, b - a, 0, False), (0, a, 0, False)]),
        (False, [(a, L - a, 0, False), (0, a, 0, False)]),
        (True, [(0, b, 0, False), (a, L - a, 0, False), (0, a, 0, False)]),
        (True, [(0, a, 0, False), (b, L - b, 0, False)]),
        (True, [(0, a, 0, False), (a, L - a, 0, True)]),
        (True, [(0, 5, 0, False), (5, L - 5, 0, False)]),
        (True, [(0, a, -100, False), (0, L, 0, False)]),
    ]
    for syn, segs in plans:
        corpus.add("tls_hello_segments", segment_plan(syn, isn, segs, hello))
    # One 16-byte segment after the other.
    segs = [(i, 16, 0, False) for i in range(0, L, 16)][:255]
    corpus.add("tls_hello_segments", segment_plan(True, isn, segs, hello))


def payload_seeds(corpus, path, hellos, dns):
    for cols in tshark_fields(path, "tls.handshake.type == 1 && tcp", [
            "tcp.reassembled.data", "tcp.payload"]):
        data = next((c for c in cols if c), b"")
        if data:
            hellos[hashlib.sha1(data).digest()] = data
            corpus.add("tls_sni", data)
    flows = {}  # {endpoints: (client, [datagram])}, the client sends the first Initial
    for cols in tshark_fields(path, "quic.long.packet_type == 0 && udp", [
            "udp.payload", "ip.src", "ipv6.src", "udp.srcport",
            "ip.dst", "ipv6.dst", "udp.dstport"], text=True):
        if len(cols) < 7 or not cols[0]:
            continue
        src = (cols[1] or cols[2], cols[3])
        dst = (cols[4] or cols[5], cols[6])
        client, datagrams = flows.setdefault(frozenset([src, dst]), (src, []))
        if src == client:
            try:
                datagrams.append(bytes.fromhex(cols[0].split(",")[0].replace(":", "")))
            except ValueError:
                pass
    for _, datagrams in flows.values():
        corpus.add("quic_initial", b"".join(
            struct.pack("<H", len(d)) + d for d in datagrams[:8]))
        for d in datagrams[:2]:
            corpus.add("quic_initial", struct.pack("<H", len(d)) + d)
    for cols in tshark_fields(path, "dns.flags.response == 1", [
            "udp.payload", "tcp.payload"]):
        for c in cols:
            if c:
                dns.append(c)
                corpus.add("dns_response", c)
    for cols in tshark_fields(path, "http.request", ["tcp.payload"]):
        for c in cols:
            if c:
                corpus.add("http_host", c)


HTTP_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: mdm.example.com\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: MDM.Example.COM.:8080\r\nUser-Agent: x\r\n\r\n",
    b"CONNECT gateway.push.apple.com:443 HTTP/1.1\r\nHost: gateway.push.apple.com:443\r\n\r\n",
    b"GET http://ocsp.apple.com/ocsp HTTP/1.1\r\nHost: proxy\r\n\r\n",
    b"POST /x HTTP/1.0\r\nHost: [2001:db8::1]:80\r\nContent-Length: 0\r\n\r\n",
    b"HEAD / HTTP/1.1\nHost: a.b\n\n",
    b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9.example\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: \x1b[31mred\r\n\r\n",
]


def synthetic_flows(corpus, hellos, dns):
    hello = hellos[0] if hellos else b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"
    answer = dns[0] if dns else b""
    c, s = ("client", 49152), ("apple", 5223)

    def tcp(src, dst, seq, ack, flags, payload=b"", dt=1):
        return record(0x80, dt, synthetic("tcp", src[0], dst[0], src[1], dst[1],
                                          seq, ack, flags, payload=payload))

    hs = [tcp(c, s, 1000, 0, SYN), tcp(s, c, 5000, 1001, SYN | ACK),
          tcp(c, s, 1001, 5001, ACK)]
    a = len(hello) // 2
    seeds = [
        # Handshake, ClientHello in two segments, FIN both ways.
        hs + [tcp(c, s, 1001, 5001, PSH | ACK, hello[:a]),
              tcp(c, s, 1001 + a, 5001, PSH | ACK, hello[a:]),
              tcp(c, s, 1001 + len(hello), 5001, FIN | ACK),
              tcp(s, c, 5001, 1002 + len(hello), FIN | ACK)],
        # SYN answered by RST, then port reuse with a new SYN.
        [tcp(c, s, 1000, 0, SYN), tcp(s, c, 0, 1001, RST | ACK),
         tcp(c, s, 90000, 0, SYN, dt=500)],
        # SYN retransmitted, never answered, idle for 300 s.
        [tcp(c, s, 7, 0, SYN), tcp(c, s, 7, 0, SYN, dt=100), tcp(c, s, 7, 0, SYN, dt=300),
         tcp(("site", 49153), ("apple", 443), 1, 0, SYN, dt=30000)],
        # Mid-stream data only (no SYN), both ways.
        [tcp(c, s, 1, 1, PSH | ACK, hello), tcp(s, c, 1, 1 + len(hello), ACK)],
        # DNS answer, then a flow to an address; then an ICMP unreachable quoting a SYN.
        [record(0x80, 0, synthetic("udp", "site", "client", 53, 49153, payload=answer)),
         record(0x80, 1, synthetic("udp", "client", "site", 49153, 53, payload=b"\x00" * 12)),
         tcp(("client6", 49152), ("ms6", 443), 1, 0, SYN),
         record(0x80, 1, synthetic("icmp", "ms6", "client6", 49152, 443, seq=4,
                                   icmp_type=1, icmp_code=1))],
        # HTTP on 80 with a Host header, cut by the snaplen.
        [tcp(("client", 49153), ("site", 80), 1, 0, SYN),
         tcp(("site", 80), ("client", 49153), 9, 2, SYN | ACK),
         record(0x80, 1, synthetic("tcp", "client", "site", 49153, 80, 2, 10, PSH | ACK,
                                   cut=200, payload=HTTP_REQUESTS[0]))],
    ]
    for i, recs in enumerate(seeds):
        corpus.add("flow_table", limits(flows=i, dns=i) + b"".join(recs))


def toml_blocks(text):
    """The `[[...]]` tables of a catalog file (comments before the first dropped)."""
    parts = re.split(rb"\n(?=\[\[)", text)
    return [p.strip() + b"\n" for p in parts if p.startswith(b"[[")]


def catalog_seeds(corpus):
    rules = os.path.join(ROOT, "rules")
    texts = {}
    for name in sorted(os.listdir(rules)):
        if name.endswith(".toml"):
            with open(os.path.join(rules, name), "rb") as f:
                texts[name] = f.read()
    profiles = texts.get("profiles.toml", b"")
    # Profiles without `infer` (which names requirements of other files), by name.
    bare = {}
    for block in toml_blocks(profiles):
        m = re.search(rb'^name\s*=\s*"([^"]*)"', block, re.M)
        if m:
            bare[m.group(1)] = re.sub(rb"(?m)^infer\s*=.*\n", b"", block)
    # The whole built-in catalog, and each file alone and after the profiles.
    corpus.add("catalog_parse", b"\n".join(texts.values()))
    for name, text in texts.items():
        corpus.add("catalog_parse", text)
        if name != "profiles.toml":
            corpus.add("catalog_parse", profiles + b"\n" + text)
            corpus.add("catalog_parse", b"".join(bare.values()) + b"\n" + text)
            # Small valid catalogs: one requirement and the profiles it names.
            for block in toml_blocks(text):
                m = re.search(rb"^profiles\s*=\s*\[([^\]]*)\]", block, re.M)
                names = re.findall(rb'"([^"]*)"', m.group(1)) if m else []
                corpus.add("catalog_parse",
                           b"".join(bare[n] + b"\n" for n in names if n in bare) + block)
    doc = os.path.join(ROOT, "docs", "catalog-format.md")
    if os.path.exists(doc):
        with open(doc, "rb") as f:
            md = f.read()
        for block in re.findall(rb"```toml\n(.*?)```", md, re.S):
            corpus.add("catalog_parse", block)
            corpus.add("catalog_parse", b"".join(bare.values()) + b"\n" + block)


def captures(dirs):
    for d in dirs:
        if not os.path.isdir(d):
            log(f"seed-corpus: no directory {d}, skipped")
            continue
        for dirpath, _, names in sorted(os.walk(d)):
            for n in sorted(names):
                if n.endswith((".pcap", ".pcapng", ".cap")):
                    yield os.path.join(dirpath, n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "fuzz", "corpus"))
    ap.add_argument("dirs", nargs="*", default=[
        os.path.join(ROOT, "..", "shared", "pcaps", "real"),
        os.path.join(ROOT, "..", "shared", "pcaps", "malformed"),
        os.path.join(ROOT, "..", "shared", "pcaps", "tcpdump-tests"),
        os.path.join(ROOT, "pcaps"),
    ])
    args = ap.parse_args()
    corpus = Corpus(args.out)
    hellos = {}
    dns = []
    for path in captures(args.dirs):
        with open(path, "rb") as f:
            corpus.add("file_reader", f.read(MAX_FILE_SEED))
        cap = load_capture(path)
        if cap is not None:
            frame_seeds(corpus, path, cap)
        # Payloads from the captures with ground truth only: the tcpdump suite adds
        # little beyond its frames and is slow to run tshark over.
        if "tcpdump-tests" not in path:
            payload_seeds(corpus, path, hellos, dns)
    ordered = sorted(hellos.values(), key=len)
    for n, hello in enumerate(ordered[:: max(1, len(ordered) // MAX_HELLOS)][:MAX_HELLOS]):
        hello_plans(corpus, hello, n)
    for req in HTTP_REQUESTS:
        corpus.add("http_host", req)
    synthetic_flows(corpus, ordered, dns)
    catalog_seeds(corpus)
    for target in sorted(corpus.counts):
        log(f"seed-corpus: {target}: {corpus.counts[target]} new seeds")
    if not corpus.counts:
        log("seed-corpus: no new seeds (corpus already holds them all)")


if __name__ == "__main__":
    main()
