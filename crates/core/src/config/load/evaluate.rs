//! Evaluation: variables, locals and expressions.

use super::*;
use crate::config::schema::attr;

impl Loader<'_> {
    // -- variables and locals ------------------------------------------------------------

    /// The context expressions are evaluated in: the functions, `var.*` and `local.*`.
    pub(super) fn variables_and_locals(&mut self, top: &[RawBlock]) -> Context<'static> {
        let vars = self.variables(top);
        let locals = self.locals(top, &vars);
        let mut ctx = base_context();
        ctx.declare_var("var", Value::Object(vars));
        ctx.declare_var("local", Value::Object(locals));
        ctx
    }

    /// The `variable` blocks' values: `K3SPLAN_VAR_<name>`, else the constant default.
    fn variables(&mut self, top: &[RawBlock]) -> hcl::Map<String, Value> {
        let base = base_context();
        let mut vars = hcl::Map::new();
        for b in top.iter().filter(|b| b.is(&schema::VARIABLE)) {
            let name = b.label().to_string();
            if vars.contains_key(&name) {
                self.err(
                    b.file,
                    b.label_span(),
                    format!("variable {} is declared twice", code(&name)),
                );
                continue;
            }
            let env_name = format!("K3SPLAN_VAR_{name}");
            let value = if let Some(v) = self.opts.env.get(&env_name) {
                Value::from(v)
            } else if let Some(def) = b.attrs.iter().find(|a| a.name == attr::DEFAULT) {
                // A default is a constant: it is evaluated before any variable or local.
                let refs = expr_refs(&def.expr);
                let value = match refs.refs.first() {
                    Some(r) if r.root == "var" && r.name == name => {
                        let me = shown(&format!("var.{name}"));
                        self.err(
                            def.file,
                            r.span.clone(),
                            format!(
                                "cycle: {me} → {me}: the default of variable {} refers to itself",
                                code(&name)
                            ),
                        );
                        None
                    }
                    Some(r) => {
                        self.err(
                            def.file,
                            r.span.clone(),
                            format!(
                                "the default of variable {} cannot refer to {}: a default is a constant; derive values from variables in a `locals` block",
                                code(&name),
                                code(&format!("{}.{}", r.root, r.name))
                            ),
                        );
                        None
                    }
                    None => self.eval_expr(def, &base),
                };
                match value {
                    Some(v) => v,
                    None => {
                        // Reported; uses of the variable are not reported again.
                        self.bad_vars.push(name.clone());
                        Value::Null
                    }
                }
            } else {
                self.err(
                    b.file,
                    b.label_span(),
                    format!(
                        "variable {} has no value: give it a `default` or set {}",
                        code(&name),
                        shown(&env_name)
                    ),
                );
                self.bad_vars.push(name.clone());
                Value::Null
            };
            vars.insert(name, value);
        }
        vars
    }

    /// The `locals`, evaluated until nothing more resolves; the rest is reported.
    fn locals(
        &mut self,
        top: &[RawBlock],
        vars: &hcl::Map<String, Value>,
    ) -> hcl::Map<String, Value> {
        // Locals may refer to each other: evaluate until nothing more resolves.
        let mut pending: Vec<RawAttr> = top
            .iter()
            .filter(|b| b.is(&schema::LOCALS))
            .flat_map(|b| b.attrs.iter().cloned())
            .collect();
        let mut locals = hcl::Map::new();
        loop {
            let mut lctx = base_context();
            lctx.declare_var("var", Value::Object(vars.clone()));
            lctx.declare_var("local", Value::Object(locals.clone()));
            let before = pending.len();
            let mut still = Vec::new();
            for a in pending {
                match self.evaluate(&a.expr, &lctx) {
                    Ok(v) => {
                        if locals.contains_key(&a.name) {
                            self.err(
                                a.file,
                                a.key_span.clone(),
                                format!("local {} is defined twice", code(&a.name)),
                            );
                        } else {
                            locals.insert(a.name.clone(), v);
                        }
                    }
                    Err(_) => still.push(a),
                }
            }
            pending = still;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        let mut lctx = base_context();
        lctx.declare_var("var", Value::Object(vars.clone()));
        lctx.declare_var("local", Value::Object(locals.clone()));
        self.report_pending_locals(&pending, &lctx);
        locals
    }

    /// Reports the locals that could not be evaluated. Each one is in a cycle (reported as
    /// the chain of references), uses a local that failed (not reported again: its error is
    /// the cause), or has an error of its own (reported as evaluation found it).
    pub(super) fn report_pending_locals(&mut self, pending: &[RawAttr], lctx: &Context) {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, a) in pending.iter().enumerate() {
            index.entry(a.name.as_str()).or_insert(i);
        }
        // The references of each pending local to pending locals: (target, span).
        let succ: Vec<Vec<(usize, Range<usize>)>> = pending
            .iter()
            .map(|a| {
                expr_refs(&a.expr)
                    .refs
                    .into_iter()
                    .filter(|r| r.root == "local")
                    .filter_map(|r| index.get(r.name.as_str()).map(|j| (*j, r.span)))
                    .collect()
            })
            .collect();
        let mut in_cycle = vec![false; pending.len()];
        for i in 0..pending.len() {
            if in_cycle[i] || index.get(pending[i].name.as_str()) != Some(&i) {
                continue;
            }
            let Some(path) = shortest_cycle(i, &succ) else {
                continue;
            };
            for &j in &path {
                in_cycle[j] = true;
            }
            let chain: Vec<String> = path
                .iter()
                .chain(std::iter::once(&i))
                .map(|&j| shown(&format!("local.{}", pending[j].name)))
                .collect();
            let span_of_edge = |from: usize, to: usize| {
                succ[from]
                    .iter()
                    .find(|(j, _)| *j == to)
                    .map(|(_, s)| s.clone())
                    .unwrap_or(pending[from].expr_span.clone())
            };
            let next = |k: usize| path.get(k + 1).copied().unwrap_or(i);
            let a = &pending[i];
            let mut d = Diagnostic::at(
                Severity::Error,
                &self.files[a.file],
                span_of_edge(i, next(0)),
                format!(
                    "cycle: {}: these locals refer to each other, so none has a value",
                    chain.join(" → ")
                ),
            );
            if path.len() == 1 {
                d.message = format!("cycle: {}: this local refers to itself", chain.join(" → "));
            }
            for k in 1..path.len() {
                let from = path[k];
                let to = next(k);
                let note = self.note_at(pending[from].file, &span_of_edge(from, to));
                d = d.with_note(format!("{} refers to {} at {note}", chain[k], chain[k + 1]));
            }
            self.diags.push(d);
        }
        for (i, a) in pending.iter().enumerate() {
            self.bad_locals.push(a.name.clone());
            if !in_cycle[i] && succ[i].is_empty() {
                // The real error (an undefined variable, a failing function…).
                self.eval_expr(a, lctx);
            }
        }
    }

    /// Whether `refs` uses a variable or local that has no value (already reported).
    pub(super) fn refers_to_failed(&self, refs: &ExprRefs) -> bool {
        refs.refs.iter().any(|r| match r.root {
            "var" => self.bad_vars.contains(&r.name),
            _ => self.bad_locals.contains(&r.name),
        })
    }

    pub(super) fn eval_expr(&mut self, a: &RawAttr, ctx: &Context) -> Option<Value> {
        match self.evaluate(&a.expr, ctx) {
            Ok(v) => Some(v),
            Err(e) => {
                let refs = expr_refs(&a.expr);
                if self.refers_to_failed(&refs) {
                    // Reported where that variable or local is defined.
                    return None;
                }
                let mut span = a.expr_span.clone();
                let attr = code(&a.name);
                use hcl::eval::ErrorKind as K;
                let msg = match e.kind() {
                    K::UndefinedVar(v) => format!(
                        "undefined variable {} in {attr}; variables are `var.NAME` and `local.NAME`",
                        code(v)
                    ),
                    K::NoSuchKey(k) => {
                        if refs.refs.iter().any(|r| r.root == "var" && r.name == *k) {
                            format!(
                                "undefined variable {}: there is no `variable {}` block",
                                code(&format!("var.{k}")),
                                quote(k)
                            )
                        } else if refs.refs.iter().any(|r| r.root == "local" && r.name == *k) {
                            format!(
                                "undefined local {}: no `locals` block defines {}",
                                code(&format!("local.{k}")),
                                code(k)
                            )
                        } else {
                            format!("no such key {} in {attr}", code(k))
                        }
                    }
                    K::UndefinedFunc(f) => format!(
                        "unknown function {} in {attr}; available: env(), file()",
                        code(&f.to_string())
                    ),
                    K::FuncCall(f, m) => {
                        // At the call itself, which may be inside a larger expression.
                        let name = f.to_string();
                        // Of several calls, the one whose literal argument the message names.
                        let named = |arg: &Option<String>| {
                            arg.as_ref().is_some_and(|x| {
                                m.contains(&quote(x)) || m.contains(&format!(" {} ", shown(x)))
                            })
                        };
                        let calls = || refs.calls.iter().filter(|(n, ..)| *n == name);
                        if let Some((.., s)) = calls()
                            .find(|(_, arg, _)| named(arg))
                            .or_else(|| calls().next())
                        {
                            span = s.clone();
                        }
                        format!("{}(): {m}", shown(&name))
                    }
                    K::Unexpected(v, expected) => format!(
                        "cannot evaluate {attr}: unexpected value {}, expected {expected}",
                        code(&v.to_string())
                    ),
                    K::UnaryOp(op, v) => format!(
                        "cannot evaluate {attr}: operator `{op}` does not apply to {}",
                        code(&v.to_string())
                    ),
                    K::BinaryOp(l, op, r) => format!(
                        "cannot evaluate {attr}: operator `{op}` does not apply to {} and {}",
                        code(&l.to_string()),
                        code(&r.to_string())
                    ),
                    K::KeyExists(k) => {
                        format!("cannot evaluate {attr}: key {} is set twice", code(k))
                    }
                    other => format!("cannot evaluate {attr}: {other}"),
                };
                self.err(a.file, span, msg);
                None
            }
        }
    }
}

