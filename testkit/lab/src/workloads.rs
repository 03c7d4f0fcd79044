//! The seed 004 workloads, loaded into the in-memory Kubernetes API.

use super::*;

impl Lab {
    // ------------------------------------------------------------------------------------------
    // workloads

    /// Loads the seed 004 workloads (namespaces, StorageClass, MinIO and monitor-MinIO
    /// StatefulSets, victoria-metrics Deployment, k3s add-ons at 1 replica, their PVs/PVCs
    /// and pods) with `lzx-ha-env`, `-2`, `-3` renamed to `server-1..3` and their addresses
    /// to the lab's. The fixture's Node objects are skipped (the stand-ins registered the
    /// real ones) and every pod starts Ready on its (live) node.
    pub fn load_seed004(&self) -> Result<()> {
        let map: Vec<(String, String)> = [
            ("lzx-ha-env", "server-1", "192.168.0.254"),
            ("lzx-ha-env-2", "server-2", "192.168.0.244"),
            ("lzx-ha-env-3", "server-3", "192.168.0.243"),
        ]
        .iter()
        .flat_map(|(old, new, ip)| {
            let addr = self
                .host(new)
                .map(|h| h.address().to_string())
                .unwrap_or_default();
            vec![(old.to_string(), new.to_string()), (ip.to_string(), addr)]
        })
        .collect();
        let mut docs = Vec::new();
        for de in serde_yaml::Deserializer::from_str(SEED004_YAML) {
            let v: Value = serde::Deserialize::deserialize(de)
                .map_err(|e| LabError::Kube(format!("seed004.yaml: {e}")))?;
            if v.is_null() || v["kind"] == "Node" {
                continue;
            }
            let mut v = rename(v, &map);
            if v["kind"] == "Pod" {
                if let Some(m) = v["metadata"].as_object_mut() {
                    m.remove("deletionTimestamp");
                    m.remove("deletionGracePeriodSeconds");
                }
                v["status"]["phase"] = json!("Running");
                v["status"]["conditions"] = json!([
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": store::now()}
                ]);
            }
            docs.push(v);
        }
        self.kube()
            .load_values(docs)
            .map_err(|e| LabError::Kube(format!("loading seed 004 workloads: {e}")))
    }
}

fn rename(v: Value, map: &[(String, String)]) -> Value {
    match v {
        Value::String(s) => Value::String(
            map.iter()
                .find(|(o, _)| *o == s)
                .map(|(_, n)| n.clone())
                .unwrap_or(s),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| rename(x, map)).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, x)| (k, rename(x, map))).collect())
        }
        x => x,
    }
}
