//! The site file: which of a deployment's addresses play which role (managed devices,
//! the MDM server, LDAP, SQL, the gateway...), which profiles apply, whether strict
//! mode is on, and which extra destinations the site allows. Format:
//! `docs/site-file.md`.
//!
//! This module owns parsing and validating a site file against a catalog (role names
//! come from the catalog's `target` and `initiator` vocabulary, profiles from its
//! profiles) and the address lookups the audit layer asks for ("is 10.20.1.7 a
//! managed device?", "which site range holds 10.20.1.5 as mdm-server?"). Every
//! problem is a [`Diagnostic`] (`file:line:col`, the line, a caret), never a panic.
//! It knows nothing of packets, flows or verdicts.

use crate::catalog::diag::{suggest, Diagnostic};
use crate::catalog::parse::{parse_address, syntax_message, unknown_field_message, valid_name};
use crate::catalog::tree::{self, Key, Node, Value};
use crate::catalog::{Catalog, HostPattern, PortRange};
use crate::model::Transport;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

/// Role name of the managed devices' address ranges.
pub const MANAGED_DEVICES: &str = "managed-devices";
/// Role name of the site's MDM server(s).
pub const MDM_SERVER: &str = "mdm-server";
/// Role name of the site's DNS resolvers (strict mode lets devices query them).
pub const DNS: &str = "dns";
/// Role name of administrators' workstations (the initiators of admin-to-server and
/// admin-to-cloud requirements).
pub const ADMIN: &str = "admin";

/// Largest site file accepted.
const MAX_SITE_BYTES: u64 = 4 << 20;

const TOP_KEYS: [&str; 3] = ["site", "roles", "allow"];
const SITE_FIELDS: [&str; 3] = ["name", "strict", "profiles"];
const ALLOW_FIELDS: [&str; 6] = ["id", "hosts", "addresses", "transport", "ports", "note"];

/// A destination the site allows in strict mode although no requirement names it
/// (`[[allow]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SiteAllow {
    /// Unique id within the site file.
    pub id: String,
    /// Server names (catalog host pattern syntax); empty: any name.
    pub hosts: Vec<HostPattern>,
    /// Address ranges; empty: any address.
    pub addresses: Vec<IpNet>,
    /// Transports the ports apply to; empty: both.
    pub transports: Vec<Transport>,
    /// Ports; empty: any port.
    pub ports: Vec<PortRange>,
    /// Why the site allows it.
    pub note: Option<String>,
}

impl SiteAllow {
    /// Whether a flow to (`name`, `addr`, `transport`, `port`) is allowed by this entry.
    pub fn allows(
        &self,
        name: Option<&str>,
        addr: IpAddr,
        transport: Transport,
        port: u16,
    ) -> bool {
        let host_ok =
            self.hosts.is_empty() || name.is_some_and(|n| self.hosts.iter().any(|h| h.matches(n)));
        let addr_ok = self.addresses.is_empty() || self.addresses.iter().any(|n| n.contains(&addr));
        let transport_ok = self.transports.is_empty() || self.transports.contains(&transport);
        let port_ok = self.ports.is_empty() || self.ports.iter().any(|p| p.contains(port));
        host_ok && addr_ok && transport_ok && port_ok
    }
}

/// A validated site file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Site {
    /// The file as given on the command line.
    pub file: String,
    /// `[site] name`.
    pub name: Option<String>,
    /// `[site] strict`: managed devices and the MDM server talking to a destination
    /// outside the catalog (and outside `[[allow]]`) is a finding.
    pub strict: bool,
    /// `[site] profiles`: the profiles to judge, as `--profile` would select them.
    pub profiles: Vec<String>,
    /// Role name -> address ranges, from `[roles]`.
    pub roles: BTreeMap<String, Vec<IpNet>>,
    /// `[[allow]]` entries.
    pub allow: Vec<SiteAllow>,
}

/// Every problem found in a site file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SiteError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::catalog::diag::write_diagnostics(f, &self.diagnostics, "the site file")
    }
}

impl std::error::Error for SiteError {}

