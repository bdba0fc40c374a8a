//! Host patterns (`courier.push.apple.com`, `*.push.apple.com`,
//! `#-courier.push.apple.com`, `accounts.google.[cctld]`) and the index that finds
//! every pattern matching a server name without allocating.

use serde::{Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::Requirement;

/// Longest DNS name we try to match (RFC 1035: 253 characters without the final dot).
/// Longer names (an SNI can be longer) match no host pattern.
pub const MAX_NAME_LEN: usize = 253;

const CCTLD_LABEL: &str = "[cctld]";

/// A host pattern, lower-cased, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    text: Arc<str>,
    kind: HostKind,
    cctld: bool,
}

/// How the pattern's first label matches; the labels after it match exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// The whole name, e.g. `courier.push.apple.com`.
    Exact,
    /// `*.push.apple.com`: one or more labels in front of `push.apple.com`, not the
    /// apex itself.
    AnySubdomain,
    /// One wildcard inside the first label: `*` is one or more characters other than
    /// a dot, `#` one or more digits (`#-courier.push.apple.com`, `alt#-mtalk...`).
    LabelGlob {
        prefix: String,
        suffix: String,
        digits: bool,
    },
}

impl HostPattern {
    /// Parses and normalizes a pattern. The error is the message for a diagnostic.
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        let bad = |why: &str| Err(format!("bad host pattern \"{raw}\": {why}"));
        if raw.contains("://") || raw.contains('/') || raw.contains(':') {
            return bad("write the host name only, without scheme, port or path");
        }
        let lower = raw.to_ascii_lowercase();
        let text = lower.strip_suffix('.').unwrap_or(&lower);
        if text.is_empty() {
            return bad("it is empty");
        }
        if text.len() > MAX_NAME_LEN {
            return bad("longer than 253 characters");
        }
        let mut labels: Vec<&str> = text.split('.').collect();
        let cctld = labels.last() == Some(&CCTLD_LABEL);
        if cctld {
            labels.pop();
        }
        if labels.is_empty() {
            return bad("\"[cctld]\" needs a name in front of it");
        }
        let kind = match labels.first().copied() {
            Some("*") => {
                if labels.len() < 2 {
                    return bad("\"*.\" must be followed by a domain");
                }
                if labels.len() < 3 && !cctld {
                    return bad("\"*.\" in front of a top-level domain matches too much");
                }
                HostKind::AnySubdomain
            }
            Some(first) if first.contains(['*', '#']) => {
                let wild: Vec<(usize, char)> = first
                    .char_indices()
                    .filter(|(_, c)| *c == '*' || *c == '#')
                    .collect();
                let [(at, c)] = wild[..] else {
                    return bad("only one wildcard (\"*\" or \"#\") is allowed in the first label");
                };
                if labels.len() < 2 {
                    return bad("a wildcard label must be followed by a domain");
                }
                let (prefix, suffix) = (&first[..at], &first[at + 1..]);
                if !valid_label(prefix, true) || !valid_label(suffix, true) {
                    return bad("labels may hold only letters, digits, '-' and '_'");
                }
                HostKind::LabelGlob {
                    prefix: prefix.to_owned(),
                    suffix: suffix.to_owned(),
                    digits: c == '#',
                }
            }
            _ => HostKind::Exact,
        };
        let fixed = if kind == HostKind::Exact {
            &labels[..]
        } else {
            &labels[1..]
        };
        for label in fixed {
            if label.is_empty() {
                return bad("it has an empty label (\"..\" or a leading dot)");
            }
            if label.len() > 63 {
                return bad("a label is longer than 63 characters");
            }
            if label.contains(['*', '#']) {
                return bad("wildcards are allowed only in the first label");
            }
            if label.contains('[') || label.contains(']') {
                return bad("\"[cctld]\" is allowed only as the last label");
            }
            if !valid_label(label, false) {
                return bad("labels may hold only letters, digits, '-' and '_'");
            }
        }
        Ok(HostPattern {
            text: Arc::from(text),
            kind,
            cctld,
        })
    }

    /// The normalized pattern text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text as a shared string (cloned into [`super::MatchBy::Host`] without
    /// allocating).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.text)
    }

    pub fn kind(&self) -> &HostKind {
        &self.kind
    }

    /// Whether the pattern ends in `.[cctld]`: any two-letter country code, also
    /// behind `co.` or `com.` (`google.de`, `google.co.uk`, `google.com.au`).
    pub fn is_cctld(&self) -> bool {
        self.cctld
    }

    /// Lower is more specific: exact, then label wildcard, then any-subdomain; every
    /// country-code form after every plain one.
    pub fn specificity(&self) -> u8 {
        let base = match self.kind {
            HostKind::Exact => 0,
            HostKind::LabelGlob { .. } => 1,
            HostKind::AnySubdomain => 2,
        };
        if self.cctld {
            base + 3
        } else {
            base
        }
    }

    /// The labels that must match exactly, as one string (the index key).
    fn body(&self) -> &str {
        let t: &str = &self.text;
        let t = if self.cctld {
            t.strip_suffix(CCTLD_LABEL)
                .and_then(|t| t.strip_suffix('.'))
                .unwrap_or(t)
        } else {
            t
        };
        match self.kind {
            HostKind::Exact => t,
            HostKind::AnySubdomain | HostKind::LabelGlob { .. } => {
                t.split_once('.').map_or("", |(_, rest)| rest)
            }
        }
    }

    /// Whether `name` (any case, trailing dot allowed) matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut buf = [0u8; MAX_NAME_LEN + 3];
        let Some(name) = normalize(name, &mut buf) else {
            return false;
        };
        if self.cctld {
            cctld_stripped(name)
                .into_iter()
                .flatten()
                .any(|n| self.matches_plain(n))
        } else {
            self.matches_plain(name)
        }
    }

    /// `name` is normalized and, for a `[cctld]` pattern, already stripped.
    fn matches_plain(&self, name: &str) -> bool {
        let body = self.body();
        match &self.kind {
            HostKind::Exact => name == body,
            HostKind::AnySubdomain => name
                .strip_suffix(body)
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|front| !front.is_empty()),
            HostKind::LabelGlob { .. } => name
                .split_once('.')
                .is_some_and(|(first, rest)| rest == body && self.first_label_matches(first)),
        }
    }

    fn first_label_matches(&self, label: &str) -> bool {
        let HostKind::LabelGlob {
            prefix,
            suffix,
            digits,
        } = &self.kind
        else {
            return false;
        };
        if label.len() < prefix.len() + suffix.len() + 1 {
            return false;
        }
        let Some(middle) = label
            .strip_prefix(prefix.as_str())
            .and_then(|m| m.strip_suffix(suffix.as_str()))
        else {
            return false;
        };
        !middle.is_empty() && (!digits || middle.bytes().all(|b| b.is_ascii_digit()))
    }
}

