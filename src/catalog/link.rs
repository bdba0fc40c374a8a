//! Checks across entries and files (duplicate ids and profile names, unknown
//! profiles and requirement references, contradicting legacy marks) and the
//! precompiled match index.

use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::diag::{line_col, suggest, CatalogError, Diagnostic, SourceFile};
use super::host::HostIndex;
use super::parse::{self, ProfileRef, ProfileSpans, ReqSpans};
use super::{Catalog, Profile, Requirement};
use crate::model::Transport;

/// Everything read so far, not yet checked as a whole.
#[derive(Default)]
pub(crate) struct Parts {
    pub(crate) files: Vec<SourceFile>,
    pub(crate) requirements: Vec<Requirement>,
    pub(crate) req_spans: Vec<ReqSpans>,
    pub(crate) profiles: Vec<Profile>,
    pub(crate) profile_spans: Vec<ProfileSpans>,
    pub(crate) broken_ids: Vec<String>,
    pub(crate) broken_profiles: Vec<String>,
    pub(crate) broken_refs: Vec<ProfileRef>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Parts {
    /// The parts of an already valid catalog, to extend it.
    pub(crate) fn from_catalog(c: Catalog) -> Parts {
        Parts {
            files: c.files,
            requirements: c.requirements,
            req_spans: c.req_spans,
            profiles: c.profiles,
            profile_spans: c.profile_spans,
            ..Parts::default()
        }
    }

    /// Appends another catalog, shifting its file indexes.
    pub(crate) fn append_catalog(&mut self, c: Catalog) {
        let shift = self.files.len();
        self.files.extend(c.files);
        self.requirements.extend(c.requirements);
        self.req_spans.extend(c.req_spans.into_iter().map(|mut s| {
            s.file += shift;
            s
        }));
        self.profiles.extend(c.profiles);
        self.profile_spans
            .extend(c.profile_spans.into_iter().map(|mut s| {
                s.file += shift;
                s
            }));
    }

    /// Parses one file's text and appends what it defines.
    pub(crate) fn add_text(&mut self, name: &str, text: &str) {
        let file = SourceFile::new(name, text);
        let parsed = parse::parse_file(self.files.len(), &file);
        self.files.push(file);
        for (r, s) in parsed.requirements {
            self.requirements.push(r);
            self.req_spans.push(s);
        }
        for (p, s) in parsed.profiles {
            self.profiles.push(p);
            self.profile_spans.push(s);
        }
        self.broken_ids.extend(parsed.broken_ids);
        self.broken_profiles.extend(parsed.broken_profiles);
        self.broken_refs.extend(parsed.broken_refs);
        self.diagnostics.extend(parsed.diagnostics);
    }

    /// Checks raw bytes for UTF-8 and size, then parses them.
    pub(crate) fn add_bytes(&mut self, name: &str, bytes: &[u8]) {
        if bytes.len() > parse::MAX_FILE_BYTES {
            self.add_problem(name, "file is larger than 16 MiB".to_owned());
            return;
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => self.add_text(name, text),
            Err(e) => self.diagnostics.push(parse::utf8_error(name, bytes, e)),
        }
    }

    /// A problem with a whole file (unreadable, empty directory), at 1:1.
    pub(crate) fn add_problem(&mut self, name: &str, message: String) {
        self.diagnostics
            .push(Diagnostic::at(name, "", 0..0, None, message));
    }

    fn diag(
        &self,
        file: usize,
        span: Range<usize>,
        entry: Option<String>,
        msg: String,
    ) -> Diagnostic {
        match self.files.get(file) {
            Some(f) => Diagnostic::at(&f.name, &f.text, span, entry, msg),
            None => Diagnostic::at("?", "", 0..0, entry, msg),
        }
    }

    fn position(&self, file: usize, at: usize) -> String {
        match self.files.get(file) {
            Some(f) => {
                let (l, c) = line_col(&f.text, at);
                format!("{}:{l}:{c}", f.name)
            }
            None => "?".to_owned(),
        }
    }
}

/// Runs the catalog-wide checks and builds the index.
pub(crate) fn link(mut parts: Parts) -> Result<Catalog, CatalogError> {
    let mut errors = std::mem::take(&mut parts.diagnostics);
    check_duplicates(&parts, &mut errors);
    check_references(&parts, &mut errors);
    check_contradictions(&parts, &mut errors);
    if !errors.is_empty() {
        let order: HashMap<&str, usize> = parts
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        errors.sort_by_key(|d| {
            (
                order.get(d.file.as_str()).copied().unwrap_or(usize::MAX),
                d.line,
                d.column,
            )
        });
        return Err(CatalogError {
            diagnostics: errors,
        });
    }
    let index = MatchIndex::build(&parts.requirements);
    Ok(Catalog {
        requirements: parts.requirements,
        profiles: parts.profiles,
        files: parts.files,
        req_spans: parts.req_spans,
        profile_spans: parts.profile_spans,
        index,
    })
}

fn req_label(id: &str) -> Option<String> {
    Some(format!("requirement \"{id}\""))
}

fn check_duplicates(parts: &Parts, errors: &mut Vec<Diagnostic>) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, r) in parts.requirements.iter().enumerate() {
        let Some(s) = parts.req_spans.get(i) else {
            continue;
        };
        match first.get(r.id.as_str()) {
            Some(&j) => {
                let at = parts
                    .req_spans
                    .get(j)
                    .map(|o| parts.position(o.file, o.id.start))
                    .unwrap_or_default();
                errors.push(parts.diag(
                    s.file,
                    s.id.clone(),
                    req_label(&r.id),
                    format!(
                        "duplicate requirement id \"{}\" (first defined at {at})",
                        r.id
                    ),
                ));
            }
            None => {
                first.insert(&r.id, i);
            }
        }
    }
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, p) in parts.profiles.iter().enumerate() {
        let Some(s) = parts.profile_spans.get(i) else {
            continue;
        };
        match first.get(p.name.as_str()) {
            Some(&j) => {
                let at = parts
                    .profile_spans
                    .get(j)
                    .map(|o| parts.position(o.file, o.name.start))
                    .unwrap_or_default();
                errors.push(parts.diag(
                    s.file,
                    s.name.clone(),
                    Some(format!("profile \"{}\"", p.name)),
                    format!("duplicate profile \"{}\" (first defined at {at})", p.name),
                ));
            }
            None => {
                first.insert(&p.name, i);
            }
        }
    }
}

