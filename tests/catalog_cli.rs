//! The catalog and site-file commands as a user runs them: `rules explain` on every
//! seed row, `rules check` on catalogs and site files with one error of each kind
//! (golden messages in `tests/golden-errors/`, exit 2, also from `audit` before any
//! packet is read), `rules doc` against `docs/catalog.md`, and the suggested site
//! roles of the demo capture. Regenerate the golden messages and docs/catalog.md
//! after an intended change with `UPDATE_GOLDEN=1 cargo test --release --test catalog_cli`.

mod common;

use common::*;
use serde_json::Value;

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Acceptance 1: every seed row (tests/seed_rows.tsv) is matched by `mdmaudit rules
/// explain` to a requirement of the expected vendor, on a port it uses.
#[test]
fn rules_explain_covers_every_seed_row() {
    let tsv = std::fs::read_to_string(repo().join("tests/seed_rows.tsv")).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in tsv.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "{line}");
        let (endpoint, transport, vendor) = (cols[2], cols[3], cols[4]);
        let target = if transport == "udp" {
            format!("{endpoint}/udp")
        } else {
            endpoint.to_string()
        };
        let out = run(&["rules", "explain", &target, "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{target}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let ok = v.as_array().unwrap().iter().any(|e| {
            e["vendor"] == vendor
                && e["conditional"] == false
                && e["path"] != "other-port"
                && !e["path"].is_null()
        });
        if !ok {
            failures.push(format!("{} | {} | {target} | {vendor}", cols[0], cols[1]));
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
fn rules_check_accepts_the_shipped_catalog_and_the_seed_site_files() {
    let out = run(&["rules", "check"]);
    assert_eq!(out.status.code(), Some(0));
    let out = run(&["rules", "check", "rules"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in std::fs::read_dir(repo().join("tests/sites")).unwrap() {
        let p = name.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let rel = format!("tests/sites/{}", p.file_name().unwrap().to_string_lossy());
            let out = run(&["rules", "check", "--site", &rel]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{rel}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Acceptance 2 and the robustness issue: each broken file gives exactly its golden
/// message (`file:line:col: message`, the line, a caret) and exit 2, from `rules
/// check` and from `audit` (which stops before reading a packet: no report at all).
#[test]
fn broken_catalogs_and_site_files_give_golden_messages() {
    let dir = repo().join("tests/golden-errors");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    let mut problems = Vec::new();
    for name in names {
        let rel = format!("tests/golden-errors/{name}");
        let site = name.starts_with("site-");
        let check = if site {
            run(&["rules", "check", "--site", &rel])
        } else {
            run(&["rules", "check", &rel])
        };
        assert_eq!(check.status.code(), Some(2), "{rel}");
        let err = String::from_utf8_lossy(&check.stderr).into_owned();
        assert!(err.starts_with(&format!("{rel}:")), "{rel}: {err}");
        let flag = if site { "--site" } else { "--rules" };
        let audit = run(&["audit", "pcaps/all-ok.pcap", flag, &rel]);
        assert_eq!(audit.status.code(), Some(2), "{rel}");
        assert!(audit.stdout.is_empty(), "{rel}: a report was written");
        assert_eq!(String::from_utf8_lossy(&audit.stderr), err, "{rel}: audit");
        let golden = dir.join(name.replace(".toml", ".err"));
        if update() {
            std::fs::write(&golden, &err).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(g) if g == err => {}
            Ok(g) => problems.push(format!("{rel}:\n--- golden\n{g}--- got\n{err}")),
            Err(_) => problems.push(format!("{rel}: no golden {}", golden.display())),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The position of each kind of catalog error (acceptance 2), spelled out.
#[test]
fn catalog_errors_name_file_line_column_and_entry() {
    for (file, head) in [
        (
            "catalog-duplicate-id.toml",
            ":15:6: duplicate requirement id \"x.a\"",
        ),
        (
            "catalog-bad-cidr.toml",
            ":6:14: bad address range \"17.0.0.0/33\"",
        ),
        (
            "catalog-bad-port-range.toml",
            ":8:10: bad port range \"5230-5228\"",
        ),
        (
            "catalog-unknown-field.toml",
            ":8:1: unknown field \"prots\"",
        ),
        (
            "catalog-unknown-profile.toml",
            ":10:13: unknown profile \"apple-devicez\"",
        ),
        (
            "catalog-contradiction.toml",
            ":19:10: contradicts requirement \"x.a\"",
        ),
    ] {
        let rel = format!("tests/golden-errors/{file}");
        let out = run(&["rules", "check", &rel]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with(&format!("{rel}{head}")), "{first}");
        assert!(first.contains("(in requirement \"x."), "{first}");
    }
}

/// Acceptance 5: docs/catalog.md is the output of `rules doc`.
#[test]
fn docs_catalog_md_regenerates_byte_identical() {
    let out = run(&["rules", "doc", "--seed-rows", "tests/seed_rows.tsv"]);
    assert_eq!(out.status.code(), Some(0));
    let path = repo().join("docs/catalog.md");
    if update() {
        std::fs::write(&path, &out.stdout).unwrap();
        return;
    }
    let doc = std::fs::read(&path).expect("docs/catalog.md");
    assert!(
        doc == out.stdout,
        "docs/catalog.md is stale: run `mdmaudit rules doc --seed-rows tests/seed_rows.tsv > docs/catalog.md`"
    );
    let text = String::from_utf8_lossy(&doc);
    assert!(!text.contains("NOT COVERED"), "a seed row is not covered");
}

/// Acceptance 4: without --profile and --site, the demo capture's report lists the
/// inferred profiles and the suggested site roles.
#[test]
fn demo_report_lists_inferred_profiles_and_suggested_roles() {
    let out = run(&["audit", "pcaps/apns-fallback.pcap", "--color", "never"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("profiles apple-devices (inferred: "),
        "{text}"
    );
    assert!(text.contains("site     no site file given"), "{text}");
    assert!(
        text.contains("managed-devices = [\"10.20.1.0/24\"]"),
        "{text}"
    );
    let out = run(&["audit", "pcaps/apns-fallback.pcap", "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["profiles"][0]["how"], "inferred");
    assert_eq!(
        v["site_suggestions"]["roles"]["managed-devices"],
        serde_json::json!(["10.20.1.0/24"])
    );
    assert!(v["site"].is_null());
}
