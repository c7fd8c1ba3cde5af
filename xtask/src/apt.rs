//! Installing Debian packages without taking anything away from the machine.
//!
//! `apt-get install` resolves a conflict by removing or downgrading what is installed: on a
//! fresh machine of this kind, installing `qemu-system-x86` (bookworm, 7.2) removed the
//! preinstalled `qemu-utils` 10.0 (a bookworm-backports build) without a word. So every install
//! is simulated first (`apt-get -s`). When the plan removes or downgrades a package, the install
//! is tried from the suite that package's installed version came from (the suite apt knows it
//! from, or, for a `~bpoNN` build installed from a file, that release's backports), through a
//! private source list under `target/apt/` that leaves the machine's own configuration alone.
//! When no suite fits, setup stops, naming the conflict and the command that would resolve it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::{cmd, paths};

/// What an `apt-get -s install` would take from the machine.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// `(package, installed version)` it would remove.
    pub removed: Vec<(String, String)>,
    /// `(package, installed version, version it would install)` it would downgrade.
    pub downgraded: Vec<(String, String, String)>,
}

impl Losses {
    fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.downgraded.is_empty()
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .removed
            .iter()
            .map(|(p, v)| format!("remove {p} {v}"))
            .collect();
        parts.extend(
            self.downgraded
                .iter()
                .map(|(p, from, to)| format!("downgrade {p} {from} to {to}")),
        );
        parts.join(", ")
    }

    /// The installed packages and versions it would take.
    fn affected(&self) -> impl Iterator<Item = (&str, &str)> {
        self.removed
            .iter()
            .map(|(p, v)| (p.as_str(), v.as_str()))
            .chain(
                self.downgraded
                    .iter()
                    .map(|(p, v, _)| (p.as_str(), v.as_str())),
            )
    }
}

/// Reads `apt-get -s install` output: `Remv PKG [VERSION]` lines, and `Inst PKG [OLD] (NEW
/// ...)` lines, which replace an installed version; `is_older(new, old)` says which of those
/// are downgrades (dpkg's version order).
pub fn losses(simulation: &str, is_older: impl Fn(&str, &str) -> Result<bool>) -> Result<Losses> {
    let mut losses = Losses::default();
    for line in simulation.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // The installed version, bracketed right after the package (`[amd64]` further on is
        // the architecture of the version to install).
        let installed = words
            .get(2)
            .and_then(|w| w.strip_prefix('['))
            .and_then(|w| w.strip_suffix(']'));
        match (words.first(), words.get(1), installed) {
            (Some(&"Remv"), Some(package), installed) => {
                losses
                    .removed
                    .push(((*package).to_owned(), installed.unwrap_or("?").to_owned()));
            }
            (Some(&"Inst"), Some(package), Some(old)) => {
                let Some(new) = words.get(3).and_then(|w| w.strip_prefix('(')) else {
                    bail!("unexpected apt-get simulation line: {line}");
                };
                if is_older(new, old)? {
                    losses
                        .downgraded
                        .push(((*package).to_owned(), old.to_owned(), new.to_owned()));
                }
            }
            _ => {}
        }
    }
    Ok(losses)
}

/// Where the installed `version` of a package came from, from its `apt-cache policy`: the
/// suites listed under that version (`500 http://deb.debian.org/debian bookworm-backports/main
/// amd64 Packages`), without the dpkg status pseudo-source.
pub fn suites_of_installed(policy: &str, version: &str) -> Vec<String> {
    let mut suites = Vec::new();
    let mut in_version = false;
    for line in policy.lines() {
        let trimmed = line.trim_start();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        // Version lines: `*** 1:10.0 100` or `1:7.2 500`; origin lines: `500 URL suite/comp ...`.
        let version_line = match words.as_slice() {
            ["***", v, ..] => Some(*v),
            [v, prio] if prio.chars().all(|c| c.is_ascii_digit()) => Some(*v),
            _ => None,
        };
        if let Some(v) = version_line {
            in_version = v == version;
            continue;
        }
        if in_version && words.len() >= 3 && words[1].contains("://") {
            if let Some((suite, _)) = words[2].split_once('/') {
                if !suites.iter().any(|s| s == suite) {
                    suites.push(suite.to_owned());
                }
            }
        }
    }
    suites
}

