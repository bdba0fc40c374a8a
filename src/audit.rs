//! Verdicts: flow records classified against the requirement catalog, aggregated per
//! requirement and per device into findings with evidence and a remediation line.
//!
//! Pure functions over [`FlowRecord`]s, the [`Catalog`] and the optional [`Site`]:
//! nothing here sees a packet, reads a file or prints. The rules of SPEC section 5 live
//! here and only here. With a site file, flows to a site role's addresses match the
//! requirements whose `target` is that role, the managed-device ranges tell devices from
//! servers, remediation lines name the site's ranges, and strict mode reports
//! destinations outside the catalog. Without one, [`SiteSuggestions`] says which roles
//! the traffic suggests.

use crate::catalog::{Catalog, Match, MatchBy, PortPath, Requirement, Role};
use crate::flow::{FlowRecord, FrameRef, NameSource, Outcome};
use crate::model::{Nanos, Transport};
use crate::site::{net_text, Site, ADMIN, DNS, MANAGED_DEVICES, MDM_SERVER};
use ipnet::IpNet;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

/// Hash maps and sets for lookups whose iteration order never reaches the output.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

fn fast_map<K, V>() -> FastMap<K, V> {
    FastMap::with_hasher(foldhash::fast::RandomState::default())
}

fn fast_set<K: Hash + Eq>() -> FastSet<K> {
    FastSet::with_hasher(foldhash::fast::RandomState::default())
}

/// A flow's verdict for one requirement (SPEC section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Blocked,
    Fallback,
    Legacy,
    Unexpected,
    Missing,
    /// The capture cannot tell (one-direction capture): not counted as blocked.
    Undetermined,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Blocked => "blocked",
            Verdict::Fallback => "fallback",
            Verdict::Legacy => "legacy",
            Verdict::Unexpected => "unexpected",
            Verdict::Missing => "missing",
            Verdict::Undetermined => "undetermined",
        }
    }
}

/// Severity of a finding; `--fail-on` compares against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
    /// ECS `event.severity` number.
    pub fn ecs(self) -> u8 {
        match self {
            Severity::Info => 1,
            Severity::Warning => 4,
            Severity::Error => 7,
        }
    }
}

/// Audit options (from the command line, validated).
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Profiles selected by the user; empty means infer them from the capture.
    pub profiles: Vec<String>,
    /// How long before a fallback connection a failed preferred-port attempt by the
    /// same device still counts as its cause (packet time).
    pub fallback_window: Nanos,
    /// At most this many evidence frames are listed per finding (all are counted).
    pub max_evidence: usize,
    /// The site file: roles of the site's addresses, its profiles, strict mode.
    pub site: Option<Arc<Site>>,
    /// Strict mode even when the site file does not ask for it (needs a site).
    pub strict: bool,
    /// Threads for the first pass over large flow lists (matching every flow); the
    /// result does not depend on it.
    pub threads: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            profiles: Vec::new(),
            fallback_window: 300 * 1_000_000_000,
            max_evidence: 20,
            site: None,
            strict: false,
            threads: 1,
        }
    }
}

/// One requirement a flow matched, and what the flow says about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowMatch {
    pub rule: Arc<str>,
    /// Index of the requirement in the catalog.
    #[serde(skip)]
    pub req: usize,
    pub path: PortPath,
    /// The host pattern or address range that matched.
    pub by: MatchBy,
    pub verdict: Option<Verdict>,
}

/// A flow record with its final name and its requirement matches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditedFlow {
    pub record: FlowRecord,
    /// The catalog vendor and range that attributed an otherwise unnamed flow.
    /// Boxed: most flows are named and have none, and inline the pair made every
    /// audited flow 40 bytes larger (see `size_tests`).
    pub catalog_range: Option<Box<(String, String)>>,
    pub matches: Vec<FlowMatch>,
    /// Identified by address only, with several candidate requirements that the
    /// client's other traffic does not tell apart: no verdict is drawn from it.
    pub ambiguous: bool,
}

impl AuditedFlow {
    /// Where the flow's name came from, including the catalog's ranges.
    pub fn name_source(&self) -> Option<NameSource> {
        self.record
            .name_source
            .or(self.catalog_range.as_ref().map(|_| NameSource::Catalog))
    }
}

/// A pointer to a flow that supports a finding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Evidence {
    pub frame: FrameRef,
    pub destination: String,
    pub transport: Transport,
    pub port: u16,
    pub outcome: Outcome,
    /// `preferred` or `fallback` path of the requirement, when it has one.
    pub role: &'static str,
    /// The attempt failed (see `FlowRecord::attempt_failed`).
    pub failed: bool,
    pub syn_retransmits: u32,
    /// For unreachable attempts: who sent the ICMP error, and whether it said
    /// "administratively prohibited" (a filter).
    pub icmp_reporter: Option<IpAddr>,
    pub admin_prohibited: bool,
    /// Flows this entry stands for: 1, more for a record that bare flows were
    /// folded into (over `--max-records`).
    pub flows: usize,
}

/// An aggregated finding: one requirement, one verdict, one device (or none).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub rule: String,
    pub verdict: Verdict,
    pub severity: Severity,
    /// The device (flow initiator) concerned; None for capture-wide findings.
    pub device: Option<IpAddr>,
    pub summary: String,
    /// Total flows behind the finding; `evidence` lists at most `max_evidence`.
    pub flows: usize,
    pub evidence: Vec<Evidence>,
    /// Firewall rules that would fix it (blocked, fallback), or what replaces a
    /// retired endpoint (legacy): one entry per rule.
    pub remediation: Vec<String>,
    pub first_ts: Option<Nanos>,
}

/// Status of one requirement over the capture.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequirementStatus {
    pub rule: String,
    pub vendor: String,
    pub product: String,
    pub required: bool,
    pub active: bool,
    /// The worst verdict seen, `missing`, or `not_seen`.
    pub status: String,
    pub flows: usize,
    /// Devices per verdict.
    pub devices: BTreeMap<String, usize>,
    /// Handshake round trip of the flows that reached the service, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<Percentiles>,
    /// Time to first byte of those flows, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<Percentiles>,
}

/// A latency distribution (HdrHistogram, 3 significant digits), milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Latencies in nanoseconds, recorded at microsecond resolution (1 µs to 1 h).
/// Counts are u32 (a bucket would need four billion flows to overflow, and the
/// record budget keeps far fewer): half the memory of u64 counts, about 95 KB a
/// histogram, allocated and zeroed per requirement and per thread.
struct Latency(Option<hdrhistogram::Histogram<u32>>);

impl Latency {
    fn new() -> Self {
        Latency(hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).ok())
    }
    fn record(&mut self, ns: i64) {
        if let Some(h) = self.0.as_mut() {
            let us = u64::try_from(ns / 1000).unwrap_or(0).clamp(1, h.high());
            let _ = h.record(us);
        }
    }
    /// Add another histogram's values (histograms of one thread's flows each).
    fn add(&mut self, other: &Latency) {
        if let (Some(h), Some(o)) = (self.0.as_mut(), other.0.as_ref()) {
            let _ = h.add(o);
        }
    }
    fn summary(&self) -> Option<Percentiles> {
        let h = self.0.as_ref()?;
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        Some(Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        })
    }
}

/// How a profile came to be active.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActiveProfile {
    pub name: String,
    /// `selected` (by --profile), `site` (by the site file's `profiles`) or
    /// `inferred` (from traffic).
    pub how: &'static str,
    /// For inferred profiles: the requirement whose traffic implied it, and how many flows.
    pub evidence: Option<String>,
}

/// The per-device view.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceView {
    pub device: IpAddr,
    /// Requirement id -> worst verdict for this device.
    pub requirements: BTreeMap<String, Verdict>,
}

/// Capture-level judgement on whether both directions were captured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DirectionCheck {
    pub one_direction: bool,
    pub tcp_flows_both_directions: usize,
    pub tcp_flows_client_only_answered: usize,
    pub attempts_not_judged: usize,
}

/// Everything the audit concluded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Audit {
    pub flows: Vec<AuditedFlow>,
    pub findings: Vec<Finding>,
    pub requirements: Vec<RequirementStatus>,
    pub profiles: Vec<ActiveProfile>,
    pub devices: Vec<DeviceView>,
    pub direction: DirectionCheck,
    /// The site file the audit used, if any.
    pub site: Option<Arc<Site>>,
    /// Whether strict mode was on (site file `strict` or `--strict`).
    pub strict: bool,
    /// Without a site file: the roles the traffic suggests, and the site file that
    /// would confirm them. None with a site file or when nothing is suggested.
    pub site_suggestions: Option<SiteSuggestions>,
}

/// One suggested role assignment and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SuggestedRole {
    pub role: String,
    /// An address or a range (`10.20.1.0/24`).
    pub address: String,
    pub reason: String,
}

/// Site roles inferred from the traffic when no site file was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SiteSuggestions {
    /// Role -> addresses and ranges, as a site file's `[roles]` would list them.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Why each was suggested, in role order.
    pub reasons: Vec<SuggestedRole>,
    /// A ready-to-use site file (TOML) with these roles and the active profiles.
    pub site_file: String,
}

/// Rule id of the capture-wide one-direction finding.
pub const ONE_DIRECTION_RULE: &str = "mdmaudit.capture.one_direction";

/// Rule id of strict-mode findings: a managed device or the MDM server talks to a
/// destination no requirement (and no `[[allow]]` of the site file) names.
pub const OUTSIDE_CATALOG_RULE: &str = "mdmaudit.site.outside_catalog";

/// Classify `records` (any order) against `catalog`.
pub fn audit(
    catalog: &Catalog,
    records: Vec<FlowRecord>,
    opts: &AuditOptions,
    capture_span: Option<(Nanos, Nanos)>,
) -> Audit {
    audit_parts(catalog, vec![records], opts, capture_span)
}

