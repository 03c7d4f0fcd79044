//! `k3splan check`: findings about slow outages (certificates that expire, old snapshots, a
//! DB growing into its quota, a stuck learner, an orphaned member, a leftover remove
//! annotation, two VIP holders, another tool acting on the cluster, version skew), computed
//! from observed values only. No I/O: the engine reads the facts, [`evaluate`] judges them.
//!
//! Guarantees:
//! - every check whose source is unknown yields an [`Severity::Unknown`] finding (never
//!   silence, never ok): the exit code is then never 0 ([`Report::exit_code`]);
//! - findings are sorted by check ID, then subject: the same cluster gives the same report;
//! - the JSON form ([`Report`]) is versioned by [`REPORT_FORMAT_VERSION`]; fields are only
//!   ever added (docs/check.md documents it).

mod facts;
mod settings;
mod time;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::Topology;
use crate::observed::{Fact, Observed};

pub use facts::*;
pub use settings::*;
pub use time::rfc3339;

/// The version of the JSON report (`format_version`).
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// How bad a finding is. Ordered: `Ok < Warning < Unknown < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warning,
    /// The check could not be made (its source did not answer).
    Unknown,
    Critical,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Unknown => "unknown",
            Severity::Critical => "critical",
        }
    }
}

/// The IDs of the checks (the `check` field of a finding).
pub mod ids {
    pub const CERT_EXPIRY: &str = "cert_expiry";
    pub const SNAPSHOT_AGE: &str = "snapshot_age";
    pub const SNAPSHOT_UNREADABLE: &str = "snapshot_unreadable";
    pub const DB_SIZE: &str = "etcd_db_size";
    pub const MEMBER_COUNT: &str = "etcd_member_count";
    pub const STUCK_LEARNER: &str = "etcd_stuck_learner";
    pub const ORPHANED_MEMBER: &str = "etcd_orphaned_member";
    pub const REMOVE_ANNOTATION: &str = "etcd_remove_annotation";
    pub const VIP_HOLDERS: &str = "vip_holders";
    pub const OTHER_MANAGER: &str = "other_manager";
    pub const VERSION_SKEW: &str = "version_skew";
    /// Every check ID, in report order.
    pub const ALL: [&str; 11] = [
        CERT_EXPIRY,
        SNAPSHOT_AGE,
        SNAPSHOT_UNREADABLE,
        DB_SIZE,
        MEMBER_COUNT,
        STUCK_LEARNER,
        ORPHANED_MEMBER,
        REMOVE_ANNOTATION,
        VIP_HOLDERS,
        OTHER_MANAGER,
        VERSION_SKEW,
    ];
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The check ID ([`ids`]).
    pub check: String,
    pub severity: Severity,
    /// What it is about: `node.NAME`, `node.NAME:/path/to/file.crt`, `member.ID`, `cluster`.
    pub subject: String,
    /// One line for a human.
    pub message: String,
    /// The observed values it was judged from (`key → value`).
    pub evidence: BTreeMap<String, String>,
    /// When it becomes an outage, where there is such a time (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// What fixes it (a command or a plan step), where k3splan knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The result of one check run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    /// When the facts were read (RFC 3339, UTC).
    pub checked_at: String,
    /// The worst severity (`ok` when there are no findings).
    pub status: Severity,
    /// Every check ID that ran, with its worst severity (`ok` when it found nothing).
    pub checks: BTreeMap<String, Severity>,
    /// The findings, worst first within each check ID order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The exit code of `k3splan check`: 3 a critical finding, 1 a check could not be made
    /// (unknown), 2 warnings, 0 nothing found.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Severity::Critical => 3,
            Severity::Unknown => 1,
            Severity::Warning => 2,
            Severity::Ok => 0,
        }
    }
    /// The findings at warning or worse.
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity > Severity::Ok)
    }
}

struct Out {
    now: i64,
    findings: Vec<Finding>,
}

impl Out {
    fn push(
        &mut self,
        check: &str,
        severity: Severity,
        subject: impl Into<String>,
        message: impl Into<String>,
        evidence: &[(&str, String)],
    ) -> &mut Finding {
        self.findings.push(Finding {
            check: check.into(),
            severity,
            subject: subject.into(),
            message: message.into(),
            evidence: evidence
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            deadline: None,
            fix: None,
        });
        self.findings.last_mut().expect("just pushed")
    }
    fn unknown(&mut self, check: &str, subject: impl Into<String>, reason: &str) {
        self.push(
            check,
            Severity::Unknown,
            subject,
            format!("could not be checked: {reason}"),
            &[("reason", reason.to_string())],
        );
    }
}

