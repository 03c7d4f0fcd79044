//! Evaluating the attributes of a block and checking their types against the schema.

use super::*;
use crate::config::schema::attr;

impl Loader<'_> {
    /// Evaluates and type-checks every attribute of a block.
    pub(super) fn eval_block(&mut self, b: &RawBlock, ctx: &Context) -> Evaluated {
        let mut out = HashMap::new();
        for a in &b.attrs {
            let Some(sch) = b.schema.attr(&a.name) else {
                continue;
            };
            if sch.ty == Ty::Secret {
                if let Some(v) = self.eval_secret(a, ctx) {
                    out.insert(a.name.clone(), v);
                }
                continue;
            }
            let Some(value) = self.eval_expr(a, ctx) else {
                continue;
            };
            if let Some(value) = self.check_type(a, value, sch.ty) {
                out.insert(
                    a.name.clone(),
                    Val {
                        value,
                        attr: a.clone(),
                    },
                );
            }
        }
        out
    }

    /// Secrets: `env("X")` may be unset at validation time; `file("…")` must be readable;
    /// a literal is accepted with a warning.
    pub(super) fn eval_secret(&mut self, a: &RawAttr, ctx: &Context) -> Option<Val> {
        let expr: Expression = a.expr.clone().into();
        let (source, value) = match &expr {
            Expression::FuncCall(call) if call.args.len() == 1 => {
                let fname = call.name.name.as_str();
                match (fname, &call.args[0]) {
                    ("env", Expression::String(var)) => {
                        (format!("env(\"{var}\")"), self.opts.env.get(var))
                    }
                    _ => {
                        let v = self.eval_expr(a, ctx)?;
                        let v = self.check_type(a, v, Ty::String)?;
                        (format!("{fname}(…)"), v.as_str().map(str::to_string))
                    }
                }
            }
            Expression::String(s) => {
                let what = a.name.as_str();
                let hint = if what == attr::TOKEN {
                    "K3S_TOKEN"
                } else {
                    "VRRP_PASSWORD"
                };
                self.warn(
                    a.file,
                    a.expr_span.clone(),
                    format!(
                        "`{what}` is written as a literal: it will end up in version control; use env(\"{hint}\") or file(\"…\")"
                    ),
                );
                ("literal".to_string(), Some(s.clone()))
            }
            _ => {
                let v = self.eval_expr(a, ctx)?;
                let v = self.check_type(a, v, Ty::String)?;
                ("expression".to_string(), v.as_str().map(str::to_string))
            }
        };
        // Carry the secret through a Value: source and value joined by NUL; decoded in build.
        let packed = match &value {
            Some(v) => format!("{source}\u{0}{v}"),
            None => source,
        };
        Some(Val {
            value: Value::from(packed),
            attr: a.clone(),
        })
    }

    pub(super) fn check_type(&mut self, a: &RawAttr, value: Value, ty: Ty) -> Option<Value> {
        let found = value_kind(&value);
        if value.is_null() && self.refers_to_failed(&expr_refs(&a.expr)) {
            return None; // already reported at the variable
        }
        match ty {
            Ty::Any | Ty::Secret => Some(value),
            Ty::String => match value {
                Value::String(_) => Some(value),
                _ => {
                    self.type_mismatch(a, &ty.describe(), found);
                    None
                }
            },
            Ty::Bool => match value {
                Value::Bool(_) => Some(value),
                Value::String(ref s) if s == "true" || s == "false" => {
                    Some(Value::Bool(s == "true"))
                }
                _ => {
                    self.type_mismatch(a, &ty.describe(), found);
                    None
                }
            },
            Ty::Int(lo, hi) => self.check_int(a, value, lo, hi),
            Ty::StringList => self.check_string_list(a, value),
            Ty::StringMap => self.check_string_map(a, value),
        }
    }

    /// Reports `a` as not of the type `what`.
    fn type_mismatch(&mut self, a: &RawAttr, what: &str, found: &str) {
        self.err(
            a.file,
            a.expr_span.clone(),
            format!("`{}` must be {what}, found {found}", a.name),
        );
    }

    /// A whole number in `lo..=hi` (also written as a string).
    fn check_int(&mut self, a: &RawAttr, value: Value, lo: i64, hi: i64) -> Option<Value> {
        let ty = Ty::Int(lo, hi);
        let found = value_kind(&value);
        {
            // An integer too large for i64 (`1e20`, `99999999999999999999`) is out of range
            // like any other, shown as written: never saturated to i64::MAX.
            let huge = |f: f64| f.fract() == 0.0 && !(-9.2e18..9.2e18).contains(&f);
            let (n, shown_n) = match &value {
                Value::Number(num) => match num.as_i64() {
                    Some(i) => (Some(i), i.to_string()),
                    None => match num.as_f64() {
                        Some(f) if huge(f) => {
                            let written = match &a.expr {
                                hcl_edit::expr::Expression::Number(_) => {
                                    slice(&self.files[a.file].text, a.expr_span.clone()).to_string()
                                }
                                _ => num.to_string(),
                            };
                            (None, written)
                        }
                        Some(f) if f.fract() == 0.0 => (Some(f as i64), num.to_string()),
                        _ => (None, String::new()),
                    },
                },
                Value::String(s) => match s.parse::<i64>() {
                    Ok(i) => (Some(i), i.to_string()),
                    Err(_) if s.parse::<f64>().is_ok_and(huge) => (None, s.clone()),
                    Err(_) => (None, String::new()),
                },
                _ => (None, String::new()),
            };
            match n {
                Some(n) if (lo..=hi).contains(&n) => Some(Value::from(n)),
                None if shown_n.is_empty() => {
                    self.type_mismatch(a, &ty.describe(), found);
                    None
                }
                _ => {
                    self.err(
                        a.file,
                        a.expr_span.clone(),
                        format!(
                            "`{}` must be from {lo} to {hi}, found {}",
                            a.name,
                            shown(&shown_n)
                        ),
                    );
                    None
                }
            }
        }
    }

    fn check_string_list(&mut self, a: &RawAttr, value: Value) -> Option<Value> {
        let ty = Ty::StringList;
        let found = value_kind(&value);
        match value {
            Value::Array(ref items) => {
                let mut ok = true;
                for (i, it) in items.iter().enumerate() {
                    if !matches!(it, Value::String(_)) {
                        ok = false;
                        let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                        self.err(
                            a.file,
                            span,
                            format!(
                                "`{}` must be a list of strings, element {} is {}",
                                a.name,
                                i + 1,
                                value_kind(it)
                            ),
                        );
                    }
                }
                ok.then_some(value)
            }
            Value::String(_) => {
                self.type_mismatch(
                    a,
                    "a list of strings (write it in brackets: [\"…\"])",
                    found,
                );
                None
            }
            _ => {
                self.type_mismatch(a, &ty.describe(), found);
                None
            }
        }
    }

    fn check_string_map(&mut self, a: &RawAttr, value: Value) -> Option<Value> {
        let ty = Ty::StringMap;
        let found = value_kind(&value);
        match value {
            Value::Object(ref m) => {
                if let Some((k, v)) = m.iter().find(|(_, v)| !matches!(v, Value::String(_))) {
                    self.err(
                        a.file,
                        a.expr_span.clone(),
                        format!(
                            "`{}` must be a map of strings, {k_c} is {}",
                            a.name,
                            value_kind(v),
                            k_c = code(k)
                        ),
                    );
                    None
                } else {
                    Some(value)
                }
            }
            _ => {
                self.type_mismatch(a, &ty.describe(), found);
                None
            }
        }
    }
}

pub(super) fn elem_span(expr: &hcl_edit::expr::Expression, i: usize) -> Option<Range<usize>> {
    match expr {
        hcl_edit::expr::Expression::Array(arr) => arr.iter().nth(i).and_then(|e| e.span()),
        _ => None,
    }
}

pub(super) fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
