//! The manifests of `deploy/`: each one is a valid Kubernetes object of its kind (read into
//! k8s-openapi's types, with nothing the types do not know), the RBAC grants exactly what the
//! watches use, and the DaemonSet runs a command line the real parser accepts, with the
//! privileges README promises.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser as _;
use ipvs_trace::cli::{Cli, Command};
use ipvs_trace::kube::watch::{api_group, plural, KINDS, VERBS};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of every `deploy/*.yaml`, as JSON, with its file name.
fn documents() -> Vec<(String, serde_json::Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/");
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable manifest");
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            documents.push((file.display().to_string(), value));
        }
    }
    documents
}

/// The one object of `kind`, typed. Read back into JSON it must equal the manifest: a field
/// the type does not know (a typo, a wrong level) would be dropped and fail here.
fn object<T: DeserializeOwned + Serialize>(kind: &str) -> T {
    let found: Vec<_> = documents()
        .into_iter()
        .filter(|(_, v)| v["kind"] == kind)
        .collect();
    let [(file, value)] = found.as_slice() else {
        panic!("expected one {kind} in deploy/, found {}", found.len())
    };
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{file}: not a valid {kind}: {e}"));
    let back = serde_json::to_value(&typed).expect("serializable");
    assert_eq!(
        &back, value,
        "{file}: fields k8s-openapi's {kind} does not know"
    );
    typed
}

#[test]
fn every_manifest_is_a_known_object() {
    let kinds: BTreeSet<String> = documents()
        .iter()
        .map(|(file, v)| {
            v["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: no kind"))
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "DaemonSet"
            ]
            .map(String::from)
        )
    );
    let namespace = object::<Namespace>("Namespace").metadata.name.unwrap();
    let account = object::<ServiceAccount>("ServiceAccount");
    assert_eq!(account.metadata.namespace.as_ref(), Some(&namespace));
    let role = object::<ClusterRole>("ClusterRole");
    let binding = object::<ClusterRoleBinding>("ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace.as_ref(), Some(&namespace));
    let daemonset = object::<DaemonSet>("DaemonSet");
    assert_eq!(daemonset.metadata.namespace.as_ref(), Some(&namespace));
    let pod = daemonset.spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name, account.metadata.name);
}

#[test]
fn rbac_is_exactly_what_the_watches_use() {
    let role = object::<ClusterRole>("ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role.rules.expect("rules") {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "{rule:?}"
        );
        for group in rule.api_groups.expect("apiGroups") {
            for resource in rule.resources.as_deref().expect("resources") {
                for verb in &rule.verbs {
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    let watched: BTreeSet<(String, String, String)> = KINDS
        .iter()
        .flat_map(|&kind| {
            VERBS.iter().map(move |verb| {
                (
                    api_group(kind).to_owned(),
                    plural(kind).to_owned(),
                    (*verb).to_owned(),
                )
            })
        })
        .collect();
    assert_eq!(granted, watched);
}

#[test]
fn daemonset_runs_serve_with_named_capabilities_only() {
    let daemonset = object::<DaemonSet>("DaemonSet");
    let pod = daemonset.spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.host_network,
        Some(true),
        "IPVS lives in the node's netns"
    );
    assert_ne!(pod.host_pid, Some(true), "hostPID is not needed");
    let [container] = pod.containers.as_slice() else {
        panic!("one container")
    };

    // The real parser accepts the command line, as `serve`, listening where the probes look.
    let command_line: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .cloned()
        .collect();
    let cli =
        Cli::try_parse_from(&command_line).unwrap_or_else(|e| panic!("{command_line:?}: {e}"));
    let Command::Serve(args) = cli.command else {
        panic!("{command_line:?} is not `serve`")
    };
    let config = args.into_config();
    let metrics = config.metrics.expect("serve always serves metrics");
    assert!(
        metrics.addr.ip().is_unspecified(),
        "Prometheus scrapes the node's address: {}",
        metrics.addr
    );
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a port named metrics");
    assert_eq!(port.container_port, i32::from(metrics.addr.port()));
    let probe = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("an HTTP readiness probe");
    assert_eq!(probe.path.as_deref(), Some("/healthz"));

    let security = container
        .security_context
        .as_ref()
        .expect("securityContext");
    assert_ne!(security.privileged, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let capabilities = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let added: BTreeSet<&str> = capabilities
        .add
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    assert_eq!(
        added,
        BTreeSet::from(["BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE"])
    );

    let resources = container.resources.as_ref().expect("resources");
    for (what, set) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let set = set.as_ref().unwrap_or_else(|| panic!("no {what}"));
        assert!(
            set.contains_key("cpu") && set.contains_key("memory"),
            "{what}: {set:?}"
        );
    }

    host_paths_are_read_only_but_the_history(&pod, container, &config);
}

/// The history on the node's disk and the query API's socket in the host's /run are the only
/// writable host paths; every other host path is read-only, and only these.
fn host_paths_are_read_only_but_the_history(
    pod: &k8s_openapi::api::core::v1::PodSpec,
    container: &k8s_openapi::api::core::v1::Container,
    config: &ipvs_trace::cli::TraceConfig,
) {
    let history = config.history.clone().expect("serve records decisions");
    let history_dir = history
        .store
        .dir
        .expect("--history-dir: a restart keeps the history");
    let socket_dir = history.api.socket.parent().expect("the socket's directory");
    assert_eq!(
        history.api.tcp, None,
        "decision records on no network listener"
    );
    let writable = |path: &str| {
        (path != "/" && history_dir.starts_with(path)) || socket_dir == Path::new(path)
    };
    let volumes = pod.volumes.as_ref().expect("volumes");
    let mut host_paths = BTreeSet::new();
    for mount in container.volume_mounts.iter().flatten() {
        assert_eq!(
            mount.read_only.unwrap_or(false),
            !writable(&mount.mount_path),
            "{} is writable exactly when it holds the history or the socket",
            mount.mount_path
        );
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .expect("the mount's volume");
        let host = volume.host_path.as_ref().expect("a hostPath volume");
        assert_eq!(host.path, mount.mount_path);
        host_paths.insert(host.path.as_str());
    }
    assert_eq!(volumes.len(), host_paths.len(), "every volume mounted");
    assert_eq!(
        host_paths,
        BTreeSet::from([
            "/sys/kernel/btf",
            "/sys/kernel/tracing",
            "/sys/fs/bpf",
            "/var/lib/ipvs-trace",
            "/run/ipvs-trace",
        ])
    );
}