/// The backports suite of a `~bpoNN` build, when it is this release's (`codename` and
/// `version_id` from /etc/os-release): `bookworm-backports` for `~bpo12` on Debian 12.
pub fn backports_suite(version: &str, codename: &str, version_id: &str) -> Option<String> {
    let (_, rest) = version.split_once("~bpo")?;
    let release: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!release.is_empty() && release == version_id).then(|| format!("{codename}-backports"))
}

/// Installs `missing` (Debian packages not installed), never removing or downgrading one that
/// is: see the module's documentation.
pub fn install(missing: &[&str]) -> Result<()> {
    cmd::run(Command::new("apt-get").args(["update", "-q"]))
        .context("refreshing the apt lists (run as root)")?;
    let losses = simulate(&[], None, missing)?;
    if losses.is_empty() {
        return apt_install(&[], None, missing);
    }
    println!(
        "  apt-get install would {}: looking for versions that fit what is installed",
        losses.describe()
    );
    for suite in candidate_suites(&losses)? {
        let source = PrivateSource::for_suite(&suite)?;
        let options = source.options();
        let retry = simulate(&options, Some(&suite), missing)?;
        if retry.is_empty() {
            println!("  installing from {suite}, which fits");
            return apt_install(&options, Some(&suite), missing);
        }
        println!("  from {suite} it would still {}", retry.describe());
    }
    bail!(
        "installing {} would {}, and no suite that the installed packages came from fits. \
         Setup does not remove or downgrade packages: resolve it yourself, e.g. install a \
         matching version of the affected packages, or accept the change with `apt-get install \
         {}`, then run setup again",
        missing.join(" "),
        losses.describe(),
        missing.join(" ")
    )
}

/// The suites to retry from: those each affected package's installed version came from.
fn candidate_suites(losses: &Losses) -> Result<Vec<String>> {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let (codename, version_id) = (field("VERSION_CODENAME"), field("VERSION_ID"));
    let mut suites = BTreeSet::new();
    for (package, version) in losses.affected() {
        let policy = cmd::stdout(Command::new("apt-cache").args(["policy", package]))?;
        suites.extend(suites_of_installed(&policy, version));
        suites.extend(backports_suite(version, &codename, &version_id));
    }
    Ok(suites.into_iter().collect())
}

/// `apt-get -s install`, and what it would take.
fn simulate(options: &[String], suite: Option<&str>, packages: &[&str]) -> Result<Losses> {
    let mut sim = Command::new("apt-get");
    sim.args(options)
        .args(["-s", "install", "--no-install-recommends"]);
    if let Some(suite) = suite {
        sim.args(["-t", suite]);
    }
    let out = cmd::stdout(sim.args(packages))?;
    losses(&out, dpkg_older)
}

/// Whether Debian version `new` sorts before `old` (`dpkg --compare-versions`).
fn dpkg_older(new: &str, old: &str) -> Result<bool> {
    let status = Command::new("dpkg")
        .args(["--compare-versions", new, "lt", old])
        .status()
        .context("could not run dpkg --compare-versions")?;
    Ok(status.success())
}

fn apt_install(options: &[String], suite: Option<&str>, packages: &[&str]) -> Result<()> {
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(options)
        // The simulation said nothing goes; --no-remove makes apt stop rather than find out
        // otherwise.
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--no-remove",
        ]);
    if let Some(suite) = suite {
        install.args(["-t", suite]);
    }
    cmd::run(install.args(packages)).context("installing the missing packages (run as root)")
}

/// The machine's sources plus one suite, with its own package lists, under `target/apt/SUITE`:
/// apt sees the suite only when given [`PrivateSource::options`].
struct PrivateSource {
    dir: PathBuf,
}

