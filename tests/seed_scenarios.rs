//! The per-seed scenario captures in `pcaps/seeds/` (see its README), each audited
//! with its site file from `tests/sites/`: the JSON report is compared byte for byte
//! with `tests/sites/<name>.report.json`, and the verdicts the seed documents imply are
//! checked one by one. Regenerate the goldens after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --release --test seed_scenarios`, then review the diff.

mod common;

use common::*;
use serde_json::Value;

const SEEDS: [&str; 5] = [
    "zenworks-server",
    "bigfix-server",
    "intune-iphone-enroll",
    "xenmobile10-legacy-apns",
    "xenmobile-gateway",
];

fn audit(name: &str) -> (Option<i32>, Vec<u8>) {
    let cap = format!("pcaps/seeds/{name}.pcap");
    let site = format!("tests/sites/{name}.toml");
    let out = run(&["audit", &cap, "--site", &site, "--format", "json"]);
    (out.status.code(), out.stdout)
}

fn report(name: &str) -> Value {
    serde_json::from_slice(&audit(name).1).expect("JSON report")
}

fn findings(v: &Value) -> Vec<(&str, &str, &str)> {
    v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["rule"]["id"].as_str().unwrap_or(""),
                        f["mdmaudit"]["verdict"].as_str().unwrap_or(""),
                        f["source"]["ip"].as_str().unwrap_or("-"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn golden_seed_reports() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut problems = Vec::new();
    for name in SEEDS {
        let (code, a) = audit(name);
        let (_, b) = audit(name);
        assert_eq!(a, b, "{name}: two runs differ");
        assert!(matches!(code, Some(0) | Some(1)), "{name}: status {code:?}");
        let g = repo()
            .join("tests/sites")
            .join(format!("{name}.report.json"));
        if update {
            std::fs::write(&g, &a).unwrap();
            continue;
        }
        match std::fs::read(&g) {
            Ok(x) if x == a => {}
            Ok(_) => problems.push(format!("{name}: report differs from {}", g.display())),
            Err(_) => problems.push(format!("{name}: no golden report {}", g.display())),
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(UPDATE_GOLDEN=1 regenerates)",
        problems.join("\n")
    );
}

#[test]
fn zenworks_everything_open_gives_no_finding() {
    let v = report("zenworks-server");
    assert_eq!(findings(&v), vec![], "{:#}", v["findings"]);
    assert_eq!(audit("zenworks-server").0, Some(0));
    assert_eq!(v["site"]["strict"], true);
}

#[test]
fn bigfix_server_on_2195_is_legacy() {
    let v = report("bigfix-server");
    let f = findings(&v);
    assert!(
        f.contains(&("apple.apns.gateway-legacy", "legacy", "10.20.5.10")),
        "{f:?}"
    );
    assert!(
        !f.iter().any(|x| x.1 == "blocked" || x.1 == "fallback"),
        "{f:?}"
    );
    // The plug-in portal's AMQP and REST calls match through the site roles.
    let reqs = v["requirements"].as_array().unwrap();
    for id in [
        "bigfix.plugin-portal.amqp",
        "bigfix.rest-api",
        "bigfix.ldaps",
        "bigfix.scep",
    ] {
        let st = reqs.iter().find(|r| r["rule"] == id).map(|r| &r["status"]);
        assert_eq!(st, Some(&Value::from("ok")), "{id}");
    }
}

#[test]
fn intune_enrollment_in_strict_mode_is_clean() {
    let v = report("intune-iphone-enroll");
    assert_eq!(findings(&v), vec![], "{:#}", v["findings"]);
}

#[test]
fn xenmobile_8443_refused_is_blocked_with_the_site_address() {
    let v = report("xenmobile10-legacy-apns");
    let all = v["findings"].as_array().unwrap();
    let b = all
        .iter()
        .find(|f| {
            f["rule"]["id"] == "citrix.xenmobile.device-8443"
                && f["mdmaudit"]["verdict"] == "blocked"
        })
        .expect("blocked 8443 finding");
    assert_eq!(b["source"]["ip"], "10.20.1.10");
    assert_eq!(
        b["mdmaudit"]["remediation"],
        "allow tcp/8443 from 10.20.1.0/24 to 10.20.5.10 (citrix.xenmobile.device-8443)"
    );
    let f = findings(&v);
    assert!(
        f.contains(&("apple.apns.gateway-legacy", "legacy", "10.20.5.10")),
        "{f:?}"
    );
    assert!(
        f.contains(&("apple.apns.feedback-legacy", "legacy", "10.20.5.10")),
        "{f:?}"
    );
    // Strict: the iPhone's visit to a shop outside the catalog.
    let u = all
        .iter()
        .find(|f| f["rule"]["id"] == "mdmaudit.site.outside_catalog")
        .expect("unexpected finding");
    assert_eq!(u["mdmaudit"]["verdict"], "unexpected");
    assert_eq!(u["source"]["ip"], "10.20.1.10");
    assert!(u["message"]
        .as_str()
        .unwrap()
        .contains("www.example-shop.test"));
    // DNS to the site's resolvers is not unexpected.
    assert_eq!(
        f.iter()
            .filter(|x| x.0 == "mdmaudit.site.outside_catalog")
            .count(),
        1,
        "{f:?}"
    );
    assert_eq!(audit("xenmobile10-legacy-apns").0, Some(1));
}

#[test]
fn xenmobile_gateway_paths_match_site_roles() {
    let v = report("xenmobile-gateway");
    let reqs = v["requirements"].as_array().unwrap();
    for id in [
        "citrix.gateway.device-https",
        "citrix.gateway.to-xenmobile-8443",
        "citrix.xenmobile.sql",
        "citrix.xenmobile.ldaps",
        "citrix.xenmobile.snmp",
        "apple.apns.provider",
    ] {
        let st = reqs.iter().find(|r| r["rule"] == id).map(|r| &r["status"]);
        assert_eq!(st, Some(&Value::from("ok")), "{id}");
    }
    let f = findings(&v);
    assert!(
        !f.iter().any(|x| x.1 == "blocked" || x.1 == "unexpected"),
        "{f:?}"
    );
}

#[test]
fn without_a_site_file_roles_are_suggested() {
    let out = run(&[
        "audit",
        "pcaps/seeds/zenworks-server.pcap",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let roles = &v["site_suggestions"]["roles"];
    assert_eq!(
        roles["mdm-server"],
        serde_json::json!(["10.20.5.10"]),
        "{v:#}"
    );
    assert_eq!(
        roles["managed-devices"],
        serde_json::json!(["10.20.1.0/24"])
    );
}
