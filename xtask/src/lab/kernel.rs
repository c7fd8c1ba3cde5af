//! Debian kernel packages for the lab: choose, fetch, verify, unpack, and compute the IPVS
//! module load order.
//!
//! The packages are fetched with `apt-get download` and only unpacked (`dpkg-deb -x`) into
//! `target/lab/kernels/<package>/root`, never installed: the host's /boot stays untouched. 6.1
//! and 6.12 come from the machine's own apt sources; 5.10 (bullseye-security) and 7.2 (sid) from
//! a private apt configuration under `target/lab/apt/<suite>/` that reuses the archive URIs the
//! host's sources name and leaves the host's apt state alone ([`Apt`]). Every .deb is checked
//! against the SHA256 of the archive's index. A pinned, known-good version is preferred so test
//! runs are comparable; if the archive has dropped it (Debian keeps only recent security builds,
//! sid moves on), the newest build of the same series is used and the lab says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::{vmlinux, Kernel};
use crate::{cmd, paths};

/// The modules the guest loads: IPVS with every scheduler the scenarios and users may pick, and
/// the two link types a one-node "cluster" is built from (veth for pods, dummy for kube-ipvs0),
/// and conntrack's netlink interface (`trace --nat` and the `conntrack` tool read the table
/// through it; nf_conntrack itself comes with ip_vs).
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
    "nf_conntrack_netlink",
];

/// What kube-proxy's nftables and iptables (iptables-nft) modes need, loaded by
/// `/lab/load-netfilter.sh` when a scenario asks (the IPVS scenarios' boots do not pay for
/// them): nf_tables with the expressions kube-proxy's rules use (`numgen`, `ct`, `dnat`,
/// `masquerade`, `reject`), and the x_tables matches and targets iptables-nft runs
/// through nft_compat (`statistic`, `comment`, `mark`, `addrtype`, `conntrack`, `tcp`,
/// `DNAT`, `MASQUERADE`). Present as modules in Debian's 5.10, 6.1, 6.12 and 7.2 builds; the
/// nft_set_* backends, nft_meta and nft_counter are built into nf_tables there.
pub(crate) const NETFILTER_MODULES: &[&str] = &[
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_numgen",
    "nft_ct",
    "nft_masq",
    "nft_reject_ipv4",
    "nft_compat",
    "xt_statistic",
    "xt_comment",
    "xt_mark",
    "xt_addrtype",
    "xt_conntrack",
    "xt_tcpudp",
    "xt_nat",
    "xt_MASQUERADE",
];

/// Parts of nf_tables that older kernels build as modules of their own and newer ones into
/// nf_tables itself: nft_counter (every iptables-nft rule counts) is a module on 5.10 and
/// built in on 6.1, 6.12 and 7.2. Loaded where `modprobe` finds them ([`separate_modules`]).
pub(crate) const NETFILTER_MODULES_BUILT_IN_LATER: &[&str] = &["nft_counter"];

/// The legacy (x_tables) iptables tables, for `iptables-legacy`: `/lab/load-netfilter.sh
/// legacy`. Apart from [`NETFILTER_MODULES`] because iptable_filter installs its table (and
/// its hooks) as it loads.
pub(crate) const LEGACY_IPTABLES_MODULES: &[&str] = &["ip_tables", "iptable_nat", "iptable_filter"];

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

/// Where a series' packages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Archive {
    /// The machine's own apt sources (bookworm, bookworm-security).
    Host,
    /// Another suite of the Debian archive (`security`: the security archive), through [`Apt`].
    Suite { suite: &'static str, security: bool },
}

