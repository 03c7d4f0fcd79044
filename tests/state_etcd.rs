//! The etcd state backend against a real etcd (TLS, client certificates) from
//! `k3splan-testkit-etcd`: round trips, compare-and-swap writes, refusal to overwrite what it
//! does not understand, and the lease-held lock (contention, force-unlock, a holder that is
//! SIGKILLed).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use k3splan::state::*;
use k3splan_etcd::etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use k3splan_testkit_etcd::EtcdCluster;

use k3splan_testkit_caps::etcd;

k3splan_testkit_caps::main! {
    state_round_trips_and_every_write_bumps_the_serial needs [etcd],
    a_corrupt_state_value_is_refused_and_left_untouched needs [etcd],
    another_lineage_is_never_overwritten needs [etcd],
    two_concurrent_writers_never_interleave needs [etcd],
    a_second_run_is_told_who_holds_the_lock_and_waits_up_to_its_timeout needs [etcd],
    force_unlock_needs_the_right_id_and_fences_the_old_holder needs [etcd],
    a_killed_holder_loses_the_lock_after_the_lease_ttl needs [etcd],
    lock_holder_helper_process ignore "helper process, started by a_killed_holder_loses_the_lock_after_the_lease_ttl",
    errors_name_the_endpoint_and_the_key needs [etcd],
    issue13_invalid_states_are_refused_and_left_untouched_in_etcd needs [etcd],
}

/// Short lease for tests (etcd's minimum with the harness's 100 ms heartbeat is 2 s).
const TEST_TTL: Duration = Duration::from_secs(2);

fn cluster() -> EtcdCluster {
    EtcdCluster::start(1).expect("etcd cluster starts")
}

fn config(c: &EtcdCluster) -> EtcdBackendConfig {
    let tls = c.client_tls();
    EtcdBackendConfig::new(c.client_urls())
        .with_tls(&tls.ca_file, &tls.cert_file, &tls.key_file)
        .with_lock_ttl(TEST_TTL)
        .with_timeout(Duration::from_secs(10))
}

fn backend(c: &EtcdCluster) -> EtcdBackend {
    EtcdBackend::new(config(c)).expect("backend builds")
}

/// Direct etcd access, to look at and tamper with the stored keys.
struct Raw {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Raw {
    fn new(c: &EtcdCluster) -> Raw {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tls = c.client_tls();
        let opts = ConnectOptions::new().with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(std::fs::read(&tls.ca_file).unwrap()))
                .identity(Identity::from_pem(
                    std::fs::read(&tls.cert_file).unwrap(),
                    std::fs::read(&tls.key_file).unwrap(),
                )),
        );
        let client = rt
            .block_on(Client::connect(c.client_urls(), Some(opts)))
            .unwrap();
        Raw { rt, client }
    }
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut c = self.client.clone();
        let r = self.rt.block_on(c.get(key, None)).unwrap();
        r.kvs().first().map(|kv| kv.value().to_vec())
    }
    fn put(&self, key: &str, value: &[u8]) {
        let mut c = self.client.clone();
        self.rt.block_on(c.put(key, value, None)).unwrap();
    }
}

fn state_round_trips_and_every_write_bumps_the_serial() {
    let c = cluster();
    let b = StateBackend::Etcd(backend(&c));
    let raw = Raw::new(&c);
    assert!(b.read().unwrap().is_none());
    assert!(
        b.location().contains("key k3splan/state"),
        "{}",
        b.location()
    );
    assert!(
        b.location().contains(&c.client_urls()[0]),
        "{}",
        b.location()
    );

    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let mut s = State::new("lineage-a");
    s.config_digest = Some("ab".repeat(32));
    b.write(&lock, &mut s).unwrap();
    assert_eq!(s.serial, 1);
    b.write(&lock, &mut s).unwrap();
    assert_eq!(s.serial, 2);
    assert_eq!(b.read().unwrap().unwrap(), s);

    // The stored value is the same JSON document as the local state file.
    let stored = raw.get("k3splan/state").expect("state key exists");
    let parsed = local::parse_state("raw", &stored).unwrap();
    assert_eq!(parsed, s);
    assert_eq!(
        String::from_utf8(stored).unwrap(),
        format!("{}\n", serde_json::to_string_pretty(&s).unwrap())
    );
    // The lock key holds the holder's details while the lock is held.
    let lock_json = raw.get("k3splan/lock").expect("lock key exists");
    let info: LockInfo = serde_json::from_slice(&lock_json).unwrap();
    assert_eq!(&info, lock.info());

    // Another prefix is another state.
    let other = EtcdBackend::new(config(&c).with_prefix("other/")).unwrap();
    assert!(other.read().unwrap().is_none());

    drop(lock);
    assert!(
        raw.get("k3splan/lock").is_none(),
        "dropping the guard released the lock"
    );
    assert_eq!(b.lock_holder().unwrap(), None);
}

