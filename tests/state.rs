//! The state file: golden round-trips, refusal to overwrite what it does not understand,
//! atomic private writes, and the lock.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use k3splan::state::*;

k3splan_testkit_caps::main! {
    state_round_trips_through_its_golden_file,
    writes_are_private_atomic_and_bump_the_serial,
    a_corrupt_state_is_refused_and_left_untouched,
    an_unknown_version_is_refused,
    another_lineage_is_never_overwritten,
    a_stale_serial_is_a_conflict,
    a_second_run_is_told_who_holds_the_lock,
    a_waiting_run_gets_the_lock_when_it_is_released_within_the_timeout,
    issue13_a_serial_at_u64_max_is_refused_not_wrapped,
    issue13_an_empty_lineage_is_refused,
    issue13_a_state_of_a_newer_k3splan_is_refused,
    issue15_a_version_1_state_still_loads_and_is_written_as_version_2,
    issue13_the_lock_holder_is_named_from_passwd_when_user_is_unset needs [passwd_entry],
    lock_who_helper_process ignore "helper process",
}

fn sample() -> State {
    let mut s = State::new("5b1e0c8f2a9d4e71");
    s.serial = 7;
    s.k3splan_version = env!("CARGO_PKG_VERSION").into();
    s.config_digest =
        Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into());
    s.managed.nodes = BTreeMap::from([(
        "lzx-ha-env-2".into(),
        ManagedNode {
            address: "192.168.0.244".into(),
            roles: vec!["server".into()],
            ssh_port: Some(22),
        },
    )]);
    s.managed.etcd_members = BTreeMap::from([(
        "lzx-ha-env-2".into(),
        ManagedMember {
            id: "8e9e05c52164694d".into(),
            peer_url: "https://192.168.0.244:2380".into(),
        },
    )]);
    s.managed.pvcs = BTreeMap::from([(
        "onecloud-minio/export-minio-1".into(),
        ManagedPvc {
            uid: "0f1c2d3e-1111-2222-3333-444455556666".into(),
            node: "lzx-test-add-node".into(),
        },
    )]);
    s.managed.files = BTreeMap::from([(
        "lzx-ha-env-2:/var/lib/rancher/k3s/agent/pod-manifests/keepalived.yaml".into(),
        ManagedFile {
            sha256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(),
        },
    )]);
    s.journal = Some(Journal {
        plan_id: "plan-3f2a".into(),
        started_at: "2026-11-22T01:00:00Z".into(),
        finished_at: None,
        steps: vec![
            JournalStep {
                address: "etcd_snapshot".into(),
                description: "save an etcd snapshot".into(),
                status: StepStatus::Done,
                started_at: Some("2026-11-22T01:00:00Z".into()),
                finished_at: Some("2026-11-22T01:00:01Z".into()),
                error: None,
            },
            JournalStep {
                address: "etcd_member.lzx-ha-env".into(),
                description: "remove etcd member 2f0f9ad4d3d5c1b0".into(),
                status: StepStatus::Started,
                started_at: Some("2026-11-22T01:00:02Z".into()),
                finished_at: None,
                error: None,
            },
        ],
        replace: vec![],
    });
    s.last_snapshot = Some(SnapshotRecord {
        path: "/var/lib/rancher/k3s/server/db/snapshots/k3splan-1795300000".into(),
        size: 1_990_688,
        sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        taken_at: "2026-11-22T01:00:01Z".into(),
    });
    s.durations_ms = BTreeMap::from([
        ("drain".into(), vec![41_200, 38_900, 44_100]),
        ("wait_upgraded".into(), vec![172_400]),
    ]);
    s
}

fn state_round_trips_through_its_golden_file() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/state/full.json");
    let mut text = serde_json::to_string_pretty(&sample()).unwrap();
    text.push('\n');
    common::golden::assert_matches(&golden, &text);
    let expected = std::fs::read_to_string(&golden).unwrap();
    let parsed = local::parse_state("full.json", expected.as_bytes()).unwrap();
    assert_eq!(parsed, sample());
    assert_eq!(
        parsed.addresses(),
        vec![
            "etcd_member.lzx-ha-env-2",
            "host_file.lzx-ha-env-2:/var/lib/rancher/k3s/agent/pod-manifests/keepalived.yaml",
            "node.lzx-ha-env-2",
            "pvc.onecloud-minio/export-minio-1",
        ]
    );
    assert_eq!(
        parsed.show("pvc.onecloud-minio/export-minio-1").unwrap()["node"],
        "lzx-test-add-node"
    );
}

