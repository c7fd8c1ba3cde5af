//! Where the BTF bytes are in a file: the whole file (raw BTF, as in `/sys/kernel/btf/*` or
//! `pahole --btf_encode_detached` output) or the `.BTF` section of an ELF object (an uncompressed
//! vmlinux or `.ko`, e.g. from a distribution's kernel package).

use std::path::Path;

use object::{CompressionFormat, Object, ObjectSection};

use super::BtfError;

const ELF_MAGIC: &[u8] = b"\x7fELF";

/// Compressed containers people are likely to pass (Debian ships `.ko.xz` on 6.12, other
/// distributions `.ko.zst`/`.ko.gz`), with the command that unpacks them.
const COMPRESSED: &[(&[u8], &str, &str)] = &[
    (b"\xfd7zXZ\x00", "xz", "xz -dk FILE"),
    (b"\x28\xb5\x2f\xfd", "zstd", "zstd -d FILE"),
    (b"\x1f\x8b", "gzip", "gzip -dk FILE"),
];

/// The BTF blob inside `data`, read from `path`.
pub(super) fn btf_bytes<'a>(data: &'a [u8], path: &Path) -> Result<&'a [u8], BtfError> {
    if let Some(&(_, format, hint)) = COMPRESSED
        .iter()
        .find(|(magic, ..)| data.starts_with(magic))
    {
        return Err(BtfError::Compressed {
            path: path.to_owned(),
            format,
            hint,
        });
    }
    if !data.starts_with(ELF_MAGIC) {
        return Ok(data);
    }
    let elf_error = |e: object::Error| BtfError::Elf {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let file = object::File::parse(data).map_err(elf_error)?;
    let section = file
        .section_by_name(".BTF")
        .ok_or_else(|| BtfError::NoBtfSection {
            path: path.to_owned(),
        })?;
    if section.compressed_data().map_err(elf_error)?.format != CompressionFormat::None {
        return Err(BtfError::Compressed {
            path: path.to_owned(),
            format: "ELF section",
            hint: "objcopy --decompress-debug-sections FILE",
        });
    }
    section.data().map_err(elf_error)
}
