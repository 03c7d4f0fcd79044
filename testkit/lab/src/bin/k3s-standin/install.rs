//! Installing and uninstalling k3s (the stand-in copies itself, writes the service env).

use super::*;

pub(super) fn install() -> i32 {
    let version = std::env::var("INSTALL_K3S_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| hostcfg::DEFAULT_VERSION.to_string());
    let url = std::env::var("K3S_URL").ok().filter(|v| !v.is_empty());
    let exec_s = std::env::var("INSTALL_K3S_EXEC").unwrap_or_default();
    let mut exec: Vec<String> = exec_s.split_whitespace().map(str::to_string).collect();
    // install.sh: no command given → agent when K3S_URL is set, else server.
    if exec.first().is_none_or(|c| c.starts_with('-')) {
        exec.insert(
            0,
            if url.is_some() { "agent" } else { "server" }.to_string(),
        );
    }
    let unit = if exec[0] == "agent" {
        "k3s-agent"
    } else {
        "k3s"
    };
    println!("[INFO]  Using {version} as release (k3splan lab stand-in)");
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[ERROR]  cannot find my own binary: {e}");
            return 1;
        }
    };
    let bin = Path::new(hostcfg::K3S_BIN);
    if let Err(e) = fs::create_dir_all(bin.parent().expect("has parent")) {
        eprintln!("[ERROR]  creating {}: {e}", hostcfg::LAB_DIR);
        return 1;
    }
    // Copy via a temp file + rename: the old binary may be running.
    let tmp = bin.with_extension("new");
    if me != bin
        && let Err(e) = fs::copy(&me, &tmp).and_then(|_| fs::rename(&tmp, bin))
    {
        eprintln!(
            "[ERROR]  installing {} to {}: {e}",
            me.display(),
            bin.display()
        );
        return 1;
    }
    let _ = fs::set_permissions(bin, fs::Permissions::from_mode(0o755));
    let _ = fs::write(hostcfg::K3S_VERSION_FILE, format!("{version}\n"));
    println!("[INFO]  Installing k3s to {}", bin.display());
    let unitf = hostcfg::unit_file(unit);
    let svc = ServiceEnv { exec };
    if let Err(e) = write_private(&unitf, &serde_json::to_vec_pretty(&svc).expect("json")) {
        eprintln!("[ERROR]  writing {unitf}: {e}");
        return 1;
    }
    let envf = hostcfg::env_file(unit);
    println!("[INFO]  env: Creating environment file {envf}");
    if let Err(e) = write_private(&envf, installer_env_file().as_bytes()) {
        eprintln!("[ERROR]  writing {envf}: {e}");
        return 1;
    }
    if std::env::var("INSTALL_K3S_SKIP_START").is_ok_and(|v| v == "true") {
        return 0;
    }
    println!("[INFO]  service: Starting {unit}");
    service(&["restart".to_string(), unit.to_string()])
}

/// The env file as install.sh's `create_env_file` writes it: `sh -c export | while read x v;
/// do echo $v; done | grep -E '^(K3S|CONTAINERD)_'`, then the lines matching
/// `grep -Ei '^(NO|HTTP|HTTPS)_PROXY'`. dash's `export` lists the variables sorted, each as
/// `NAME='value'`.
fn installer_env_file() -> String {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    let line = |(k, v): &(String, String)| format!("{k}='{}'\n", v.replace('\'', "'\\''"));
    let mut out = String::new();
    for kv in vars
        .iter()
        .filter(|(k, _)| k.starts_with("K3S_") || k.starts_with("CONTAINERD_"))
    {
        out.push_str(&line(kv));
    }
    for kv in vars.iter().filter(|(k, _)| {
        let u = k.to_ascii_uppercase();
        ["NO_PROXY", "HTTP_PROXY", "HTTPS_PROXY"]
            .iter()
            .any(|p| u.starts_with(p))
    }) {
        out.push_str(&line(kv));
    }
    out
}

pub(super) fn write_private(path: &str, data: &[u8]) -> std::io::Result<()> {
    if let Some(p) = Path::new(path).parent() {
        fs::create_dir_all(p)?;
    }
    let tmp = format!("{path}.tmp");
    fs::write(&tmp, data)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path)
}

pub(super) fn uninstall(agent: bool) -> i32 {
    for unit in ["k3s", "k3s-agent"] {
        stop_unit(unit);
    }
    let data_dir = read_config_file(None)
        .ok()
        .and_then(|c| c.get("data-dir").and_then(yaml_str))
        .unwrap_or_else(|| "/var/lib/rancher/k3s".to_string());
    let mut rc = 0;
    let mut remove = |p: &str| {
        let path = Path::new(p);
        let r = if path.is_dir() {
            fs::remove_dir_all(path)
        } else if path.exists() {
            fs::remove_file(path)
        } else {
            Ok(())
        };
        match r {
            Ok(()) => println!("+ rm -rf {p}"),
            Err(e) => {
                eprintln!("uninstall: removing {p}: {e}");
                rc = 1;
            }
        }
    };
    remove("/etc/rancher/k3s");
    remove(&data_dir);
    remove("/var/lib/rancher/k3s");
    for unit in ["k3s", "k3s-agent"] {
        // k3s-uninstall.sh: `rm -f ${FILE_K3S_SERVICE}` and `rm -f ${FILE_K3S_ENV}`.
        remove(&hostcfg::env_file(unit));
        remove(&hostcfg::unit_file(unit));
        remove(&hostcfg::ready_file(unit));
        remove(&hostcfg::failed_file(unit));
    }
    remove(hostcfg::K3S_VERSION_FILE);
    remove(hostcfg::K3S_BIN);
    if agent {
        println!("k3s agent uninstalled");
    } else {
        println!("k3s uninstalled");
    }
    rc
}
