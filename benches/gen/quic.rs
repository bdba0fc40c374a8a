//! QUIC version 1 Initial packets protected as RFC 9001 section 5 says (initial
//! secrets from the client's Destination Connection ID, AES-128-GCM, AES header
//! protection), so that Wireshark and mdmaudit can decrypt them and read the SNI.

use ring::aead::{self, quic, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{self, KeyType, Prk, Salt, HKDF_SHA256};

use crate::tlsmsg::varint;

const INITIAL_SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];

struct Len(usize);
impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand_label(prk: &Prk, label: &str, len: usize) -> Vec<u8> {
    let full = format!("tls13 {label}");
    let mut info = Vec::new();
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0); // empty context
    let mut out = vec![0u8; len];
    let infos = [info.as_slice()];
    prk.expand(&infos, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .expect("hkdf expand");
    out
}

pub struct Keys {
    key: LessSafeKey,
    iv: [u8; 12],
    hp: quic::HeaderProtectionKey,
}

impl Keys {
    /// Initial keys of one side ("client in" / "server in") for this original DCID.
    pub fn initial(dcid: &[u8], server: bool) -> Keys {
        let initial = Salt::new(HKDF_SHA256, &INITIAL_SALT_V1).extract(dcid);
        let secret = expand_label(&initial, if server { "server in" } else { "client in" }, 32);
        let prk = Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let key = expand_label(&prk, "quic key", 16);
        let iv = expand_label(&prk, "quic iv", 12);
        let hp = expand_label(&prk, "quic hp", 16);
        Keys {
            key: LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &key).expect("key")),
            iv: iv.try_into().expect("iv"),
            hp: quic::HeaderProtectionKey::new(&quic::AES_128, &hp).expect("hp"),
        }
    }
}

/// A CRYPTO frame at offset 0.
pub fn crypto_frame(out: &mut Vec<u8>, data: &[u8]) {
    out.push(0x06);
    varint(out, 0);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// A protected Initial packet (packet number length 2) whose plaintext `frames` is
/// padded with PADDING frames so that the packet is `total` bytes long.
pub fn initial_packet(
    keys: &Keys,
    dcid: &[u8],
    scid: &[u8],
    pn: u16,
    frames: &[u8],
    total: usize,
) -> Vec<u8> {
    const PN_LEN: usize = 2;
    let mut hdr = vec![0xc0 | (PN_LEN as u8 - 1)];
    hdr.extend_from_slice(&1u32.to_be_bytes());
    hdr.push(dcid.len() as u8);
    hdr.extend_from_slice(dcid);
    hdr.push(scid.len() as u8);
    hdr.extend_from_slice(scid);
    hdr.push(0); // token length
                 // Length field: always the 2-byte varint form.
    let fixed = hdr.len() + 2 + PN_LEN + 16;
    let plain_len = total.saturating_sub(fixed).max(frames.len()).max(20);
    let length = PN_LEN + plain_len + 16;
    hdr.extend_from_slice(&((length as u16) | 0x4000).to_be_bytes());
    let pn_offset = hdr.len();
    hdr.extend_from_slice(&pn.to_be_bytes());

    let mut payload = Vec::with_capacity(plain_len + 16);
    payload.extend_from_slice(frames);
    payload.resize(plain_len, 0); // PADDING frames
    let mut nonce = keys.iv;
    for (i, b) in (pn as u64).to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    keys.key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&hdr[..]),
            &mut payload,
        )
        .expect("seal");
    let mut pkt = hdr;
    pkt.extend_from_slice(&payload);
    let sample_at = pn_offset + 4;
    let mask = keys
        .hp
        .new_mask(&pkt[sample_at..sample_at + 16])
        .expect("mask");
    pkt[0] ^= mask[0] & 0x0f;
    for i in 0..PN_LEN {
        pkt[pn_offset + i] ^= mask[1 + i];
    }
    pkt
}

/// A long-header Handshake packet with opaque (random) protected payload: nobody
/// without the handshake secrets can tell it from a real one.
pub fn handshake_packet(
    rng: &mut fastrand::Rng,
    dcid: &[u8],
    scid: &[u8],
    total: usize,
) -> Vec<u8> {
    let mut p = vec![0xe0 | (rng.u8(..) & 0x0f)];
    p.extend_from_slice(&1u32.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(scid.len() as u8);
    p.extend_from_slice(scid);
    let rest = total.saturating_sub(p.len() + 2).max(40);
    p.extend_from_slice(&((rest as u16) | 0x4000).to_be_bytes());
    let start = p.len();
    p.resize(start + rest, 0);
    rng.fill(&mut p[start..]);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9001 appendix A.2: the client Initial of the example, checked on its first
    /// protected bytes.
    #[test]
    fn rfc9001_client_initial() {
        let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
        let keys = Keys::initial(&dcid, false);
        assert_eq!(
            keys.iv,
            [0xfa, 0x04, 0x4b, 0x2f, 0x42, 0xa3, 0xfd, 0x3b, 0x46, 0xfb, 0x25, 0x5c]
        );
    }
}
