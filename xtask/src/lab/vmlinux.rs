//! The uncompressed kernel inside a bzImage, for QEMU's PVH boot.
//!
//! Under TCG the bzImage's own decompressor is the slowest part of the boot: about 6 s of
//! emulated xz (6.1) or zstd (6.12) before the kernel prints its first line, on a machine where the whole rest of
//! the boot takes 4 s. Decompressing once on the host and handing QEMU the ELF `vmlinux` (which
//! it enters through the PVH entry point of kernels built with CONFIG_PVH, as Debian's are)
//! skips that on every boot.
//!
//! The bzImage layout (Documentation/arch/x86/boot.rst): `setup_sects` at 0x1f1, the `HdrS`
//! magic at 0x202, the protocol version at 0x206, and from protocol 2.08 on `payload_offset`
//! and `payload_length` at 0x248/0x24c, relative to the protected-mode code that starts after
//! the `setup_sects + 1` sectors of real-mode setup.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::cmd;

/// Writes the vmlinux of `bzimage` to `out`. Fails if the image is not a bzImage with an xz
/// (Debian 6.1) or zstd (Debian 6.12) payload, or the result is not the ELF file of the size
/// the image announces; the caller then boots the bzImage.
pub(crate) fn extract(bzimage: &Path, out: &Path) -> Result<()> {
    let image = fs::read(bzimage).with_context(|| format!("reading {}", bzimage.display()))?;
    let payload = payload(&image).with_context(|| {
        format!(
            "{} is not a bzImage with a payload (boot protocol 2.08+)",
            bzimage.display()
        )
    })?;
    let tool = if payload.starts_with(b"\xfd7zXZ\x00") {
        "xz"
    } else if payload.starts_with(b"\x28\xb5\x2f\xfd") {
        "zstd"
    } else {
        bail!(
            "the payload of {} is neither xz nor zstd (magic {:02x?})",
            bzimage.display(),
            &payload[..payload.len().min(4)]
        );
    };
    // The kernel's build appends the uncompressed size (u32, little endian) to xz and zstd
    // payloads; the decompressors would take it for a damaged next stream.
    let Some((stream, size)) = payload.split_last_chunk::<4>() else {
        bail!("the payload of {} is empty", bzimage.display());
    };
    let size = u32::from_le_bytes(*size) as usize;
    let staging = out.with_extension("tmp");
    fs::write(&staging, stream)?;
    let decompressed = cmd::output(Command::new(tool).arg("-dc").arg(&staging));
    let _ = fs::remove_file(&staging);
    let decompressed = decompressed?;
    let vmlinux = &decompressed.stdout;
    if !decompressed.status.success() || !vmlinux.starts_with(b"\x7fELF") || vmlinux.len() != size {
        bail!(
            "`{tool} -dc` on the payload of {} gave {} bytes (expected an ELF file of {size}): {}",
            bzimage.display(),
            vmlinux.len(),
            String::from_utf8_lossy(&decompressed.stderr).trim()
        );
    }
    fs::write(out, vmlinux).with_context(|| format!("writing {}", out.display()))
}

/// True if the ELF `vmlinux` carries the Xen PVH entry note (`XEN_ELFNOTE_PHYS32_ENTRY`) that
/// QEMU's `-kernel` needs to boot it directly. Not every package ships its config to tell.
pub(crate) fn has_pvh_entry(vmlinux: &Path) -> Result<bool> {
    let elf = fs::read(vmlinux).with_context(|| format!("reading {}", vmlinux.display()))?;
    elf_has_pvh_note(&elf)
        .with_context(|| format!("{} is not a 64-bit ELF file", vmlinux.display()))
}

fn elf_has_pvh_note(elf: &[u8]) -> Option<bool> {
    const PT_NOTE: u32 = 4;
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |at: usize| usize::try_from(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?)).ok();
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, usize::from(u16_at(0x36)?), u16_at(0x38)?);
    for i in 0..usize::from(phnum) {
        let header = phoff + i * phentsize;
        if u32_at(header)? != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(header + 0x08)?, u64_at(header + 0x20)?);
        let mut at = offset;
        // Notes: namesz, descsz, type, then name and desc, each padded to 4 bytes.
        while at + 12 <= offset + size {
            let namesz = u32_at(at)? as usize;
            let descsz = u32_at(at + 4)? as usize;
            let kind = u32_at(at + 8)?;
            let name = elf.get(at + 12..at + 12 + namesz)?;
            if name == b"Xen\0" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
                return Some(true);
            }
            at += 12 + namesz.next_multiple_of(4) + descsz.next_multiple_of(4);
        }
    }
    Some(false)
}

fn payload(image: &[u8]) -> Option<&[u8]> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(image.get(at..at + 2)?.try_into().ok()?));
    let u32_at =
        |at: usize| Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?) as usize);
    if image.get(0x202..0x206)? != b"HdrS" || u16_at(0x206)? < 0x0208 {
        return None;
    }
    let setup_sects = match *image.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248)?;
    image.get(start..start + u32_at(0x24c)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_found_from_the_setup_header() {
        let mut image = vec![0u8; 3 * 512 + 64];
        image[0x1f1] = 1; // one setup sector: protected-mode code at 1024
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x020f_u16.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&16_u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&6_u32.to_le_bytes());
        image[1040..1046].copy_from_slice(b"\xfd7zXZ\x00");
        assert_eq!(payload(&image), Some(&b"\xfd7zXZ\x00"[..]));
        image[0x206..0x208].copy_from_slice(&0x0207_u16.to_le_bytes());
        assert_eq!(payload(&image), None, "too old a boot protocol");
        assert_eq!(payload(b"MZ not a kernel"), None);
    }

    /// A minimal ELF64 with one PT_NOTE segment holding `notes`.
    fn elf_with_notes(notes: &[(&[u8], u32)]) -> Vec<u8> {
        let mut note = Vec::new();
        for (name, kind) in notes {
            note.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
            note.extend_from_slice(&4u32.to_le_bytes());
            note.extend_from_slice(&kind.to_le_bytes());
            note.extend_from_slice(name);
            note.resize(note.len().next_multiple_of(4), 0);
            note.extend_from_slice(&[0; 4]);
        }
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&4u32.to_le_bytes());
        elf[0x48..0x50].copy_from_slice(&(0x78u64).to_le_bytes());
        elf[0x60..0x68].copy_from_slice(&(note.len() as u64).to_le_bytes());
        elf.extend_from_slice(&note);
        elf
    }

    #[test]
    fn pvh_note_is_found_among_others() {
        assert_eq!(
            elf_has_pvh_note(&elf_with_notes(&[(b"GNU\0", 3), (b"Xen\0", 18)])),
            Some(true)
        );
        assert_eq!(
            elf_has_pvh_note(&elf_with_notes(&[(b"Xen\0", 17)])),
            Some(false)
        );
        assert_eq!(elf_has_pvh_note(b"\x7fELF\x01\x01"), None);
    }

    /// The lab's own kernels, once fetched: Debian builds them with CONFIG_PVH.
    #[test]
    fn lab_kernels_have_the_pvh_note() {
        let kernels = crate::paths::lab_dir().join("kernels");
        let Ok(entries) = fs::read_dir(&kernels) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let vmlinux = entry.path().join("vmlinux");
            if vmlinux.is_file() {
                assert!(has_pvh_entry(&vmlinux).unwrap(), "{}", vmlinux.display());
            }
        }
    }
}
