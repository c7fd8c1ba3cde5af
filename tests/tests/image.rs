//! The DaemonSet's image, run with the DaemonSet's privileges: `cargo xtask image`'s image,
//! loaded from its OCI archive, runs `ipvs-trace check` under podman with exactly the pod's
//! securityContext, host network and host mounts, all derived from deploy/daemonset.yaml
//! (`image/daemonset.rs`), and `check` there must find the privileges sufficient, create a BPF
//! map, load a tracing program and open a perf event. The same image without the added
//! capabilities must be told what is missing.
//!
//! `seccompProfile: RuntimeDefault` means the node's runtime's own profile, and those differ:
//! the run is made with podman's (Debian 12's refuses bpf() without CAP_SYS_ADMIN, as CRI-O's
//! did before containers-common 0.60: check must then name seccomp as the cause) and with
//! containerd's, as containerd 1.6.20 generated it for these capabilities
//! (tests/fixtures/seccomp-containerd-1.6.20.json), which must let everything through.
//!
//! The host kernel has BPF and BTF but neither kprobes nor IPVS, so `check` says "ip_vs not
//! loaded" here; what this test proves is the privilege part, the part a cluster decides. (On
//! Debian's kernels the same capabilities meet `perf_event_paranoid=3`, which refuses perf
//! events without CAP_SYS_ADMIN: the lab saw it, docs/deploying.md says what to do.)
//!
//! What this machine needs beyond the manifest is kept apart in [`runtime_flags`], with why:
//! none of it grants anything.

#[path = "image/daemonset.rs"]
mod daemonset;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use daemonset::{capability_number, derive, Run};
use xtask::cli::image::{self, Image};

/// A Linux capability number: the bit in /proc/PID/status's Cap* masks.
const CAP_SYS_RESOURCE: u32 = 24;

/// The image, built (or found up to date) once per test binary.
fn built() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| image::build().unwrap_or_else(|e| panic!("cargo xtask image: {e:#}")))
}

fn manifest() -> serde_json::Value {
    image::daemonset().unwrap_or_else(|e| panic!("{e:#}"))
}

/// Host directories as the kubelet finds them: a `Directory` volume must exist (the kubelet
/// refuses the pod otherwise), a `DirectoryOrCreate` one (the history, the API socket) is
/// made under `scratch` instead of in the machine's /var/lib and /run.
fn host_dirs(scratch: &Path) -> impl Fn(&str, &str) -> anyhow::Result<PathBuf> + '_ {
    move |path, kind| {
        if kind == "DirectoryOrCreate" {
            let dir = scratch.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(&dir)?;
            return Ok(dir);
        }
        anyhow::ensure!(Path::new(path).is_dir(), "{path} is not a directory here");
        Ok(PathBuf::from(path))
    }
}

/// A directory removed when the test ends, however it ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ipvs-trace-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One line of /proc/self/status, e.g. `CapEff`.
fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{status}"))
        .trim()
        .to_owned()
}

fn mask(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("capability mask {hex}: {e}"))
}

fn own_status() -> String {
    std::fs::read_to_string("/proc/self/status").expect("/proc/self/status")
}

/// (soft, hard) of one /proc/self/limits line, e.g. "Max open files".
fn own_limit(name: &str) -> (String, String) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("no `{name}` in /proc/self/limits"));
    let mut values = line[name.len()..].split_whitespace();
    let soft = values.next().expect("a soft limit").to_owned();
    let hard = values.next().expect("a hard limit").to_owned();
    (soft, hard)
}

/// What this machine needs to run any container, the same for every run: none of it is a
/// privilege of the pod.
/// - `--pull=never`: the image is the one built here; nothing is fetched.
/// - `--runtime=runc`: crun 1.8 (Debian 12's, podman's default) refuses a hybrid cgroup
///   hierarchy ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"),
///   which these machines have (v1 controllers, hugetlb on the v2 hierarchy).
/// - `--ulimit`: podman gives containers 1,048,576 open files and processes, which only a
///   process with CAP_SYS_RESOURCE may raise its limits to; where the test runs without it
///   (a sandbox's bounding set), the runtime fails with "error setting rlimit ... operation not
///   permitted". The container then gets the test's own limits; for processes at most
///   kernel.pid_max, which podman lowers its own limit to.
fn runtime_flags() -> Vec<String> {
    let mut flags = vec!["--rm".to_owned(), "--pull=never".to_owned()];
    flags.push("--runtime=runc".to_owned());
    if mask(&status_field(&own_status(), "CapEff")) & (1 << CAP_SYS_RESOURCE) == 0 {
        let (soft, hard) = own_limit("Max open files");
        flags.push(format!("--ulimit=nofile={soft}:{hard}"));
        let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .expect("kernel.pid_max")
            .trim()
            .parse()
            .expect("a number");
        let (soft, hard) = own_limit("Max processes");
        let cap = |limit: String| {
            limit
                .parse::<u64>()
                .map_or(pid_max, |n| n.min(pid_max))
                .to_string()
        };
        flags.push(format!("--ulimit=nproc={}:{}", cap(soft), cap(hard)));
    }
    flags
}

