//! Issue 18: `plan -format=markdown` / `show -format=markdown PLANFILE`, a plan as a
//! merge-request comment.
//!
//! The golden comments of the five seeds (`tests/golden/markdown/`, written by
//! `plan_golden`) are parsed with pulldown-cmark and checked for structure: one summary
//! heading, a `<details>` block closed as often as opened, every fence closed by its own
//! fence (never by the end of the document), one `####` heading per step, the destroy
//! warning exactly when something is destroyed. Large plans are cut to GitHub's and
//! GitLab's comment limits between whole blocks, and stay well-formed at every limit.

mod common;

use std::ops::Range;
use std::path::PathBuf;

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use k3splan::apply::{SAVED_PLAN_VERSION, SavedPlan};
use k3splan::config::Role;
use k3splan::observed::{Fact, HostState};
use k3splan::plan::testkit::*;
use k3splan::plan::{
    Action, ActionReason, Address, Operation, Plan, PlanOptions, Refusal, Rule, Step, Violation,
    plan,
};
use k3splan::render::{self, GITHUB_COMMENT_LIMIT, GITLAB_COMMENT_LIMIT, MarkdownOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the structure check found in a comment.
#[derive(Debug, Default)]
struct Shape {
    /// Text of every heading, with its level.
    headings: Vec<(u8, String)>,
    /// Info strings of the fenced code blocks.
    fences: Vec<String>,
    details_open: usize,
    details_close: usize,
    tables: usize,
    /// The text of the blockquotes (destroy warning, truncation notes).
    quotes: Vec<String>,
}

/// Parses `md` (CommonMark + GFM tables) and checks what must hold for any comment k3splan
/// writes; panics with the comment when something does not.
fn shape(md: &str) -> Shape {
    let mut s = Shape::default();
    let mut heading: Option<(u8, String)> = None;
    let mut quote_depth = 0;
    let mut quote = String::new();
    let mut fence_range: Option<(Range<usize>, String)> = None;
    for (ev, range) in Parser::new_ext(md, Options::ENABLE_TABLES).into_offset_iter() {
        match ev {
            Event::Start(Tag::Heading { level, .. }) => {
                let l = match level {
                    HeadingLevel::H1 => 1,
                    HeadingLevel::H2 => 2,
                    HeadingLevel::H3 => 3,
                    HeadingLevel::H4 => 4,
                    HeadingLevel::H5 => 5,
                    HeadingLevel::H6 => 6,
                };
                heading = Some((l, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => s.headings.push(heading.take().unwrap()),
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, h)) = heading.as_mut() {
                    h.push_str(&t);
                }
                if quote_depth > 0 {
                    quote.push_str(&t);
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(i) => i.to_string(),
                    CodeBlockKind::Indented => {
                        panic!("an indented code block (a stray indentation?):\n{md}")
                    }
                };
                fence_range = Some((range.clone(), info));
            }
            Event::End(TagEnd::CodeBlock) => {
                let (r, info) = fence_range.take().unwrap();
                let block = &md[r];
                let open = block.lines().next().unwrap();
                let ticks: String = open.chars().take_while(|c| *c == '`').collect();
                assert!(ticks.len() >= 3, "fence {open:?}");
                let last = block.trim_end_matches('\n').lines().last().unwrap();
                assert_eq!(
                    last.trim(),
                    ticks,
                    "a fence closed by the end of the document or another block, not its own closing fence:\n{block}"
                );
                s.fences.push(info);
            }
            Event::Html(h) | Event::InlineHtml(h) => {
                s.details_open += h.matches("<details>").count();
                s.details_close += h.matches("</details>").count();
                assert!(
                    !h.contains("<script") && !h.contains("<img"),
                    "unexpected HTML {h}"
                );
            }
            Event::Start(Tag::Table(_)) => s.tables += 1,
            Event::Start(Tag::BlockQuote(_)) => {
                quote_depth += 1;
            }
            Event::End(TagEnd::BlockQuote(_)) => {
                quote_depth -= 1;
                if quote_depth == 0 {
                    s.quotes.push(std::mem::take(&mut quote));
                }
            }
            _ => {}
        }
    }
    assert!(fence_range.is_none(), "unclosed fence:\n{md}");
    assert_eq!(
        s.details_open, s.details_close,
        "<details> opened {} times, closed {}:\n{md}",
        s.details_open, s.details_close
    );
    assert!(s.details_open <= 1, "{md}");
    let first = s
        .headings
        .first()
        .unwrap_or_else(|| panic!("no heading:\n{md}"));
    assert_eq!(first.0, 3, "the summary is a ### heading: {first:?}");
    assert!(
        first.1.starts_with("k3splan plan") || first.1.starts_with("k3splan refuses"),
        "{first:?}"
    );
    s
}

fn steps_in(s: &Shape) -> usize {
    s.headings.iter().filter(|(l, _)| *l == 4).count()
}

fn destroy_warning(s: &Shape) -> Option<&String> {
    s.quotes.iter().find(|q| q.contains("This plan destroys"))
}

#[test]
fn golden_markdown_plans_of_the_five_seeds_are_well_formed() {
    // (seed, destroys something, has a drift table of attributes that differ)
    let cases = [
        ("seed000", true, false),
        ("seed001", false, true),
        ("seed002", true, false),
        ("seed003", false, true),
        ("seed004", true, true),
    ];
    for (name, destroys, drift) in cases {
        let path = root().join(format!("tests/golden/markdown/{name}.md"));
        let md = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (bless plan_golden)", path.display()));
        let s = shape(&md);
        let text =
            std::fs::read_to_string(root().join(format!("tests/golden/plan/{name}.txt"))).unwrap();
        let steps = text
            .lines()
            .filter(|l| {
                l.strip_prefix("  # ")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        assert_eq!(steps_in(&s), steps, "{name}: one #### heading per step");
        assert_eq!(s.details_open, 1, "{name}: the steps are collapsible");
        let summary = text
            .lines()
            .find(|l| l.starts_with("Plan: "))
            .unwrap()
            .trim_start_matches("Plan: ")
            .trim_end_matches('.');
        assert!(
            s.headings[0].1.ends_with(summary),
            "{name}: {:?} vs {summary}",
            s.headings[0]
        );
        assert_eq!(destroy_warning(&s).is_some(), destroys, "{name}");
        if destroys {
            // The warning comes before the steps.
            assert!(
                md.find("This plan destroys").unwrap() < md.find("<details>").unwrap(),
                "{name}"
            );
        }
        assert_eq!(
            s.headings
                .iter()
                .any(|(l, h)| *l == 3 && h == "Changed outside k3splan"),
            drift,
            "{name}"
        );
        assert_eq!(s.tables, usize::from(drift), "{name}");
        // The quorum line, and file diffs as diff blocks.
        assert!(md.contains("**Quorum:**"), "{name}");
        assert!(
            s.fences.iter().all(|f| f == "diff"),
            "{name}: {:?}",
            s.fences
        );
        assert!(!s.fences.is_empty(), "{name}");
        for secret in ["K10secret-token", "MTkyLjE2"] {
            assert!(!md.contains(secret), "{name}: secret leaked");
        }
    }
}

/// 3 servers and `agents` agents to join: two steps per agent, each with a file diff.
fn big_plan(agents: usize) -> Plan {
    let servers = vec![
        node("s1", "10.9.0.1", &[Role::Server]),
        node("s2", "10.9.0.2", &[Role::Server]),
        node("s3", "10.9.0.3", &[Role::Server]),
    ];
    let before = topology(cluster("big"), servers.clone());
    let mut t = topology(cluster("big"), servers);
    for i in 0..agents {
        t.nodes.push(node(
            &format!("agent-{i:04}"),
            &format!("10.9.{}.{}", 1 + i / 200, 1 + i % 200),
            &[Role::Agent],
        ));
    }
    let mut o = observed_matching(&before);
    for n in &t.nodes[3..] {
        o.hosts.insert(
            n.name.clone(),
            Fact::Known(HostState {
                address: Some(n.address),
                ..Default::default()
            }),
        );
    }
    plan(&t, &o, &PlanOptions::default()).unwrap_or_else(|e| panic!("{}", e.violations[0]))
}

#[test]
fn a_large_plan_is_cut_between_whole_steps_to_githubs_limit_and_says_so() {
    let p = big_plan(400);
    let full = render::markdown(
        &Ok(p.clone()),
        MarkdownOptions {
            max_chars: usize::MAX,
        },
    );
    assert!(full.len() > GITHUB_COMMENT_LIMIT, "premise: {}", full.len());
    let md = render::markdown(&Ok(p.clone()), MarkdownOptions::default());
    assert!(md.len() <= GITHUB_COMMENT_LIMIT, "{}", md.len());
    assert!(md.chars().count() <= GITHUB_COMMENT_LIMIT);
    let s = shape(&md);
    let shown = steps_in(&s);
    assert!(shown > 10 && shown < p.steps.len(), "{shown}");
    let note = s
        .quotes
        .iter()
        .find(|q| q.contains("This comment is shortened"))
        .unwrap_or_else(|| panic!("no truncation note"));
    assert!(
        note.contains("are not shown") && note.contains("k3splan show PLANFILE"),
        "{note}"
    );
    // The summary counts the whole plan, not what is shown.
    let sum = p.summary();
    assert!(
        s.headings[0].1.contains(&format!("{} to add", sum.add)),
        "{:?}",
        s.headings[0]
    );
    // GitLab's limit holds all of it: nothing is cut.
    let md = render::markdown(
        &Ok(p.clone()),
        MarkdownOptions {
            max_chars: GITLAB_COMMENT_LIMIT,
        },
    );
    assert_eq!(md, full);
    let s = shape(&md);
    assert_eq!(steps_in(&s), p.steps.len());
    assert!(!md.contains("This comment is shortened"));
}

#[test]
fn every_limit_gives_well_formed_markdown_within_the_limit() {
    let p = big_plan(60);
    for max in (2_500..40_000).step_by(1_237) {
        let md = render::markdown(&Ok(p.clone()), MarkdownOptions { max_chars: max });
        assert!(md.len() <= max, "limit {max}: {} bytes", md.len());
        let s = shape(&md);
        // Whatever is shown is whole: the last step shown ends with its content.
        assert!(steps_in(&s) <= p.steps.len());
    }
}

fn write_step(content: &str) -> Step {
    Step {
        id: 1,
        address: Address::host_file("n1", "/etc/x.yaml"),
        action: Action::Update,
        reason: ActionReason::KeepalivedDrift,
        why: "a reason with *stars*, <details> and `ticks`".into(),
        operations: vec![Operation::WriteFile {
            node: "n1".into(),
            path: "/etc/x.yaml".into(),
            before: Some("a: 1\n".into()),
            after: content.into(),
            sensitive: vec![],
        }],
        before: None,
        after: None,
        depends_on: vec![],
        quorum: vec![],
        notes: vec![],
    }
}

#[test]
fn file_content_and_reasons_cannot_break_the_markdown() {
    let evil = "a: 1\n```\n</details>\n# heading\n````\n<script>x</script>\n";
    let p = Plan {
        steps: vec![write_step(evil)],
        drift: vec![],
        warnings: vec!["a | pipe and </details>".into()],
        quorum_before: None,
        unknown: vec![],
        estimate: None,
    };
    let md = render::markdown(&Ok(p), MarkdownOptions::default());
    let s = shape(&md);
    assert_eq!(s.fences, ["diff"], "{md}");
    assert_eq!(steps_in(&s), 1, "{md}");
    // The file's lines are in the diff block, verbatim.
    assert!(md.contains("+```\n+</details>\n+# heading"), "{md}");
    assert!(md.contains("\\<details\\>"), "{md}");
}

#[test]
fn a_refusal_and_a_converged_plan_render_as_markdown() {
    let r: Result<Plan, Refusal> = Err(Refusal {
        violations: vec![Violation {
            rule: Rule::Quorum,
            step: Some("#3 etcd_member.b: remove etcd member b".into()),
            message: "quorum lost: 1/2 voters healthy".into(),
            advice: Some("add a member first".into()),
        }],
        quorum_before: None,
    });
    let md = render::markdown(&r, MarkdownOptions::default());
    let s = shape(&md);
    assert!(
        s.headings[0]
            .1
            .starts_with("k3splan refuses to plan: 1 safety violation")
    );
    assert!(md.contains("Nothing will be changed"), "{md}");
    let t = topology(cluster("c"), vec![node("s1", "10.0.0.1", &[Role::Server])]);
    let r = plan(&t, &observed_matching(&t), &PlanOptions::default());
    let md = render::markdown(&r, MarkdownOptions::default());
    let s = shape(&md);
    assert_eq!(s.headings[0].1, "k3splan plan: no changes");
    assert_eq!(s.details_open, 0);
}

/// `show -format=markdown PLANFILE` prints the comment; `show PLANFILE` and
/// `show --json PLANFILE` are unchanged (the text and JSON renderers).
#[test]
fn show_format_markdown_renders_a_saved_plan() {
    let p = big_plan(2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.json");
    let saved = SavedPlan {
        format_version: SAVED_PLAN_VERSION,
        k3splan_version: "0".into(),
        created_at: "2026-12-02T00:00:00Z".into(),
        config_digest: "x".into(),
        observed_digest: "y".into(),
        state_serial: None,
        state_lineage: None,
        allow_unreachable: vec![],
        replace: vec![],
        plan: p.clone(),
    };
    std::fs::write(&file, serde_json::to_vec(&saved).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let o = common::k3splan()
            .args(args)
            .arg(&file)
            .arg("-c")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", common::text(&o.stderr));
        common::stdout(&o)
    };
    let md = run(&["show", "-format=markdown"]);
    assert_eq!(
        md,
        render::markdown(&Ok(p.clone()), MarkdownOptions::default())
    );
    shape(&md);
    assert_eq!(run(&["show", "--format", "markdown"]), md);
    assert_eq!(
        run(&["show"]),
        render::text(&Ok(p.clone()), render::TextOptions { color: false })
    );
    assert_eq!(run(&["show", "--json"]), render::json(&Ok(p.clone())));
    assert_eq!(run(&["show", "-format=json"]), render::json(&Ok(p)));
    // A bad format is a usage error (exit 1), not a plan.
    let o = common::k3splan()
        .args(["show", "-format=html"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
}

/// An incomplete plan (a declared host not read) says so at the top, never "no changes".
#[test]
fn an_incomplete_plan_says_so_at_the_top() {
    let t = topology(
        cluster("c"),
        vec![
            node("s1", "10.0.0.1", &[Role::Server]),
            node("s2", "10.0.0.2", &[Role::Server]),
            node("s3", "10.0.0.3", &[Role::Server]),
        ],
    );
    let mut o = observed_matching(&t);
    host_silent(&mut o, "s3", "ssh 10.0.0.3:22: connect timed out after 10s");
    let r = plan(&t, &o, &PlanOptions::default());
    assert!(!r.as_ref().unwrap().is_complete());
    let md = render::markdown(&r, MarkdownOptions::default());
    let s = shape(&md);
    assert!(
        s.headings[0].1.starts_with("k3splan plan: incomplete"),
        "{md}"
    );
    assert!(
        !md.contains("plan: no changes") && !md.contains("matches the configuration"),
        "{md}"
    );
    assert!(
        s.quotes
            .iter()
            .any(|q| q.contains("The plan is incomplete") && q.contains("host.s3")),
        "{md}"
    );
}