/// [`audit`] of records kept in several vectors (the workers' segments), as if
/// they were one vector of the parts one after the other; the records are moved
/// once, into the audit's flows, and never copied into one vector first.
pub fn audit_parts(
    catalog: &Catalog,
    mut parts: Vec<Vec<FlowRecord>>,
    opts: &AuditOptions,
    capture_span: Option<(Nanos, Nanos)>,
) -> Audit {
    parts.retain(|p| !p.is_empty());
    let order = first_frame_order(&mut parts, opts.threads);
    let direction = direction_check(&parts, opts.threads);
    let reqs = &catalog.requirements();
    let site = opts.site.as_deref();
    // Profiles chosen by a person: --profile, else the site file's.
    let (selected, selected_how): (Vec<String>, &'static str) = match site {
        Some(s) if opts.profiles.is_empty() && !s.profiles.is_empty() => {
            (s.profiles.clone(), "site")
        }
        _ => (opts.profiles.clone(), "selected"),
    };

    let ids: Vec<Arc<str>> = reqs.iter().map(|r| Arc::from(r.id.as_str())).collect();
    // 1. Match every flow. Names, addresses and ports repeat massively: each distinct
    // identity is matched once (per thread).
    let n_records = parts.iter().map(Vec::len).fold(0usize, usize::saturating_add);
    let order = order.unwrap_or_else(|| (0..n_records).collect());
    let mut flows = match_all(
        &MatchCtx {
            catalog,
            ids: &ids,
            site,
            selected: &selected,
        },
        parts,
        &order,
        opts.threads,
    );

    // 1b. An address range alone can fit several requirements (17.0.0.0/8 on 443 is
    // both the APNs device fallback and the provider API). Keep the candidates whose
    // role the same client shows in flows that are not ambiguous; otherwise leave the
    // flow undecided rather than guess.
    // Role sets are bit sets (see `role_bit`).
    // Passes 1b and 2 take stretches of the flows on the audit's threads (large
    // lists only), and their maps are merged in stretch order.
    let size = stretch(flows.len(), opts.threads, MATCH_PER_THREAD);
    let client_roles: FastMap<IpAddr, u8> = in_parts(flows.chunks(size).collect(), &|part| {
        let mut roles_by_client: FastMap<IpAddr, u8> = fast_map();
        for f in part {
            if f.matches.is_empty() {
                continue;
            }
            let roles = roles_of(f, reqs);
            let clear = f.matches.len() == 1 || roles.count_ones() == 1;
            if clear && roles != 0 {
                *roles_by_client.entry(f.record.client.ip()).or_default() |= roles;
            }
        }
        roles_by_client
    })
    .into_iter()
    .reduce(|mut a, b| {
        for (client, roles) in b {
            *a.entry(client).or_default() |= roles;
        }
        a
    })
    .unwrap_or_default();
    // 2. Failed preferred attempts per (requirement, device), for fallback linking
    // (each list in flow order).
    type Preferred = (
        FastMap<(usize, IpAddr), Vec<(Nanos, usize)>>,
        FastSet<(usize, IpAddr)>,
    );
    let (preferred_failed, preferred_reached) = in_parts(stretches_mut(&mut flows, size), &|(from, part)| {
        let (mut failed, mut reached): Preferred = (fast_map(), fast_set());
        for (k, f) in part.iter_mut().enumerate() {
            if f.matches.is_empty() {
                continue;
            }
            settle_roles(f, &client_roles, reqs);
            if f.ambiguous {
                continue;
            }
            for m in f.matches.iter() {
                let ri = m.req;
                if m.path == PortPath::Preferred {
                    let dev = f.record.client.ip();
                    if f.record.attempt_failed() {
                        failed
                            .entry((ri, dev))
                            .or_default()
                            .push((f.record.first_ts, from.saturating_add(k)));
                    } else if f.record.reached() {
                        reached.insert((ri, dev));
                    }
                }
            }
        }
        (failed, reached)
    })
    .into_iter()
    .reduce(|(mut failed, mut reached), (later_failed, later_reached)| {
        for (key, attempts) in later_failed {
            failed.entry(key).or_default().extend(attempts);
        }
        reached.extend(later_reached);
        (failed, reached)
    })
    .unwrap_or_default();

    // 3. Per-flow verdicts, on stretches of the flows like passes 1b and 2. A
    // fallback's causes are failed flows of the same device, possibly in another
    // stretch: each stretch lists them, and they are marked after.
    let stretches = in_parts(stretches_mut(&mut flows, size), &|(from, part)| {
        // Flows whose failure a fallback explains, and fallback -> its causes.
        let mut linked: Vec<usize> = Vec::new();
        let mut links: FastMap<usize, Vec<usize>> = fast_map();
        for (k, flow) in part.iter_mut().enumerate() {
            let fi = from.saturating_add(k);
            let (client, first_ts, last_ts, failed, reached) = {
                let r = &flow.record;
                (
                    r.client.ip(),
                    r.first_ts,
                    r.last_ts,
                    r.attempt_failed(),
                    r.reached(),
                )
            };
            let by_name = flow.record.name.is_some();
            if flow.ambiguous {
                continue;
            }
            // Each match's verdict is written in place (no list of them per flow).
            for m in flow.matches.iter_mut() {
                let ri = m.req;
                let Some(req) = reqs.get(ri) else {
                    // No such requirement: no verdict.
                    m.verdict = None;
                    continue;
                };
                m.verdict = if req.legacy.is_some() {
                    Some(Verdict::Legacy)
                } else {
                    match m.path {
                        PortPath::OtherPort => Some(Verdict::Unexpected),
                        PortPath::Preferred | PortPath::Fallback if failed => {
                            if direction.one_direction {
                                Some(Verdict::Undetermined)
                            } else {
                                Some(Verdict::Blocked)
                            }
                        }
                        PortPath::Preferred if reached => Some(Verdict::Ok),
                        PortPath::Fallback if reached => {
                            let window_start = first_ts.saturating_sub(opts.fallback_window);
                            let causes: Vec<usize> = preferred_failed
                                .get(&(ri, client))
                                .map(|v| {
                                    v.iter()
                                        .filter(|(ts, _)| *ts >= window_start && *ts <= last_ts)
                                        .map(|(_, i)| *i)
                                        .collect()
                                })
                                .unwrap_or_default();
                            if !causes.is_empty() {
                                linked.extend_from_slice(&causes);
                                links.insert(fi, causes);
                                Some(Verdict::Fallback)
                            } else if preferred_reached.contains(&(ri, client)) {
                                // The device also uses the preferred path: nothing to report.
                                Some(Verdict::Ok)
                            } else if by_name {
                                Some(Verdict::Fallback)
                            } else {
                                // Identified by address only: the port alone does not prove
                                // this is the requirement's fallback rather than another
                                // service of the same vendor.
                                None
                            }
                        }
                        _ => None,
                    }
                };
            }
        }
        (linked, links)
    });
    // Flow index -> a fallback explains its failure.
    let mut linked_failed: Vec<bool> = vec![false; flows.len()];
    let mut fallback_links: FastMap<usize, Vec<usize>> = fast_map();
    for (linked, links) in stretches {
        for c in linked {
            if let Some(l) = linked_failed.get_mut(c) {
                *l = true;
            }
        }
        fallback_links.extend(links);
    }

    // 4. Findings per (requirement, verdict, device): one pass over the flows (on
    // --threads threads for a large list: each thread takes a stretch, and the
    // stretches' tallies are merged in order), then the findings (likewise).
    let is_linked = |fi: usize| linked_failed.get(fi).copied().unwrap_or(false);
    let size = stretch(flows.len(), opts.threads, MATCH_PER_THREAD);
    let Tally {
        groups,
        seen_flows,
        judged_flows,
        per_req_dev,
        latency,
        scan,
    } = in_parts(
        flows
            .chunks(size)
            .enumerate()
            .map(|(k, part)| (k.saturating_mul(size), part))
            .collect(),
        &|(from, part)| {
            let mut t = Tally::new(catalog, reqs.len());
            for (k, f) in part.iter().enumerate() {
                t.note(from.saturating_add(k), f, site.is_none(), &is_linked);
            }
            t
        },
    )
    .into_iter()
        .reduce(Tally::merge)
        .unwrap_or_else(|| Tally::new(catalog, reqs.len()));
    let mut groups: Vec<(GroupKey, Vec<usize>)> = groups.into_iter().collect();
    groups.sort_unstable_by_key(|(k, _)| *k);
    let finding_of = |((ri, v, dev), fis): &(GroupKey, Vec<usize>)| -> Option<Finding> {
        let req = reqs.get(*ri)?;
        // Flow indexes, ascending, each once (`fis` is ascending already).
        let mut ev_flows: Vec<usize> = fis.clone();
        if *v == Verdict::Fallback {
            let linked: Vec<usize> = ev_flows
                .iter()
                .filter_map(|fi| fallback_links.get(fi))
                .flatten()
                .copied()
                .collect();
            if !linked.is_empty() {
                ev_flows.extend(linked);
                ev_flows.sort_unstable();
                ev_flows.dedup();
            }
        }
        Some(make_finding(*ri, req, *v, *dev, &flows, &ev_flows, opts))
    };
    let size = stretch(groups.len(), opts.threads, FINDINGS_PER_THREAD);
    let mut findings: Vec<Finding> = in_parts(groups.chunks(size).collect(), &|part| {
        part.iter().filter_map(finding_of).collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    let strict = site.is_some_and(|s| s.strict) || (site.is_some() && opts.strict);
    if let Some(site) = site.filter(|_| strict) {
        findings.extend(outside_catalog(site, &flows, opts));
    }

    // 5. Profiles: selected, or inferred from requirements with judged traffic.
    let count_of = |v: &[usize], ri: usize| v.get(ri).copied().filter(|n| *n > 0);
    let profiles: Vec<ActiveProfile> = if selected.is_empty() {
        // A profile is inferred from the requirements its `infer` list names: traffic
        // to a service both devices and servers use does not make a device a server.
        let mut inferred = Vec::new();
        for p in catalog.profiles() {
            let best = p
                .infer
                .iter()
                .filter_map(|id| catalog.find(id))
                .filter_map(|ri| count_of(&judged_flows, ri).map(|n| (ri, n)))
                .max_by_key(|(ri, n)| (*n, std::cmp::Reverse(*ri)));
            if let Some((req, n)) = best.and_then(|(ri, n)| Some((reqs.get(ri)?, n))) {
                inferred.push(ActiveProfile {
                    name: p.name.clone(),
                    how: "inferred",
                    evidence: Some(format!("{} flow(s) matched {}", n, req.id)),
                });
            }
        }
        inferred.sort_by(|a, b| a.name.cmp(&b.name));
        inferred
    } else {
        selected
            .iter()
            .map(|p| ActiveProfile {
                name: p.clone(),
                how: selected_how,
                evidence: None,
            })
            .collect()
    };
    let active: BTreeSet<&str> = profiles.iter().map(|p| p.name.as_str()).collect();

    // 6. Missing requirements.
    let duration_s = capture_span
        .map(|(a, b)| (b.saturating_sub(a)) as f64 / 1e9)
        .unwrap_or(0.0);
    for (ri, req) in reqs.iter().enumerate() {
        let is_active = req.profiles.iter().any(|p| active.contains(p.as_str()));
        if is_active && req.required && req.legacy.is_none() && count_of(&seen_flows, ri).is_none()
        {
            findings.push(Finding {
                rule: req.id.clone(),
                verdict: Verdict::Missing,
                severity: Severity::Warning,
                device: None,
                summary: format!(
                    "no attempt to reach {} ({}) in {:.1} s of capture; absence in a short capture is weak evidence",
                    req.product,
                    describe_ports(req),
                    duration_s
                ),
                flows: 0,
                evidence: Vec::new(),
                remediation: Vec::new(),
                first_ts: None,
            });
        }
    }

    // 7. One-direction capture.
    if direction.one_direction {
        findings.push(Finding {
            rule: ONE_DIRECTION_RULE.to_string(),
            verdict: Verdict::Undetermined,
            severity: Severity::Warning,
            device: None,
            summary: format!(
                "the capture shows only one direction of traffic ({} TCP flows kept talking without any answer captured, {} flows show both directions): span port or asymmetric routing; {} failed-looking attempts were not judged as blocked",
                direction.tcp_flows_client_only_answered,
                direction.tcp_flows_both_directions,
                direction.attempts_not_judged
            ),
            flows: direction.attempts_not_judged,
            evidence: Vec::new(),
            remediation: vec![
                "capture both directions (mirror rx and tx of the uplink, or capture on the host)"
                    .to_string(),
            ],
            first_ts: None,
        });
    }

    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule.cmp(&b.rule))
            .then_with(|| a.verdict.cmp(&b.verdict))
            .then_with(|| a.device.cmp(&b.device))
    });

    // 8. Requirement status and device views.
    let mut requirements = Vec::new();
    for (ri, req) in reqs.iter().enumerate() {
        let is_active = req.profiles.iter().any(|p| active.contains(p.as_str()));
        let devs = per_req_dev.get(ri).filter(|d| !d.is_empty());
        let flows_n = seen_flows.get(ri).copied().unwrap_or(0);
        if !is_active && devs.is_none() {
            continue;
        }
        // Devices per verdict, by rank (ranks are distinct), then by name.
        let mut by_rank: [(usize, Option<Verdict>); 7] = [(0, None); 7];
        for v in devs.into_iter().flat_map(|d| d.values()) {
            if let Some(slot) = by_rank.get_mut(usize::from(rank(*v))) {
                slot.0 = slot.0.saturating_add(1);
                slot.1 = Some(*v);
            }
        }
        let worst: Option<Verdict> = by_rank.iter().rev().find_map(|(_, v)| *v);
        let counts: BTreeMap<String, usize> = by_rank
            .iter()
            .filter_map(|(n, v)| v.map(|v| (v.as_str().to_string(), *n)))
            .collect();
        let status = match worst {
            Some(v) => v.as_str().to_string(),
            None if is_active && req.required && req.legacy.is_none() => "missing".to_string(),
            None => "not_seen".to_string(),
        };
        let lat = latency.get(ri).and_then(Option::as_ref);
        requirements.push(RequirementStatus {
            rule: req.id.clone(),
            vendor: req.vendor.clone(),
            product: req.product.clone(),
            required: req.required,
            active: is_active,
            status,
            flows: flows_n,
            devices: counts,
            rtt_ms: lat.and_then(|l| l.0.summary()),
            ttfb_ms: lat.and_then(|l| l.1.summary()),
        });
    }
    // (device, requirement index, verdict), by device: each pair once.
    let mut dev_req: Vec<(IpAddr, usize, Verdict)> = per_req_dev
        .iter()
        .enumerate()
        .flat_map(|(ri, d)| d.iter().map(move |(ip, v)| (*ip, ri, *v)))
        .collect();
    dev_req.sort_unstable_by_key(|(ip, ri, _)| (*ip, *ri));
    let mut devices: Vec<DeviceView> = Vec::new();
    for (ip, ri, v) in dev_req {
        let Some(req) = reqs.get(ri) else {
            continue;
        };
        match devices.last_mut() {
            Some(d) if d.device == ip => {
                d.requirements.insert(req.id.clone(), v);
            }
            _ => devices.push(DeviceView {
                device: ip,
                requirements: BTreeMap::from([(req.id.clone(), v)]),
            }),
        }
    }
    let site_suggestions = match site {
        Some(_) => None,
        None => suggest_site(catalog, scan, &flows, &profiles),
    };

    Audit {
        flows,
        findings,
        requirements,
        profiles,
        devices,
        direction,
        site: opts.site.clone(),
        strict,
        site_suggestions,
    }
}