fn podman(args: &[String]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "podman {}: {e} (cargo xtask setup installs it)",
                args.join(" ")
            )
        })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `podman run` of `image` with the derived flags, `command` as the entrypoint.
fn run(image: &str, derived: &Run, extra: &[String], command: &[&str], args: &[&str]) -> Output {
    let mut all = vec!["run".to_owned()];
    all.extend(runtime_flags());
    all.extend(derived.flags.iter().cloned());
    all.extend(extra.iter().cloned());
    all.push(format!(
        "--entrypoint={}",
        serde_json::to_string(command).expect("JSON")
    ));
    all.push(image.to_owned());
    all.extend(args.iter().map(|s| (*s).to_owned()));
    println!("+ podman {}", all.join(" "));
    podman(&all)
}

/// Whether podman can start a container at all, asked with a container that owes nothing to
/// the image or the manifest (busybox as the whole root filesystem); `Err` with podman's own
/// words when not.
fn runtime_works(scratch: &Path) -> Result<(), String> {
    let rootfs = scratch.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("a rootfs directory");
    std::fs::copy("/bin/busybox", rootfs.join("busybox"))
        .expect("/bin/busybox (busybox-static, which cargo xtask setup installs)");
    let mut args = vec!["run".to_owned()];
    args.extend(runtime_flags());
    args.push("--rootfs".to_owned());
    args.push(rootfs.display().to_string());
    args.extend(["/busybox".to_owned(), "true".to_owned()]);
    let out = podman(&args);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`podman {}` failed ({}): {}",
            args.join(" "),
            out.status,
            text(&out.stderr).trim()
        ))
    }
}

/// The report lines of `check`, by their label (the first word, or two for `bpf ...`).
fn report_line<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find(|line| {
            line.strip_prefix(label)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("no `{label}` line in check's report:\n{report}"))
}

/// `ipvs-trace check` in the container; its report. It exits 1 here whatever the privileges
/// (the host has no ip_vs), so only a crash or a runtime error fails the run itself.
fn check(image: &str, derived: &Run, extra: &[String], command: &[&str]) -> String {
    let out = run(image, derived, extra, command, &["check"]);
    let report = text(&out.stdout);
    println!("{report}{}", text(&out.stderr));
    assert!(
        matches!(out.status.code(), Some(0 | 1)) && report.contains("\nresult "),
        "check ran and reported ({}): {}",
        out.status,
        text(&out.stderr)
    );
    report
}

/// check's lines of what the kernel let the process do (`ipvs-trace check`'s
/// `cmd/check/syscalls.rs`): a BPF map, a tracing program, a perf event (kprobes attach
/// through one).
const SYSCALL_LINES: [&str; 3] = ["bpf map", "bpf program", "perf events"];

/// Whether check could create its BPF map, load its tracing program and open a perf event.
fn kernel_allows(report: &str) -> bool {
    SYSCALL_LINES.iter().all(|label| {
        report_line(report, label)[label.len()..]
            .trim_start()
            .starts_with("ok:")
    })
}

/// tests/fixtures/seccomp-containerd-1.6.20.json's profile, written where podman can read it;
/// the fixture must have been recorded for the capabilities the manifest adds (containerd's
/// default profile depends on them).
fn containerd_seccomp(derived: &Run, scratch: &Path) -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/seccomp-containerd-1.6.20.json");
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let recorded: BTreeSet<&str> = fixture["capabilities"]
        .as_array()
        .expect("the capabilities it was recorded for")
        .iter()
        .map(|cap| cap.as_str().expect("a name"))
        .collect();
    let added: BTreeSet<&str> = derived.added.iter().map(String::as_str).collect();
    assert_eq!(
        recorded,
        added,
        "{} was recorded for other capabilities than the manifest adds: record it again as its \
         `how` says",
        path.display()
    );
    let profile = scratch.join("seccomp-containerd.json");
    std::fs::write(&profile, fixture["seccomp"].to_string()).expect("the profile written");
    profile
}

