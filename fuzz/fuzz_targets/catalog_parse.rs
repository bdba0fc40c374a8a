//! `mdmaudit::catalog::Catalog::parse_str` on one catalog text (invalid UTF-8 is
//! replaced, as a reader of a user's file would have to), then, for a catalog that
//! loads, the lookups the audit runs (`match_flow`, `name_for_address`, `explain`,
//! `render_list`) and `extend` of the built-in catalog with it; for one that does not,
//! the rendering of its diagnostics.
//!
//! Contract checked: a value for every input (every problem is a diagnostic, never a
//! panic), and an error always carries at least one diagnostic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdmaudit::catalog::Catalog;
use mdmaudit::model::Transport;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const PROBES: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(17, 57, 146, 52)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
    IpAddr::V6(Ipv6Addr::new(0x2620, 0x149, 0xa44, 0, 0, 0, 0, 1)),
];

fn exercise(cat: &Catalog) {
    let _ = cat.render_list(None);
    for p in cat.profiles().iter().take(4) {
        let _ = cat.render_list(Some(&p.name));
    }
    for addr in PROBES {
        let _ = cat.name_for_address(addr);
        let _ = cat.match_flow(None, addr, Transport::Tcp, 443);
    }
    for req in cat.requirements().iter().take(8) {
        for pattern in req.hosts.iter().take(4) {
            let text = pattern.shared();
            // A pattern's text as a name (wildcards and all): tried on both transports.
            let _ = cat.match_flow(Some(&text), PROBES[0], Transport::Tcp, 5223);
            let _ = cat.match_flow(Some(&text), PROBES[2], Transport::Udp, 443);
            let _ = cat.explain(&text, Some(443), Transport::Tcp);
        }
        if let Some(target) = &req.target {
            let _ = cat.explain(target, None, Transport::Tcp);
        }
    }
    let _ = cat.explain("courier.push.apple.com", Some(5223), Transport::Tcp);
    let _ = cat.explain("10.0.0.5", Some(1433), Transport::Tcp);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Catalog::parse_str("fuzz.toml", &text) {
        Ok(cat) => {
            exercise(&cat);
            match Catalog::builtin().extend(cat) {
                Ok(both) => {
                    let _ = both.match_flow(None, PROBES[0], Transport::Tcp, 5223);
                }
                Err(e) => {
                    assert!(!e.diagnostics.is_empty(), "error without a diagnostic");
                    let _ = e.to_string();
                }
            }
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty(), "error without a diagnostic");
            let _ = e.to_string();
        }
    }
});
