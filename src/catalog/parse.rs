//! Validation of one catalog file: the span tree of `tree.rs` becomes typed
//! [`Requirement`]s and [`Profile`]s, and every problem becomes a [`Diagnostic`].
//! Checks that need the whole catalog (duplicate ids, unknown profiles,
//! contradictions) live in `link.rs`.

use ipnet::IpNet;
use std::net::IpAddr;
use std::ops::Range;

use super::diag::{suggest, Diagnostic, SourceFile};
use super::host::HostPattern;
use super::port::PortRange;
use super::tree::{self, Key, Node, Value};
use super::{Legacy, Origin, Profile, Requirement, Role};
use crate::model::Transport;

/// Byte spans of one requirement's values, for diagnostics found after parsing.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReqSpans {
    pub(crate) file: usize,
    pub(crate) id: Range<usize>,
    pub(crate) hosts: Vec<Range<usize>>,
    pub(crate) addresses: Vec<Range<usize>>,
    pub(crate) profiles: Vec<Range<usize>>,
    pub(crate) replaced_by: Option<Range<usize>>,
}

/// Byte spans of one profile's values.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProfileSpans {
    pub(crate) file: usize,
    pub(crate) name: Range<usize>,
    pub(crate) infer: Vec<Range<usize>>,
}

/// A profile name used by a requirement that was dropped for other errors.
#[derive(Clone, Debug)]
pub(crate) struct ProfileRef {
    pub(crate) file: usize,
    pub(crate) span: Range<usize>,
    pub(crate) name: String,
    pub(crate) entry: Option<String>,
}

/// What one file contributes, with its problems.
#[derive(Default)]
pub(crate) struct ParsedFile {
    pub(crate) requirements: Vec<(Requirement, ReqSpans)>,
    pub(crate) profiles: Vec<(Profile, ProfileSpans)>,
    /// Ids of requirements dropped for errors: referring to them is not a second error.
    pub(crate) broken_ids: Vec<String>,
    /// Names of profiles dropped for errors.
    pub(crate) broken_profiles: Vec<String>,
    /// Profile names used by requirements dropped for errors, still checked.
    pub(crate) broken_refs: Vec<ProfileRef>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

/// Largest catalog file accepted.
pub(crate) const MAX_FILE_BYTES: usize = 16 << 20;

/// The fields of a `[[requirement]]`, in documentation order.
pub(crate) const REQUIREMENT_FIELDS: [&str; 17] = [
    "id",
    "vendor",
    "product",
    "role",
    "hosts",
    "addresses",
    "target",
    "initiator",
    "transport",
    "ports",
    "fallback",
    "required",
    "profiles",
    "purpose",
    "source",
    "legacy",
    "notes",
];
const REQUIREMENT_MANDATORY: [&str; 10] = [
    "id",
    "vendor",
    "product",
    "role",
    "transport",
    "ports",
    "required",
    "profiles",
    "purpose",
    "source",
];
const LEGACY_FIELDS: [&str; 3] = ["retired", "note", "replaced_by"];
const PROFILE_FIELDS: [&str; 3] = ["name", "description", "infer"];

struct Ctx<'a> {
    file: &'a SourceFile,
    out: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn error(&mut self, span: Range<usize>, entry: Option<&str>, message: String) {
        let d = Diagnostic::at(
            &self.file.name,
            &self.file.text,
            span,
            entry.map(str::to_owned),
            message,
        );
        self.out.push(d);
    }
}

/// A diagnostic for a file whose bytes are not UTF-8, at its first bad byte.
pub(crate) fn utf8_error(name: &str, bytes: &[u8], err: std::str::Utf8Error) -> Diagnostic {
    let good = err.valid_up_to();
    let valid = std::str::from_utf8(bytes.get(..good).unwrap_or_default()).unwrap_or_default();
    let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
    let rest = bytes.get(good..).unwrap_or_default();
    let rest_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let mut shown = valid[line_start..].to_owned();
    shown.push_str(&String::from_utf8_lossy(
        rest.get(..rest_end).unwrap_or_default(),
    ));
    let byte = rest.first().copied().unwrap_or(0);
    let mut d = Diagnostic::at(
        name,
        valid,
        good..good,
        None,
        format!("file is not valid UTF-8 (byte 0x{byte:02x})"),
    );
    d.source_line = shown.trim_end_matches('\r').to_owned();
    d
}