/// The archive is what a node gets: load it, and it must name the image built, under the name
/// the cluster asks for.
fn load_archive(image: &Image) {
    let load = podman(&[
        "load".to_owned(),
        "--input".to_owned(),
        image.archive.display().to_string(),
    ]);
    assert!(load.status.success(), "podman load: {}", text(&load.stderr));
    let loaded = text(&load.stdout);
    assert!(
        loaded
            .lines()
            .any(|line| line.trim().ends_with(&image.name)),
        "the archive loads as {}: {loaded}",
        image.name
    );
    let id = podman(&[
        "image".to_owned(),
        "inspect".to_owned(),
        "--format={{.Id}}".to_owned(),
        image.name.clone(),
    ]);
    assert_eq!(
        text(&id.stdout).trim(),
        image.id,
        "the archive holds the image built"
    );
}

/// `check` with the DaemonSet's privileges, under each runtime's RuntimeDefault.
fn runtime_defaults(image: &str, derived: &Run, command: &[&str], scratch: &Path) {
    // The manifest's seccompProfile is RuntimeDefault: whatever the node's runtime calls its
    // default. podman's first, as the derived flags ask for it.
    assert!(
        !derived.flags.iter().any(|flag| flag.contains("seccomp")),
        "the runs below stand for seccompProfile RuntimeDefault"
    );
    let report = check(image, derived, &[], command);
    assert_eq!(report_line(&report, "privileges"), "privileges  ok");
    if kernel_allows(&report) {
        println!("podman's default seccomp profile allows bpf() and perf_event_open() here");
    } else {
        // Profiles written before CAP_BPF allow bpf() and perf_event_open() with CAP_SYS_ADMIN
        // only (containers-common before 0.60, which CRI-O uses too): check must say that it
        // is not the capabilities, and without the filter the same run must be allowed.
        for label in SYSCALL_LINES {
            let line = report_line(&report, label);
            assert!(
                line.contains(" ok:") || line.contains("although the capabilities are there"),
                "{line}"
            );
        }
        let unfiltered = check(
            image,
            derived,
            &["--security-opt=seccomp=unconfined".to_owned()],
            command,
        );
        assert!(
            kernel_allows(&unfiltered),
            "with no seccomp filter the kernel allows them: {unfiltered}"
        );
        println!(
            "podman's default seccomp profile refuses bpf() or perf_event_open() without \
             CAP_SYS_ADMIN: check names seccomp, and the same run without the filter is allowed"
        );
    }

    // containerd's RuntimeDefault for exactly these capabilities (the runtime of most
    // clusters), as containerd itself generated it: sufficient, and the kernel agrees.
    let fixture = containerd_seccomp(derived, scratch);
    let report = check(
        image,
        derived,
        &[format!("--security-opt=seccomp={}", fixture.display())],
        command,
    );
    assert_eq!(report_line(&report, "privileges"), "privileges  ok");
    assert!(kernel_allows(&report), "{report}");
    let result = report_line(&report, "result");
    assert!(
        !result.contains("privileges") && !result.contains("bpf") && !result.contains("perf"),
        "only what the host kernel lacks stands in the way: {result}"
    );
}

#[test]
fn the_image_runs_with_the_daemonsets_privileges() {
    let image = built();
    println!(
        "image {} ({}), {} bytes, archive {}",
        image.name,
        image.id,
        image.size,
        image.archive.display()
    );

    let scratch = Scratch::new("image-test");
    if let Err(why) = runtime_works(&scratch.0) {
        // Only the runtime itself being unable to start a container skips; everything above
        // (the image build) and below (the flags) must still work.
        println!("SKIPPED: podman cannot run containers on this machine: {why}");
        return;
    }

    load_archive(image);

    let manifest = manifest();
    let dirs = host_dirs(&scratch.0);
    let derived = derive(&manifest, &dirs).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        image::normalize(&derived.image).unwrap(),
        image.name,
        "the image is built under the name the DaemonSet runs"
    );
    let command: Vec<&str> = derived.command.iter().map(String::as_str).collect();

    runtime_defaults(&image.name, &derived, &command, &scratch.0);
    what_the_container_got(&image.name, &derived);

    // Without the added capabilities: refused, and told which are missing.
    let mut bare = manifest.clone();
    let add = bare
        .pointer_mut("/spec/template/spec/containers/0/securityContext/capabilities")
        .and_then(serde_json::Value::as_object_mut)
        .expect("the manifest's capabilities")
        .remove("add");
    assert!(add.is_some(), "the manifest adds capabilities");
    let bare = derive(&bare, &dirs).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(bare.added.is_empty());
    let report = check(&image.name, &bare, &[], &command);
    let privileges = report_line(&report, "privileges");
    assert!(
        privileges.starts_with("privileges  NOT OK")
            && privileges.contains("CAP_BPF")
            && privileges.contains("CAP_PERFMON"),
        "{privileges}"
    );
    for label in SYSCALL_LINES {
        let line = report_line(&report, label);
        assert!(
            line.contains("NOT OK") && line.contains("the privileges above are missing"),
            "{line}"
        );
    }
    assert!(report_line(&report, "result").contains("privileges"));
}

