//! Rules about the topology as a whole: etcd and control-plane counts, and the VIP (one
//! primary, a free address, the primary's priority highest).

use super::*;
use crate::config::schema::attr;

impl Loader<'_> {
    /// Rules about the topology as a whole. `complete` is false when some node blocks had
    /// errors of their own: counting rules are skipped then, to avoid follow-on noise.
    pub(super) fn topology_rules(
        &mut self,
        cb: &RawBlock,
        cluster: &Cluster,
        nodes: &[Node],
        blocks: &[&RawBlock],
        complete: bool,
    ) {
        self.count_rules(cb, nodes, complete);
        match &cluster.vip {
            Some(vip) => self.vip_rules(cb, vip, nodes, blocks, complete),
            None if self
                .seen_idents
                .contains_key(&nested_ident(&schema::CLUSTER, &schema::VIP)) => {}
            None => self.no_vip_warnings(nodes, blocks),
        }
    }

    /// At least one etcd member (an odd number advised) and one control plane.
    fn count_rules(&mut self, cb: &RawBlock, nodes: &[Node], complete: bool) {
        let voters = nodes.iter().filter(|n| n.roles.runs_etcd()).count();
        if !complete {
        } else if voters == 0 && !nodes.is_empty() {
            self.err(
                cb.file,
                cb.ident_span.clone(),
                "no node runs etcd: give at least one node the role \"server\" or \"etcd\"",
            );
        } else if voters == 0 {
            self.err(
                cb.file,
                cb.ident_span.clone(),
                "no nodes: declare at least one `node` with the role \"server\"",
            );
        } else if voters % 2 == 0 {
            self.warn(
                cb.file,
                cb.ident_span.clone(),
                format!(
                    "{voters} etcd members: an even number tolerates no more failures than {} (quorum is {}); use an odd number",
                    voters - 1,
                    voters / 2 + 1
                ),
            );
        }
        if !complete || nodes.iter().any(|n| n.roles.runs_control_plane()) || voters == 0 {
        } else {
            self.err(
                cb.file,
                cb.ident_span.clone(),
                "no node runs the control plane: give at least one node the role \"server\" or \"control-plane\"",
            );
        }
    }

    fn vip_rules(
        &mut self,
        cb: &RawBlock,
        vip: &Vip,
        nodes: &[Node],
        blocks: &[&RawBlock],
        complete: bool,
    ) {
        let primaries: Vec<(&Node, &&RawBlock)> = nodes
            .iter()
            .zip(blocks.iter())
            .filter(|(n, _)| n.primary && n.roles.is_server())
            .collect();
        if primaries.is_empty() && complete {
            let span = cb
                .child(&schema::VIP)
                .map(|v| v.ident_span.clone())
                .unwrap_or(cb.ident_span.clone());
            self.err(
                cb.file,
                span,
                "a `vip` is declared but no node has `primary = true`: mark the server that should hold the VIP",
            );
        }
        if let [(first, fb), rest @ ..] = primaries.as_slice() {
            let note = self.note_at(fb.file, &fb.key_span_of(attr::PRIMARY));
            for (n, b) in rest {
                let d = Diagnostic::at(
                    Severity::Error,
                    &self.files[b.file],
                    b.key_span_of(attr::PRIMARY),
                    format!(
                        "node {} is a second VIP primary: only one node may have `primary = true`",
                        quote(&n.name)
                    ),
                )
                .with_note(format!("{} is primary at {note}", quote(&first.name)));
                self.diags.push(d);
            }
        }
        self.vip_address_is_free(cb, vip, nodes, blocks);
        if let [(primary, _)] = primaries.as_slice() {
            self.primary_priority_is_highest(primary, nodes, blocks);
        }
    }

    /// The VIP must not be the address of a node.
    fn vip_address_is_free(
        &mut self,
        cb: &RawBlock,
        vip: &Vip,
        nodes: &[Node],
        blocks: &[&RawBlock],
    ) {
        let Some((n, b)) = nodes
            .iter()
            .zip(blocks.iter())
            .find(|(n, _)| n.address == vip.address)
        else {
            return;
        };
        let vb = cb.child(&schema::VIP).unwrap_or(cb);
        let note = self.note_at(b.file, &b.expr_span_of(attr::ADDRESS));
        let d = Diagnostic::at(
            Severity::Error,
            &self.files[vb.file],
            vb.expr_span_of(attr::ADDRESS),
            format!(
                "the VIP {} is the address of node {}: the VIP must be a free address",
                vip.address,
                quote(&n.name)
            ),
        )
        .with_note(format!("{} has that address at {note}", quote(&n.name)));
        self.diags.push(d);
    }

    /// The primary's VRRP priority must be above every other server's.
    fn primary_priority_is_highest(
        &mut self,
        primary: &Node,
        nodes: &[Node],
        blocks: &[&RawBlock],
    ) {
        let prio = |n: &Node| {
            n.vip_priority.unwrap_or(if n.primary {
                PRIMARY_PRIORITY
            } else {
                BACKUP_PRIORITY
            })
        };
        let p = prio(primary);
        for (n, b) in nodes.iter().zip(blocks.iter()) {
            if n.name == primary.name || !n.roles.is_server() || prio(n) < p {
                continue;
            }
            self.err(
                b.file,
                b.expr_span_of(attr::VIP_PRIORITY),
                format!(
                    "node {} has VIP priority {}, not below the primary {} ({p}): the primary must have the highest priority",
                    quote(&n.name),
                    prio(n),
                    quote(&primary.name)
                ),
            );
        }
    }

    /// `primary` and `vip_priority` without a `vip` have no effect.
    fn no_vip_warnings(&mut self, nodes: &[Node], blocks: &[&RawBlock]) {
        for (n, b) in nodes.iter().zip(blocks.iter()) {
            if n.primary {
                self.warn(
                    b.file,
                    b.key_span_of(attr::PRIMARY),
                    format!(
                        "node {} is `primary`, but the cluster declares no `vip`: it has no effect",
                        quote(&n.name)
                    ),
                );
            }
            if n.vip_priority.is_some() {
                self.warn(b.file, b.key_span_of(attr::VIP_PRIORITY), format!("node {} sets `vip_priority`, but the cluster declares no `vip`: it has no effect", quote(&n.name)));
            }
        }
    }
}