/// A finding's group: requirement index, verdict, device.
type GroupKey = (usize, Verdict, IpAddr);

/// Findings at least this many per thread before they are made on threads.
const FINDINGS_PER_THREAD: usize = 512;

/// The length of the stretches a list of `len` items is cut into for `threads`
/// threads, each given at least `per_thread` items (one stretch when the list is
/// too short for two).
fn stretch(len: usize, threads: usize, per_thread: usize) -> usize {
    let parts = threads.min(len.checked_div(per_thread).unwrap_or(0)).max(1);
    len.div_ceil(parts).max(1)
}

/// `f` over each of `jobs`, each on a thread of its own but the first, which runs
/// on this one; the results in job order. A job whose thread cannot be started
/// runs here too.
fn in_parts<J: Send, R: Send>(jobs: Vec<J>, f: &(dyn Fn(J) -> R + Sync)) -> Vec<R> {
    // Each job is taken once: by its thread, or here if the thread did not start.
    let slots: Vec<std::sync::Mutex<Option<J>>> = jobs
        .into_iter()
        .map(|job| std::sync::Mutex::new(Some(job)))
        .collect();
    let take = |k: usize| {
        slots
            .get(k)
            .and_then(|m| m.lock().ok().and_then(|mut j| j.take()))
    };
    std::thread::scope(|sc| {
        let take = &take;
        let handles: Vec<_> = (1..slots.len())
            .map(|k| {
                crate::threads::spawn_scoped(sc, "mdmaudit-audit".into(), move || take(k).map(f))
                    .ok()
            })
            .collect();
        let mut out = Vec::with_capacity(slots.len());
        out.push(take(0).map(f));
        for (k, h) in (1..).zip(handles) {
            let done = match h.map(|h| h.join()) {
                Some(Ok(r)) => r,
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => None,
            };
            out.push(done.or_else(|| take(k).map(f)));
        }
        out.into_iter().flatten().collect()
    })
}

/// `items` in stretches of `size` (the last may be shorter), each with the index of
/// its first item, for [`in_parts`].
fn stretches_mut<T>(items: &mut [T], size: usize) -> Vec<(usize, &mut [T])> {
    let mut from = 0usize;
    items
        .chunks_mut(size.max(1))
        .map(|part| {
            let at = from;
            from = at.saturating_add(part.len());
            (at, part)
        })
        .collect()
}

/// Step 4's tallies over a stretch of the flows; [`Tally::merge`] adds a later
/// stretch's.
struct Tally<'a> {
    /// Flows (ascending) per (requirement, verdict, device) that make a finding.
    groups: FastMap<GroupKey, Vec<usize>>,
    /// Per requirement index: flows seen and judged (0 means none: every record
    /// weighs at least 1), device -> worst verdict, and the latency of the flows
    /// that reached the requirement's service.
    seen_flows: Vec<usize>,
    judged_flows: Vec<usize>,
    per_req_dev: Vec<FastMap<IpAddr, Verdict>>,
    latency: Vec<Option<(Latency, Latency)>>,
    /// Without a site file: what the traffic suggests, from the same pass.
    scan: SuggestScan<'a>,
}

impl<'a> Tally<'a> {
    fn new(catalog: &'a Catalog, reqs: usize) -> Self {
        Tally {
            groups: fast_map(),
            seen_flows: vec![0; reqs],
            judged_flows: vec![0; reqs],
            per_req_dev: (0..reqs).map(|_| fast_map()).collect(),
            latency: (0..reqs).map(|_| None).collect(),
            scan: SuggestScan::new(catalog),
        }
    }