fn backend() -> (tempfile::TempDir, LocalBackend) {
    let dir = tempfile::tempdir().unwrap();
    let b = LocalBackend::new(dir.path().join("state/k3splan.state.json"));
    (dir, b)
}

fn writes_are_private_atomic_and_bump_the_serial() {
    let (_d, b) = backend();
    assert!(b.read().unwrap().is_none());
    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let mut s = State::new("l1");
    b.write(&lock, &mut s).unwrap();
    assert_eq!(s.serial, 1);
    b.write(&lock, &mut s).unwrap();
    assert_eq!(s.serial, 2);
    assert_eq!(b.read().unwrap().unwrap(), s);
    let mode = std::fs::metadata(b.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(b.path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".k3splan-state-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn a_corrupt_state_is_refused_and_left_untouched() {
    let (_d, b) = backend();
    std::fs::create_dir_all(b.path().parent().unwrap()).unwrap();
    std::fs::write(b.path(), b"{\"version\": 1, \"serial\": ").unwrap();
    let err = b.read().unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("left untouched"));
    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    assert!(b.write(&lock, &mut State::new("x")).is_err());
    assert_eq!(
        std::fs::read(b.path()).unwrap(),
        b"{\"version\": 1, \"serial\": "
    );
}

fn an_unknown_version_is_refused() {
    let (_d, b) = backend();
    std::fs::create_dir_all(b.path().parent().unwrap()).unwrap();
    let mut v = serde_json::to_value(State::new("l")).unwrap();
    // Issue 15 made the format version 2: the first unknown version is 3.
    v["version"] = (STATE_VERSION + 1).into();
    std::fs::write(b.path(), v.to_string()).unwrap();
    let err = b.read().unwrap_err();
    assert!(
        err.to_string().contains(
            "state format version 3 is not supported (this k3splan reads versions 1 to 2)"
        ),
        "{err}"
    );
}

fn another_lineage_is_never_overwritten() {
    let (_d, b) = backend();
    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let mut mine = State::new("cluster-a");
    b.write(&lock, &mut mine).unwrap();
    let before = std::fs::read(b.path()).unwrap();
    let mut other = State::new("cluster-b");
    other.serial = 1;
    let err = b.write(&lock, &mut other).unwrap_err();
    assert!(matches!(err, StateError::LineageMismatch { .. }), "{err}");
    assert_eq!(std::fs::read(b.path()).unwrap(), before);
}

fn a_stale_serial_is_a_conflict() {
    let (_d, b) = backend();
    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let mut s = State::new("l");
    b.write(&lock, &mut s).unwrap();
    let mut stale = s.clone();
    b.write(&lock, &mut s).unwrap();
    let err = b.write(&lock, &mut stale).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::SerialConflict {
                found: 2,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );
}

fn a_second_run_is_told_who_holds_the_lock() {
    let (_d, b) = backend();
    let first = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let t0 = Instant::now();
    let err = b
        .lock(LockInfo::for_operation("plan"), Duration::from_millis(300))
        .unwrap_err();
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "waited for the lock timeout"
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("ID {}", first.info.id)), "{msg}");
    assert!(msg.contains("operation apply"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert_eq!(b.lock_holder().unwrap().unwrap().id, first.info.id);

    let err = b.force_unlock(&first.info.id).unwrap_err();
    assert!(matches!(err, StateError::HolderAlive { .. }), "{err}");
    let err = b.force_unlock("0000").unwrap_err();
    assert!(matches!(err, StateError::LockIdMismatch { .. }), "{err}");

    drop(first);
    assert!(b.lock_holder().unwrap().is_none());
    let second = b
        .lock(LockInfo::for_operation("plan"), Duration::ZERO)
        .unwrap();
    assert_eq!(second.info.operation, "plan");
}

fn a_waiting_run_gets_the_lock_when_it_is_released_within_the_timeout() {
    let (_d, b) = backend();
    let first = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || {
        b2.lock(LockInfo::for_operation("apply"), Duration::from_secs(10))
            .map(|l| l.info.id.clone())
    });
    std::thread::sleep(Duration::from_millis(200));
    drop(first);
    assert!(waiter.join().unwrap().is_ok());
}

/// A state document as stored, with `edit` applied to its JSON.
fn stored_state(b: &LocalBackend, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    std::fs::create_dir_all(b.path().parent().unwrap()).unwrap();
    let mut s = State::new("l");
    s.serial = 3;
    let mut v = serde_json::to_value(&s).unwrap();
    edit(&mut v);
    let bytes = serde_json::to_vec_pretty(&v).unwrap();
    std::fs::write(b.path(), &bytes).unwrap();
    bytes
}

