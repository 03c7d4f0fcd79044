//! Golden files: one comparison and one way to accept a change, for every golden test
//! (`plan_golden`, `config_fixtures`, `state`).
//!
//! `K3SPLAN_BLESS=1 cargo nextest run -p k3splan --test NAME` rewrites the golden files
//! from what the code produces now (review the diff with `git diff`, commit what is right);
//! `K3SPLAN_BLESS=fixtures` also regenerates the generated inputs (`tests/fixtures/observed/`
//! from `plan_golden`'s builders), which overwrites hand edits there.
//!
//! Guarantees: without `K3SPLAN_BLESS` nothing is written; a golden file is compared byte for
//! byte, and a mismatch names the file and shows a unified diff (golden → got). Caveat:
//! insta is not used because its snapshot files carry a metadata header (or a second `.snap`
//! file for raw ones), so the existing golden files could not stay byte-identical at their
//! paths, and they are also the documented examples (docs/plan-format.md, docs/state.md).

use std::path::Path;

/// Whether this run rewrites golden files (`K3SPLAN_BLESS` set, non-empty).
pub fn blessing() -> bool {
    std::env::var_os("K3SPLAN_BLESS").is_some_and(|v| !v.is_empty())
}

/// Whether this run also regenerates generated test inputs (`K3SPLAN_BLESS=fixtures`).
pub fn blessing_fixtures() -> bool {
    std::env::var_os("K3SPLAN_BLESS").is_some_and(|v| v == "fixtures")
}

/// Compares `actual` with the golden file at `path` (or writes it when blessing); the
/// failure message when they differ.
pub fn compare(path: &Path, actual: &str) -> Option<String> {
    if blessing() {
        write(path, actual);
    }
    let want = match std::fs::read_to_string(path) {
        Ok(want) => want,
        Err(e) => {
            return Some(format!(
                "{}: {e} (create with K3SPLAN_BLESS=1)",
                path.display()
            ));
        }
    };
    (want != actual).then(|| {
        let diff = similar::TextDiff::from_lines(want.as_str(), actual)
            .unified_diff()
            .header("golden", "got")
            .to_string();
        format!(
            "{} differs from the golden file (K3SPLAN_BLESS=1 to accept):\n{diff}",
            path.display()
        )
    })
}

/// Panics unless `actual` equals the golden file at `path` (written first when blessing).
#[track_caller]
pub fn assert_matches(path: &Path, actual: &str) {
    if let Some(failure) = compare(path, actual) {
        panic!("{failure}");
    }
}

/// Reads a generated input, regenerating it first with `K3SPLAN_BLESS=fixtures`.
pub fn fixture(path: &Path, generate: impl FnOnce() -> String) -> String {
    if blessing_fixtures() {
        write(path, &generate());
    }
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (create with K3SPLAN_BLESS=fixtures)",
            path.display()
        )
    })
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
