//! The etcd provider against real etcd clusters (TLS, loopback), no mocks.

mod common;

use std::time::{Duration, Instant};

use common::{WAIT, observe_until, provider, start_cluster, tls_of, write_keys};
use k3splan_etcd::{
    EndpointErrorKind, EtcdConfig, EtcdError, EtcdProvider, JoinFailure, LeaderMove, MemberHealth,
    MemberId, Promotion, Removal,
};
use k3splan_testkit_etcd::{ClusterState, Pki};
use sha2::Digest;

const TIMEOUT: Duration = Duration::from_secs(2);

async fn observe_healthy_three_member_cluster() {
    let c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], common_timeout());
    let o = observe_until(&p, "leader known", |o| o.health.leader.is_some()).await;

    assert_eq!(o.members.len(), 3, "{o:#?}");
    assert_eq!(o.health.voters, 3);
    assert_eq!(o.health.learners, 0);
    assert_eq!(o.health.healthy_voters, 3);
    assert_eq!(o.health.quorum_size, 2);
    assert!(o.health.quorum);
    assert!(o.health.unhealthy_members.is_empty());
    assert!(o.health.foreign_endpoints.is_empty());
    let leader = o.health.leader.unwrap();
    assert!(o.member(leader).is_some(), "leader is a listed member");
    for (i, m) in c.members().iter().enumerate() {
        let info = o
            .members
            .iter()
            .find(|x| x.name == m.name())
            .unwrap_or_else(|| panic!("member {} listed", m.name()));
        assert_eq!(info.peer_urls, vec![m.peer_url()]);
        assert_eq!(info.client_urls, vec![m.client_url()]);
        assert!(info.started && !info.is_learner);
        assert!(info.is_healthy(), "{info:?}");
        let ep = &o.endpoints[i];
        assert_eq!(ep.endpoint, m.client_url());
        let s = ep.state.as_ref().expect("reachable");
        assert_eq!(s.member_id, info.id);
        assert_eq!(Some(s.cluster_id), o.cluster_id);
        assert_eq!(s.leader, Some(leader));
        assert!(s.raft_term >= 1 && s.raft_index > 0);
        assert!(s.db_size > 0);
        assert!(s.version.starts_with("3."), "version {}", s.version);
        assert!(s.alarms.is_empty());
        assert!(ep.error.is_none());
        // Matching by address works (rule 11).
        assert!(o.member_by_address("127.0.0.1").is_some());
    }
    // The JSON form carries member IDs as etcdctl-style hex.
    let json = serde_json::to_value(&o).unwrap();
    let id = json["members"][0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 16);
    assert_eq!(id.parse::<MemberId>().unwrap(), o.members[0].id);
}

fn common_timeout() -> Duration {
    Duration::from_secs(5)
}

async fn observe_with_leader_killed_holds_quorum_and_lists_dead_member() {
    let mut c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], TIMEOUT);
    let o = observe_until(&p, "leader known", |o| o.health.leader.is_some()).await;
    let leader = o.health.leader.unwrap();
    let dead = o
        .endpoints
        .iter()
        .position(|e| e.state.as_ref().unwrap().member_id == leader)
        .unwrap();
    c.kill(dead);

    let o = observe_until(&p, "new leader after killing the leader", |o| {
        o.health.leader.is_some_and(|l| l != leader)
    })
    .await;
    assert_eq!(o.members.len(), 3, "dead member still listed: {o:#?}");
    assert_eq!(o.health.voters, 3);
    assert_eq!(o.health.healthy_voters, 2);
    assert!(o.health.quorum, "2 of 3 hold quorum");
    assert_eq!(o.health.unhealthy_members, vec![leader]);
    let m = o.member(leader).unwrap();
    match &m.health {
        MemberHealth::Unreachable { error } => {
            assert_eq!(error.endpoint, c.member(dead).client_url());
            assert_eq!(error.kind, EndpointErrorKind::Unreachable, "{error}");
            assert!(error.to_string().contains(&c.member(dead).client_url()));
        }
        other => panic!("dead member should be unreachable, is {other:?}"),
    }
    assert!(!o.endpoints[dead].reachable());
}

