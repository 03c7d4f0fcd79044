//! The Markdown view (issue 18): `plan -format=markdown` and `show -format=markdown
//! PLAN_FILE` print the merge-request comment ([`crate::render::markdown`]) and nothing else
//! on stdout, so that it can be posted as it is.

use std::io::{self, Write};
use std::path::Path;

use super::{Out, Palette, PlanView, plan_view, stdout, write_out};
use crate::cli::CliError;
use crate::plan::{Plan, Refusal};

/// The plan view for a `-format` (issue 18): text, JSON, or a Markdown comment.
pub fn plan_view_for(format: crate::cli::args::PlanFormat, palette: Palette) -> Box<dyn PlanView> {
    match format {
        crate::cli::args::PlanFormat::Markdown => Box::new(MarkdownPlanView { out: stdout() }),
        crate::cli::args::PlanFormat::Json => plan_view(true, palette),
        crate::cli::args::PlanFormat::Text => plan_view(false, palette),
    }
}

/// `plan -format=markdown` and `show -format=markdown PLAN_FILE`: the merge-request
/// comment and nothing else on stdout (it is meant to be posted as it is); the notes about
/// a saved plan go to stderr.
pub struct MarkdownPlanView {
    pub out: Out,
}

impl PlanView for MarkdownPlanView {
    fn plan(&mut self, result: &Result<Plan, Refusal>) -> Result<(), CliError> {
        let md = crate::render::markdown(result, crate::render::MarkdownOptions::default());
        write_out(&mut self.out, md.as_bytes())
    }
    fn saved(&mut self, path: &Path) -> Result<(), CliError> {
        let _ = writeln!(io::stderr(), "Saved the plan to: {}", path.display());
        Ok(())
    }
    fn not_saved(&mut self) -> Result<(), CliError> {
        let _ = writeln!(io::stderr(), "The plan is incomplete: it was not saved.");
        Ok(())
    }
}
