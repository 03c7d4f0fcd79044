//! Reading objects into slim structs: GET one, or list a kind (`resourceVersion=0` unless a
//! fresh read is asked for, optional paging, label and field selectors), decoding large bodies
//! off the async runtime.

use serde::de::DeserializeOwned;

use super::slim::SList;
use crate::{KubeError, KubeProvider};

fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl KubeProvider {
    /// GETs one object into a slim struct; `Ok(None)` on 404.
    pub(crate) async fn get_slim<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, KubeError> {
        let req = http::Request::get(path).body(Vec::new()).expect("request");
        match self.client.request::<T>(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(self.map_err(&format!("GET {path}"), e)),
        }
    }

    /// Lists `path` (e.g. `/api/v1/pods`) into slim items, following `continue` tokens.
    pub(crate) async fn list_slim<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Vec<T>, KubeError> {
        self.list_slim_rv(
            path,
            label_selector,
            field_selector,
            self.settings.resource_version_zero,
        )
        .await
    }

    /// Like [`Self::list_slim`], but a consistent read (no `resourceVersion=0`): for actions,
    /// which must not act on a stale cache.
    pub(crate) async fn list_slim_fresh<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Vec<T>, KubeError> {
        self.list_slim_rv(path, label_selector, field_selector, false)
            .await
    }

    async fn list_slim_rv<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
        rv0: bool,
    ) -> Result<Vec<T>, KubeError> {
        let mut out = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut q: Vec<String> = Vec::new();
            if let Some(l) = label_selector {
                q.push(format!("labelSelector={}", enc(l)));
            }
            if let Some(f) = field_selector {
                q.push(format!("fieldSelector={}", enc(f)));
            }
            if let Some(n) = self.settings.page_size {
                q.push(format!("limit={n}"));
            }
            match &cont {
                // resourceVersion must not be combined with continue.
                Some(c) => q.push(format!("continue={}", enc(c))),
                None if rv0 => q.push("resourceVersion=0".into()),
                None => {}
            }
            let url = if q.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", q.join("&"))
            };
            let req = http::Request::get(&url).body(Vec::new()).expect("request");
            // The body is read into one buffer and parsed from bytes: `request_text` would
            // collect it, copy it twice (`to_vec`, `String`) and validate it as UTF-8 first,
            // which for a 100 MB list was most of the plan's page faults and memmove.
            let body = self
                .client
                .request_stream(req)
                .await
                .map_err(|e| self.map_err(&format!("GET {url}"), e))?;
            let mut bytes = Vec::new();
            futures::io::AsyncReadExt::read_to_end(&mut Box::pin(body), &mut bytes)
                .await
                .map_err(|e| self.map_err(&format!("GET {url}"), kube::Error::ReadEvents(e)))?;
            let page: SList<T> = decode_list(bytes)
                .await
                .map_err(|e| self.map_err(&format!("GET {url}"), kube::Error::SerdeError(e)))?;
            out.extend(page.items);
            match page.metadata.cont.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Bodies above this size are decoded on a blocking thread.
const DECODE_OFF_RUNTIME_BYTES: usize = 256 * 1024;

/// Decodes a list body. A large list is tens of milliseconds of CPU: decoding it on an async
/// worker would stall everything else on that worker (SSH handshakes, etcd, the other lists)
/// for that long, so large bodies go to a blocking thread.
async fn decode_list<T: DeserializeOwned + Send + 'static>(
    bytes: Vec<u8>,
) -> Result<SList<T>, serde_json::Error> {
    if bytes.len() < DECODE_OFF_RUNTIME_BYTES {
        return serde_json::from_slice(&bytes);
    }
    match tokio::task::spawn_blocking(move || serde_json::from_slice(&bytes)).await {
        Ok(r) => r,
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            // Only at runtime shutdown.
            Err(e) => Err(serde::de::Error::custom(format!("decoding cancelled: {e}"))),
        },
    }
}
