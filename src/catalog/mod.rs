//! The requirement catalog: which cloud and site endpoints each MDM product needs,
//! loaded from TOML (`rules/*.toml`, built in, plus user files), validated once into
//! typed [`Requirement`]s and [`Profile`]s, and matched against a flow's identity
//! (server name, address, transport, port).
//!
//! This module owns the catalog format (documented in `docs/catalog-format.md`), its
//! diagnostics (file:line:col with the offending line and a caret) and the
//! per-flow lookup [`Catalog::match_flow`]. It must never know about packets,
//! flows, verdicts or output sinks: it answers "which requirements does this
//! (name, address, transport, port) belong to, and on which port path", and the
//! audit layer decides what that means. Nothing here panics on a user's catalog:
//! every problem is a [`Diagnostic`].

pub(crate) mod diag;
mod doc;
mod host;
mod link;
pub(crate) mod parse;
mod port;
mod render;
pub(crate) mod tree;

use ipnet::IpNet;
use serde::{Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use diag::{CatalogError, Diagnostic};
pub use host::{HostKind, HostPattern, MAX_NAME_LEN};
pub use port::PortRange;
pub use render::{ExplainBy, Explanation};

use crate::model::Transport;
use diag::SourceFile;
use link::{MatchIndex, Parts};
use parse::{ProfileSpans, ReqSpans};

/// The built-in catalog files, embedded at build time, in load order.
const BUILTIN: [(&str, &str); 7] = [
    (
        "rules/profiles.toml",
        include_str!("../../rules/profiles.toml"),
    ),
    ("rules/apple.toml", include_str!("../../rules/apple.toml")),
    ("rules/google.toml", include_str!("../../rules/google.toml")),
    (
        "rules/microsoft.toml",
        include_str!("../../rules/microsoft.toml"),
    ),
    (
        "rules/zenworks.toml",
        include_str!("../../rules/zenworks.toml"),
    ),
    ("rules/bigfix.toml", include_str!("../../rules/bigfix.toml")),
    ("rules/citrix.toml", include_str!("../../rules/citrix.toml")),
];

/// Who talks to whom. The destination of the `*-to-server` and `server-to-internal`
/// roles (and `device-to-device`) is one of the site's own machines, named by
/// [`Requirement::target`] rather than by host patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A managed device to a vendor cloud service (APNs, FCM, WNS...).
    DeviceToCloud,
    /// The site's MDM server (or gateway) to a vendor cloud service.
    ServerToCloud,
    /// An administrator's browser to a vendor portal (Apple Business Manager,
    /// the Managed Google Play iframe).
    AdminToCloud,
    /// A managed device to the site's MDM server or gateway.
    DeviceToServer,
    /// An administrator (console, SNMP manager, support tool) to a site server.
    AdminToServer,
    /// A site server to another internal service (LDAP, SQL, SMTP, syslog...).
    ServerToInternal,
    /// A managed device to another managed device (Delivery Optimization peers).
    DeviceToDevice,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::DeviceToCloud,
        Role::ServerToCloud,
        Role::AdminToCloud,
        Role::DeviceToServer,
        Role::AdminToServer,
        Role::ServerToInternal,
        Role::DeviceToDevice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::DeviceToCloud => "device-to-cloud",
            Role::ServerToCloud => "server-to-cloud",
            Role::AdminToCloud => "admin-to-cloud",
            Role::DeviceToServer => "device-to-server",
            Role::AdminToServer => "admin-to-server",
            Role::ServerToInternal => "server-to-internal",
            Role::DeviceToDevice => "device-to-device",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the destination is one of the site's own machines.
    pub fn targets_site(self) -> bool {
        matches!(
            self,
            Role::DeviceToServer
                | Role::AdminToServer
                | Role::ServerToInternal
                | Role::DeviceToDevice
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an entry was defined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// File name as loaded (`rules/apple.toml` for the built-in catalog).
    pub file: String,
    /// 1-based line of the entry's `[[requirement]]` or `[[profile]]` header.
    pub line: usize,
}

/// The vendor retired this endpoint or port: traffic to it is itself a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Legacy {
    /// Retirement date, `YYYY-MM-DD`, when the vendor published one.
    pub retired: Option<String>,
    /// What was retired and what replaces it.
    pub note: String,
    /// Id of the requirement that replaces it, if any.
    pub replaced_by: Option<String>,
}

/// One network path an MDM product needs (or needed, when `legacy`).
#[derive(Clone, Debug, Serialize)]
pub struct Requirement {
    /// Stable unique id, `[a-z0-9._-]`, e.g. `apple.apns.device`.
    pub id: String,
    /// Who runs the destination service (`Apple`, `Google`, `Citrix`...).
    pub vendor: String,
    /// The product or service (`Apple Push Notification service`).
    pub product: String,
    pub role: Role,
    /// Server names that identify the service. Empty for site roles.
    pub hosts: Vec<HostPattern>,
    /// Address ranges that identify the service when no name is known.
    pub addresses: Vec<IpNet>,
    /// Transports the ports apply to (sorted, at least one).
    pub transports: Vec<Transport>,
    /// Preferred ports: traffic here is the normal, healthy path.
    pub ports: Vec<PortRange>,
    /// Fallback ports: the service works there, degraded (APNs on 443).
    pub fallback: Vec<PortRange>,
    /// The product cannot work without this path: an active profile's required
    /// requirement with no attempt in a capture is reported missing.
    pub required: bool,
    /// Profiles this requirement belongs to.
    pub profiles: Vec<String>,
    /// One sentence: what the path is for.
    pub purpose: String,
    /// Documents the entry comes from (seed file and row, vendor page).
    pub source: Vec<String>,
    pub legacy: Option<Legacy>,
    /// For site roles: the site machine the traffic goes to (`mdm-server`, `ldap`,
    /// `sql`, `gateway`...), resolved to addresses by the site file.
    pub target: Option<String>,
    /// The site machine that initiates, when it is not implied by the role
    /// (`gateway`, `plugin-portal`, `snmp-manager`...).
    pub initiator: Option<String>,
    /// Remarks that are not the purpose (proxy or TLS-inspection caveats).
    pub notes: Option<String>,
    pub origin: Origin,
}

impl Requirement {
    /// The port path a flow on (`transport`, `port`) takes for this requirement.
    pub fn port_path(&self, transport: Transport, port: u16) -> PortPath {
        if !self.transports.contains(&transport) {
            PortPath::OtherPort
        } else if port::any_contains(&self.ports, port) {
            PortPath::Preferred
        } else if port::any_contains(&self.fallback, port) {
            PortPath::Fallback
        } else {
            PortPath::OtherPort
        }
    }

    /// Whether the requirement is in `profile`.
    pub fn in_profile(&self, profile: &str) -> bool {
        self.profiles.iter().any(|p| p == profile)
    }
}

/// A named group of requirements that apply together (`apple-devices`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Requirement ids whose traffic, when seen, suggests the profile is active
    /// at a site that did not say which profiles apply.
    pub infer: Vec<String>,
    pub origin: Origin,
}