impl PrivateSource {
    fn for_suite(suite: &str) -> Result<Self> {
        if !suite.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("unexpected suite name `{suite}`");
        }
        let dir = paths::target_dir().join("apt").join(suite);
        let parts = dir.join("sources.list.d");
        std::fs::create_dir_all(&parts).with_context(|| format!("creating {}", parts.display()))?;
        std::fs::create_dir_all(dir.join("lists/partial"))?;
        // The machine's own source files, then the suite (on the machine's Debian mirror).
        for entry in std::fs::read_dir("/etc/apt/sources.list.d")
            .into_iter()
            .flatten()
        {
            let entry = entry?;
            let link = parts.join(entry.file_name());
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(entry.path(), &link)
                    .with_context(|| format!("linking {}", link.display()))?;
            }
        }
        let line = format!("deb {} {suite} main\n", debian_mirror());
        std::fs::write(parts.join(format!("zz-ipvs-trace-{suite}.list")), line)?;
        let source = PrivateSource { dir };
        cmd::run(
            Command::new("apt-get")
                .args(source.options())
                .args(["update", "-q"]),
        )
        .with_context(|| format!("fetching the package lists of {suite}"))?;
        Ok(source)
    }

    fn options(&self) -> Vec<String> {
        let at = |p: &Path| p.display().to_string();
        vec![
            "-o".into(),
            format!(
                "Dir::Etc::sourceparts={}",
                at(&self.dir.join("sources.list.d"))
            ),
            "-o".into(),
            format!("Dir::State::lists={}", at(&self.dir.join("lists"))),
        ]
    }
}

/// The Debian mirror the machine's sources use (deb.debian.org unless they name another).
fn debian_mirror() -> String {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    for entry in std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
    {
        texts.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    texts
        .iter()
        .flat_map(|t| t.split_whitespace())
        .find(|w| w.starts_with("http") && w.trim_end_matches('/').ends_with("/debian"))
        .map_or_else(
            || "http://deb.debian.org/debian".to_owned(),
            |w| w.trim_end_matches('/').to_owned(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fresh machine's case, as apt-get -s printed it (shortened).
    const SIMULATION: &str = "\
NOTE: This is only a simulation!
Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]
Inst libfdt1 (1.6.1-4+b1 Debian:12.15/oldstable [amd64])
Inst qemu-block-extra [1:10.0.2+ds-2+deb13u1~bpo12+1] (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Inst libssh-4 [0.10.6-0+deb12u2] (0.10.6-0+deb12u3 Debian-Security:12/oldstable-security [amd64])
Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
";

    #[test]
    fn a_simulation_names_what_it_removes_and_downgrades_not_upgrades() {
        let found = losses(SIMULATION, dpkg_older).unwrap();
        assert_eq!(
            found.removed,
            [("qemu-utils".into(), "1:10.0.2+ds-2+deb13u1~bpo12+1".into())]
        );
        assert_eq!(
            found.downgraded,
            [(
                "qemu-block-extra".into(),
                "1:10.0.2+ds-2+deb13u1~bpo12+1".into(),
                "1:7.2+dfsg-7+deb12u18+b3".into()
            )]
        );
        assert!(losses("Inst a (1 Debian [amd64])\n", dpkg_older)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_suite_of_the_installed_version_is_read_from_its_policy() {
        let policy = "\
qemu-utils:
  Installed: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Version table:
 *** 1:10.0.2+ds-2+deb13u1~bpo12+1 100
        100 http://deb.debian.org/debian bookworm-backports/main amd64 Packages
        100 /var/lib/dpkg/status
     1:7.2+dfsg-7+deb12u18+b3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
";
        assert_eq!(
            suites_of_installed(policy, "1:10.0.2+ds-2+deb13u1~bpo12+1"),
            ["bookworm-backports"]
        );
        assert_eq!(
            suites_of_installed(policy, "1:7.2+dfsg-7+deb12u18+b3"),
            ["bookworm"]
        );
        // Installed from a file: only the status pseudo-source.
        let local = " *** 1:10.0 100\n        100 /var/lib/dpkg/status\n";
        assert!(suites_of_installed(local, "1:10.0").is_empty());
    }

    #[test]
    fn a_bpo_build_of_this_release_points_at_its_backports() {
        assert_eq!(
            backports_suite("1:10.0.2+ds-2+deb13u1~bpo12+1", "bookworm", "12").as_deref(),
            Some("bookworm-backports")
        );
        assert_eq!(backports_suite("1:10.0.2~bpo11+1", "bookworm", "12"), None);
        assert_eq!(backports_suite("1:7.2+dfsg-7", "bookworm", "12"), None);
    }
}
