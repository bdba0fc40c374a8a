//! TLS handshake messages for the generator: a real ClientHello template (OpenSSL 3,
//! the one in src/tls.rs tests) with its server_name extension rewritten, a TLS 1.3
//! ServerHello, and the QUIC variants (no record layer, quic_transport_parameters).

/// `legacy_version` .. `session_id` of the template are rebuilt per flow; these are
/// the cipher suites of the template: length 62, 31 suites.
#[rustfmt::skip]
const CIPHER_SUITES: &[u8] = &[
    0x00, 0x3e,
    0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8,
    0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23,
    0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33,
    0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff,
];

/// The template's extensions after server_name, up to the key_share key (whose 32
/// bytes are drawn per flow).
#[rustfmt::skip]
const EXTENSIONS_AFTER_SNI: &[u8] = &[
    // ec_point_formats (11)
    0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02,
    // supported_groups (10)
    0x00, 0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00,
    0x18, 0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04,
    // session_ticket (35)
    0x00, 0x23, 0x00, 0x00,
    // ALPN (16): h2, http/1.1
    0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, b'h', b'2',
    0x08, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
    // encrypt_then_mac (22), extended_master_secret (23)
    0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00,
    // signature_algorithms (13)
    0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08,
    0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01,
    0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06,
    0x02,
    // supported_versions (43): 1.3, 1.2, 1.1, 1.0
    0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01,
    // psk_key_exchange_modes (45)
    0x00, 0x2d, 0x00, 0x02, 0x01, 0x01,
    // key_share (51): x25519, key length 32 (key follows)
    0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20,
];

fn push_u16(v: &mut Vec<u8>, x: usize) {
    v.extend_from_slice(&(x as u16).to_be_bytes());
}

fn push_u24(v: &mut Vec<u8>, x: usize) {
    v.extend_from_slice(&(x as u32).to_be_bytes()[1..]);
}

fn random_bytes(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rng.fill(&mut b);
    b
}

/// server_name extension: type 0, length, list length, host_name(0), name length, name.
fn sni_ext(name: &str) -> Vec<u8> {
    let n = name.len();
    let mut v = vec![0x00, 0x00];
    push_u16(&mut v, n + 5);
    push_u16(&mut v, n + 3);
    v.push(0x00);
    push_u16(&mut v, n);
    v.extend_from_slice(name.as_bytes());
    v
}

/// Handshake header + body.
fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 4);
    m.push(msg_type);
    push_u24(&mut m, body.len());
    m.extend_from_slice(body);
    m
}

/// One TLS record (content type, version 3.x, length, fragment).
pub fn record(ctype: u8, minor: u8, fragment: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(fragment.len() + 5);
    r.extend_from_slice(&[ctype, 0x03, minor]);
    push_u16(&mut r, fragment.len());
    r.extend_from_slice(fragment);
    r
}

/// A ClientHello record as OpenSSL 3 sends it, with this SNI (or none), fresh
/// random/session id/key share, and, when `pad`, a padding extension bringing the
/// handshake message to 512 bytes as browsers do.
pub fn client_hello_record(rng: &mut fastrand::Rng, sni: Option<&str>, pad: bool) -> Vec<u8> {
    let mut exts = Vec::with_capacity(400);
    if let Some(n) = sni {
        exts.extend_from_slice(&sni_ext(n));
    }
    exts.extend_from_slice(EXTENSIONS_AFTER_SNI);
    exts.extend_from_slice(&random_bytes(rng, 32));
    let mut body = Vec::with_capacity(600);
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend_from_slice(&random_bytes(rng, 32)); // random
    body.push(32);
    body.extend_from_slice(&random_bytes(rng, 32)); // session id
    body.extend_from_slice(CIPHER_SUITES);
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
                                           // handshake length = 4 + body(so far) + 2 + exts (+ 4 + pad)
    let so_far = 4 + body.len() + 2 + exts.len();
    if pad && so_far + 4 < 512 {
        let p = 512 - so_far - 4;
        exts.extend_from_slice(&[0x00, 0x15]);
        push_u16(&mut exts, p);
        exts.resize(exts.len() + p, 0);
    }
    push_u16(&mut body, exts.len());
    body.extend_from_slice(&exts);
    record(0x16, 0x01, &handshake(0x01, &body))
}

