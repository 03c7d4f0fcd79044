//! Issue 13: `state show ADDRESS` prints one object as JSON, and nothing else.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k3splan::state::*;

#[test]
fn issue13_state_show_prints_pure_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let b = LocalBackend::new(&path);
    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let mut s = State::new("l");
    s.managed.nodes = BTreeMap::from([(
        "a".into(),
        ManagedNode {
            address: "10.0.0.1".into(),
            roles: vec!["server".into()],
            ssh_port: None,
        },
    )]);
    b.write(&lock, &mut s).unwrap();
    drop(lock);
    let o = common::k3splan()
        .args(["state", "show", "node.a", "--state", path.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    assert_eq!(v["address"], "10.0.0.1");
}
