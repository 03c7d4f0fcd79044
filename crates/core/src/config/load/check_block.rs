//! The top-level `check { … }` block (issue 17): the thresholds of `k3splan check`, each a
//! duration (`"30d"`, `"36h"`), a size (`"8GiB"`) or a percent; unset ones keep their default.

use super::*;
use crate::check::{CheckSettings, parse_check_duration, parse_size};
use crate::config::schema::attr;

impl Loader<'_> {
    pub(super) fn build_check(&mut self, top: &[RawBlock], ctx: &Context) -> CheckSettings {
        let mut s = CheckSettings::default();
        let Some(b) = top.iter().find(|b| b.is(&schema::CHECK)) else {
            return s;
        };
        s.declared = true;
        let v = self.eval_block(b, ctx);
        for key in [
            attr::CERT_EXPIRY_WARN,
            attr::CERT_EXPIRY_CRITICAL,
            attr::SNAPSHOT_AGE_WARN,
            attr::SNAPSHOT_AGE_CRITICAL,
            attr::LEARNER_MAX_AGE,
        ] {
            let Some(text) = str_of(&v, key) else {
                continue;
            };
            match parse_check_duration(&text) {
                Ok(0) | Err(_) => {
                    let why = parse_check_duration(&text)
                        .err()
                        .unwrap_or_else(|| "is zero".into());
                    self.err(
                        b.file,
                        v[key].attr.expr_span.clone(),
                        format!(
                            "`check.{key}` must be a duration such as \"30d\", \"36h\" or \"10m\"; {text_q} {why}",
                            text_q = quote(&text)
                        ),
                    );
                }
                Ok(d) => {
                    *match key {
                        attr::CERT_EXPIRY_WARN => &mut s.cert_expiry_warn,
                        attr::CERT_EXPIRY_CRITICAL => &mut s.cert_expiry_critical,
                        attr::SNAPSHOT_AGE_WARN => &mut s.snapshot_age_warn,
                        attr::SNAPSHOT_AGE_CRITICAL => &mut s.snapshot_age_critical,
                        _ => &mut s.learner_max_age,
                    } = d;
                }
            }
        }
        if let Some(text) = str_of(&v, attr::ETCD_QUOTA) {
            match parse_size(&text) {
                Ok(n) if n > 0 => s.etcd_quota_bytes = n,
                r => {
                    let why = r.err().unwrap_or_else(|| "is zero".into());
                    self.err(
                        b.file,
                        v[attr::ETCD_QUOTA].attr.expr_span.clone(),
                        format!(
                            "`check.etcd_quota` must be a size such as \"2GiB\" or \"8GiB\" (the servers' quota-backend-bytes); {text_q} {why}",
                            text_q = quote(&text)
                        ),
                    );
                }
            }
        }
        if let Some(p) = int_of(&v, attr::DB_SIZE_WARN_PERCENT) {
            s.db_size_warn_percent = p as u8;
        }
        if let Some(p) = int_of(&v, attr::DB_SIZE_CRITICAL_PERCENT) {
            s.db_size_critical_percent = p as u8;
        }
        let pairs = [
            (
                s.cert_expiry_critical > s.cert_expiry_warn,
                "cert_expiry_critical",
                "cert_expiry_warn",
            ),
            (
                s.snapshot_age_critical < s.snapshot_age_warn,
                "snapshot_age_critical",
                "snapshot_age_warn",
            ),
            (
                s.db_size_critical_percent < s.db_size_warn_percent,
                "db_size_critical_percent",
                "db_size_warn_percent",
            ),
        ];
        for (bad, crit, warn) in pairs {
            if bad {
                self.err(
                    b.file,
                    b.ident_span.clone(),
                    format!("`check.{crit}` is less strict than `check.{warn}`: a critical threshold must be at or beyond the warning one"),
                );
            }
        }
        s
    }
}