/// Judges the observed values against the thresholds.
pub fn evaluate(t: &Topology, o: &Observed, f: &CheckFacts) -> Report {
    let s = &t.check;
    let mut out = Out {
        now: f.now,
        findings: Vec::new(),
    };
    server_checks(t, f, s, &mut out);
    etcd_checks(t, o, f, s, &mut out);
    kube_checks(t, o, f, &mut out);
    vip_check(t, f, &mut out);
    version_skew(t, o, &mut out);

    let mut findings = out.findings;
    let rank = |c: &str| ids::ALL.iter().position(|x| *x == c).unwrap_or(usize::MAX);
    findings.sort_by(|a, b| {
        (rank(&a.check), std::cmp::Reverse(a.severity), &a.subject).cmp(&(
            rank(&b.check),
            std::cmp::Reverse(b.severity),
            &b.subject,
        ))
    });
    let mut checks: BTreeMap<String, Severity> = ids::ALL
        .iter()
        .map(|c| (c.to_string(), Severity::Ok))
        .collect();
    if t.cluster.vip.is_none() {
        checks.remove(ids::VIP_HOLDERS);
    }
    for x in &findings {
        let e = checks.entry(x.check.clone()).or_insert(Severity::Ok);
        *e = (*e).max(x.severity);
    }
    Report {
        format_version: REPORT_FORMAT_VERSION,
        checked_at: rfc3339(f.now),
        status: findings
            .iter()
            .map(|x| x.severity)
            .max()
            .unwrap_or(Severity::Ok),
        checks,
        findings,
    }
}

fn days(secs: i64) -> String {
    if secs.abs() >= 86_400 {
        format!("{}d", secs / 86_400)
    } else if secs.abs() >= 3600 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}

/// Certificates and snapshots, per server.
fn server_checks(t: &Topology, f: &CheckFacts, s: &CheckSettings, out: &mut Out) {
    for n in t.server_nodes() {
        let subject = format!("node.{}", n.name);
        let facts = match f.servers.get(&n.name) {
            Some(Fact::Known(x)) => x,
            Some(Fact::Unknown { reason }) => {
                out.unknown(ids::CERT_EXPIRY, &subject, reason);
                if n.roles.runs_etcd() {
                    out.unknown(ids::SNAPSHOT_AGE, &subject, reason);
                }
                continue;
            }
            None => {
                out.unknown(ids::CERT_EXPIRY, &subject, "the host was not read");
                continue;
            }
        };
        cert_checks(&n.name, facts, s, out);
        if n.roles.runs_etcd() {
            snapshot_checks(&n.name, facts, s, out);
        }
    }
}

fn cert_checks(node: &str, facts: &ServerFacts, s: &CheckSettings, out: &mut Out) {
    if facts.certs.is_empty() {
        out.unknown(
            ids::CERT_EXPIRY,
            format!("node.{node}"),
            "no certificate found in the k3s TLS directories",
        );
        return;
    }
    let now = out.now;
    for c in &facts.certs {
        let subject = format!("node.{node}:{}", c.path);
        let Some(not_after) = c.not_after else {
            let why = c.error.as_deref().unwrap_or("not a certificate");
            out.unknown(ids::CERT_EXPIRY, subject, why);
            continue;
        };
        let left = not_after - now;
        let sev = if left <= s.cert_expiry_critical as i64 {
            Severity::Critical
        } else if left <= s.cert_expiry_warn as i64 {
            Severity::Warning
        } else {
            continue;
        };
        let message = if left <= 0 {
            format!("{} expired {} ago", c.path, days(-left))
        } else {
            format!("{} expires in {}", c.path, days(left))
        };
        let mut ev = vec![("not_after", rfc3339(not_after))];
        if let Some(cn) = &c.subject {
            ev.push(("subject", cn.clone()));
        }
        let x = out.push(ids::CERT_EXPIRY, sev, subject, message, &ev);
        x.deadline = Some(rfc3339(not_after));
        x.fix = Some(format!(
            "on {node}, one server at a time: stop k3s, `k3s certificate rotate`, start k3s"
        ));
    }
}

