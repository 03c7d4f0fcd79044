//! The recovery survey (issue 16): each declared etcd server's etcd data, read over SSH
//! ([`k3splan_host::recovery`]) and parsed into the core's [`EtcdSurvey`].

use std::collections::BTreeMap;

use futures::StreamExt;

use crate::live::Live;
use crate::observed::Fact;
use crate::observed::recovery::{DbRead, EtcdSurvey, SnapshotFile, parse_snapshot_status, wal_ids};

impl Live {
    /// Surveys every declared etcd server (in parallel); a host that does not answer is
    /// unknown with the reason.
    pub async fn survey_etcd(&self) -> BTreeMap<String, Fact<EtcdSurvey>> {
        futures::stream::iter(self.etcd_server_names())
            .map(|n| async move {
                let r = async {
                    let s = self.hosts().session(&n).await?;
                    s.survey_etcd(self.layout()).await
                }
                .await;
                let f = match r {
                    Ok(raw) => Fact::Known(map(raw)),
                    Err(e) => Fact::unknown(e.to_string()),
                };
                (n, f)
            })
            .buffer_unordered(8)
            .collect()
            .await
    }
}

impl Live {
    /// The declared servers that run etcd: the recovery's subjects.
    fn etcd_server_names(&self) -> Vec<String> {
        self.topology()
            .etcd_nodes()
            .filter(|n| n.roles.is_server())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Waits until no `k3s server --cluster-reset` started by an earlier (killed) apply runs
    /// on any declared etcd server. Hosts that do not answer are skipped (the survey says so).
    pub async fn wait_cluster_resets(&self) {
        futures::stream::iter(self.etcd_server_names())
            .for_each_concurrent(8, |n| async move {
                if let Ok(s) = self.hosts().session(&n).await {
                    let _ = s
                        .wait_cluster_reset(self.layout(), std::time::Duration::from_secs(180))
                        .await;
                }
            })
            .await;
    }
}

fn read(r: &Result<String, String>) -> DbRead {
    match r {
        Ok(json) => match parse_snapshot_status(json) {
            Some(s) => DbRead::Read(s),
            None => DbRead::Unreadable {
                reason: format!("unexpected etcdctl output: {json}"),
            },
        },
        Err(e) => DbRead::Unreadable { reason: e.clone() },
    }
}

fn map(raw: k3splan_host::recovery::EtcdDataSurvey) -> EtcdSurvey {
    EtcdSurvey {
        k3s_active: raw.k3s_active,
        k3s_restarting: raw.k3s_restarting,
        etcd_dir: raw.etcd_dir,
        member_dir: raw.member_dir,
        member_name: raw.member_name,
        reset_flag: raw.reset_flag,
        db: raw.db.as_ref().map(read).unwrap_or(DbRead::Absent),
        wal: wal_ids(&raw.wal_head),
        snapshots: raw
            .snapshots
            .iter()
            .map(|(path, mtime, st)| SnapshotFile {
                name: path.rsplit('/').next().unwrap_or(path).to_string(),
                path: path.clone(),
                mtime_unix: *mtime,
                status: read(st).status().copied(),
            })
            .collect(),
    }
}