fn a_corrupt_state_value_is_refused_and_left_untouched() {
    let c = cluster();
    let b = backend(&c);
    let raw = Raw::new(&c);
    raw.put("k3splan/state", b"{\"version\": 1, \"serial\": ");
    let err = b.read().unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("key k3splan/state"), "{msg}");
    assert!(msg.contains(&c.client_urls()[0]), "{msg}");
    assert!(msg.contains("left untouched"), "{msg}");

    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let err = b.write(&lock, &mut State::new("x")).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    assert_eq!(
        raw.get("k3splan/state").unwrap(),
        b"{\"version\": 1, \"serial\": "
    );

    // An unknown format version is refused the same way (issue 15 made the format version
    // 2: the first unknown one is 3).
    let mut v = serde_json::to_value(State::new("l")).unwrap();
    v["version"] = (STATE_VERSION + 1).into();
    raw.put("k3splan/state", v.to_string().as_bytes());
    let err = b.read().unwrap_err();
    assert!(
        err.to_string()
            .contains("state format version 3 is not supported"),
        "{err}"
    );
    assert!(b.write(&lock, &mut State::new("l")).is_err());
    assert_eq!(raw.get("k3splan/state").unwrap(), v.to_string().as_bytes());
}

fn another_lineage_is_never_overwritten() {
    let c = cluster();
    let b = backend(&c);
    let raw = Raw::new(&c);
    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let mut mine = State::new("cluster-a");
    b.write(&lock, &mut mine).unwrap();
    let before = raw.get("k3splan/state").unwrap();
    let mut other = State::new("cluster-b");
    other.serial = 1;
    let err = b.write(&lock, &mut other).unwrap_err();
    assert!(matches!(err, StateError::LineageMismatch { .. }), "{err}");
    assert!(err.to_string().contains("cluster-a"), "{err}");
    assert_eq!(raw.get("k3splan/state").unwrap(), before);
    assert_eq!(other.serial, 1, "the refused state was not bumped");
}

fn two_concurrent_writers_never_interleave() {
    let c = cluster();
    let b1 = backend(&c);
    let b2 = backend(&c);
    let lock = b1
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let mut s = State::new("l");
    b1.write(&lock, &mut s).unwrap();
    let rounds = 12;
    for round in 0..rounds {
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<Result<u64, StateError>> = std::thread::scope(|scope| {
            let hs: Vec<_> = [&b1, &b2]
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    let barrier = barrier.clone();
                    let lock = &lock;
                    let mut mine = s.clone();
                    mine.managed.files.insert(
                        "last-writer".into(),
                        ManagedFile {
                            sha256: format!("writer {i} round {round}"),
                        },
                    );
                    scope.spawn(move || {
                        barrier.wait();
                        b.write(lock, &mut mine).map(|_| mine.serial)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(
            ok.len(),
            1,
            "round {round}: exactly one writer wins: {results:?}"
        );
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, StateError::SerialConflict { expected, found, .. }
                        if *expected == s.serial && *found == s.serial + 1),
                    "round {round}: the loser sees the winner's serial: {e}"
                );
            }
        }
        s = b1.read().unwrap().unwrap();
        // The stored document is the winner's.
        let winner = results.iter().position(|r| r.is_ok()).unwrap();
        assert_eq!(
            s.managed.files["last-writer"].sha256,
            format!("writer {winner} round {round}")
        );
    }
    assert_eq!(s.serial, 1 + rounds);
}