    /// Flow `fi`.
    fn note(
        &mut self,
        fi: usize,
        f: &'a AuditedFlow,
        suggest: bool,
        is_linked: &dyn Fn(usize) -> bool,
    ) {
        if suggest {
            self.scan.note(f);
        }
        if f.matches.is_empty() {
            return;
        }
        let n = weight(&f.record);
        let client = f.record.client.ip();
        let reached = f.record.reached();
        for m in f.matches.iter() {
            let ri = m.req;
            if m.path != PortPath::OtherPort {
                if let Some(seen) = self.seen_flows.get_mut(ri) {
                    *seen = seen.saturating_add(n);
                }
                if m.verdict.is_some() {
                    if let Some(judged) = self.judged_flows.get_mut(ri) {
                        *judged = judged.saturating_add(n);
                    }
                }
            }
            let Some(v) = m.verdict else {
                continue;
            };
            // Failed attempts explained by a fallback are reported inside it.
            let linked = v == Verdict::Blocked && is_linked(fi);
            if v != Verdict::Ok && v != Verdict::Undetermined && !linked {
                self.groups.entry((ri, v, client)).or_default().push(fi);
            }
            let reached_service = reached && matches!(v, Verdict::Ok | Verdict::Fallback);
            let v = if linked { Verdict::Fallback } else { v };
            if let Some(d) = self.per_req_dev.get_mut(ri) {
                worse(d, client, v);
            }
            if !reached_service {
                continue;
            }
            if let Some(slot) = self.latency.get_mut(ri) {
                let e = slot.get_or_insert_with(|| (Latency::new(), Latency::new()));
                if let Some(rtt) = f.record.rtt_ns {
                    e.0.record(rtt);
                }
                if let Some(t) = f.record.ttfb_ns {
                    e.1.record(t);
                }
            }
        }
    }

    /// Add the tallies of the stretch that follows this one's.
    fn merge(mut self, later: Tally<'a>) -> Tally<'a> {
        for (k, fis) in later.groups {
            self.groups.entry(k).or_default().extend(fis);
        }
        for (a, b) in self.seen_flows.iter_mut().zip(later.seen_flows) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.judged_flows.iter_mut().zip(later.judged_flows) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.per_req_dev.iter_mut().zip(later.per_req_dev) {
            for (dev, v) in b {
                worse(a, dev, v);
            }
        }
        for (a, b) in self.latency.iter_mut().zip(later.latency) {
            match (a.as_mut(), b) {
                (Some(a), Some(b)) => {
                    a.0.add(&b.0);
                    a.1.add(&b.1);
                }
                (None, Some(b)) => *a = Some(b),
                (_, None) => {}
            }
        }
        self.scan.merge(later.scan);
        self
    }
}

/// Keep the worse of a device's verdicts (ranks are distinct: the order the flows
/// come in does not matter).
fn worse(d: &mut FastMap<IpAddr, Verdict>, dev: IpAddr, v: Verdict) {
    let e = d.entry(dev).or_insert(v);
    if rank(v) > rank(*e) {
        *e = v;
    }
}

/// What matching a flow needs, shared by the threads of [`match_all`].
struct MatchCtx<'a> {
    catalog: &'a Catalog,
    ids: &'a [Arc<str>],
    site: Option<&'a Site>,
    selected: &'a [String],
}

/// Flows at least this many per thread before the first pass (and the tallies) use
/// threads. Audit phase of the 200 MB capture (9,551 flows, 2 threads, medians of
/// 12-16 runs): 9 ms serial, 8 ms threaded from 2,048 or 4,096 flows; 10 ms
/// threaded from 4,096 before helpers were started with `threads::spawn_scoped`
/// (one that started up to a scheduler tick late held the step up).
const MATCH_PER_THREAD: usize = 4096;

/// The records as audited flows, in `order` (a permutation of their indexes: the
/// first-frame order). Large lists are cut into one stretch of `order` per thread;
/// each thread moves its records into its stretch of the result and matches them
/// with its own cache. Most of this pass is moving records into fresh memory in an
/// order unrelated to where they lie, which threads share out like the matching.
fn match_all(
    ctx: &MatchCtx<'_>,
    parts: Vec<Vec<FlowRecord>>,
    order: &[usize],
    threads: usize,
) -> Vec<AuditedFlow> {
    let n = parts.iter().map(Vec::len).fold(0usize, usize::saturating_add);
    // `order` must name every record once (first_frame_order's is by construction);
    // checked, since the moves below rely on it.
    let mut seen = vec![false; n];
    let permutation = order.len() == n
        && order
            .iter()
            .all(|&i| seen.get_mut(i).is_some_and(|s| !std::mem::replace(s, true)));
    drop(seen);
    if !permutation {
        let mut cache = MatchCache::new(ctx.catalog, ctx.ids);
        return parts
            .into_iter()
            .flatten()
            .map(|r| cache.audited(r, ctx.site, ctx.selected))
            .collect();
    }
    let size = stretch(n, threads, MATCH_PER_THREAD);
    // The records are moved out one by one below: their vectors must not drop them.
    let mut parts: Vec<std::mem::ManuallyDrop<Vec<FlowRecord>>> = parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(std::mem::ManuallyDrop::new)
        .collect();
    let mut start = 0usize;
    let src = RecordsPtr(
        parts
            .iter_mut()
            .map(|p| {
                let s = start;
                start = start.saturating_add(p.len());
                (s, p.as_mut_ptr())
            })
            .collect(),
    );
    let mut flows: Vec<AuditedFlow> = Vec::with_capacity(n);
    let spare = flows.spare_capacity_mut().get_mut(..n).unwrap_or_default();
    let run = |dst: &mut [std::mem::MaybeUninit<AuditedFlow>], idx: &[usize]| {
        let mut cache = MatchCache::new(ctx.catalog, ctx.ids);
        let src = &src;
        for (k, (d, &i)) in dst.iter_mut().zip(idx).enumerate() {
            // The records are visited in an order unrelated to where they lie: ask for
            // each record's lines a few records ahead, and for its name a little later
            // (once the record's own line, which holds the pointer, has arrived).
            if let Some(&j) = idx.get(k.wrapping_add(16)) {
                // SAFETY: j < n (checked permutation); the record is live (not moved yet).
                crate::prefetch::prefetch_value(unsafe { &*src.at(j) });
            }
            if let Some(&j) = idx.get(k.wrapping_add(6)) {
                // SAFETY: as above.
                let near = unsafe { &*src.at(j) };
                crate::prefetch::prefetch(near.name.as_deref().map(str::as_bytes));
            }
            // SAFETY: i < n, and `order` names each index once (checked above), so each
            // record is read exactly once, by one thread; the vectors never drop them
            // (ManuallyDrop, emptied below).
            let r = unsafe { std::ptr::read(src.at(i)) };
            d.write(cache.audited(r, ctx.site, ctx.selected));
        }
    };
    let jobs: Vec<Job<'_>> = spare.chunks_mut(size).zip(order.chunks(size)).collect();
    in_parts(jobs, &|(dst, idx)| run(dst, idx));
    // SAFETY: the chunks of `spare` cover its n slots and every thread wrote each
    // slot of its chunk (a panic would have unwound past here, leaking, never
    // exposing an unwritten slot).
    unsafe { flows.set_len(n) };
    for p in parts.iter_mut() {
        // SAFETY: every record was moved out above; free the vectors without dropping
        // them.
        unsafe { p.set_len(0) };
    }
    for p in parts {
        drop(std::mem::ManuallyDrop::into_inner(p));
    }
    flows
}

/// A stretch of [`match_all`]'s result and the records that go there.
type Job<'a> = (&'a mut [std::mem::MaybeUninit<AuditedFlow>], &'a [usize]);

/// The records' buffers (non-empty, with the index of their first record in the
/// numbering of all parts), read by the threads of [`match_all`] at disjoint indexes.
struct RecordsPtr(Vec<(usize, *mut FlowRecord)>);
// SAFETY: each record is read (moved out) by exactly one thread; FlowRecord is Send.
unsafe impl Sync for RecordsPtr {}

impl RecordsPtr {
    /// Where record `i` of all parts lies.
    ///
    /// # Safety
    /// `i` must be less than the number of records of all parts.
    unsafe fn at(&self, i: usize) -> *mut FlowRecord {
        // The last part that starts at or before `i`.
        let k = self.0.partition_point(|(start, _)| *start <= i);
        match self.0.get(k.wrapping_sub(1)) {
            // SAFETY: the part is non-empty and `i` lies in it (the caller's promise,
            // and the next part starts after `i`).
            Some(&(start, p)) => unsafe { p.add(i.wrapping_sub(start)) },
            None => std::ptr::null_mut(),
        }
    }
}

/// `parts` cut into runs of whole parts, one per thread (at most `threads`, fewer
/// for a short list: see [`stretch`]), each with the index of its first record.
fn part_groups(
    parts: &[Vec<FlowRecord>],
    threads: usize,
    total: usize,
) -> Vec<(usize, &[Vec<FlowRecord>])> {
    let target = stretch(total, threads, MATCH_PER_THREAD);
    let mut groups = Vec::new();
    let (mut start, mut first, mut count) = (0usize, 0usize, 0usize);
    for (k, p) in parts.iter().enumerate() {
        count = count.saturating_add(p.len());
        if count >= target {
            groups.push((first, parts.get(start..=k).unwrap_or_default()));
            first = first.saturating_add(count);
            start = k.saturating_add(1);
            count = 0;
        }
    }
    if start < parts.len() || groups.is_empty() {
        groups.push((first, parts.get(start..).unwrap_or_default()));
    }
    groups
}