/// Which of a requirement's ports a flow used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortPath {
    /// One of the preferred ports, on one of the requirement's transports.
    Preferred,
    /// One of the fallback ports.
    Fallback,
    /// The identity matched but the requirement does not use this transport/port.
    OtherPort,
}

impl PortPath {
    pub fn as_str(self) -> &'static str {
        match self {
            PortPath::Preferred => "preferred",
            PortPath::Fallback => "fallback",
            PortPath::OtherPort => "other-port",
        }
    }
}

impl fmt::Display for PortPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a flow was tied to a requirement.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchBy {
    /// The server name matched this host pattern (text as in [`HostPattern::as_str`]).
    Host(#[serde(serialize_with = "serialize_shared")] Arc<str>),
    /// The address lies in this range (the most specific of the requirement's).
    Address(IpNet),
    /// The address has the requirement's `target` role in the site file (never
    /// produced by [`Catalog::match_flow`]; the audit layer adds it).
    SiteRole {
        /// The site role (`mdm-server`).
        role: String,
        /// The site file's range for that role holding the address.
        net: IpNet,
    },
}

impl fmt::Display for MatchBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchBy::Host(p) => write!(f, "host pattern \"{p}\""),
            MatchBy::Address(n) => write!(f, "address range {n}"),
            MatchBy::SiteRole { role, net } => write!(f, "site role {role} ({net})"),
        }
    }
}