/// A reference `var.NAME` or `local.NAME` (also `local["NAME"]`) in an expression.
pub(super) struct Ref {
    pub(super) root: &'static str,
    pub(super) name: String,
    pub(super) span: Range<usize>,
}

/// The references and the function calls (name, literal first argument, span) of an
/// expression, in source order.
#[derive(Default)]
pub(super) struct ExprRefs {
    pub(super) refs: Vec<Ref>,
    pub(super) calls: Vec<(String, Option<String>, Range<usize>)>,
}

impl hcl_edit::visit::Visit for ExprRefs {
    fn visit_traversal(&mut self, t: &hcl_edit::expr::Traversal) {
        use hcl_edit::expr::{Expression as E, TraversalOperator as Op};
        if let E::Variable(root) = &t.expr
            && let Some(first) = t.operators.first()
        {
            let root = match root.as_str() {
                "var" => Some("var"),
                "local" => Some("local"),
                _ => None,
            };
            let name = match first.value() {
                Op::GetAttr(id) => Some(id.as_str().to_string()),
                Op::Index(E::String(s)) => Some(s.value().clone()),
                _ => None,
            };
            if let (Some(root), Some(name)) = (root, name) {
                let span = span_of(&t.expr).start..span_of(first).end;
                self.refs.push(Ref { root, name, span });
            }
        }
        hcl_edit::visit::visit_traversal(self, t);
    }

