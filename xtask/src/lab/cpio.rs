//! A writer for the "newc" cpio format, the only archive format the kernel unpacks as an
//! initramfs.
//!
//! Written here rather than shelling out to `cpio` so the lab needs no extra host tool and the
//! archive is reproducible (fixed owners and times, inode numbers from a counter). The kernel
//! unpacks several archives concatenated back to back, which is how a cached base image and a
//! small per-run archive become one `-initrd` file.
//!
//! Format (see the kernel's Documentation/driver-api/early-userspace/buffer-format.rst): per
//! entry a 110-byte ASCII header (`070701` and 13 eight-digit hex fields), the NUL-terminated
//! name padded to a multiple of 4 bytes, the data padded to a multiple of 4; the archive ends
//! with an entry named `TRAILER!!!`.

use std::collections::HashSet;
use std::io::{self, Write};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const HEADER_LEN: usize = 110;

pub(crate) const S_IFDIR: u32 = 0o040_000;
pub(crate) const S_IFREG: u32 = 0o100_000;
pub(crate) const S_IFLNK: u32 = 0o120_000;
pub(crate) const S_IFCHR: u32 = 0o020_000;

/// Streams entries into `out`. Parent directories are emitted automatically (mode 0755) the
/// first time a path below them is added, because the kernel's unpacker does not create them.
pub(crate) struct Writer<W: Write> {
    out: W,
    offset: u64,
    next_ino: u32,
    dirs: HashSet<String>,
}

impl<W: Write> Writer<W> {
    /// `first_ino` keeps inode numbers of archives that get concatenated apart; the kernel only
    /// looks at them for hard links (nlink > 1), which this writer never produces, but distinct
    /// numbers keep `cpio -t` and friends from guessing links.
    pub(crate) fn new(out: W, first_ino: u32) -> Self {
        Writer {
            out,
            offset: 0,
            next_ino: first_ino,
            dirs: HashSet::new(),
        }
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let name = normalize(path)?;
        self.parents(&name)?;
        self.dirs.insert(name.clone());
        self.entry(&name, S_IFDIR | (mode & 0o7777), 2, (0, 0), &[])
    }