fn check_references(parts: &Parts, errors: &mut Vec<Diagnostic>) {
    let profiles: HashSet<&str> = parts
        .profiles
        .iter()
        .map(|p| p.name.as_str())
        .chain(parts.broken_profiles.iter().map(String::as_str))
        .collect();
    let ids: HashSet<&str> = parts
        .requirements
        .iter()
        .map(|r| r.id.as_str())
        .chain(parts.broken_ids.iter().map(String::as_str))
        .collect();
    let valid_refs = parts
        .requirements
        .iter()
        .zip(&parts.req_spans)
        .flat_map(|(r, s)| {
            r.profiles
                .iter()
                .zip(&s.profiles)
                .map(|(name, span)| ProfileRef {
                    file: s.file,
                    span: span.clone(),
                    name: name.clone(),
                    entry: req_label(&r.id),
                })
        });
    for pref in valid_refs.chain(parts.broken_refs.iter().cloned()) {
        if !profiles.contains(pref.name.as_str()) {
            let hint = match suggest(&pref.name, profiles.iter().copied()) {
                Some(p) => format!("; did you mean \"{p}\"?"),
                None => " (define it with [[profile]], as rules/profiles.toml does)".to_owned(),
            };
            let msg = format!("unknown profile \"{}\"{hint}", pref.name);
            errors.push(parts.diag(pref.file, pref.span, pref.entry, msg));
        }
    }
    for (r, s) in parts.requirements.iter().zip(&parts.req_spans) {
        if let (Some(l), Some(span)) = (&r.legacy, &s.replaced_by) {
            if let Some(by) = &l.replaced_by {
                if !ids.contains(by.as_str()) {
                    errors.push(parts.diag(
                        s.file,
                        span.clone(),
                        req_label(&r.id),
                        format!("legacy.replaced_by names unknown requirement \"{by}\""),
                    ));
                }
            }
        }
    }
    for (p, s) in parts.profiles.iter().zip(&parts.profile_spans) {
        for (id, span) in p.infer.iter().zip(&s.infer) {
            if !ids.contains(id.as_str()) {
                let hint = suggest(id, ids.iter().copied())
                    .map(|i| format!("; did you mean \"{i}\"?"))
                    .unwrap_or_default();
                errors.push(parts.diag(
                    s.file,
                    span.clone(),
                    Some(format!("profile \"{}\"", p.name)),
                    format!("profile infers from unknown requirement \"{id}\"{hint}"),
                ));
            }
        }
    }
}

