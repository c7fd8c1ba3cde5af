//! `cargo xtask dist`.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, ensure, Context as _, Result};
use sha2::{Digest as _, Sha256};

use crate::{cmd, lab, paths};

/// The release tarball: target/dist/ipvs-trace-VERSION-x86_64-linux.tar.gz.
///
/// Runs `setup`, checks that the committed man pages (docs/man/) and shell completions
/// (completions/) still match the CLI, builds the static binary as the VM lab does (release,
/// +crt-static, x86_64-unknown-linux-gnu) and packs, under one folder
/// ipvs-trace-VERSION-x86_64-linux/:
///
///   ipvs-trace               the binary, eBPF object embedded (`--version` names both)
///   man/man1/                ipvs-trace.1 and ipvs-trace-SUBCOMMAND.1
///   completions/             ipvs-trace.bash, _ipvs-trace (zsh), ipvs-trace.fish
///   deploy/                  the Kubernetes manifests
///   LICENSE-MIT, LICENSE-APACHE, LICENSE-GPL-2.0 (the eBPF object's "Dual MIT/GPL")
///   README.md, INSTALL.md    the project's README and docs/install.md
///   SHA256SUMS               every other file's SHA-256 (`sha256sum -c SHA256SUMS`)
///
/// Prints each file with its size, then the tarball with its size and SHA-256 (also written
/// beside it as TARBALL.sha256). Sources that differ from the commit make a `-dirty` binary:
/// dist says so, as it says which packed files are not committed.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(super) struct Args {
    /// Only rewrite docs/man/ and completions/ from the CLI definitions (after changing a flag
    /// or a help text), then stop: no tarball. Commit the result. Runs
    /// `IPVS_TRACE_BLESS=1 cargo test -p ipvs-trace --test man_completions`.
    #[arg(long)]
    refresh_generated: bool,
}

/// The target binaries.rs builds the static binary for, as the tarball names it.
const PLATFORM: &str = "x86_64-linux";

/// ELF `e_machine` of x86-64: checked so that the name above cannot lie.
const EM_X86_64: u16 = 62;

/// The test that renders the man pages and completions and compares them with the committed
/// copies (ipvs-trace/tests/man_completions.rs); with IPVS_TRACE_BLESS=1 it rewrites them.
const GENERATED_TEST: [&str; 5] = ["test", "-p", "ipvs-trace", "--test", "man_completions"];