/// A TLS 1.3 ServerHello handshake message (x25519 key share); `session_id` echoes
/// the client's (empty for QUIC).
pub fn server_hello_msg(rng: &mut fastrand::Rng, session_id: &[u8], suite: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend_from_slice(&random_bytes(rng, 32));
    body.push(session_id.len() as u8);
    body.extend_from_slice(session_id);
    body.extend_from_slice(&suite.to_be_bytes());
    body.push(0x00);
    let mut exts = vec![0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]; // supported_versions: 1.3
    exts.extend_from_slice(&[0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]); // key_share
    exts.extend_from_slice(&random_bytes(rng, 32));
    push_u16(&mut body, exts.len());
    body.extend_from_slice(&exts);
    handshake(0x02, &body)
}

/// ServerHello record for TLS over TCP.
pub fn server_hello_record(rng: &mut fastrand::Rng) -> Vec<u8> {
    let sid = random_bytes(rng, 32);
    record(0x16, 0x03, &server_hello_msg(rng, &sid, 0x1302))
}

/// QUIC variable-length integer.
pub fn varint(v: &mut Vec<u8>, x: u64) {
    if x < 1 << 6 {
        v.push(x as u8);
    } else if x < 1 << 14 {
        v.extend_from_slice(&((x as u16) | 0x4000).to_be_bytes());
    } else if x < 1 << 30 {
        v.extend_from_slice(&((x as u32) | 0x8000_0000).to_be_bytes());
    } else {
        v.extend_from_slice(&(x | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// A QUIC ClientHello handshake message (TLS 1.3 only, ALPN h3, transport
/// parameters carrying `scid`).
pub fn quic_client_hello_msg(rng: &mut fastrand::Rng, sni: &str, scid: &[u8]) -> Vec<u8> {
    let mut exts = sni_ext(sni);
    // supported_groups: x25519, secp256r1, secp384r1
    exts.extend_from_slice(&[
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,
    ]);
    // ALPN: h3
    exts.extend_from_slice(&[0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, b'h', b'3']);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    exts.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    // supported_versions: 1.3
    exts.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    // psk_key_exchange_modes
    exts.extend_from_slice(&[0x00, 0x2d, 0x00, 0x02, 0x01, 0x01]);
    // key_share: x25519
    exts.extend_from_slice(&[0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
    exts.extend_from_slice(&random_bytes(rng, 32));
    // quic_transport_parameters (57)
    let mut tp = Vec::new();
    for (id, val) in [
        (0x01u64, 30_000u64),
        (0x04, 15_728_640),
        (0x05, 6_291_456),
        (0x06, 6_291_456),
        (0x07, 6_291_456),
        (0x08, 100),
        (0x09, 103),
    ] {
        let mut v = Vec::new();
        varint(&mut v, val);
        varint(&mut tp, id);
        varint(&mut tp, v.len() as u64);
        tp.extend_from_slice(&v);
    }
    varint(&mut tp, 0x0f); // initial_source_connection_id
    varint(&mut tp, scid.len() as u64);
    tp.extend_from_slice(scid);
    exts.extend_from_slice(&[0x00, 0x39]);
    push_u16(&mut exts, tp.len());
    exts.extend_from_slice(&tp);

    let mut body = Vec::with_capacity(300);
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend_from_slice(&random_bytes(rng, 32));
    body.push(0); // empty legacy session id
    body.extend_from_slice(&[0x00, 0x06, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
    body.extend_from_slice(&[0x01, 0x00]);
    push_u16(&mut body, exts.len());
    body.extend_from_slice(&exts);
    handshake(0x01, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_roundtrip() {
        // With the template's own SNI, the record has the template's length (346).
        let mut rng = fastrand::Rng::with_seed(1);
        let r = client_hello_record(&mut rng, Some("courier.push.apple.com"), false);
        assert_eq!(r.len(), 346);
        assert_eq!(&r[..5], &[0x16, 0x03, 0x01, 0x01, 0x55]);
        let p = client_hello_record(&mut rng, Some("a.b"), true);
        assert_eq!(p.len(), 517);
    }
}
