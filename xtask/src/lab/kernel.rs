//! Debian kernel packages for the lab: choose, fetch, verify, unpack, and compute the IPVS
//! module load order.
//!
//! The packages come from the machine's own apt sources with `apt-get download` and are only
//! unpacked (`dpkg-deb -x`) into `target/lab/kernels/<package>/root`, never installed: the host's
//! /boot stays untouched. A pinned, known-good version is preferred so test runs are comparable;
//! if the archive has dropped it (Debian keeps only recent security builds), the newest build of
//! the same series is used and the lab says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::{vmlinux, Kernel};
use crate::{cmd, paths};

/// The modules the guest loads: IPVS with every scheduler the scenarios and users may pick, and
/// the two link types a one-node "cluster" is built from (veth for pods, dummy for kube-ipvs0).
pub(crate) const MODULES: &[&str] = &[
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_lc",
    "ip_vs_wlc",
    "ip_vs_sh",
    "ip_vs_mh",
    "veth",
    "dummy",
];

/// Unloaded by `/lab/unload-ipvs.sh`, schedulers first (they hold references on ip_vs).
pub(crate) const IPVS_MODULES: &[&str] = &[
    "ip_vs_mh",
    "ip_vs_sh",
    "ip_vs_wlc",
    "ip_vs_lc",
    "ip_vs_wrr",
    "ip_vs_rr",
    "ip_vs",
];

impl Kernel {
    /// The package the lab was checked with.
    fn pinned_package(self) -> &'static str {
        match self {
            Kernel::V6_1 => "linux-image-6.1.0-56-amd64",
            Kernel::V6_12 => "linux-image-6.12.117+deb12-amd64",
        }
    }

    /// `(prefix, suffix)` around the one number that changes between builds of the series.
    fn package_shape(self) -> (&'static str, &'static str) {
        match self {
            Kernel::V6_1 => ("linux-image-6.1.0-", "-amd64"),
            Kernel::V6_12 => ("linux-image-6.12.", "+deb12-amd64"),
        }
    }

    /// The build number of `package` if it belongs to this series (`-rt`/`-cloud` flavours and
    /// `-dbg`/`-unsigned` packages do not).
    fn build_number(self, package: &str) -> Option<u32> {
        let (prefix, suffix) = self.package_shape();
        let middle = package.strip_prefix(prefix)?.strip_suffix(suffix)?;
        if middle.is_empty() || !middle.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        middle.parse().ok()
    }
}

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub(crate) struct KernelTree {
    pub package: String,
    pub version: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub root: PathBuf,
    /// What QEMU boots: the uncompressed `vmlinux` when it could be extracted (see
    /// [`super::vmlinux`]), else the package's bzImage.
    pub boot_image: PathBuf,
}

/// One module to insmod, in load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Module {
    /// As the kernel names it (`crc32c_intel` for `crc32c-intel.ko`): the /sys/module entry.
    pub name: String,
    /// The file in the unpacked package, `.ko` or `.ko.xz`.
    pub host_path: PathBuf,
    /// Where the guest finds the uncompressed `.ko`.
    pub guest_path: String,
    pub args: &'static str,
}

/// Makes sure the kernel of `kernel` is downloaded, verified and unpacked; cheap when cached.
/// Progress goes to stderr.
pub(crate) fn ensure(kernel: Kernel) -> Result<KernelTree> {
    let cache = paths::lab_dir().join("kernels");
    if let Some(tree) = cached(&cache, kernel.pinned_package()) {
        return Ok(tree);
    }
    let mut updated = false;
    loop {
        let candidate = match resolve(kernel)? {
            Some(candidate) => candidate,
            None if !updated => {
                eprintln!("lab: no {kernel} kernel package in the apt lists; refreshing them");
                apt_update()?;
                updated = true;
                continue;
            }
            None => bail!(
                "no Debian {kernel} kernel package ({}) is available from this machine's apt \
                 sources (see /etc/apt/sources.list.d/); the lab needs bookworm and \
                 bookworm-security",
                kernel.pinned_package()
            ),
        };
        if let Some(tree) = cached(&cache, &candidate.package) {
            return Ok(tree);
        }
        match fetch(&cache, &candidate) {
            Ok(tree) => return Ok(tree),
            // Stale lists point at files the mirror no longer has: refresh once and retry.
            Err(err) if !updated => {
                eprintln!("lab: download failed ({err:#}); refreshing the apt lists and retrying");
                apt_update()?;
                updated = true;
            }
            Err(err) => return Err(err),
        }
    }
}

struct Candidate {
    package: String,
    version: String,
    sha256: String,
}