/// With k3s's etcd timings (election timeout 5 s), the followers of a dead leader answer
/// "no leader" for 5-10 s. That is an election, not a lost quorum: an observation taken at
/// once waits for it and reports the new leader, 2 of 3 healthy, quorum held — a plan in
/// that window must not be refused as "quorum already lost" (nor a recovery accepted).
async fn an_observation_during_an_election_waits_for_the_new_leader() {
    let mut c = tokio::task::spawn_blocking(|| {
        k3splan_testkit_etcd::EtcdCluster::start_with(k3splan_testkit_etcd::ClusterOptions {
            timing_ms: (500, 5000),
            ..Default::default()
        })
    })
    .await
    .expect("join")
    .expect("etcd cluster with k3s's timings starts");
    let p = provider(&c, &[0, 1, 2], TIMEOUT);
    let o = observe_until(&p, "leader known", |o| o.health.leader.is_some()).await;
    let leader = o.health.leader.unwrap();
    let dead = o
        .endpoints
        .iter()
        .position(|e| e.state.as_ref().unwrap().member_id == leader)
        .unwrap();
    c.kill(dead);
    let o = p.observe().await;
    assert!(
        o.health.quorum && o.health.leader.is_some_and(|l| l != leader),
        "an election is not a lost quorum: {:#?}",
        o.health
    );
    assert_eq!(o.health.healthy_voters, 2);
}

async fn observe_with_member_frozen_answers_within_timeout() {
    let mut c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], TIMEOUT);
    observe_until(&p, "leader known", |o| o.health.leader.is_some()).await;
    c.freeze(1);
    let start = Instant::now();
    let o = p.observe().await;
    let took = start.elapsed();
    // Generous bound (loaded CI); the tight figure is measured by the benchmark.
    assert!(
        took < TIMEOUT + Duration::from_secs(3),
        "observe took {took:?} with one frozen endpoint"
    );
    let frozen = &o.endpoints[1];
    let err = frozen.error.as_ref().expect("frozen endpoint has an error");
    assert_eq!(err.kind, EndpointErrorKind::Timeout, "{err}");
    assert!(o.endpoints[0].reachable() && o.endpoints[2].reachable());
    assert_eq!(o.members.len(), 3);
    let fid = o
        .members
        .iter()
        .find(|m| m.client_urls == vec![c.member(1).client_url()])
        .unwrap();
    assert!(matches!(fid.health, MemberHealth::Unreachable { .. }));
    c.thaw(1);
}

async fn observe_with_two_members_killed_reports_quorum_lost() {
    let mut c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], TIMEOUT);
    observe_until(&p, "leader known", |o| o.health.leader.is_some()).await;
    c.kill(0);
    c.kill(1);
    let start = Instant::now();
    let o = p.observe().await;
    assert!(start.elapsed() < TIMEOUT + Duration::from_secs(3));
    assert!(!o.health.quorum, "{o:#?}");
    assert!(o.health.healthy_voters <= 1);
    assert_eq!(o.health.voters, 3, "all three still listed by the survivor");
    assert_eq!(o.members.len(), 3);
    let unreachable = o
        .members
        .iter()
        .filter(|m| matches!(m.health, MemberHealth::Unreachable { .. }))
        .count();
    assert_eq!(unreachable, 2);
    // After an election timeout the survivor knows no leader either.
    let o = observe_until(&p, "survivor without leader", |o| o.health.leader.is_none()).await;
    assert!(!o.health.quorum);
    assert_eq!(o.health.healthy_voters, 0);
}

