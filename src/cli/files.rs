//! `k3splan validate` and `k3splan fmt`: the commands that read only the topology files.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::config::fmt::format_source;
use crate::config::{self, Diagnostics, LoadError};

use super::view::{SUCCESS, styled};
use super::{CliError, EXIT_ERROR, EXIT_OK, out};

fn print_diagnostics(d: &Diagnostics, color: bool) {
    if !d.is_empty() {
        let _ = io::stderr().write_all(d.render(color).as_bytes());
    }
}

fn invalid(d: &Diagnostics) -> CliError {
    CliError::Invalid {
        errors: d.errors(),
        warnings: d.warnings(),
    }
}

/// Loads the topology and fails (after printing the diagnostics) when it has errors.
pub fn load_valid(path: &Path, color: bool) -> Result<config::Loaded, CliError> {
    let loaded = config::load_path(path, config::process_env())?;
    print_diagnostics(&loaded.diagnostics, color);
    if loaded.diagnostics.has_errors() {
        return Err(invalid(&loaded.diagnostics));
    }
    Ok(loaded)
}

/// The diagnostics as `validate --json` prints them.
fn diagnostics_json(d: &Diagnostics) -> serde_json::Value {
    let items: Vec<serde_json::Value> = d
        .iter()
        .map(|x| {
            serde_json::json!({
                "severity": x.severity.to_string(),
                "file": x.path.display().to_string(),
                "line": x.line,
                "column": x.col,
                "message": x.message,
                "notes": x.notes,
            })
        })
        .collect();
    serde_json::json!({
        "valid": !d.has_errors(),
        "error_count": d.errors(),
        "warning_count": d.warnings(),
        "diagnostics": items,
    })
}

/// `k3splan validate`.
pub fn cmd_validate(
    path: &Path,
    json: bool,
    color_err: bool,
    color_out: bool,
) -> Result<u8, CliError> {
    let loaded = config::load_path(path, config::process_env())?;
    let d = &loaded.diagnostics;
    if json {
        let doc = serde_json::to_string_pretty(&diagnostics_json(d)).unwrap_or_default();
        out(format!("{doc}\n").as_bytes())?;
        return Ok(if d.has_errors() { EXIT_ERROR } else { EXIT_OK });
    }
    print_diagnostics(d, color_err);
    if d.has_errors() {
        return Err(invalid(d));
    }
    let ok = styled(color_out, SUCCESS);
    let t = loaded.topology.as_ref();
    let nodes = t.map(|t| t.nodes.len()).unwrap_or(0);
    let voters = t.map(|t| t.etcd_nodes().count()).unwrap_or(0);
    let warn = match d.warnings() {
        0 => String::new(),
        1 => " (1 warning)".into(),
        n => format!(" ({n} warnings)"),
    };
    out(format!(
        "{ok}Success!{ok:#} The configuration is valid{warn}: {nodes} node(s), {voters} etcd member(s).\n"
    )
    .as_bytes())?;
    Ok(EXIT_OK)
}

/// `k3splan fmt`.
pub fn cmd_fmt(paths: &[PathBuf], check: bool, diff: bool) -> Result<u8, CliError> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(hcl_files_recursive(p)?);
    }
    let mut unformatted = 0;
    let mut failed = None;
    for f in &files {
        let src = std::fs::read_to_string(f).map_err(|source| CliError::Io {
            path: f.clone(),
            source,
        })?;
        let formatted = match format_source(&src) {
            Ok(s) => s,
            Err(source) => {
                let _ = writeln!(io::stderr(), "{}:{source}", f.display());
                failed = Some(CliError::Fmt {
                    path: f.clone(),
                    source,
                });
                continue;
            }
        };
        if formatted == src {
            continue;
        }
        unformatted += 1;
        out(format!("{}\n", f.display()).as_bytes())?;
        if diff {
            let name = f.display().to_string();
            let d = similar::TextDiff::from_lines(&src, &formatted);
            out(d.unified_diff().header(&name, &name).to_string().as_bytes())?;
        }
        if !check {
            write_atomic(f, formatted.as_bytes())?;
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if check && unformatted > 0 {
        return Err(CliError::Unformatted(unformatted));
    }
    Ok(EXIT_OK)
}

/// `*.hcl` files under `path` (the file itself, or every `*.hcl` below the directory).
fn hcl_files_recursive(path: &Path) -> Result<Vec<PathBuf>, CliError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|source| CliError::Io {
            path: dir.clone(),
            source,
        })?;
        for e in rd.flatten() {
            let p = e.path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if p.is_dir() && !hidden {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "hcl") {
                found.push(p);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(LoadError::NoFiles {
            path: path.to_path_buf(),
        }
        .into());
    }
    Ok(found)
}

/// Replaces a file atomically, keeping its permissions (the engine's one atomic write).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let io_err = |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    };
    let perms = std::fs::metadata(path).map_err(io_err)?.permissions();
    k3splan_engine::atomic::write_atomic(path, bytes, perms).map_err(io_err)
}
