//! `cargo xtask image`: the container image the DaemonSet runs, and what the image test needs
//! to find it (the manifest's image name, the archive).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, ensure, Context as _, Result};

use crate::{cmd, lab, paths};

/// Build the container image that deploy/daemonset.yaml runs, as an OCI archive.
///
/// The image is `FROM scratch` with one file, the statically linked `ipvs-trace` at
/// `/ipvs-trace` (the very binary the VM lab boots), as its entrypoint, and the OCI labels
/// org.opencontainers.image.{title,version,revision,source,licenses}. It is built with podman
/// (installed if missing: Debian's package; no daemon), pulls nothing from any registry, and
/// is stamped with the time of the git commit, so the same sources give the same image.
///
/// The image is named exactly as the DaemonSet's container names it (read from
/// deploy/daemonset.yaml), written out in full the way Kubernetes' runtimes read it:
/// `ipvs-trace:0.1.0` there is `docker.io/library/ipvs-trace:0.1.0` to containerd, CRI-O and
/// Docker, so that is the name the image gets and the name the archive carries. It stays in
/// podman's local storage and is written to target/image/ipvs-trace-VERSION.oci.tar, an OCI
/// image layout that also carries Docker's manifest.json: `podman load`, `ctr -n k8s.io
/// images import`, `docker load` and `skopeo copy oci-archive:...` all read it
/// (docs/deploying.md: loading it on a node, pushing it to a registry). Prints the name, the
/// image's size and the archive's.
///
/// Exit status: 0, or 125 if the image could not be built.
#[derive(Debug, clap::Args)]
pub(super) struct Args {}