async fn replace_dead_member_full_cycle() {
    let mut c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], TIMEOUT);
    write_keys(&p, "before", 50).await;
    observe_until(&p, "leader known", |o| o.health.leader.is_some()).await;
    c.kill(2);
    let o = observe_until(&p, "quorum with 2/3", |o| {
        o.health.quorum && o.health.healthy_voters == 2
    })
    .await;
    let dead = o
        .members
        .iter()
        .find(|m| matches!(m.health, MemberHealth::Unreachable { .. }))
        .unwrap()
        .id;
    // etcd itself refuses to add a member while a dead voter is listed (strict reconfig
    // check): that is why the dead member is removed first (rule 3).
    let idx = c.prepare_member("m4").unwrap();
    let peer = c.member(idx).peer_url();
    let err = p
        .add_learner("m4", std::slice::from_ref(&peer), Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unhealthy cluster"), "{err}");
    // Remove the dead member first (rule 3); a second remove is a no-op.
    let live = p.with_endpoints([c.member(0).client_url(), c.member(1).client_url()]);
    assert_eq!(
        live.move_leader_away(dead).await.unwrap(),
        LeaderMove::NotLeader {
            leader: o.health.leader
        }
    );
    assert_eq!(live.remove_member(dead).await.unwrap(), Removal::Removed);
    assert_eq!(
        live.remove_member(dead).await.unwrap(),
        Removal::AlreadyAbsent
    );
    let o = live.observe().await;
    assert_eq!(o.health.voters, 2);
    assert!(o.member(dead).is_none());

    // Add a learner, start it with the returned initial cluster.
    let join = live
        .add_learner("m4", std::slice::from_ref(&peer), WAIT)
        .await
        .unwrap();
    assert!(!join.already_present && join.is_learner);
    assert_eq!(join.initial_cluster_state, "existing");
    assert!(
        join.initial_cluster.contains(&format!("m4={peer}")),
        "{}",
        join.initial_cluster
    );
    assert!(
        join.initial_cluster
            .contains(&format!("m1={}", c.member(0).peer_url()))
    );
    assert!(
        !join.initial_cluster.contains(&c.member(2).peer_url()),
        "removed member gone"
    );
    // Adding again returns the same member (idempotent).
    let again = live
        .add_learner("m4", std::slice::from_ref(&peer), WAIT)
        .await
        .unwrap();
    assert!(again.already_present);
    assert_eq!(again.member_id, join.member_id);
    let o = live.observe().await;
    assert_eq!(o.health.learners, 1);
    assert_eq!(o.health.voters, 2, "a learner does not change the quorum");
    let learner = o.member(join.member_id).unwrap();
    assert!(learner.is_learner && !learner.started);

    c.start_member(idx, &join.initial_cluster, ClusterState::Existing)
        .unwrap();
    let new_ep = c.member(idx).client_url();
    live.wait_for_join(join.member_id, &new_ep, WAIT)
        .await
        .unwrap();
    let promo = live.promote_learner(join.member_id, WAIT).await.unwrap();
    assert!(matches!(promo, Promotion::Promoted { .. }), "{promo:?}");
    assert_eq!(
        live.promote_learner(join.member_id, WAIT).await.unwrap(),
        Promotion::AlreadyVoter
    );

    let all = p.with_endpoints([c.member(0).client_url(), c.member(1).client_url(), new_ep]);
    let o = observe_until(&all, "3/3 healthy after replacement", |o| {
        o.health.healthy_voters == 3 && o.health.quorum
    })
    .await;
    assert_eq!(o.health.voters, 3);
    assert_eq!(o.health.learners, 0);
    assert!(o.members.iter().all(|m| m.is_healthy() && m.started));
    write_keys(&all, "after", 20).await;
    let start = Instant::now();
    let report = loop {
        let r = all.compare_hashes().await.unwrap();
        if r.consistent() || start.elapsed() > WAIT {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(report.consistent(), "{report:#?}");
    assert_eq!(report.hashes.len(), 3);
    assert!(report.revision > 70);
}

async fn member_started_on_stale_data_dir_fails_to_join_with_reason() {
    // An earlier 3-member cluster leaves a data dir behind (seed 002): started on it, the
    // new process keeps its old identity and keeps dialing its old (dead) peers.
    let mut old = start_cluster(3).await;
    let op = provider(&old, &[0, 1, 2], TIMEOUT);
    write_keys(&op, "old", 5).await;
    for i in 0..3 {
        old.kill(i);
    }

    let mut c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], TIMEOUT);
    observe_until(&p, "leader known", |o| o.health.leader.is_some()).await;
    let idx = c.prepare_member("m4").unwrap();
    c.seed_data_dir(idx, old.member(0).data_dir()).unwrap();
    let join = p
        .add_learner("m4", &[c.member(idx).peer_url()], WAIT)
        .await
        .unwrap();
    c.start_member(idx, &join.initial_cluster, ClusterState::Existing)
        .unwrap();
    let ep = c.member(idx).client_url();

    let start = Instant::now();
    let err = p
        .wait_for_join(join.member_id, &ep, WAIT)
        .await
        .unwrap_err();
    // Definitive: it does not wait for the deadline.
    assert!(start.elapsed() < WAIT / 2, "took {:?}", start.elapsed());
    match &err {
        EtcdError::JoinFailed {
            id,
            endpoint,
            reason:
                JoinFailure::StaleDataDir {
                    expected_cluster,
                    found_cluster,
                    seen_via,
                    ..
                },
        } => {
            assert_eq!(*id, join.member_id);
            assert_eq!(endpoint, &ep);
            assert_ne!(expected_cluster, found_cluster);
            // Hanging without its old quorum it never serves clients; the peer port tells.
            assert!(seen_via.contains("/members"), "{seen_via}");
        }
        other => panic!("expected a stale data dir failure, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&ep) && msg.contains("stale data dir"), "{msg}");

    // Without credentials the peer port accepts, the reason is still given (not ready).
    let other = Pki::create(&c.root().join("other"), "other-ca").unwrap();
    let mut wrong_peer = tls_of(c.client_tls());
    wrong_peer.ca_file = other.ca_file().to_path_buf();
    let blind = EtcdProvider::new(p.config().clone().with_peer_tls(wrong_peer)).unwrap();
    let err = blind
        .wait_for_join(join.member_id, &ep, Duration::from_secs(6))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EtcdError::JoinFailed {
                reason: JoinFailure::NotReady { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("stale data dir"), "{err}");

    // The observation keeps the learner, unstarted, and the hanging endpoint unreachable.
    let o = p.with_endpoints(c.client_urls()).observe().await;
    let learner = o.member(join.member_id).unwrap();
    assert!(learner.is_learner && !learner.started);
    assert!(!learner.is_healthy());
    assert!(!o.endpoints[idx].reachable());
    assert_eq!(o.health.voters, 3);
    assert!(o.health.quorum);
}

async fn member_started_on_data_dir_of_a_one_member_cluster_answers_for_its_old_cluster() {
    // A stale data dir of a one-member cluster: the process elects itself and serves
    // clients, for its old cluster; the observation flags the endpoint as foreign.
    let mut old = start_cluster(1).await;
    write_keys(&provider(&old, &[0], TIMEOUT), "old", 5).await;
    old.kill(0);
    let mut c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], TIMEOUT);
    let idx = c.prepare_member("m4").unwrap();
    c.seed_data_dir(idx, old.member(0).data_dir()).unwrap();
    let join = p
        .add_learner("m4", &[c.member(idx).peer_url()], WAIT)
        .await
        .unwrap();
    c.start_member(idx, &join.initial_cluster, ClusterState::Existing)
        .unwrap();
    let ep = c.member(idx).client_url();
    let err = p
        .wait_for_join(join.member_id, &ep, WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            EtcdError::JoinFailed {
                reason: JoinFailure::StaleDataDir { .. },
                ..
            }
        ),
        "{err}"
    );
    let all = p.with_endpoints(c.client_urls());
    let o = observe_until(&all, "foreign endpoint flagged", |o| {
        o.health.foreign_endpoints == vec![ep.clone()]
    })
    .await;
    // The stale member leads its own cluster; it must not be taken for this one's leader.
    assert_eq!(o.health.voters, 3);
    assert!(o.health.quorum);
    assert!(
        o.member(join.member_id)
            .is_some_and(|m| m.is_learner && !m.started)
    );
    assert_ne!(o.member_list_from.as_deref(), Some(ep.as_str()));
}

