//! Custom resources served only once their `CustomResourceDefinition` exists, as on a real
//! API server: before the CRD is created (or after it is deleted) every request for the kind
//! is a 404 (`the server could not find the requested resource`), and deleting the CRD
//! deletes its objects (apiextensions-apiserver's `customresourcecleanup.apiextensions.k8s.io`
//! finalizer). The CRD is matched by its name, `<plural>.<group>`, which the real server
//! requires of every CRD.
//!
//! The kinds: system-upgrade-controller's `Plan` (rancher/system-upgrade-controller
//! `pkg/apis/upgrade.cattle.io/v1/types.go`: group `upgrade.cattle.io`, version `v1`,
//! namespaced, `spec` + `status`). The k3s add-on kinds (`helm.cattle.io`) are always served:
//! k3s creates their CRDs at start.

use super::*;

/// API groups whose kinds exist only through a CRD.
pub const CRD_GROUPS: &[&str] = &["upgrade.cattle.io"];

/// The name of the CRD that makes `t` served (`plans.upgrade.cattle.io`), `None` for a
/// built-in kind.
pub fn crd_name(t: &ResourceType) -> Option<String> {
    CRD_GROUPS
        .contains(&t.group)
        .then(|| format!("{}.{}", t.plural, t.group))
}

impl Store {
    /// Whether the API serves `t` now: built in, or its CRD exists.
    pub fn serves(&self, t: Ty) -> bool {
        match crd_name(&TYPES[t]) {
            None => true,
            Some(name) => self.get(ty("CustomResourceDefinition"), "", &name).is_ok(),
        }
    }

    /// Whether the API serves any kind of `group`/`version`.
    pub fn serves_group(&self, group: &str, version: &str) -> bool {
        !CRD_GROUPS.contains(&group)
            || TYPES
                .iter()
                .enumerate()
                .any(|(t, tp)| tp.group == group && tp.version == version && self.serves(t))
    }

    /// After the CRD `crd` was deleted: removes every object of its kind.
    pub fn purge_custom_resources(&mut self, crd: &str) {
        for (t, tp) in TYPES.iter().enumerate() {
            if crd_name(tp).as_deref() == Some(crd) {
                self.objects[t].clear();
            }
        }
    }
}