/// What the kernel gave the container, seen from inside with the same flags (busybox from the
/// host as the entrypoint, the image's root otherwise): the capabilities (the manifest's, as
/// far as this machine's own bounding set has them), no_new_privs, a seccomp filter, the
/// node's network namespace, a read-only root, and each host mount read-only or not as the
/// manifest says.
fn what_the_container_got(image: &str, derived: &Run) {
    let mut script = String::from(
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
         echo netns=$(/busybox readlink /proc/self/ns/net); \
         /busybox touch /written 2>/dev/null && echo root=rw || echo root=ro; ",
    );
    for mount in &derived.mounts {
        let path = &mount.container_path;
        let _ = write!(
            script,
            "/busybox touch {path}/.probe 2>/dev/null && echo '{path}=rw' && \
             /busybox rm {path}/.probe || echo '{path}=ro'; "
        );
    }
    let extra = ["--volume=/bin/busybox:/busybox:ro".to_owned()];
    let out = run(
        image,
        derived,
        &extra,
        &["/busybox", "sh", "-c"],
        &[&format!("export PATH=/; {script}")],
    );
    let seen = text(&out.stdout);
    println!("{seen}{}", text(&out.stderr));
    assert!(out.status.success(), "the probe ran: {}", text(&out.stderr));

    let bounding = mask(&status_field(&own_status(), "CapBnd"));
    let mut wanted = 0u64;
    for name in &derived.added {
        let bit = capability_number(name).expect("a known capability");
        if bounding & (1 << bit) == 0 {
            println!(
                "note: {name} is not in this machine's own bounding set, so no container here \
                 can have it; the runtime leaves it out"
            );
        } else {
            wanted |= 1 << bit;
        }
    }
    assert_eq!(
        mask(&status_field(&seen, "CapEff")),
        wanted,
        "the container's capabilities are the manifest's"
    );
    assert_eq!(
        status_field(&seen, "NoNewPrivs"),
        "1",
        "allowPrivilegeEscalation: false"
    );
    assert_eq!(
        status_field(&seen, "Seccomp"),
        "2",
        "a seccomp filter (RuntimeDefault)"
    );
    let host_netns = std::fs::read_link("/proc/self/ns/net").expect("the host's netns");
    assert!(
        seen.contains(&format!("netns={}", host_netns.display())),
        "hostNetwork: the node's {}",
        host_netns.display()
    );
    assert!(seen.contains("root=ro\n"), "readOnlyRootFilesystem");
    for mount in &derived.mounts {
        let want = format!(
            "{}={}\n",
            mount.container_path,
            if mount.read_only { "ro" } else { "rw" }
        );
        assert!(seen.contains(&want), "{want:?} in {seen}");
    }
}

/// The manifest with one change at `pointer` (JSON pointer; `None` removes the field).
fn changed(pointer: &str, value: Option<serde_json::Value>) -> serde_json::Value {
    let mut manifest = manifest();
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let object = manifest
        .pointer_mut(parent)
        .and_then(serde_json::Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} in the manifest"));
    match value {
        Some(value) => object.insert(key.to_owned(), value),
        None => object.remove(key),
    };
    manifest
}

fn derive_here(manifest: &serde_json::Value) -> anyhow::Result<Run> {
    // Tests run on threads of one process: each derivation gets a directory of its own.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let scratch = Scratch::new(&format!("derive-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let dirs = host_dirs(&scratch.0);
    derive(manifest, &dirs)
}

const CONTAINER: &str = "/spec/template/spec/containers/0";
const SECURITY: &str = "/spec/template/spec/containers/0/securityContext";

