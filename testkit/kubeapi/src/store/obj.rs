//! One stored object: its value, serialized bytes, and the compact head the selectors scan.

use super::*;

/// One stored object.
///
/// Normal mode: `head` is the whole object as a [`Value`], next to its serialized `bytes`.
/// Compact mode ([`Store::set_compact`]): `head` keeps only the parts the selectors and the
/// controllers scan on every pass ([`head_of`]), and the whole object is parsed from `bytes`
/// on demand ([`Obj::value`]).
#[derive(Debug, Clone)]
pub(super) struct Obj {
    pub(super) head: Value,
    pub(super) full: bool,
    pub(super) bytes: Arc<Vec<u8>>,
}

impl Obj {
    pub(super) fn new(value: Value) -> Self {
        let bytes = Arc::new(serialize(&value));
        Self {
            head: value,
            full: true,
            bytes,
        }
    }

    pub(super) fn compact(value: &Value) -> Self {
        Self {
            head: head_of(value),
            full: false,
            bytes: Arc::new(serialize(value)),
        }
    }

    /// The whole object (parsed from the bytes in compact mode).
    pub(super) fn value(&self) -> Cow<'_, Value> {
        if self.full {
            Cow::Borrowed(&self.head)
        } else {
            Cow::Owned(serde_json::from_slice(&self.bytes).expect("stored JSON parses"))
        }
    }

    pub(super) fn into_value(self) -> Value {
        if self.full {
            self.head
        } else {
            serde_json::from_slice(&self.bytes).expect("stored JSON parses")
        }
    }

    /// The object's head: `metadata` (without `managedFields` and `annotations`),
    /// `spec.nodeName`, `spec.claimRef` and `status.phase` are always right here; in normal
    /// mode it is the whole object.
    pub(super) fn head(&self) -> &Value {
        &self.head
    }

    /// Whether `field_value(head, path)` equals `field_value(whole object, path)`.
    pub(super) fn head_covers(&self, path: &str) -> bool {
        self.full || head_covers(path)
    }
}

/// The JSON of an object, in a buffer of exactly its length (`to_vec` leaves up to twice the
/// length allocated, which a store of 150,000 pods would keep).
pub(super) fn serialize(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).expect("serialize");
    b.shrink_to_fit();
    b
}

/// Fields of `metadata` left out of a compact object's head (bulky, never scanned).
const HEAD_DROPPED_METADATA: [&str; 2] = ["managedFields", "annotations"];

/// The head of a compact object: `metadata` minus [`HEAD_DROPPED_METADATA`], `spec.nodeName`,
/// `spec.claimRef`, `status.phase` (each only when present).
pub(super) fn head_of(v: &Value) -> Value {
    let mut head = serde_json::Map::new();
    if let Some(m) = v.get("metadata").and_then(Value::as_object) {
        let m: serde_json::Map<String, Value> = m
            .iter()
            .filter(|(k, _)| !HEAD_DROPPED_METADATA.contains(&k.as_str()))
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect();
        head.insert("metadata".into(), Value::Object(m));
    } else if let Some(m) = v.get("metadata") {
        head.insert("metadata".into(), m.clone());
    }
    let pick = |sect: &str, fields: &[&str]| -> Option<Value> {
        let o = v.get(sect)?.as_object()?;
        let picked: serde_json::Map<String, Value> = fields
            .iter()
            .filter_map(|f| o.get(*f).map(|x| (f.to_string(), x.clone())))
            .collect();
        (!picked.is_empty()).then_some(Value::Object(picked))
    };
    if let Some(s) = pick("spec", &["nodeName", "claimRef"]) {
        head.insert("spec".into(), s);
    }
    if let Some(s) = pick("status", &["phase"]) {
        head.insert("status".into(), s);
    }
    Value::Object(head)
}

/// Whether a field path (as in a field selector) reads only what [`head_of`] keeps.
pub(super) fn head_covers(path: &str) -> bool {
    if let Some(rest) = path.strip_prefix("metadata.") {
        let first = rest.split('.').next().unwrap_or_default();
        !HEAD_DROPPED_METADATA.contains(&first)
    } else {
        path == "spec.nodeName" || path.starts_with("spec.claimRef.") || path == "status.phase"
    }
}