fn snapshot_checks(node: &str, facts: &ServerFacts, s: &CheckSettings, out: &mut Out) {
    let subject = format!("node.{node}");
    for snap in facts.snapshots.iter().filter(|x| x.intact == Some(false)) {
        out.push(
            ids::SNAPSHOT_UNREADABLE,
            Severity::Warning,
            format!("node.{node}:{}", snap.path),
            format!("snapshot {} fails its integrity check", snap.path),
            &[("size", snap.size.to_string())],
        )
        .fix = Some("delete it; take a new one (`k3s etcd-snapshot save`)".into());
    }
    let newest = facts
        .snapshots
        .iter()
        .filter(|x| x.intact != Some(false) && x.size > 0)
        .max_by_key(|x| x.mtime);
    let fix = Some(format!(
        "on {node}: `k3s etcd-snapshot save` (or enable `etcd-snapshot-schedule-cron`)"
    ));
    let Some(newest) = newest else {
        out.push(
            ids::SNAPSHOT_AGE,
            Severity::Critical,
            &subject,
            "no readable etcd snapshot on this server",
            &[("snapshots", facts.snapshots.len().to_string())],
        )
        .fix = fix;
        return;
    };
    let age = out.now - newest.mtime;
    let sev = if age >= s.snapshot_age_critical as i64 {
        Severity::Critical
    } else if age >= s.snapshot_age_warn as i64 {
        Severity::Warning
    } else {
        return;
    };
    out.push(
        ids::SNAPSHOT_AGE,
        sev,
        &subject,
        format!("newest snapshot is {} old ({})", days(age), newest.path),
        &[
            ("newest", newest.path.clone()),
            ("taken_at", rfc3339(newest.mtime)),
        ],
    )
    .fix = fix;
}

/// The declared etcd node whose address is the member's peer address.
fn claimant<'a>(t: &'a Topology, m: &crate::observed::EtcdMember) -> Option<&'a str> {
    let ip = m.peer_address()?;
    t.nodes
        .iter()
        .find(|n| n.address == ip && n.roles.runs_etcd())
        .map(|n| n.name.as_str())
}

