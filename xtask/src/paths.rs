//! Where things are: the workspace, cargo's target directory, the lab's cache.

use std::env;
use std::path::{Path, PathBuf};

/// The workspace root, fixed at compile time: xtask always lives in `<root>/xtask`, also when
/// another package (the end-to-end tests) links it as a library.
#[must_use]
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` the way cargo does.
#[must_use]
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                env::current_dir().map_or(dir.clone(), |cwd| cwd.join(dir))
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The lab's cache: kernels, base images, per-run images and the lock that serializes builds.
#[must_use]
pub fn lab_dir() -> PathBuf {
    target_dir().join("lab")
}
