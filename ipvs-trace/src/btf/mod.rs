//! A small reader for the kernel's BPF Type Format (BTF), base and split.
//!
//! Why our own: the IPVS structs live in the `ip_vs` module's *split* BTF
//! (`/sys/kernel/btf/ip_vs`, whose type ids and string offsets continue where
//! `/sys/kernel/btf/vmlinux` stops). aya's CO-RE cannot relocate module types, and the layouts
//! differ between kernels, so userspace looks every field up by name at start ([`Btf::member`])
//! and hands plain offsets to the eBPF programs (see [`crate::offsets`]). The format is small;
//! this reader only answers what the tracer asks: where a field is, how big it is, and whether a
//! kernel function exists.
//!
//! Malformed input is always an error ([`BtfError`]), never a panic or an endless loop: every
//! read is bounds-checked and every chain of type references is followed a bounded number of
//! steps.

mod elf;
mod parse;
mod signature;

#[cfg(test)]
pub(crate) mod builder;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use parse::Kind;
use parse::{Endian, TYPE_HEADER_LEN};
pub use signature::Signature;

/// How many typedef/modifier links, nested arrays or anonymous struct levels are followed
/// before the input is declared cyclic. Real kernel types nest a handful of levels.
const MAX_DEPTH: u32 = 64;

/// Pointer size. BTF does not record it; the tracer only runs on 64-bit kernels (BPF itself is
/// 64-bit and the probes read pointers as `u64`).
const POINTER_SIZE: u32 = 8;

/// Why BTF could not be read or could not answer a question.
#[derive(thiserror::Error, Debug)]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read BTF from {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Parsing a file failed; `source` says how.
    #[error("BTF in {path} is unusable")]
    File {
        path: PathBuf,
        #[source]
        source: Box<BtfError>,
    },
    /// The file is an ELF object that could not be parsed.
    #[error("{path} looks like an ELF file but cannot be parsed ({reason})")]
    Elf { path: PathBuf, reason: String },
    /// The ELF object has no `.BTF` section.
    #[error(
        "{path} has no .BTF section: the kernel or module was built without BTF \
         (CONFIG_DEBUG_INFO_BTF / CONFIG_DEBUG_INFO_BTF_MODULES); produce it with \
         `pahole --btf_encode_detached` or use another file"
    )]
    NoBtfSection { path: PathBuf },
    /// The file or its `.BTF` section is compressed.
    #[error(
        "{path} is {format}-compressed: decompress it first (e.g. `{hint}`) and pass the result"
    )]
    Compressed {
        path: PathBuf,
        format: &'static str,
        hint: &'static str,
    },
    /// The blob ends before a part its header announces.
    #[error("BTF is truncated: its {what} needs {needed} bytes, only {available} are present")]
    Truncated {
        what: &'static str,
        needed: u64,
        available: u64,
    },
    /// A type record runs past the end of the type section.
    #[error("BTF is truncated or corrupt: type #{id} runs past the end of the type section")]
    TruncatedType { id: u32 },
    /// The first two bytes are not the BTF magic in either byte order.
    #[error("not BTF data: magic is {found:#06x}, expected 0xeb9f (pass a raw BTF file or an ELF object with a .BTF section)")]
    BadMagic { found: u16 },
    /// A BTF version this reader does not know.
    #[error("BTF version {version} is not supported (only version 1 exists)")]
    UnsupportedVersion { version: u8 },
    /// The header is inconsistent.
    #[error("BTF header is invalid: {reason}")]
    BadHeader { reason: String },
    /// A base blob whose string section does not start with the empty string: in practice a
    /// split (module) blob loaded without its base.
    #[error(
        "BTF string section does not start with an empty string: this looks like split (module) \
         BTF, which must be read on top of the kernel's base BTF (/sys/kernel/btf/vmlinux)"
    )]
    SplitWithoutBase,
    /// A kind number this reader does not know, so it cannot skip the record.
    #[error("BTF type #{id} has unknown kind {kind}: this BTF is newer than this ipvs-trace build understands")]
    UnknownKind { id: u32, kind: u32 },
    /// More type records than type ids.
    #[error("BTF has more types than fit in 32-bit type ids")]
    TooManyTypes,
    /// A reference to a type id that does not exist (in this blob or its base).
    #[error("BTF refers to type #{id}, which does not exist (is the base BTF the right one for this split BTF?)")]
    BadTypeId { id: u32 },
    /// A string offset outside the string sections.
    #[error("BTF refers to string offset {offset}, which is outside its string sections")]
    BadString { offset: u32 },
    /// No struct or union of that name.
    #[error("struct `{name}` not found in BTF")]
    StructNotFound { name: String },
    /// The struct exists but has no such member (also looked for in anonymous members).
    #[error("struct `{strukt}` has no member `{field}` in BTF")]
    FieldNotFound { strukt: String, field: String },
    /// A dotted path goes through a member that is not a struct or union.
    #[error("`{strukt}.{field}`: `{through}` is a {kind}, not a struct or union")]
    NotComposite {
        strukt: String,
        field: String,
        through: String,
        kind: Kind,
    },
    /// The member is a bitfield; the probes only read whole bytes.
    #[error("`{strukt}.{field}` is a {bits}-bit bitfield; only whole-byte members can be read")]
    Bitfield {
        strukt: String,
        field: String,
        bits: u32,
    },
    /// A member at a bit offset that is not a multiple of 8.
    #[error("`{strukt}.{field}` starts at bit {bit_offset}, not on a byte boundary")]
    NotByteAligned {
        strukt: String,
        field: String,
        bit_offset: u64,
    },
    /// The member's type has no size (void, function, forward declaration, ...).
    #[error("BTF type #{id} is a {kind}, which has no size")]
    Unsized { id: u32, kind: &'static str },
    /// A size or offset that does not fit in 32 bits.
    #[error("BTF type #{id} has a size or offset that overflows 32 bits")]
    Overflow { id: u32 },
    /// Type references nest deeper than any real kernel type: the input is cyclic.
    #[error(
        "BTF type #{id} nests more than {MAX_DEPTH} levels deep: the BTF is cyclic or corrupt"
    )]
    TooDeep { id: u32 },
}