/// The pinned package if apt knows it, else the newest of the series, else `None`.
fn resolve(kernel: Kernel) -> Result<Option<Candidate>> {
    let pinned = kernel.pinned_package();
    if let Some(candidate) = apt_show(pinned)? {
        return Ok(Some(candidate));
    }
    let (prefix, suffix) = kernel.package_shape();
    let pattern = format!(
        "^{}[0-9]+{}$",
        prefix.replace('.', r"\.").replace('+', r"\+"),
        suffix.replace('.', r"\.").replace('+', r"\+")
    );
    let listing =
        cmd::stdout(Command::new("apt-cache").args(["search", "--names-only", &pattern]))?;
    let newest = listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| Some((kernel.build_number(name)?, name.to_owned())))
        .max();
    let Some((_, package)) = newest else {
        return Ok(None);
    };
    let Some(candidate) = apt_show(&package)? else {
        return Ok(None);
    };
    eprintln!(
        "lab: the pinned kernel {pinned} is no longer in the archive; using the newest of the \
         series, {} {}",
        candidate.package, candidate.version
    );
    Ok(Some(candidate))
}

/// Version and SHA256 of the candidate apt would download, `None` if apt does not know it.
fn apt_show(package: &str) -> Result<Option<Candidate>> {
    let out = cmd::output(Command::new("apt-cache").args(["show", "--no-all-versions", package]))?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(|value| value.trim().to_owned())
    };
    match (field("Version"), field("SHA256")) {
        (Some(version), Some(sha256)) => Ok(Some(Candidate {
            package: package.to_owned(),
            version,
            sha256,
        })),
        _ => Ok(None),
    }
}

fn apt_update() -> Result<()> {
    cmd::run(Command::new("apt-get").arg("update").arg("-q"))
        .context("refreshing the apt lists (needs root and the package archive)")
}

const UNPACKED_MARKER: &str = "unpacked.ok";