/// One requirement a flow belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Match {
    /// Index into [`Catalog::requirements`].
    pub req: usize,
    pub path: PortPath,
    pub by: MatchBy,
}

/// A validated catalog with its match index.
#[derive(Clone, Debug)]
pub struct Catalog {
    requirements: Vec<Requirement>,
    profiles: Vec<Profile>,
    files: Vec<SourceFile>,
    req_spans: Vec<ReqSpans>,
    profile_spans: Vec<ProfileSpans>,
    index: MatchIndex,
}

impl Catalog {
    /// The catalog built into the binary from `rules/*.toml`, parsed once per
    /// process. The test `builtin_catalog_loads` guarantees it is valid.
    pub fn builtin() -> Catalog {
        static BUILT: OnceLock<Result<Catalog, CatalogError>> = OnceLock::new();
        match BUILT.get_or_init(Catalog::try_builtin) {
            Ok(c) => c.clone(),
            // Only a defect in rules/*.toml shipped with this build can get here, and
            // the unit tests fail on it first.
            Err(e) => panic!("the built-in catalog is invalid:\n{e}"),
        }
    }

    /// The built-in catalog, or its diagnostics.
    pub fn try_builtin() -> Result<Catalog, CatalogError> {
        let mut parts = Parts::default();
        for (name, text) in BUILTIN {
            parts.add_text(name, text);
        }
        link::link(parts)
    }

    /// Loads a complete catalog from files and directories (a directory contributes
    /// its `*.toml` files sorted by name). Profiles must be defined in the loaded
    /// files; use [`Catalog::extend_from_paths`] to add files to the built-in set.
    pub fn load(paths: &[PathBuf]) -> Result<Catalog, CatalogError> {
        let mut parts = Parts::default();
        read_paths(&mut parts, paths);
        link::link(parts)
    }

    /// Adds user files to this catalog; they may use its profiles and refer to
    /// its requirements, and their ids must not repeat its ids.
    pub fn extend_from_paths(self, paths: &[PathBuf]) -> Result<Catalog, CatalogError> {
        let mut parts = Parts::from_catalog(self);
        read_paths(&mut parts, paths);
        link::link(parts)
    }

    /// This catalog followed by `other` (built-in plus a separately loaded user
    /// catalog). Ids and profile names must stay unique.
    pub fn extend(self, other: Catalog) -> Result<Catalog, CatalogError> {
        let mut parts = Parts::from_catalog(self);
        parts.append_catalog(other);
        link::link(parts)
    }

    /// A catalog from one in-memory TOML text; `file` names it in diagnostics.
    pub fn parse_str(file: &str, text: &str) -> Result<Catalog, CatalogError> {
        let mut parts = Parts::default();
        parts.add_text(file, text);
        link::link(parts)
    }

    /// Every requirement, in load order (files in order, entries in file order).
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn requirement(&self, index: usize) -> Option<&Requirement> {
        self.requirements.get(index)
    }

