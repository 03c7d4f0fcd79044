//! Observing a host in one round trip: one POSIX `sh` script whose sections are separated by
//! marker lines carrying a per-run nonce, parsed here into [`HostFacts`].
//!
//! [`layout`] says where k3s is, [`script`] builds the script, [`parse`] reads its output into
//! the [`facts`]; this file runs it on one host or fans it out over a [`HostPool`].

mod facts;
mod layout;
mod parse;
mod script;

use std::collections::BTreeMap;

use futures::StreamExt;

use crate::error::HostError;
use crate::ssh::{HostPool, HostSession};

pub use facts::*;
pub use layout::*;
pub use parse::{K3sConfigError, env_assignment_value, parse_k3s_config, parse_observe_output};
pub(crate) use script::nonce;
pub use script::{observe_command, observe_script};

impl HostSession {
    /// Observes the host in one round trip (one exec of one `sh` script).
    pub async fn observe(&self, spec: &ObserveSpec) -> Result<HostFacts, HostError> {
        let marker = format!("@@k3splan-{}@@", nonce());
        let out = self
            .exec("observe script", &observe_command(spec, &marker), b"")
            .await?;
        if out.status != Some(0) && !out.stdout_str().contains(&format!("{marker} end")) {
            return Err(self.failed("observe script", &out));
        }
        parse_observe_output(self.name(), &out.stdout_str(), &marker, spec)
    }
}

impl HostPool {
    /// Observes one host: connect (or reuse) and run the observe script. Never fails:
    /// problems become [`HostObservation::Unreachable`]. A reused connection that turns out
    /// broken is replaced once.
    pub async fn observe(&self, name: &str, spec: &ObserveSpec) -> HostObservation {
        let attempt = || async {
            let s = self.session(name).await?;
            s.observe(spec).await
        };
        let mut result = attempt().await;
        if let Err(HostError::Channel { .. }) = result {
            // A reused connection broke (host rebooted, sshd restarted): reconnect once.
            self.invalidate(name).await;
            result = attempt().await;
        }
        match result {
            Ok(f) => HostObservation::Reachable(Box::new(f)),
            Err(e) => HostObservation::from_error(&e),
        }
    }

    /// Observes the given hosts, at most [`HostPool::parallelism`] at once, each with its own
    /// spec. Returns one observation per requested host.
    pub async fn observe_many(
        &self,
        requests: Vec<(String, ObserveSpec)>,
    ) -> BTreeMap<String, HostObservation> {
        futures::stream::iter(requests)
            .map(|(name, spec)| async move {
                let o = self.observe(&name, &spec).await;
                (name, o)
            })
            .buffer_unordered(self.parallelism())
            .collect()
            .await
    }

    /// Observes every host of the pool with the same spec.
    pub async fn observe_all(&self, spec: &ObserveSpec) -> BTreeMap<String, HostObservation> {
        let reqs = self
            .names()
            .map(|n| (n.to_string(), spec.clone()))
            .collect();
        self.observe_many(reqs).await
    }
}
