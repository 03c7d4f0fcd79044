//! `k3splan import` (issue 18).

use super::CliError;
use super::args::{GlobalArgs, ImportArgs};
use super::view::Palette;

/// `k3splan import`.
pub fn cmd_import(_g: &GlobalArgs, _a: &ImportArgs, _palette: Palette) -> Result<u8, CliError> {
    Err(CliError::NotImplemented("import"))
}