fn etcd_checks(t: &Topology, o: &Observed, f: &CheckFacts, s: &CheckSettings, out: &mut Out) {
    let e = match &o.etcd {
        Fact::Known(e) => e,
        Fact::Unknown { reason } => {
            for c in [
                ids::MEMBER_COUNT,
                ids::STUCK_LEARNER,
                ids::ORPHANED_MEMBER,
                ids::DB_SIZE,
            ] {
                out.unknown(c, "cluster", reason);
            }
            return;
        }
    };
    // Voter count.
    let voters = e.members.iter().filter(|m| !m.is_learner).count();
    if voters == 2 || (voters > 0 && voters % 2 == 0) {
        let tolerates = (voters - 1) / 2;
        let sev = if voters == 2 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        out.push(
            ids::MEMBER_COUNT,
            sev,
            "cluster",
            format!(
                "{voters} voting members: quorum is {}, so it tolerates {tolerates} failure{} — no more than {} voters would",
                voters / 2 + 1,
                if tolerates == 1 { "" } else { "s" },
                voters - 1
            ),
            &[("voters", voters.to_string())],
        )
        .fix = Some("declare an odd number of etcd nodes (3 or 5) and apply".into());
    }
    for m in &e.members {
        let subject = format!("member.{:016x}", m.id);
        // A member added but never started has no name yet.
        let name = if m.name.is_empty() {
            "(never started)".to_string()
        } else {
            m.name.clone()
        };
        let peer = m.peer_urls.join(",");
        let owner = claimant(t, m);
        // Learners.
        // A learner no node claims is reported as orphaned below: its age cannot be read.
        if m.is_learner && owner.is_some() {
            let mtime = owner.and_then(|n| match f.servers.get(n) {
                Some(Fact::Known(sf)) => sf.member_dir_mtime,
                _ => None,
            });
            match mtime {
                Some(since) if f.now - since >= s.learner_max_age as i64 => {
                    out.push(
                        ids::STUCK_LEARNER,
                        Severity::Critical,
                        &subject,
                        format!(
                            "learner {} ({peer}) for {}: k3s refuses every later join while it stays",
                            name,
                            days(f.now - since)
                        ),
                        &[
                            ("name", name.clone()),
                            ("peer_urls", peer.clone()),
                            ("since", rfc3339(since)),
                            ("health", m.health.describe()),
                        ],
                    )
                    .fix = Some(format!(
                        "if {} is dead: `k3splan apply -replace=node.NAME`, else remove the member (`etcdctl member remove {:x}`)",
                        owner.unwrap_or("its host"),
                        m.id
                    ));
                }
                Some(_) => {}
                None => {
                    out.push(
                        ids::STUCK_LEARNER,
                        Severity::Unknown,
                        &subject,
                        format!(
                            "learner {name} ({peer}): how long it has been a learner is unknown"
                        ),
                        &[("peer_urls", peer.clone())],
                    )
                    .fix = None
                }
            }
        }
        // Orphans.
        if owner.is_none() {
            out.push(
                ids::ORPHANED_MEMBER,
                Severity::Warning,
                &subject,
                format!("member {name} ({peer}) is claimed by no declared etcd node"),
                &[
                    ("name", name.clone()),
                    ("peer_urls", peer.clone()),
                    ("health", m.health.describe()),
                ],
            )
            .fix = Some(format!(
                "declare its node, or remove the member when it is dead (`etcdctl member remove {:x}`)",
                m.id
            ));
        }
        // DB size.
        match f.db_sizes.get(&m.id) {
            Some(&size) => {
                let quota = s.etcd_quota_bytes.max(1);
                let pct = size.saturating_mul(100) / quota;
                let sev = if pct >= s.db_size_critical_percent as u64 {
                    Severity::Critical
                } else if pct >= s.db_size_warn_percent as u64 {
                    Severity::Warning
                } else {
                    continue;
                };
                out.push(
                    ids::DB_SIZE,
                    sev,
                    &subject,
                    format!(
                        "DB {} MiB is {pct}% of the {} MiB quota: at the quota etcd raises NOSPACE and refuses writes",
                        size >> 20,
                        quota >> 20
                    ),
                    &[("db_size", size.to_string()), ("quota", quota.to_string())],
                )
                .fix = Some("compact and defragment (`etcdctl defrag`), or raise quota-backend-bytes".into());
            }
            None if !m.is_learner => out.unknown(
                ids::DB_SIZE,
                &subject,
                &format!("member {name} did not report its status"),
            ),
            None => {}
        }
    }
}

fn kube_checks(t: &Topology, o: &Observed, f: &CheckFacts, out: &mut Out) {
    let _ = (t, o);
    let k = match &f.kube {
        Fact::Known(k) => k,
        Fact::Unknown { reason } => {
            out.unknown(ids::REMOVE_ANNOTATION, "cluster", reason);
            out.unknown(ids::OTHER_MANAGER, "cluster", reason);
            return;
        }
    };
    for (node, marks) in &k.node_marks {
        if let Some(v) = marks.get(REMOVE_ANNOTATION) {
            let mut ev = vec![(REMOVE_ANNOTATION, v.clone())];
            if let Some(r) = marks.get(REMOVED_NODE_NAME_ANNOTATION) {
                ev.push((REMOVED_NODE_NAME_ANNOTATION, r.clone()));
            }
            out.push(
                ids::REMOVE_ANNOTATION,
                Severity::Warning,
                format!("node.{node}"),
                format!("Node {node} carries {REMOVE_ANNOTATION}={v}: k3s acts on it at every Node update (and retries a failed removal forever)"),
                &ev,
            )
            .fix = Some(format!("remove the annotation (`kubectl annotate node {node} {REMOVE_ANNOTATION}-`)"));
        }
        let rancher: Vec<&String> = marks.keys().filter(|k| is_rancher_mark(k)).collect();
        if !rancher.is_empty() {
            out.push(
                ids::OTHER_MANAGER,
                Severity::Warning,
                format!("node.{node}"),
                format!("Node {node} carries Rancher management labels: Rancher may act on this cluster too"),
                &[("labels", rancher.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","))],
            );
        }
    }
    if !k.suc_plans.is_empty() {
        out.push(
            ids::OTHER_MANAGER,
            Severity::Warning,
            "cluster",
            format!(
                "system-upgrade-controller Plan objects exist ({}): upgrades may happen outside k3splan",
                k.suc_plans.join(", ")
            ),
            &[("plans", k.suc_plans.join(","))],
        );
    }
}

