//! Label and field selectors, JSON merge patch and JSON patch: the pure parts of the API semantics.

use serde_json::{Map, Value};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelReq {
    /// `key=value` or `key==value`.
    Eq(String, String),
    /// `key!=value` (also true when the key is absent, as in Kubernetes).
    Ne(String, String),
    /// `key`.
    Exists(String),
    /// `!key`.
    NotExists(String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)` (true when the key is absent).
    NotIn(String, Vec<String>),
}

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.into_iter().filter(|t| !t.is_empty()).collect()
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// Parses a label selector (`a=b,c!=d,e,!f,g in (h,i),j notin (k)`).
pub fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, String> {
    let mut reqs = Vec::new();
    for term in split_terms(s) {
        if let Some(k) = term.strip_prefix('!') {
            reqs.push(LabelReq::NotExists(k.trim().to_string()));
        } else if let Some(pos) = term.find(" notin ") {
            let set = parse_set(&term[pos + 7..]).ok_or_else(|| format!("bad set in {term:?}"))?;
            reqs.push(LabelReq::NotIn(term[..pos].trim().to_string(), set));
        } else if let Some(pos) = term.find(" in ") {
            let set = parse_set(&term[pos + 4..]).ok_or_else(|| format!("bad set in {term:?}"))?;
            reqs.push(LabelReq::In(term[..pos].trim().to_string(), set));
        } else if let Some((k, v)) = term.split_once("!=") {
            reqs.push(LabelReq::Ne(k.trim().to_string(), v.trim().to_string()));
        } else if let Some((k, v)) = term.split_once("==") {
            reqs.push(LabelReq::Eq(k.trim().to_string(), v.trim().to_string()));
        } else if let Some((k, v)) = term.split_once('=') {
            reqs.push(LabelReq::Eq(k.trim().to_string(), v.trim().to_string()));
        } else if term.contains(' ') || term.contains('(') {
            return Err(format!("unable to parse requirement {term:?}"));
        } else {
            reqs.push(LabelReq::Exists(term.to_string()));
        }
    }
    Ok(reqs)
}

/// Whether `labels` (a JSON object or null) satisfies all requirements.
pub fn labels_match(reqs: &[LabelReq], labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
        LabelReq::Ne(k, v) => get(k) != Some(v.as_str()),
        LabelReq::Exists(k) => get(k).is_some(),
        LabelReq::NotExists(k) => get(k).is_none(),
        LabelReq::In(k, set) => get(k).is_some_and(|v| set.iter().any(|s| s == v)),
        LabelReq::NotIn(k, set) => get(k).is_none_or(|v| set.iter().all(|s| s != v)),
    })
}

/// Whether a structured `LabelSelector` object (`matchLabels`/`matchExpressions`) matches labels.
/// An empty selector matches everything; a null selector matches nothing (PDB semantics).
pub fn label_selector_object_matches(sel: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return false;
    };
    let mut reqs = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            reqs.push(LabelReq::Eq(
                k.clone(),
                v.as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => reqs.push(LabelReq::In(key, values)),
                Some("NotIn") => reqs.push(LabelReq::NotIn(key, values)),
                Some("Exists") => reqs.push(LabelReq::Exists(key)),
                Some("DoesNotExist") => reqs.push(LabelReq::NotExists(key)),
                _ => return false,
            }
        }
    }
    labels_match(&reqs, labels)
}

/// One requirement of a field selector.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldReq {
    /// Dotted path such as `spec.nodeName`.
    pub path: String,
    /// The value compared with.
    pub value: String,
    /// `!=` rather than `=`/`==`.
    pub negate: bool,
}

/// Parses a field selector (`spec.nodeName=n1,status.phase!=Running`).
pub fn parse_field_selector(s: &str) -> Result<Vec<FieldReq>, String> {
    split_terms(s)
        .into_iter()
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                Ok(FieldReq {
                    path: k.trim().into(),
                    value: v.trim().into(),
                    negate: true,
                })
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Ok(FieldReq {
                    path: k.trim().into(),
                    value: v.trim().into(),
                    negate: false,
                })
            } else {
                Err(format!("invalid field selector term {term:?}"))
            }
        })
        .collect()
}

/// The string form of the field at a dotted path ("" when absent, as Kubernetes compares it).
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether an object satisfies every field requirement.
pub fn fields_match(reqs: &[FieldReq], obj: &Value) -> bool {
    reqs.iter()
        .all(|r| (field_value(obj, &r.path) == r.value) != r.negate)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let t = target.as_object_mut().expect("object");
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

/// RFC 6902 JSON patch (`add`, `remove`, `replace`, `test`, `copy`, `move`).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array")?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).ok_or("op missing")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("path missing")?;
        match kind {
            "add" | "replace" => {
                let v = op.get("value").cloned().ok_or("value missing")?;
                pointer_set(target, path, v, kind == "add")?;
            }
            "remove" => {
                pointer_remove(target, path)?;
            }
            "test" => {
                let v = op.get("value").ok_or("value missing")?;
                if target.pointer(path) != Some(v) {
                    return Err(format!("test failed at {path}"));
                }
            }
            "copy" | "move" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("from missing")?;
                let v = target
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("no value at {from}"))?;
                if kind == "move" {
                    pointer_remove(target, from)?;
                }
                pointer_set(target, path, v, true)?;
            }
            other => return Err(format!("unsupported op {other}")),
        }
    }
    Ok(())
}

fn split_parent(path: &str) -> Result<(&str, String), String> {
    let idx = path
        .rfind('/')
        .ok_or_else(|| format!("bad pointer {path}"))?;
    Ok((&path[..idx], unescape(&path[idx + 1..])))
}

fn pointer_set(target: &mut Value, path: &str, v: Value, insert: bool) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (parent, last) = split_parent(path)?;
    let p = target
        .pointer_mut(parent)
        .ok_or_else(|| format!("no parent for {path}"))?;
    match p {
        Value::Object(m) => {
            if !insert && !m.contains_key(&last) {
                return Err(format!("no value at {path}"));
            }
            m.insert(last, v);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(v);
            } else {
                let i: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
                if insert && i <= a.len() {
                    a.insert(i, v);
                } else if !insert && i < a.len() {
                    a[i] = v;
                } else {
                    return Err(format!("index out of range in {path}"));
                }
            }
        }
        _ => return Err(format!("parent of {path} is not a container")),
    }
    Ok(())
}

fn pointer_remove(target: &mut Value, path: &str) -> Result<(), String> {
    let (parent, last) = split_parent(path)?;
    let p = target
        .pointer_mut(parent)
        .ok_or_else(|| format!("no parent for {path}"))?;
    match p {
        Value::Object(m) => m
            .remove(&last)
            .map(|_| ())
            .ok_or_else(|| format!("no value at {path}")),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
            if i < a.len() {
                a.remove(i);
                Ok(())
            } else {
                Err(format!("index out of range in {path}"))
            }
        }
        _ => Err(format!("parent of {path} is not a container")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_follow_kubernetes_semantics() {
        let labels = json!({"app": "minio", "tier": "db"});
        let m = |s: &str| labels_match(&parse_label_selector(s).unwrap(), Some(&labels));
        assert!(m("app=minio"));
        assert!(m("app==minio,tier"));
        assert!(!m("app=minio,!tier"));
        assert!(m("app in (x, minio),zone notin (a)"));
        assert!(!m("app notin (minio)"));
        assert!(m("zone!=a"));
        assert!(!m("missing"));
    }

    #[test]
    fn field_selector_compares_missing_fields_as_empty() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}});
        let f = |s: &str| fields_match(&parse_field_selector(s).unwrap(), &pod);
        assert!(f("spec.nodeName="));
        assert!(f("status.phase=Pending,metadata.name=p"));
        assert!(!f("status.phase!=Pending"));
    }

    #[test]
    fn merge_and_json_patch() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut v, &json!({"a": {"b": null, "d": 3}}));
        assert_eq!(v, json!({"a": {"c": 2, "d": 3}, "l": [1, 2]}));
        json_patch(
            &mut v,
            &json!([{"op": "add", "path": "/l/-", "value": 3}, {"op": "remove", "path": "/a/c"}]),
        )
        .unwrap();
        assert_eq!(v, json!({"a": {"d": 3}, "l": [1, 2, 3]}));
        assert!(
            json_patch(
                &mut v,
                &json!([{"op": "replace", "path": "/zz", "value": 1}])
            )
            .is_err()
        );
    }
}