/// Where a struct member lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Bytes from the start of the outermost struct (summed over anonymous and dotted levels).
    pub offset: u32,
    /// Size in bytes of the member's type, after skipping typedef, volatile, const, restrict and
    /// type tags.
    pub size: u32,
}

/// Parsed BTF: one blob's types and strings, plus (for split BTF) the base it continues.
///
/// Type ids and string offsets are global across the chain: ids below `start_id` and string
/// offsets below `start_str` are the base's. Lookups through a split `Btf` therefore see
/// the base's types too (a module struct's member of type `struct net *` refers to vmlinux).
pub struct Btf {
    base: Option<Arc<Btf>>,
    endian: Endian,
    start_id: u32,
    start_str: u32,
    types: Vec<u8>,
    offsets: Vec<u32>,
    kinds: Vec<Kind>,
    strings: Vec<u8>,
    /// Built on first lookup: parsing stays a single cheap pass, and a blob that is only ever a
    /// base for a few lookups pays for its index once.
    index: OnceLock<Index>,
}

/// Name index of this blob's own named structs/unions (type ids, declaration order) and
/// functions.
#[derive(Default)]
struct Index {
    composites: HashMap<Box<str>, Vec<u32>>,
    /// Function name → its `BTF_KIND_FUNC` type id.
    functions: HashMap<Box<str>, u32>,
}

/// One decoded type record, borrowed from the `Btf` that holds it.
#[derive(Clone, Copy)]
struct Type<'a> {
    /// The blob holding the record: its strings (and its base's) resolve the record's names.
    owner: &'a Btf,
    kind: Kind,
    /// The type's name (a global string offset; 0 for anonymous types).
    name_off: u32,
    info: u32,
    /// `size` for sized kinds, `type` for reference kinds.
    size_or_target: u32,
    trailing: &'a [u8],
}

