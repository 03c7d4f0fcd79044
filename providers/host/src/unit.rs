//! The k3s unit's command line, read back so that re-running the installer (an upgrade) keeps
//! the arguments of the original install.
//!
//! k3s's install.sh writes every argument of `INSTALL_K3S_EXEC` (and of the script's own
//! arguments) into the unit file's `ExecStart=` and nowhere else (k3s-io/k3s `install.sh`,
//! `create_systemd_service_file`). Re-running it rewrites the unit from the new
//! `INSTALL_K3S_EXEC` alone, so an upgrade that passes only `server` drops, say,
//! `--disable traefik`, and the next start redeploys Traefik. docs.k3s.io "Upgrade K3s Using
//! the Installation Script": re-run it "using the same configuration options you originally
//! used".
//!
//! Guarantees: [`parse_exec_start`] reads what install.sh writes (each argument single-quoted
//! on its own continuation line) and any hand-edited unit in systemd's syntax that this reader
//! accepts; [`install_exec`] builds an `INSTALL_K3S_EXEC` that install.sh turns back into
//! exactly the same words, or refuses. Caveat: install.sh reads `INSTALL_K3S_EXEC` with
//! `eval set -- $(escape "${INSTALL_K3S_EXEC}")`: words split at blanks and quotes are
//! removed, so an argument with a blank, a quote, or a leading `~` cannot pass through it and
//! is refused ([`UnsafeArg`]) rather than changed. Move such a flag into `config.yaml`.

use std::fmt;

/// A unit's `ExecStart=`: the program, the k3s command and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecStart {
    /// The program (`/usr/local/bin/k3s`).
    pub program: String,
    /// `server` or `agent` (empty when the line has only the program).
    pub command: String,
    /// Everything after the command.
    pub args: Vec<String>,
}

impl ExecStart {
    /// All words, the program first.
    pub fn words(self) -> Vec<String> {
        let mut w = vec![self.program];
        if !self.command.is_empty() {
            w.push(self.command);
        }
        w.extend(self.args);
        w
    }
}

/// The `ExecStart=` of a systemd unit file, as systemd reads it (systemd.syntax(7),
/// systemd.service(5) "Command lines"): a line ending in `\` continues on the next (backslash
/// and newline become a space); lines starting with `#` or `;` are comments; the last
/// `ExecStart=` of `[Service]` counts; words split at blanks; a word may be quoted with
/// `'…'` or `"…"`; `\\`, `\'`, `\"`, `\t`, `\n` and `\ ` are escapes. Not supported (an
/// error, never a guess): other escapes, an unterminated quote. Not applied: `%` specifiers,
/// `$VAR` expansion and the `@`/`-`/`:`/`+`/`!` prefixes (install.sh writes none).
pub fn parse_exec_start(text: &str) -> Result<ExecStart, String> {
    let mut lines: Vec<String> = Vec::new();
    let mut joined = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if joined.is_empty() && (t.starts_with('#') || t.starts_with(';')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            continue;
        }
        joined.push_str(line);
        lines.push(std::mem::take(&mut joined));
    }
    if !joined.is_empty() {
        lines.push(joined);
    }
    let mut section = "";
    let mut value = None;
    for l in &lines {
        let t = l.trim();
        if t.starts_with('[') && t.ends_with(']') {
            section = t;
        } else if section == "[Service]"
            && let Some(v) = t.strip_prefix("ExecStart=")
        {
            value = Some(v);
        }
    }
    let mut words = split_words(value.ok_or("no ExecStart= in [Service]")?)?.into_iter();
    let program = words.next().ok_or("ExecStart= is empty")?;
    Ok(ExecStart {
        program,
        command: words.next().unwrap_or_default(),
        args: words.collect(),
    })
}

fn split_words(value: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut w = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => match chars.next() {
                    Some('t') => w.push('\t'),
                    Some('n') => w.push('\n'),
                    Some(e @ ('\\' | '\'' | '"' | ' ')) => w.push(e),
                    Some(e) => return Err(format!("unsupported escape \\{e} in ExecStart=")),
                    None => return Err("ExecStart= ends in a backslash".into()),
                },
                ('\'' | '"', None) => quote = Some(c),
                (q, Some(open)) if q == open => quote = None,
                (' ' | '\t', None) => break,
                _ => w.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote in ExecStart=".into());
        }
        words.push(w);
    }
}

/// An argument install.sh cannot take back through `INSTALL_K3S_EXEC` unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsafeArg {
    /// 1-based position after the command.
    pub position: usize,
    /// Why (the argument itself is not repeated: it may be a secret).
    pub reason: &'static str,
}