async fn snapshot_is_written_with_size_and_sha256() {
    let c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], common_timeout());
    write_keys(&p, "snap", 100).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.db");
    let info = p.snapshot(&path, Duration::from_secs(120)).await.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.is_empty());
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
    assert!(info.revision >= 100);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no partial file left"
    );
    // The snapshot is a real etcd backend: etcdctl can read it.
    let out = std::process::Command::new("etcdctl")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn assert_tls_error(p: &EtcdProvider, endpoint: &str) {
    let o = p.observe().await;
    let err = o.endpoints[0].error.as_ref().expect("TLS must fail");
    assert_eq!(err.kind, EndpointErrorKind::Tls, "{err}");
    assert_eq!(err.endpoint, endpoint);
    let msg = err.to_string();
    eprintln!("TLS error as reported: {msg}");
    assert!(msg.contains(endpoint), "{msg}");
    assert!(!o.health.quorum);
    // Acts fail with the same classification.
    let e = p.remove_member(MemberId(1)).await.unwrap_err();
    assert!(e.to_string().contains(endpoint), "{e}");
}

async fn wrong_ca_gives_tls_error_naming_endpoint() {
    let c = start_cluster(1).await;
    let other = Pki::create(&c.root().join("other"), "other-ca").unwrap();
    let mut tls = tls_of(c.client_tls());
    tls.ca_file = other.ca_file().to_path_buf();
    let ep = c.member(0).client_url();
    let p = EtcdProvider::new(
        EtcdConfig::new([ep.clone()])
            .with_tls(tls)
            .with_timeout(TIMEOUT),
    )
    .unwrap();
    assert_tls_error(&p, &ep).await;
}