pub(super) fn run(_args: &Args) -> Result<ExitCode> {
    let image = build()?;
    println!("image:    {}", image.name);
    if image.name != image.manifest_name {
        println!(
            "          (deploy/daemonset.yaml's `{}`, as container runtimes read it)",
            image.manifest_name
        );
    }
    println!("id:       {}", image.id);
    println!(
        "size:     {} ({} bytes, uncompressed: the static binary)",
        mib(image.size),
        image.size
    );
    let archive_size = fs::metadata(&image.archive)
        .with_context(|| format!("reading {}", image.archive.display()))?
        .len();
    println!(
        "archive:  {} ({}, layers compressed)",
        image.archive.display(),
        mib(archive_size)
    );
    for (key, value) in &image.labels {
        println!("label:    {key}={value}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The deploy/ manifest of the DaemonSet.
#[must_use]
pub fn daemonset_path() -> PathBuf {
    paths::workspace_root().join("deploy/daemonset.yaml")
}

/// deploy/daemonset.yaml as JSON (the shape k8s-openapi's types deserialize from).
pub fn daemonset() -> Result<serde_json::Value> {
    let path = daemonset_path();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))
}

/// The image the DaemonSet's one container runs, as the manifest writes it.
pub fn manifest_image(daemonset: &serde_json::Value) -> Result<String> {
    let containers = daemonset
        .pointer("/spec/template/spec/containers")
        .and_then(serde_json::Value::as_array)
        .context("deploy/daemonset.yaml has no spec.template.spec.containers")?;
    let [container] = containers.as_slice() else {
        bail!(
            "deploy/daemonset.yaml has {} containers; the image is built for exactly one",
            containers.len()
        );
    };
    container
        .get("image")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .context("deploy/daemonset.yaml's container has no image")
}

/// The image as built.
#[derive(Debug, Clone)]
pub struct Image {
    /// The name the image is tagged with: [`normalize`] of [`Image::manifest_name`].
    pub name: String,
    /// The name as deploy/daemonset.yaml writes it.
    pub manifest_name: String,
    /// podman's image id (the digest of the image's config).
    pub id: String,
    /// Bytes in local storage, uncompressed.
    pub size: u64,
    /// `target/image/ipvs-trace-VERSION.oci.tar`.
    pub archive: PathBuf,
    /// The OCI labels set on the image, in the order they were given.
    pub labels: Vec<(String, String)>,
}

/// Builds the static binary (the lab's, under the lab's build lock: the test command builds
/// it for the VM anyway), the image from it, and the archive. Idempotent and quick when
/// nothing changed: cargo and podman's layer cache find their work done, and the archive is
/// written again (a few seconds).
pub fn build() -> Result<Image> {
    crate::setup::ensure_packages("the image builder (podman)", &["podman"])?;
    let manifest_name = manifest_image(&daemonset()?)?;
    let name = normalize(&manifest_name).with_context(|| {
        format!(
            "deploy/daemonset.yaml's image `{manifest_name}`: set a valid image name there \
             (REGISTRY/ipvs-trace:TAG)"
        )
    })?;
    let version = env!("CARGO_PKG_VERSION");
    if let Some((_, tag)) = name.rsplit_once(':') {
        if tag != version {
            eprintln!(
                "note: deploy/daemonset.yaml tags the image `{tag}`, the workspace is version \
                 {version}: the image's version label says {version}"
            );
        }
    }

    let binary = {
        let _lock = lab::lock()?;
        lab::binaries::ensure()?.ipvs_trace.clone()
    };
    let dir = paths::target_dir().join("image");
    let context = dir.join("context");
    fs::create_dir_all(&context).with_context(|| format!("creating {}", context.display()))?;
    // Without the `xtask/..` of the workspace root, for what is printed.
    let dir = fs::canonicalize(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    let context = dir.join("context");
    // A copy, not a link: podman reads the context while cargo may relink the binary.
    fs::copy(&binary, context.join("ipvs-trace"))
        .with_context(|| format!("copying {} into the build context", binary.display()))?;
    let containerfile = context.join("Containerfile");
    fs::write(&containerfile, CONTAINERFILE)
        .with_context(|| format!("writing {}", containerfile.display()))?;

    let timestamp = git(&["log", "-1", "--format=%ct"])?;
    let labels = labels(version)?;
    // The image this build replaces under the name, removed once it is untagged.
    let previous = image_id(&name).ok();
    let mut build = Command::new("podman");
    build
        .arg("build")
        .args(["--format", "oci"])
        // One image, no intermediate one per instruction left behind in podman's storage.
        .arg("--layers=false")
        // FROM scratch needs no base image: nothing is pulled, from anywhere.
        .arg("--pull=never")
        // The commit's time, not the clock's: creation time and file times are part of the
        // image's digest.
        .args(["--timestamp", &timestamp])
        .args(["--tag", &name])
        .arg("--file")
        .arg(&containerfile);
    for (key, value) in &labels {
        build.arg("--label").arg(format!("{key}={value}"));
    }
    build.arg(&context);
    cmd::run(&mut build).context("building the image with podman")?;

    let inspect = cmd::stdout(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Size}}",
        &name,
    ]))?;
    let (id, size) = inspect
        .trim()
        .split_once(' ')
        .with_context(|| format!("podman image inspect printed `{}`", inspect.trim()))?;
    let size = size
        .parse()
        .with_context(|| format!("podman's image size `{size}`"))?;
    if let Some(previous) = previous.filter(|previous| previous != id) {
        // Still tagged otherwise, or used by a container: then it stays, and that is fine.
        let _ = cmd::output(Command::new("podman").args(["image", "rm", &previous]));
    }

    let archive = dir.join(format!("ipvs-trace-{version}.oci.tar"));
    write_archive(&name, &dir.join("layout"), &archive, &timestamp)?;
    Ok(Image {
        name,
        manifest_name,
        id: id.to_owned(),
        size,
        archive,
        labels,
    })
}

/// podman's id of the image `name`.
fn image_id(name: &str) -> Result<String> {
    Ok(
        cmd::stdout(
            Command::new("podman").args(["image", "inspect", "--format", "{{.Id}}", name]),
        )?
        .trim()
        .to_owned(),
    )
}