/// `TOML syntax error: ...` on one line, from `toml`'s (multi-line) message.
pub(crate) fn syntax_message(e: &toml::de::Error) -> String {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    format!("TOML syntax error: {message}")
}

/// Parses and validates one file. `file_index` is stored in the spans.
pub(crate) fn parse_file(file_index: usize, file: &SourceFile) -> ParsedFile {
    let mut parsed = ParsedFile::default();
    let mut ctx = Ctx {
        file,
        out: &mut parsed.diagnostics,
    };
    let text: &str = &file.text;
    if text.len() > MAX_FILE_BYTES {
        ctx.error(0..0, None, "file is larger than 16 MiB".to_owned());
        return parsed;
    }
    let doc = match tree::parse_document(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            ctx.error(span, None, syntax_message(&e));
            return parsed;
        }
    };
    let Value::Table(top) = doc.get_ref() else {
        ctx.error(0..0, None, "the file is not a TOML table".to_owned());
        return parsed;
    };
    let mut entries = 0;
    for (key, node) in top {
        let kind = key.name.as_str();
        if kind != "requirement" && kind != "profile" {
            let hint = suggest(kind, ["requirement", "profile"])
                .map(|s| format!("; did you mean [[{s}]]?"))
                .unwrap_or_else(|| " (expected [[requirement]] or [[profile]])".to_owned());
            ctx.error(
                key_span(key, node),
                None,
                format!("unknown top-level key \"{kind}\"{hint}"),
            );
            continue;
        }
        let Value::Array(items) = node.get_ref() else {
            ctx.error(
                key_span(key, node),
                None,
                format!("\"{kind}\" must be an array of tables: write [[{kind}]]"),
            );
            continue;
        };
        for item in items {
            entries += 1;
            if kind == "requirement" {
                match parse_requirement(&mut ctx, file_index, item, &mut parsed.broken_refs) {
                    Ok(r) => parsed.requirements.push(r),
                    Err(Some(id)) => parsed.broken_ids.push(id),
                    Err(None) => {}
                }
            } else {
                match parse_profile(&mut ctx, file_index, item) {
                    Ok(p) => parsed.profiles.push(p),
                    Err(Some(name)) => parsed.broken_profiles.push(name),
                    Err(None) => {}
                }
            }
        }
    }
    if entries == 0 && ctx.out.is_empty() {
        ctx.error(
            0..0,
            None,
            "file is empty: it defines no [[requirement]] and no [[profile]]".to_owned(),
        );
    }
    parsed
}

/// The key's span, or the value's when `toml` gave none.
fn key_span(key: &Key, node: &Node) -> Range<usize> {
    key.span.clone().unwrap_or_else(|| node.span())
}

/// The table entries of an entry, or an error.
fn entry_table<'n>(ctx: &mut Ctx<'_>, node: &'n Node, kind: &str) -> Option<&'n [(Key, Node)]> {
    match node.get_ref() {
        Value::Table(t) => Some(t),
        other => {
            ctx.error(
                node.span(),
                None,
                format!("each {kind} must be a table, found {}", other.type_name()),
            );
            None
        }
    }
}

fn type_error(ctx: &mut Ctx<'_>, node: &Node, entry: Option<&str>, field: &str, want: &str) {
    let msg = format!(
        "field \"{field}\" must be {want}, found {}",
        node.get_ref().type_name()
    );
    ctx.error(node.span(), entry, msg);
}

