//! The planner proper: an ordered list of phases over one shared [`PlanCx`].
//!
//! Each phase reads the context (topology, observation, options, per-node views and the
//! steps planned so far) and adds steps, drift, warnings or violations. The order is
//! [`PHASES`], stated once; it follows the order in which a lost server is replaced:
//!
//! 1. quorum already lost: refuse, naming the recovery;
//! 2. pending learners promoted, then failed members and their nodes removed, then nodes
//!    whose replacement is requested (`-replace=node.NAME`) (remove before add);
//! 3. new servers joined one at a time (stale data dir moved aside, config written, learner
//!    promoted), then control-plane-only servers and agents;
//! 4. healthy nodes that left the configuration removed;
//! 5. join URLs naming dead or removed servers rewritten, services restarted one at a time;
//! 6. keepalived manifests (backups first, the primary last: the VIP moves at the end);
//! 7. volumes of lost nodes rebound with the other nodes cordoned, then uncordoned; cordons
//!    an interrupted apply left (recorded in the state) undone;
//! 8. a changed `k3s_version`: servers upgraded one at a time (the etcd leader last), then
//!    agents in batches (issue 15, `phases/upgrade.rs`);
//! 8. add-on replicas/spread; drift;
//! 9. an etcd snapshot first (if anything is destructive), a verification last;
//! 10. the whole plan checked by the quorum simulation ([`crate::plan::safety::simulate`]).
//!
//! Guarantee: a phase never removes or reorders the steps of an earlier phase, except the
//! `snapshot` phase, which inserts its step first (the `renumber` phase then fixes ids and
//! dependencies).

use crate::config::Topology;
use crate::observed::Observed;
use crate::plan::cx::PlanCx;
use crate::plan::phases;
use crate::plan::{Plan, PlanOptions, Refusal};

/// One phase: adds to the context, or stops the planning with a refusal.
type Phase = for<'a, 'b> fn(&'b mut PlanCx<'a>) -> Result<(), Refusal>;

/// The phases, in order (see the module doc).
const PHASES: &[(&str, Phase)] = &[
    ("quorum", phases::quorum::run),
    ("classify", phases::classify::run),
    ("learners", phases::learners::run),
    ("failed_removals", phases::removals::run_failed),
    ("joins", phases::joins::run),
    ("healthy_removals", phases::removals::run_healthy),
    ("join_urls", phases::join_urls::run),
    ("keepalived", phases::keepalived::run),
    ("rebind", phases::rebind::run),
    ("upgrade", phases::upgrade::run),
    ("leftover_cordons", phases::cordons::run),
    ("addons", phases::addons::run),
    ("unplanned_drift", phases::drift::run_unplanned),
    ("planned_drift", phases::drift::run_planned),
    ("endpoint", phases::endpoint::run),
    ("check_fixes", phases::check_fixes::run),
    ("snapshot", phases::snapshot::run),
    ("verify", phases::verify::run),
    ("renumber", phases::finish::renumber),
    ("simulate", phases::finish::simulate),
];

/// Compute the plan that takes the cluster from `observed` to `desired`.
///
/// Returns a [`Refusal`] (every violation found, each naming the step or target and the
/// rule) when no safe plan exists: quorum already lost (with the recovery to perform),
/// a destruction that would rest on an unknown fact, a step the quorum simulation rejects,
/// or a change that needs a source that is unknown.
pub fn plan(desired: &Topology, observed: &Observed, opts: &PlanOptions) -> Result<Plan, Refusal> {
    let mut cx = PlanCx::new(desired, observed, opts);
    for (_name, phase) in PHASES {
        phase(&mut cx)?;
    }
    let unknown = cx.unknown_sources();
    Ok(Plan {
        unknown,
        steps: cx.steps,
        drift: cx.drift,
        warnings: cx.warnings,
        quorum_before: cx.quorum_before,
        estimate: None,
    })
}