/// The OCI labels: what the image is, which release, which commit (`-dirty` when the working
/// tree differed from it), where its sources are and under which licences.
fn labels(version: &str) -> Result<Vec<(String, String)>> {
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty = !cmd::output(
        Command::new("git")
            .current_dir(paths::workspace_root())
            .args(["diff", "--quiet", "HEAD"]),
    )?
    .status
    .success();
    Ok(vec![
        (
            "org.opencontainers.image.title".to_owned(),
            "ipvs-trace".to_owned(),
        ),
        (
            "org.opencontainers.image.version".to_owned(),
            version.to_owned(),
        ),
        (
            "org.opencontainers.image.revision".to_owned(),
            // The commit, and whether the working tree differed from it when the image was made.
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            },
        ),
        (
            "org.opencontainers.image.source".to_owned(),
            env!("CARGO_PKG_REPOSITORY").to_owned(),
        ),
        (
            "org.opencontainers.image.licenses".to_owned(),
            env!("CARGO_PKG_LICENSE").to_owned(),
        ),
    ])
}

/// Writes the image as one archive that every loader on a node reads: an OCI image layout
/// (`podman load`, `ctr images import`, `skopeo`) that also carries Docker's
/// `manifest.json` pointing at the same blobs, which is all Docker's classic image store reads
/// (Docker 20.10's `docker load` fails on a bare layout with "open .../blobs/json: no such
/// file or directory"). Docker 25 and later write their own archives the same way. The tar is
/// stamped like the image (names sorted, owner 0, the commit's time), so it too is the same
/// for the same sources.
fn write_archive(name: &str, layout: &Path, archive: &Path, timestamp: &str) -> Result<()> {
    if layout.exists() {
        fs::remove_dir_all(layout).with_context(|| format!("removing {}", layout.display()))?;
    }
    cmd::run(
        Command::new("podman")
            .args(["save", "--quiet", "--format", "oci-dir", "--output"])
            .arg(layout)
            .arg(name),
    )
    .context("writing the image's OCI layout")?;
    let manifest = docker_manifest(layout, name)?;
    fs::write(layout.join("manifest.json"), manifest)
        .with_context(|| format!("writing {}/manifest.json", layout.display()))?;
    cmd::run(
        Command::new("tar")
            .arg("-C")
            .arg(layout)
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .arg(format!("--mtime=@{timestamp}"))
            .arg("-cf")
            .arg(archive)
            .args(["oci-layout", "index.json", "manifest.json", "blobs"]),
    )
    .context("writing the image archive")?;
    fs::remove_dir_all(layout).with_context(|| format!("removing {}", layout.display()))
}

/// Docker's `manifest.json` for the one image of the OCI layout in `layout`: its config and
/// layers as paths into `blobs/`, and `name` as its tag.
fn docker_manifest(layout: &Path, name: &str) -> Result<String> {
    let read = |path: &Path| -> Result<serde_json::Value> {
        let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    // `sha256:HEX` -> `blobs/sha256/HEX`, refusing anything that is not a plain digest.
    let blob = |descriptor: &serde_json::Value| -> Result<String> {
        let digest = descriptor["digest"]
            .as_str()
            .context("a descriptor without digest")?;
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .with_context(|| format!("`{digest}` is not a sha256 digest"))?;
        Ok(format!("blobs/sha256/{hex}"))
    };
    let index = read(&layout.join("index.json"))?;
    let manifests = index["manifests"]
        .as_array()
        .context("index.json lists no manifests")?;
    let [manifest] = manifests.as_slice() else {
        bail!("index.json lists {} manifests, not one", manifests.len());
    };
    let manifest = read(&layout.join(blob(manifest)?))?;
    let layers = manifest["layers"]
        .as_array()
        .context("the image manifest has no layers")?
        .iter()
        .map(blob)
        .collect::<Result<Vec<_>>>()?;
    let docker = serde_json::json!([{
        "Config": blob(&manifest["config"])?,
        "RepoTags": [name],
        "Layers": layers,
    }]);
    Ok(docker.to_string())
}

/// One file, its own entrypoint: no shell, no libc, no CA bundle (kube-rs brings its roots).
const CONTAINERFILE: &str = "\
FROM scratch
COPY ipvs-trace /ipvs-trace
ENTRYPOINT [\"/ipvs-trace\"]
";

/// `git ARGS` in the workspace, its output trimmed.
fn git(args: &[&str]) -> Result<String> {
    Ok(cmd::stdout(
        Command::new("git")
            .current_dir(paths::workspace_root())
            .args(args),
    )
    .context("the image's revision label comes from git")?
    .trim()
    .to_owned())
}

fn mib(bytes: u64) -> String {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a size to print with one decimal"
    )]
    let mib = bytes as f64 / f64::from(1 << 20);
    format!("{mib:.1} MiB")
}