fn get_str<'n>(
    ctx: &mut Ctx<'_>,
    node: &'n Node,
    entry: Option<&str>,
    field: &str,
) -> Option<&'n str> {
    match node.get_ref() {
        Value::String(s) if s.trim().is_empty() => {
            ctx.error(node.span(), entry, format!("field \"{field}\" is empty"));
            None
        }
        Value::String(s) => Some(s),
        _ => {
            type_error(ctx, node, entry, field, "a string");
            None
        }
    }
}

/// A string or an array of strings, each with its span.
fn get_str_list<'n>(
    ctx: &mut Ctx<'_>,
    node: &'n Node,
    entry: Option<&str>,
    field: &str,
    single_allowed: bool,
) -> Option<Vec<(&'n str, Range<usize>)>> {
    match node.get_ref() {
        Value::String(s) if single_allowed => Some(vec![(s.as_str(), node.span())]),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for item in items {
                match item.get_ref() {
                    Value::String(s) => out.push((s.as_str(), item.span())),
                    other => {
                        ctx.error(
                            item.span(),
                            entry,
                            format!(
                                "field \"{field}\" must hold strings, found {}",
                                other.type_name()
                            ),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
        _ => {
            let want = if single_allowed {
                "a string or an array of strings"
            } else {
                "an array of strings"
            };
            type_error(ctx, node, entry, field, want);
            None
        }
    }
}

/// Ids, profile names and site roles: lowercase ASCII letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit.
pub(crate) fn valid_name(s: &str, dots: bool) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'-'
                || b == b'_'
                || (dots && b == b'.')
        })
}

fn parse_ports(
    ctx: &mut Ctx<'_>,
    node: &Node,
    entry: Option<&str>,
    field: &str,
) -> Option<Vec<(PortRange, Range<usize>)>> {
    let Value::Array(items) = node.get_ref() else {
        type_error(
            ctx,
            node,
            entry,
            field,
            "an array of ports such as [\"443\", \"5228-5230\"]",
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        let parsed = match item.get_ref() {
            Value::String(s) => PortRange::parse(s),
            Value::Integer(i) => PortRange::from_integer(*i),
            other => Err(format!(
                "field \"{field}\" must hold ports, found {}",
                other.type_name()
            )),
        };
        match parsed {
            Ok(r) => out.push((r, item.span())),
            Err(msg) => {
                ctx.error(item.span(), entry, msg);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

pub(crate) fn parse_address(s: &str) -> Result<IpNet, String> {
    let net = if s.contains('/') {
        s.parse::<IpNet>().map_err(|_| ())
    } else {
        s.parse::<IpAddr>().map(IpNet::from).map_err(|_| ())
    };
    let net = net.map_err(|()| {
        format!(
            "bad address range \"{s}\": expected an address or a CIDR range like \"17.0.0.0/8\""
        )
    })?;
    if net.trunc() != net {
        return Err(format!(
            "bad address range \"{s}\": host bits are set; did you mean \"{}\"?",
            net.trunc()
        ));
    }
    Ok(net)
}

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return false;
    }
    let num = |r: Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    matches!(
        (num(0..4), num(5..7), num(8..10)),
        (Some(_), Some(1..=12), Some(1..=31))
    )
}

pub(crate) fn unknown_field_message(key: &str, what: &str, known: &[&str]) -> String {
    let hint = match suggest(key, known.iter().copied()) {
        Some(s) => format!("; did you mean \"{s}\"?"),
        None => format!(" (known fields: {})", known.join(", ")),
    };
    format!("unknown field \"{key}\" in {what}{hint}")
}

fn unknown_field(
    ctx: &mut Ctx<'_>,
    key: &Key,
    node: &Node,
    entry: Option<&str>,
    what: &str,
    known: &[&str],
) {
    let hint = match suggest(&key.name, known.iter().copied()) {
        Some(s) => format!("; did you mean \"{s}\"?"),
        None => format!(" (known fields: {})", known.join(", ")),
    };
    ctx.error(
        key_span(key, node),
        entry,
        format!("unknown field \"{}\" in {what}{hint}", key.name),
    );
}

/// `Err(Some(id))`: the entry had errors but its id was readable.
fn parse_requirement(
    ctx: &mut Ctx<'_>,
    file_index: usize,
    node: &Node,
    broken_refs: &mut Vec<ProfileRef>,
) -> Result<(Requirement, ReqSpans), Option<String>> {
    let before = ctx.out.len();
    let table = entry_table(ctx, node, "[[requirement]]").ok_or(None)?;
    let header = node.span();

    // The id first, so that every later message can name the entry.
    let mut id = None;
    let mut id_span = header.clone();
    if let Some((_, n)) = table.iter().find(|(k, _)| k.name == "id") {
        if let Some(s) = get_str(ctx, n, None, "id") {
            id_span = n.span();
            if valid_name(s, true) {
                id = Some(s.to_owned());
            } else {
                ctx.error(
                    n.span(),
                    None,
                    format!(
                        "bad id \"{s}\": use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
                    ),
                );
            }
        }
    }
    let label = id.as_ref().map(|i| format!("requirement \"{i}\""));
    let entry = label.as_deref();

    let mut spans = ReqSpans {
        file: file_index,
        id: id_span,
        ..ReqSpans::default()
    };
    let mut vendor = None;
    let mut product = None;
    let mut role = None;
    let mut hosts = Vec::new();
    let mut addresses = Vec::new();
    let mut target = None;
    let mut initiator = None;
    let mut transports = Vec::new();
    let mut ports: Vec<(PortRange, Range<usize>)> = Vec::new();
    let mut fallback: Vec<(PortRange, Range<usize>)> = Vec::new();
    let mut required = None;
    let mut profiles = Vec::new();
    let mut purpose = None;
    let mut source = Vec::new();
    let mut legacy = None;
    let mut notes = None;
    let mut seen: Vec<&str> = Vec::new();

    for (key, value) in table {
        let field = key.name.as_str();
        if !REQUIREMENT_FIELDS.contains(&field) {
            unknown_field(ctx, key, value, entry, "requirement", &REQUIREMENT_FIELDS);
            continue;
        }
        seen.push(field);
        match field {
            "id" => {}
            "vendor" => vendor = get_str(ctx, value, entry, field).map(str::to_owned),
            "product" => product = get_str(ctx, value, entry, field).map(str::to_owned),
            "purpose" => purpose = get_str(ctx, value, entry, field).map(str::to_owned),
            "notes" => notes = get_str(ctx, value, entry, field).map(str::to_owned),
            "role" => {
                if let Some(s) = get_str(ctx, value, entry, field) {
                    role = Role::parse(s);
                    if role.is_none() {
                        let names = Role::ALL.map(Role::as_str);
                        let hint = suggest(s, names)
                            .map(|n| format!("; did you mean \"{n}\"?"))
                            .unwrap_or_else(|| format!(" (roles: {})", names.join(", ")));
                        ctx.error(value.span(), entry, format!("unknown role \"{s}\"{hint}"));
                    }
                }
            }
            "hosts" => {
                for (s, span) in get_str_list(ctx, value, entry, field, false).unwrap_or_default() {
                    match HostPattern::parse(s) {
                        Ok(p) => {
                            hosts.push(p);
                            spans.hosts.push(span);
                        }
                        Err(msg) => ctx.error(span, entry, msg),
                    }
                }
            }
            "addresses" => {
                for (s, span) in get_str_list(ctx, value, entry, field, false).unwrap_or_default() {
                    match parse_address(s) {
                        Ok(net) => {
                            addresses.push(net);
                            spans.addresses.push(span);
                        }
                        Err(msg) => ctx.error(span, entry, msg),
                    }
                }
            }
            "target" | "initiator" => {
                if let Some(s) = get_str(ctx, value, entry, field) {
                    if valid_name(s, false) {
                        let slot = if field == "target" {
                            &mut target
                        } else {
                            &mut initiator
                        };
                        *slot = Some(s.to_owned());
                    } else {
                        ctx.error(
                            value.span(),
                            entry,
                            format!("bad site role \"{s}\" in \"{field}\": use lowercase letters, digits and '-' (e.g. \"mdm-server\")"),
                        );
                    }
                }
            }
            "transport" => {
                for (s, span) in get_str_list(ctx, value, entry, field, true).unwrap_or_default() {
                    match s {
                        "tcp" => transports.push(Transport::Tcp),
                        "udp" => transports.push(Transport::Udp),
                        _ => ctx.error(
                            span,
                            entry,
                            format!("unknown transport \"{s}\": expected \"tcp\" or \"udp\""),
                        ),
                    }
                }
                if matches!(value.get_ref(), Value::Array(a) if a.is_empty()) {
                    ctx.error(
                        value.span(),
                        entry,
                        "field \"transport\" is empty".to_owned(),
                    );
                }
            }
            "ports" => {
                if let Some(p) = parse_ports(ctx, value, entry, field) {
                    if p.is_empty() {
                        ctx.error(
                            value.span(),
                            entry,
                            "field \"ports\" must list at least one port".to_owned(),
                        );
                    }
                    ports = p;
                }
            }
            "fallback" => fallback = parse_ports(ctx, value, entry, field).unwrap_or_default(),
            "required" => match value.get_ref() {
                Value::Boolean(b) => required = Some(*b),
                _ => type_error(ctx, value, entry, field, "true or false"),
            },
            "profiles" => {
                for (s, span) in get_str_list(ctx, value, entry, field, false).unwrap_or_default() {
                    profiles.push(s.to_owned());
                    spans.profiles.push(span);
                }
            }
            "source" => {
                let list = get_str_list(ctx, value, entry, field, true).unwrap_or_default();
                if list.is_empty() {
                    ctx.error(
                        value.span(),
                        entry,
                        "field \"source\" must name at least one document".to_owned(),
                    );
                }
                for (s, span) in list {
                    if s.trim().is_empty() {
                        ctx.error(span, entry, "empty source".to_owned());
                    } else {
                        source.push(s.to_owned());
                    }
                }
            }
            "legacy" => legacy = parse_legacy(ctx, value, entry, &mut spans),
            _ => {}
        }
    }

    for field in REQUIREMENT_MANDATORY {
        if !seen.contains(&field) {
            ctx.error(header.clone(), entry, format!("missing field \"{field}\""));
        }
    }
    for (p, span) in &fallback {
        if ports.iter().any(|(q, _)| q.overlaps(*p)) {
            ctx.error(
                span.clone(),
                entry,
                format!("fallback port {p} is also a preferred port"),
            );
        }
    }
    if ctx.out.len() == before && hosts.is_empty() && addresses.is_empty() && target.is_none() {
        ctx.error(
            header.clone(),
            entry,
            "requirement has no hosts, addresses or target, so nothing can match it".to_owned(),
        );
    }
    if ctx.out.len() > before {
        for (name, span) in profiles.iter().zip(&spans.profiles) {
            broken_refs.push(ProfileRef {
                file: file_index,
                span: span.clone(),
                name: name.clone(),
                entry: label.clone(),
            });
        }
        return Err(id);
    }
    let (Some(id), Some(vendor), Some(product), Some(role), Some(required), Some(purpose)) =
        (id.clone(), vendor, product, role, required, purpose)
    else {
        return Err(id);
    };
    transports.sort();
    transports.dedup();
    let line = ctx.file.line_of(header.start);
    let req = Requirement {
        id,
        vendor,
        product,
        role,
        hosts,
        addresses,
        transports,
        ports: ports.into_iter().map(|(p, _)| p).collect(),
        fallback: fallback.into_iter().map(|(p, _)| p).collect(),
        required,
        profiles,
        purpose,
        source,
        legacy,
        target,
        initiator,
        notes,
        origin: Origin {
            file: ctx.file.name.clone(),
            line,
        },
    };
    Ok((req, spans))
}

fn parse_legacy(
    ctx: &mut Ctx<'_>,
    node: &Node,
    entry: Option<&str>,
    spans: &mut ReqSpans,
) -> Option<Legacy> {
    let Value::Table(table) = node.get_ref() else {
        type_error(
            ctx,
            node,
            entry,
            "legacy",
            "a table such as { retired = \"2021-03-31\", note = \"...\" }",
        );
        return None;
    };
    let mut retired = None;
    let mut note = None;
    let mut replaced_by = None;
    let mut ok = true;
    for (key, value) in table {
        match key.name.as_str() {
            "retired" => {
                let text = match value.get_ref() {
                    Value::String(s) | Value::Datetime(s) => Some(s.as_str()),
                    _ => {
                        type_error(ctx, value, entry, "legacy.retired", "a date (YYYY-MM-DD)");
                        None
                    }
                };
                match text {
                    Some(s) if valid_date(s) => retired = Some(s.to_owned()),
                    Some(s) => {
                        ctx.error(
                            value.span(),
                            entry,
                            format!("bad date \"{s}\" in legacy.retired: expected YYYY-MM-DD"),
                        );
                        ok = false;
                    }
                    None => ok = false,
                }
            }
            "note" => match get_str(ctx, value, entry, "legacy.note") {
                Some(s) => note = Some(s.to_owned()),
                None => ok = false,
            },
            "replaced_by" => match get_str(ctx, value, entry, "legacy.replaced_by") {
                Some(s) => {
                    replaced_by = Some(s.to_owned());
                    spans.replaced_by = Some(value.span());
                }
                None => ok = false,
            },
            _ => {
                unknown_field(ctx, key, value, entry, "legacy", &LEGACY_FIELDS);
                ok = false;
            }
        }
    }
    let Some(note) = note else {
        if ok {
            ctx.error(
                node.span(),
                entry,
                "missing field \"legacy.note\"".to_owned(),
            );
        }
        return None;
    };
    ok.then_some(Legacy {
        retired,
        note,
        replaced_by,
    })
}

fn parse_profile(
    ctx: &mut Ctx<'_>,
    file_index: usize,
    node: &Node,
) -> Result<(Profile, ProfileSpans), Option<String>> {
    let before = ctx.out.len();
    let table = entry_table(ctx, node, "[[profile]]").ok_or(None)?;
    let header = node.span();
    let mut name = None;
    let mut spans = ProfileSpans {
        file: file_index,
        name: header.clone(),
        infer: Vec::new(),
    };
    if let Some((_, n)) = table.iter().find(|(k, _)| k.name == "name") {
        if let Some(s) = get_str(ctx, n, None, "name") {
            spans.name = n.span();
            if valid_name(s, false) {
                name = Some(s.to_owned());
            } else {
                ctx.error(
                    n.span(),
                    None,
                    format!("bad profile name \"{s}\": use lowercase letters, digits and '-'"),
                );
            }
        }
    }
    let label = name.as_ref().map(|n| format!("profile \"{n}\""));
    let entry = label.as_deref();
    let mut description = None;
    let mut infer = Vec::new();
    for (key, value) in table {
        match key.name.as_str() {
            "name" => {}
            "description" => {
                description = get_str(ctx, value, entry, "description").map(str::to_owned)
            }
            "infer" => {
                for (s, span) in get_str_list(ctx, value, entry, "infer", false).unwrap_or_default()
                {
                    infer.push(s.to_owned());
                    spans.infer.push(span);
                }
            }
            _ => unknown_field(ctx, key, value, entry, "profile", &PROFILE_FIELDS),
        }
    }
    for field in ["name", "description"] {
        if !table.iter().any(|(k, _)| k.name == field) {
            ctx.error(header.clone(), entry, format!("missing field \"{field}\""));
        }
    }
    if ctx.out.len() > before {
        return Err(name);
    }
    let (Some(name), Some(description)) = (name.clone(), description) else {
        return Err(name);
    };
    let line = ctx.file.line_of(header.start);
    Ok((
        Profile {
            name,
            description,
            infer,
            origin: Origin {
                file: ctx.file.name.clone(),
                line,
            },
        },
        spans,
    ))
}
