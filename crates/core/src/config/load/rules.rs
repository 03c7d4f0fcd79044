//! Rules about the topology as a whole.

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
        let primaries: Vec<(&Node, &&RawBlock)> = nodes
            .iter()
            .zip(blocks.iter())
            .filter(|(n, _)| n.primary && n.roles.is_server())
            .collect();
        match &cluster.vip {
            Some(vip) => {
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
                if primaries.len() > 1 {
                    let (first, fb) = primaries[0];
                    let first_span = fb
                        .attrs
                        .iter()
                        .find(|a| a.name == attr::PRIMARY)
                        .map(|a| a.key_span.clone())
                        .unwrap_or(fb.label_span());
                    let note = self.note_at(fb.file, &first_span);
                    for (n, b) in &primaries[1..] {
                        let span = b
                            .attrs
                            .iter()
                            .find(|a| a.name == attr::PRIMARY)
                            .map(|a| a.key_span.clone())
                            .unwrap_or(b.label_span());
                        let d = Diagnostic::at(
                            Severity::Error,
                            &self.files[b.file],
                            span,
                            format!("node {} is a second VIP primary: only one node may have `primary = true`", quote(&n.name)),
                        )
                        .with_note(format!("{} is primary at {note}", quote(&first.name)));
                        self.diags.push(d);
                    }
                }
                if let Some((n, b)) = nodes
                    .iter()
                    .zip(blocks.iter())
                    .find(|(n, _)| n.address == vip.address)
                {
                    let vb = cb.child(&schema::VIP).unwrap_or(cb);
                    let span = vb
                        .attrs
                        .iter()
                        .find(|a| a.name == attr::ADDRESS)
                        .map(|a| a.expr_span.clone())
                        .unwrap_or(vb.ident_span.clone());
                    let nspan = b
                        .attrs
                        .iter()
                        .find(|a| a.name == attr::ADDRESS)
                        .map(|a| a.expr_span.clone())
                        .unwrap_or(b.label_span());
                    let note = self.note_at(b.file, &nspan);
                    let d = Diagnostic::at(
                        Severity::Error,
                        &self.files[vb.file],
                        span,
                        format!(
                            "the VIP {} is the address of node {}: the VIP must be a free address",
                            vip.address,
                            quote(&n.name)
                        ),
                    )
                    .with_note(format!("{} has that address at {note}", quote(&n.name)));
                    self.diags.push(d);
                }
                if let [(primary, _)] = primaries.as_slice() {
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
                        let span = b
                            .attrs
                            .iter()
                            .find(|a| a.name == attr::VIP_PRIORITY)
                            .map(|a| a.expr_span.clone())
                            .unwrap_or(b.label_span());
                        self.err(
                            b.file,
                            span,
                            format!(
                                "node {} has VIP priority {}, not below the primary {} ({p}): the primary must have the highest priority",
                                quote(&n.name),
                                prio(n),
                                quote(&primary.name)
                            ),
                        );
                    }
                }
            }
            None if self
                .seen_idents
                .contains_key(&nested_ident(&schema::CLUSTER, &schema::VIP)) => {}
            None => {
                for (n, b) in nodes.iter().zip(blocks.iter()) {
                    if n.primary {
                        let span = b
                            .attrs
                            .iter()
                            .find(|a| a.name == attr::PRIMARY)
                            .map(|a| a.key_span.clone())
                            .unwrap_or(b.label_span());
                        self.warn(b.file, span, format!("node {} is `primary`, but the cluster declares no `vip`: it has no effect", quote(&n.name)));
                    }
                    if n.vip_priority.is_some() {
                        let span = b
                            .attrs
                            .iter()
                            .find(|a| a.name == attr::VIP_PRIORITY)
                            .map(|a| a.key_span.clone())
                            .unwrap_or(b.label_span());
                        self.warn(b.file, span, format!("node {} sets `vip_priority`, but the cluster declares no `vip`: it has no effect", quote(&n.name)));
                    }
                }
            }
        }
    }
}
