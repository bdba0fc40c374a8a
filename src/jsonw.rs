//! A small JSON writer for the hot part of the reports: the flow list, hundreds of
//! thousands of records of a fixed shape, and the findings, thousands with their
//! evidence. Going through serde costs a generic serializer, a `String` per
//! timestamp (`time`'s RFC 3339 formatting) and per address, and for the findings a
//! `serde_json::Value` tree of maps; this writes straight into a byte buffer.
//!
//! The bytes are exactly those serde_json writes for the same values (same escapes,
//! same integer and float formatting, the same RFC 3339 text as `report::iso_time`):
//! the tests compare both on every kind of value, and the report tests compare whole
//! reports.

use std::net::IpAddr;

/// Append `s` as a JSON string, escaped as serde_json escapes it.
pub fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Names, addresses and rule ids need no escape: one look over every byte (no
    // early exit, so the compiler can take many at a time), then one copy.
    let plain = !bytes.iter().fold(false, |esc, &b| {
        esc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(bytes.len().saturating_add(2));
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i.saturating_add(1);
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Append an integer.
pub fn int<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
}

/// Append a float as serde_json does (`null` when not finite).
pub fn float(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        let mut b = zmij::Buffer::new();
        out.extend_from_slice(b.format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Append `"key":` (the key must need no escaping).
pub fn key(out: &mut Vec<u8>, k: &str) {
    out.push(b'"');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Append an address as a JSON string (its `Display` form).
pub fn ip(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            // At most `"255.255.255.255"`: built on the stack, copied once.
            let mut buf = [0u8; 17];
            let mut len = 0usize;
            let mut put = |c: u8| {
                if let Some(slot) = buf.get_mut(len) {
                    *slot = c;
                    len += 1;
                }
            };
            put(b'"');
            for (i, &o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    put(b'.');
                }
                if o >= 100 {
                    put(b'0' + o / 100);
                }
                if o >= 10 {
                    put(b'0' + o / 10 % 10);
                }
                put(b'0' + o % 10);
            }
            put(b'"');
            out.extend_from_slice(buf.get(..len).unwrap_or_default());
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            out.push(b'"');
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{v6}");
            out.push(b'"');
        }
    }
}

/// Append packet time `ns` (nanoseconds since the Unix epoch) as the JSON string
/// `report::iso_time` gives: RFC 3339 in UTC, the fraction without trailing zeros.
pub fn time(out: &mut Vec<u8>, ns: i64) {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..10_000).contains(&y) {
        // Outside RFC 3339: the same fallback as `iso_time` (rare, not hot).
        string(out, &crate::report::iso_time(ns));
        return;
    }
    let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
    // Built on the stack and copied once: a push per character was most of the cost.
    out.extend_from_slice(&[
        b'"',
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(d / 10),
        digit(d),
        b'T',
        digit(hh / 10),
        digit(hh),
        b':',
        digit(mm / 10),
        digit(mm),
        b':',
        digit(ss / 10),
        digit(ss),
    ]);
    if nanos != 0 {
        let mut frac = [b'.'; 10];
        let mut n = nanos;
        for slot in frac.iter_mut().skip(1).rev() {
            *slot = digit(n);
            n /= 10;
        }
        // No trailing zeros (at least one digit stays: `nanos` is not 0).
        let len = frac.iter().rposition(|&c| c != b'0').map_or(1, |i| i + 1);
        out.extend_from_slice(frac.get(..len).unwrap_or_default());
    }
    out.extend_from_slice(b"Z\"");
}

/// The last decimal digit of `v` (0 to 9 for the non-negative values given here).
fn digit(v: i64) -> u8 {
    b'0' + v.rem_euclid(10) as u8
}

/// Proleptic Gregorian date of a day count from 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    // Far outside any capture's time: the caller falls back; avoid overflow.
    if !(-1_000_000_000..=1_000_000_000).contains(&z) {
        return (i64::MIN, 1, 1);
    }
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde<T: serde::Serialize>(v: T) -> String {
        serde_json::to_string(&v).unwrap()
    }

    fn ours(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn strings_escape_as_serde_json() {
        let mut all = String::new();
        for c in 0u32..0x300 {
            if let Some(ch) = char::from_u32(c) {
                all.push(ch);
            }
        }
        for s in [
            "",
            "plain.example.com",
            "a\"b\\c",
            "\u{0}\u{1f}\u{7f}\n\r\t\u{8}\u{c}",
            "ünïcödé ✓ 𝄞",
            all.as_str(),
            "end\\",
            "\"",
        ] {
            assert_eq!(ours(|o| string(o, s)), serde(s), "{s:?}");
        }
    }

    #[test]
    fn numbers_as_serde_json() {
        for n in [0u64, 1, 9, 10, 12345, u64::MAX] {
            assert_eq!(ours(|o| int(o, n)), serde(n));
        }
        for n in [0i64, -1, i64::MIN, i64::MAX] {
            assert_eq!(ours(|o| int(o, n)), serde(n));
        }
        for x in [
            0.0,
            -0.0,
            17.647,
            0.001,
            1e-9,
            123456789.123,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            5e-324,
        ] {
            assert_eq!(ours(|o| float(o, x)), serde(x), "{x}");
        }
        // Round trips of typical RTTs in milliseconds.
        for ns in (0..200_000i64).step_by(7) {
            let x = ns as f64 / 1e6;
            assert_eq!(ours(|o| float(o, x)), serde(x));
        }
    }

    #[test]
    fn addresses_as_display() {
        for a in [
            "0.0.0.0",
            "10.20.1.2",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "fe80::1:2:3:4",
        ] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(ours(|o| ip(o, a)), serde(a.to_string()));
        }
        // Every octet value in every place (one, two and three digits).
        for o in 0..=255u8 {
            for a in [
                [o, 0, 0, 0],
                [1, o, 22, 3],
                [0, 100, o, 9],
                [255, 255, 255, o],
            ] {
                let a = IpAddr::from(a);
                assert_eq!(ours(|out| ip(out, a)), serde(a.to_string()));
            }
        }
    }

    #[test]
    fn times_as_iso_time() {
        let mut cases = vec![
            0i64,
            1,
            -1,
            999_999_999,
            1_000_000_000,
            1_710_234_000_011_042_000,
            951_782_400_000_000_000, // 2000-02-29
            i64::MIN,
            i64::MAX,
            -2_208_988_800_000_000_000, // 1900
        ];
        // Every day boundary over a few centuries, and odd fractions.
        let mut t: i64 = -5_000_000_000_000_000_000;
        while t < 5_000_000_000_000_000_000 {
            cases.push(t);
            cases.push(t + 86_399_123_400_000);
            t += 86_400_000_000_000 * 37 + 1_234_567;
        }
        for ns in cases {
            assert_eq!(
                ours(|o| time(o, ns)),
                serde(crate::report::iso_time(ns)),
                "{ns}"
            );
        }
    }
}