impl Kernel {
    /// The package the lab was checked with.
    fn pinned_package(self) -> &'static str {
        match self {
            Kernel::V5_10 => "linux-image-5.10.0-46-amd64-unsigned",
            Kernel::V6_1 => "linux-image-6.1.0-56-amd64",
            Kernel::V6_12 => "linux-image-6.12.117+deb12-amd64",
            Kernel::V7_2 => "linux-binary-7.2.13+deb14-amd64",
        }
    }

    /// `(prefix, suffix)` around the one number that changes between builds of the series.
    fn package_shape(self) -> (&'static str, &'static str) {
        match self {
            Kernel::V5_10 => ("linux-image-5.10.0-", "-amd64-unsigned"),
            Kernel::V6_1 => ("linux-image-6.1.0-", "-amd64"),
            Kernel::V6_12 => ("linux-image-6.12.", "+deb12-amd64"),
            Kernel::V7_2 => ("linux-binary-7.2.", "+deb14-amd64"),
        }
    }

    fn archive(self) -> Archive {
        match self {
            Kernel::V6_1 | Kernel::V6_12 => Archive::Host,
            Kernel::V5_10 => Archive::Suite {
                suite: "bullseye-security",
                security: true,
            },
            Kernel::V7_2 => Archive::Suite {
                suite: "sid",
                security: false,
            },
        }
    }

    /// The packages that come with `package`: from 7.x on, Debian ships the image
    /// (`linux-binary-*`) and the modules (`linux-modules-*`) apart.
    fn companions(package: &str) -> Vec<String> {
        match package.strip_prefix("linux-binary-") {
            Some(rest) => vec![format!("linux-modules-{rest}")],
            None => Vec::new(),
        }
    }

    /// The build number of `package` if it belongs to this series (`-rt`/`-cloud` flavours and
    /// `-dbg`/`-unsigned` packages do not, except 5.10's `-unsigned`, the only plain one).
    fn build_number(self, package: &str) -> Option<u32> {
        let (prefix, suffix) = self.package_shape();
        let middle = package.strip_prefix(prefix)?.strip_suffix(suffix)?;
        if middle.is_empty() || !middle.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        middle.parse().ok()
    }
}

/// An unpacked kernel package (with its companions).
#[derive(Debug, Clone)]
pub(crate) struct KernelTree {
    pub package: String,
    pub version: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub root: PathBuf,
    /// The directory holding `lib/modules/<release>`: `root`, or `root/usr` for packages that
    /// ship only the merged-/usr path (7.x). What `modprobe -d` and `depmod -b` take.
    pub modules_base: PathBuf,
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
    let apt = Apt::for_archive(kernel.archive())?;
    // A private suite's lists start empty: fetch them before the first look.
    let mut updated = false;
    if !apt.has_lists() {
        apt.update()?;
        updated = true;
    }
    loop {
        let candidate = match resolve(&apt, kernel)? {
            Some(candidate) => candidate,
            None if !updated => {
                eprintln!("lab: no {kernel} kernel package in the apt lists; refreshing them");
                apt.update()?;
                updated = true;
                continue;
            }
            None => bail!(
                "no Debian {kernel} kernel package ({}) is available from {}",
                kernel.pinned_package(),
                apt.describe()
            ),
        };
        if let Some(tree) = cached(&cache, &candidate.main().name) {
            return Ok(tree);
        }
        match fetch(&apt, &cache, &candidate) {
            Ok(tree) => return Ok(tree),
            // Stale lists point at files the mirror no longer has: refresh once and retry.
            Err(err) if !updated => {
                eprintln!("lab: download failed ({err:#}); refreshing the apt lists and retrying");
                apt.update()?;
                updated = true;
            }
            Err(err) => return Err(err),
        }
    }
}

/// One package as the archive's index describes it.
#[derive(Clone, Debug)]
struct Package {
    name: String,
    version: String,
    sha256: String,
}

/// The packages of one kernel: the image first, then its companions.
struct Candidate(Vec<Package>);

impl Candidate {
    fn main(&self) -> &Package {
        &self.0[0]
    }
}

/// The pinned package if apt knows it, else the newest of the series, else `None`; with its
/// companions.
fn resolve(apt: &Apt, kernel: Kernel) -> Result<Option<Candidate>> {
    let pinned = kernel.pinned_package();
    let main = if let Some(package) = apt.show(pinned)? {
        package
    } else {
        let (prefix, suffix) = kernel.package_shape();
        let pattern = format!(
            "^{}[0-9]+{}$",
            prefix.replace('.', r"\.").replace('+', r"\+"),
            suffix.replace('.', r"\.").replace('+', r"\+")
        );
        let newest = apt
            .search(&pattern)?
            .into_iter()
            .filter_map(|name| Some((kernel.build_number(&name)?, name)))
            .max();
        let Some((_, name)) = newest else {
            return Ok(None);
        };
        let Some(package) = apt.show(&name)? else {
            return Ok(None);
        };
        eprintln!(
            "lab: the pinned kernel {pinned} is no longer in the archive; using the newest \
             of the series, {} {}",
            package.name, package.version
        );
        package
    };
    let mut packages = vec![main];
    for companion in Kernel::companions(&packages[0].name) {
        match apt.show(&companion)? {
            Some(package) => packages.push(package),
            None => bail!(
                "{} needs {companion}, which {} does not have",
                packages[0].name,
                apt.describe()
            ),
        }
    }
    Ok(Some(Candidate(packages)))
}

