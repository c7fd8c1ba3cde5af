//! The `podman run` flags that give a container what deploy/daemonset.yaml gives the pod,
//! derived from the manifest field by field, so that the image test runs what the cluster
//! runs and the two cannot drift apart.
//!
//! Every field of the pod spec, the container, its securityContext and its volumes is either
//! translated here or listed as not bearing on what the process may do (with why). Any other
//! field is an error naming it: a manifest change the derivation does not follow fails the
//! tests instead of being dropped on the way to podman.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext, Volume, VolumeMount};
use serde::Serialize;

/// What `podman run` needs to run the DaemonSet's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The image as the manifest names it.
    pub image: String,
    /// `podman run` flags for the pod's and the container's settings.
    pub flags: Vec<String>,
    /// The container's `command`: the entrypoint it runs.
    pub command: Vec<String>,
    /// The container's `args` (the test runs `check` in their place).
    pub args: Vec<String>,
    /// The capabilities added, by their Linux names (`CAP_BPF`), in the manifest's order.
    pub added: Vec<String>,
    /// The host paths mounted, with the directory each was bound from and whether read-only.
    pub mounts: Vec<Mount>,
}

/// One hostPath volume as mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The volume's hostPath.
    pub host_path: String,
    /// What `host_dir` made of it: the directory bound.
    pub source: PathBuf,
    /// Where the container sees it.
    pub container_path: String,
    pub read_only: bool,
}

/// Pod spec fields with no bearing on what the container's process may do.
const POD_NOT_PRIVILEGES: &[(&str, &str)] = &[
    (
        "serviceAccountName",
        "the API identity: credentials, not kernel privileges",
    ),
    ("dnsPolicy", "name resolution"),
    ("nodeSelector", "scheduling"),
    ("tolerations", "scheduling"),
    ("affinity", "scheduling"),
    ("priorityClassName", "scheduling"),
    ("terminationGracePeriodSeconds", "how long SIGTERM is given"),
];
const POD_TRANSLATED: &[&str] = &["hostNetwork", "hostPID", "hostIPC", "containers", "volumes"];

/// Container fields with no bearing on what its process may do.
const CONTAINER_NOT_PRIVILEGES: &[(&str, &str)] = &[
    ("name", "a name"),
    ("imagePullPolicy", "when the kubelet fetches the image"),
    (
        "ports",
        "with hostNetwork a port is the node's; declaring it opens nothing",
    ),
    ("readinessProbe", "the kubelet's health checks"),
    ("livenessProbe", "the kubelet's health checks"),
    ("startupProbe", "the kubelet's health checks"),
    (
        "resources",
        "cgroup limits on CPU and memory, not privileges",
    ),
];
const CONTAINER_TRANSLATED: &[&str] = &[
    "image",
    "command",
    "args",
    "securityContext",
    "volumeMounts",
];

const SECURITY_TRANSLATED: &[&str] = &[
    "privileged",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "runAsUser",
    "runAsGroup",
    "capabilities",
    "seccompProfile",
];

/// Every Linux capability, by number (include/uapi/linux/capability.h, 6.x).
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capability's number, from a Kubernetes name (`BPF` or `CAP_BPF`, any case, as
/// container runtimes accept).
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES
        .iter()
        .position(|known| *known == bare)
        .map(|at| at as u32)
}

/// The flags for `daemonset` (the manifest as JSON). `host_dir(path, type)` gives the host
/// directory to bind for each hostPath volume, or an error when there is none (the kubelet
/// refuses to start a pod whose `Directory` volume is missing).
pub fn derive(
    daemonset: &serde_json::Value,
    host_dir: &dyn Fn(&str, &str) -> Result<PathBuf>,
) -> Result<Run> {
    let typed: DaemonSet = serde_json::from_value(daemonset.clone())
        .context("deploy/daemonset.yaml is not a DaemonSet")?;
    // A field k8s-openapi does not know would be dropped by the typed read, unseen.
    ensure!(
        &serde_json::to_value(&typed)? == daemonset,
        "deploy/daemonset.yaml has fields k8s-openapi's DaemonSet does not know"
    );
    let pod = typed.spec.template.spec.context("no spec.template.spec")?;
    only_known(
        "spec.template.spec",
        &pod,
        POD_TRANSLATED,
        POD_NOT_PRIVILEGES,
    )?;

    let mut flags = Vec::new();
    ensure!(
        pod.host_network == Some(true),
        "hostNetwork is not true: in a network namespace of its own the pod sees no IPVS, and \
         the derivation maps only the node's network"
    );
    flags.push("--network=host".to_owned());
    if pod.host_pid == Some(true) {
        flags.push("--pid=host".to_owned());
    }
    if pod.host_ipc == Some(true) {
        flags.push("--ipc=host".to_owned());
    }

    let [container] = pod.containers.as_slice() else {
        bail!(
            "{} containers: the derivation runs one",
            pod.containers.len()
        );
    };
    only_known(
        "the container",
        container,
        CONTAINER_TRANSLATED,
        CONTAINER_NOT_PRIVILEGES,
    )?;
    let security = container
        .security_context
        .as_ref()
        .context("the container has no securityContext")?;
    let added = security_flags(security, &mut flags)?;
    let mounts = mounts(&pod, container, host_dir, &mut flags)?;

    Ok(Run {
        image: container
            .image
            .clone()
            .context("the container has no image")?,
        flags,
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        added,
        mounts,
    })
}