impl Type<'_> {
    fn vlen(&self) -> u32 {
        self.info & 0xffff
    }

    fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }

    /// The `i`-th `u32` of the kind-specific data; `None` past its end (parse already checked
    /// each record holds what its kind and `vlen` require, so callers map `None` to corruption).
    fn trailing_u32(&self, i: usize) -> Option<u32> {
        (self.trailing.len() >= 4 * i + 4).then(|| self.owner.endian.u32(self.trailing, 4 * i))
    }
}

/// A member found inside a struct or union.
struct Found {
    bit_offset: u64,
    type_id: u32,
    /// Bitfield width, when the member is one.
    bitfield: Option<u32>,
}

impl Btf {
    /// Parses base BTF (e.g. `/sys/kernel/btf/vmlinux`).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let raw = parse::parse_blob(data, 1)?;
        // libbpf and the kernel require a base string section to start with "" (offset 0 names
        // anonymous types); split BTF from libbpf/pahole starts directly with its first name.
        if raw.strings.first() != Some(&0) {
            return Err(BtfError::SplitWithoutBase);
        }
        Ok(Btf::from_raw(raw, None, 1, 0))
    }

    /// Parses split BTF (e.g. `/sys/kernel/btf/ip_vs`) on top of its base.
    pub fn parse_split(data: &[u8], base: Arc<Btf>) -> Result<Btf, BtfError> {
        let start_id = base.end_id().ok_or(BtfError::TooManyTypes)?;
        let start_str = u32::try_from(base.strings.len())
            .ok()
            .and_then(|len| base.start_str.checked_add(len))
            .ok_or_else(|| BtfError::BadHeader {
                reason: "the base string sections exceed 4 GiB".to_owned(),
            })?;
        let raw = parse::parse_blob(data, start_id)?;
        Ok(Btf::from_raw(raw, Some(base), start_id, start_str))
    }

    /// Reads a raw BTF file (`/sys/kernel/btf/*`, `pahole --btf_encode_detached` output) or an
    /// ELF object (vmlinux, a `.ko`) whose `.BTF` section is used. With `base`, the BTF is split
    /// BTF on top of it.
    pub fn from_file(path: &Path, base: Option<Arc<Btf>>) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_owned(),
            source,
        })?;
        Btf::from_file_bytes(&data, path, base)
    }

    /// [`Btf::from_file`] on bytes already read from `path` (which only names the file in
    /// errors): the same detection of raw BTF, ELF and compressed files. Public so that the fuzz
    /// targets (`ipvs-trace/fuzz`) reach the ELF path without a file per input.
    pub fn from_file_bytes(
        data: &[u8],
        path: &Path,
        base: Option<Arc<Btf>>,
    ) -> Result<Btf, BtfError> {
        let blob = elf::btf_bytes(data, path)?;
        let parsed = match base {
            Some(base) => Btf::parse_split(blob, base),
            None => Btf::parse(blob),
        };
        parsed.map_err(|e| BtfError::File {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    fn from_raw(raw: parse::RawBlob, base: Option<Arc<Btf>>, start_id: u32, start_str: u32) -> Btf {
        Btf {
            base,
            endian: raw.endian,
            start_id,
            start_str,
            types: raw.types,
            offsets: raw.offsets,
            kinds: raw.kinds,
            strings: raw.strings,
            index: OnceLock::new(),
        }
    }

    /// Number of types in this blob (not counting the base's, nor the implicit void).
    #[must_use]
    pub fn type_count(&self) -> usize {
        self.offsets.len()
    }

    /// One past the last type id of this blob.
    fn end_id(&self) -> Option<u32> {
        u32::try_from(self.offsets.len())
            .ok()
            .and_then(|n| self.start_id.checked_add(n))
    }

    /// Whether a function (`BTF_KIND_FUNC`) of that name exists here or in the base.
    #[must_use]
    pub fn has_function(&self, name: &str) -> bool {
        self.index().functions.contains_key(name)
            || self.base.as_ref().is_some_and(|b| b.has_function(name))
    }

    /// The type id of function `name` in this blob alone, whatever its base (for vmlinux's own
    /// BTF, the id the kernel expects with no BTF object).
    #[must_use]
    pub fn function_id(&self, name: &str) -> Option<u32> {
        self.index().functions.get(name).copied()
    }

    /// The base this split BTF continues (vmlinux for a module's), `None` for base BTF.
    #[must_use]
    pub fn base(&self) -> Option<&Btf> {
        self.base.as_deref()
    }

    /// The type id of the first struct or union named `name` in this blob alone.
    #[must_use]
    pub fn composite_id(&self, name: &str) -> Option<u32> {
        self.index().composites.get(name)?.first().copied()
    }

    /// The type id of function `name` in this blob alone (not its base): for a module's split
    /// BTF, the id in the split numbering the kernel expects with the module's BTF object.
    #[must_use]
    pub fn module_function_id(&self, name: &str) -> Option<u32> {
        self.base.as_ref()?;
        self.index().functions.get(name).copied()
    }

    /// Offset and size of `field` in `struct_name` (a struct or union).
    ///
    /// `field` may be a dotted path through named struct/union members (`"ns.inum"`); each level
    /// also looks inside anonymous struct/union members. Bitfields are rejected. When several
    /// types share the name (a module may carry its own copy), this blob's come first, then the
    /// base's, and the first that has the field wins.
    pub fn member(&self, struct_name: &str, field: &str) -> Result<Member, BtfError> {
        let mut candidates = Vec::new();
        let mut blob = Some(self);
        while let Some(b) = blob {
            if let Some(ids) = b.index().composites.get(struct_name) {
                candidates.extend_from_slice(ids);
            }
            blob = b.base.as_deref();
        }
        if candidates.is_empty() {
            return Err(BtfError::StructNotFound {
                name: struct_name.to_owned(),
            });
        }
        for id in candidates {
            match self.member_in(id, struct_name, field) {
                Err(BtfError::FieldNotFound { .. }) => {}
                found => return found,
            }
        }
        Err(BtfError::FieldNotFound {
            strukt: struct_name.to_owned(),
            field: field.to_owned(),
        })
    }

    /// Resolves the dotted `path` inside the struct/union `id`.
    fn member_in(&self, id: u32, strukt: &str, path: &str) -> Result<Member, BtfError> {
        let not_found = || BtfError::FieldNotFound {
            strukt: strukt.to_owned(),
            field: path.to_owned(),
        };
        let mut container = id;
        let mut bit_offset = 0u64;
        let mut member_type = None;
        let mut walked = 0usize;
        for part in path.split('.') {
            if let Some(previous) = member_type {
                container = self.skip_modifiers(previous)?;
                let kind = self.kind_of(container)?;
                if !matches!(kind, Kind::Struct | Kind::Union) {
                    return Err(BtfError::NotComposite {
                        strukt: strukt.to_owned(),
                        field: path.to_owned(),
                        through: path[..walked - 1].to_owned(),
                        kind,
                    });
                }
            }
            walked += part.len() + 1;
            // An empty name would match anonymous members: "a..b" or "" name nothing.
            if part.is_empty() {
                return Err(not_found());
            }
            let found = self
                .find_in(container, part.as_bytes(), 0, &mut HashSet::new())?
                .ok_or_else(not_found)?;
            if let Some(bits) = found.bitfield {
                return Err(BtfError::Bitfield {
                    strukt: strukt.to_owned(),
                    field: path.to_owned(),
                    bits,
                });
            }
            bit_offset += found.bit_offset;
            member_type = Some(found.type_id);
        }
        if !bit_offset.is_multiple_of(8) {
            return Err(BtfError::NotByteAligned {
                strukt: strukt.to_owned(),
                field: path.to_owned(),
                bit_offset,
            });
        }
        let offset = u32::try_from(bit_offset / 8).map_err(|_| BtfError::Overflow { id })?;
        // `path` is non-empty here (an empty path returned above), so a member was found.
        let size = self.size_of(member_type.ok_or_else(not_found)?, 0)?;
        Ok(Member { offset, size })
    }

    /// Looks for a member named `name` in the struct/union `id`, descending into anonymous
    /// struct/union members in declaration order (C forbids duplicate names across them).
    ///
    /// `exhausted` holds the types already searched in vain during this lookup: BTF lets
    /// anonymous members share a type, and without it two such members per level for 60 levels
    /// would be searched 2^60 times. A type still being searched (a cycle) is not in it, so a
    /// cycle still ends in [`BtfError::TooDeep`].
    fn find_in(
        &self,
        id: u32,
        name: &[u8],
        depth: u32,
        exhausted: &mut HashSet<u32>,
    ) -> Result<Option<Found>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id });
        }
        if exhausted.contains(&id) {
            return Ok(None);
        }
        let t = self.ty(id)?;
        for i in 0..t.vlen() as usize {
            let (Some(name_off), Some(type_id), Some(raw_offset)) = (
                t.trailing_u32(3 * i),
                t.trailing_u32(3 * i + 1),
                t.trailing_u32(3 * i + 2),
            ) else {
                return Err(BtfError::TruncatedType { id });
            };
            // With kind_flag set, the offset packs the bitfield width in its top 8 bits.
            let (bit_offset, width) = if t.kind_flag() {
                (raw_offset & 0x00ff_ffff, raw_offset >> 24)
            } else {
                (raw_offset, 0)
            };
            let member_name = t.owner.str_bytes(name_off)?;
            if member_name.is_empty() {
                let inner = self.skip_modifiers(type_id)?;
                if matches!(self.kind_of(inner)?, Kind::Struct | Kind::Union) {
                    if let Some(mut found) = self.find_in(inner, name, depth + 1, exhausted)? {
                        found.bit_offset += u64::from(bit_offset);
                        return Ok(Some(found));
                    }
                }
                continue;
            }
            if member_name == name {
                let bitfield = if width != 0 {
                    Some(width)
                } else {
                    self.int_bitfield_width(type_id)?
                };
                return Ok(Some(Found {
                    bit_offset: u64::from(bit_offset),
                    type_id,
                    bitfield,
                }));
            }
        }
        exhausted.insert(id);
        Ok(None)
    }

    /// Without `kind_flag`, a bitfield shows as an INT whose encoding has fewer bits than its size
    /// (or a bit offset of its own).
    fn int_bitfield_width(&self, type_id: u32) -> Result<Option<u32>, BtfError> {
        let id = self.skip_modifiers(type_id)?;
        if id == 0 {
            return Ok(None);
        }
        let t = self.ty(id)?;
        if t.kind != Kind::Int {
            return Ok(None);
        }
        let encoding = t.trailing_u32(0).ok_or(BtfError::TruncatedType { id })?;
        let bits = encoding & 0xff;
        let bit_offset = (encoding >> 16) & 0xff;
        let whole = u64::from(t.size_or_target) * 8 == u64::from(bits);
        Ok((bit_offset != 0 || !whole).then_some(bits))
    }

    /// Follows typedef, volatile, const, restrict and type tags to the underlying type id
    /// (0 = void).
    fn skip_modifiers(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(0);
            }
            let t = self.ty(id)?;
            match t.kind {
                Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag => {
                    id = t.size_or_target;
                }
                _ => return Ok(id),
            }
        }
        Err(BtfError::TooDeep { id })
    }

    /// Size in bytes of type `id`, modifiers skipped.
    fn size_of(&self, id: u32, depth: u32) -> Result<u32, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id });
        }
        let id = self.skip_modifiers(id)?;
        if id == 0 {
            return Err(BtfError::Unsized { id, kind: "void" });
        }
        let t = self.ty(id)?;
        match t.kind {
            Kind::Int
            | Kind::Enum
            | Kind::Enum64
            | Kind::Float
            | Kind::Struct
            | Kind::Union
            | Kind::Datasec => Ok(t.size_or_target),
            Kind::Ptr => Ok(POINTER_SIZE),
            Kind::Array => {
                let (Some(elem), Some(nelems)) = (t.trailing_u32(0), t.trailing_u32(2)) else {
                    return Err(BtfError::TruncatedType { id });
                };
                self.size_of(elem, depth + 1)?
                    .checked_mul(nelems)
                    .ok_or(BtfError::Overflow { id })
            }
            kind => Err(BtfError::Unsized {
                id,
                kind: kind.name(),
            }),
        }
    }

    fn kind_of(&self, id: u32) -> Result<Kind, BtfError> {
        if id == 0 {
            // Only reachable from corrupt input (a void member); callers treat it as "not a
            // struct" through an error that names the id.
            return Err(BtfError::Unsized { id, kind: "void" });
        }
        Ok(self.ty(id)?.kind)
    }

    /// The record of type `id`, looked up in this blob or down the base chain.
    fn ty(&self, id: u32) -> Result<Type<'_>, BtfError> {
        if id < self.start_id {
            return match &self.base {
                Some(base) => base.ty(id),
                None => Err(BtfError::BadTypeId { id }),
            };
        }
        let index = (id - self.start_id) as usize;
        let (Some(&offset), Some(&kind)) = (self.offsets.get(index), self.kinds.get(index)) else {
            return Err(BtfError::BadTypeId { id });
        };
        let start = offset as usize;
        let end = self
            .offsets
            .get(index + 1)
            .map_or(self.types.len(), |&next| next as usize);
        let record = &self.types[start..end];
        Ok(Type {
            owner: self,
            kind,
            name_off: self.endian.u32(record, 0),
            info: self.endian.u32(record, 4),
            size_or_target: self.endian.u32(record, 8),
            trailing: &record[TYPE_HEADER_LEN..],
        })
    }

    /// The NUL-terminated string at global offset `offset`, without its NUL.
    fn str_bytes(&self, offset: u32) -> Result<&[u8], BtfError> {
        // Offset 0 is the empty string in every blob (in split BTF it points into the base's
        // leading NUL).
        if offset == 0 {
            return Ok(b"");
        }
        if offset < self.start_str {
            return match &self.base {
                Some(base) => base.str_bytes(offset),
                None => Err(BtfError::BadString { offset }),
            };
        }
        let local = (offset - self.start_str) as usize;
        let rest = self
            .strings
            .get(local..)
            .filter(|rest| !rest.is_empty())
            .ok_or(BtfError::BadString { offset })?;
        // The section ends with NUL (checked at parse), so a terminator is always found.
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Ok(&rest[..len])
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| self.build_index())
    }

    fn build_index(&self) -> Index {
        let mut index = Index::default();
        for (i, &kind) in self.kinds.iter().enumerate() {
            if !matches!(kind, Kind::Struct | Kind::Union | Kind::Func) {
                continue;
            }
            let name_off = self.endian.u32(&self.types, self.offsets[i] as usize);
            // A name that is out of range or not UTF-8 can never match a `&str` query: leave it
            // out rather than fail every lookup because of one corrupt record.
            let Some(name) = self
                .str_bytes(name_off)
                .ok()
                .filter(|n| !n.is_empty())
                .and_then(|n| std::str::from_utf8(n).ok())
            else {
                continue;
            };
            let id = self.start_id + i as u32;
            if kind == Kind::Func {
                index.functions.insert(name.into(), id);
            } else {
                index.composites.entry(name.into()).or_default().push(id);
            }
        }
        index
    }
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("start_id", &self.start_id)
            .field("types", &self.offsets.len())
            .field("string_bytes", &self.strings.len())
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}