/// apt-get/apt-cache, either on the host's own configuration or on a private one for another
/// suite: its sources.list, lists and caches live under `target/lab/apt/<suite>/`, so the
/// host's sources, lists and package caches are never touched.
struct Apt {
    /// `-o` options selecting the private configuration (empty for the host's).
    options: Vec<String>,
    /// The private lists directory (`None` for the host's).
    lists: Option<PathBuf>,
    suite: Option<&'static str>,
}

impl Apt {
    fn for_archive(archive: Archive) -> Result<Apt> {
        let Archive::Suite { suite, security } = archive else {
            return Ok(Apt {
                options: Vec::new(),
                lists: None,
                suite: None,
            });
        };
        let dir = paths::lab_dir().join("apt").join(suite);
        let lists = dir.join("lists");
        let cache = dir.join("cache");
        for d in [lists.join("partial"), cache.join("archives/partial")] {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let uri = host_archive_uri(security)?;
        let sources = dir.join("sources.list");
        fs::write(
            &sources,
            format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} {suite} main\n"
            ),
        )
        .with_context(|| format!("writing {}", sources.display()))?;
        let option = |key: &str, value: &Path| format!("{key}={}", value.display());
        Ok(Apt {
            options: vec![
                option("Dir::Etc::sourcelist", &sources),
                "Dir::Etc::sourceparts=-".to_owned(),
                option("Dir::State::Lists", &lists),
                option("Dir::Cache", &cache),
            ],
            lists: Some(lists),
            suite: Some(suite),
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for option in &self.options {
            command.arg("-o").arg(option);
        }
        command
    }

    fn describe(&self) -> String {
        match self.suite {
            Some(suite) => {
                format!("Debian's {suite} suite (private apt lists under target/lab/apt)")
            }
            None => "this machine's apt sources (see /etc/apt/sources.list.d/; the lab needs \
                     bookworm and bookworm-security)"
                .to_owned(),
        }
    }

    /// The private lists have been fetched (the host's always count as there).
    fn has_lists(&self) -> bool {
        self.lists.as_ref().is_none_or(|lists| {
            fs::read_dir(lists).is_ok_and(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().contains("Packages"))
            })
        })
    }

    fn update(&self) -> Result<()> {
        if let Some(suite) = self.suite {
            eprintln!("lab: fetching the package lists of Debian {suite} (private to the lab)");
        }
        cmd::run(self.command("apt-get").arg("update").arg("-q")).with_context(|| {
            format!(
                "refreshing the apt lists of {} (needs root and the package archive)",
                self.describe()
            )
        })
    }

    /// Package names matching the regular expression.
    fn search(&self, pattern: &str) -> Result<Vec<String>> {
        let listing =
            cmd::stdout(
                self.command("apt-cache")
                    .args(["search", "--names-only", pattern]),
            )?;
        Ok(listing
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    }

    /// Version and SHA256 of the candidate apt would download, `None` if apt does not know it.
    fn show(&self, package: &str) -> Result<Option<Package>> {
        let out =
            cmd::output(
                self.command("apt-cache")
                    .args(["show", "--no-all-versions", package]),
            )?;
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
            (Some(version), Some(sha256)) => Ok(Some(Package {
                name: package.to_owned(),
                version,
                sha256,
            })),
            _ => Ok(None),
        }
    }

    /// Downloads `package` into `dir` and verifies it; returns the .deb.
    fn download(&self, package: &Package, dir: &Path) -> Result<PathBuf> {
        let deb = dir.join(format!("{}.deb", package.name));
        if deb.is_file() && sha256(&deb)? == package.sha256 {
            return Ok(deb);
        }
        eprintln!("lab: downloading {} {}", package.name, package.version);
        let download = dir.join("download.tmp");
        let _ = fs::remove_dir_all(&download);
        fs::create_dir_all(&download)?;
        cmd::run(
            self.command("apt-get")
                // apt's download sandbox user cannot write into root's target directory; the
                // file is verified against the archive's SHA256 below instead.
                .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
                .arg(format!("{}={}", package.name, package.version))
                .current_dir(&download),
        )?;
        let fetched = fs::read_dir(&download)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
            .with_context(|| format!("apt-get download left no .deb in {}", download.display()))?;
        let got = sha256(&fetched)?;
        if got != package.sha256 {
            let _ = fs::remove_dir_all(&download);
            bail!(
                "{} downloaded with SHA256 {got}, but the archive index says {}: the download \
                 is corrupt or the apt lists are stale (run `apt-get update`)",
                package.name,
                package.sha256
            );
        }
        fs::rename(&fetched, &deb)?;
        fs::remove_dir_all(&download)?;
        Ok(deb)
    }
}