/// The securityContext's flags; returns the capabilities added.
fn security_flags(security: &SecurityContext, flags: &mut Vec<String>) -> Result<Vec<String>> {
    only_known("securityContext", security, SECURITY_TRANSLATED, &[])?;
    if security.privileged == Some(true) {
        flags.push("--privileged".to_owned());
    }
    // Kubernetes sets no_new_privs exactly when allowPrivilegeEscalation is false.
    if security.allow_privilege_escalation == Some(false) {
        flags.push("--security-opt=no-new-privileges".to_owned());
    }
    if security.read_only_root_filesystem == Some(true) {
        // Kubernetes makes the root read-only and adds no scratch space; podman's --read-only
        // alone would mount tmpfs on /tmp, /var/tmp and /run.
        flags.push("--read-only".to_owned());
        flags.push("--read-only-tmpfs=false".to_owned());
    }
    match (security.run_as_user, security.run_as_group) {
        (Some(user), Some(group)) => flags.push(format!("--user={user}:{group}")),
        (Some(user), None) => flags.push(format!("--user={user}")),
        (None, Some(_)) => bail!("runAsGroup without runAsUser: not translated"),
        (None, None) => {}
    }

    let mut added = Vec::new();
    if let Some(capabilities) = &security.capabilities {
        only_known(
            "securityContext.capabilities",
            capabilities,
            &["add", "drop"],
            &[],
        )?;
        for (flag, names) in [
            ("--cap-drop", &capabilities.drop),
            ("--cap-add", &capabilities.add),
        ] {
            for name in names.iter().flatten() {
                if name == "ALL" {
                    flags.push(format!("{flag}=all"));
                    continue;
                }
                ensure!(
                    capability_number(name).is_some(),
                    "securityContext.capabilities: `{name}` is not a Linux capability"
                );
                let linux = format!(
                    "CAP_{}",
                    name.to_ascii_uppercase().trim_start_matches("CAP_")
                );
                flags.push(format!("{flag}={linux}"));
                if flag == "--cap-add" {
                    added.push(linux);
                }
            }
        }
    }

    let seccomp = security
        .seccomp_profile
        .as_ref()
        .context("no seccompProfile: the kubelet's default (Unconfined) is not translated")?;
    only_known("securityContext.seccompProfile", seccomp, &["type"], &[])?;
    match seccomp.type_.as_str() {
        // The runtime's own default profile: podman applies its default when told nothing.
        "RuntimeDefault" => {}
        "Unconfined" => flags.push("--security-opt=seccomp=unconfined".to_owned()),
        other => bail!("seccompProfile type `{other}`: not translated"),
    }
    Ok(added)
}

/// `--volume` flags for the container's mounts, each of a hostPath volume.
fn mounts(
    pod: &PodSpec,
    container: &Container,
    host_dir: &dyn Fn(&str, &str) -> Result<PathBuf>,
    flags: &mut Vec<String>,
) -> Result<Vec<Mount>> {
    let volumes: &[Volume] = pod.volumes.as_deref().unwrap_or_default();
    let mut mounted = BTreeSet::new();
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let what = format!("volumeMount {}", mount.name);
        only_known(&what, mount, &["name", "mountPath", "readOnly"], &[])?;
        let VolumeMount {
            name,
            mount_path,
            read_only,
            ..
        } = mount;
        let volume = volumes
            .iter()
            .find(|v| &v.name == name)
            .with_context(|| format!("{what}: no volume of that name"))?;
        let what = format!("volume {name}");
        only_known(&what, volume, &["name", "hostPath"], &[])?;
        let host = volume
            .host_path
            .as_ref()
            .with_context(|| format!("{what} is not a hostPath"))?;
        only_known(&format!("{what}.hostPath"), host, &["path", "type"], &[])?;
        let kind = host.type_.as_deref().unwrap_or("");
        ensure!(
            matches!(kind, "Directory" | "DirectoryOrCreate"),
            "{what}: hostPath type `{kind}` is not translated"
        );
        let source = host_dir(&host.path, kind).with_context(|| what.clone())?;
        let read_only = read_only.unwrap_or(false);
        flags.push(format!(
            "--volume={}:{mount_path}:{}",
            source.display(),
            if read_only { "ro" } else { "rw" }
        ));
        mounted.insert(name.as_str());
        mounts.push(Mount {
            host_path: host.path.clone(),
            source,
            container_path: mount_path.clone(),
            read_only,
        });
    }
    for volume in volumes {
        ensure!(
            mounted.contains(volume.name.as_str()),
            "volume {} is mounted by no container",
            volume.name
        );
    }
    Ok(mounts)
}

/// Fails unless every field set in `object` is translated or listed as no privilege.
fn only_known(
    what: &str,
    object: &impl Serialize,
    translated: &[&str],
    not_privileges: &[(&str, &str)],
) -> Result<()> {
    let value = serde_json::to_value(object)?;
    let fields = value
        .as_object()
        .with_context(|| format!("{what} is not an object"))?;
    for field in fields.keys() {
        ensure!(
            translated.contains(&field.as_str())
                || not_privileges.iter().any(|(known, _)| known == field),
            "{what}: `{field}` is not translated into podman flags; translate it in \
             tests/tests/image/daemonset.rs, or list it there as no privilege with why"
        );
    }
    Ok(())
}
