//! The installer's environment file (`/etc/systemd/system/k3s.service.env`, read by systemd
//! as the unit's `EnvironmentFile=`): rewriting one variable and keeping every other byte.
//!
//! install.sh writes it from `sh -c export | while read x v; do echo $v; done | grep -E
//! '^(K3S|CONTAINERD)_'` plus the `NO_PROXY`/`HTTP_PROXY`/`HTTPS_PROXY` lines, so its lines
//! look like `K3S_URL='https://10.0.0.1:6443'` (dash) or `K3S_URL="…"` (bash); operators add
//! their own lines and comments. Guarantee: [`rewrite_env_var`] changes only the lines that
//! assign the variable (keeping their `export ` prefix and quote style) and keeps the other
//! variables, comments, blank lines and their order.

/// Where the `=` of an assignment of `key` is in `line` (`[export ]KEY=…`, leading blanks
/// allowed), or `None` when the line assigns something else or is a comment.
fn assignment_eq(line: &str, key: &str) -> Option<usize> {
    let start = line.len() - line.trim_start().len();
    let t = &line[start..];
    if env_assignment_key(t)? != key {
        return None;
    }
    t.find('=').map(|eq| start + eq)
}

/// `value` written in the quote style of `old` (the old value's text after `=`): single
/// quotes when it had them (or when a plain value would need quoting), double quotes when
/// it had them, plain when it was plain and `value` needs no quoting.
fn quoted_like(old: &str, value: &str) -> String {
    let old = old.trim();
    let plain_ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/+=@,[]%~".contains(c));
    if old.starts_with('"') {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else if (old.starts_with('\'') || !plain_ok) && !value.contains('\'') {
        format!("'{value}'")
    } else if plain_ok {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// `raw` with every assignment of `key` set to `value`, in its line's quote style; when no
/// line assigns it, `KEY='value'` (the installer's form) is appended. Every other byte is
/// kept.
pub fn rewrite_env_var(raw: &str, key: &str, value: &str) -> String {
    let mut out = String::with_capacity(raw.len() + value.len());
    let mut found = false;
    for line in raw.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let (body, cr) = match body.strip_suffix('\r') {
            Some(b) => (b, "\r"),
            None => (body, ""),
        };
        match assignment_eq(body, key) {
            Some(eq) => {
                found = true;
                out.push_str(&body[..=eq]);
                out.push_str(&quoted_like(&body[eq + 1..], value));
                out.push_str(cr);
                out.push_str(nl);
            }
            None => out.push_str(line),
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}={}\n", quoted_like("'", value)));
    }
    out
}

/// The last line of `text` that assigns `key`, as written (without its line end): what the
/// apply engine keeps for a secret it must not change (`K3S_TOKEN=(sensitive)` in a plan).
pub fn env_assignment_line<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .rev()
        .find(|l| assignment_eq(l, key).is_some())
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// The name a `KEY=VALUE` line assigns (`None` for comments, blank lines, YAML).
pub fn env_assignment_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with(';') {
        return None;
    }
    let eq = t.find('=')?;
    let name = t[..eq].trim_end();
    let name = match name.strip_prefix("export") {
        Some(r) if r.starts_with([' ', '\t']) => r.trim_start(),
        _ => name,
    };
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::files::mask_secrets;

    /// The installer's file (dash's `export` quoting), an operator's comment and proxy
    /// lines: only `K3S_URL` changes, in its own quote style.
    #[test]
    fn issue19_rewrites_k3s_url_and_keeps_everything_else() {
        let raw = "# set by ops\nK3S_TOKEN='K10secret::server:abc'\nK3S_URL='https://10.0.0.1:6443'\nHTTPS_PROXY='http://user:pw@proxy:3128'\n\nNO_PROXY='127.0.0.0/8,10.0.0.0/8'\n";
        let r = rewrite_env_var(raw, "K3S_URL", "https://10.0.0.9:6443");
        assert_eq!(
            r,
            raw.replace("https://10.0.0.1:6443", "https://10.0.0.9:6443")
        );
        // Double quotes, `export`, leading blanks, CRLF, no final newline.
        let raw = "export K3S_URL=\"https://a:6443\"\r\n  K3S_URL=https://b:6443";
        assert_eq!(
            rewrite_env_var(raw, "K3S_URL", "https://c:6443"),
            "export K3S_URL=\"https://c:6443\"\r\n  K3S_URL=https://c:6443"
        );
        // Not assigned yet: appended in the installer's form; comments naming it are kept.
        let raw = "# K3S_URL=https://old:6443\nK3S_TOKEN=x";
        assert_eq!(
            rewrite_env_var(raw, "K3S_URL", "https://c:6443"),
            "# K3S_URL=https://old:6443\nK3S_TOKEN=x\nK3S_URL='https://c:6443'\n"
        );
        // A variable whose name merely starts with it is not it.
        let raw = "K3S_URL_OLD=https://a:6443\n";
        assert!(rewrite_env_var(raw, "K3S_URL", "https://c:6443").starts_with(raw));
    }

    /// The masked plan text keeps the token masked; the apply engine finds the line to
    /// keep in the file on the host.
    #[test]
    fn issue19_masked_rewrite_and_the_line_kept_for_a_secret() {
        let raw = "K3S_TOKEN='K10secret'\nK3S_URL='https://10.0.0.1:6443'\n";
        let after = rewrite_env_var(&mask_secrets(raw), "K3S_URL", "https://v:6443");
        assert_eq!(after, "K3S_TOKEN=(sensitive)\nK3S_URL='https://v:6443'\n");
        assert_eq!(
            env_assignment_line(raw, "K3S_TOKEN"),
            Some("K3S_TOKEN='K10secret'")
        );
        assert_eq!(
            env_assignment_key("export K3S_TOKEN=(sensitive)"),
            Some("K3S_TOKEN")
        );
        assert_eq!(env_assignment_key("token: (sensitive)"), None);
        assert_eq!(env_assignment_key("# K3S_TOKEN=x"), None);
    }
}