/// The first (transport, port) two requirements both use, over preferred and
/// fallback ports.
fn shared_port(a: &Requirement, b: &Requirement) -> Option<(Transport, u16)> {
    let t = a.transports.iter().find(|t| b.transports.contains(t))?;
    for pa in a.ports.iter().chain(&a.fallback) {
        for pb in b.ports.iter().chain(&b.fallback) {
            if pa.overlaps(*pb) {
                return Some((*t, pa.start.max(pb.start)));
            }
        }
    }
    None
}

/// A requirement index and the span of one of its values.
type Placed = (usize, Range<usize>);

/// Two requirements contradict when they name the same host pattern (or the same
/// address range) and share a transport and a port, but only one is legacy: a flow
/// there would be both fine and a finding.
fn check_contradictions(parts: &Parts, errors: &mut Vec<Diagnostic>) {
    let reqs = &parts.requirements;
    // (what, text) -> [(requirement, span)]
    let mut groups: HashMap<(&str, String), Vec<Placed>> = HashMap::new();
    for (i, (r, s)) in reqs.iter().zip(&parts.req_spans).enumerate() {
        for (h, span) in r.hosts.iter().zip(&s.hosts) {
            groups
                .entry(("host", h.as_str().to_owned()))
                .or_default()
                .push((i, span.clone()));
        }
        for (a, span) in r.addresses.iter().zip(&s.addresses) {
            groups
                .entry(("address range", a.to_string()))
                .or_default()
                .push((i, span.clone()));
        }
    }
    let mut reported: HashSet<(usize, usize)> = HashSet::new();
    let mut keys: Vec<_> = groups.keys().cloned().collect();
    keys.sort();
    let mut found = Vec::new();
    for key in keys {
        let Some(members) = groups.get(&key) else {
            continue;
        };
        for (x, (ai, aspan)) in members.iter().enumerate() {
            for (bi, bspan) in members.iter().skip(x + 1) {
                let (Some(a), Some(b)) = (reqs.get(*ai), reqs.get(*bi)) else {
                    continue;
                };
                if ai == bi || a.legacy.is_some() == b.legacy.is_some() {
                    continue;
                }
                let Some((t, port)) = shared_port(a, b) else {
                    continue;
                };
                if !reported.insert((*ai, *bi)) {
                    continue;
                }
                let (Some(sa), Some(sb)) = (parts.req_spans.get(*ai), parts.req_spans.get(*bi))
                else {
                    continue;
                };
                let legacy_one = if a.legacy.is_some() { &a.id } else { &b.id };
                let at = parts.position(sa.file, aspan.start);
                found.push(parts.diag(
                    sb.file,
                    bspan.clone(),
                    req_label(&b.id),
                    format!(
                        "contradicts requirement \"{}\" ({at}): both cover {} \"{}\" on {t}/{port}, but only \"{legacy_one}\" is marked legacy",
                        a.id, key.0, key.1
                    ),
                ));
            }
        }
    }
    errors.extend(found);
}

/// What `match_flow` consults, built once per catalog.
#[derive(Clone, Debug, Default)]
pub(crate) struct MatchIndex {
    pub(crate) hosts: HostIndex,
    /// Every address range: used when the flow has no name.
    pub(crate) addr_all: Vec<(IpNet, u32)>,
    /// Ranges of requirements without host patterns: used when the flow has a name.
    pub(crate) addr_hostless: Vec<(IpNet, u32)>,
    /// Every range, longest prefix first (ties in catalog order).
    pub(crate) most_specific: Vec<(IpNet, u32)>,
}

impl MatchIndex {
    fn build(reqs: &[Requirement]) -> MatchIndex {
        let mut index = MatchIndex {
            hosts: HostIndex::build(reqs),
            ..MatchIndex::default()
        };
        for (i, r) in reqs.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { continue };
            for net in &r.addresses {
                index.addr_all.push((*net, i));
                if r.hosts.is_empty() {
                    index.addr_hostless.push((*net, i));
                }
            }
        }
        index.most_specific = index.addr_all.clone();
        index
            .most_specific
            .sort_by_key(|(net, i)| (std::cmp::Reverse(net.prefix_len()), *i));
        index
    }
}
