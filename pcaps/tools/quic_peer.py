#!/usr/bin/env python3
"""quic_peer: one HTTP/3 request over QUIC (aioquic), for pcaps/make-scenarios.sh.

  quic_peer.py server --bind ADDR --port 443 --cert C --key K
      answer every HTTP/3 request with a short 200 response, until killed.
  quic_peer.py client --connect ADDR --port 443 --sni NAME [--path /x]
      send one GET with the given SNI/authority, read the answer, close the connection.

The point is real QUIC bytes: an Initial packet whose ClientHello carries the SNI
(RFC 9001 protection, as every QUIC stack sends it), then the handshake and 1-RTT
packets both ways.  Needs the aioquic package (pip install aioquic).
"""

import argparse
import asyncio
import sys

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent
from aioquic.quic.packet import QuicProtocolVersion

# QUIC version 1 (RFC 9000) only, as deployed clients use it; no compatible version
# negotiation to version 2.
VERSIONS = [QuicProtocolVersion.VERSION_1]


class ServerProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._h3 = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            self._h3 = H3Connection(self._quic)
        if self._h3 is None:
            return
        for ev in self._h3.handle_event(event):
            if isinstance(ev, HeadersReceived) and ev.stream_ended or \
               isinstance(ev, DataReceived) and ev.stream_ended:
                body = b"ok\n"
                self._h3.send_headers(ev.stream_id, [
                    (b":status", b"200"), (b"content-type", b"text/plain"),
                    (b"content-length", str(len(body)).encode())])
                self._h3.send_data(ev.stream_id, body, end_stream=True)
                self.transmit()


class ClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._h3 = H3Connection(self._quic)
        self.done = asyncio.get_event_loop().create_future()
        self.status = None

    def quic_event_received(self, event: QuicEvent) -> None:
        for ev in self._h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self.status = dict(ev.headers).get(b":status")
            if isinstance(ev, (HeadersReceived, DataReceived)) and ev.stream_ended \
                    and not self.done.done():
                self.done.set_result(True)

    async def get(self, authority, path):
        stream_id = self._quic.get_next_available_stream_id()
        self._h3.send_headers(stream_id, [
            (b":method", b"GET"), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path.encode()),
            (b"user-agent", b"com.google.android.gms/24.08 (Linux; Android 14) cronet")],
            end_stream=True)
        self.transmit()
        await asyncio.wait_for(self.done, 5)


async def run_server(args):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, supported_versions=VERSIONS)
    cfg.load_cert_chain(args.cert, args.key)
    await serve(args.bind, args.port, configuration=cfg, create_protocol=ServerProtocol)
    await asyncio.Future()


async def run_client(args):
    import ssl
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                            server_name=args.sni, verify_mode=ssl.CERT_NONE,
                            supported_versions=VERSIONS)
    async with connect(args.connect, args.port, configuration=cfg,
                       create_protocol=ClientProtocol) as proto:
        await proto.get(args.sni, args.path)
        if proto.status != b"200":
            sys.exit(f"unexpected answer {proto.status!r}")
        proto.close()
        await proto.wait_closed()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, default=443)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    c = sub.add_parser("client")
    c.add_argument("--connect", required=True)
    c.add_argument("--port", type=int, default=443)
    c.add_argument("--sni", required=True)
    c.add_argument("--path", default="/")
    args = ap.parse_args()
    asyncio.run(run_server(args) if args.cmd == "server" else run_client(args))


if __name__ == "__main__":
    main()
