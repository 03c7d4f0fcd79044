//! Installing and uninstalling k3s (the stand-in copies itself, writes the service env).

use super::*;

pub(super) fn install() -> i32 {
    let version = std::env::var("INSTALL_K3S_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| hostcfg::DEFAULT_VERSION.to_string());
    let url = std::env::var("K3S_URL").ok().filter(|v| !v.is_empty());
    let exec_s = std::env::var("INSTALL_K3S_EXEC").unwrap_or_default();
    let mut exec = match install_exec_words(&exec_s) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("[ERROR]  INSTALL_K3S_EXEC: {e}");
            return 1;
        }
    };
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
    println!("[INFO]  systemd: Creating service file {unitf}");
    if let Err(e) = write_private(&unitf, hostcfg::render_unit(unit, &exec).as_bytes()) {
        eprintln!("[ERROR]  writing {unitf}: {e}");
        return 1;
    }
    let script = hostcfg::uninstall_script(unit);
    println!("[INFO]  Creating uninstall script {script}");
    if let Err(e) = fs::write(
        &script,
        "#!/bin/sh\n# k3splan lab: `k3s uninstall` / `k3s agent-uninstall` runs in its place\n",
    ) {
        eprintln!("[ERROR]  writing {script}: {e}");
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

/// The words of `INSTALL_K3S_EXEC` as install.sh takes them: `eval set --
/// $(escape "${INSTALL_K3S_EXEC}")`, where `escape` puts a backslash before each of
/// `][!#$%&()*;<=>?\_{|}` and the backtick (k3s-io/k3s `install.sh`). The unquoted `$(…)` splits at blanks,
/// then `eval` removes the backslashes and any quotes: run by `sh` itself, so a value that
/// install.sh would mangle (a quoted `a=b c` keeps a backslash) is mangled here too.
fn install_exec_words(exec: &str) -> Result<Vec<String>, String> {
    const SCRIPT: &str = r#"escape() { printf '%s' "$@" | sed -e 's/\([][!#$%&()*;<=>?\_`{|}]\)/\\\1/g;'; }
eval set -- $(escape "$1")
for a in "$@"; do printf '%s\0' "$a"; done"#;
    let out = Command::new("sh")
        .args(["-c", SCRIPT, "sh", exec])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running sh: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect())
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
    // Only the script of an installed unit exists: k3s-uninstall.sh on an agent host is
    // "not found" (exit 127), as the shell reports it.
    let own = if agent { "k3s-agent" } else { "k3s" };
    if !Path::new(&hostcfg::uninstall_script(own)).exists() {
        eprintln!("sh: 1: {}: not found", hostcfg::uninstall_script(own));
        return 127;
    }
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
    // install.sh's uninstall script (`create_uninstall`): k3s-killall.sh stops every k3s
    // process (above), then `rm -f ${FILE_K3S_SERVICE}` and `${FILE_K3S_ENV}` of its own
    // unit, its own script removed on exit; while another k3s*.service is left it stops
    // there ("Additional k3s services installed, skipping uninstall of k3s", exit 0), else
    // it removes k3s's directories and binary.
    let other = if agent { "k3s" } else { "k3s-agent" };
    remove(&hostcfg::env_file(own));
    remove(&hostcfg::unit_file(own));
    remove(&hostcfg::ready_file(own));
    remove(&hostcfg::failed_file(own));
    remove(&hostcfg::uninstall_script(own));
    if Path::new(&hostcfg::unit_file(other)).exists() {
        println!("Additional k3s services installed, skipping uninstall of k3s");
        return rc;
    }
    remove("/etc/rancher/k3s");
    remove(&data_dir);
    remove("/var/lib/rancher/k3s");
    remove(&hostcfg::ready_file(other));
    remove(&hostcfg::failed_file(other));
    remove(hostcfg::K3S_VERSION_FILE);
    remove(hostcfg::K3S_BIN);
    if agent {
        println!("k3s agent uninstalled");
    } else {
        println!("k3s uninstalled");
    }
    rc
}