fn valid_label(label: &str, may_be_empty: bool) -> bool {
    (may_be_empty || !label.is_empty())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Lower-cases `name` into `buf` and drops one trailing dot. `None` for an empty name
/// or one longer than [`MAX_NAME_LEN`].
pub(crate) fn normalize<'b>(name: &str, buf: &'b mut [u8; MAX_NAME_LEN + 3]) -> Option<&'b str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAME_LEN {
        return None;
    }
    let dst = buf.get_mut(..bytes.len())?;
    for (d, s) in dst.iter_mut().zip(bytes) {
        *d = s.to_ascii_lowercase();
    }
    std::str::from_utf8(dst).ok()
}

/// `name` without its country-code ending: `accounts.google.de` gives
/// `accounts.google`; `accounts.google.co.uk` gives `accounts.google.co` and
/// `accounts.google`.
fn cctld_stripped(name: &str) -> [Option<&str>; 2] {
    let Some((rest, last)) = name.rsplit_once('.') else {
        return [None, None];
    };
    if last.len() != 2 || !last.bytes().all(|b| b.is_ascii_lowercase()) {
        return [None, None];
    }
    let second = rest
        .rsplit_once('.')
        .filter(|(_, sld)| *sld == "co" || *sld == "com")
        .map(|(front, _)| front);
    [Some(rest), second]
}

