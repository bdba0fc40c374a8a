//! HTTP/1.x server name: the `Host` header (or the CONNECT authority) of the first
//! request a client sends.
//!
//! This module owns recognizing an HTTP/1.x request line at the start of a client's
//! byte stream and reading the name it is addressed to. It is a pure byte parser: it
//! knows nothing of flows or the catalog, looks at no more than [`MAX_SCAN_BYTES`], never
//! allocates beyond the one name it returns, never panics, and answers `None` rather than
//! guess: a buffer cut before the end of the `Host` line gives no name, because a cut
//! value could be a wrong, shorter name.

use crate::dns::HostName;

/// Bytes of the client's stream looked at.
pub const MAX_SCAN_BYTES: usize = 4096;

/// Methods that start a request we recognize (with the space that follows).
const METHODS: [&[u8]; 8] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
];

/// The name an HTTP/1.x request is addressed to, if `payload` (the client's first bytes)
/// starts with a complete request line: for CONNECT the authority of the request
/// target, for an absolute-form target (`GET http://host/ HTTP/1.1`, sent to proxies)
/// its authority, otherwise the first `Host` header. The port and a trailing dot are
/// removed, letters lowercased, and IPv6 literals lose their brackets.
pub fn host_from_request(payload: &[u8]) -> Option<HostName> {
    let buf = payload.get(..MAX_SCAN_BYTES).unwrap_or(payload);
    let method = METHODS.iter().find(|m| buf.starts_with(m))?;
    let (line, mut rest) = split_line(buf)?;
    let after_method = line.get(method.len()..)?;
    let sp = after_method.iter().position(|&b| b == b' ')?;
    let (target, version) = split_around(after_method, sp, 1)?;
    if !version.starts_with(b"HTTP/1.") || target.is_empty() {
        return None;
    }
    if method.starts_with(b"CONNECT") {
        return host_of_authority(target);
    }
    if let Some(authority) = absolute_form_authority(target) {
        return host_of_authority(authority);
    }
    while let Some((line, next)) = split_line(rest) {
        if line.is_empty() {
            return None; // end of the headers without a Host
        }
        if let Some(value) = header_value(line, b"host") {
            return host_of_authority(value);
        }
        rest = next;
    }
    None
}

/// Splits off one line ending in LF (a CR before it is dropped). `None` when no line end
/// is within the buffer: the line may be cut.
fn split_line(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let lf = buf.iter().position(|&b| b == b'\n')?;
    let (line, rest) = split_around(buf, lf, 1)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, rest))
}

/// `s` split around the `sep_len` separator bytes at `at` (a position found in `s`):
/// what comes before them and what comes after.
fn split_around(s: &[u8], at: usize, sep_len: usize) -> Option<(&[u8], &[u8])> {
    let (head, tail) = s.split_at_checked(at)?;
    Some((head, tail.get(sep_len..)?))
}

/// The value of a header line if its name is `name` (ASCII case-insensitive), without
/// surrounding spaces or tabs.
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (line_name, value) = split_around(line, colon, 1)?;
    if !line_name.eq_ignore_ascii_case(name) {
        return None;
    }
    Some(trim(value))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let Some((first, rest)) = s.split_first() {
        if *first != b' ' && *first != b'\t' {
            break;
        }
        s = rest;
    }
    while let Some((last, rest)) = s.split_last() {
        if *last != b' ' && *last != b'\t' {
            break;
        }
        s = rest;
    }
    s
}

/// The authority of an `http://` or `https://` target (scheme case-insensitive).
fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let sep = target.windows(3).position(|w| w == b"://")?;
    let (scheme, rest) = split_around(target, sep, 3)?;
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return None;
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    rest.get(..end)
}

/// The host of `[userinfo@]host[:port]`; IPv6 literals lose their brackets.
fn host_of_authority(authority: &[u8]) -> Option<HostName> {
    let authority = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => split_around(authority, at, 1)?.1,
        None => authority,
    };
    if let Some(inner) = authority.strip_prefix(b"[") {
        let close = inner.iter().position(|&b| b == b']')?;
        return HostName::from_wire(inner.get(..close)?);
    }
    let host = match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => match split_around(authority, colon, 1)? {
            (host, port) if port.iter().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        },
        None => authority,
    };
    HostName::from_wire(host)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
mod tests {
    use super::*;

    fn host(payload: &[u8]) -> Option<String> {
        host_from_request(payload).map(|h| h.as_str().to_owned())
    }

    #[test]
    fn get_with_host_header() {
        let req = b"GET /mdm/checkin HTTP/1.1\r\n\
                    User-Agent: MDM/1.0\r\n\
                    Host: MDM.Example.COM:8443\r\n\
                    Accept: */*\r\n\r\n";
        assert_eq!(host(req).as_deref(), Some("mdm.example.com"));
    }

    #[test]
    fn header_name_case_and_spacing() {
        let req = b"POST /x HTTP/1.0\nhOsT:\t gateway.icloud.com. \n\n";
        assert_eq!(host(req).as_deref(), Some("gateway.icloud.com"));
    }

    #[test]
    fn connect_uses_the_authority() {
        let req = b"CONNECT courier.push.apple.com:443 HTTP/1.1\r\nHost: proxy.local\r\n\r\n";
        assert_eq!(host(req).as_deref(), Some("courier.push.apple.com"));
        let v6 = b"CONNECT [2001:DB8::1]:5223 HTTP/1.1\r\n\r\n";
        assert_eq!(host(v6).as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn absolute_form_target_wins_over_host() {
        let req = b"GET http://user@albert.apple.com:80/deviceservices HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(host(req).as_deref(), Some("albert.apple.com"));
    }

    #[test]
    fn not_http_or_no_host() {
        assert_eq!(host(b""), None);
        assert_eq!(host(b"\x16\x03\x01\x00\x05hello"), None);
        assert_eq!(host(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\nHost: late\r\n"),
            None
        );
        assert_eq!(host(b"GET / SIP/2.0\r\nHost: a\r\n\r\n"), None);
        assert_eq!(host(b"get / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(host(b"GET / HTTP/1.1\r\nHost: \r\n\r\n"), None);
    }

    #[test]
    fn cut_buffers_give_no_guess() {
        let req = b"GET / HTTP/1.1\r\nHost: deviceenrollment.apple.com\r\n\r\n";
        for n in 0..req.len() {
            let got = host(&req[..n]);
            // Only once the Host line's end is inside the buffer do we answer.
            let line_end = 16 + "Host: deviceenrollment.apple.com".len() + 1;
            if n > line_end {
                assert_eq!(got.as_deref(), Some("deviceenrollment.apple.com"), "n={n}");
            } else {
                assert_eq!(got, None, "n={n}");
            }
        }
    }

    #[test]
    fn scan_is_bounded() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        while req.len() < MAX_SCAN_BYTES {
            req.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        req.extend_from_slice(b"Host: beyond.example\r\n\r\n");
        assert_eq!(host(&req), None);
    }

    #[test]
    fn odd_host_is_escaped() {
        let req = b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n";
        let h = host_from_request(req).unwrap();
        assert!(h.is_escaped());
        assert_eq!(h.as_str(), "a\\x01b");
    }
}
