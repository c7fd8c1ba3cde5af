//! `kube-apiserver`: the in-repo Kubernetes API server for tests and the VM lab.
//!
//! ```text
//! kube-apiserver [--listen IP:PORT] [--objects FILE]... [--state FILE] [--rv-base N]
//!                [--delay-ms N] [--bookmark-ms N] [--write-kubeconfig PATH]
//!                [--exec-as-local 'NS/POD=PROGRAM [ARG]...']...
//! ```
//! Serves pods, services, nodes and endpointslices from `--objects` (`kubectl get ... -o json`
//! output) over plain HTTP with the real list/watch protocol; see
//! `ipvs_trace_tests::kube_apiserver` for the protocol and the `/lab/...` control interface.
//! `--write-kubeconfig` writes a kubeconfig for the bound address (useful with port 0), then
//! the server runs until killed. `--exec-as-local` serves `pods/{name}/exec` for that pod by
//! running the requested command here with its first word replaced by PROGRAM and the ARGs
//! appended (words split at whitespace); pods without one refuse exec.

use std::process::ExitCode;

use anyhow::Context as _;
use ipvs_trace_tests::kube_apiserver::{parse_args, Server};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "kube-apiserver [--listen IP:PORT] [--objects FILE]... [--state FILE] [--rv-base N] \
             [--delay-ms N] [--bookmark-ms N] [--write-kubeconfig PATH] \
             [--exec-as-local 'NS/POD=PROGRAM [ARG]...']..."
        );
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let (options, kubeconfig) = parse_args(args)?;
    let server = Server::start(options)?;
    if let Some(path) = kubeconfig {
        std::fs::write(&path, server.kubeconfig())
            .with_context(|| format!("writing the kubeconfig {}", path.display()))?;
    }
    // Scripts wait for this line before pointing clients at the server.
    eprintln!(
        "kube-apiserver: listening on {} (resourceVersion {})",
        server.addr(),
        server.resource_version()
    );
    loop {
        std::thread::park();
    }
}
