//! The command line's grammar: the clap definitions (the one table the help, the man page
//! and the completion scripts are generated from) and [`terraform_style_args`], which
//! accepts Terraform's single-dash long options before clap parses.
//!
//! Guarantee: every spelling the help shows parses as the help says. A single-dash long
//! option (`-out=FILE`, `-auto-approve`, `-replace=node.NAME`, `-detailed-exitcode`, …) is
//! read as its `--` form when the name is one of the long options of the table; any other
//! single-dash word is left to clap, which rejects what it does not know. There is no
//! one-letter `-o`: `-out=p.json` must never parse as `-o` with the value `ut=p.json`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Declarative plan/apply reconciler for k3s high-availability clusters.
#[derive(Debug, Parser)]
#[command(
    name = "k3splan",
    version,
    about,
    long_about = None,
    after_help = "Long options also take Terraform's single-dash spelling: -out=FILE, -auto-approve, -replace=node.NAME, -detailed-exitcode, -json, -no-color, …"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Topology: a file, or a directory whose *.hcl files are read in name order.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = ".",
        env = "K3SPLAN_CONFIG"
    )]
    pub config: PathBuf,
    /// State file (local backend) [default: state/k3splan.state.json]
    #[arg(long, global = true, env = "K3SPLAN_STATE")]
    pub state: Option<PathBuf>,
    /// No colours in the output (also when NO_COLOR is set).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// More logging: -v info, -vv debug, -vvv trace (to stderr).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the topology files: syntax, schema and semantic rules. No network access.
    Validate {
        /// Print the diagnostics as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite topology files in the canonical format.
    Fmt {
        /// Change nothing; exit 1 and list the files that are not formatted.
        #[arg(long)]
        check: bool,
        /// Print a diff of the changes.
        #[arg(long)]
        diff: bool,
        /// Files or directories (default: the --config path).
        paths: Vec<PathBuf>,
    },
    /// Compare the cluster with the topology and print the ordered plan.
    Plan(PlanArgs),
    /// Carry out a plan (computed now, or saved with `plan -out=FILE`).
    Apply(ApplyArgs),
    /// Render a saved plan, or the current state.
    Show {
        /// A plan saved with `plan -out=FILE`.
        plan_file: Option<PathBuf>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// How to render a saved plan: text, json, or markdown (a merge-request comment).
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<PlanFormat>,
    },
    /// Inspect the state.
    #[command(subcommand)]
    State(StateCommand),
    /// Release a state lock left by a dead run.
    ForceUnlock {
        /// The lock ID printed by the command that could not take the lock.
        lock_id: String,
    },
    /// Write the topology of a running cluster (and record it in a new state).
    Import(ImportArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write every page into a directory.
    Man {
        /// Write k3splan.1 and one k3splan-COMMAND.1 per command into DIR.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the version.
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the plan's steps and their dependencies as a Graphviz graph.
    Graph(GraphArgs),
    /// Look for slow outages: certificate expiry, old snapshots, etcd DB size, stuck
    /// learners, orphaned members, leftover remove annotations, VIP holders, other managers,
    /// version skew. Exit 0 ok, 1 error or a check that could not be made, 2 warnings,
    /// 3 critical.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the report as JSON (docs/check.md describes the schema).
    #[arg(long)]
    pub json: bool,
    /// Add unknown SSH host keys to known_hosts (like OpenSSH's accept-new); a changed key
    /// is still refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// How many hosts to reach over SSH at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub parallelism: u16,
}

/// Options shared by `plan` and `apply`: what is observed and how the planner may read it.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Nodes whose unreachable hosts may be treated as gone (destruction is never planned
    /// from an unknown host otherwise).
    #[arg(long, value_name = "NODE")]
    pub allow_unreachable: Vec<String>,
    /// Rebuild this node (drain, delete, remove its etcd member, uninstall, join again),
    /// in this plan or apply only. Repeatable; `-replace=node.NAME` as in Terraform.
    #[arg(long = "replace", value_name = "node.NAME")]
    pub replace: Vec<String>,
    /// Add unknown SSH host keys to known_hosts (like OpenSSH's accept-new); a changed key
    /// is still refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// How many hosts to reach over SSH at once (connect, observe, act).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub parallelism: u16,
    /// Seconds a lost node must have been NotReady before a PVC pinned to it is deleted
    /// (default 300: Kubernetes' taint-eviction delay; a kubelet restart or a network blip
    /// turns a Node NotReady within ~50 s).
    #[arg(long, value_name = "SECONDS", env = "K3SPLAN_REBIND_MIN_NOT_READY")]
    pub rebind_min_not_ready: Option<u64>,
    #[command(flatten)]
    pub recover: RecoverArgs,
}

/// Quorum-loss recovery (issue 16, docs/recovery.md).
#[derive(Debug, Args, Default)]
pub struct RecoverArgs {
    /// Plan (or apply) a quorum-loss recovery instead of the normal plan: survey what
    /// survives, reset etcd from the most advanced member (or a snapshot), rejoin the others.
    #[arg(long)]
    pub recover: bool,
    /// With --recover: restore this snapshot (its file name in a server's
    /// <data-dir>/server/db/snapshots, or its path) instead of a member's own data.
    #[arg(long, value_name = "NAME", requires = "recover")]
    pub from_snapshot: Option<String>,
    /// With --recover: reset from this server's own data (needed when the surviving data
    /// belongs to different clusters).
    #[arg(
        long,
        value_name = "NODE",
        requires = "recover",
        conflicts_with = "from_snapshot"
    )]
    pub recover_from: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Save the plan to FILE for `apply FILE` (`--out FILE`, `--out=FILE` or `-out=FILE`).
    #[arg(long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Output format: text (default), json (as --json), or markdown (a merge-request
    /// comment, within GitHub's and GitLab's size limits).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<PlanFormat>,
}

