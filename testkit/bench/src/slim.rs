//! Prototype for the fix proposed in docs/performance.md: decoding a big list response
//! while it streams in, instead of buffering it. The slim pod struct mirrors
//! `k3splan_kube::observe::SPod` (private there): the fields k3splan's planner uses.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use futures::AsyncReadExt;
use serde::Deserialize;

/// A list response: only `items` is kept.
#[derive(Deserialize)]
pub struct SList<T> {
    /// The objects.
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

/// The pod fields the planner uses.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SPod {
    /// Name, namespace, owners.
    pub metadata: SMeta,
    /// Node and volumes.
    pub spec: SPodSpec,
    /// Phase and conditions.
    pub status: SPodStatus,
}

/// Object metadata (slim).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SMeta {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Owners.
    pub owner_references: Vec<SOwner>,
}

/// An owner reference.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SOwner {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Controller flag.
    pub controller: Option<bool>,
}

/// Pod spec (slim).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SPodSpec {
    /// Node.
    pub node_name: Option<String>,
    /// Volumes.
    pub volumes: Vec<SVolume>,
}

/// A volume.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SVolume {
    /// The PVC source.
    pub persistent_volume_claim: Option<SClaim>,
}

/// PVC source.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SClaim {
    /// Claim name.
    pub claim_name: String,
}

/// Pod status (slim).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SPodStatus {
    /// Phase.
    pub phase: String,
}

/// A `Read` over chunks sent by the async side: the parser runs on a blocking thread while
/// the body is still arriving, and never more than the channel's chunks are buffered.
struct ChunkReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Today's way (what `kube::Client::request` does): the whole body as one string, then
/// `serde_json::from_str`.
pub async fn list_buffered(client: &kube::Client, path: &str) -> Vec<SPod> {
    let req = http::Request::get(path).body(Vec::new()).expect("request");
    let l: SList<SPod> = client.request(req).await.expect("list");
    l.items
}

/// The proposed way: the body streams into `serde_json::from_reader` on a blocking thread
/// (bounded channel of 64 KB chunks), so the JSON text is never held whole.
pub async fn list_streamed(client: &kube::Client, path: &str) -> Vec<SPod> {
    let req = http::Request::get(path).body(Vec::new()).expect("request");
    let mut body = Box::pin(client.request_stream(req).await.expect("list"));
    let (tx, rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = sync_channel(16);
    let parser = tokio::task::spawn_blocking(move || {
        let r = std::io::BufReader::with_capacity(
            1 << 16,
            ChunkReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            },
        );
        let l: SList<SPod> = serde_json::from_reader(r).expect("decode");
        l.items
    });
    loop {
        let mut buf = vec![0u8; 1 << 16];
        let n = body.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        buf.truncate(n);
        // Blocking send from async: bounded, the parser drains it; run it off the runtime.
        let tx2 = tx.clone();
        tokio::task::block_in_place(move || tx2.send(buf)).expect("parser alive");
    }
    drop(tx);
    parser.await.expect("parser")
}
