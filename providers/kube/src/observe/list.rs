//! Reading objects into slim structs: GET one, or list a kind (unpaged with
//! `resourceVersion=0` unless a fresh read is asked for; paged as a consistent read with
//! `limit`/`continue`; label and field selectors), decoding large bodies off the async runtime.

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
        // A list restarted after its continue token expired (410 Gone) is read again from
        // the start; after this many restarts the list is reported as failed.
        const RESTARTS: u32 = 2;
        let mut restarts = 0;
        loop {
            match self
                .list_pages::<T>(path, label_selector, field_selector, rv0)
                .await
            {
                Err(ListErr::Expired(url, status)) if restarts < RESTARTS => {
                    restarts += 1;
                    tracing::debug!(
                        "GET {url}: continue token expired (410 {}), restarting the list ({restarts}/{RESTARTS})",
                        status.reason
                    );
                }
                Err(ListErr::Expired(url, status)) => {
                    return Err(KubeError::Api {
                        endpoint: self.endpoint.clone(),
                        call: format!("GET {url}"),
                        code: status.code,
                        reason: status.reason.clone(),
                        message: format!(
                            "the list's continue token expired {} times in a row (the API server \
                             compacted etcd while the pages were read); restarted {RESTARTS} times: \
                             {}. A larger page_size (fewer pages) or no page_size reads the list \
                             in less time",
                            RESTARTS + 1,
                            status.message.trim_end_matches('.')
                        ),
                    });
                }
                Err(ListErr::Other(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
    }

    /// One pass over the pages of a list.
    ///
    /// Without `page_size`: one request, `resourceVersion=0` when `rv0` (served from the API
    /// server's watch cache). With `page_size`: `limit=N` and no `resourceVersion` on the first
    /// page (a consistent, "most recent" read), then `continue` until the server stops sending
    /// it. `resourceVersion=0` is never combined with `limit`: the watch cache ignores `limit`
    /// for rv=0 (kubernetes `staging/src/k8s.io/apiserver/pkg/storage/cacher/cacher.go`,
    /// `computeListLimit`: "the limit is ignored for requests that set RV == 0"), so the whole
    /// list would come back in one response and `page_size` would do nothing.
    async fn list_pages<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
        rv0: bool,
    ) -> Result<Vec<T>, ListErr> {
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
            let paged = self.settings.page_size.filter(|n| *n > 0);
            if let Some(n) = paged {
                q.push(format!("limit={n}"));
            }
            match &cont {
                // resourceVersion must not be combined with continue.
                Some(c) => q.push(format!("continue={}", enc(c))),
                None if rv0 && paged.is_none() => q.push("resourceVersion=0".into()),
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
            let body = match self.client.request_stream(req).await {
                Ok(b) => b,
                Err(kube::Error::Api(s)) if s.code == 410 && cont.is_some() => {
                    return Err(ListErr::Expired(url, s));
                }
                Err(e) => return Err(ListErr::Other(self.map_err(&format!("GET {url}"), e))),
            };
            let bytes = read_body(body).await.map_err(|e| {
                ListErr::Other(self.map_err(&format!("GET {url}"), kube::Error::ReadEvents(e)))
            })?;
            let page: SList<T> = decode_list(bytes).await.map_err(|e| {
                ListErr::Other(self.map_err(&format!("GET {url}"), kube::Error::SerdeError(e)))
            })?;
            out.extend(page.items);
            match page.metadata.cont.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Reads a whole body into one buffer, chunk by chunk as the HTTP layer hands them over.
///
/// Not `AsyncReadExt::read_to_end`: it zero-fills the buffer's spare capacity before every
/// read that finds it full (futures-util `read_to_end_internal`), and each zero-fill of a
/// freshly grown buffer touches its new pages. On a 5,000-node plan (≈ 260 MB of list bodies)
/// that memset and its page faults were 35 % of all CPU samples (perf, issue 20);
/// `extend_from_slice` writes each page once.
async fn read_body(body: impl futures::io::AsyncBufRead) -> std::io::Result<Vec<u8>> {
    use futures::io::AsyncBufReadExt;
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    loop {
        let chunk = body.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(bytes);
        }
        let n = chunk.len();
        bytes.extend_from_slice(chunk);
        body.as_mut().consume(n);
    }
}

/// Why one pass over a list's pages stopped.
enum ListErr {
    /// A continuation page answered 410 Gone (`Expired`): the token outlived etcd's
    /// compaction (about five minutes); the list can be restarted from the first page.
    Expired(String, Box<kube::core::Status>),
    Other(KubeError),
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