/// An image reference written out in full, as containerd, CRI-O and Docker read a name in a
/// pod spec (the `docker/distribution` reference grammar): a first component that is not a
/// host (no `.` or `:`, not `localhost`) means Docker Hub, `docker.io`, and a Docker Hub name
/// of one component lives under `library/`. The tag must be there: without one Kubernetes
/// pulls `:latest` on every start. A digest cannot be given to a build, so it is refused.
pub fn normalize(reference: &str) -> Result<String> {
    ensure!(
        !reference.contains('@'),
        "`{reference}` names a digest; an image is built under a tag"
    );
    let (repository, tag) = match reference.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => bail!("`{reference}` has no tag"),
    };
    ensure!(
        !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
        "`{tag}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128)"
    );
    let (domain, path) = match repository.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first != first.to_lowercase() =>
        {
            (first, rest.to_owned())
        }
        _ => ("docker.io", repository.to_owned()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    ensure!(
        domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)),
        "`{domain}` is not a valid registry host"
    );
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    for component in path.split('/') {
        ensure!(
            valid_path_component(component),
            "`{component}` in `{reference}` is not a valid name component (lower-case letters \
             and digits, joined by `.`, `_`, `__` or dashes)"
        );
    }
    Ok(format!("{domain}/{path}:{tag}"))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path_component(component: &str) -> bool {
    let mut rest = component;
    loop {
        let word = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
            .unwrap_or(rest.len());
        if word == 0 {
            return false;
        }
        rest = &rest[word..];
        if rest.is_empty() {
            return true;
        }
        let separator = rest
            .find(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let sep = &rest[..separator];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')) {
            return false;
        }
        rest = &rest[separator..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_written_out_as_runtimes_read_them() {
        for (given, full) in [
            ("ipvs-trace:0.1.0", "docker.io/library/ipvs-trace:0.1.0"),
            ("acme/ipvs-trace:0.1.0", "docker.io/acme/ipvs-trace:0.1.0"),
            (
                "index.docker.io/ipvs-trace:1",
                "docker.io/library/ipvs-trace:1",
            ),
            (
                "ghcr.io/acme/ipvs-trace:0.1.0",
                "ghcr.io/acme/ipvs-trace:0.1.0",
            ),
            (
                "registry.local:5000/ops/ipvs-trace:v1_2",
                "registry.local:5000/ops/ipvs-trace:v1_2",
            ),
            ("localhost/ipvs-trace:dev", "localhost/ipvs-trace:dev"),
            ("a__b-c--d/e_f.g:1", "docker.io/a__b-c--d/e_f.g:1"),
        ] {
            assert_eq!(normalize(given).unwrap(), full, "{given}");
        }
    }

    #[test]
    fn names_that_cannot_be_tagged_are_refused() {
        for bad in [
            "ipvs-trace",
            "registry.local:5000/ipvs-trace",
            "ipvs-trace:0.1.0@sha256:0123",
            "REGISTRY/ipvs-trace:",
            "Ipvs-Trace:1",
            "ipvs-trace:-1",
            "ipvs--trace_:1",
            "a//b:1",
            "ipvs trace:1",
            // A first component with a dot is a host, and hosts have no `_`.
            "a__b.c/d:1",
        ] {
            assert!(normalize(bad).is_err(), "{bad} accepted");
        }
        // Upper case in the first component makes it a host, as the grammar says, which is
        // a valid (if unusual) registry name: the placeholder of README's old example.
        assert_eq!(
            normalize("REGISTRY/ipvs-trace:0.1.0").unwrap(),
            "REGISTRY/ipvs-trace:0.1.0"
        );
    }

    #[test]
    fn the_manifest_names_one_valid_image() {
        let image = manifest_image(&daemonset().unwrap()).unwrap();
        normalize(&image).unwrap();
    }
}
