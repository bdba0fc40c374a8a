//! Catalog tests: every diagnostic kind with its exact text and position, matching
//! (wildcards, country codes, ports, addresses), explain and list output, and the
//! built-in catalog itself.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const PROFILE: &str = "[[profile]]\nname = \"p\"\ndescription = \"test profile\"\n";

/// A valid requirement with `extra` lines appended (they may override nothing:
/// TOML forbids duplicate keys, so callers add only fields not set here).
fn req(id: &str, extra: &str) -> String {
    format!(
        "[[requirement]]\nid = \"{id}\"\nvendor = \"V\"\nproduct = \"P\"\nrole = \"device-to-cloud\"\ntransport = \"tcp\"\nrequired = false\nprofiles = [\"p\"]\npurpose = \"x\"\nsource = \"s\"\n{extra}"
    )
}

fn errors(text: &str) -> Vec<String> {
    match Catalog::parse_str("t.toml", text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.diagnostics.iter().map(Diagnostic::headline).collect(),
    }
}

fn one_error(text: &str) -> String {
    let all = errors(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap_or_default()
}

fn ok(text: &str) -> Catalog {
    match Catalog::parse_str("t.toml", text) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

// ---------------------------------------------------------------- built-in data

#[test]
fn builtin_catalog_loads() {
    if let Err(e) = Catalog::try_builtin() {
        panic!("built-in catalog has errors:\n{e}");
    }
    let c = Catalog::builtin();
    assert!(c.requirements().len() >= 5);
    assert!(c.find("apple.apns.device").is_some());
    assert!(c.find("google.fcm.device").is_some());
}

#[test]
fn builtin_entries_cite_sources_and_profiles_have_members() {
    let c = Catalog::builtin();
    for r in c.requirements() {
        assert!(!r.source.is_empty(), "{} has no source", r.id);
        assert!(!r.profiles.is_empty(), "{} is in no profile", r.id);
    }
    for p in c.profiles() {
        assert!(
            c.in_profile(&p.name).count() > 0,
            "profile {} is empty",
            p.name
        );
    }
}

#[test]
fn builtin_apns_and_fcm_paths() {
    let c = Catalog::builtin();
    let apns = c.find("apple.apns.device").unwrap();
    let m = c.match_flow(
        Some("17-courier.push.apple.com"),
        v4(17, 1, 2, 3),
        Transport::Tcp,
        5223,
    );
    assert!(m
        .iter()
        .any(|m| m.req == apns && m.path == PortPath::Preferred));
    let m = c.match_flow(
        Some("courier.push.apple.com"),
        v4(17, 1, 2, 3),
        Transport::Tcp,
        443,
    );
    assert!(m
        .iter()
        .any(|m| m.req == apns && m.path == PortPath::Fallback));
    // No name: the address range still identifies APNs.
    let m = c.match_flow(None, v4(17, 57, 144, 9), Transport::Tcp, 5223);
    assert!(m
        .iter()
        .any(|m| m.req == apns && m.path == PortPath::Preferred));

    let fcm = c.find("google.fcm.device").unwrap();
    for port in [5228, 5229, 5230] {
        let m = c.match_flow(
            Some("mtalk.google.com"),
            v4(142, 250, 1, 1),
            Transport::Tcp,
            port,
        );
        assert!(m
            .iter()
            .any(|m| m.req == fcm && m.path == PortPath::Preferred));
    }
    let m = c.match_flow(
        Some("alt7-mtalk.google.com"),
        v4(142, 250, 1, 1),
        Transport::Tcp,
        443,
    );
    assert!(m
        .iter()
        .any(|m| m.req == fcm && m.path == PortPath::Fallback));

    let legacy = c.find("apple.apns.gateway-legacy").unwrap();
    let m = c.match_flow(None, v4(17, 188, 128, 1), Transport::Tcp, 2195);
    assert!(m
        .iter()
        .any(|m| m.req == legacy && m.path == PortPath::Preferred));
    assert!(c.requirements()[legacy].legacy.is_some());
}

// ---------------------------------------------------------------- diagnostics

#[test]
fn syntax_error_bad_token() {
    let text = "[[requirement]]\nid = \"a\"\nports = [443,,]\n";
    assert_eq!(
        one_error(text),
        "t.toml:3:14: TOML syntax error: invalid array; expected `]`"
    );
}

#[test]
fn syntax_error_unterminated_string() {
    let text = "[[requirement]]\nid = \"apple.apns\n";
    assert_eq!(
        one_error(text),
        "t.toml:2:17: TOML syntax error: invalid basic string"
    );
}

#[test]
fn unknown_field_with_suggestion() {
    let text = format!(
        "{PROFILE}{}",
        req(
            "a.b",
            "hosts = [\"x.example.com\"]\nprots = [\"443\"]\nports = [\"443\"]\n"
        )
    );
    assert_eq!(
        one_error(&text),
        "t.toml:15:1: unknown field \"prots\" in requirement; did you mean \"ports\"? (in requirement \"a.b\")"
    );
}

#[test]
fn unknown_field_without_suggestion_lists_fields() {
    let text = format!(
        "{PROFILE}{}",
        req(
            "a.b",
            "hosts = [\"x.example.com\"]\nports = [\"443\"]\ncolour = \"red\"\n"
        )
    );
    let e = one_error(&text);
    assert!(
        e.starts_with(
            "t.toml:16:1: unknown field \"colour\" in requirement (known fields: id, vendor,"
        ),
        "{e}"
    );
}

#[test]
fn missing_field_points_at_the_header() {
    let text = format!(
        "{PROFILE}[[requirement]]\nid = \"a.b\"\nvendor = \"V\"\nproduct = \"P\"\nrole = \"device-to-cloud\"\nhosts = [\"x.example.com\"]\ntransport = \"tcp\"\nports = [443]\nrequired = true\nprofiles = [\"p\"]\nsource = \"s\"\n"
    );
    assert_eq!(
        one_error(&text),
        "t.toml:4:1: missing field \"purpose\" (in requirement \"a.b\")"
    );
    let d = Catalog::parse_str("t.toml", &text).unwrap_err();
    assert_eq!(
        d.to_string(),
        "t.toml:4:1: missing field \"purpose\" (in requirement \"a.b\")\n  |\n4 | [[requirement]]\n  | ^^^^^^^^^^^^^^^"
    );
}

#[test]
fn duplicate_id_points_at_the_second() {
    let text = format!(
        "{PROFILE}{}{}",
        req("a.b", "hosts = [\"x.example.com\"]\nports = [443]\n"),
        req("a.b", "hosts = [\"y.example.com\"]\nports = [443]\n")
    );
    assert_eq!(
        one_error(&text),
        "t.toml:17:6: duplicate requirement id \"a.b\" (first defined at t.toml:5:6) (in requirement \"a.b\")"
    );
}

#[test]
fn bad_cidr() {
    let text = format!(
        "{PROFILE}{}",
        req(
            "a.b",
            "addresses = [\"17.0.0.0/8\", \"17.0.0.0/33\", \"17.1.0.0/8\"]\nports = [443]\n"
        )
    );
    assert_eq!(
        errors(&text),
        [
            "t.toml:14:28: bad address range \"17.0.0.0/33\": expected an address or a CIDR range like \"17.0.0.0/8\" (in requirement \"a.b\")",
            "t.toml:14:43: bad address range \"17.1.0.0/8\": host bits are set; did you mean \"17.0.0.0/8\"? (in requirement \"a.b\")",
        ]
    );
}

#[test]
fn bad_ports_and_ranges() {
    let text = format!(
        "{PROFILE}{}",
        req("a.b", "hosts = [\"x.example.com\"]\nports = [0, \"70000\", \"5230-5228\", \"443\"]\nfallback = [\"44x\", 443]\n")
    );
    assert_eq!(
        errors(&text),
        [
            "t.toml:15:10: bad port 0: ports are 1-65535 (in requirement \"a.b\")",
            "t.toml:15:13: bad port \"70000\": ports are 1-65535 (in requirement \"a.b\")",
            "t.toml:15:22: bad port range \"5230-5228\": the first port is above the last (in requirement \"a.b\")",
            "t.toml:16:13: bad port \"44x\": expected a number like \"443\" or a range like \"5228-5230\" (in requirement \"a.b\")",
        ]
    );
    let text = format!(
        "{PROFILE}{}",
        req(
            "a.b",
            "hosts = [\"x.example.com\"]\nports = [\"5228-5230\"]\nfallback = [443, \"5230\"]\n"
        )
    );
    assert_eq!(
        one_error(&text),
        "t.toml:16:18: fallback port 5230 is also a preferred port (in requirement \"a.b\")"
    );
}

#[test]
fn unknown_role() {
    let text = format!(
        "{PROFILE}[[requirement]]\nid = \"a.b\"\nvendor = \"V\"\nproduct = \"P\"\nrole = \"device-to-clod\"\nhosts = [\"x.example.com\"]\ntransport = \"tcp\"\nports = [443]\nrequired = true\nprofiles = [\"p\"]\npurpose = \"x\"\nsource = \"s\"\n"
    );
    assert_eq!(
        one_error(&text),
        "t.toml:8:8: unknown role \"device-to-clod\"; did you mean \"device-to-cloud\"? (in requirement \"a.b\")"
    );
}

#[test]
fn unknown_profile() {
    let text = format!(
        "{PROFILE}[[requirement]]\nid = \"a.b\"\nvendor = \"V\"\nproduct = \"P\"\nrole = \"device-to-cloud\"\nhosts = [\"x.example.com\"]\ntransport = \"tcp\"\nports = [443]\nrequired = true\nprofiles = [\"p\", \"q-devices\"]\npurpose = \"x\"\nsource = \"s\"\n"
    );
    assert_eq!(
        one_error(&text),
        "t.toml:13:18: unknown profile \"q-devices\" (define it with [[profile]], as rules/profiles.toml does) (in requirement \"a.b\")"
    );
}

#[test]
fn bad_host_pattern() {
    let text = format!("{PROFILE}{}", req("a.b", "hosts = [\"ok.example.com\", \"https://api.push.apple.com/\", \"api.*.apple.com\"]\nports = [443]\n"));
    assert_eq!(
        errors(&text),
        [
            "t.toml:14:28: bad host pattern \"https://api.push.apple.com/\": write the host name only, without scheme, port or path (in requirement \"a.b\")",
            "t.toml:14:59: bad host pattern \"api.*.apple.com\": wildcards are allowed only in the first label (in requirement \"a.b\")",
        ]
    );
}

#[test]
fn empty_file() {
    assert_eq!(
        one_error("# only a comment\n\n"),
        "t.toml:1:1: file is empty: it defines no [[requirement]] and no [[profile]]"
    );
    assert_eq!(
        one_error(""),
        "t.toml:1:1: file is empty: it defines no [[requirement]] and no [[profile]]"
    );
}

#[test]
fn wrong_types_and_shapes() {
    let text = format!(
        "{PROFILE}{}",
        req("a.b", "hosts = \"x.example.com\"\nports = [443]\n")
    );
    assert_eq!(
        one_error(&text),
        "t.toml:14:9: field \"hosts\" must be an array of strings, found a string (in requirement \"a.b\")"
    );
    assert_eq!(
        one_error("[requirement]\nid = \"a\"\n"),
        "t.toml:1:2: \"requirement\" must be an array of tables: write [[requirement]]"
    );
    assert_eq!(
        one_error("[[requirment]]\nid = \"a\"\n"),
        "t.toml:1:3: unknown top-level key \"requirment\"; did you mean [[requirement]]?"
    );
}

#[test]
fn bad_id_and_no_identity() {
    let text = format!(
        "{PROFILE}{}",
        req("Apple APNs", "hosts = [\"x.example.com\"]\nports = [443]\n")
    );
    assert_eq!(
        one_error(&text),
        "t.toml:5:6: bad id \"Apple APNs\": use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
    );
    let text = format!("{PROFILE}{}", req("a.b", "ports = [443]\n"));
    assert_eq!(
        one_error(&text),
        "t.toml:4:1: requirement has no hosts, addresses or target, so nothing can match it (in requirement \"a.b\")"
    );
}

#[test]
fn legacy_table_is_checked() {
    let text = format!(
        "{PROFILE}{}",
        req("a.b", "hosts = [\"x.example.com\"]\nports = [443]\nlegacy = { retired = \"2021-13-01\", note = \"n\", replaced = \"c\" }\n")
    );
    assert_eq!(
        errors(&text),
        [
            "t.toml:16:22: bad date \"2021-13-01\" in legacy.retired: expected YYYY-MM-DD (in requirement \"a.b\")",
            "t.toml:16:48: unknown field \"replaced\" in legacy; did you mean \"replaced_by\"? (in requirement \"a.b\")",
        ]
    );
    let text = format!(
        "{PROFILE}{}",
        req("a.b", "hosts = [\"x.example.com\"]\nports = [443]\nlegacy = { retired = 2021-03-31, note = \"n\", replaced_by = \"nope\" }\n")
    );
    assert_eq!(
        one_error(&text),
        "t.toml:16:60: legacy.replaced_by names unknown requirement \"nope\" (in requirement \"a.b\")"
    );
}

#[test]
fn contradicting_legacy_marks() {
    let text = format!(
        "{PROFILE}{}{}",
        req("old", "hosts = [\"gw.example.com\"]\nports = [\"2195-2196\"]\nlegacy = { note = \"retired\" }\n"),
        req("new", "hosts = [\"gw.example.com\"]\nports = [\"443\"]\nfallback = [\"2196\"]\n"),
    );
    assert_eq!(
        one_error(&text),
        "t.toml:27:10: contradicts requirement \"old\" (t.toml:14:10): both cover host \"gw.example.com\" on tcp/2196, but only \"old\" is marked legacy (in requirement \"new\")"
    );
    // Disjoint ports, or both legacy: no contradiction.
    ok(&format!(
        "{PROFILE}{}{}",
        req(
            "old",
            "hosts = [\"gw.example.com\"]\nports = [\"2195\"]\nlegacy = { note = \"retired\" }\n"
        ),
        req("new", "hosts = [\"gw.example.com\"]\nports = [\"443\"]\n"),
    ));
}

#[test]
fn collects_every_error_of_a_file() {
    let text = format!(
        "{PROFILE}{}{}",
        req("a.b", "hosts = [\"x.example.com\"]\nports = [0]\n"),
        req(
            "c.d",
            "hosts = [\"*.com\"]\nports = [443]\nprofiles2 = []\n"
        ),
    );
    let all = errors(&text);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all[0].starts_with("t.toml:15:10: bad port 0"));
    assert!(all[1].starts_with("t.toml:26:10: bad host pattern \"*.com\""));
    assert!(all[2].starts_with("t.toml:28:1: unknown field \"profiles2\""));
}

#[test]
fn profile_errors() {
    let text = "[[profile]]\nname = \"p\"\ndescription = \"d\"\ninfer = [\"no.such\"]\n[[profile]]\nname = \"p\"\ndescription = \"again\"\n[[profile]]\nname = \"Bad Name\"\ndescripton = \"x\"\n";
    assert_eq!(
        errors(text),
        [
            "t.toml:4:10: profile infers from unknown requirement \"no.such\" (in profile \"p\")",
            "t.toml:6:8: duplicate profile \"p\" (first defined at t.toml:2:8) (in profile \"p\")",
            "t.toml:8:1: missing field \"description\"",
            "t.toml:9:8: bad profile name \"Bad Name\": use lowercase letters, digits and '-'",
            "t.toml:10:1: unknown field \"descripton\" in profile; did you mean \"description\"?",
        ]
    );
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mdmaudit-catalog-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn non_utf8_file_reports_the_first_bad_byte() {
    let dir = temp_dir("utf8");
    let path = dir.join("bad.toml");
    std::fs::write(&path, b"[[profile]]\nname = \"caf\xe9\"\n").unwrap();
    let err = Catalog::load(std::slice::from_ref(&path)).unwrap_err();
    let name = path.display().to_string();
    assert_eq!(
        err.diagnostics[0].headline(),
        format!("{name}:2:12: file is not valid UTF-8 (byte 0xe9)")
    );
    assert_eq!(err.diagnostics[0].source_line, "name = \"caf\u{fffd}\"");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_reads_directories_in_name_order_and_extends() {
    let dir = temp_dir("dir");
    std::fs::write(
        dir.join("b.toml"),
        req("b.one", "hosts = [\"b.example.com\"]\nports = [443]\n"),
    )
    .unwrap();
    std::fs::write(dir.join("a.toml"), PROFILE).unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let c = Catalog::load(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(c.requirements().len(), 1);
    assert!(c.requirements()[0].origin.file.ends_with("b.toml"));
    assert_eq!(c.requirements()[0].origin.line, 1);

    // A user file may use the built-in profiles when added to the built-in set...
    let user = dir.join("user.toml");
    std::fs::write(
        &user,
        "[[requirement]]\nid = \"site.proxy\"\nvendor = \"Site\"\nproduct = \"Proxy\"\nrole = \"device-to-server\"\ntarget = \"proxy\"\ntransport = \"tcp\"\nports = [3128]\nrequired = false\nprofiles = [\"apple-devices\"]\npurpose = \"x\"\nsource = \"local\"\n",
    )
    .unwrap();
    let both = Catalog::builtin()
        .extend_from_paths(std::slice::from_ref(&user))
        .unwrap();
    assert!(both.find("site.proxy").is_some());
    // ...but alone it lacks them.
    let alone = Catalog::load(std::slice::from_ref(&user)).unwrap_err();
    assert!(alone.diagnostics[0]
        .message
        .starts_with("unknown profile \"apple-devices\""));

    // Ids stay unique across extend.
    let again = Catalog::builtin().extend(Catalog::builtin()).unwrap_err();
    assert!(again.diagnostics[0].message.starts_with("duplicate "));

    let missing = Catalog::load(&[dir.join("nope.toml")]).unwrap_err();
    assert!(missing.diagnostics[0]
        .message
        .starts_with("cannot read file:"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- matching

fn matching_catalog() -> Catalog {
    ok(&format!(
        "{PROFILE}{}{}{}{}{}",
        req("push", "hosts = [\"courier.push.apple.com\", \"#-courier.push.apple.com\", \"*.push.apple.com\"]\naddresses = [\"17.0.0.0/8\", \"2620:149:a44::/48\"]\nports = [\"5223\"]\nfallback = [\"443\"]\n"),
        req("accounts", "hosts = [\"accounts.google.com\", \"accounts.google.[cctld]\"]\nports = [443]\n"),
        req("fcm", "hosts = [\"mtalk.google.com\", \"alt#-mtalk.google.com\"]\ntransport2 = 1\n")
            .replace("transport = \"tcp\"\n", "transport = [\"tcp\", \"udp\"]\n")
            .replace("transport2 = 1\n", "ports = [\"5228-5230\"]\nfallback = [443]\n"),
        req("narrow", "addresses = [\"17.57.144.0/22\"]\nports = [5223]\n"),
        req("site", "target = \"mdm-server\"\nports = [443, 8443]\n").replace("device-to-cloud", "device-to-server"),
    ))
}

#[test]
fn host_matching_is_case_insensitive_and_wildcards_need_a_label() {
    let c = matching_catalog();
    let push = c.find("push").unwrap();
    let m = c.match_flow(
        Some("COURIER.push.apple.com."),
        v4(1, 1, 1, 1),
        Transport::Tcp,
        5223,
    );
    assert_eq!(
        m,
        [Match {
            req: push,
            path: PortPath::Preferred,
            by: MatchBy::Host("courier.push.apple.com".into()),
        }]
    );
    let m = c.match_flow(
        Some("12-courier.push.apple.com"),
        v4(1, 1, 1, 1),
        Transport::Tcp,
        443,
    );
    assert_eq!(m[0].by, MatchBy::Host("#-courier.push.apple.com".into()));
    assert_eq!(m[0].path, PortPath::Fallback);
    let m = c.match_flow(
        Some("api.push.apple.com"),
        v4(1, 1, 1, 1),
        Transport::Tcp,
        2197,
    );
    assert_eq!(m[0].by, MatchBy::Host("*.push.apple.com".into()));
    assert_eq!(m[0].path, PortPath::OtherPort);
    // Apex of a "*." pattern, and a look-alike suffix, do not match.
    assert!(c
        .match_flow(Some("push.apple.com"), v4(1, 1, 1, 1), Transport::Tcp, 443)
        .is_empty());
    assert!(c
        .match_flow(
            Some("push.apple.com.evil.example"),
            v4(1, 1, 1, 1),
            Transport::Tcp,
            443
        )
        .is_empty());
}

#[test]
fn country_code_hosts() {
    let c = matching_catalog();
    let acc = c.find("accounts").unwrap();
    for name in [
        "accounts.google.com",
        "accounts.google.de",
        "accounts.google.co.uk",
        "accounts.google.com.au",
    ] {
        let m = c.match_flow(Some(name), v4(8, 8, 8, 8), Transport::Tcp, 443);
        assert_eq!(m.len(), 1, "{name}");
        assert_eq!((m[0].req, m[0].path), (acc, PortPath::Preferred), "{name}");
    }
    let m = c.match_flow(
        Some("accounts.google.com"),
        v4(8, 8, 8, 8),
        Transport::Tcp,
        443,
    );
    assert_eq!(m[0].by, MatchBy::Host("accounts.google.com".into()));
    let m = c.match_flow(
        Some("accounts.google.fr"),
        v4(8, 8, 8, 8),
        Transport::Tcp,
        443,
    );
    assert_eq!(m[0].by, MatchBy::Host("accounts.google.[cctld]".into()));
    assert!(c
        .match_flow(
            Some("accounts.google.net"),
            v4(8, 8, 8, 8),
            Transport::Tcp,
            443
        )
        .is_empty());
}

#[test]
fn port_ranges_transports_and_fallback() {
    let c = matching_catalog();
    let path = |port: u16, t: Transport| {
        c.match_flow(Some("alt3-mtalk.google.com"), v4(8, 8, 8, 8), t, port)
            .first()
            .map(|m| m.path)
    };
    assert_eq!(path(5228, Transport::Tcp), Some(PortPath::Preferred));
    assert_eq!(path(5230, Transport::Udp), Some(PortPath::Preferred));
    assert_eq!(path(5231, Transport::Tcp), Some(PortPath::OtherPort));
    assert_eq!(path(443, Transport::Tcp), Some(PortPath::Fallback));
    // APNs is TCP only: UDP on its port is "other".
    let m = c.match_flow(
        Some("courier.push.apple.com"),
        v4(17, 1, 1, 1),
        Transport::Udp,
        5223,
    );
    assert_eq!(m[0].path, PortPath::OtherPort);
}

#[test]
fn address_matching_and_identity_rule() {
    let c = matching_catalog();
    let (push, narrow) = (c.find("push").unwrap(), c.find("narrow").unwrap());
    // No name: every range counts, sorted by requirement index.
    let m = c.match_flow(None, v4(17, 57, 145, 1), Transport::Tcp, 5223);
    let got: Vec<(usize, PortPath)> = m.iter().map(|m| (m.req, m.path)).collect();
    assert_eq!(
        got,
        [(push, PortPath::Preferred), (narrow, PortPath::Preferred)]
    );
    assert_eq!(m[0].by, MatchBy::Address("17.0.0.0/8".parse().unwrap()));
    // With a name that is not APNs, the host-pattern requirement does not match by
    // address, but the host-less one still does.
    let m = c.match_flow(
        Some("www.apple.com"),
        v4(17, 57, 145, 1),
        Transport::Tcp,
        5223,
    );
    assert_eq!(m.iter().map(|m| m.req).collect::<Vec<_>>(), [narrow]);
    // IPv6 and IPv4-mapped IPv6.
    let v6: IpAddr = "2620:149:a44::10".parse().unwrap();
    assert_eq!(
        c.match_flow(None, v6, Transport::Tcp, 443)[0].path,
        PortPath::Fallback
    );
    let mapped = IpAddr::V6(Ipv4Addr::new(17, 2, 3, 4).to_ipv6_mapped());
    assert_eq!(
        c.match_flow(None, mapped, Transport::Tcp, 5223)[0].req,
        push
    );
    assert!(c
        .match_flow(None, IpAddr::V6(Ipv6Addr::LOCALHOST), Transport::Tcp, 443)
        .is_empty());
    // Site-role requirements never match by identity here.
    assert!(c
        .match_flow(None, v4(10, 0, 0, 1), Transport::Tcp, 8443)
        .is_empty());
}

#[test]
fn name_for_address_picks_the_most_specific_range() {
    let c = matching_catalog();
    let (vendor, net) = c.name_for_address(v4(17, 57, 146, 1)).unwrap();
    assert_eq!((vendor, net.to_string().as_str()), ("V", "17.57.144.0/22"));
    let (_, net) = c.name_for_address(v4(17, 1, 1, 1)).unwrap();
    assert_eq!(net.to_string(), "17.0.0.0/8");
    assert!(c.name_for_address(v4(10, 1, 1, 1)).is_none());
    let builtin = Catalog::builtin();
    assert_eq!(
        builtin.name_for_address(v4(17, 253, 1, 1)).map(|v| v.0),
        Some("Apple")
    );
}

#[test]
fn explain_names_pattern_port_path_and_legacy() {
    let c = Catalog::builtin();
    let e = c.explain("gateway.push.apple.com", Some(2195), Transport::Tcp);
    let legacy = e
        .iter()
        .find(|e| e.id == "apple.apns.gateway-legacy")
        .unwrap();
    assert_eq!(legacy.path, Some(PortPath::Preferred));
    assert!(
        legacy.text.contains("LEGACY, retired 2021-03-31"),
        "{}",
        legacy.text
    );
    assert!(legacy.text.contains("(replaced by apple.apns.provider)"));

    let e = c.explain("courier.push.apple.com", Some(443), Transport::Tcp);
    assert_eq!(
        e[0].text,
        "apple.apns.device (Apple, Apple Push Notification service; device-to-cloud): host courier.push.apple.com matches pattern \"courier.push.apple.com\"; tcp/443 is a fallback port (preferred: 5223); required in apple-devices"
    );
    let e = c.explain("17.1.2.3", None, Transport::Tcp);
    assert!(e
        .iter()
        .any(|e| e.id == "apple.apns.device" && e.path.is_none()));
    assert!(e[0].text.contains("address 17.1.2.3 is in 17.0.0.0/8"));
}

#[test]
fn explain_site_roles() {
    let c = matching_catalog();
    let e = c.explain("mdm-server", Some(8443), Transport::Tcp);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].by, ExplainBy::SiteRole("mdm-server".into()));
    assert!(!e[0].conditional);
    let e = c.explain("10.0.0.5", Some(8443), Transport::Tcp);
    assert_eq!(e.len(), 1);
    assert!(e[0].conditional);
    assert!(
        e[0].text.contains("if 10.0.0.5 is the site's mdm-server"),
        "{}",
        e[0].text
    );
    assert!(c.explain("10.0.0.5", Some(9999), Transport::Tcp).is_empty());
}

#[test]
fn render_list_and_json() {
    let c = matching_catalog();
    let all = c.render_list(None);
    assert!(all.starts_with("5 requirements, 1 profile\nID"), "{all}");
    assert!(
        all.contains("push      device-to-cloud   tcp 5223; fallback 443"),
        "{all}"
    );
    assert!(all.contains("<mdm-server>"));
    let one = c.render_list(Some("p"));
    assert!(one.starts_with("profile p: test profile\n"));
    assert!(c
        .render_list(Some("zz"))
        .starts_with("no profile named \"zz\""));
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        json["requirements"][0]["hosts"][1],
        "#-courier.push.apple.com"
    );
    assert_eq!(json["requirements"][0]["ports"][0], "5223");
    assert_eq!(json["requirements"][0]["role"], "device-to-cloud");
    assert_eq!(json["requirements"][0]["transports"][0], "tcp");
    let m = serde_json::to_value(c.match_flow(
        Some("api.push.apple.com"),
        v4(1, 1, 1, 1),
        Transport::Tcp,
        443,
    ))
    .unwrap();
    assert_eq!(m[0]["by"]["host"], "*.push.apple.com");
    assert_eq!(m[0]["path"], "fallback");
}

// ---------------------------------------------------------------- seed coverage

/// Every row of the seed documents (tests/seed_rows.tsv) is explained by a
/// requirement of the expected vendor, on a port that requirement uses.
#[test]
fn every_seed_row_is_covered_by_the_builtin_catalog() {
    let c = Catalog::builtin();
    let tsv = include_str!("../../tests/seed_rows.tsv");
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, line) in tsv.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let [seed, row, endpoint, transport, vendor] = cols[..] else {
            panic!("seed_rows.tsv:{}: expected 5 columns: {line}", n + 1);
        };
        let (host, port) = endpoint.rsplit_once(':').unwrap();
        let port: u16 = port.parse().unwrap();
        let transport = match transport {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            other => panic!("seed_rows.tsv:{}: transport {other}", n + 1),
        };
        let found = c.explain(host, Some(port), transport).into_iter().any(|e| {
            !e.conditional
                && e.path != Some(PortPath::OtherPort)
                && c.requirements()[e.req].vendor == vendor
        });
        if !found {
            failures.push(format!(
                "{seed} | {row} | {endpoint}/{transport} | {vendor}"
            ));
        }
        checked += 1;
    }
    assert!(checked > 200, "only {checked} rows");
    assert!(
        failures.is_empty(),
        "rows not covered:\n{}",
        failures.join("\n")
    );
}

#[test]
fn builtin_legacy_entries_and_profiles() {
    let c = Catalog::builtin();
    let legacy: Vec<&str> = c
        .requirements()
        .iter()
        .filter(|r| r.legacy.is_some())
        .map(|r| r.id.as_str())
        .collect();
    for id in [
        "apple.apns.gateway-legacy",
        "apple.apns.feedback-legacy",
        "google.fcm.xmpp",
    ] {
        assert!(legacy.contains(&id), "{id} should be legacy");
    }
    for name in [
        "apple-devices",
        "android-devices",
        "windows-devices",
        "zenworks-server",
        "bigfix-server",
        "xenmobile-server",
        "citrix-gateway",
    ] {
        assert!(c.profile(name).is_some(), "profile {name}");
    }
    let required: Vec<&str> = c
        .in_profile("apple-devices")
        .filter(|(_, r)| r.required)
        .map(|(_, r)| r.id.as_str())
        .collect();
    assert_eq!(required, ["apple.apns.device"]);
    let required: Vec<&str> = c
        .in_profile("android-devices")
        .filter(|(_, r)| r.required)
        .map(|(_, r)| r.id.as_str())
        .collect();
    assert_eq!(required, ["google.fcm.device"]);
}