fn vip_check(t: &Topology, f: &CheckFacts, out: &mut Out) {
    let Some(vip) = &t.cluster.vip else { return };
    let mut holders = Vec::new();
    let mut unknown = Vec::new();
    for n in t.server_nodes() {
        match f.servers.get(&n.name) {
            Some(Fact::Known(sf)) => match sf.holds_vip {
                Some(true) => holders.push(n.name.clone()),
                Some(false) => {}
                None => unknown.push(n.name.clone()),
            },
            _ => unknown.push(n.name.clone()),
        }
    }
    let ev = [
        ("vip", vip.address.to_string()),
        ("holders", holders.join(",")),
        ("unknown", unknown.join(",")),
    ];
    if holders.len() >= 2 {
        out.push(
            ids::VIP_HOLDERS,
            Severity::Critical,
            "cluster",
            format!(
                "the VIP {} is held by {} hosts ({}): split brain, clients reach either",
                vip.address,
                holders.len(),
                holders.join(", ")
            ),
            &ev,
        )
        .fix = Some("check VRRP between the holders (router_id, password, multicast)".into());
    } else if holders.is_empty() && unknown.is_empty() {
        out.push(
            ids::VIP_HOLDERS,
            Severity::Critical,
            "cluster",
            format!("no host holds the VIP {}", vip.address),
            &ev,
        )
        .fix = Some("check keepalived on the servers".into());
    } else if holders.is_empty() {
        out.unknown(
            ids::VIP_HOLDERS,
            "cluster",
            &format!(
                "no host seen holding the VIP, and {} not read",
                unknown.join(", ")
            ),
        );
    } else if !unknown.is_empty() {
        // One holder seen: an unread host may be a second one (split brain), so the check
        // could not be made — never "ok".
        out.unknown(
            ids::VIP_HOLDERS,
            "cluster",
            &format!(
                "the VIP is held by {}, and {} not read (may hold it too)",
                holders.join(", "),
                unknown.join(", ")
            ),
        );
    }
}

/// The `vMAJOR.MINOR` of a version such as `v1.28.5+k3s1`.
fn minor(v: &str) -> Option<(u32, u32)> {
    let v = v.trim().trim_start_matches('v');
    let mut it = v.split(['.', '+', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn version_skew(t: &Topology, o: &Observed, out: &mut Out) {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Fact::Known(k) = &o.kube {
        for n in &k.nodes {
            if let Some(v) = &n.version {
                seen.entry(v.clone())
                    .or_default()
                    .insert(format!("Node {}", n.name));
            }
        }
    }
    for n in &t.nodes {
        if let Some(Fact::Known(h)) = o.hosts.get(&n.name)
            && let Some(v) = h.k3s.as_ref().and_then(|k| k.version.clone())
        {
            seen.entry(v)
                .or_default()
                .insert(format!("host {}", n.name));
        }
    }
    let minors: BTreeSet<(u32, u32)> = seen.keys().filter_map(|v| minor(v)).collect();
    if seen.len() < 2 {
        return;
    }
    let spread = match (minors.first(), minors.last()) {
        (Some(a), Some(b)) if a.0 == b.0 => b.1.saturating_sub(a.1),
        (Some(_), Some(_)) => 99,
        _ => 0,
    };
    let sev = if spread >= 2 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let ev: Vec<(&str, String)> = seen
        .iter()
        .map(|(v, who)| {
            (
                v.as_str(),
                who.iter().cloned().collect::<Vec<_>>().join(", "),
            )
        })
        .collect();
    let msg = format!(
        "{} k3s versions run in the cluster ({}){}",
        seen.len(),
        seen.keys().cloned().collect::<Vec<_>>().join(", "),
        if spread >= 2 {
            ": more than one minor apart, beyond Kubernetes' skew policy"
        } else {
            ""
        }
    );
    let x = out.push(ids::VERSION_SKEW, sev, "cluster", msg, &ev);
    x.fix = Some(match &t.cluster.k3s_version {
        Some(v) => format!("`k3splan apply` upgrades every node to the declared {v}"),
        None => "upgrade the older nodes, one minor at a time".into(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_reads_k3s_versions() {
        assert_eq!(minor("v1.28.5+k3s1"), Some((1, 28)));
        assert_eq!(minor("1.30.0"), Some((1, 30)));
        assert_eq!(minor("k3s"), None);
    }
}
