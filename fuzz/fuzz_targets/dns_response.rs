//! `mdmaudit::dns::parse_response` (a UDP payload) and `resolve_chain` on what it
//! returns, and `parse_tcp_stream_message` (a DNS-over-TCP stream, length-prefixed) on
//! the same bytes.
//!
//! Contract checked: a value for every input; at most `MAX_ANSWERS` answers kept; names
//! bounded and safe to print; every resolution's chain runs from its name to the owner
//! of an address record of the response, without repeating a name; a TCP message never
//! claims more bytes than the stream holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdmaudit::dns::{
    parse_response, parse_tcp_stream_message, resolve_chain, DnsAnswer, DnsResponse, MAX_ANSWERS,
};
use mdmaudit_fuzz::check_name;

fn check(resp: &DnsResponse) {
    assert!(
        resp.answers.len() <= MAX_ANSWERS,
        "{} answers",
        resp.answers.len()
    );
    if let Some(q) = &resp.question {
        check_name(q);
    }
    for a in &resp.answers {
        check_name(a.name());
        if let DnsAnswer::Cname { target, .. } = a {
            check_name(target);
        }
    }
    let addresses = resp
        .answers
        .iter()
        .filter(|a| !matches!(a, DnsAnswer::Cname { .. }))
        .count();
    let resolutions = resolve_chain(resp);
    assert_eq!(
        resolutions.len(),
        addresses,
        "one resolution per address record"
    );
    for r in &resolutions {
        let first = r.chain.first().expect("empty chain");
        assert_eq!(first, &r.name, "chain does not start at the name");
        assert!(
            r.chain.len() <= resp.answers.len(),
            "chain longer than the answers"
        );
        let owner = r.chain.last().expect("empty chain");
        assert!(
            resp.answers.iter().any(|a| match a {
                DnsAnswer::A { name, addr, .. } => name == owner && r.addr == *addr,
                DnsAnswer::Aaaa { name, addr, .. } => name == owner && r.addr == *addr,
                DnsAnswer::Cname { .. } => false,
            }),
            "chain does not end at the owner of {}",
            r.addr
        );
        for (i, n) in r.chain.iter().enumerate() {
            assert!(!r.chain[..i].contains(n), "chain repeats {n}");
        }
        let min_ttl = resp.answers.iter().map(DnsAnswer::ttl).min().unwrap_or(0);
        assert!(r.ttl >= min_ttl, "ttl below every answer's ttl");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = parse_response(data) {
        check(&resp);
    }
    if let Ok((resp, used)) = parse_tcp_stream_message(data) {
        assert!(
            used <= data.len(),
            "message of {used} bytes in {}",
            data.len()
        );
        check(&resp);
    }
});