/// The order by first frame of the records of `parts` (numbered as if the parts were
/// one vector, one part after the other), as `sort_unstable_by_key` would sort them:
/// None when they are in that order already. When every first frame is distinct (the
/// normal case) the order is unique, and sorting small keys then moving each record
/// once is much cheaper than moving records around in the sort; with duplicate first
/// frames, the parts are joined into one, sorted in place (and None returned).
fn first_frame_order(parts: &mut Vec<Vec<FlowRecord>>, threads: usize) -> Option<Vec<usize>> {
    if parts.iter().flatten().is_sorted_by_key(|r| r.first_frame) {
        return None;
    }
    let sort_joined = |parts: &mut Vec<Vec<FlowRecord>>| {
        if parts.len() > 1 {
            let all: Vec<FlowRecord> = parts.drain(..).flatten().collect();
            parts.push(all);
        }
        if let Some(p) = parts.first_mut() {
            p.sort_unstable_by_key(|r| r.first_frame);
        }
    };
    // One u128 per record: file, frame, index (a flow's first frame is unique in
    // the run, so the index only breaks ties that should not exist). Records arrive
    // in runs (each worker's flows in the order they ended), which the stable sort
    // finds and merges (handshake capture, 200,000 records: 5.7 ms, against 7.4 ms
    // for sorting (FrameRef, usize) tuples unstably).
    let total = parts.iter().map(Vec::len).fold(0usize, usize::saturating_add);
    if u32::try_from(total).is_err() {
        sort_joined(parts);
        return None;
    }
    // On the audit's threads for a large list: each thread keys and sorts a run of
    // whole parts, and the sorted runs are merged (the stable sort finds them).
    let runs: Vec<Vec<u128>> = in_parts(part_groups(parts, threads, total), &|(first, group)| {
        let mut keys: Vec<u128> = group
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                (u128::from(r.first_frame.file) << 96)
                    | (u128::from(r.first_frame.frame) << 32)
                    | first.saturating_add(i) as u128
            })
            .collect();
        keys.sort();
        keys
    });
    let keys: Vec<u128> = if runs.len() == 1 {
        runs.into_iter().flatten().collect()
    } else {
        let mut all = runs.concat();
        all.sort();
        all
    };
    if keys.windows(2).any(|w| matches!(w, [a, b] if a >> 32 == b >> 32)) {
        sort_joined(parts);
        return None;
    }
    Some(keys.into_iter().map(|k| (k as u32) as usize).collect())
}

/// The roles of a flow's matches on its service's ports, as a bit set.
fn roles_of(f: &AuditedFlow, reqs: &[Requirement]) -> u8 {
    f.matches
        .iter()
        .filter(|m| m.path != PortPath::OtherPort)
        .filter_map(|m| reqs.get(m.req).map(|r| role_bit(r.role)))
        .fold(0u8, |acc, b| acc | b)
}

/// An address range alone can fit several requirements: keeps the candidates whose
/// role the client shows in flows that are not ambiguous (`client_roles`), and marks
/// the flow ambiguous when an address range alone leaves several.
fn settle_roles(f: &mut AuditedFlow, client_roles: &FastMap<IpAddr, u8>, reqs: &[Requirement]) {
    if f.matches.len() < 2 {
        // One match or none: never several roles or several candidates.
        return;
    }
    let roles = roles_of(f, reqs);
    // A name or a site role proves the service; an address range alone does not.
    let by_host = f
        .matches
        .iter()
        .any(|m| matches!(m.by, MatchBy::Host(_) | MatchBy::SiteRole { .. }));
    let several = if by_host {
        roles.count_ones() > 1
    } else {
        f.matches.len() > 1
    };
    if !several {
        return;
    }
    let known = client_roles.get(&f.record.client.ip()).copied();
    let keep: Vec<FlowMatch> = f
        .matches
        .iter()
        .filter(|m| {
            reqs.get(m.req)
                .is_some_and(|r| known.is_some_and(|rs| rs & role_bit(r.role) != 0))
        })
        .cloned()
        .collect();
    if !keep.is_empty() && keep.len() < f.matches.len() {
        f.matches = keep;
    }
    // A name proves the service even when the role stays open; an address
    // range alone does not pick among several services.
    f.ambiguous = !by_host && f.matches.len() > 1;
}

/// One bit per [`Role`], for small role sets.
fn role_bit(role: Role) -> u8 {
    match role {
        Role::DeviceToCloud => 1,
        Role::ServerToCloud => 2,
        Role::AdminToCloud => 4,
        Role::DeviceToServer => 8,
        Role::AdminToServer => 16,
        Role::ServerToInternal => 32,
        Role::DeviceToDevice => 64,
    }
}

/// How many flows a record stands for: itself and those folded into it.
fn weight(r: &FlowRecord) -> usize {
    usize::try_from(r.folded)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Ok => 0,
        Verdict::Undetermined => 1,
        Verdict::Unexpected => 2,
        Verdict::Legacy => 3,
        Verdict::Missing => 4,
        Verdict::Fallback => 5,
        Verdict::Blocked => 6,
    }
}

/// Lower is more specific: exact names, then a wildcard inside the first label, then
/// any subdomain; country-code forms after plain ones; then the longer pattern.
fn pattern_rank(p: &str) -> (u8, std::cmp::Reverse<usize>) {
    let kind: u8 = if p.starts_with("*.") {
        2
    } else if p.contains('*') || p.contains('#') {
        1
    } else {
        0
    };
    let cc = if p.contains("[cctld]") { 3 } else { 0 };
    (kind.saturating_add(cc), std::cmp::Reverse(p.len()))
}

/// A flow's identity as far as the catalog is concerned: its name (an index into
/// [`MatchCache::names`], [`NO_NAME`] for none), server address, transport, server
/// port, and whether it is QUIC.
type IdentityKey = (u32, IpAddr, Transport, u16, bool);

const NO_NAME: u32 = u32::MAX;

/// Remembers the matches of each distinct flow identity: names, addresses and ports
/// repeat massively in a capture, and matching one identity twice gives the same
/// answer.
struct MatchCache<'c> {
    catalog: &'c Catalog,
    ids: &'c [Arc<str>],
    names: FastMap<String, u32>,
    /// Catalog matches of an identity, before the site's and the audit's filters.
    base: FastMap<IdentityKey, Vec<Match>>,
    /// Final matches of an identity (without a site file only: with one, they also
    /// depend on the client).
    done: FastMap<IdentityKey, Vec<FlowMatch>>,
    /// The catalog's vendor and range for an unnamed server address.
    ranges: FastMap<IpAddr, Option<Box<(String, String)>>>,
}

impl<'c> MatchCache<'c> {
    fn new(catalog: &'c Catalog, ids: &'c [Arc<str>]) -> Self {
        MatchCache {
            catalog,
            ids,
            names: fast_map(),
            base: fast_map(),
            done: fast_map(),
            ranges: fast_map(),
        }
    }

    /// The flow's identity; None past `u32::MAX - 1` distinct names (not cached).
    fn key(&mut self, record: &FlowRecord) -> Option<IdentityKey> {
        let name = match record.name.as_deref() {
            None => NO_NAME,
            Some(n) => match self.names.get(n) {
                Some(id) => *id,
                None => {
                    let id = u32::try_from(self.names.len())
                        .ok()
                        .filter(|id| *id != NO_NAME)?;
                    self.names.insert(n.to_owned(), id);
                    id
                }
            },
        };
        Some((
            name,
            record.server.ip(),
            record.transport,
            record.server.port(),
            record.app == Some(crate::flow::AppProto::Quic),
        ))
    }

    fn audited(
        &mut self,
        record: FlowRecord,
        site: Option<&Site>,
        selected: &[String],
    ) -> AuditedFlow {
        let catalog_range = match record.name {
            Some(_) => None,
            None => {
                let catalog = self.catalog;
                self.ranges
                    .entry(record.server.ip())
                    .or_insert_with_key(|ip| {
                        catalog
                            .name_for_address(*ip)
                            .map(|(vendor, net)| Box::new((vendor.to_string(), net.to_string())))
                    })
                    .clone()
            }
        };
        let key = self.key(&record);
        let matches = match (site, key) {
            (None, Some(key)) => {
                if let Some(m) = self.done.get(&key) {
                    m.clone()
                } else {
                    let ms = catalog_matches(self.catalog, &record);
                    let m = finish_matches(ms, self.ids);
                    self.done.insert(key, m.clone());
                    m
                }
            }
            _ => {
                let mut ms = match key {
                    Some(key) => match self.base.get(&key) {
                        Some(ms) => ms.clone(),
                        None => {
                            let ms = catalog_matches(self.catalog, &record);
                            self.base.insert(key, ms.clone());
                            ms
                        }
                    },
                    None => catalog_matches(self.catalog, &record),
                };
                if let Some(site) = site {
                    site_matches(self.catalog, site, selected, &record, &mut ms);
                }
                finish_matches(ms, self.ids)
            }
        };
        AuditedFlow {
            record,
            catalog_range,
            matches,
            ambiguous: false,
        }
    }
}

/// The catalog's matches of a flow's identity.
fn catalog_matches(catalog: &Catalog, record: &FlowRecord) -> Vec<Match> {
    let server = record.server;
    let name = record.name.as_deref();
    let mut ms = catalog.match_flow(name, server.ip(), record.transport, server.port());
    // QUIC is HTTP/3: the same service as HTTPS on the same port number. A QUIC flow
    // that no requirement lists for UDP is judged as its TCP counterpart.
    if record.app == Some(crate::flow::AppProto::Quic)
        && ms.iter().all(|m| m.path == PortPath::OtherPort)
    {
        ms = catalog.match_flow(name, server.ip(), Transport::Tcp, server.port());
    }
    ms
}