/// The role names a site file may assign: every `target` and `initiator` of the
/// catalog, plus `managed-devices`, `mdm-server` and `admin`, sorted.
pub fn role_vocabulary(catalog: &Catalog) -> Vec<String> {
    let mut v: Vec<String> = catalog
        .requirements()
        .iter()
        .flat_map(|r| r.target.iter().chain(r.initiator.iter()).cloned())
        .chain([MANAGED_DEVICES, MDM_SERVER, ADMIN].map(str::to_owned))
        .collect();
    v.sort();
    v.dedup();
    v
}

impl Site {
    /// Reads and validates a site file against `catalog`.
    pub fn load(path: &Path, catalog: &Catalog) -> Result<Site, SiteError> {
        let name = path.display().to_string();
        let whole = |message: String| SiteError {
            diagnostics: vec![Diagnostic::at(&name, "", 0..0, None, message)],
        };
        if let Ok(m) = std::fs::metadata(path) {
            if m.is_dir() {
                return Err(whole("a site file must be a file, not a directory".into()));
            }
            if m.len() > MAX_SITE_BYTES {
                return Err(whole("file is larger than 4 MiB".into()));
            }
        }
        match std::fs::read(path) {
            Ok(bytes) => Site::parse_bytes(&name, &bytes, catalog),
            Err(e) => Err(whole(format!("cannot read file: {e}"))),
        }
    }

    /// Validates a site file's bytes; `file` names it in diagnostics.
    pub fn parse_bytes(file: &str, bytes: &[u8], catalog: &Catalog) -> Result<Site, SiteError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Site::parse_str(file, text, catalog),
            Err(e) => Err(SiteError {
                diagnostics: vec![crate::catalog::parse::utf8_error(file, bytes, e)],
            }),
        }
    }

    /// Validates a site file's text; `file` names it in diagnostics.
    pub fn parse_str(file: &str, text: &str, catalog: &Catalog) -> Result<Site, SiteError> {
        let mut p = SiteParser {
            file,
            text,
            catalog,
            out: Vec::new(),
        };
        let site = p.parse();
        match site {
            Some(s) if p.out.is_empty() => Ok(s),
            _ => {
                let mut d = p.out;
                if d.is_empty() {
                    d.push(Diagnostic::at(
                        file,
                        text,
                        0..0,
                        None,
                        "invalid site file".into(),
                    ));
                }
                d.sort_by_key(|x| (x.line, x.column));
                Err(SiteError { diagnostics: d })
            }
        }
    }

    /// The address ranges of `role` (empty when the site does not assign it).
    pub fn role(&self, role: &str) -> &[IpNet] {
        self.roles.get(role).map_or(&[], Vec::as_slice)
    }

    /// Whether the site assigns `role` at all.
    pub fn defines(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// The most specific range of `role` holding `addr`.
    pub fn net_of(&self, role: &str, addr: IpAddr) -> Option<IpNet> {
        let addr = canonical(addr);
        self.role(role)
            .iter()
            .filter(|n| n.contains(&addr))
            .max_by_key(|n| n.prefix_len())
            .copied()
    }

    /// Whether `addr` has `role`.
    pub fn has_role(&self, role: &str, addr: IpAddr) -> bool {
        self.net_of(role, addr).is_some()
    }

    /// A managed device: inside a `managed-devices` range and not a site server (a
    /// server's own address inside the device range is the server).
    pub fn is_device(&self, addr: IpAddr) -> bool {
        let Some(dev) = self.net_of(MANAGED_DEVICES, addr) else {
            return false;
        };
        !self
            .roles
            .keys()
            .filter(|r| r.as_str() != MANAGED_DEVICES)
            .filter_map(|r| self.net_of(r, addr))
            .any(|n| n.prefix_len() >= dev.prefix_len())
    }

    /// The `[[allow]]` entry that allows a flow, if any.
    pub fn allowed_by(
        &self,
        name: Option<&str>,
        addr: IpAddr,
        transport: Transport,
        port: u16,
    ) -> Option<&SiteAllow> {
        let addr = canonical(addr);
        self.allow
            .iter()
            .find(|a| a.allows(name, addr, transport, port))
    }
}

/// A range as a firewall rule names it: a lone host as its address.
pub fn net_text(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

struct SiteParser<'a> {
    file: &'a str,
    text: &'a str,
    catalog: &'a Catalog,
    out: Vec<Diagnostic>,
}

