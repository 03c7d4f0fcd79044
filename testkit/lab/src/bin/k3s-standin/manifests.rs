//! k3s's packaged manifests: staged into `<data-dir>/server/manifests` and applied at every
//! server start.
//!
//! Real k3s (`pkg/server/server.go`, `stageFiles`) writes its packaged manifests with
//! `deploy.Stage` on every start, then starts the deploy controller (`deploy.WatchFiles`,
//! `pkg/deploy/controller.go`), whose first pass (`listFilesIn` with `force`) applies every
//! manifest in that dir, except those whose file name a `*.skip` file names (`coredns.yaml`
//! is left alone while `coredns.yaml.skip` exists anywhere in the tree: k3s keys its skip
//! list by file name). Applying resets every field the manifest sets: a replica count
//! scaled by hand is undone at the next start of any server.
//!
//! The stand-in does the same for the three Deployments k3s packages as plain manifests
//! (`manifests/coredns.yaml`, `manifests/local-storage.yaml`,
//! `manifests/metrics-server/metrics-server-deployment.yaml` in the k3s repository), with
//! `replicas: 1` in each (k3s releases before the k3s-io/k3s#1606 change set it; newer
//! ones leave `replicas` out but still reset the fields they set). It only resets what the
//! lab's manifest says (the replicas) of a Deployment already in the API: it does not create
//! the add-ons, and it applies before the service reports ready (real k3s applies shortly
//! after its API is up).

use super::*;

/// `(path under server/manifests, Deployment in kube-system, packaged replicas)`.
pub(super) const PACKAGED: &[(&str, &str, u32)] = &[
    ("coredns.yaml", "coredns", 1),
    ("local-storage.yaml", "local-path-provisioner", 1),
    (
        "metrics-server/metrics-server-deployment.yaml",
        "metrics-server",
        1,
    ),
];

fn manifest_text(name: &str, replicas: u32) -> String {
    format!(
        "# Staged by the k3splan lab's k3s stand-in (as k3s's deploy.Stage does).\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: kube-system\nspec:\n  replicas: {replicas}\n"
    )
}

/// File names (`coredns.yaml`) that a `NAME.skip` file anywhere under `dir` names.
fn skipped_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str())
                && let Some(base) = n.strip_suffix(".skip")
            {
                out.push(base.to_string());
            }
        }
    }
    out
}

/// Stages the packaged manifests and applies those not skipped.
pub(super) fn stage_and_apply(lab: &HostConfig, data_dir: &str) {
    let dir = Path::new(data_dir).join("server/manifests");
    for (rel, name, replicas) in PACKAGED {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            let _ = fs::create_dir_all(parent);
        }
        if let Err(e) = fs::write(&p, manifest_text(name, *replicas)) {
            log("warning", &format!("staging {}: {e}", p.display()));
        }
    }
    let skips = skipped_names(&dir);
    for (rel, name, replicas) in PACKAGED {
        let p = dir.join(rel);
        let file = rel.rsplit('/').next().unwrap_or(rel);
        if skips.iter().any(|s| s == file) {
            log(
                "info",
                &format!(
                    "Skipping manifest at \"{}\": {file}.skip exists",
                    p.display()
                ),
            );
            continue;
        }
        let (code, body) = kube(
            lab,
            "PATCH",
            &format!("/apis/apps/v1/namespaces/kube-system/deployments/{name}"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": replicas}}),
        );
        match code {
            200 | 201 => log(
                "info",
                &format!(
                    "Applied manifest at \"{}\" (Deployment kube-system/{name} replicas {replicas})",
                    p.display()
                ),
            ),
            404 => log(
                "info",
                &format!(
                    "Manifest at \"{}\": Deployment kube-system/{name} not in the API (the lab stand-in does not create packaged add-ons)",
                    p.display()
                ),
            ),
            c => log(
                "warning",
                &format!(
                    "Applying manifest at \"{}\" failed: HTTP {c} {body}",
                    p.display()
                ),
            ),
        }
    }
    log("info", "Packaged manifests processed");
}
