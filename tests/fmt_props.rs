//! Property tests of `k3splan fmt`: whatever the indentation, spacing around `=` and blank
//! lines of a canonical file, formatting gives the canonical file back; and formatting is
//! idempotent.

use std::path::Path;

use k3splan::config::fmt::format_source;
use proptest::prelude::*;

fn canonical_examples() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let dir = e.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|x| x == "hcl") {
                out.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    out.sort();
    out
}

/// Re-indents each line, changes the spaces around the first `=` and adds blank lines, from
/// a stream of random choices.
fn perturb(src: &str, choices: &[u8]) -> String {
    let mut out = "\n".repeat((choices[0] % 3) as usize);
    for (i, line) in src.lines().enumerate() {
        let c = choices[i % choices.len()];
        let t = line.trim();
        out.push_str(&" ".repeat((c % 7) as usize));
        match t.find(" = ") {
            Some(pos) if !t.starts_with('#') && c.is_multiple_of(3) => {
                let (k, v) = t.split_at(pos);
                out.push_str(k.trim_end());
                out.push_str(if c.is_multiple_of(2) { "=" } else { "   =  " });
                out.push_str(v[3..].trim_start());
            }
            _ => out.push_str(t),
        }
        if c.is_multiple_of(5) {
            out.push_str("   ");
        }
        out.push('\n');
        // Extra blank lines only where there is one already: a blank line between two
        // attributes ends their alignment group, so adding one changes the canonical form.
        if t.is_empty() && c.is_multiple_of(2) {
            out.push_str("\n  \n");
        }
    }
    out
}

#[test]
fn examples_are_canonical() {
    for ex in canonical_examples() {
        assert_eq!(format_source(&ex).unwrap(), ex);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn formatting_restores_the_canonical_form(choices in proptest::collection::vec(any::<u8>(), 1..64)) {
        for ex in canonical_examples() {
            let messy = perturb(&ex, &choices);
            let once = format_source(&messy).unwrap();
            prop_assert_eq!(&once, &ex);
            prop_assert_eq!(format_source(&once).unwrap(), once.clone());
        }
    }
}