impl SiteParser<'_> {
    fn error(&mut self, span: Range<usize>, entry: Option<&str>, message: String) {
        self.out.push(Diagnostic::at(
            self.file,
            self.text,
            span,
            entry.map(str::to_owned),
            message,
        ));
    }

    fn key_span(key: &Key, node: &Node) -> Range<usize> {
        key.span.clone().unwrap_or_else(|| node.span())
    }

    fn parse(&mut self) -> Option<Site> {
        let doc = match tree::parse_document(self.text) {
            Ok(d) => d,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                self.error(span, None, syntax_message(&e));
                return None;
            }
        };
        let Value::Table(top) = doc.get_ref() else {
            self.error(0..0, None, "the file is not a TOML table".into());
            return None;
        };
        if top.is_empty() {
            self.error(
                0..0,
                None,
                "file is empty: it defines no [site] and no [roles]".into(),
            );
            return None;
        }
        let mut site = Site {
            file: self.file.to_owned(),
            name: None,
            strict: false,
            profiles: Vec::new(),
            roles: BTreeMap::new(),
            allow: Vec::new(),
        };
        let mut has_roles = false;
        for (key, node) in top {
            match key.name.as_str() {
                "site" => self.parse_site(node, &mut site),
                "roles" => {
                    has_roles = true;
                    self.parse_roles(node, &mut site);
                }
                "allow" => self.parse_allows(key, node, &mut site),
                other => {
                    let hint = suggest(other, TOP_KEYS)
                        .map(|s| format!("; did you mean \"{s}\"?"))
                        .unwrap_or_else(|| " (expected [site], [roles] or [[allow]])".into());
                    self.error(
                        Self::key_span(key, node),
                        None,
                        format!("unknown top-level key \"{other}\"{hint}"),
                    );
                }
            }
        }
        if !has_roles && self.out.is_empty() {
            self.error(
                0..0,
                None,
                "the site file assigns no roles: add a [roles] table (e.g. mdm-server = [\"10.0.0.5\"])"
                    .into(),
            );
        }
        Some(site)
    }

    fn table<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Key, Node)]> {
        match node.get_ref() {
            Value::Table(t) => Some(t),
            other => {
                self.error(
                    node.span(),
                    None,
                    format!("{what} must be a table, found {}", other.type_name()),
                );
                None
            }
        }
    }

    fn string<'n>(&mut self, node: &'n Node, entry: Option<&str>, field: &str) -> Option<&'n str> {
        match node.get_ref() {
            Value::String(s) if !s.trim().is_empty() => Some(s),
            Value::String(_) => {
                self.error(node.span(), entry, format!("field \"{field}\" is empty"));
                None
            }
            other => {
                self.error(
                    node.span(),
                    entry,
                    format!(
                        "field \"{field}\" must be a string, found {}",
                        other.type_name()
                    ),
                );
                None
            }
        }
    }

    /// A string or an array of strings, with spans.
    fn strings<'n>(
        &mut self,
        node: &'n Node,
        entry: Option<&str>,
        field: &str,
    ) -> Vec<(&'n str, Range<usize>)> {
        match node.get_ref() {
            Value::String(s) => vec![(s.as_str(), node.span())],
            Value::Array(items) => {
                let mut v = Vec::new();
                for it in items {
                    match it.get_ref() {
                        Value::String(s) => v.push((s.as_str(), it.span())),
                        other => self.error(
                            it.span(),
                            entry,
                            format!(
                                "field \"{field}\" must hold strings, found {}",
                                other.type_name()
                            ),
                        ),
                    }
                }
                v
            }
            other => {
                self.error(
                    node.span(),
                    entry,
                    format!(
                        "field \"{field}\" must be a string or an array of strings, found {}",
                        other.type_name()
                    ),
                );
                Vec::new()
            }
        }
    }

    fn parse_site(&mut self, node: &Node, site: &mut Site) {
        let Some(t) = self.table(node, "[site]") else {
            return;
        };
        for (key, value) in t {
            match key.name.as_str() {
                "name" => site.name = self.string(value, None, "name").map(str::to_owned),
                "strict" => match value.get_ref() {
                    Value::Boolean(b) => site.strict = *b,
                    other => self.error(
                        value.span(),
                        None,
                        format!(
                            "field \"strict\" must be true or false, found {}",
                            other.type_name()
                        ),
                    ),
                },
                "profiles" => {
                    for (p, span) in self.strings(value, None, "profiles") {
                        if self.catalog.profile(p).is_some() {
                            site.profiles.push(p.to_owned());
                            continue;
                        }
                        let names = self.catalog.profiles().iter().map(|x| x.name.as_str());
                        let hint = match suggest(p, names) {
                            Some(s) => format!("; did you mean \"{s}\"?"),
                            None => "; `mdmaudit rules list` shows the profiles".to_owned(),
                        };
                        self.error(span, None, format!("unknown profile \"{p}\"{hint}"));
                    }
                }
                other => {
                    let msg = unknown_field_message(other, "[site]", &SITE_FIELDS);
                    self.error(Self::key_span(key, value), None, msg);
                }
            }
        }
    }

    fn parse_roles(&mut self, node: &Node, site: &mut Site) {
        let Some(t) = self.table(node, "[roles]") else {
            return;
        };
        let vocab = role_vocabulary(self.catalog);
        for (key, value) in t {
            let role = key.name.as_str();
            if !vocab.iter().any(|v| v == role) {
                let hint = match suggest(role, vocab.iter().map(String::as_str)) {
                    Some(s) => format!("; did you mean \"{s}\"?"),
                    None => format!(" (roles: {})", vocab.join(", ")),
                };
                self.error(
                    Self::key_span(key, value),
                    None,
                    format!("unknown role \"{role}\"{hint}"),
                );
                continue;
            }
            let entry = format!("role \"{role}\"");
            let list = self.strings(value, Some(&entry), role);
            if list.is_empty() && !matches!(value.get_ref(), Value::String(_)) {
                if matches!(value.get_ref(), Value::Array(a) if a.is_empty()) {
                    self.error(
                        value.span(),
                        Some(&entry),
                        format!("role \"{role}\" lists no address"),
                    );
                }
                continue;
            }
            let mut nets = Vec::with_capacity(list.len());
            for (s, span) in list {
                match parse_address(s) {
                    Ok(n) => nets.push(n),
                    Err(msg) => self.error(span, Some(&entry), msg),
                }
            }
            site.roles.insert(role.to_owned(), nets);
        }
    }

    fn parse_allows(&mut self, key: &Key, node: &Node, site: &mut Site) {
        let Value::Array(items) = node.get_ref() else {
            self.error(
                Self::key_span(key, node),
                None,
                "\"allow\" must be an array of tables: write [[allow]]".into(),
            );
            return;
        };
        let mut ids: Vec<(String, Range<usize>)> = Vec::new();
        for item in items {
            let Some(t) = self.table(item, "each [[allow]]") else {
                continue;
            };
            let header = item.span();
            let mut id = None;
            if let Some((_, n)) = t.iter().find(|(k, _)| k.name == "id") {
                if let Some(s) = self.string(n, None, "id") {
                    if !valid_name(s, true) {
                        self.error(
                            n.span(),
                            None,
                            format!("bad id \"{s}\": use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"),
                        );
                    } else if let Some((_, first)) = ids.iter().find(|(i, _)| i == s) {
                        let (l, c) = crate::catalog::diag::line_col(self.text, first.start);
                        self.error(
                            n.span(),
                            None,
                            format!(
                                "duplicate id \"{s}\": first defined at {}:{l}:{c}",
                                self.file
                            ),
                        );
                    } else {
                        ids.push((s.to_owned(), n.span()));
                        id = Some(s.to_owned());
                    }
                }
            } else {
                self.error(header.clone(), None, "missing field \"id\"".into());
            }
            let label = id.as_ref().map(|i| format!("allow \"{i}\""));
            let entry = label.as_deref();
            let mut allow = SiteAllow {
                id: id.clone().unwrap_or_default(),
                hosts: Vec::new(),
                addresses: Vec::new(),
                transports: Vec::new(),
                ports: Vec::new(),
                note: None,
            };
            for (k, v) in t {
                match k.name.as_str() {
                    "id" => {}
                    "note" => allow.note = self.string(v, entry, "note").map(str::to_owned),
                    "hosts" => {
                        for (s, span) in self.strings(v, entry, "hosts") {
                            match HostPattern::parse(s) {
                                Ok(h) => allow.hosts.push(h),
                                Err(msg) => self.error(span, entry, msg),
                            }
                        }
                    }
                    "addresses" => {
                        for (s, span) in self.strings(v, entry, "addresses") {
                            match parse_address(s) {
                                Ok(n) => allow.addresses.push(n),
                                Err(msg) => self.error(span, entry, msg),
                            }
                        }
                    }
                    "transport" => {
                        for (s, span) in self.strings(v, entry, "transport") {
                            match s {
                                "tcp" => allow.transports.push(Transport::Tcp),
                                "udp" => allow.transports.push(Transport::Udp),
                                _ => self.error(
                                    span,
                                    entry,
                                    format!(
                                        "unknown transport \"{s}\": expected \"tcp\" or \"udp\""
                                    ),
                                ),
                            }
                        }
                    }
                    "ports" => self.parse_ports(v, entry, &mut allow.ports),
                    other => {
                        let msg = unknown_field_message(other, "[[allow]]", &ALLOW_FIELDS);
                        self.error(Self::key_span(k, v), entry, msg);
                    }
                }
            }
            if !t
                .iter()
                .any(|(k, _)| k.name == "hosts" || k.name == "addresses")
            {
                self.error(
                    header,
                    entry,
                    "an [[allow]] entry needs hosts or addresses".into(),
                );
            }
            if id.is_some() {
                site.allow.push(allow);
            }
        }
    }

    fn parse_ports(&mut self, node: &Node, entry: Option<&str>, out: &mut Vec<PortRange>) {
        let Value::Array(items) = node.get_ref() else {
            self.error(
                node.span(),
                entry,
                format!(
                    "field \"ports\" must be an array of ports such as [\"443\", \"5228-5230\"], found {}",
                    node.get_ref().type_name()
                ),
            );
            return;
        };
        for it in items {
            let parsed = match it.get_ref() {
                Value::String(s) => PortRange::parse(s),
                Value::Integer(i) => PortRange::from_integer(*i),
                other => Err(format!(
                    "field \"ports\" must hold ports, found {}",
                    other.type_name()
                )),
            };
            match parsed {
                Ok(p) => out.push(p),
                Err(msg) => self.error(it.span(), entry, msg),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Site, SiteError> {
        Site::parse_str("site.toml", text, &Catalog::builtin())
    }

    #[test]
    fn a_full_site_file_loads() {
        let s = parse(
            r#"
[site]
name = "Branch"
strict = true
profiles = ["apple-devices", "xenmobile-server"]
[roles]
managed-devices = ["10.20.1.0/24"]
mdm-server = "10.20.1.5"
sql = ["10.20.2.10"]
[[allow]]
id = "wsus"
addresses = ["10.20.3.4"]
ports = ["8530"]
"#,
        )
        .unwrap();
        assert!(s.strict);
        let dev: IpAddr = "10.20.1.7".parse().unwrap();
        let srv: IpAddr = "10.20.1.5".parse().unwrap();
        assert!(s.is_device(dev));
        assert!(!s.is_device(srv));
        assert!(s.has_role(MDM_SERVER, srv));
        assert_eq!(net_text(&s.net_of(MDM_SERVER, srv).unwrap()), "10.20.1.5");
        assert!(s
            .allowed_by(None, "10.20.3.4".parse().unwrap(), Transport::Tcp, 8530)
            .is_some());
        assert!(s
            .allowed_by(None, "10.20.3.4".parse().unwrap(), Transport::Tcp, 80)
            .is_none());
    }

    #[test]
    fn errors_name_line_and_column() {
        let e =
            parse("[roles]\nmdm-server = [\"10.0.0.300\"]\nsqll = [\"10.0.0.1\"]\n").unwrap_err();
        let heads: Vec<String> = e.diagnostics.iter().map(|d| d.headline()).collect();
        assert_eq!(heads.len(), 2, "{heads:?}");
        assert!(heads[0].starts_with("site.toml:2:15: bad address range"));
        assert!(heads[1].starts_with("site.toml:3:1: unknown role \"sqll\"; did you mean \"sql\"?"));
    }

    #[test]
    fn empty_and_non_utf8_files_are_errors() {
        assert!(parse("").is_err());
        assert!(parse("# only a comment\n").is_err());
        let e = Site::parse_bytes(
            "s.toml",
            b"[roles]\nsql = [\"\xff\"]\n",
            &Catalog::builtin(),
        )
        .unwrap_err();
        assert!(e.diagnostics[0].message.contains("not valid UTF-8"));
    }
}