/// The audit's filters over a flow's matches (catalog and site), as [`FlowMatch`]es.
fn finish_matches(mut ms: Vec<Match>, ids: &[Arc<str>]) -> Vec<FlowMatch> {
    // A flow on a port its service uses is not also "unexpected" for that service.
    if ms.iter().any(|m| m.path != PortPath::OtherPort) {
        ms.retain(|m| m.path != PortPath::OtherPort);
    }
    // A service on a port it does not use is only judged when the name proves the
    // service (an address range alone covers a whole vendor).
    ms.retain(|m| m.path != PortPath::OtherPort || matches!(m.by, MatchBy::Host(_)));
    // The most specific host pattern wins: api.push.apple.com (the provider API)
    // over *.push.apple.com (the device channel).
    let rank = |m: &crate::catalog::Match| -> Option<(u8, std::cmp::Reverse<usize>)> {
        match &m.by {
            MatchBy::Host(p) => Some(pattern_rank(p)),
            MatchBy::Address(_) | MatchBy::SiteRole { .. } => None,
        }
    };
    if let Some(best) = ms.iter().filter_map(rank).min() {
        ms.retain(|m| rank(m).is_none_or(|r| r == best));
    }
    ms.into_iter()
        .filter_map(|m| {
            Some(FlowMatch {
                rule: Arc::clone(ids.get(m.req)?),
                req: m.req,
                path: m.path,
                by: m.by,
                verdict: None,
            })
        })
        .collect()
}

fn describe_ports(req: &Requirement) -> String {
    let t: Vec<&str> = req.transports.iter().map(|t| t.as_str()).collect();
    let p: Vec<String> = req.ports.iter().map(|p| p.to_string()).collect();
    format!("{}/{}", t.join("+"), p.join(","))
}

