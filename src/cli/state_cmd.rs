//! `k3splan show`, `state list|show` and `force-unlock`: reading saved plans and the state.

use k3splan_engine::state::Backend as _;
use std::fmt::Write as _;
use std::path::Path;

use crate::state::{State, StateBackend};

use super::args::GlobalArgs;
use super::ops::{read_saved_plan, state_backend, topology_if_valid};
use super::view::PlanView;
use super::{CliError, EXIT_OK, out};

/// `k3splan show [FILE]`: a saved plan (through `view`), or the state.
pub fn cmd_show(
    g: &GlobalArgs,
    plan_file: Option<&Path>,
    json: bool,
    view: &mut dyn PlanView,
) -> Result<u8, CliError> {
    if let Some(p) = plan_file {
        view.plan(&Ok(read_saved_plan(p)?.plan))?;
        return Ok(EXIT_OK);
    }
    let backend = state_backend(g, topology_if_valid(g).as_ref())?;
    match backend.read()? {
        Some(s) if json => {
            out((serde_json::to_string_pretty(&s).expect("state serializes") + "\n").as_bytes())?
        }
        Some(s) => out(state_text(&backend, &s).as_bytes())?,
        None => out(b"No state.\n")?,
    }
    Ok(EXIT_OK)
}

/// The state as `show` prints it: where it is, its addresses, the last snapshot.
fn state_text(backend: &StateBackend, s: &State) -> String {
    let mut t = format!(
        "# state {} (serial {}, lineage {})\n",
        backend.location(),
        s.serial,
        s.lineage
    );
    for a in s.addresses() {
        let _ = writeln!(t, "{a}");
    }
    if let Some(snap) = &s.last_snapshot {
        let _ = writeln!(
            t,
            "last etcd snapshot: {} ({} bytes, sha256 {}, {})",
            snap.path, snap.size, snap.sha256, snap.taken_at
        );
    }
    t
}

/// `k3splan state list|show`.
pub fn cmd_state(g: &GlobalArgs, show: Option<&str>) -> Result<u8, CliError> {
    let backend = state_backend(g, topology_if_valid(g).as_ref())?;
    let Some(s) = backend.read()? else {
        return Err(CliError::NoState(backend.location()));
    };
    match show {
        None => {
            for a in s.addresses() {
                out(format!("{a}\n").as_bytes())?;
            }
        }
        Some(addr) => {
            let v = s
                .show(addr)
                .ok_or_else(|| CliError::NoSuchAddress(addr.to_string()))?;
            out(format!("{}\n", serde_json::to_string_pretty(&v).expect("json")).as_bytes())?
        }
    }
    Ok(EXIT_OK)
}

/// `k3splan force-unlock ID`.
pub fn cmd_force_unlock(g: &GlobalArgs, id: &str) -> Result<u8, CliError> {
    let backend = state_backend(g, topology_if_valid(g).as_ref())?;
    backend.force_unlock(id)?;
    Ok(EXIT_OK)
}