impl fmt::Display for UnsafeArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argument {} of ExecStart {}, so install.sh's INSTALL_K3S_EXEC cannot carry it unchanged; move that flag to config.yaml",
            self.position, self.reason
        )
    }
}

/// `INSTALL_K3S_EXEC` for `command` and `args`: the words joined by spaces, unquoted.
/// install.sh backslash-escapes `][!#$%&()*;<=>?\_{|}` and the backtick before its `eval`,
/// so those survive; blanks split words, quotes are removed and a leading `~` is expanded, so
/// an argument with one of those is refused. So is a backslash: it survives the `eval` but
/// install.sh writes it verbatim into the unit, where systemd reads it as an escape.
pub fn install_exec(command: &str, args: &[String]) -> Result<String, UnsafeArg> {
    let mut out = command.to_string();
    for (i, a) in args.iter().enumerate() {
        let reason = if a.is_empty() {
            Some("is empty")
        } else if a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("contains a blank or a control character")
        } else if a.contains(['\'', '"']) {
            Some("contains a quote")
        } else if a.contains('\\') {
            // install.sh writes it verbatim inside '…' in the unit, where systemd reads `\`
            // as the start of an escape: k3s would restart with a different argument.
            Some("contains a backslash")
        } else if a.starts_with('~') {
            Some("starts with ~")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(UnsafeArg {
                position: i + 1,
                reason,
            });
        }
        out.push(' ');
        out.push_str(a);
    }
    Ok(out)
}

/// k3s flags whose value is a secret (k3s-io/k3s `pkg/cli/cmds`: the join tokens, the
/// datastore endpoint with its password, the etcd S3 credentials, the VPN auth key).
const SECRET_FLAGS: &[&str] = &[
    "t",
    "token",
    "agent-token",
    "datastore-endpoint",
    "etcd-s3-access-key",
    "etcd-s3-secret-key",
    "etcd-s3-session-token",
    "vpn-auth",
];