/// The unpacked tree of `package` if a previous run completed it.
fn cached(cache: &Path, package: &str) -> Option<KernelTree> {
    let dir = cache.join(package);
    let Ok(marker) = fs::read_to_string(dir.join(UNPACKED_MARKER)) else {
        return None;
    };
    let value = |key: &str| {
        marker
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let (Some(version), Some(release), Some(boot)) =
        (value("version"), value("release"), value("boot"))
    else {
        return None;
    };
    let root = dir.join("root");
    let boot_image = dir.join(boot);
    if !boot_image.is_file()
        || !root
            .join("lib/modules")
            .join(&release)
            .join("modules.dep")
            .is_file()
    {
        return None;
    }
    Some(KernelTree {
        package: package.to_owned(),
        version,
        release,
        root,
        boot_image,
    })
}

/// Downloads (unless a verified copy is there), unpacks and indexes one package.
fn fetch(cache: &Path, candidate: &Candidate) -> Result<KernelTree> {
    let dir = cache.join(&candidate.package);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let deb = dir.join("package.deb");
    let have_good_deb = deb.is_file() && sha256(&deb)? == candidate.sha256;
    if !have_good_deb {
        eprintln!(
            "lab: downloading {} {} from the apt sources",
            candidate.package, candidate.version
        );
        let download = dir.join("download.tmp");
        let _ = fs::remove_dir_all(&download);
        fs::create_dir_all(&download)?;
        cmd::run(
            Command::new("apt-get")
                // apt's download sandbox user cannot write into root's target directory; the
                // file is verified against the archive's SHA256 below instead.
                .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
                .arg(format!("{}={}", candidate.package, candidate.version))
                .current_dir(&download),
        )?;
        let fetched = fs::read_dir(&download)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
            .with_context(|| format!("apt-get download left no .deb in {}", download.display()))?;
        let got = sha256(&fetched)?;
        if got != candidate.sha256 {
            let _ = fs::remove_dir_all(&download);
            bail!(
                "{} downloaded with SHA256 {got}, but the archive index says {}: the download \
                 is corrupt or the apt lists are stale (run `apt-get update`)",
                candidate.package,
                candidate.sha256
            );
        }
        fs::rename(&fetched, &deb)?;
        fs::remove_dir_all(&download)?;
    }

    eprintln!("lab: unpacking {}", candidate.package);
    let _ = fs::remove_file(dir.join(UNPACKED_MARKER));
    let root = dir.join("root");
    let staging = dir.join("root.tmp");
    for stale in [&root, &staging] {
        if stale.exists() {
            fs::remove_dir_all(stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    cmd::stdout(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging))?;
    let release = single_release(&staging.join("lib/modules"))?;
    if !staging
        .join("lib/modules")
        .join(&release)
        .join("modules.dep")
        .is_file()
    {
        // 6.1 packages leave modules.dep to the postinst; build it inside the tree.
        cmd::stdout(Command::new("depmod").arg("-b").arg(&staging).arg(&release))?;
    }
    fs::rename(&staging, &root)?;
    let boot = boot_image(&dir, &root, &release);
    fs::write(
        dir.join(UNPACKED_MARKER),
        format!(
            "package={}\nversion={}\nsha256={}\nrelease={release}\nboot={boot}\n",
            candidate.package, candidate.version, candidate.sha256
        ),
    )?;
    cached(cache, &candidate.package).with_context(|| {
        format!(
            "{} unpacked, but its vmlinuz or modules.dep is missing",
            candidate.package
        )
    })
}

/// The boot image, relative to `dir`: an extracted `vmlinux` if the kernel has a PVH entry
/// point, else the bzImage.
fn boot_image(dir: &Path, root: &Path, release: &str) -> String {
    let bzimage = format!("root/boot/vmlinuz-{release}");
    let config =
        fs::read_to_string(root.join("boot").join(format!("config-{release}"))).unwrap_or_default();
    if !config.lines().any(|line| line == "CONFIG_PVH=y") {
        eprintln!("lab: {release} has no PVH entry point; booting its bzImage (slower under TCG)");
        return bzimage;
    }
    match vmlinux::extract(&dir.join(&bzimage), &dir.join("vmlinux")) {
        Ok(()) => "vmlinux".to_owned(),
        Err(err) => {
            eprintln!("lab: booting the bzImage of {release} (slower under TCG): {err:#}");
            bzimage
        }
    }
}

fn single_release(modules: &Path) -> Result<String> {
    let releases: Vec<String> = fs::read_dir(modules)
        .with_context(|| format!("the package has no {}", modules.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    match releases.as_slice() {
        [release] => Ok(release.clone()),
        _ => bail!(
            "expected one kernel release under {}, found {releases:?}",
            modules.display()
        ),
    }
}

fn sha256(path: &Path) -> Result<String> {
    let out = cmd::stdout(Command::new("sha256sum").arg(path))?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .context("sha256sum printed nothing")
}

/// The insmod order for [`MODULES`], from the host's `modprobe --show-depends` run against the
/// unpacked tree: each module's closure in dependency order, first occurrence kept.
pub(crate) fn load_order(tree: &KernelTree) -> Result<Vec<Module>> {
    let mut order: Vec<Module> = Vec::new();
    for module in MODULES {
        let shown = cmd::stdout(
            Command::new("modprobe")
                // No host configuration: the host's modprobe.d must not change the image.
                .args(["-C", "/dev/null", "-S", &tree.release, "-d"])
                .arg(&tree.root)
                .args(["--show-depends", module]),
        )
        .with_context(|| format!("resolving the dependencies of {module} in {}", tree.package))?;
        for path in parse_show_depends(&shown) {
            let host_path = PathBuf::from(path);
            let relative = host_path.strip_prefix(&tree.root).with_context(|| {
                format!("modprobe named {path}, outside {}", tree.root.display())
            })?;
            let guest_path = format!("/{}", relative.to_string_lossy().trim_end_matches(".xz"));
            let file = guest_path.rsplit('/').next().unwrap_or_default();
            let name = file.trim_end_matches(".ko").replace('-', "_");
            if order.iter().any(|m| m.name == name) {
                continue;
            }
            // systemd's modprobe.d does the same on every real node: no stray dummy0.
            let args = if name == "dummy" { "numdummies=0" } else { "" };
            order.push(Module {
                name,
                host_path,
                guest_path,
                args,
            });
        }
    }
    Ok(order)
}

/// The module files of `modprobe --show-depends` output; built-in modules need no loading.
fn parse_show_depends(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.strip_prefix("insmod "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_series_are_told_apart() {
        assert_eq!(
            Kernel::V6_1.build_number("linux-image-6.1.0-56-amd64"),
            Some(56)
        );
        assert_eq!(
            Kernel::V6_1.build_number("linux-image-6.1.0-56-rt-amd64"),
            None
        );
        assert_eq!(
            Kernel::V6_1.build_number("linux-image-6.1.0-56-cloud-amd64"),
            None
        );
        assert_eq!(
            Kernel::V6_12.build_number("linux-image-6.12.117+deb12-amd64"),
            Some(117)
        );
        assert_eq!(Kernel::V6_12.build_number("linux-image-6.12-amd64"), None);
        assert_eq!(
            Kernel::V6_12.build_number("linux-image-6.12.117+deb12-cloud-amd64"),
            None
        );
        assert_eq!(
            Kernel::V6_12.build_number("linux-image-6.1.0-56-amd64"),
            None
        );
        for kernel in Kernel::ALL {
            assert!(kernel.build_number(kernel.pinned_package()).is_some());
        }
    }

    #[test]
    fn show_depends_keeps_files_and_drops_builtins_and_options() {
        let text = "builtin crc32c_generic\n\
                    insmod /r/lib/modules/x/kernel/lib/libcrc32c.ko \n\
                    insmod /r/lib/modules/x/kernel/drivers/net/dummy.ko.xz numdummies=0 \n";
        assert_eq!(
            parse_show_depends(text),
            [
                "/r/lib/modules/x/kernel/lib/libcrc32c.ko",
                "/r/lib/modules/x/kernel/drivers/net/dummy.ko.xz"
            ]
        );
    }
}