async fn wrong_client_cert_gives_tls_error_naming_endpoint() {
    let c = start_cluster(1).await;
    let other = Pki::create(&c.root().join("other"), "other-ca").unwrap();
    let bad = other.issue_client("intruder").unwrap();
    let mut tls = tls_of(c.client_tls());
    tls.cert_file = bad.cert_file;
    tls.key_file = bad.key_file;
    let ep = c.member(0).client_url();
    let p = EtcdProvider::new(
        EtcdConfig::new([ep.clone()])
            .with_tls(tls)
            .with_timeout(TIMEOUT),
    )
    .unwrap();
    assert_tls_error(&p, &ep).await;
}

async fn missing_tls_file_is_named() {
    let c = start_cluster(1).await;
    let mut tls = tls_of(c.client_tls());
    tls.key_file = c.root().join("nope.key");
    let err =
        EtcdProvider::new(EtcdConfig::new([c.member(0).client_url()]).with_tls(tls)).unwrap_err();
    assert!(err.to_string().contains("nope.key"), "{err}");
}

async fn move_leader_away_transfers_leadership() {
    let c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], common_timeout());
    let o = observe_until(&p, "leader known", |o| o.health.leader.is_some()).await;
    let leader = o.health.leader.unwrap();
    let follower = o.members.iter().find(|m| m.id != leader).unwrap().id;
    assert_eq!(
        p.move_leader_away(follower).await.unwrap(),
        LeaderMove::NotLeader {
            leader: Some(leader)
        }
    );
    let LeaderMove::Moved { to } = p.move_leader_away(leader).await.unwrap() else {
        panic!("leader should move");
    };
    assert_ne!(to, leader);
    let o = observe_until(&p, "new leader", |o| o.health.leader == Some(to)).await;
    assert!(o.health.quorum);
}

async fn promote_retries_until_learner_in_sync_and_rejects_unknown_member() {
    let mut c = start_cluster(3).await;
    let p = provider(&c, &[0, 1, 2], common_timeout());
    // Some data so that the learner has something to catch up on.
    write_keys(&p, "bulk", 300).await;
    let idx = c.prepare_member("m4").unwrap();
    let join = p
        .add_learner("m4", &[c.member(idx).peer_url()], WAIT)
        .await
        .unwrap();
    // Promoting before it even started: etcd says "not in sync"; the short deadline expires.
    let err = p
        .promote_learner(join.member_id, Duration::from_millis(600))
        .await
        .unwrap_err();
    assert!(matches!(err, EtcdError::PromoteTimedOut { .. }), "{err}");
    assert!(err.to_string().contains("in sync"), "{err}");
    c.start_member(idx, &join.initial_cluster, ClusterState::Existing)
        .unwrap();
    let promo = p.promote_learner(join.member_id, WAIT).await.unwrap();
    assert!(matches!(promo, Promotion::Promoted { .. }));
    let err = p.promote_learner(MemberId(0xdead), WAIT).await.unwrap_err();
    assert!(matches!(err, EtcdError::MemberNotFound { .. }), "{err}");
    // A cluster of four voters now: quorum 3.
    let all = p.with_endpoints(c.client_urls());
    let o = observe_until(&all, "4 healthy voters", |o| o.health.healthy_voters == 4).await;
    assert_eq!(o.health.quorum_size, 3);
    drop(c);
}