/// One host pattern of one requirement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PatRef {
    pub(crate) req: u32,
    pub(crate) pat: u32,
}

#[derive(Clone, Debug, Default)]
struct Tables {
    exact: HashMap<Box<str>, Vec<PatRef>>,
    subdomain: HashMap<Box<str>, Vec<PatRef>>,
    glob: HashMap<Box<str>, Vec<PatRef>>,
}

impl Tables {
    fn insert(&mut self, pattern: &HostPattern, at: PatRef) {
        let map = match pattern.kind {
            HostKind::Exact => &mut self.exact,
            HostKind::AnySubdomain => &mut self.subdomain,
            HostKind::LabelGlob { .. } => &mut self.glob,
        };
        map.entry(Box::from(pattern.body())).or_default().push(at);
    }

    fn lookup(&self, name: &str, reqs: &[Requirement], found: &mut impl FnMut(PatRef)) {
        if let Some(refs) = self.exact.get(name) {
            refs.iter().copied().for_each(&mut *found);
        }
        for (i, b) in name.bytes().enumerate() {
            if b != b'.' || i == 0 {
                continue;
            }
            if let Some(refs) = name.get(i + 1..).and_then(|s| self.subdomain.get(s)) {
                refs.iter().copied().for_each(&mut *found);
            }
        }
        if let Some((first, rest)) = name.split_once('.') {
            for &r in self.glob.get(rest).into_iter().flatten() {
                let pattern = reqs
                    .get(r.req as usize)
                    .and_then(|q| q.hosts.get(r.pat as usize));
                if pattern.is_some_and(|p| p.first_label_matches(first)) {
                    found(r);
                }
            }
        }
    }
}

/// Every host pattern of a catalog, keyed by the labels that must match exactly.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostIndex {
    plain: Tables,
    cctld: Tables,
}

impl HostIndex {
    pub(crate) fn build(reqs: &[Requirement]) -> HostIndex {
        let mut index = HostIndex::default();
        for (ri, req) in reqs.iter().enumerate() {
            for (pi, pattern) in req.hosts.iter().enumerate() {
                let (Ok(req), Ok(pat)) = (u32::try_from(ri), u32::try_from(pi)) else {
                    continue;
                };
                let tables = if pattern.cctld {
                    &mut index.cctld
                } else {
                    &mut index.plain
                };
                tables.insert(pattern, PatRef { req, pat });
            }
        }
        index
    }