/// The main (`security` false) or security archive URI the host's apt sources name, so that a
/// private suite is fetched from the same mirror (and the same proxy rules) as everything else.
fn host_archive_uri(security: bool) -> Result<String> {
    let mut text = String::new();
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.filter_map(Result::ok) {
            text.push_str(&fs::read_to_string(entry.path()).unwrap_or_default());
            text.push('\n');
        }
    }
    text.push_str(&fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    archive_uri(&text, security).with_context(|| {
        format!(
            "no Debian {} archive URI in /etc/apt/sources.list{{,.d/*}}",
            if security { "security" } else { "main" }
        )
    })
}

/// The first Debian archive URI in deb822 (`URIs:`) or one-line (`deb URI SUITE ...`) sources:
/// one with a path segment `debian-security` (`security`) or `debian` (other repositories, such
/// as a vendor's, may sit in the same files).
fn archive_uri(sources: &str, security: bool) -> Option<String> {
    sources
        .lines()
        .flat_map(|line| {
            let line = line.trim();
            if let Some(uris) = line.strip_prefix("URIs:") {
                uris.split_whitespace().collect::<Vec<_>>()
            } else if line.starts_with("deb ") {
                line.split_whitespace()
                    .skip(1)
                    .find(|w| !w.starts_with('['))
                    .into_iter()
                    .collect()
            } else {
                Vec::new()
            }
        })
        .find(|uri| {
            let want = if security {
                "debian-security"
            } else {
                "debian"
            };
            uri.split('/').skip(3).any(|segment| segment == want)
        })
        .map(|uri| uri.trim_end_matches('/').to_owned())
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
    let modules_base = modules_base(&root, value("modules").as_deref() == Some("usr"));
    let boot_image = dir.join(boot);
    if !boot_image.is_file()
        || !modules_base
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
        modules_base,
        boot_image,
    })
}

