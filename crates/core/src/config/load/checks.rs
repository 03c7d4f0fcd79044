//! Checks of single values: names, versions, URLs, taints.

use super::*;

pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

pub(super) fn is_k3s_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let (core, _suffix) = rest.split_once('+').unwrap_or((rest, ""));
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

pub(super) fn check_https_url(s: &str) -> Result<(), String> {
    let Some(rest) = s.strip_prefix("https://") else {
        return Err(format!(
            "must be an https:// URL, found {s_q}",
            s_q = quote(s)
        ));
    };
    let host_port = rest.split('/').next().unwrap_or("");
    if host_port.is_empty() {
        return Err(format!("has no host: {s_q}", s_q = quote(s)));
    }
    let (host, port) = if let Some(h) = host_port.strip_prefix('[') {
        match h.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => {
                return Err(format!(
                    "has an unclosed IPv6 bracket: {s_q}",
                    s_q = quote(s)
                ));
            }
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("has no host: {s_q}", s_q = quote(s)));
    }
    if let Some(p) = port
        && p.parse::<u16>().map(|p| p == 0).unwrap_or(true)
    {
        return Err(format!(
            "has an invalid port {p_q}: {s_q}",
            p_q = quote(p),
            s_q = quote(s)
        ));
    }
    Ok(())
}

pub(super) fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s.rsplit_once(':').ok_or(
        "expected KEY[=VALUE]:EFFECT, e.g. \"node-role.kubernetes.io/control-plane:NoSchedule\"",
    )?;
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        other => {
            return Err(format!(
                "unknown effect {other_q} (NoSchedule, PreferNoSchedule, NoExecute)",
                other_q = quote(other)
            ));
        }
    };
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err("empty key".into());
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect,
    })
}