    pub(crate) fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let name = normalize(path)?;
        self.parents(&name)?;
        self.entry(&name, S_IFREG | (mode & 0o7777), 1, (0, 0), data)
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let name = normalize(path)?;
        self.parents(&name)?;
        self.entry(&name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    pub(crate) fn char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        let name = normalize(path)?;
        self.parents(&name)?;
        self.entry(&name, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and hands back the output.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.entry(TRAILER, 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn parents(&mut self, name: &str) -> io::Result<()> {
        let mut end = 0;
        while let Some(pos) = name[end..].find('/') {
            let parent = &name[..end + pos];
            if !self.dirs.contains(parent) {
                self.dirs.insert(parent.to_owned());
                self.entry(parent, S_IFDIR | 0o755, 2, (0, 0), &[])?;
            }
            end += pos + 1;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: newc cannot hold files of 4 GiB or more"),
            )
        })?;
        let ino = if name == TRAILER { 0 } else { self.next_ino };
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid: everything belongs to root in the guest
            0, // gid
            nlink,
            0, // mtime: fixed, so equal inputs give equal archives
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1, // namesize counts the NUL
            0,                     // check: only used by the crc variant
        ];
        let mut header = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for field in fields {
            write!(header, "{field:08x}")?;
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        pad(&mut header, self.offset);
        self.write(&header)?;
        self.write(data)?;
        let mut padding = Vec::new();
        pad(&mut padding, self.offset);
        self.write(&padding)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

/// Appends NULs until `offset + buf.len()` is a multiple of 4.
fn pad(buf: &mut Vec<u8>, offset: u64) {
    while !(offset + buf.len() as u64).is_multiple_of(4) {
        buf.push(0);
    }
}

/// Archive names are relative (`bin/sh`), like the kernel's own `gen_init_cpio` writes them.
fn normalize(path: &str) -> io::Result<String> {
    let name = path.trim_start_matches('/').trim_end_matches('/');
    if name.is_empty() || name.split('/').any(|part| part.is_empty() || part == "..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{path}` is not a usable path inside the guest image"),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
pub(crate) mod read {
    //! A reader for what [`Writer`](super::Writer) writes, so tests can check archives without
    //! a host `cpio`.

    use super::{HEADER_LEN, MAGIC, TRAILER};

    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Entry {
        pub name: String,
        pub ino: u32,
        pub mode: u32,
        pub rdev: (u32, u32),
        pub data: Vec<u8>,
    }

    /// Parses every archive in `bytes` (they may be concatenated), trailers excluded.
    pub(crate) fn entries(bytes: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            assert_eq!(&bytes[at..at + 6], MAGIC, "bad magic at offset {at}");
            let field = |i: usize| {
                let start = at + 6 + i * 8;
                let text = std::str::from_utf8(&bytes[start..start + 8]).expect("ascii header");
                u32::from_str_radix(text, 16).expect("hex header field")
            };
            let (ino, mode, size, rmaj, rmin, namesize) =
                (field(0), field(1), field(6), field(9), field(10), field(11));
            let name_start = at + HEADER_LEN;
            let name_end = name_start + namesize as usize - 1;
            assert_eq!(bytes[name_end], 0, "name not NUL-terminated");
            let name = String::from_utf8(bytes[name_start..name_end].to_vec()).expect("utf-8");
            let data_start = (name_end + 1).next_multiple_of(4);
            let data_end = data_start + size as usize;
            let data = bytes[data_start..data_end].to_vec();
            at = data_end.next_multiple_of(4);
            if name != TRAILER {
                entries.push(Entry {
                    name,
                    ino,
                    mode,
                    rdev: (rmaj, rmin),
                    data,
                });
            }
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::read::entries;
    use super::*;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), 1);
        w.dir("/etc", 0o755).unwrap();
        w.file("/etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
            .unwrap();
        w.file("/usr/bin/odd", 0o755, b"12345").unwrap();
        w.symlink("/bin/sh", "/bin/busybox").unwrap();
        w.char_device("/dev/console", 0o600, 5, 1).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_through_own_reader() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        let got = entries(&bytes);
        let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
        // Parents come first and only once: the kernel needs them before their children.
        assert_eq!(
            names,
            [
                "etc",
                "etc/passwd",
                "usr",
                "usr/bin",
                "usr/bin/odd",
                "bin",
                "bin/sh",
                "dev",
                "dev/console"
            ]
        );
        let by_name = |n: &str| got.iter().find(|e| e.name == n).unwrap();
        assert_eq!(by_name("etc/passwd").mode, S_IFREG | 0o644);
        assert_eq!(by_name("etc/passwd").data, b"root:x:0:0::/root:/bin/sh\n");
        assert_eq!(by_name("usr/bin/odd").data, b"12345");
        assert_eq!(by_name("usr/bin").mode, S_IFDIR | 0o755);
        assert_eq!(by_name("bin/sh").mode, S_IFLNK | 0o777);
        assert_eq!(by_name("bin/sh").data, b"/bin/busybox");
        assert_eq!(by_name("dev/console").mode, S_IFCHR | 0o600);
        assert_eq!(by_name("dev/console").rdev, (5, 1));
        let mut inos: Vec<u32> = got.iter().map(|e| e.ino).collect();
        inos.sort_unstable();
        inos.dedup();
        assert_eq!(inos.len(), got.len(), "inode numbers must be distinct");
    }

    #[test]
    fn concatenated_archives_parse_as_one() {
        let mut bytes = sample();
        let mut second = Writer::new(Vec::new(), 1000);
        second.file("/lab/script.sh", 0o755, b"exit 3\n").unwrap();
        bytes.extend(second.finish().unwrap());
        let got = entries(&bytes);
        assert_eq!(got.last().unwrap().name, "lab/script.sh");
        assert_eq!(got.last().unwrap().data, b"exit 3\n");
    }

    #[test]
    fn rejects_paths_that_escape_or_are_empty() {
        let mut w = Writer::new(Vec::new(), 1);
        assert!(w.file("/", 0o644, b"").is_err());
        assert!(w.file("/a/../b", 0o644, b"").is_err());
        assert!(w.file("a//b", 0o644, b"").is_err());
    }

    /// GNU cpio is an independent reader of the format. It is on the development machines but
    /// not among the lab's requirements, so without it this check is skipped, loudly.
    #[test]
    fn host_cpio_lists_and_extracts_the_archive() {
        let Some(cpio) = which("cpio") else {
            eprintln!(
                "SKIPPED: no `cpio` on PATH to cross-check the archive (apt-get install cpio)"
            );
            return;
        };
        let dir = std::env::temp_dir().join(format!("xtask-cpio-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.cpio");
        std::fs::write(&archive, sample()).unwrap();
        let out = Command::new(&cpio)
            .args(["-t", "--quiet", "-F"])
            .arg(&archive)
            .output()
            .unwrap();
        assert!(out.status.success(), "cpio -t failed: {out:?}");
        let listed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            listed.lines().collect::<Vec<_>>(),
            [
                "etc",
                "etc/passwd",
                "usr",
                "usr/bin",
                "usr/bin/odd",
                "bin",
                "bin/sh",
                "dev",
                "dev/console"
            ]
        );
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let status = Command::new(&cpio)
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&archive)
            .arg("etc/passwd")
            .arg("usr/bin/odd")
            .arg("bin/sh")
            .current_dir(&root)
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read(root.join("usr/bin/odd")).unwrap(),
            b"12345".to_vec()
        );
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap(),
            std::path::Path::new("/bin/busybox")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn which(tool: &str) -> Option<std::path::PathBuf> {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    }
}
