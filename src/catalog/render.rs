//! Human text about the catalog: `rules list` tables and `rules explain` sentences.

use ipnet::IpNet;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use super::{port, Catalog, MatchBy, PortPath, Requirement};
use crate::model::Transport;

/// Why `rules explain` tied its argument to a requirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExplainBy {
    /// The name matched this host pattern.
    Host(#[serde(serialize_with = "super::serialize_shared")] Arc<str>),
    /// The address lies in this range.
    Address(IpNet),
    /// The argument is this site role, or (when it matched no endpoint) might be.
    SiteRole(String),
}

/// One requirement the argument of `rules explain` belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Index into [`Catalog::requirements`].
    pub req: usize,
    pub id: String,
    pub by: ExplainBy,
    /// The port path, when a port was given.
    pub path: Option<PortPath>,
    /// Whether this is only a possibility: the argument matched no endpoint, and the
    /// requirement goes to a site role on that port.
    pub conditional: bool,
    /// One sentence for a person.
    pub text: String,
}

pub(super) fn explain(
    catalog: &Catalog,
    host_or_ip: &str,
    port: Option<u16>,
    transport: Transport,
) -> Vec<Explanation> {
    let arg = host_or_ip.trim();
    let bare = arg
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(arg);
    let probe = port.unwrap_or(0);
    let mut out = Vec::new();
    let matches = match bare.parse::<IpAddr>() {
        Ok(ip) => catalog.match_flow(None, ip, transport, probe),
        Err(_) => catalog.match_flow(Some(bare), IpAddr::from([0, 0, 0, 0]), transport, probe),
    };
    for m in matches {
        let Some(r) = catalog.requirement(m.req) else {
            continue;
        };
        let by = match m.by {
            MatchBy::Host(p) => ExplainBy::Host(p),
            MatchBy::Address(n) => ExplainBy::Address(n),
            MatchBy::SiteRole { role, .. } => ExplainBy::SiteRole(role),
        };
        out.push(explanation(m.req, r, by, arg, port, transport, false));
    }
    let lower = bare.to_ascii_lowercase();
    for (i, r) in catalog.requirements().iter().enumerate() {
        if r.target.as_deref() == Some(lower.as_str()) && !out.iter().any(|e| e.req == i) {
            let by = ExplainBy::SiteRole(lower.clone());
            out.push(explanation(i, r, by, arg, port, transport, false));
        }
    }
    if out.is_empty() {
        if let Some(p) = port {
            for (i, r) in catalog.requirements().iter().enumerate() {
                let Some(target) = &r.target else { continue };
                if r.port_path(transport, p) != PortPath::OtherPort {
                    let by = ExplainBy::SiteRole(target.clone());
                    out.push(explanation(i, r, by, arg, port, transport, true));
                }
            }
        }
    }
    out.sort_by_key(|e| e.req);
    out
}

fn explanation(
    req: usize,
    r: &Requirement,
    by: ExplainBy,
    arg: &str,
    port: Option<u16>,
    transport: Transport,
    conditional: bool,
) -> Explanation {
    let mut text = format!("{} ({}, {}; {}): ", r.id, r.vendor, r.product, r.role);
    match &by {
        ExplainBy::Host(p) => {
            let _ = write!(text, "host {arg} matches pattern \"{p}\"");
        }
        ExplainBy::Address(n) => {
            let _ = write!(text, "address {arg} is in {n}");
        }
        ExplainBy::SiteRole(t) if conditional => {
            let _ = write!(text, "if {arg} is the site's {t}");
        }
        ExplainBy::SiteRole(t) => {
            let _ = write!(text, "goes to the site's {t}");
        }
    }
    let path = port.map(|p| r.port_path(transport, p));
    text.push_str("; ");
    match (port, path) {
        (Some(p), Some(PortPath::Preferred)) => {
            let _ = write!(text, "{transport}/{p} is a preferred port");
        }
        (Some(p), Some(PortPath::Fallback)) => {
            let _ = write!(
                text,
                "{transport}/{p} is a fallback port (preferred: {})",
                port::join(&r.ports)
            );
        }
        (Some(p), _) => {
            let _ = write!(
                text,
                "{transport}/{p} is not a port it uses ({})",
                ports_text(r)
            );
        }
        (None, _) => text.push_str(&ports_text(r)),
    }
    if r.profiles.is_empty() {
        text.push_str("; in no profile");
    } else {
        let _ = write!(
            text,
            "; {} in {}",
            if r.required { "required" } else { "optional" },
            r.profiles.join(", ")
        );
    }
    if let Some(l) = &r.legacy {
        text.push_str("; LEGACY");
        if let Some(d) = &l.retired {
            let _ = write!(text, ", retired {d}");
        }
        let _ = write!(text, ": {}", l.note);
        if let Some(by) = &l.replaced_by {
            let _ = write!(text, " (replaced by {by})");
        }
    }
    Explanation {
        req,
        id: r.id.clone(),
        by,
        path,
        conditional,
        text,
    }
}