    /// The index of the requirement with this id.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.requirements.iter().position(|r| r.id == id)
    }

    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Requirements of one profile, with their indexes.
    pub fn in_profile<'c>(
        &'c self,
        profile: &'c str,
    ) -> impl Iterator<Item = (usize, &'c Requirement)> + 'c {
        self.requirements
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.in_profile(profile))
    }

    /// The requirements a flow belongs to, sorted by requirement index, one match per
    /// requirement.
    ///
    /// Identity: with a `name`, requirements that have host patterns match only by
    /// name (case-insensitive, trailing dot ignored); requirements without host
    /// patterns match by address. Without a name, every address range counts. The
    /// port path then says whether (`transport`, `port`) is a preferred, fallback or
    /// other port of that requirement. Allocates only the returned vector.
    pub fn match_flow(
        &self,
        name: Option<&str>,
        addr: IpAddr,
        transport: Transport,
        port: u16,
    ) -> Vec<Match> {
        let mut out = Vec::new();
        let addr = canonical(addr);
        let nets = match name {
            Some(name) => {
                let mut buf = [0u8; MAX_NAME_LEN + 3];
                if let Some(name) = host::normalize(name, &mut buf) {
                    self.index.hosts.lookup(name, &self.requirements, |r| {
                        let (req, pat) = (r.req as usize, r.pat as usize);
                        if let Some(q) = self.requirements.get(req) {
                            if let Some(p) = q.hosts.get(pat) {
                                out.push(Match {
                                    req,
                                    path: q.port_path(transport, port),
                                    by: MatchBy::Host(p.shared()),
                                });
                            }
                        }
                    });
                }
                &self.index.addr_hostless
            }
            None => &self.index.addr_all,
        };
        for (net, req) in nets {
            if net.contains(&addr) {
                let req = *req as usize;
                if let Some(q) = self.requirements.get(req) {
                    out.push(Match {
                        req,
                        path: q.port_path(transport, port),
                        by: MatchBy::Address(*net),
                    });
                }
            }
        }
        out.sort_by_key(|m| (m.req, rank(&m.by)));
        out.dedup_by_key(|m| m.req);
        out
    }

    /// The vendor of the most specific address range containing `addr` ("17.0.0.0/8
    /// is Apple"), for naming flows nothing else names.
    pub fn name_for_address(&self, addr: IpAddr) -> Option<(&str, IpNet)> {
        let addr = canonical(addr);
        self.index
            .most_specific
            .iter()
            .find(|(net, _)| net.contains(&addr))
            .and_then(|(net, req)| {
                self.requirements
                    .get(*req as usize)
                    .map(|r| (r.vendor.as_str(), *net))
            })
    }

    /// Every requirement `host_or_ip` (a server name, an address, or a site role
    /// such as `mdm-server`) belongs to, with a sentence saying why. With a port,
    /// also the port path; a host that matches nothing is compared with the site
    /// roles that use that port ("if 10.0.0.5 is the site's sql server...").
    pub fn explain(
        &self,
        host_or_ip: &str,
        port: Option<u16>,
        transport: Transport,
    ) -> Vec<Explanation> {
        render::explain(self, host_or_ip, port, transport)
    }

    /// The catalog as Markdown (`docs/catalog.md`), with the seed coverage table when
    /// `seed_rows` (file name, text of `tests/seed_rows.tsv`) is given. Errors name a
    /// malformed seed row.
    pub fn render_markdown(&self, seed_rows: Option<(&str, &str)>) -> Result<String, String> {
        doc::render(self, seed_rows)
    }

    /// A readable table of the catalog, or of one profile's requirements.
    pub fn render_list(&self, profile: Option<&str>) -> String {
        render::render_list(self, profile)
    }
}

/// `{"requirements": [...], "profiles": [...]}` for `--format json`.
impl Serialize for Catalog {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Catalog", 2)?;
        st.serialize_field("requirements", &self.requirements)?;
        st.serialize_field("profiles", &self.profiles)?;
        st.end()
    }
}

/// Serializes a shared string as a plain string (serde's `rc` feature is off).
pub(crate) fn serialize_shared<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Preference among several matches of one requirement: the most specific wins.
fn rank(by: &MatchBy) -> u16 {
    match by {
        MatchBy::Host(p) => {
            let base = if p.starts_with("*.") {
                2
            } else if p.contains(['*', '#']) {
                1
            } else {
                0
            };
            base + if p.ends_with("[cctld]") { 3 } else { 0 }
        }
        MatchBy::Address(net) | MatchBy::SiteRole { net, .. } => 200 - u16::from(net.prefix_len()),
    }
}

fn read_paths(parts: &mut Parts, paths: &[PathBuf]) {
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                    .collect(),
                Err(e) => {
                    parts.add_problem(&display(path), format!("cannot read directory: {e}"));
                    continue;
                }
            };
            files.sort();
            if files.is_empty() {
                parts.add_problem(&display(path), "directory holds no *.toml file".to_owned());
            }
            for f in files {
                read_file(parts, &f);
            }
        } else {
            read_file(parts, path);
        }
    }
}

fn read_file(parts: &mut Parts, path: &Path) {
    let name = display(path);
    match std::fs::metadata(path) {
        Ok(m) if m.len() > parse::MAX_FILE_BYTES as u64 => {
            parts.add_problem(&name, "file is larger than 16 MiB".to_owned());
            return;
        }
        _ => {}
    }
    match std::fs::read(path) {
        Ok(bytes) => parts.add_bytes(&name, &bytes),
        Err(e) => parts.add_problem(&name, format!("cannot read file: {e}")),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests;
