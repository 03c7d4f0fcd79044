//! k3s release versions (`v1.28.5+k3s1`): parsing, ordering and the version skew rules an
//! upgrade must respect (issue 15).
//!
//! k3s versions are Kubernetes versions with a k3s build suffix: `v1.28.5+k3s1` is
//! Kubernetes 1.28.5, the first k3s build of it. They order by (major, minor, patch, k3s
//! build); a release candidate (`v1.29.0-rc1+k3s1`) orders before its release.
//!
//! Skew rules (Kubernetes' version skew policy, kubernetes.io/releases/version-skew-policy,
//! which k3s follows since each k3s release embeds one Kubernetes release):
//! - kube-apiserver instances of one cluster differ by at most one minor version, so an
//!   HA control plane is upgraded one minor at a time (1.28 → 1.29 → 1.30, never
//!   1.28 → 1.30);
//! - a kubelet is never newer than the API servers: servers first, agents after;
//! - downgrades are not supported (k3s docs, "Upgrades": "downgrading is not supported";
//!   etcd refuses a data dir written by a newer minor).

use std::cmp::Ordering;
use std::fmt;

/// A parsed k3s version. Equality and order ignore the text (`v1.28.5` = `1.28.5`).
#[derive(Debug, Clone)]
pub struct K3sVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// `-rc1` and such (empty for a release).
    pub pre: String,
    /// The `N` of `+k3sN` (0 when there is no k3s suffix).
    pub build: u32,
    /// The text it was parsed from.
    pub text: String,
}

impl K3sVersion {
    /// Parses `v1.28.5+k3s1`, `v1.29.0-rc1+k3s1`, `1.28.5` (the `v` is optional; the
    /// suffix too). `None` when it is not a version.
    pub fn parse(s: &str) -> Option<K3sVersion> {
        let t = s.trim();
        let rest = t.strip_prefix('v').unwrap_or(t);
        let (core, suffix) = rest.split_once('+').unwrap_or((rest, ""));
        let (core, pre) = core.split_once('-').unwrap_or((core, ""));
        let mut parts = core.split('.');
        let num = |p: Option<&str>| -> Option<u32> {
            let p = p?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        let patch = num(parts.next())?;
        if parts.next().is_some() {
            return None;
        }
        let build = match suffix {
            "" => 0,
            s => s
                .strip_prefix("k3s")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        };
        Some(K3sVersion {
            major,
            minor,
            patch,
            pre: pre.to_string(),
            build,
            text: t.to_string(),
        })
    }

    /// `1.28`.
    pub fn minor_line(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// How many minor versions `to` is ahead of `self` (negative when behind); a different
    /// major counts 100 per major.
    pub fn minors_to(&self, to: &K3sVersion) -> i64 {
        (i64::from(to.major) - i64::from(self.major)) * 100 + i64::from(to.minor)
            - i64::from(self.minor)
    }
}

impl Ord for K3sVersion {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            // A pre-release comes before the release.
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&o.pre),
            })
            .then(self.build.cmp(&o.build))
    }
}

impl PartialEq for K3sVersion {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for K3sVersion {}

impl PartialOrd for K3sVersion {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl fmt::Display for K3sVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The same release: equal as versions (`v1.28.5+k3s1` and `1.28.5+k3s1`), or equal text.
pub fn same(a: &str, b: &str) -> bool {
    match (K3sVersion::parse(a), K3sVersion::parse(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.trim() == b.trim(),
    }
}

/// The version in the first line of `k3s --version` (`k3s version v1.28.5+k3s1 (5b2d1271)`),
/// or the text itself when it is already a bare version.
pub fn from_version_output(out: &str) -> Option<String> {
    let line = out.lines().next()?.trim();
    let mut words = line.split_whitespace();
    let mut prev = "";
    for w in words.by_ref() {
        if prev == "version" && K3sVersion::parse(w).is_some() {
            return Some(w.to_string());
        }
        prev = w;
    }
    K3sVersion::parse(line).map(|v| v.text)
}

/// Why going from `from` to `to` is not one upgrade step, or `None` when it is (same
/// version, a newer patch or build, or the next minor).
pub fn upgrade_refusal(from: &K3sVersion, to: &K3sVersion) -> Option<String> {
    if to < from {
        return Some(format!(
            "{to} is older than the installed {from}: k3s does not support downgrades (etcd and the API server may have migrated their data); restore from an etcd snapshot instead"
        ));
    }
    let jump = from.minors_to(to);
    if jump > 1 {
        let next = K3sVersion {
            major: from.major,
            minor: from.minor + 1,
            patch: 0,
            pre: String::new(),
            build: 0,
            text: String::new(),
        };
        return Some(format!(
            "{from} → {to} skips {} minor version{}: Kubernetes' skew policy lets the API servers of one cluster differ by one minor version only, so upgrade one minor at a time (first to the latest v{}.x release, apply, then on)",
            jump - 1,
            if jump == 2 { "" } else { "s" },
            next.minor_line()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> K3sVersion {
        K3sVersion::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn parses_and_orders_k3s_versions() {
        assert_eq!((v("v1.28.5+k3s1").minor, v("v1.28.5+k3s1").build), (28, 1));
        assert!(v("v1.28.5+k3s1") < v("v1.28.5+k3s2"));
        assert!(v("v1.28.5+k3s2") < v("v1.28.6+k3s1"));
        assert!(v("v1.28.15+k3s1") < v("v1.29.0+k3s1"));
        assert!(v("v1.29.0-rc1+k3s1") < v("v1.29.0+k3s1"));
        assert!(v("1.28.5") == v("v1.28.5"));
        for bad in ["", "v1.28", "v1.28.x+k3s1", "latest", "v1.28.5.1"] {
            assert_eq!(K3sVersion::parse(bad), None, "{bad}");
        }
        assert!(same("v1.28.5+k3s1", "1.28.5+k3s1"));
        assert!(!same("v1.28.5+k3s1", "v1.28.5+k3s2"));
    }

    #[test]
    fn reads_the_version_of_k3s_version_output() {
        assert_eq!(
            from_version_output("k3s version v1.28.5+k3s1 (5b2d1271)\ngo version go1.20.12")
                .as_deref(),
            Some("v1.28.5+k3s1")
        );
        assert_eq!(
            from_version_output("v1.29.0+k3s1").as_deref(),
            Some("v1.29.0+k3s1")
        );
        assert_eq!(from_version_output("command not found"), None);
    }

    #[test]
    fn skew_rules() {
        assert_eq!(
            upgrade_refusal(&v("v1.28.5+k3s1"), &v("v1.29.0+k3s1")),
            None
        );
        assert_eq!(
            upgrade_refusal(&v("v1.28.5+k3s1"), &v("v1.28.9+k3s1")),
            None
        );
        assert_eq!(
            upgrade_refusal(&v("v1.28.5+k3s1"), &v("v1.28.5+k3s1")),
            None
        );
        let down = upgrade_refusal(&v("v1.29.0+k3s1"), &v("v1.28.5+k3s1")).unwrap();
        assert!(down.contains("downgrade"), "{down}");
        let jump = upgrade_refusal(&v("v1.28.5+k3s1"), &v("v1.30.1+k3s1")).unwrap();
        assert!(
            jump.contains("skips 1 minor version") && jump.contains("v1.29.x"),
            "{jump}"
        );
    }
}