pub(super) fn run(args: &Args) -> Result<ExitCode> {
    if args.refresh_generated {
        cmd::run(
            cargo()
                .env("IPVS_TRACE_BLESS", "1")
                .args(GENERATED_TEST)
                .args(["--", "--nocapture"]),
        )
        .context("rewriting docs/man and completions")?;
        println!("dist: docs/man/ and completions/ are fresh: review and commit them");
        return Ok(ExitCode::SUCCESS);
    }
    crate::setup::run()?;
    cmd::run(cargo().args(GENERATED_TEST)).context(
        "the committed man pages or completions do not match the CLI (see above): run \
         `cargo xtask dist --refresh-generated`, commit docs/man and completions, and run \
         dist again",
    )?;
    let binary = {
        let _lock = lab::lock()?;
        lab::binaries::ensure()?.ipvs_trace.clone()
    };
    let dist = paths::target_dir().join("dist");
    let tarball = assemble(&binary, &dist)?;

    println!("dist: ipvs-trace {}", tarball.version);
    for (path, size) in &tarball.files {
        println!("  {size:>10}  {path}");
    }
    println!(
        "dist: wrote {} ({} bytes, sha256 {}) and its .sha256",
        tarball
            .path
            .canonicalize()
            .unwrap_or_else(|_| tarball.path.clone())
            .display(),
        tarball.size,
        tarball.sha256
    );
    if !is_clean_commit(&tarball.version) {
        eprintln!(
            "dist: warning: `{}`: built from sources that are not a commit; commit them for \
             a release",
            tarball.version
        );
    }
    let uncommitted = uncommitted(PACKED_FROM_TREE);
    if !uncommitted.is_empty() {
        eprintln!(
            "dist: warning: packed files with uncommitted changes: {}",
            uncommitted.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cargo() -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(paths::workspace_root());
    cargo
}

/// What `assemble` wrote.
#[derive(Debug)]
struct Tarball {
    path: PathBuf,
    size: u64,
    /// Hex SHA-256 of the tarball.
    sha256: String,
    /// The packed binary's `--version` line, without `ipvs-trace `.
    version: String,
    /// Each packed file (SHA256SUMS included) relative to the tarball's folder, and its size.
    files: Vec<(String, u64)>,
}

/// The workspace paths `assemble` packs besides the binary (for the uncommitted check).
const PACKED_FROM_TREE: &[&str] = &[
    "docs/man",
    "completions",
    "deploy",
    "README.md",
    "docs/install.md",
    "LICENSE-MIT",
    "LICENSE-APACHE",
    "LICENSE-GPL-2.0",
];

/// Packs `binary` with the workspace's man pages, completions, manifests, licenses and docs
/// into `dist/ipvs-trace-VERSION-x86_64-linux.tar.gz` (VERSION from the binary's `--version`),
/// with SHA256SUMS, and writes `TARBALL.sha256` beside it. Replaces earlier ones.
fn assemble(binary: &Path, dist: &Path) -> Result<Tarball> {
    let root = paths::workspace_root();
    let version = binary_version(binary)?;
    let release = version
        .split_whitespace()
        .next()
        .context("empty version")?
        .to_owned();
    check_machine(binary)?;

    let name = format!("ipvs-trace-{release}-{PLATFORM}");
    let staging = dist.join(&name);
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("removing the old {}", staging.display()))?;
    }
    fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;

    // (source, path in the tarball, executable)
    let mut plan: Vec<(PathBuf, String, bool)> =
        vec![(binary.to_owned(), "ipvs-trace".into(), true)];
    for (dir, into) in [("docs/man", "man/man1"), ("completions", "completions")] {
        let files = files_under(&root.join(dir))?;
        ensure!(
            !files.is_empty(),
            "{dir}/ is empty: run `cargo xtask dist --refresh-generated`"
        );
        for file in files {
            plan.push((root.join(dir).join(&file), format!("{into}/{file}"), false));
        }
    }
    for file in files_under(&root.join("deploy"))? {
        plan.push((
            root.join("deploy").join(&file),
            format!("deploy/{file}"),
            false,
        ));
    }
    let licenses: Vec<String> = fs::read_dir(root)
        .context("listing the workspace root")?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("LICENSE"))
        .collect();
    for required in ["LICENSE-MIT", "LICENSE-APACHE", "LICENSE-GPL-2.0"] {
        ensure!(
            licenses.iter().any(|l| l == required),
            "{required} is missing from {}",
            root.display()
        );
    }
    for license in licenses {
        plan.push((root.join(&license), license, false));
    }
    plan.push((root.join("README.md"), "README.md".into(), false));
    plan.push((root.join("docs/install.md"), "INSTALL.md".into(), false));
    plan.sort_by(|a, b| a.1.cmp(&b.1));

    let mut sums = String::new();
    let mut files = Vec::new();
    for (source, path, executable) in &plan {
        let target = staging.join(path);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let data = fs::read(source).with_context(|| format!("reading {}", source.display()))?;
        fs::write(&target, &data).with_context(|| format!("writing {}", target.display()))?;
        let mode = if *executable { 0o755 } else { 0o644 };
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", target.display()))?;
        let _ = writeln!(sums, "{}  {path}", sha256_hex(&data));
        files.push((path.clone(), data.len() as u64));
    }
    fs::write(staging.join("SHA256SUMS"), &sums).context("writing SHA256SUMS")?;
    files.push(("SHA256SUMS".into(), sums.len() as u64));
    files.sort();

    let path = dist.join(format!("{name}.tar.gz"));
    let mut tar = Command::new("tar");
    // Same bytes for the same inputs: sorted entries, no builder's user, files dated by the
    // commit (SOURCE_DATE_EPOCH when set), and gzip without a name or time of its own.
    tar.args(["--create", "--format=gnu", "--sort=name"])
        .args(["--owner=0", "--group=0", "--numeric-owner"])
        .arg("--use-compress-program=gzip -n -9");
    if let Some(epoch) = source_date_epoch() {
        tar.arg(format!("--mtime=@{epoch}"));
    }
    tar.arg("--file")
        .arg(&path)
        .arg("--directory")
        .arg(dist)
        .arg(&name);
    cmd::stdout(&mut tar).context("packing the tarball")?;
    fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;

    let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let sha256 = sha256_hex(&data);
    let sum_file = dist.join(format!("{name}.tar.gz.sha256"));
    fs::write(&sum_file, format!("{sha256}  {name}.tar.gz\n"))
        .with_context(|| format!("writing {}", sum_file.display()))?;
    Ok(Tarball {
        path,
        size: data.len() as u64,
        sha256,
        version,
        files,
    })
}

/// `BINARY --version` without its `ipvs-trace ` prefix.
fn binary_version(binary: &Path) -> Result<String> {
    let out = cmd::stdout(Command::new(binary).arg("--version"))?;
    parse_version(&out).with_context(|| {
        format!(
            "{} --version printed {out:?}, not `ipvs-trace VERSION (...)`",
            binary.display()
        )
    })
}