/// `tcp 5223; fallback 443` or `tcp+udp 5228-5230; fallback 443`.
fn ports_text(r: &Requirement) -> String {
    let transports: Vec<&str> = r.transports.iter().map(|t| t.as_str()).collect();
    let mut s = format!("{} {}", transports.join("+"), port::join(&r.ports));
    if !r.fallback.is_empty() {
        let _ = write!(s, "; fallback {}", port::join(&r.fallback));
    }
    s
}

/// Endpoints column: hosts, then addresses, then the site role, cut to about
/// [`ENDPOINTS_WIDTH`] characters with a count of what was left out.
fn endpoints_text(r: &Requirement) -> String {
    let mut items: Vec<String> = r.hosts.iter().map(|h| h.as_str().to_owned()).collect();
    items.extend(r.addresses.iter().map(|a| a.to_string()));
    if let Some(t) = &r.target {
        items.push(format!("<{t}>"));
    }
    let mut s = String::new();
    let mut shown = 0;
    for item in &items {
        if shown > 0 && s.len() + item.len() + 2 > ENDPOINTS_WIDTH {
            break;
        }
        if shown > 0 {
            s.push_str(", ");
        }
        s.push_str(item);
        shown += 1;
    }
    if shown < items.len() {
        let _ = write!(s, " +{} more", items.len() - shown);
    }
    s
}

const ENDPOINTS_WIDTH: usize = 60;

fn flags_text(r: &Requirement) -> String {
    let mut flags = Vec::new();
    if r.required {
        flags.push("required".to_owned());
    }
    if let Some(l) = &r.legacy {
        flags.push(match &l.retired {
            Some(d) => format!("legacy (retired {d})"),
            None => "legacy".to_owned(),
        });
    }
    flags.join(", ")
}

pub(super) fn render_list(catalog: &Catalog, profile: Option<&str>) -> String {
    let mut out = String::new();
    let rows: Vec<&Requirement> = match profile {
        Some(name) => {
            match catalog.profile(name) {
                Some(p) => {
                    let _ = writeln!(out, "profile {}: {}", p.name, p.description);
                }
                None => {
                    let known: Vec<&str> =
                        catalog.profiles().iter().map(|p| p.name.as_str()).collect();
                    let _ = writeln!(
                        out,
                        "no profile named \"{name}\"; profiles: {}",
                        known.join(", ")
                    );
                    return out;
                }
            }
            catalog.in_profile(name).map(|(_, r)| r).collect()
        }
        None => catalog.requirements().iter().collect(),
    };
    let _ = writeln!(
        out,
        "{} requirement{}, {} profile{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        catalog.profiles().len(),
        if catalog.profiles().len() == 1 {
            ""
        } else {
            "s"
        },
    );
    let header = ["ID", "ROLE", "PORTS", "ENDPOINTS", "FLAGS"];
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.role.to_string(),
                ports_text(r),
                endpoints_text(r),
                flags_text(r),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let pad = w.saturating_sub(cell.chars().count());
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &table {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    if profile.is_none() && !catalog.profiles().is_empty() {
        out.push_str("\nPROFILES\n");
        let w = catalog
            .profiles()
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(0);
        for p in catalog.profiles() {
            let n = catalog.in_profile(&p.name).count();
            let plural = if n == 1 { "" } else { "s" };
            let _ = writeln!(
                out,
                "{:w$}  {} ({n} requirement{plural})",
                p.name, p.description
            );
        }
    }
    out
}