/// How `plan` and `show PLAN_FILE` render a plan (issue 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

impl PlanFormat {
    /// The format asked for: `--format` wins, `--json` is `json`, else text.
    pub fn resolve(format: Option<PlanFormat>, json: bool) -> PlanFormat {
        match (format, json) {
            (Some(f), _) => f,
            (None, true) => PlanFormat::Json,
            (None, false) => PlanFormat::Text,
        }
    }
}

/// `k3splan graph [PLAN_FILE]` (issue 18).
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// A plan saved with `plan -out=FILE` (default: observe the cluster and plan now).
    pub plan_file: Option<PathBuf>,
    /// dot (Graphviz source, default) or svg (needs Graphviz's `dot` on PATH).
    #[arg(long, value_enum, default_value = "dot", value_name = "FORMAT")]
    pub format: GraphFormat,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// What `graph` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Svg,
}

/// `k3splan import [--out DIR]` (issue 18).
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Directory to write the topology into (`DIR/cluster.hcl`) [default: the current
    /// directory].
    #[arg(long = "out", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace an existing state (a new lineage), and an existing cluster.hcl.
    #[arg(long)]
    pub force: bool,
    /// Where the cluster's API is (a kubeconfig; default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// etcd client CA (k3s: <data-dir>/server/tls/etcd/server-ca.crt).
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// etcd client certificate (k3s: <data-dir>/server/tls/etcd/client.crt).
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// etcd client key (k3s: <data-dir>/server/tls/etcd/client.key).
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// Add unknown SSH host keys to known_hosts (like OpenSSH's accept-new); a changed key
    /// is still refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// How many hosts to reach over SSH at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub parallelism: u16,
}