/// The values among `args` that are secrets, for redaction: the value of each flag in
/// [`SECRET_FLAGS`], and of any other flag whose name contains `token`, `password` or
/// `secret`, in both the `--flag value` and `--flag=value` forms. A word starting with `-`
/// is a flag, never a value (`--secrets-encryption --token X`: `X` is the secret).
pub fn secret_values(args: &[String]) -> Vec<String> {
    let sensitive = |flag: &str| {
        let f = flag.trim_start_matches('-');
        flag.starts_with('-')
            && (SECRET_FLAGS.contains(&f)
                || ["token", "password", "secret"]
                    .iter()
                    .any(|s| f.contains(s)))
    };
    let mut out = Vec::new();
    let mut next_is_secret = false;
    for a in args {
        if next_is_secret && !a.starts_with('-') {
            out.push(a.clone());
            next_is_secret = false;
            continue;
        }
        next_is_secret = false;
        if let Some((flag, value)) = a.split_once('=') {
            if sensitive(flag) && !value.is_empty() {
                out.push(value.to_string());
            }
        } else {
            next_is_secret = sensitive(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What install.sh writes for `INSTALL_K3S_EXEC="server --disable traefik
    /// --node-label=zone=a"` (k3s-io/k3s install.sh `create_systemd_service_file`, with
    /// `quote_indent`): a tab, the argument in single quotes, ` \`, and an empty line last.
    const INSTALLED: &str = "[Unit]\nDescription=Lightweight Kubernetes\n\n[Install]\nWantedBy=multi-user.target\n\n[Service]\nType=notify\nEnvironmentFile=-/etc/systemd/system/k3s.service.env\n# Having non-zero Limit*s causes performance problems \\\nRestart=always\nExecStartPre=/bin/sh -xc '! /usr/bin/systemctl is-enabled --quiet nm-cloud-setup.service'\nExecStartPre=-/sbin/modprobe br_netfilter\nExecStart=/usr/local/bin/k3s \\\n    server \\\n\t'--disable' \\\n\t'traefik' \\\n\t'--node-label=zone=a' \\\n\n";

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn reads_the_unit_install_sh_writes() {
        let e = parse_exec_start(INSTALLED).unwrap();
        assert_eq!(e.program, "/usr/local/bin/k3s");
        assert_eq!(e.command, "server");
        assert_eq!(e.args, s(&["--disable", "traefik", "--node-label=zone=a"]));
    }

    #[test]
    fn reads_a_unit_without_arguments_and_the_last_exec_start() {
        let t =
            "[Service]\nExecStart=/bin/false\nExecStart=/usr/local/bin/k3s \\\n    server \\\n\n";
        let e = parse_exec_start(t).unwrap();
        assert_eq!((e.command.as_str(), e.args.len()), ("server", 0));
        let t = "[Service]\nExecStart=/usr/local/bin/k3s agent \"--node-name\" 'a b' x\\ y\n";
        let e = parse_exec_start(t).unwrap();
        assert_eq!(e.args, s(&["--node-name", "a b", "x y"]));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for (t, want) in [
            ("[Service]\nType=notify\n", "no ExecStart"),
            ("[Unit]\nExecStart=/x server\n", "no ExecStart"),
            ("[Service]\nExecStart=/x 'server\n", "unterminated"),
            ("[Service]\nExecStart=/x \\q\n", "unsupported escape"),
            ("[Service]\nExecStart=\n", "empty"),
        ] {
            let e = parse_exec_start(t).unwrap_err();
            assert!(e.contains(want), "{t:?}: {e}");
        }
    }

    #[test]
    fn install_exec_keeps_plain_arguments_and_refuses_the_rest() {
        assert_eq!(
            install_exec(
                "server",
                &s(&["--disable", "traefik", "--kubelet-arg=max-pods=200"])
            )
            .unwrap(),
            "server --disable traefik --kubelet-arg=max-pods=200"
        );
        for (arg, why) in [
            ("a b", "blank"),
            ("it's", "quote"),
            ("\"x\"", "quote"),
            ("~/data", "~"),
            ("", "empty"),
            ("a\nb", "blank"),
            ("a\\b", "backslash"),
        ] {
            let e = install_exec("server", &s(&["--x", arg])).unwrap_err();
            assert_eq!(e.position, 2);
            assert!(e.to_string().contains(why), "{arg:?}: {e}");
            assert!(!e.to_string().contains(arg) || arg.is_empty() || arg == "a b");
        }
    }

    /// install.sh's own reading of `INSTALL_K3S_EXEC`, run by `sh`: `eval set --
    /// $(escape "${INSTALL_K3S_EXEC}")` with install.sh's `escape` sed expression.
    fn install_sh_words(exec: &str) -> Vec<String> {
        let script = r#"escape() { printf '%s' "$@" | sed -e 's/\([][!#$%&()*;<=>?\_`{|}]\)/\\\1/g;'; }
eval set -- $(escape "$1")
for a in "$@"; do printf '%s\0' "$a"; done"#;
        let out = std::process::Command::new("sh")
            .args(["-c", script, "sh", exec])
            .output()
            .expect("sh");
        assert!(out.status.success(), "{exec:?}: {:?}", out);
        out.stdout
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    #[test]
    fn every_argument_install_exec_accepts_comes_back_unchanged_from_install_sh() {
        let mut accepted = 0;
        for c in (0x21u8..0x7f).map(char::from).chain(['é', '€']) {
            for arg in [
                format!("a{c}b"),
                format!("{c}b"),
                format!("a{c}"),
                format!("{c}{c}"),
            ] {
                let args = vec!["--flag".to_string(), arg.clone()];
                let Ok(exec) = install_exec("server", &args) else {
                    continue;
                };
                accepted += 1;
                let words = install_sh_words(&exec);
                assert_eq!(words, s(&["server", "--flag", &arg]), "{arg:?}");
                // install.sh then writes them into the unit (`quote_indent`), and systemd
                // (here: parse_exec_start) must read back the same arguments.
                let mut unit =
                    "[Service]\nExecStart=/usr/local/bin/k3s \\\n    server \\\n".to_string();
                for w in &words[1..] {
                    unit.push_str(&format!("\t'{}' \\\n", w.replace('\'', "'\\''")));
                }
                unit.push('\n');
                assert_eq!(
                    parse_exec_start(&unit).unwrap().args,
                    args,
                    "{arg:?}\n{unit}"
                );
            }
        }
        assert!(accepted > 350, "{accepted}");
    }

    #[test]
    fn secret_values_finds_tokens_in_both_forms() {
        let args = s(&[
            "--token",
            "K10abc::server:s3cret",
            "--agent-token=agent-s3cret",
            "--datastore-endpoint",
            "mysql://u:pw@tcp(db)/k3s",
            "-t",
            "short",
            "--disable",
            "traefik",
            "--node-label=token=visible-only-as-a-label-value",
            "--secrets-encryption",
            "--vpn-auth=name=wireguard,joinKey=k3y",
            "--secrets-encryption",
            "-t",
            "after-a-boolean",
        ]);
        assert_eq!(
            secret_values(&args),
            s(&[
                "K10abc::server:s3cret",
                "agent-s3cret",
                "mysql://u:pw@tcp(db)/k3s",
                "short",
                "name=wireguard,joinKey=k3y",
                "after-a-boolean",
            ])
        );
    }
}
