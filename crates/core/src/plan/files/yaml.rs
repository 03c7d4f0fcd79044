//! Line-level YAML: the mapping entry a line starts, and masking secret values in place.
//! Used where the text must be kept byte for byte (a masked file is shown as a diff against
//! the written one); what is secret is decided on the parsed file (`secrets.rs`).

use super::SENSITIVE;
use super::secrets::has_url_credentials;
use super::secrets::is_secret_key;

/// A `KEY: value` mapping entry on one line: `col` is the key's column, `colon` the byte
/// offset of its `:`, `key` the key decoded (quotes removed).
pub(super) struct YamlEntry {
    pub col: usize,
    pub colon: usize,
    pub key: String,
}

/// The entry a line starts (after indentation and `- ` sequence markers), if any.
pub(super) fn yaml_entry(body: &str) -> Option<YamlEntry> {
    let mut i = body.len() - body.trim_start().len();
    while body[i..].starts_with("- ") || body[i..].starts_with("-\t") {
        i += 1;
        i += body[i..].len() - body[i..].trim_start().len();
    }
    let col = i;
    let rest = &body[i..];
    let (key, after) = match rest.chars().next()? {
        '"' => {
            let mut esc = false;
            let end = rest[1..].char_indices().find_map(|(j, c)| {
                let hit = c == '"' && !esc;
                esc = c == '\\' && !esc;
                hit.then_some(j + 1)
            })?;
            let k: String = serde_json::from_str(&rest[..=end]).ok()?;
            (k, end + 1)
        }
        '\'' => {
            let mut j = 1;
            loop {
                let k = rest[j..].find('\'')? + j;
                if rest[k + 1..].starts_with('\'') {
                    j = k + 2;
                } else {
                    break (rest[1..k].replace("''", "'"), k + 1);
                }
            }
        }
        '#' | '[' | '{' | '|' | '>' | '&' | '*' | '!' | '%' | '@' | '`' => return None,
        _ => {
            let k = rest
                .match_indices(':')
                .find(|(j, _)| rest[j + 1..].is_empty() || rest[j + 1..].starts_with([' ', '\t']))?
                .0;
            (rest[..k].trim_end().to_string(), k)
        }
    };
    let tail = &rest[after..];
    let ws = tail.len() - tail.trim_start_matches([' ', '\t']).len();
    let tail2 = &tail[ws..];
    if !tail2.starts_with(':') || !(tail2.len() == 1 || tail2[1..].starts_with([' ', '\t'])) {
        return None;
    }
    Some(YamlEntry {
        col,
        colon: i + after + ws,
        key,
    })
}

fn indent_of(body: &str) -> usize {
    body.len() - body.trim_start_matches(' ').len()
}

pub(super) fn mask_yaml(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    // Column of a `{name: SECRET}` env entry whose `value:` is still to come.
    let mut env_col: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        i += 1;
        let entry = yaml_entry(body);
        if let Some(c) = env_col
            && !body.trim().is_empty()
            && indent_of(body) < c
        {
            env_col = None;
        }
        let mask_from = match &entry {
            Some(e) => {
                let value = body[e.colon + 1..].trim();
                if e.key == "name" && is_secret_key(value.trim_matches(['"', '\''])) {
                    env_col = Some(e.col);
                }
                let env_value = e.key == "value" && env_col == Some(e.col);
                if env_value {
                    env_col = None;
                }
                (is_secret_key(&e.key) || env_value || has_url_credentials(value))
                    .then_some((e.colon + 1, e.col))
            }
            None => {
                let t = body.trim_start();
                let item = t.strip_prefix("- ").map(str::trim);
                item.filter(|v| has_url_credentials(v))
                    .map(|_| (body.len() - t.len() + 1, body.len() - t.len()))
            }
        };
        let Some((from, col)) = mask_from else {
            out.push_str(line);
            continue;
        };
        out.push_str(&body[..from]);
        out.push(' ');
        out.push_str(SENSITIVE);
        out.push_str(nl);
        // The value's continuation lines (block scalar, multi-line or nested value).
        while i < lines.len() {
            let b = lines[i].trim_end_matches(['\n', '\r']);
            if b.trim().is_empty() || indent_of(b) > col {
                i += 1;
            } else {
                break;
            }
        }
    }
    out
}