fn parse_version(out: &str) -> Option<String> {
    let line = out.strip_suffix('\n')?;
    let rest = line.strip_prefix("ipvs-trace ")?;
    let release = rest.split_whitespace().next()?;
    let plain = release
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    (plain && !line.contains('\n')).then(|| rest.to_owned())
}

/// True unless the version names no commit or a dirty one.
fn is_clean_commit(version: &str) -> bool {
    !version.contains("-dirty") && !version.contains("commit unknown")
}

/// Fails unless `binary` is an x86-64 ELF file (the tarball's name says so).
fn check_machine(binary: &Path) -> Result<()> {
    let data = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    match elf_machine(&data) {
        Some(EM_X86_64) => Ok(()),
        Some(other) => bail!(
            "{} is an ELF file for machine {other}, not x86-64",
            binary.display()
        ),
        None => bail!("{} is not an ELF file", binary.display()),
    }
}

fn elf_machine(data: &[u8]) -> Option<u16> {
    if data.get(..4)? != b"\x7fELF" || *data.get(5)? != 1 {
        return None;
    }
    Some(u16::from_le_bytes(data.get(0x12..0x14)?.try_into().ok()?))
}

/// Regular files under `dir`, recursively, as sorted `/`-separated relative paths. Refuses
/// anything else (a symlink would pack whatever it points to).
fn files_under(dir: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().into_string().map_err(|name| {
                anyhow::anyhow!(
                    "{}: a name that is not UTF-8: {}",
                    dir.display(),
                    name.display()
                )
            })?;
            let kind = entry.file_type()?;
            let relative = format!("{prefix}{name}");
            if kind.is_dir() {
                walk(&entry.path(), &format!("{relative}/"), out)?;
            } else if kind.is_file() {
                out.push(relative);
            } else {
                bail!("{}: not a regular file or folder", entry.path().display());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn sha256_hex(data: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(data) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// SOURCE_DATE_EPOCH, else the time of the HEAD commit, else none (files keep their times).
fn source_date_epoch() -> Option<u64> {
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Some(epoch);
    }
    let out = cmd::stdout(
        Command::new("git")
            .arg("-C")
            .arg(paths::workspace_root())
            .args(["show", "-s", "--format=%ct", "HEAD"]),
    )
    .ok()?;
    out.trim().parse().ok()
}

/// Those of `paths` (relative to the workspace) with changes git has not committed; none
/// outside git.
fn uncommitted(paths: &[&str]) -> Vec<String> {
    let Ok(out) = cmd::stdout(
        Command::new("git")
            .arg("-C")
            .arg(paths::workspace_root())
            .args(["--no-optional-locks", "status", "--porcelain", "--"])
            .args(paths),
    ) else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|line| line.get(3..))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_machines_are_checked() {
        assert_eq!(
            parse_version("ipvs-trace 0.1.0 (commit 1a2b3c4, ebpf sha256 9f86d081884c)\n")
                .as_deref(),
            Some("0.1.0 (commit 1a2b3c4, ebpf sha256 9f86d081884c)")
        );
        for bad in [
            "",
            "ipvs-trace 0.1.0",
            "lab-net 0.1.0\n",
            "ipvs-trace ../../x\n",
            "ipvs-trace 0.1.0\nmore\n",
        ] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
        assert!(is_clean_commit(
            "0.1.0 (commit 1a2b3c4, ebpf sha256 9f86d081884c)"
        ));
        assert!(!is_clean_commit(
            "0.1.0 (commit 1a2b3c4-dirty, ebpf sha256 9f86d081884c)"
        ));
        assert!(!is_clean_commit(
            "0.1.0 (commit unknown, ebpf sha256 9f86d081884c)"
        ));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
        assert_eq!(elf_machine(b"\x7fELF\x02\x01"), None);
        let busybox = fs::read("/bin/busybox").expect("busybox-static, a lab requirement");
        assert_eq!(elf_machine(&busybox), Some(EM_X86_64));
    }

    /// The files of the tarball (not its folders), checking that each is under `name/`,
    /// owned by 0/0, and executable only for the binary.
    fn listed(tarball: &Path, name: &str) -> Vec<String> {
        let listing = cmd::stdout(Command::new("tar").arg("-tzvf").arg(tarball))
            .expect("listing the tarball");
        let mut listed = Vec::new();
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (mode, owner, path) = (fields[0], fields[1], fields[fields.len() - 1]);
            assert_eq!(owner, "0/0", "{line}");
            let path = path
                .strip_prefix(&format!("{name}/"))
                .unwrap_or_else(|| panic!("{line}: not under {name}/"));
            if mode.starts_with('d') {
                continue;
            }
            let wanted = if path == "ipvs-trace" {
                "-rwxr-xr-x"
            } else {
                "-rw-r--r--"
            };
            assert_eq!(mode, wanted, "{line}");
            listed.push(path.to_owned());
        }
        listed.sort();
        listed
    }

    /// What the tarball must hold, from the workspace: the fixed files, every man page and
    /// every manifest.
    fn expected() -> Vec<String> {
        let root = paths::workspace_root();
        let mut expected: Vec<String> = [
            "ipvs-trace",
            "README.md",
            "INSTALL.md",
            "LICENSE-MIT",
            "LICENSE-APACHE",
            "LICENSE-GPL-2.0",
            "SHA256SUMS",
            "completions/ipvs-trace.bash",
            "completions/_ipvs-trace",
            "completions/ipvs-trace.fish",
        ]
        .map(String::from)
        .into();
        for page in files_under(&root.join("docs/man")).unwrap() {
            assert!(
                page.starts_with("ipvs-trace") && page.ends_with(".1"),
                "{page}"
            );
            expected.push(format!("man/man1/{page}"));
        }
        for manifest in files_under(&root.join("deploy")).unwrap() {
            expected.push(format!("deploy/{manifest}"));
        }
        expected.sort();
        for needed in [
            "man/man1/ipvs-trace.1",
            "man/man1/ipvs-trace-trace.1",
            "deploy/daemonset.yaml",
        ] {
            assert!(expected.iter().any(|p| p == needed), "{needed} missing");
        }
        expected
    }

    fn sha256sum_check(dir: &Path, file: &str) -> std::process::Output {
        cmd::output(
            Command::new("sha256sum")
                .arg("-c")
                .arg(file)
                .current_dir(dir),
        )
        .expect("running sha256sum")
    }

    /// The real tarball from the real static binary (the one the lab builds, so the test
    /// command builds it once for both).
    #[test]
    fn tarball_lists_the_release_and_its_sums_verify() {
        let binary = {
            let _lock = lab::lock().expect("the lab's build lock");
            lab::binaries::ensure()
                .expect("building the static binaries")
                .ipvs_trace
                .clone()
        };
        let dir = paths::target_dir()
            .join("tmp")
            .join(format!("dist-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let tarball = assemble(&binary, &dir).expect("assembling the tarball");
        let release = env!("CARGO_PKG_VERSION");
        let name = format!("ipvs-trace-{release}-x86_64-linux");
        assert_eq!(tarball.path, dir.join(format!("{name}.tar.gz")));
        assert!(tarball.version.starts_with(&format!("{release} (commit ")));

        let listed = listed(&tarball.path, &name);
        assert_eq!(listed, expected());
        let reported: Vec<&str> = tarball.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(reported, listed, "what dist reports is what it packed");

        // SHA256SUMS names every other file, and sha256sum (not our code) verifies it.
        let unpacked = dir.join("unpacked");
        fs::create_dir_all(&unpacked).unwrap();
        cmd::stdout(
            Command::new("tar")
                .arg("-xzf")
                .arg(&tarball.path)
                .arg("-C")
                .arg(&unpacked),
        )
        .expect("unpacking");
        let top = unpacked.join(&name);
        let sums = fs::read_to_string(top.join("SHA256SUMS")).unwrap();
        let mut summed: Vec<&str> = sums
            .lines()
            .map(|line| line.split_once("  ").expect("`HASH  PATH`").1)
            .collect();
        summed.push("SHA256SUMS");
        summed.sort_unstable();
        assert_eq!(summed, listed);
        let verified = sha256sum_check(&top, "SHA256SUMS");
        assert!(verified.status.success(), "{verified:?}");
        let ok_lines = String::from_utf8_lossy(&verified.stdout)
            .lines()
            .filter(|l| l.ends_with(": OK"))
            .count();
        assert_eq!(ok_lines, listed.len() - 1);
        let verified = sha256sum_check(&dir, &format!("{name}.tar.gz.sha256"));
        assert!(verified.status.success(), "{verified:?}");

        // The packed binary is the built one, and runs.
        assert_eq!(
            fs::read(top.join("ipvs-trace")).unwrap(),
            fs::read(&binary).unwrap()
        );
        let version = cmd::stdout(Command::new(top.join("ipvs-trace")).arg("--version"))
            .expect("running the packed binary");
        assert_eq!(version, format!("ipvs-trace {}\n", tarball.version));

        // A changed file fails the check: the sums are not decoration.
        let readme = top.join("README.md");
        let mut text = fs::read(&readme).unwrap();
        text.push(b'\n');
        fs::write(&readme, text).unwrap();
        assert!(!sha256sum_check(&top, "SHA256SUMS").status.success());

        fs::remove_dir_all(&dir).unwrap();
    }
}