/// Reading and writing over the stored state both fail with `expect`, and the file keeps
/// its bytes.
fn refused_untouched(b: &LocalBackend, bytes: &[u8], expect: &str) {
    let err = b.read().unwrap_err().to_string();
    assert!(
        err.contains(expect) && err.contains("left untouched"),
        "{err}"
    );
    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let mut s = State::new("l");
    s.serial = 3;
    let err = b.write(&lock, &mut s).unwrap_err().to_string();
    assert!(err.contains(expect), "{err}");
    assert_eq!(std::fs::read(b.path()).unwrap(), bytes, "the file changed");
}

fn issue13_a_serial_at_u64_max_is_refused_not_wrapped() {
    let (_d, b) = backend();
    let bytes = stored_state(&b, |v| v["serial"] = u64::MAX.into());
    refused_untouched(&b, &bytes, "serial 18446744073709551615");
    // And the bump itself is checked.
    let mut s = State::new("l");
    s.serial = u64::MAX;
    assert!(s.next_serial("x").is_err());
}

fn issue13_an_empty_lineage_is_refused() {
    let (_d, b) = backend();
    let bytes = stored_state(&b, |v| v["lineage"] = "".into());
    refused_untouched(&b, &bytes, "lineage is empty");
}

fn issue13_a_state_of_a_newer_k3splan_is_refused() {
    let (_d, b) = backend();
    let bytes = stored_state(&b, |v| v["k3splan_version"] = "99.0.0".into());
    refused_untouched(
        &b,
        &bytes,
        "written by k3splan 99.0.0, newer than this k3splan",
    );
    let bytes = stored_state(&b, |v| v["version"] = (STATE_VERSION + 1).into());
    refused_untouched(&b, &bytes, "written by a newer k3splan");
}

/// Issue 15: the format gained `durations_ms` and became version 2. A version 1 state (the
/// golden file of version 1, kept as it was) loads, with no durations, and the next write
/// makes it version 2 with nothing else lost.
fn issue15_a_version_1_state_still_loads_and_is_written_as_version_2() {
    let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/state/v1.json");
    let bytes = std::fs::read(&v1).unwrap();
    let parsed = local::parse_state("v1.json", &bytes).unwrap();
    assert_eq!(parsed.version, 1);
    assert!(parsed.durations_ms.is_empty());
    let mut want = sample();
    want.version = 1;
    want.durations_ms.clear();
    assert_eq!(parsed, want);

    let (_d, b) = backend();
    std::fs::create_dir_all(b.path().parent().unwrap()).unwrap();
    std::fs::write(b.path(), &bytes).unwrap();
    let mut s = b.read().unwrap().unwrap();
    let lock = b
        .lock(LockInfo::for_operation("test"), Duration::ZERO)
        .unwrap();
    b.write(&lock, &mut s).unwrap();
    let written = b.read().unwrap().unwrap();
    assert_eq!(written.version, STATE_VERSION);
    assert_eq!(STATE_VERSION, 2);
    assert_eq!(written.managed, want.managed);
    assert_eq!(written.journal, want.journal);
}

const WHO_HELPER_ENV: &str = "K3SPLAN_TEST_LOCK_WHO_HELPER";

/// The user name of this process's uid, from /etc/passwd (the expectation, computed apart).
fn passwd_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
        })
}

/// The probe of `issue13_the_lock_holder_is_named_from_passwd_when_user_is_unset`.
fn passwd_entry() -> Option<String> {
    passwd_name()
        .is_none()
        .then(|| "this uid has no /etc/passwd entry (an NSS-only user): nothing to compare".into())
}

fn issue13_the_lock_holder_is_named_from_passwd_when_user_is_unset() {
    let name = passwd_name().expect("checked by the passwd_entry probe");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_who_helper_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env(WHO_HELPER_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let who = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WHO "))
        .unwrap_or_else(|| panic!("helper printed no WHO line: {stdout}"));
    assert!(who.starts_with(&format!("{name}@")), "{who}");
}

/// Not a test: prints `LockInfo::for_operation(..).who` for
/// `issue13_the_lock_holder_is_named_from_passwd_when_user_is_unset`, which runs it with
/// USER and LOGNAME unset.
fn lock_who_helper_process() {
    if std::env::var(WHO_HELPER_ENV).is_err() {
        return;
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nWHO {}", LockInfo::for_operation("apply").who).unwrap();
}
