//! Phase `verify`: a plan that changes the cluster (anything but add-ons, their `.skip`
//! files and the snapshot)
//! ends with a verification of the result (rule 5, after apply: every member
//! healthy, one leader, equal KV hashes).

use crate::plan::cx::PlanCx;
use crate::plan::phases::read_step;
use crate::plan::{ActionReason, Address, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    // A packaged add-on's `.skip` file changes nothing k3s runs: no verification for it.
    let touches_cluster = cx.steps.iter().any(|s| {
        !matches!(s.address, Address::Addon { .. } | Address::EtcdSnapshot)
            && s.reason != ActionReason::PackagedAddonSkip
    });
    if touches_cluster {
        let expect_members = cx.t.etcd_nodes().count();
        cx.steps.push(read_step(
            Address::Verify,
            ActionReason::VerifyAfterApply,
            "the plan changed the cluster; this checks the result",
            Operation::Verify {
                expect_members,
                expect_nodes: cx.t.nodes.len(),
            },
        ));
    }
    Ok(())
}
