//! `k3splan man`: manual pages generated with clap_mangen from the same clap table as the
//! help and the completion scripts, so the three never disagree.
//!
//! `k3splan man` prints `k3splan(1)` (roff) on stdout; `k3splan man --dir DIR` writes
//! `k3splan.1` and one `k3splan-COMMAND.1` per command into DIR (created if missing).

use std::path::Path;

use clap::CommandFactory;

use super::args::Cli;
use super::{CliError, EXIT_OK, out};

/// The roff of `cmd`'s page.
fn render(cmd: clap::Command) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(CliError::Output)?;
    Ok(buf)
}

/// Every page: (file name, roff).
pub fn pages() -> Result<Vec<(String, Vec<u8>)>, CliError> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut pages = vec![("k3splan.1".to_string(), render(cmd.clone())?)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("k3splan-{}", sub.get_name());
        pages.push((format!("{name}.1"), render(sub.clone().name(name))?));
    }
    Ok(pages)
}

/// `k3splan man [--dir DIR]`.
pub fn cmd_man(dir: Option<&Path>) -> Result<u8, CliError> {
    let Some(dir) = dir else {
        out(&render(Cli::command())?)?;
        return Ok(EXIT_OK);
    };
    let io_err = |source| CliError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_err)?;
    for (name, roff) in pages()? {
        std::fs::write(dir.join(&name), roff).map_err(|source| CliError::Io {
            path: dir.join(&name),
            source,
        })?;
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main page lists every command, and each command has its own page.
    #[test]
    fn man_page_mentions_every_subcommand() {
        // roff escapes every `-` as `\-`.
        let page = String::from_utf8(render(Cli::command()).unwrap())
            .unwrap()
            .replace("\\-", "-");
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            assert!(
                page.contains(&format!("k3splan-{}(1)", sub.get_name())),
                "k3splan(1) does not mention `{}`",
                sub.get_name()
            );
        }
        let names: Vec<String> = pages().unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"k3splan-apply.1".to_string()), "{names:?}");
        assert!(
            names.contains(&"k3splan-force-unlock.1".to_string()),
            "{names:?}"
        );
    }
}