fn make_finding(
    ri: usize,
    req: &Requirement,
    v: Verdict,
    dev: IpAddr,
    flows: &[AuditedFlow],
    ev_flows: &[usize],
    opts: &AuditOptions,
) -> Finding {
    let site = opts.site.as_deref();
    let from = from_text(site, req, dev);
    let mut evidence: Vec<Evidence> = ev_flows
        .iter()
        .filter_map(|&fi| flows.get(fi))
        .map(|f| evidence_for(f, Some(ri)))
        .collect();
    evidence.sort();
    let first_ts = ev_flows
        .iter()
        .filter_map(|&fi| flows.get(fi))
        .map(|f| f.record.first_ts)
        .min();
    let failed: Vec<&Evidence> = evidence.iter().filter(|e| e.failed).collect();
    let failed_flows = failed
        .iter()
        .map(|e| e.flows)
        .fold(0usize, usize::saturating_add);
    let outcome_words = |es: &[&Evidence]| -> String {
        let mut c: BTreeMap<Cow<'static, str>, usize> = BTreeMap::new();
        for e in es {
            let word: Cow<'static, str> = match (e.outcome, e.icmp_reporter) {
                (Outcome::Reset, _) => Cow::Borrowed("reset before the server sent any data"),
                (Outcome::Unreachable, Some(by)) if e.admin_prohibited => {
                    Cow::Owned(format!("unreachable: administratively prohibited by {by}"))
                }
                (Outcome::Unreachable, Some(by)) => {
                    Cow::Owned(format!("unreachable: ICMP error from {by}"))
                }
                (Outcome::Unanswered, _) if e.syn_retransmits > 0 => {
                    Cow::Borrowed("unanswered after SYN retransmissions")
                }
                (o, _) => Cow::Borrowed(o.as_str()),
            };
            let n = c.entry(word).or_default();
            *n = n.saturating_add(e.flows);
        }
        let mut out = String::new();
        for (k, n) in &c {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(&n.to_string());
            out.push(' ');
            out.push_str(k);
        }
        out
    };
    let ports_of = |es: &[&Evidence]| -> BTreeSet<(Transport, u16)> {
        es.iter().map(|e| (e.transport, e.port)).collect()
    };
    let dest_of = |es: &[&Evidence], ev_flows: &[usize]| -> String {
        // The requirement's own ranges that contain the destinations; else the name
        // the flow was attributed to with the address seen, else the address.
        let mut out: BTreeSet<String> = BTreeSet::new();
        for &fi in ev_flows {
            let Some(f) = flows.get(fi) else { continue };
            if !es.iter().any(|e| e.frame == f.record.first_frame) {
                continue;
            }
            let ip = f.record.server.ip();
            let site_net = req
                .target
                .as_deref()
                .and_then(|t| site.and_then(|s| s.net_of(t, ip)));
            if let Some(n) = site_net {
                out.insert(net_text(&n));
                continue;
            }
            match req.addresses.iter().find(|n| n.contains(&ip)) {
                Some(n) => out.insert(n.to_string()),
                None => match &f.record.name {
                    Some(name) => out.insert(format!("{name} [{ip}]")),
                    None => out.insert(ip.to_string()),
                },
            };
        }
        out.into_iter().collect::<Vec<_>>().join(",")
    };
    let allow = |es: &[&Evidence]| -> Vec<String> {
        ports_of(es)
            .into_iter()
            .map(|(t, p)| {
                let on_port: Vec<&Evidence> = es
                    .iter()
                    .copied()
                    .filter(|e| e.port == p && e.transport == t)
                    .collect();
                format!(
                    "allow {}/{} from {} to {} ({})",
                    t,
                    p,
                    from,
                    dest_of(&on_port, ev_flows),
                    req.id
                )
            })
            .collect()
    };
    let (severity, summary, remediation) = match v {
        Verdict::Blocked => (
            Severity::Error,
            format!(
                "{} cannot reach {}{}: {} attempt(s) failed ({}) and none succeeded on a fallback path",
                dev,
                req.product,
                site_target_words(site, req),
                failed_flows,
                outcome_words(&failed)
            ),
            allow(&failed),
        ),
        Verdict::Fallback => {
            let fb: Vec<&Evidence> = evidence.iter().filter(|e| !e.failed).collect();
            let fb_ports: Vec<String> = ports_of(&fb)
                .into_iter()
                .map(|(t, p)| format!("{t}/{p}"))
                .collect();
            let s = if failed.is_empty() {
                format!(
                    "{} reaches {} only on its fallback path ({}); no attempt on the preferred port was captured",
                    dev,
                    req.product,
                    fb_ports.join(", ")
                )
            } else {
                let pref: Vec<String> = ports_of(&failed)
                    .into_iter()
                    .map(|(t, p)| format!("{t}/{p}"))
                    .collect();
                format!(
                    "{} falls back to {} for {}: its {} attempt(s) on {} failed ({})",
                    dev,
                    fb_ports.join(", "),
                    req.product,
                    failed_flows,
                    pref.join(", "),
                    outcome_words(&failed)
                )
            };
            let rem = if failed.is_empty() {
                let site_nets: Vec<String> = req
                    .target
                    .as_deref()
                    .and_then(|t| site.map(|s| s.role(t).iter().map(net_text).collect()))
                    .unwrap_or_default();
                let to = if !site_nets.is_empty() {
                    site_nets.join(",")
                } else if req.addresses.is_empty() {
                    req.hosts
                        .iter()
                        .map(|h| h.as_str().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                } else {
                    req.addresses
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                req.ports
                    .iter()
                    .flat_map(|p| req.transports.iter().map(move |t| (t, p)))
                    .map(|(t, p)| format!("allow {}/{} from {} to {} ({})", t, p, from, to, req.id))
                    .collect()
            } else {
                allow(&failed)
            };
            (Severity::Warning, s, rem)
        }
        Verdict::Legacy => (
            Severity::Warning,
            format!(
                "{} uses {} ({}), retired{}",
                dev,
                req.product,
                describe_ports(req),
                req.legacy
                    .as_ref()
                    .and_then(|l| l.retired.as_ref())
                    .map(|d| format!(" on {d}"))
                    .unwrap_or_default()
            ),
            req.legacy.iter().map(|l| l.note.clone()).collect(),
        ),
        Verdict::Unexpected => (
            Severity::Warning,
            format!(
                "{} talks to {} on a port it does not use (expected {})",
                dev,
                req.product,
                describe_ports(req)
            ),
            Vec::new(),
        ),
        _ => (Severity::Info, String::new(), Vec::new()),
    };
    // A folded record (over --max-records) stands for several flows.
    let flows_n = ev_flows
        .iter()
        .filter_map(|&fi| flows.get(fi))
        .map(|f| weight(&f.record))
        .fold(0usize, usize::saturating_add);
    evidence.truncate(opts.max_evidence);
    Finding {
        rule: req.id.clone(),
        verdict: v,
        severity,
        device: Some(dev),
        summary,
        flows: flows_n,
        evidence,
        remediation,
        first_ts,
    }
}

fn direction_check(parts: &[Vec<FlowRecord>], threads: usize) -> DirectionCheck {
    let total = parts.iter().map(Vec::len).fold(0usize, usize::saturating_add);
    // Counted on the audit's threads for a large list, a run of parts each.
    let counts = in_parts(part_groups(parts, threads, total), &|(_, group)| {
        let (mut both, mut client_only_answered, mut failed) = (0usize, 0usize, 0usize);
        for r in group.iter().flatten().filter(|r| r.transport == Transport::Tcp) {
            let n = weight(r);
            if r.client_packets > 0 && r.server_packets > 0 {
                both = both.saturating_add(n);
            } else if r.one_direction || (r.outcome == Outcome::Midstream && r.client_packets >= 3)
            {
                client_only_answered = client_only_answered.saturating_add(n);
            }
            if r.attempt_failed() {
                failed = failed.saturating_add(n);
            }
        }
        [both, client_only_answered, failed]
    });
    let [both, client_only_answered, failed] = counts.into_iter().fold([0usize; 3], |a, b| {
        [
            a[0].saturating_add(b[0]),
            a[1].saturating_add(b[1]),
            a[2].saturating_add(b[2]),
        ]
    });
    // One direction: clients keep talking with nothing ever captured back, and
    // (almost) no flow shows both directions.
    let one = client_only_answered > 0 && both.saturating_mul(10) <= client_only_answered;
    DirectionCheck {
        one_direction: one,
        tcp_flows_both_directions: both,
        tcp_flows_client_only_answered: client_only_answered,
        attempts_not_judged: if one { failed } else { 0 },
    }
}

/// One flow as evidence; `rule` names the requirement whose port path is shown.
fn evidence_for(f: &AuditedFlow, req: Option<usize>) -> Evidence {
    let r = &f.record;
    // Requirement ids are unique: the index names the same match as the id.
    let role = req
        .and_then(|ri| f.matches.iter().find(|m| m.req == ri))
        .map(|m| m.path.as_str())
        .unwrap_or("");
    Evidence {
        frame: r.first_frame,
        destination: match &r.name {
            Some(n) => format!("{} ({})", r.server.ip(), n),
            None => r.server.ip().to_string(),
        },
        transport: r.transport,
        port: r.server.port(),
        outcome: r.outcome,
        role,
        failed: r.attempt_failed(),
        syn_retransmits: r.syn_retransmits,
        icmp_reporter: r.icmp.as_ref().map(|i| i.reporter),
        admin_prohibited: r.icmp.as_ref().is_some_and(|i| i.admin_prohibited),
        flows: weight(r),
    }
}

/// ` at the site's mdm-server (10.20.1.5)` for a site-role requirement.
fn site_target_words(site: Option<&Site>, req: &Requirement) -> String {
    let (Some(site), Some(t)) = (site, req.target.as_deref()) else {
        return String::new();
    };
    let nets: Vec<String> = site.role(t).iter().map(net_text).collect();
    if nets.is_empty() {
        String::new()
    } else {
        format!(" at the site's {t} ({})", nets.join(", "))
    }
}

/// The role whose addresses initiate `req`'s traffic: the explicit `initiator`, else
/// the one its role implies (devices for device-to-*, the MDM server for
/// server-to-internal, `admin` for admin-to-*); None for server-to-cloud.
fn initiator_role(req: &Requirement) -> Option<&str> {
    req.initiator.as_deref().or(match req.role {
        Role::DeviceToServer | Role::DeviceToDevice => Some(MANAGED_DEVICES),
        Role::ServerToInternal => Some(MDM_SERVER),
        Role::AdminToServer | Role::AdminToCloud => Some(ADMIN),
        _ => None,
    })
}

/// Whether `client` can be the initiator of `req` at this site: when the site assigns
/// the initiator role, the client must have it; a managed device initiates only
/// device requirements.
fn initiator_fits(site: &Site, req: &Requirement, client: IpAddr) -> bool {
    let device = site.is_device(client);
    match initiator_role(req) {
        Some(MANAGED_DEVICES) if site.defines(MANAGED_DEVICES) => device,
        Some(MANAGED_DEVICES) => true,
        Some(role) if site.defines(role) => site.has_role(role, client),
        _ => !device,
    }
}

/// Site-role matches, and the device/server split: a flow to an address with role R on
/// a port of a requirement whose `target` is R (of a selected profile, when profiles
/// were selected) whose initiator fits the client.
fn site_matches(
    catalog: &Catalog,
    site: &Site,
    selected: &[String],
    record: &FlowRecord,
    ms: &mut Vec<Match>,
) {
    let reqs = catalog.requirements();
    let client = record.client.ip();
    let server = record.server.ip();
    for (ri, r) in reqs.iter().enumerate() {
        let Some(t) = r.target.as_deref() else {
            continue;
        };
        let Some(net) = site.net_of(t, server) else {
            continue;
        };
        let path = r.port_path(record.transport, record.server.port());
        if path == PortPath::OtherPort
            || (!selected.is_empty() && !r.profiles.iter().any(|p| selected.contains(p)))
            || !initiator_fits(site, r, client)
            || ms.iter().any(|m| m.req == ri)
        {
            continue;
        }
        ms.push(Match {
            req: ri,
            path,
            by: MatchBy::SiteRole {
                role: t.to_owned(),
                net,
            },
        });
    }
    ms.sort_by_key(|m| m.req);
    // A managed device is not a server, and the MDM server is not a device.
    let drop: &[Role] = if site.is_device(client) {
        &[Role::ServerToCloud, Role::AdminToCloud]
    } else if site.has_role(MDM_SERVER, client) {
        &[Role::DeviceToCloud]
    } else {
        &[]
    };
    let role_of = |m: &Match| reqs.get(m.req).map(|r| r.role);
    if !drop.is_empty()
        && ms
            .iter()
            .any(|m| role_of(m).is_some_and(|r| !drop.contains(&r)))
    {
        ms.retain(|m| role_of(m).is_some_and(|r| !drop.contains(&r)));
    }
}

/// `from` of a remediation line: the site range of the initiator role (or of the
/// managed devices) holding the device, else the device's address.
fn from_text(site: Option<&Site>, req: &Requirement, dev: IpAddr) -> String {
    let Some(site) = site else {
        return dev.to_string();
    };
    let role_net = initiator_role(req).and_then(|r| site.net_of(r, dev));
    let dev_net = site
        .is_device(dev)
        .then(|| site.net_of(MANAGED_DEVICES, dev))
        .flatten();
    match role_net.or(dev_net) {
        Some(n) => net_text(&n),
        None => dev.to_string(),
    }
}

/// Multicast, broadcast and link-local destinations, and DHCP: local plumbing, not a
/// destination a site allows or forbids.
fn local_plumbing(addr: IpAddr, transport: Transport, port: u16) -> bool {
    let dhcp = transport == Transport::Udp && matches!(port, 67 | 68 | 546 | 547);
    dhcp || match addr {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_link_local(),
        IpAddr::V6(a) => a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Strict mode: one finding per (device or MDM server, destination) for flows that
/// match no requirement, are not DNS to the site's resolvers (any resolver when the
/// site names none), not local plumbing, and not allowed by an `[[allow]]` entry.
fn outside_catalog(site: &Site, flows: &[AuditedFlow], opts: &AuditOptions) -> Vec<Finding> {
    let mut groups: BTreeMap<(IpAddr, String), Vec<usize>> = BTreeMap::new();
    for (fi, f) in flows.iter().enumerate() {
        let r = &f.record;
        let (client, server, port) = (r.client.ip(), r.server.ip(), r.server.port());
        if !f.matches.is_empty()
            || !(site.is_device(client) || site.has_role(MDM_SERVER, client))
            || local_plumbing(server, r.transport, port)
            || (port == 53 && (!site.defines(DNS) || site.has_role(DNS, server)))
            || site
                .allowed_by(r.name.as_deref(), server, r.transport, port)
                .is_some()
        {
            continue;
        }
        let dest = match &r.name {
            Some(n) => n.clone(),
            None => server.to_string(),
        };
        groups.entry((client, dest)).or_default().push(fi);
    }
    let mut out = Vec::new();
    for ((dev, dest), fis) in groups {
        let mut evidence: Vec<Evidence> = fis
            .iter()
            .filter_map(|&fi| flows.get(fi))
            .map(|f| evidence_for(f, None))
            .collect();
        evidence.sort();
        let ports: BTreeSet<String> = evidence
            .iter()
            .map(|e| format!("{}/{}", e.transport, e.port))
            .collect();
        let who = if site.is_device(dev) {
            "managed device"
        } else {
            "MDM server"
        };
        let first_ts = fis
            .iter()
            .filter_map(|&fi| flows.get(fi))
            .map(|f| f.record.first_ts)
            .min();
        let n = evidence.len();
        evidence.truncate(opts.max_evidence);
        out.push(Finding {
            rule: OUTSIDE_CATALOG_RULE.to_owned(),
            verdict: Verdict::Unexpected,
            severity: Severity::Warning,
            device: Some(dev),
            summary: format!(
                "{who} {dev} talks to {dest} ({}), a destination outside the catalog (strict site)",
                ports.into_iter().collect::<Vec<_>>().join(", ")
            ),
            flows: n,
            evidence,
            remediation: vec![format!(
                "if {dest} is legitimate, add an [[allow]] entry for it to the site file {}; otherwise find out why {dev} talks to it",
                site.file
            )],
            first_ts,
        });
    }
    out
}

/// Addresses a site keeps for itself: RFC 1918, shared (100.64/10), link-local,
/// IPv6 unique-local, and the documentation ranges test captures use.
fn internal(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private()
                || a.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || matches!(
                    (o[0], o[1], o[2]),
                    (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
                )
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0xdb8)
        }
    }
}

/// The smallest covering /24 (IPv4) or /64 (IPv6) of an address.
fn covering(addr: IpAddr) -> IpNet {
    let len = if addr.is_ipv4() { 24 } else { 64 };
    IpNet::new(addr, len).map_or(IpNet::from(addr), |n| n.trunc())
}

/// What [`suggest_site`] gathers from each flow, in the audit's pass over the flows.
struct SuggestScan<'a> {
    reqs: &'a [Requirement],
    /// The MDM server's device ports (443, 8443).
    server_ports: BTreeSet<u16>,
    /// By requirement index: a device service that identifies a device platform.
    is_signal: Vec<bool>,
    /// Internal server address -> its clients and ports.
    accepts: FastMap<IpAddr, Accepts>,
    cloud_server: BTreeMap<IpAddr, BTreeSet<String>>,
    device_clients: BTreeMap<IpAddr, BTreeSet<String>>,
    /// (client, name or server address, requirement index) already noted: the texts
    /// are made once per distinct entry.
    cloud_seen: FastSet<(IpAddr, Option<&'a str>, Option<IpAddr>, usize)>,
    device_seen: FastSet<(IpAddr, usize)>,
}

type Accepts = (FastSet<IpAddr>, BTreeSet<u16>);

impl<'a> SuggestScan<'a> {
    fn new(catalog: &'a Catalog) -> Self {
        let reqs = catalog.requirements();
        let server_ports: BTreeSet<u16> = reqs
            .iter()
            .filter(|r| r.role == Role::DeviceToServer && r.target.as_deref() == Some(MDM_SERVER))
            .flat_map(|r| r.ports.iter().flat_map(|p| p.start..=p.end))
            .filter(|p| matches!(p, 443 | 8443))
            .collect();
        // Device services that identify a device platform (the profiles' `infer` lists:
        // APNs, FCM, WNS, Intune...), not ones an administrator's browser also uses.
        let device_signals: BTreeSet<&str> = catalog
            .profiles()
            .iter()
            .flat_map(|p| p.infer.iter().map(String::as_str))
            .collect();
        let is_signal: Vec<bool> = reqs
            .iter()
            .map(|r| device_signals.contains(r.id.as_str()))
            .collect();
        SuggestScan {
            reqs,
            server_ports,
            is_signal,
            accepts: fast_map(),
            cloud_server: BTreeMap::new(),
            device_clients: BTreeMap::new(),
            cloud_seen: fast_set(),
            device_seen: fast_set(),
        }
    }

    /// Add what another stretch of the flows showed (sets: the order does not
    /// matter), once every stretch has been noted. The sets of entries already
    /// noted only spare `note` work within a stretch: they are not merged (1.7 ms
    /// of the handshake capture's serial merge).
    fn merge(&mut self, other: SuggestScan<'a>) {
        for (addr, (clients, ports)) in other.accepts {
            let e = self.accepts.entry(addr).or_default();
            e.0.extend(clients);
            e.1.extend(ports);
        }
        for (c, texts) in other.cloud_server {
            self.cloud_server.entry(c).or_default().extend(texts);
        }
        for (c, ids) in other.device_clients {
            self.device_clients.entry(c).or_default().extend(ids);
        }
    }

    fn note(&mut self, f: &'a AuditedFlow) {
        let r = &f.record;
        let (c, sv, port) = (r.client.ip(), r.server.ip(), r.server.port());
        if r.transport == Transport::Tcp && self.server_ports.contains(&port) && internal(sv) {
            let e = self.accepts.entry(sv).or_default();
            e.0.insert(c);
            e.1.insert(port);
        }
        if f.ambiguous {
            return;
        }
        for m in f.matches.iter().filter(|m| m.path != PortPath::OtherPort) {
            let Some(req) = self.reqs.get(m.req) else {
                continue;
            };
            match req.role {
                Role::ServerToCloud => {
                    let name = r.name.as_deref();
                    let addr = if name.is_some() { None } else { Some(sv) };
                    if self.cloud_seen.insert((c, name, addr, m.req)) {
                        let what = r.name.clone().unwrap_or_else(|| sv.to_string());
                        self.cloud_server
                            .entry(c)
                            .or_default()
                            .insert(format!("{what} ({})", req.id));
                    }
                }
                Role::DeviceToCloud
                    if self.is_signal.get(m.req).copied().unwrap_or(false)
                        && self.device_seen.insert((c, m.req)) =>
                {
                    self.device_clients
                        .entry(c)
                        .or_default()
                        .insert(req.id.clone());
                }
                _ => {}
            }
        }
    }
}

/// Roles the traffic suggests when no site file was given:
/// * `mdm-server`: an internal address that accepts TCP on the MDM server's device
///   ports (443, 8443) from at least two clients and itself talks to a server-to-cloud
///   service (the APNs provider API, FCM...);
/// * `managed-devices`: the /24s (IPv6: /64s) of the clients of the device-to-cloud
///   services profiles are inferred from (APNs, FCM, WNS...), the suggested servers
///   excepted;
/// * internal roles (`sql`, `ldap`...): internal addresses a suggested MDM server
///   talks to on the one site role's port that a server-to-internal requirement uses.
fn suggest_site(
    catalog: &Catalog,
    scan: SuggestScan<'_>,
    flows: &[AuditedFlow],
    profiles: &[ActiveProfile],
) -> Option<SiteSuggestions> {
    let reqs = catalog.requirements();
    let SuggestScan {
        accepts,
        cloud_server,
        device_clients,
        ..
    } = scan;
    let mut accepts: Vec<(IpAddr, Accepts)> = accepts.into_iter().collect();
    accepts.sort_unstable_by_key(|(addr, _)| *addr);
    let mut reasons: Vec<SuggestedRole> = Vec::new();
    let mut servers: BTreeSet<IpAddr> = BTreeSet::new();
    for (addr, (clients, ports)) in &accepts {
        let Some(cloud) = cloud_server.get(addr) else {
            continue;
        };
        if clients.len() < 2 || !internal(*addr) {
            continue;
        }
        servers.insert(*addr);
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        reasons.push(SuggestedRole {
            role: MDM_SERVER.to_owned(),
            address: addr.to_string(),
            reason: format!(
                "accepts tcp/{} from {} clients and talks to {}",
                ports.join(","),
                clients.len(),
                cloud.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let mut device_nets: BTreeMap<IpNet, (usize, BTreeSet<String>)> = BTreeMap::new();
    for (c, ids) in &device_clients {
        if servers.contains(c) {
            continue;
        }
        let e = device_nets.entry(covering(*c)).or_default();
        e.0 = e.0.saturating_add(1);
        e.1.extend(ids.iter().cloned());
    }
    for (net, (n, ids)) in &device_nets {
        reasons.push(SuggestedRole {
            role: MANAGED_DEVICES.to_owned(),
            address: net.to_string(),
            reason: format!(
                "{n} client{} here talk{} to device services ({})",
                if *n == 1 { "" } else { "s" },
                if *n == 1 { "s" } else { "" },
                ids.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    // Internal services the suggested MDM servers use.
    let mut internal_roles: BTreeMap<(String, IpAddr), BTreeSet<String>> = BTreeMap::new();
    // (transport, port) -> the one site role and requirement a server uses there.
    let mut one_role: FastMap<(Transport, u16), Option<(&str, &str)>> = fast_map();
    let mut role_seen: FastSet<(IpAddr, Transport, u16)> = fast_set();
    for f in flows
        .iter()
        .filter(|f| !servers.is_empty() && servers.contains(&f.record.client.ip()))
    {
        let r = &f.record;
        let (sv, port) = (r.server.ip(), r.server.port());
        if !internal(sv) || servers.contains(&sv) {
            continue;
        }
        let one = *one_role.entry((r.transport, port)).or_insert_with(|| {
            let cands: BTreeMap<&str, &str> = reqs
                .iter()
                .filter(|q| q.role == Role::ServerToInternal)
                .filter(|q| matches!(initiator_role(q), Some(MDM_SERVER)))
                .filter(|q| q.port_path(r.transport, port) == PortPath::Preferred)
                .filter_map(|q| {
                    q.target
                        .as_deref()
                        .filter(|t| *t != MDM_SERVER && *t != MANAGED_DEVICES)
                        .map(|t| (t, q.id.as_str()))
                })
                .collect();
            match (cands.len(), cands.iter().next()) {
                (1, Some((t, id))) => Some((*t, *id)),
                _ => None,
            }
        });
        if let Some((t, id)) = one {
            if role_seen.insert((sv, r.transport, port)) {
                internal_roles
                    .entry((t.to_string(), sv))
                    .or_default()
                    .insert(format!("{}/{port} ({id})", r.transport));
            }
        }
    }
    for ((role, addr), what) in &internal_roles {
        reasons.push(SuggestedRole {
            role: role.clone(),
            address: addr.to_string(),
            reason: format!(
                "the suggested mdm-server talks to it on {}",
                what.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    if reasons.is_empty() {
        return None;
    }
    let order = |r: &str| match r {
        MANAGED_DEVICES => 0,
        MDM_SERVER => 1,
        _ => 2,
    };
    reasons.sort_by(|a, b| {
        (order(&a.role), &a.role, &a.address).cmp(&(order(&b.role), &b.role, &b.address))
    });
    let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &reasons {
        roles
            .entry(r.role.clone())
            .or_default()
            .push(r.address.clone());
    }
    let mut toml = String::from(
        "# Suggested by mdmaudit from the traffic: check every line, then pass it with --site FILE.\n[site]\nname = \"suggested\"\nstrict = false\n",
    );
    let inferred: Vec<String> = profiles.iter().map(|p| format!("\"{}\"", p.name)).collect();
    if !inferred.is_empty() {
        toml.push_str(&format!("profiles = [{}]\n", inferred.join(", ")));
    }
    toml.push_str("\n[roles]\n");
    let mut listed: BTreeSet<&str> = BTreeSet::new();
    for r in &reasons {
        if !listed.insert(r.role.as_str()) {
            continue;
        }
        let addrs: Vec<String> = roles
            .get(&r.role)
            .map(|v| v.iter().map(|a| format!("\"{a}\"")).collect())
            .unwrap_or_default();
        toml.push_str(&format!("{} = [{}]\n", r.role, addrs.join(", ")));
    }
    Some(SiteSuggestions {
        roles,
        reasons,
        site_file: toml,
    })
}

#[cfg(test)]
mod size_tests {
    use std::mem::size_of;

    /// Every flow of a capture becomes an audited flow (a vector of them as large as
    /// the capture has flows): it adds no more than a pointer, a vector and a flag to
    /// its record.
    #[test]
    fn an_audited_flow_is_its_record_and_little_more() {
        assert!(
            size_of::<super::AuditedFlow>() <= size_of::<crate::flow::FlowRecord>() + 40,
            "{} bytes",
            size_of::<super::AuditedFlow>()
        );
    }
}
