//! Serves the in-memory Kubernetes API until SIGINT/SIGTERM, for manual use (`kubectl`) and
//! for the lab.
//!
//! ```text
//! kubeapi-serve --kubeconfig PATH [--fixture FILE|seed004]... [--synthetic NODES,PODS,PVCS]
//!               [--http] [--controllers all|cluster|none] [--compact]
//! ```
//! Prints `serving URL` once ready. `--compact` keeps the objects as JSON bytes plus a small
//! head ([`k3splan_testkit_kubeapi::Store::set_compact`]), for synthetic clusters of thousands
//! of nodes.

use k3splan_testkit_kubeapi::{Controllers, KubeApiServer, SEED004_YAML, ServerOptions, synthetic};

fn usage() -> ! {
    eprintln!(
        "usage: kubeapi-serve --kubeconfig PATH [--fixture FILE|seed004]... [--synthetic NODES,PODS,PVCS] [--http] [--controllers all|cluster|none] [--compact]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut kubeconfig, mut fixtures, mut synth, mut tls, mut controllers, mut compact) =
        (None, Vec::new(), None, true, Controllers::default(), false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kubeconfig" => kubeconfig = Some(args.next().unwrap_or_else(|| usage())),
            "--fixture" => fixtures.push(args.next().unwrap_or_else(|| usage())),
            "--synthetic" => synth = Some(args.next().unwrap_or_else(|| usage())),
            "--http" => tls = false,
            "--compact" => compact = true,
            "--controllers" => {
                controllers = match args.next().as_deref() {
                    Some("all") => Controllers::all(),
                    // What a kube-controller-manager and kube-scheduler do (no operator).
                    Some("cluster") => Controllers {
                        operator_label: None,
                        ..Controllers::all()
                    },
                    Some("none") => Controllers::default(),
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    let Some(kubeconfig) = kubeconfig else {
        usage()
    };
    let server = KubeApiServer::start(ServerOptions {
        tls,
        controllers,
        compact,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| {
        eprintln!("kubeapi-serve: {e}");
        std::process::exit(1)
    });
    for f in fixtures {
        let yaml = if f == "seed004" {
            SEED004_YAML.to_string()
        } else {
            std::fs::read_to_string(&f).unwrap_or_else(|e| {
                eprintln!("kubeapi-serve: reading {f}: {e}");
                std::process::exit(1)
            })
        };
        if let Err(e) = server.load_yaml(&f, &yaml) {
            eprintln!("kubeapi-serve: {e}");
            std::process::exit(1);
        }
    }
    if let Some(s) = synth {
        let v: Vec<usize> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        if v.len() != 3 {
            usage();
        }
        if let Err(e) = server.load_values(synthetic::objects(v[0], v[1], v[2])) {
            eprintln!("kubeapi-serve: synthetic cluster: {e}");
            std::process::exit(1);
        }
    }
    if let Err(e) = server.write_kubeconfig(std::path::Path::new(&kubeconfig)) {
        eprintln!("kubeapi-serve: {e}");
        std::process::exit(1);
    }
    println!("serving {}", server.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
