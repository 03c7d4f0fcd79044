//! `k3s etcd-snapshot save`.

use super::*;

pub(super) fn etcd_snapshot(args: &[String]) -> i32 {
    let mut data_dir = "/var/lib/rancher/k3s".to_string();
    let mut name = "on-demand".to_string();
    let mut dir: Option<String> = None;
    let mut it = args.iter();
    let mut sub = None;
    while let Some(a) = it.next() {
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut val = || v.clone().or_else(|| it.next().cloned()).unwrap_or_default();
        match k.as_str() {
            "--data-dir" | "-d" => data_dir = val(),
            "--name" => name = val(),
            "--dir" | "--etcd-snapshot-dir" => dir = Some(val()),
            "save" if sub.is_none() => sub = Some("save"),
            x if x.starts_with("--") => {
                eprintln!(
                    "flag provided but not defined: -{}",
                    x.trim_start_matches('-')
                );
                return 1;
            }
            x => {
                eprintln!("unsupported etcd-snapshot subcommand {x} (the lab supports `save`)");
                return 1;
            }
        }
    }
    let lab = lab_config();
    let tls = Tls {
        dir: format!("{data_dir}/server/tls/etcd"),
    };
    if !Path::new(&tls.client_cert()).exists() {
        log(
            "fatal",
            &format!(
                "etcd-snapshot: no etcd client certificate in {} (is this a server?)",
                tls.dir
            ),
        );
        return 1;
    }
    let ip = fs::read_to_string(format!("{data_dir}/server/db/etcd/config"))
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("advertise-client-urls: ")
                    .map(str::to_string)
            })
        })
        .unwrap_or_else(|| format!("https://{}:2379", lab.node_ip));
    let dir = match dir {
        Some(d) => {
            if !Path::new(&d).is_dir() {
                log(
                    "fatal",
                    &format!("etcd-snapshot: directory {d} does not exist"),
                );
                return 1;
            }
            d
        }
        None => {
            let d = format!("{data_dir}/server/db/snapshots");
            let _ = fs::create_dir_all(&d);
            d
        }
    };
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let path = format!("{dir}/{name}-{hostname}-{}", unix_now());
    log("info", &format!("Saving etcd snapshot to {path}"));
    match etcdctl(&lab, &tls, &ip, &["snapshot", "save", &path]) {
        Ok(_) => {
            log(
                "info",
                &format!(
                    "Snapshot {} saved.",
                    PathBuf::from(&path)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
            );
            0
        }
        Err(e) => {
            log("fatal", &format!("etcd-snapshot save failed: {e}"));
            1
        }
    }
}