fn a_second_run_is_told_who_holds_the_lock_and_waits_up_to_its_timeout() {
    let c = cluster();
    let b1 = backend(&c);
    let b2 = backend(&c);
    let first = b1
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let t0 = Instant::now();
    let err = b2
        .lock(LockInfo::for_operation("plan"), Duration::from_millis(1500))
        .unwrap_err();
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "waited for the lock timeout"
    );
    assert!(matches!(err, StateError::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("ID {}", first.info.id)), "{msg}");
    assert!(msg.contains("operation apply"), "{msg}");
    assert!(msg.contains(&first.info.who), "{msg}");
    assert!(msg.contains(&first.info.created), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert!(msg.contains("key k3splan/lock"), "{msg}");
    assert_eq!(b2.lock_holder().unwrap().unwrap(), first.info);

    // The lock outlives several TTLs while held (the lease is kept alive).
    std::thread::sleep(TEST_TTL * 2);
    assert_eq!(b2.lock_holder().unwrap().unwrap().id, first.info.id);
    assert!(!first.is_lost());

    // A waiter gets the lock as soon as the holder releases it, within its timeout.
    let b3 = b2.clone();
    let waiter = std::thread::spawn(move || {
        b3.lock(LockInfo::for_operation("apply"), Duration::from_secs(20))
            .map(|l| l.info.id.clone())
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(first);
    let id = waiter.join().unwrap().expect("waiter gets the lock");
    // The waiter's guard was dropped with the thread: the lock is free again.
    assert!(b1.lock_holder().unwrap().is_none(), "{id} released");
}

fn force_unlock_needs_the_right_id_and_fences_the_old_holder() {
    let c = cluster();
    let b = backend(&c);
    let raw = Raw::new(&c);
    let err = b.force_unlock("0000").unwrap_err();
    assert!(matches!(err, StateError::NotLocked { .. }), "{err}");

    let old = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let mut s = State::new("l");
    b.write(&old, &mut s).unwrap();

    let err = b.force_unlock("0000").unwrap_err();
    assert!(matches!(err, StateError::LockIdMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&old.info.id), "{err}");
    assert_eq!(b.lock_holder().unwrap().unwrap().id, old.info.id);

    b.force_unlock(&old.info.id).unwrap();
    assert!(b.lock_holder().unwrap().is_none());
    let err = b.force_unlock(&old.info.id).unwrap_err();
    assert!(matches!(err, StateError::NotLocked { .. }), "{err}");

    // The old holder may still run: its writes are refused and change nothing.
    let before = raw.get("k3splan/state").unwrap();
    let err = b.write(&old, &mut s.clone()).unwrap_err();
    assert!(matches!(err, StateError::NotLocked { .. }), "{err}");
    assert_eq!(raw.get("k3splan/state").unwrap(), before);

    // A new run takes the lock; the old holder's writes are still refused, naming it.
    let new = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let err = b.write(&old, &mut s.clone()).unwrap_err();
    assert!(
        matches!(&err, StateError::Locked { holder, .. } if holder.id == new.info.id),
        "{err}"
    );
    b.write(&new, &mut s).unwrap();
    assert_eq!(s.serial, 2);
    // Dropping the old guard revokes a lease that no longer holds anything.
    drop(old);
    assert_eq!(b.lock_holder().unwrap().unwrap().id, new.info.id);
}

const HELPER_ENV: &str = "K3SPLAN_TEST_ETCD_LOCK_HELPER";

/// Kills the helper process even when the test panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn a_killed_holder_loses_the_lock_after_the_lease_ttl() {
    let c = cluster();
    let tls = c.client_tls();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_holder_helper_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            HELPER_ENV,
            serde_json::json!({
                "endpoints": c.client_urls(),
                "ca": tls.ca_file, "cert": tls.cert_file, "key": tls.key_file,
            })
            .to_string(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let pid = child.0.id();
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let id = loop {
        let line = lines
            .next()
            .expect("helper prints LOCKED before exiting")
            .unwrap();
        // libtest may have printed `test NAME ... ` on the same line.
        if let Some((_, id)) = line.split_once("LOCKED ") {
            break id.trim().to_string();
        }
    };

    let b = backend(&c);
    let holder = b.lock_holder().unwrap().expect("the helper holds the lock");
    assert_eq!(holder.id, id);
    assert_eq!(holder.pid, pid);
    // Alive, the helper keeps its lease alive past the TTL.
    std::thread::sleep(TEST_TTL * 2);
    assert_eq!(b.lock_holder().unwrap().unwrap().id, id);

    // SIGKILL: no destructor runs, nothing revokes the lease; etcd expires it.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let killed = Instant::now();
    assert_eq!(
        b.lock_holder().unwrap().map(|h| h.id),
        Some(id.clone()),
        "right after the kill the lease is still running"
    );
    let mine = b
        .lock(LockInfo::for_operation("apply"), Duration::from_secs(25))
        .expect("the dead holder's lock expires with its lease");
    eprintln!(
        "the lock of the SIGKILLed holder was taken {:?} after the kill (lease TTL {TEST_TTL:?})",
        killed.elapsed()
    );
    assert_ne!(mine.info.id, id);
    assert_eq!(b.lock_holder().unwrap().unwrap().id, mine.info.id);
}

/// Not a test: the lock holder that `a_killed_holder_loses_the_lock_after_the_lease_ttl`
/// starts in a child process and SIGKILLs.
fn lock_holder_helper_process() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let endpoints: Vec<String> = serde_json::from_value(v["endpoints"].clone()).unwrap();
    let b = EtcdBackend::new(
        EtcdBackendConfig::new(endpoints)
            .with_tls(
                v["ca"].as_str().unwrap(),
                v["cert"].as_str().unwrap(),
                v["key"].as_str().unwrap(),
            )
            .with_lock_ttl(TEST_TTL),
    )
    .unwrap();
    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    // Straight to the stdout pipe (libtest may capture `println!`).
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nLOCKED {}", lock.info.id).unwrap();
    out.flush().unwrap();
    drop(out);
    std::thread::sleep(Duration::from_secs(120));
    drop(lock);
}

fn errors_name_the_endpoint_and_the_key() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let b = EtcdBackend::new(
        EtcdBackendConfig::new([endpoint.clone()])
            .with_prefix("team-a/")
            .with_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let msg = b.read().unwrap_err().to_string();
    assert!(msg.contains(&endpoint), "{msg}");
    assert!(msg.contains("key team-a/state"), "{msg}");
    let msg = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&endpoint), "{msg}");
    assert!(msg.contains("key team-a/lock"), "{msg}");

    let err = EtcdBackend::new(EtcdBackendConfig::new([endpoint]).with_tls(
        "/nonexistent/ca.crt",
        "c",
        "k",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
}

fn issue13_invalid_states_are_refused_and_left_untouched_in_etcd() {
    let c = cluster();
    let b = backend(&c);
    let raw = Raw::new(&c);
    let lock = b
        .lock(LockInfo::for_operation("apply"), Duration::ZERO)
        .unwrap();
    let edits: [(&str, serde_json::Value, &str); 3] = [
        ("serial", u64::MAX.into(), "serial 18446744073709551615"),
        ("lineage", "".into(), "lineage is empty"),
        (
            "k3splan_version",
            "99.0.0".into(),
            "written by k3splan 99.0.0",
        ),
    ];
    for (field, value, expect) in edits {
        let mut s = State::new("l");
        s.serial = 3;
        let mut v = serde_json::to_value(&s).unwrap();
        v[field] = value;
        let bytes = v.to_string();
        raw.put("k3splan/state", bytes.as_bytes());
        let err = b.read().unwrap_err().to_string();
        assert!(
            err.contains(expect) && err.contains("left untouched"),
            "{err}"
        );
        let err = b.write(&lock, &mut s).unwrap_err().to_string();
        assert!(err.contains(expect), "{err}");
        assert_eq!(raw.get("k3splan/state").unwrap(), bytes.as_bytes());
    }
}
