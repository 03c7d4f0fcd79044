//! The step graph of a plan as Graphviz DOT (`k3splan graph [PLANFILE]`): one node per
//! step, one edge per dependency, each edge labelled with why the later step waits for the
//! earlier one (why step 5 waits for step 3).
//!
//! Every step depends on the one before it (steps run one at a time, in order); some also
//! wait for an earlier step explicitly (a volume rebind waits for the join of the node it
//! lands on). The label says which rule or fact orders the pair, from the two steps alone.
//!
//! Guarantees: deterministic (the same plan gives the same bytes; goldens compare them);
//! every string from the plan is escaped for a DOT quoted string, so an address cannot end
//! the label. Pure: rendering SVG (`dot -Tsvg`) is the command line's business.

use std::fmt::Write as _;

use crate::plan::{Action, ActionReason, Address, Operation, Plan, Step};

/// Options of the DOT rendering (none yet; kept for the call sites' stability).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphOptions {}

/// The plan's steps and dependencies as a DOT digraph.
pub fn dot(p: &Plan, _opts: GraphOptions) -> String {
    let mut o = String::new();
    let sum = p.summary();
    o.push_str("digraph k3splan_plan {\n");
    let _ = writeln!(
        o,
        "  label=\"{}\";",
        q(&format!(
            "k3splan plan: {} to add, {} to change, {} to remove ({} steps)",
            sum.add,
            sum.change,
            sum.remove,
            p.steps.len()
        ))
    );
    o.push_str("  labelloc=t;\n  rankdir=TB;\n");
    o.push_str(
        "  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=\"monospace\"];\n",
    );
    o.push_str("  edge [fontname=\"sans-serif\", fontsize=10];\n");
    if p.steps.is_empty() {
        o.push_str("  empty [label=\"No changes.\", shape=plaintext];\n");
    }
    for s in &p.steps {
        let color = match s.action {
            Action::Create => "darkgreen",
            Action::Update => "darkgoldenrod",
            Action::Delete => "red3",
            Action::Replace => "magenta3",
            Action::Read => "deepskyblue4",
        };
        let pen = if s.is_destructive() { 2 } else { 1 };
        let label = format!(
            "{}. {} {}\n{}",
            s.id,
            s.action.symbol(),
            s.address,
            s.action.verb()
        );
        let _ = writeln!(
            o,
            "  s{} [label=\"{}\", color={color}, penwidth={pen}, tooltip=\"{}\"];",
            s.id,
            q(&label),
            q(&format!("because {}", s.why))
        );
    }
    for s in &p.steps {
        for d in &s.depends_on {
            let Some(from) = p.steps.iter().find(|x| x.id == *d) else {
                continue;
            };
            let explicit = *d + 1 != s.id;
            let style = if explicit { ", style=bold" } else { "" };
            let _ = writeln!(
                o,
                "  s{} -> s{} [label=\"{}\"{style}];",
                from.id,
                s.id,
                q(&edge_reason(from, s))
            );
        }
    }
    o.push_str("}\n");
    o
}

/// The node a step joins (server or agent), if it joins one.
fn joins(s: &Step) -> Option<&str> {
    s.operations.iter().find_map(|op| match op {
        Operation::JoinServer { node, .. } | Operation::JoinAgent { node, .. } => {
            Some(node.as_str())
        }
        _ => None,
    })
}

/// The step changes etcd membership (a member added, promoted or removed).
fn membership(s: &Step) -> bool {
    s.operations.iter().any(|op| {
        matches!(
            op,
            Operation::JoinServer { etcd: true, .. }
                | Operation::WaitLearnerPromoted { .. }
                | Operation::RemoveEtcdMember { .. }
        )
    })
}

fn removes_member(s: &Step) -> bool {
    s.operations
        .iter()
        .any(|op| matches!(op, Operation::RemoveEtcdMember { .. }))
}

fn restarts(s: &Step) -> bool {
    s.operations
        .iter()
        .any(|op| matches!(op, Operation::RestartService { .. }))
}

/// The node a step concerns: its `node.` or `etcd_member.` name, or the node of a host file.
fn node_of(a: &Address) -> Option<&str> {
    match a {
        Address::Node { name } | Address::EtcdMember { name } => Some(name),
        Address::HostFile { node, .. } => Some(node),
        _ => None,
    }
}

/// Why `to` waits for `from`.
fn edge_reason(from: &Step, to: &Step) -> String {
    use ActionReason as R;
    if matches!(to.address, Address::Verify) {
        return "verify checks the cluster after the last change (rule 5)".into();
    }
    if matches!(from.address, Address::EtcdSnapshot) {
        return "the etcd snapshot comes before the first destructive step (rule 4)".into();
    }
    if to.reason == R::VolumeOnLostNode {
        if let Some(n) = joins(from) {
            return format!("the volume is rebound onto {n}, which must have joined");
        }
        if from.reason == R::CordonForRebind {
            return "the other nodes are cordoned first, so the volume lands on the intended node"
                .into();
        }
    }
    if to.reason == R::UncordonAfterRebind {
        return "uncordoned once the volumes are rebound".into();
    }
    if let (Some(n), Some(m)) = (node_of(&from.address), joins(to))
        && n == m
        && matches!(from.address, Address::HostFile { .. })
    {
        return if from.reason == R::StaleEtcdData {
            format!("{n}'s stale etcd data is moved aside before it joins (seed 002)")
        } else {
            format!("{n}'s file is written before k3s starts there")
        };
    }
    if removes_member(from) && joins(to).is_some() && membership(to) {
        return "the failed member is removed before a member is added (rule 3)".into();
    }
    if membership(from) && membership(to) {
        return "one etcd membership change at a time; a learner is promoted first (rule 3)".into();
    }
    if let (Some(a), Some(b)) = (node_of(&from.address), node_of(&to.address))
        && a == b
        && from.action == Action::Delete
        && to.action == Action::Delete
    {
        return format!("{a} is removed in order: drain, member, uninstall, then the Node");
    }
    if restarts(from) && restarts(to) {
        return "one restart at a time, each waiting for health (rule 9)".into();
    }
    if from.reason == R::KeepalivedDrift && to.reason == R::KeepalivedDrift {
        return "keepalived manifests one at a time, the primary last".into();
    }
    if from.reason == R::PackagedAddonSkip && to.reason == R::AddonDrift {
        return "the .skip files come first, or k3s would undo the scaling at its next start"
            .into();
    }
    if joins(from).is_some() && joins(to).is_some() {
        return "nodes join one at a time".into();
    }
    "next in plan order (one step at a time)".into()
}

/// A DOT quoted-string body: `"` and `\` escaped, line breaks as `\n`.
fn q(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::q;

    #[test]
    fn quoted_strings_cannot_end_early() {
        assert_eq!(q("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