impl ImportArgs {
    /// The observation settings `import` shares with `plan` (it plans nothing: no
    /// `--allow-unreachable`, `-replace` or rebind threshold).
    pub fn live(&self) -> LiveArgs {
        LiveArgs {
            allow_unreachable: Vec::new(),
            replace: Vec::new(),
            accept_new_host_keys: self.accept_new_host_keys,
            parallelism: self.parallelism,
            rebind_min_not_ready: None,
            recover: RecoverArgs::default(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `plan -out=FILE`.
    pub plan_file: Option<PathBuf>,
    /// Skip the interactive approval.
    #[arg(long)]
    pub auto_approve: bool,
    /// Print a line-delimited JSON event stream on stdout instead of text (needs
    /// --auto-approve or a saved plan: it cannot prompt).
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the state lock, e.g. 30s, 5m, 1m30s.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the objects the state records.
    List,
    /// Show one object of the state.
    Show {
        /// Address, e.g. node.lzx-ha-env-2.
        address: String,
    },
}

/// A duration as humantime reads it (`30s`, `5m`, `1m30s`, `500ms`); a bare number is
/// seconds, as before humantime.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, humantime::DurationError> {
    let s = s.trim();
    match s.parse::<u64>() {
        Ok(secs) => Ok(std::time::Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(s),
    }
}

/// The long option names of the whole table (every subcommand's, `help` and `version`).
fn long_names() -> BTreeSet<String> {
    fn walk(c: &clap::Command, names: &mut BTreeSet<String>) {
        for a in c.get_arguments() {
            names.extend(
                a.get_long_and_visible_aliases()
                    .into_iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
        for s in c.get_subcommands() {
            walk(s, names);
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut names = BTreeSet::new();
    walk(&cmd, &mut names);
    names
}

/// Rewrites Terraform's single-dash long options (`-out=FILE`, `-replace node.NAME`,
/// `-auto-approve`) to their `--` form, for every long option of the table. One-letter
/// options (`-c`, `-vv`) and everything after `--` are untouched.
pub fn terraform_style_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let names = long_names();
    let mut after_dashes = false;
    args.into_iter()
        .map(|a| {
            if after_dashes {
                return a;
            }
            let Some(s) = a.to_str() else { return a };
            if s == "--" {
                after_dashes = true;
                return a;
            }
            let Some(rest) = s.strip_prefix('-').filter(|r| !r.starts_with('-')) else {
                return a;
            };
            let name = rest.split_once('=').map_or(rest, |(n, _)| n);
            if name.len() > 1 && names.contains(name) {
                format!("-{s}").into()
            } else {
                a
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(terraform_style_args(v.iter().map(OsString::from)))
    }

    /// Issue 13: Terraform's spelling `-replace=node.NAME` (repeatable) parses, for `plan`
    /// and `apply`, as `--replace` does.
    #[test]
    fn issue13_terraform_style_replace_flag_parses() {
        let cli = parse(&[
            "k3splan",
            "plan",
            "-replace=node.a",
            "-replace",
            "node.b",
            "--replace=node.c",
        ])
        .expect("parses");
        let Command::Plan(p) = cli.command else {
            panic!("plan")
        };
        assert_eq!(p.live.replace, ["node.a", "node.b", "node.c"]);
        let cli = parse(&["k3splan", "apply", "-replace=node.a"]).unwrap();
        let Command::Apply(a) = cli.command else {
            panic!("apply")
        };
        assert_eq!(a.live.replace, ["node.a"]);
        // After `--`, nothing is rewritten.
        let args = terraform_style_args(["k3splan", "--", "-replace=x"].map(OsString::from));
        assert_eq!(args[2], OsString::from("-replace=x"));
    }

    /// `-out=p.json` is the `--out` the help shows, never `-o` + `ut=p.json`; every
    /// spelling the help names gives the same file, and a one-letter `-o` is refused.
    #[test]
    fn out_spellings_agree_with_the_help() {
        for spelling in [
            &["-out=p.json"][..],
            &["-out", "p.json"],
            &["--out=p.json"],
            &["--out", "p.json"],
        ] {
            let mut v = vec!["k3splan", "plan"];
            v.extend_from_slice(spelling);
            let Command::Plan(p) = parse(&v).expect("parses").command else {
                panic!("plan")
            };
            assert_eq!(p.out, Some(PathBuf::from("p.json")), "{spelling:?}");
        }
        assert!(parse(&["k3splan", "plan", "-o", "p.json"]).is_err());
        assert!(parse(&["k3splan", "plan", "-ut=p.json"]).is_err());
    }

    #[test]
    fn terraform_single_dash_flags_parse() {
        let cli = parse(&[
            "k3splan",
            "apply",
            "-auto-approve",
            "-lock-timeout=1m30s",
            "-no-color",
            "-json",
            "-c",
            "x.hcl",
            "-vv",
        ])
        .expect("parses");
        assert!(cli.global.no_color);
        assert_eq!(cli.global.verbose, 2);
        let Command::Apply(a) = cli.command else {
            panic!("apply")
        };
        assert!(a.auto_approve && a.json);
        assert_eq!(a.lock_timeout, std::time::Duration::from_secs(90));
        let Command::Plan(p) = parse(&["k3splan", "plan", "-detailed-exitcode"])
            .unwrap()
            .command
        else {
            panic!("plan")
        };
        assert!(p.detailed_exitcode);
        assert!(parse(&["k3splan", "apply", "-lock-timeout=soon"]).is_err());
        assert_eq!(
            parse_duration("30").unwrap(),
            std::time::Duration::from_secs(30)
        );
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
    }
}