async fn nospace_alarm_is_reported_per_endpoint() {
    let c = tokio::task::spawn_blocking(|| {
        k3splan_testkit_etcd::EtcdCluster::start_with(k3splan_testkit_etcd::ClusterOptions {
            members: 1,
            quota_backend_bytes: Some(2 * 1024 * 1024),
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .expect("cluster");
    let p = provider(&c, &[0], common_timeout());
    let ep = c.member(0).client_url();
    let mut client = p.client(&ep).await.unwrap();
    let blob = vec![b'x'; 512 * 1024];
    let mut refused = None;
    for i in 0..64 {
        if let Err(e) = client.put(format!("big/{i}"), blob.clone(), None).await {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("a 2 MiB quota must fill up");
    assert!(refused.contains("space exceeded"), "{refused}");
    let o = observe_until(&p, "NOSPACE alarm visible", |o| {
        o.endpoints[0]
            .state
            .as_ref()
            .is_some_and(|s| !s.alarms.is_empty())
    })
    .await;
    let s = o.endpoints[0].state.as_ref().unwrap();
    assert_eq!(s.alarms, vec![k3splan_etcd::Alarm::Nospace]);
    let json = serde_json::to_string(&o).unwrap();
    assert!(json.contains("\"NOSPACE\""), "{json}");
}

/// issue 13: a member whose endpoint is not configured (its node is no longer declared) is
/// asked at its own client URL from the member list: a healthy one counts as healthy, a
/// dead one as unreachable — never "not observed", which the planner read as down and
/// which made plan claim quorum was lost while 2 of 3 members were healthy.
async fn issue13_members_without_a_configured_endpoint_are_asked_at_their_client_urls() {
    let mut c = start_cluster(3).await;
    // Only member 0 is configured, as when server-2 and server-3 left the topology.
    let p = provider(&c, &[0], common_timeout());
    // A condition, not one look: on a loaded machine one status call may miss its timeout.
    // Without the fix the two unconfigured members are never asked, and this never holds.
    let o = observe_until(&p, "every member's status read", |o| {
        o.health.leader.is_some() && o.health.healthy_voters == 3
    })
    .await;
    assert_eq!(o.members.len(), 3, "{o:#?}");
    for m in &o.members {
        assert!(m.is_healthy(), "{m:?}");
    }
    // Kill member 2 (not configured): it is unreachable at its own URL, and the other two
    // still hold quorum.
    let dead_url = c.member(2).client_url();
    c.kill(2);
    // Member 2 may have been the leader: the other two need an election (up to an election
    // timeout, longer under load) before they count as healthy voters again, so the
    // condition waits for a leader too, not for the unreachable member alone.
    let o = observe_until(&p, "member 2 seen unreachable and a leader elected", |o| {
        o.health.leader.is_some()
            && o.health.healthy_voters == 2
            && o.members
                .iter()
                .any(|m| matches!(m.health, MemberHealth::Unreachable { .. }))
    })
    .await;
    assert_eq!(o.health.healthy_voters, 2, "{o:#?}");
    assert!(o.health.quorum, "2 of 3 hold quorum: {o:#?}");
    let dead = o
        .members
        .iter()
        .find(|m| m.client_urls.first() == Some(&dead_url))
        .expect("dead member listed");
    match &dead.health {
        MemberHealth::Unreachable { error } => assert_eq!(error.endpoint, dead_url),
        other => panic!("dead member should be unreachable at its URL, is {other:?}"),
    }
}

/// Bad client certificates: each error names the endpoint, the file at fault and the TLS
/// reason, never just "transport error".
async fn issue13_bad_client_certificates_name_endpoint_file_and_reason() {
    let c = start_cluster(1).await;
    let ep = c.member(0).client_url();
    let good = tls_of(c.client_tls());
    let dir = c.root().join("bad-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let other_client = c.pki().issue_client("other-client").unwrap();
    let garbage = dir.join("garbage.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let other_ca = Pki::create(&c.root().join("other"), "other-ca").unwrap();
    let intruder = other_ca.issue_client("intruder").unwrap();
    let mut cases = Vec::new();
    // The key of another certificate: the pair does not match.
    let mut t = good.clone();
    t.key_file = other_client.key_file.clone();
    cases.push(("mismatched key", t, other_client.key_file.clone()));
    // A cert file that holds no certificate.
    let mut t = good.clone();
    t.cert_file = garbage.clone();
    cases.push(("garbage cert", t, garbage.clone()));
    // A key file that holds a certificate.
    let mut t = good.clone();
    t.key_file = good.cert_file.clone();
    cases.push(("cert as key", t, good.cert_file.clone()));
    // A certificate of another CA (the server rejects it).
    let mut t = good.clone();
    t.cert_file = intruder.cert_file.clone();
    t.key_file = intruder.key_file.clone();
    cases.push(("other CA", t, intruder.cert_file.clone()));
    for (what, tls, file) in cases {
        let msg = match EtcdProvider::new(
            EtcdConfig::new([ep.clone()])
                .with_tls(tls)
                .with_timeout(TIMEOUT),
        ) {
            Err(e) => e.to_string(),
            Ok(p) => {
                let o = p.observe().await;
                o.endpoints[0]
                    .error
                    .as_ref()
                    .unwrap_or_else(|| panic!("{what}: TLS must fail"))
                    .to_string()
            }
        };
        eprintln!("{what}: {msg}");
        assert!(msg.contains(&ep), "{what}: names the endpoint: {msg}");
        assert!(
            msg.contains(&file.display().to_string()),
            "{what}: names {}: {msg}",
            file.display()
        );
        assert!(
            !msg.contains("transport error: transport error"),
            "{what}: {msg}"
        );
    }
}

// A `harness = false` binary: each test is skipped with the reason when etcd is missing
// (k3splan_testkit_caps), and runs on its own current-thread runtime as `#[tokio::test]` did.
fn block_on<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

mod sync {
    pub fn an_observation_during_an_election_waits_for_the_new_leader() {
        super::block_on(super::an_observation_during_an_election_waits_for_the_new_leader());
    }
    pub fn observe_healthy_three_member_cluster() {
        super::block_on(super::observe_healthy_three_member_cluster());
    }
    pub fn observe_with_leader_killed_holds_quorum_and_lists_dead_member() {
        super::block_on(super::observe_with_leader_killed_holds_quorum_and_lists_dead_member());
    }
    pub fn observe_with_member_frozen_answers_within_timeout() {
        super::block_on(super::observe_with_member_frozen_answers_within_timeout());
    }
    pub fn observe_with_two_members_killed_reports_quorum_lost() {
        super::block_on(super::observe_with_two_members_killed_reports_quorum_lost());
    }
    pub fn replace_dead_member_full_cycle() {
        super::block_on(super::replace_dead_member_full_cycle());
    }
    pub fn member_started_on_stale_data_dir_fails_to_join_with_reason() {
        super::block_on(super::member_started_on_stale_data_dir_fails_to_join_with_reason());
    }
    pub fn member_started_on_data_dir_of_a_one_member_cluster_answers_for_its_old_cluster() {
        super::block_on(
            super::member_started_on_data_dir_of_a_one_member_cluster_answers_for_its_old_cluster(),
        );
    }
    pub fn snapshot_is_written_with_size_and_sha256() {
        super::block_on(super::snapshot_is_written_with_size_and_sha256());
    }
    pub fn wrong_ca_gives_tls_error_naming_endpoint() {
        super::block_on(super::wrong_ca_gives_tls_error_naming_endpoint());
    }
    pub fn wrong_client_cert_gives_tls_error_naming_endpoint() {
        super::block_on(super::wrong_client_cert_gives_tls_error_naming_endpoint());
    }
    pub fn missing_tls_file_is_named() {
        super::block_on(super::missing_tls_file_is_named());
    }
    pub fn move_leader_away_transfers_leadership() {
        super::block_on(super::move_leader_away_transfers_leadership());
    }
    pub fn promote_retries_until_learner_in_sync_and_rejects_unknown_member() {
        super::block_on(super::promote_retries_until_learner_in_sync_and_rejects_unknown_member());
    }
    pub fn nospace_alarm_is_reported_per_endpoint() {
        super::block_on(super::nospace_alarm_is_reported_per_endpoint());
    }
    pub fn issue13_members_without_a_configured_endpoint_are_asked_at_their_client_urls() {
        super::block_on(
            super::issue13_members_without_a_configured_endpoint_are_asked_at_their_client_urls(),
        );
    }
    pub fn issue13_bad_client_certificates_name_endpoint_file_and_reason() {
        super::block_on(super::issue13_bad_client_certificates_name_endpoint_file_and_reason());
    }
}

fn main() -> std::process::ExitCode {
    use k3splan_testkit_caps::{Test, etcd};
    k3splan_testkit_caps::run(
        concat!(env!("CARGO_PKG_NAME"), "::", env!("CARGO_CRATE_NAME")),
        vec![
            Test::new("observe_healthy_three_member_cluster", sync::observe_healthy_three_member_cluster).needs(etcd),
            Test::new("observe_with_leader_killed_holds_quorum_and_lists_dead_member", sync::observe_with_leader_killed_holds_quorum_and_lists_dead_member).needs(etcd),
            Test::new("observe_with_member_frozen_answers_within_timeout", sync::observe_with_member_frozen_answers_within_timeout).needs(etcd),
            Test::new("an_observation_during_an_election_waits_for_the_new_leader", sync::an_observation_during_an_election_waits_for_the_new_leader).needs(etcd),
            Test::new("observe_with_two_members_killed_reports_quorum_lost", sync::observe_with_two_members_killed_reports_quorum_lost).needs(etcd),
            Test::new("replace_dead_member_full_cycle", sync::replace_dead_member_full_cycle).needs(etcd),
            Test::new("member_started_on_stale_data_dir_fails_to_join_with_reason", sync::member_started_on_stale_data_dir_fails_to_join_with_reason).needs(etcd),
            Test::new("member_started_on_data_dir_of_a_one_member_cluster_answers_for_its_old_cluster", sync::member_started_on_data_dir_of_a_one_member_cluster_answers_for_its_old_cluster).needs(etcd),
            Test::new("snapshot_is_written_with_size_and_sha256", sync::snapshot_is_written_with_size_and_sha256).needs(etcd),
            Test::new("wrong_ca_gives_tls_error_naming_endpoint", sync::wrong_ca_gives_tls_error_naming_endpoint).needs(etcd),
            Test::new("wrong_client_cert_gives_tls_error_naming_endpoint", sync::wrong_client_cert_gives_tls_error_naming_endpoint).needs(etcd),
            Test::new("missing_tls_file_is_named", sync::missing_tls_file_is_named).needs(etcd),
            Test::new("move_leader_away_transfers_leadership", sync::move_leader_away_transfers_leadership).needs(etcd),
            Test::new("promote_retries_until_learner_in_sync_and_rejects_unknown_member", sync::promote_retries_until_learner_in_sync_and_rejects_unknown_member).needs(etcd),
            Test::new("nospace_alarm_is_reported_per_endpoint", sync::nospace_alarm_is_reported_per_endpoint).needs(etcd),
            Test::new("issue13_members_without_a_configured_endpoint_are_asked_at_their_client_urls", sync::issue13_members_without_a_configured_endpoint_are_asked_at_their_client_urls).needs(etcd),
            Test::new("issue13_bad_client_certificates_name_endpoint_file_and_reason", sync::issue13_bad_client_certificates_name_endpoint_file_and_reason).needs(etcd),
        ],
    )
}
