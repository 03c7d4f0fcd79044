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

/// Why a string is not an `https://HOST[:PORT]` URL (shown after the attribute's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum UrlError {
    #[error("must be an https:// URL, found {}", quote(.0))]
    NotHttps(String),
    #[error("has no host: {}", quote(.0))]
    NoHost(String),
    #[error("has an unclosed IPv6 bracket: {}", quote(.0))]
    UnclosedBracket(String),
    #[error("has an invalid port {}: {}", quote(.port), quote(.url))]
    BadPort { port: String, url: String },
}

pub(super) fn check_https_url(s: &str) -> Result<(), UrlError> {
    let Some(rest) = s.strip_prefix("https://") else {
        return Err(UrlError::NotHttps(s.to_string()));
    };
    let host_port = rest.split('/').next().unwrap_or("");
    if host_port.is_empty() {
        return Err(UrlError::NoHost(s.to_string()));
    }
    let (host, port) = if let Some(h) = host_port.strip_prefix('[') {
        match h.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(UrlError::UnclosedBracket(s.to_string())),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost(s.to_string()));
    }
    if let Some(p) = port
        && p.parse::<u16>().map(|p| p == 0).unwrap_or(true)
    {
        return Err(UrlError::BadPort {
            port: p.to_string(),
            url: s.to_string(),
        });
    }
    Ok(())
}

/// Why a string is not a taint `KEY[=VALUE]:EFFECT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum TaintError {
    #[error(
        "expected KEY[=VALUE]:EFFECT, e.g. \"node-role.kubernetes.io/control-plane:NoSchedule\""
    )]
    NoEffect,
    #[error("unknown effect {} (NoSchedule, PreferNoSchedule, NoExecute)", quote(.0))]
    UnknownEffect(String),
    #[error("empty key")]
    EmptyKey,
}

pub(super) fn parse_taint(s: &str) -> Result<Taint, TaintError> {
    let (kv, effect) = s.rsplit_once(':').ok_or(TaintError::NoEffect)?;
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        other => return Err(TaintError::UnknownEffect(other.to_string())),
    };
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(TaintError::EmptyKey);
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect,
    })
}

/// "unknown WHAT "FOUND"; did you mean "CHOICE"?" when a choice is close, else the message
/// lists the choices.
pub(super) fn unknown_choice(what: &str, found: &str, choices: &[&str]) -> String {
    let found_q = quote(found);
    if let Some(s) = did_you_mean(found, choices.iter().copied()) {
        return format!("unknown {what} {found_q}; did you mean {}?", quote(s));
    }
    let quoted: Vec<String> = choices.iter().map(|c| quote(c)).collect();
    let expected = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    format!("unknown {what} {found_q}; expected {expected}")
}