    fn visit_func_call(&mut self, c: &hcl_edit::expr::FuncCall) {
        let arg = match c.args.iter().next() {
            Some(hcl_edit::expr::Expression::String(s)) => Some(s.value().clone()),
            _ => None,
        };
        self.calls
            .push((c.name.name.as_str().to_string(), arg, span_of(c)));
        hcl_edit::visit::visit_func_call(self, c);
    }
}

pub(super) fn expr_refs(expr: &hcl_edit::expr::Expression) -> ExprRefs {
    use hcl_edit::visit::Visit;
    let mut r = ExprRefs::default();
    r.visit_expr(expr);
    r
}

/// The shortest cycle through `start` in the graph `succ` (edges with their spans): the nodes
/// from `start` on, without repeating `start` at the end.
pub(super) fn shortest_cycle(
    start: usize,
    succ: &[Vec<(usize, Range<usize>)>],
) -> Option<Vec<usize>> {
    let mut prev: Vec<Option<usize>> = vec![None; succ.len()];
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = vec![false; succ.len()];
    while let Some(n) = queue.pop_front() {
        for (m, _) in &succ[n] {
            if *m == start {
                let mut path = vec![n];
                let mut k = n;
                while k != start {
                    k = prev[k]?;
                    path.push(k);
                }
                path.reverse();
                return Some(path);
            }
            if !seen[*m] {
                seen[*m] = true;
                prev[*m] = Some(n);
                queue.push_back(*m);
            }
        }
    }
    None
}
