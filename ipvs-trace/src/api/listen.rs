//! The API's listeners: the Unix socket (its directory created, a stale socket replaced, mode
//! 0600) and the optional TCP address.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// Where `serve` answers and `who` asks unless told otherwise. The DaemonSet mounts
/// `/run/ipvs-trace` from the host, so root on the node reaches it.
pub const DEFAULT_SOCKET: &str = "/run/ipvs-trace/api.sock";

/// The bound socket's path; removed when dropped, so a clean stop leaves nothing behind.
pub(super) struct SocketFile(PathBuf);

impl SocketFile {
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Binds the Unix socket at `path`: creates its directory (0755: the socket's own mode is the
/// lock), replaces a socket no process answers on (left by a killed serve), refuses one that
/// answers (another serve) and anything that is not a socket, and sets the socket to 0600.
pub(super) fn bind_socket(path: &Path) -> anyhow::Result<(SocketFile, UnixListener)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| {
                format!(
                    "cannot create {} for the API socket (--api-socket)",
                    dir.display()
                )
            })?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => bail!(
                "another process answers on {}: is serve already running? Choose another path \
                 with --api-socket",
                path.display()
            ),
            Err(_) => fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?,
        },
        Ok(_) => bail!(
            "{} exists and is not a socket: remove it or choose another path with --api-socket",
            path.display()
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("cannot inspect {}", path.display()));
        }
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {} (--api-socket)", path.display()))?;
    let file = SocketFile(path.to_owned());
    // The directory may be shared (a hostPath): until this chmod the socket has the umask's
    // mode, but nothing answers on it before the server thread starts.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting {} to mode 0600", path.display()))?;
    listener
        .set_nonblocking(true)
        .context("setting the API socket non-blocking")?;
    Ok((file, listener))
}

/// Binds `--api-addr`, warning when the address is reachable from other hosts: anyone who can
/// connect reads who talked to which pod.
pub(super) fn bind_tcp(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "the query API listens on {addr}, which is not a loopback address: anyone who can \
             reach it reads which client talked to which pod. Prefer the Unix socket, or \
             restrict access to {addr} by other means"
        );
    }
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr} for the query API: is the port in use? (--api-addr)")
    })?;
    listener
        .set_nonblocking(true)
        .context("setting the API listener non-blocking")?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ipvs-trace-api-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_the_directory_and_a_0600_socket_and_removes_it_when_dropped() {
        let dir = temp_dir("mode");
        let path = dir.join("run/api.sock");
        let (file, _listener) = bind_socket(&path).expect("binds");
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        drop(file);
        assert!(!path.exists(), "the socket is removed on drop");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replaces_a_stale_socket_and_refuses_a_live_one_or_a_file() {
        let dir = temp_dir("stale");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        // A socket nobody listens on any more: a serve killed with -9.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (file, listener) = bind_socket(&path).expect("replaces the stale socket");
        let err = bind_socket(&path)
            .err()
            .expect("a live socket is refused")
            .to_string();
        assert!(err.contains("another process answers"), "{err}");
        drop((file, listener));
        fs::write(&path, "not a socket").unwrap();
        let err = bind_socket(&path)
            .err()
            .expect("a file is refused")
            .to_string();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "not a socket",
            "left alone"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
