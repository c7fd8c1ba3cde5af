//! The BTF wire format: header, type section walk, kinds.
//!
//! Layout (see the kernel's `Documentation/bpf/btf.rst`): a header (magic `0xeB9F` in the
//! producer's byte order, version 1, `hdr_len`, then offsets and lengths of the type and string
//! sections, relative to the end of the header), a type section of variable-length records (a
//! 12-byte common part followed by kind-specific data whose length depends on the kind and
//! `vlen`), and a string section of NUL-terminated names addressed by byte offset.
//!
//! Parsing only walks the type section once to record where each type starts and checks that every
//! record fits; the records themselves are decoded on demand, which keeps a 100k-type vmlinux blob
//! cheap to load.

use std::fmt;

use super::BtfError;

/// The common part of every type record: `name_off`, `info`, `size`/`type`.
pub(crate) const TYPE_HEADER_LEN: usize = 12;
/// Header length of BTF version 1; newer producers may append fields (`hdr_len` says how many).
const MIN_HEADER_LEN: usize = 24;
const MAGIC: u16 = 0xeb9f;

/// The kind of a BTF type (`BTF_KIND_*`, bits 24..29 of `info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    /// `BTF_KIND_*` value to kind; `None` for 0 (`UNKN`, only valid as the implicit void) and for
    /// kinds newer than this reader, whose trailing data length it cannot know.
    pub(crate) fn from_raw(raw: u32) -> Option<Kind> {
        Some(match raw {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data after the 12-byte common part. Getting one of these wrong
    /// desynchronises every following record, so each is spelled out with its C struct.
    fn trailing_len(self, vlen: usize) -> Option<usize> {
        match self {
            // struct btf_array { type, index_type, nelems }
            Kind::Array => Some(12),
            // u32 encoding | offset | bits; struct btf_var { linkage }; struct btf_decl_tag { component_idx }
            Kind::Int | Kind::Var | Kind::DeclTag => Some(4),
            // struct btf_member { name_off, type, offset }; struct btf_var_secinfo { type, offset, size };
            // struct btf_enum64 { name_off, val_lo32, val_hi32 }
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => vlen.checked_mul(12),
            // struct btf_enum { name_off, val }; struct btf_param { name_off, type }
            Kind::Enum | Kind::FuncProto => vlen.checked_mul(8),
            // FUNC uses vlen for its linkage, not for trailing records.
            Kind::Ptr
            | Kind::Fwd
            | Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::Func
            | Kind::Float
            | Kind::TypeTag => Some(0),
        }
    }

    /// The C-ish name used in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::Ptr => "pointer",
            Kind::Array => "array",
            Kind::Struct => "struct",
            Kind::Union => "union",
            Kind::Enum => "enum",
            Kind::Fwd => "forward declaration",
            Kind::Typedef => "typedef",
            Kind::Volatile => "volatile",
            Kind::Const => "const",
            Kind::Restrict => "restrict",
            Kind::Func => "function",
            Kind::FuncProto => "function prototype",
            Kind::Var => "variable",
            Kind::Datasec => "data section",
            Kind::Float => "float",
            Kind::DeclTag => "declaration tag",
            Kind::TypeTag => "type tag",
            Kind::Enum64 => "enum64",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Byte order of a blob, decided by how the magic reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endian {
    Little,
    Big,
}

impl Endian {
    /// The `u32` at `at`; the caller has checked `at + 4 <= bytes.len()`.
    pub(crate) fn u32(self, bytes: &[u8], at: usize) -> u32 {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }
}

/// A blob split into its parts, types located but not decoded.
pub(crate) struct RawBlob {
    pub endian: Endian,
    /// The type section, copied out of the input.
    pub types: Vec<u8>,
    /// Byte offset in `types` of each record, in type-id order.
    pub offsets: Vec<u32>,
    /// Kind of each record, in type-id order (validated here so lookups need no re-check).
    pub kinds: Vec<Kind>,
    /// The string section, copied out of the input.
    pub strings: Vec<u8>,
}

/// Returns `data[hdr_len + off .. hdr_len + off + len]`, or an error naming the section.
fn section<'a>(
    data: &'a [u8],
    hdr_len: usize,
    off: u32,
    len: u32,
    what: &'static str,
) -> Result<&'a [u8], BtfError> {
    let start = hdr_len.checked_add(off as usize);
    let end = start.and_then(|s| s.checked_add(len as usize));
    match (start, end) {
        (Some(start), Some(end)) if end <= data.len() => Ok(&data[start..end]),
        _ => Err(BtfError::Truncated {
            what,
            needed: hdr_len as u64 + u64::from(off) + u64::from(len),
            available: data.len() as u64,
        }),
    }
}

/// Splits `data` into header, types and strings and locates every type record.
///
/// `first_id` is only used to number types in error messages (1 for a base blob, the id after
/// the base's last type for a split blob).
pub(crate) fn parse_blob(data: &[u8], first_id: u32) -> Result<RawBlob, BtfError> {
    if data.len() < MIN_HEADER_LEN {
        return Err(BtfError::Truncated {
            what: "header",
            needed: MIN_HEADER_LEN as u64,
            available: data.len() as u64,
        });
    }
    let endian = match u16::from_le_bytes([data[0], data[1]]) {
        MAGIC => Endian::Little,
        m if m == MAGIC.swap_bytes() => Endian::Big,
        found => return Err(BtfError::BadMagic { found }),
    };
    if data[2] != 1 {
        return Err(BtfError::UnsupportedVersion { version: data[2] });
    }
    let hdr_len = endian.u32(data, 4) as usize;
    if hdr_len < MIN_HEADER_LEN {
        return Err(BtfError::BadHeader {
            reason: format!(
                "hdr_len {hdr_len} is shorter than the {MIN_HEADER_LEN}-byte version 1 header"
            ),
        });
    }
    if hdr_len > data.len() {
        return Err(BtfError::Truncated {
            what: "header",
            needed: hdr_len as u64,
            available: data.len() as u64,
        });
    }
    // Fields past the first 24 bytes belong to newer producers and describe nothing we read.
    let type_off = endian.u32(data, 8);
    let type_len = endian.u32(data, 12);
    let str_off = endian.u32(data, 16);
    let str_len = endian.u32(data, 20);
    let types = section(data, hdr_len, type_off, type_len, "type section")?;
    let strings = section(data, hdr_len, str_off, str_len, "string section")?;
    if strings.last().is_some_and(|&b| b != 0) {
        return Err(BtfError::BadHeader {
            reason: "the string section does not end with a NUL byte".to_owned(),
        });
    }

    let mut offsets = Vec::with_capacity(types.len() / 32);
    let mut kinds = Vec::with_capacity(types.len() / 32);
    let mut pos = 0usize;
    let mut id = first_id;
    while pos < types.len() {
        if types.len() - pos < TYPE_HEADER_LEN {
            return Err(BtfError::TruncatedType { id });
        }
        let info = endian.u32(types, pos + 4);
        let raw_kind = (info >> 24) & 0x1f;
        let kind = Kind::from_raw(raw_kind).ok_or(BtfError::UnknownKind { id, kind: raw_kind })?;
        let vlen = (info & 0xffff) as usize;
        let record = kind
            .trailing_len(vlen)
            .and_then(|t| t.checked_add(TYPE_HEADER_LEN))
            .ok_or(BtfError::TruncatedType { id })?;
        if types.len() - pos < record {
            return Err(BtfError::TruncatedType { id });
        }
        // Offsets are u32: a type section is at most u32::MAX bytes long (type_len is a u32).
        offsets.push(pos as u32);
        kinds.push(kind);
        pos += record;
        id = id.checked_add(1).ok_or(BtfError::TooManyTypes)?;
    }
    Ok(RawBlob {
        endian,
        types: types.to_vec(),
        offsets,
        kinds,
        strings: strings.to_vec(),
    })
}