    /// Calls `found` for every pattern matching `name` (normalized already).
    pub(crate) fn lookup(&self, name: &str, reqs: &[Requirement], mut found: impl FnMut(PatRef)) {
        self.plain.lookup(name, reqs, &mut found);
        for stripped in cctld_stripped(name).into_iter().flatten() {
            self.cctld.lookup(stripped, reqs, &mut found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_is_case_insensitive_and_ignores_trailing_dot() {
        let pat = p("Courier.Push.Apple.com.");
        assert_eq!(pat.as_str(), "courier.push.apple.com");
        assert!(pat.matches("courier.push.apple.com"));
        assert!(pat.matches("COURIER.push.apple.COM."));
        assert!(!pat.matches("1-courier.push.apple.com"));
        assert!(!pat.matches("push.apple.com"));
    }

    #[test]
    fn star_dot_matches_any_depth_but_not_the_apex() {
        let pat = p("*.push.apple.com");
        assert!(pat.matches("api.push.apple.com"));
        assert!(pat.matches("a.b.c.push.apple.com"));
        assert!(!pat.matches("push.apple.com"));
        assert!(!pat.matches("xpush.apple.com"));
        assert!(!pat.matches("push.apple.com.evil.net"));
    }

    #[test]
    fn label_wildcards() {
        let numbered = p("#-courier.push.apple.com");
        assert!(numbered.matches("1-courier.push.apple.com"));
        assert!(numbered.matches("50-courier.push.apple.com"));
        assert!(!numbered.matches("-courier.push.apple.com"));
        assert!(!numbered.matches("x-courier.push.apple.com"));
        assert!(!numbered.matches("1-courier.sandbox.push.apple.com"));
        let any = p("*-courier.push.apple.com");
        assert!(any.matches("x1-courier.push.apple.com"));
        assert!(!any.matches("a.b-courier.push.apple.com"));
        let middle = p("alt#-mtalk.google.com");
        assert!(middle.matches("alt3-mtalk.google.com"));
        assert!(!middle.matches("alt-mtalk.google.com"));
        assert!(!middle.matches("mtalk.google.com"));
    }

    #[test]
    fn country_code_forms() {
        let pat = p("accounts.google.[cctld]");
        assert!(pat.is_cctld());
        for yes in [
            "accounts.google.de",
            "accounts.google.co.uk",
            "accounts.google.com.au",
            "ACCOUNTS.GOOGLE.FR.",
        ] {
            assert!(pat.matches(yes), "{yes}");
        }
        for no in [
            "accounts.google.com",
            "accounts.google.org.uk",
            "accounts.google.d3",
            "accounts.google",
            "x.accounts.google.de",
        ] {
            assert!(!pat.matches(no), "{no}");
        }
        let sub = p("*.google.[cctld]");
        assert!(sub.matches("www.google.co.jp"));
        assert!(!sub.matches("google.co.jp"));
    }

    #[test]
    fn rejects_bad_patterns() {
        let err = |s: &str| HostPattern::parse(s).unwrap_err();
        assert_eq!(
            err("https://api.push.apple.com/"),
            "bad host pattern \"https://api.push.apple.com/\": write the host name only, without scheme, port or path"
        );
        assert_eq!(err(""), "bad host pattern \"\": it is empty");
        assert_eq!(
            err("*.com"),
            "bad host pattern \"*.com\": \"*.\" in front of a top-level domain matches too much"
        );
        assert_eq!(
            err("api.*.apple.com"),
            "bad host pattern \"api.*.apple.com\": wildcards are allowed only in the first label"
        );
        assert_eq!(
            err("a..b.com"),
            "bad host pattern \"a..b.com\": it has an empty label (\"..\" or a leading dot)"
        );
        assert_eq!(
            err("x*y*.com"),
            "bad host pattern \"x*y*.com\": only one wildcard (\"*\" or \"#\") is allowed in the first label"
        );
        assert_eq!(
            err("[cctld].google.com"),
            "bad host pattern \"[cctld].google.com\": \"[cctld]\" is allowed only as the last label"
        );
        assert_eq!(
            err("exa mple.com"),
            "bad host pattern \"exa mple.com\": labels may hold only letters, digits, '-' and '_'"
        );
        assert!(HostPattern::parse("*").is_err());
        assert!(HostPattern::parse("[cctld]").is_err());
        assert!(HostPattern::parse(&"a.".repeat(200)).is_err());
    }

    #[test]
    fn normalize_rejects_long_and_empty_names() {
        let mut buf = [0u8; MAX_NAME_LEN + 3];
        assert_eq!(normalize("A.b.", &mut buf), Some("a.b"));
        let mut buf = [0u8; MAX_NAME_LEN + 3];
        assert_eq!(normalize(".", &mut buf), None);
        let long = "a".repeat(300);
        let mut buf = [0u8; MAX_NAME_LEN + 3];
        assert_eq!(normalize(&long, &mut buf), None);
    }
}