#[test]
fn the_flags_say_what_the_manifest_says() {
    let derived = derive(&manifest(), &|path: &str, _: &str| Ok(PathBuf::from(path)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("{derived:#?}");
    let flags: BTreeSet<&str> = derived.flags.iter().map(String::as_str).collect();
    for flag in [
        "--network=host",
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        "--read-only",
        "--read-only-tmpfs=false",
        "--user=0",
    ] {
        assert!(flags.contains(flag), "{flag} in {flags:?}");
    }
    assert!(!flags
        .iter()
        .any(|f| f.starts_with("--privileged") || f.starts_with("--pid") || f.contains("seccomp")));
    let manifest = manifest();
    let security = manifest.pointer(SECURITY).expect("securityContext");
    let added: Vec<String> = security["capabilities"]["add"]
        .as_array()
        .expect("added capabilities")
        .iter()
        .map(|name| format!("CAP_{}", name.as_str().expect("a name")))
        .collect();
    assert_eq!(derived.added, added);
    for cap in &added {
        assert!(flags.contains(format!("--cap-add={cap}").as_str()), "{cap}");
    }
    let mounts = manifest
        .pointer(&format!("{CONTAINER}/volumeMounts"))
        .and_then(serde_json::Value::as_array)
        .expect("volumeMounts");
    assert_eq!(derived.mounts.len(), mounts.len());
    for (mount, given) in derived.mounts.iter().zip(mounts) {
        let ro = given["readOnly"].as_bool().unwrap_or(false);
        let flag = format!(
            "--volume={}:{}:{}",
            mount.host_path,
            given["mountPath"].as_str().expect("a mountPath"),
            if ro { "ro" } else { "rw" }
        );
        assert!(flags.contains(flag.as_str()), "{flag} in {flags:?}");
    }
    assert_eq!(derived.command, ["/ipvs-trace"]);
    assert_eq!(derived.args.first().map(String::as_str), Some("serve"));
}

#[test]
fn what_the_derivation_translates_changes_the_flags() {
    let with = |pointer: &str, value: serde_json::Value| {
        derive_here(&changed(pointer, Some(value)))
            .unwrap_or_else(|e| panic!("{pointer}: {e:#}"))
            .flags
    };
    let unconfined = with(
        &format!("{SECURITY}/seccompProfile"),
        serde_json::json!({"type": "Unconfined"}),
    );
    assert!(unconfined.contains(&"--security-opt=seccomp=unconfined".to_owned()));
    let sys_admin = with(
        &format!("{SECURITY}/capabilities/add"),
        serde_json::json!(["BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE", "SYS_ADMIN"]),
    );
    assert!(sys_admin.contains(&"--cap-add=CAP_SYS_ADMIN".to_owned()));
    let pid = with("/spec/template/spec/hostPID", serde_json::json!(true));
    assert!(pid.contains(&"--pid=host".to_owned()));
    let escalation = with(
        &format!("{SECURITY}/allowPrivilegeEscalation"),
        serde_json::json!(true),
    );
    assert!(!escalation.iter().any(|f| f.contains("no-new-privileges")));
}

#[test]
fn a_field_the_derivation_does_not_translate_fails_it() {
    for (pointer, value, named) in [
        (
            format!("{SECURITY}/capabilities/add"),
            serde_json::json!(["BPF", "PERFMON", "BFP"]),
            "`BFP` is not a Linux capability",
        ),
        (
            format!("{SECURITY}/procMount"),
            serde_json::json!("Unmasked"),
            "`procMount`",
        ),
        (
            format!("{SECURITY}/seLinuxOptions"),
            serde_json::json!({"type": "spc_t"}),
            "`seLinuxOptions`",
        ),
        (
            format!("{SECURITY}/seccompProfile"),
            serde_json::json!({"type": "Localhost", "localhostProfile": "bpf.json"}),
            "`localhostProfile`",
        ),
        (
            format!("{CONTAINER}/env"),
            serde_json::json!([{"name": "RUST_LOG", "value": "debug"}]),
            "`env`",
        ),
        (
            "/spec/template/spec/securityContext".to_owned(),
            serde_json::json!({"runAsUser": 0}),
            "`securityContext`",
        ),
        (
            "/spec/template/spec/hostNetwork".to_owned(),
            serde_json::json!(false),
            "hostNetwork",
        ),
        (
            "/spec/template/spec/volumes/0/hostPath/type".to_owned(),
            serde_json::json!("Socket"),
            "hostPath type `Socket`",
        ),
        (
            format!("{CONTAINER}/volumeMounts/0/mountPropagation"),
            serde_json::json!("HostToContainer"),
            "`mountPropagation`",
        ),
        (
            "/spec/template/spec/volumes/0/emptyDir".to_owned(),
            serde_json::json!({}),
            "`emptyDir`",
        ),
        // A field Kubernetes itself does not have: dropped by a typed read, caught here.
        (
            format!("{SECURITY}/capabilties"),
            serde_json::json!({"add": ["SYS_ADMIN"]}),
            "k8s-openapi's DaemonSet does not know",
        ),
    ] {
        let err = derive_here(&changed(&pointer, Some(value)))
            .map(|run| panic!("{pointer}: derived {run:#?}"))
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains(named), "{pointer}: {message}");
    }
}