/// Downloads (unless verified copies are there), unpacks and indexes one kernel's packages.
fn fetch(apt: &Apt, cache: &Path, candidate: &Candidate) -> Result<KernelTree> {
    let main = candidate.main();
    let dir = cache.join(&main.name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut debs = Vec::new();
    for package in &candidate.0 {
        debs.push(apt.download(package, &dir)?);
    }

    eprintln!("lab: unpacking {}", main.name);
    let _ = fs::remove_file(dir.join(UNPACKED_MARKER));
    let root = dir.join("root");
    let staging = dir.join("root.tmp");
    for stale in [&root, &staging] {
        if stale.exists() {
            fs::remove_dir_all(stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    for deb in &debs {
        cmd::stdout(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&staging))?;
    }
    // 7.x packages ship only the merged-/usr path.
    let merged_usr = !staging.join("lib/modules").is_dir();
    let modules_key = if merged_usr { "usr" } else { "root" };
    let base = modules_base(&staging, merged_usr);
    let release = single_release(&base.join("lib/modules"))?;
    if !base
        .join("lib/modules")
        .join(&release)
        .join("modules.dep")
        .is_file()
    {
        // 6.1 and 7.x packages leave modules.dep to the postinst; build it inside the tree.
        cmd::stdout(Command::new("depmod").arg("-b").arg(&base).arg(&release))?;
    }
    fs::rename(&staging, &root)?;
    let base = modules_base(&root, merged_usr);
    let boot = boot_image(&dir, &root, &base, &release);
    fs::write(
        dir.join(UNPACKED_MARKER),
        format!(
            "package={}\nversion={}\nsha256={}\nrelease={release}\nboot={boot}\nmodules={modules_key}\n",
            main.name,
            main.version,
            candidate
                .0
                .iter()
                .map(|p| p.sha256.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
    )?;
    cached(cache, &main.name).with_context(|| {
        format!(
            "{} unpacked, but its vmlinuz or modules.dep is missing",
            main.name
        )
    })
}

/// The directory holding `lib/modules` under an unpacked `root`: `root/usr` for packages that
/// ship only the merged-/usr path (7.x).
fn modules_base(root: &Path, merged_usr: bool) -> PathBuf {
    if merged_usr {
        root.join("usr")
    } else {
        root.to_owned()
    }
}

/// The boot image, relative to `dir`: an extracted `vmlinux` if the kernel has a PVH entry
/// point, else the bzImage (`boot/vmlinuz-<release>`, or `lib/modules/<release>/vmlinuz` in
/// 7.x packages).
fn boot_image(dir: &Path, root: &Path, modules_base: &Path, release: &str) -> String {
    let in_boot = root.join("boot").join(format!("vmlinuz-{release}"));
    let bzimage = if in_boot.is_file() {
        in_boot
    } else {
        modules_base
            .join("lib/modules")
            .join(release)
            .join("vmlinuz")
    };
    let relative = bzimage.strip_prefix(dir).map_or_else(
        |_| bzimage.display().to_string(),
        |p| p.display().to_string(),
    );
    let vmlinux = dir.join("vmlinux");
    match vmlinux::extract(&bzimage, &vmlinux) {
        // The config says CONFIG_PVH where the package ships it (not 7.x); the ELF note is the
        // proof either way.
        Ok(()) if vmlinux::has_pvh_entry(&vmlinux).unwrap_or(false) => "vmlinux".to_owned(),
        Ok(()) => {
            eprintln!(
                "lab: {release} has no PVH entry point; booting its bzImage (slower under TCG)"
            );
            relative
        }
        Err(err) => {
            eprintln!("lab: booting the bzImage of {release} (slower under TCG): {err:#}");
            relative
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

/// The insmod order for `modules`, from the host's `modprobe --show-depends` run against the
/// unpacked tree: each module's closure in dependency order, first occurrence kept, leaving
/// out those in `loaded` (a group loaded before, e.g. [`MODULES`] at boot).
pub(crate) fn load_order(
    tree: &KernelTree,
    modules: &[&str],
    loaded: &[Module],
) -> Result<Vec<Module>> {
    let mut order: Vec<Module> = Vec::new();
    for module in modules {
        let shown = cmd::stdout(
            Command::new("modprobe")
                // No host configuration: the host's modprobe.d must not change the image.
                .args(["-C", "/dev/null", "-S", &tree.release, "-d"])
                .arg(&tree.modules_base)
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
            if order.iter().chain(loaded).any(|m| m.name == name) {
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

/// Those of `names` that `modprobe` finds as modules in `tree` (see
/// [`NETFILTER_MODULES_BUILT_IN_LATER`]); a name it does not find is built into its parent
/// there. Any other failure of `modprobe` is an error.
pub(crate) fn separate_modules<'a>(tree: &KernelTree, names: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut found = Vec::new();
    for name in names {
        let out = cmd::output(
            Command::new("modprobe")
                .args(["-C", "/dev/null", "-S", &tree.release, "-d"])
                .arg(&tree.modules_base)
                .args(["--show-depends", name]),
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            found.push(*name);
        } else if !stderr.contains("not found") {
            bail!(
                "modprobe --show-depends {name} failed in {}: {}",
                tree.package,
                stderr.trim()
            );
        }
    }
    Ok(found)
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
        assert_eq!(
            Kernel::V5_10.build_number("linux-image-5.10.0-46-amd64-unsigned"),
            Some(46)
        );
        assert_eq!(
            Kernel::V5_10.build_number("linux-image-5.10.0-46-cloud-amd64-unsigned"),
            None
        );
        assert_eq!(
            Kernel::V7_2.build_number("linux-binary-7.2.13+deb14-amd64"),
            Some(13)
        );
        assert_eq!(
            Kernel::V7_2.build_number("linux-binary-7.2.13+deb14-rt-amd64"),
            None
        );
        assert_eq!(
            Kernel::companions("linux-binary-7.2.13+deb14-amd64"),
            ["linux-modules-7.2.13+deb14-amd64"]
        );
        assert!(Kernel::companions("linux-image-6.1.0-56-amd64").is_empty());
        for kernel in Kernel::ALL {
            assert!(kernel.build_number(kernel.pinned_package()).is_some());
        }
    }

    #[test]
    fn archive_uris_come_from_either_sources_format() {
        let deb822 = "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security/\nSuites: x\n";
        assert_eq!(
            archive_uri(deb822, false).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(
            archive_uri(deb822, true).as_deref(),
            Some("http://deb.debian.org/debian-security")
        );
        let one_line = "deb [arch=amd64] http://mirror.example/debian bookworm main\n\
                        deb http://mirror.example/debian-security bookworm-security main\n";
        assert_eq!(
            archive_uri(one_line, false).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            archive_uri(one_line, true).as_deref(),
            Some("http://mirror.example/debian-security")
        );
        assert_eq!(archive_uri("# nothing\n", false), None);
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
