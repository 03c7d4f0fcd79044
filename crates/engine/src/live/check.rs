//! Reading what `k3splan check` judges beyond the plan's observation ([`CheckFacts`]): the
//! servers' certificates and snapshots over SSH (certificates parsed here with a real X.509
//! parser, x509-parser), each member's DB size from its `status`, and the Nodes' marks and
//! SUC plans from the Kubernetes API. Each source that does not answer is `Unknown` with the
//! reason, never empty.

use std::collections::BTreeMap;

use super::Live;
use crate::check::{CertFact, CheckFacts, KubeCheckFacts, ServerFacts, SnapshotFact};
use crate::check::{REMOVE_ANNOTATION, REMOVED_NODE_NAME_ANNOTATION, is_rancher_mark};
use crate::observed::{Fact, Observed};

/// The label and annotation keys the check keeps from each Node.
fn keep_mark(k: &str) -> bool {
    k == REMOVE_ANNOTATION || k == REMOVED_NODE_NAME_ANNOTATION || is_rancher_mark(k)
}

/// Parses every PEM certificate of `pem`; the first one is the file's own (a bundle such as
/// `client-ca.crt` lists its issuers after it: the earliest `notAfter` of all is reported).
pub fn parse_cert(path: &str, pem: &str) -> CertFact {
    let mut earliest: Option<(i64, Option<String>)> = None;
    let mut error = None;
    for p in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        match p {
            Ok(p) if p.label == "CERTIFICATE" => match p.parse_x509() {
                Ok(c) => {
                    let na = c.validity().not_after.timestamp();
                    let cn = c
                        .subject()
                        .iter_common_name()
                        .next()
                        .and_then(|a| a.as_str().ok())
                        .map(str::to_string);
                    if earliest.as_ref().is_none_or(|(t, _)| na < *t) {
                        earliest = Some((na, cn));
                    }
                }
                Err(e) => error = Some(format!("not an X.509 certificate: {e}")),
            },
            Ok(_) => {}
            Err(e) => {
                error = Some(format!("not PEM: {e}"));
                break;
            }
        }
    }
    match earliest {
        Some((na, cn)) => CertFact {
            path: path.to_string(),
            subject: cn,
            not_after: Some(na),
            error: None,
        },
        None => CertFact {
            path: path.to_string(),
            subject: None,
            not_after: None,
            error: Some(error.unwrap_or_else(|| "no certificate in the file".into())),
        },
    }
}

impl Live {
    /// Reads the check's facts. `observed` is the observation of the same run: a host it
    /// could not reach is not dialled again.
    pub async fn observe_check(&self, observed: &Observed) -> CheckFacts {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let (servers, db_sizes, kube) = tokio::join!(
            self.check_servers(observed),
            self.db_sizes(),
            self.check_kube()
        );
        CheckFacts {
            now,
            servers,
            db_sizes,
            kube,
        }
    }

    async fn check_servers(&self, observed: &Observed) -> BTreeMap<String, Fact<ServerFacts>> {
        let vip = self
            .topology
            .cluster
            .vip
            .as_ref()
            .map(|v| v.address.to_string());
        let data_dir = self.layout.data_dir.clone();
        let reads = self.topology.server_nodes().map(|n| {
            let (vip, data_dir) = (vip.clone(), data_dir.clone());
            let name = n.name.clone();
            async move {
                if let Fact::Unknown { reason } = observed.host(&name) {
                    return (name, Fact::unknown(reason));
                }
                let session = match self.hosts.session(&name).await {
                    Ok(s) => s,
                    Err(e) => return (name, Fact::unknown(e.to_string())),
                };
                match session.check_facts(&data_dir, vip.as_deref()).await {
                    Ok(raw) => (
                        name,
                        Fact::Known(ServerFacts {
                            certs: raw
                                .certs
                                .iter()
                                .map(|c| parse_cert(&c.path, &c.pem))
                                .collect(),
                            snapshots: raw
                                .snapshots
                                .into_iter()
                                .map(|s| SnapshotFact {
                                    path: s.path,
                                    mtime: s.mtime,
                                    size: s.size,
                                    intact: s.intact,
                                })
                                .collect(),
                            holds_vip: raw.holds_vip,
                            member_dir_mtime: raw.member_dir_mtime,
                        }),
                    ),
                    Err(e) => (name, Fact::unknown(e.to_string())),
                }
            }
        });
        futures::future::join_all(reads).await.into_iter().collect()
    }

    /// Each answering member's DB size (`status.dbSize`).
    async fn db_sizes(&self) -> BTreeMap<u64, u64> {
        let Ok(p) = self.etcd() else {
            return BTreeMap::new();
        };
        let o = p.observe().await;
        o.endpoints
            .iter()
            .filter_map(|e| e.state.as_ref())
            .map(|s| (s.member_id.0, s.db_size.max(0) as u64))
            .collect()
    }

    async fn check_kube(&self) -> Fact<KubeCheckFacts> {
        let kube = match self.kube().await {
            Ok(k) => k,
            Err(e) => return Fact::unknown(e.to_string()),
        };
        match kube.read_check(keep_mark).await {
            Ok(r) => Fact::Known(KubeCheckFacts {
                node_marks: r.node_marks,
                suc_plans: r.suc_plans,
            }),
            Err(e) => Fact::unknown(e.to_string()),
        }
    }
}