#[cfg(test)]
mod issue13_tests {
    use super::*;
    use crate::config::Role;
    use crate::observed::Fact;
    use crate::plan::testkit::{cluster, node, observed_matching, topology};
    use crate::plan::{ActionReason, Address, Operation};

    fn three() -> Topology {
        let s = [Role::Server, Role::Etcd];
        topology(
            cluster("c"),
            vec![
                node("a", "10.0.0.1", &s),
                node("b", "10.0.0.2", &s),
                node("c", "10.0.0.3", &s),
            ],
        )
    }

    fn cordon(o: &mut Observed, n: &str) {
        if let Fact::Known(k) = &mut o.kube {
            k.nodes
                .iter_mut()
                .find(|x| x.name == n)
                .unwrap()
                .unschedulable = true;
        }
    }

    /// A cordon nobody recorded (an operator's `kubectl cordon`) is drift the plan shows,
    /// with what to do; k3splan does not undo it. On main: "No changes." and no drift.
    #[test]
    fn issue13_unexpected_cordon_on_a_declared_node_is_drift() {
        let t = three();
        let mut o = observed_matching(&t);
        cordon(&mut o, "b");
        let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
        assert!(p.steps.is_empty(), "not acted on: {:?}", p.steps);
        let d = p
            .drift
            .iter()
            .find(|d| d.address == "node.b" && d.attribute == "unschedulable")
            .unwrap_or_else(|| panic!("cordon drift missing: {:?}", p.drift));
        assert!(!d.planned);
        assert!(
            d.note.as_deref().unwrap().contains("kubectl uncordon b"),
            "{d:?}"
        );
        assert_eq!(crate::render::detailed_exitcode(&Ok(p.clone())), 2);
        let text = crate::render::text(&Ok(p), Default::default());
        assert!(text.contains("node.b.unschedulable"), "{text}");
    }

    /// A cordon the state says k3splan made (an interrupted apply's) is undone.
    #[test]
    fn issue13_cordon_recorded_by_k3splan_is_uncordoned() {
        let t = three();
        let mut o = observed_matching(&t);
        cordon(&mut o, "b");
        let opts = PlanOptions {
            cordoned_by_k3splan: ["b".to_string(), "c".to_string()].into(),
            ..PlanOptions::default()
        };
        let p = plan(&t, &o, &opts).expect("plan");
        // c is recorded but schedulable (uncordoned by hand since): nothing to do for it.
        let uncordons: Vec<_> = p
            .steps
            .iter()
            .filter(|s| {
                s.operations
                    .contains(&Operation::Uncordon { node: "b".into() })
            })
            .collect();
        assert_eq!(uncordons.len(), 1, "{:?}", p.steps);
        assert_eq!(
            uncordons[0].reason,
            ActionReason::UncordonLeftByInterruptedApply
        );
        assert!(!p.steps.iter().any(|s| {
            s.operations
                .contains(&Operation::Uncordon { node: "c".into() })
        }));
        assert!(p.drift.iter().all(|d| d.planned), "{:?}", p.drift);
    }

    /// `-replace=node.b` replaces b in this plan; without it, nothing is replaced.
    #[test]
    fn issue13_replace_option_is_one_shot() {
        let t = three();
        let o = observed_matching(&t);
        let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
        assert!(p.steps.is_empty(), "{:?}", p.steps);
        let opts = PlanOptions {
            replace: ["b".to_string()].into(),
            ..PlanOptions::default()
        };
        let p = plan(&t, &o, &opts).expect("plan");
        assert!(
            p.steps
                .iter()
                .any(|s| s.address == Address::member("b")
                    && s.reason == ActionReason::ReplaceByRequest),
            "{:?}",
            p.steps
        );
        assert!(p.steps.iter().any(|s| {
            s.operations
                .iter()
                .any(|op| matches!(op, Operation::JoinServer { node, .. } if node == "b"))
        }));
    }
}
