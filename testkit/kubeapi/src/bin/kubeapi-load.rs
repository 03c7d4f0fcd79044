//! Puts the seed 004 fixture (or another fixture file) on any API server through its API, or
//! removes it: the set-up the `*_e2e` tests of `providers/kube/tests/seed004.rs` do themselves,
//! as a command for looking at the loaded cluster by hand (`kubectl`). See
//! [`k3splan_testkit_kubeapi::loader`] for what it does and why.
//!
//! ```text
//! kubeapi-load --kubeconfig PATH [--fixture FILE|seed004] [--clean] [--no-load]
//! ```
//! `--clean` first deletes what an earlier load left (everything labelled
//! `k3splan.test/fixture=seed004` and the fixture's own namespaces); `--no-load` stops there.
//! Refuses (exit 1, naming the object) when the server holds fixture objects it did not load,
//! such as a k3s cluster's own `kube-system/coredns`.

use k3splan_testkit_kubeapi::SEED004_YAML;
use k3splan_testkit_kubeapi::loader::{Loader, fixture_docs};

fn usage() -> ! {
    eprintln!(
        "usage: kubeapi-load --kubeconfig PATH [--fixture FILE|seed004] [--clean] [--no-load]"
    );
    std::process::exit(2)
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("kubeapi-load: {e}");
    std::process::exit(1)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut kubeconfig, mut fixture, mut clean, mut load) =
        (None, "seed004".to_string(), false, true);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kubeconfig" => kubeconfig = Some(args.next().unwrap_or_else(|| usage())),
            "--fixture" => fixture = args.next().unwrap_or_else(|| usage()),
            "--clean" => clean = true,
            "--no-load" => load = false,
            _ => usage(),
        }
    }
    let Some(kubeconfig) = kubeconfig else {
        usage()
    };
    let yaml = if fixture == "seed004" {
        SEED004_YAML.to_string()
    } else {
        std::fs::read_to_string(&fixture).unwrap_or_else(|e| fail(format!("{fixture}: {e}")))
    };
    let docs = fixture_docs(&yaml).unwrap_or_else(|e| fail(e));
    let loader = Loader::from_kubeconfig(std::path::Path::new(&kubeconfig))
        .await
        .unwrap_or_else(|e| fail(e));
    if clean {
        loader.clean(&docs).await.unwrap_or_else(|e| fail(e));
        println!("cleaned {fixture}");
    }
    if load {
        let report = loader.load(&docs).await.unwrap_or_else(|e| fail(e));
        println!(
            "loaded {fixture}: {} objects, {} revision labels",
            report.created.len(),
            report.revision_labels.len()
        );
        for n in report.notes {
            println!("note: {n}");
        }
        println!(
            "nodes are not kept Ready (no kubelets): a real cluster's node lifecycle controller marks them Unknown after its grace period; the e2e tests keep them Ready while they run"
        );
    }
}
