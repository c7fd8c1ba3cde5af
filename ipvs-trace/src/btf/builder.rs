//! Test-only writer of real BTF bytes (header, type section, string section), base or split, in
//! either byte order, so the reader is tested on the wire format itself rather than on mocks.

/// `BTF_KIND_*` numbers, written out here independently of the reader's table.
pub(crate) mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// Builds one BTF blob. Type ids and string offsets are numbered as the kernel numbers them:
/// a split builder continues where its base stopped.
pub(crate) struct Builder {
    big_endian: bool,
    extra_header: u32,
    start_str: u32,
    next_id: u32,
    strings: Vec<u8>,
    /// Type records as `u32` words; byte order is applied in [`Builder::build`].
    words: Vec<u32>,
}

impl Builder {
    /// Base BTF: ids from 1, strings starting with "" as libbpf requires.
    pub fn base() -> Builder {
        Builder {
            big_endian: false,
            extra_header: 0,
            start_str: 0,
            next_id: 1,
            strings: vec![0],
            words: Vec::new(),
        }
    }

    /// Split BTF on top of `base` (as it is now): ids and string offsets continue the base's, and
    /// the string section starts directly with the first name, as pahole writes module BTF.
    pub fn split(base: &Builder) -> Builder {
        Builder {
            big_endian: base.big_endian,
            extra_header: 0,
            start_str: base.start_str + base.strings.len() as u32,
            next_id: base.next_id,
            strings: Vec::new(),
            words: Vec::new(),
        }
    }

    pub fn big_endian(mut self) -> Builder {
        self.big_endian = true;
        self
    }

    /// Appends `bytes` zero bytes of (future) header fields after the 24-byte header.
    pub fn extra_header(mut self, bytes: u32) -> Builder {
        self.extra_header = bytes;
        self
    }

    /// Offset of `s` in the global string numbering ("" is 0, as in the kernel).
    pub fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let offset = self.start_str + self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        offset
    }

    /// Appends one record and returns its id.
    pub fn raw(
        &mut self,
        name: &str,
        kind: u32,
        kind_flag: bool,
        vlen: u32,
        size_or_type: u32,
        trailing: &[u32],
    ) -> u32 {
        let name_off = self.str(name);
        let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
        self.words
            .extend_from_slice(&[name_off, info, size_or_type]);
        self.words.extend_from_slice(trailing);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// `INT` of `size` bytes using all its bits, signed.
    pub fn int(&mut self, name: &str, size: u32) -> u32 {
        self.int_bits(name, size, 0, size * 8)
    }

    /// `INT` with explicit bit offset and width in its encoding word (old-style bitfields).
    pub fn int_bits(&mut self, name: &str, size: u32, bit_offset: u32, bits: u32) -> u32 {
        const SIGNED: u32 = 1;
        self.raw(
            name,
            kind::INT,
            false,
            0,
            size,
            &[(SIGNED << 24) | (bit_offset << 16) | bits],
        )
    }

    pub fn ptr(&mut self, target: u32) -> u32 {
        self.raw("", kind::PTR, false, 0, target, &[])
    }

    pub fn array(&mut self, elem: u32, index: u32, nelems: u32) -> u32 {
        self.raw("", kind::ARRAY, false, 0, 0, &[elem, index, nelems])
    }

    /// `STRUCT` with members `(name, type, bit offset)`.
    pub fn structure(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(kind::STRUCT, name, size, false, members)
    }

    /// `UNION` with members `(name, type, bit offset)`.
    pub fn union(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(kind::UNION, name, size, false, members)
    }

    /// `STRUCT` with `kind_flag` set: members `(name, type, bit offset, bitfield width)`.
    pub fn structure_kf(
        &mut self,
        name: &str,
        size: u32,
        members: &[(&str, u32, u32, u32)],
    ) -> u32 {
        let packed: Vec<(&str, u32, u32)> = members
            .iter()
            .map(|&(n, t, off, width)| (n, t, (width << 24) | off))
            .collect();
        self.composite(kind::STRUCT, name, size, true, &packed)
    }

    fn composite(
        &mut self,
        kind: u32,
        name: &str,
        size: u32,
        kind_flag: bool,
        members: &[(&str, u32, u32)],
    ) -> u32 {
        let mut trailing = Vec::new();
        for &(member, ty, offset) in members {
            trailing.extend_from_slice(&[self.str(member), ty, offset]);
        }
        self.raw(name, kind, kind_flag, members.len() as u32, size, &trailing)
    }

    pub fn enumeration(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
        let mut trailing = Vec::new();
        for &(n, v) in values {
            trailing.extend_from_slice(&[self.str(n), v as u32]);
        }
        self.raw(name, kind::ENUM, false, values.len() as u32, 4, &trailing)
    }

    pub fn enum64(&mut self, name: &str, values: &[(&str, u64)]) -> u32 {
        let mut trailing = Vec::new();
        for &(n, v) in values {
            trailing.extend_from_slice(&[self.str(n), v as u32, (v >> 32) as u32]);
        }
        self.raw(name, kind::ENUM64, false, values.len() as u32, 8, &trailing)
    }

    pub fn fwd(&mut self, name: &str) -> u32 {
        self.raw(name, kind::FWD, false, 0, 0, &[])
    }

    pub fn typedef(&mut self, name: &str, target: u32) -> u32 {
        self.raw(name, kind::TYPEDEF, false, 0, target, &[])
    }

    pub fn volatile(&mut self, target: u32) -> u32 {
        self.raw("", kind::VOLATILE, false, 0, target, &[])
    }

    pub fn constant(&mut self, target: u32) -> u32 {
        self.raw("", kind::CONST, false, 0, target, &[])
    }

    pub fn restrict(&mut self, target: u32) -> u32 {
        self.raw("", kind::RESTRICT, false, 0, target, &[])
    }

    pub fn type_tag(&mut self, tag: &str, target: u32) -> u32 {
        self.raw(tag, kind::TYPE_TAG, false, 0, target, &[])
    }

    /// `FUNC` (global linkage) of prototype `proto`.
    pub fn func(&mut self, name: &str, proto: u32) -> u32 {
        const GLOBAL: u32 = 1;
        self.raw(name, kind::FUNC, false, GLOBAL, proto, &[])
    }

    /// `FUNC_PROTO` returning `ret` with parameters `(name, type)`.
    pub fn func_proto(&mut self, ret: u32, params: &[(&str, u32)]) -> u32 {
        let mut trailing = Vec::new();
        for &(n, t) in params {
            trailing.extend_from_slice(&[self.str(n), t]);
        }
        self.raw(
            "",
            kind::FUNC_PROTO,
            false,
            params.len() as u32,
            ret,
            &trailing,
        )
    }

    pub fn var(&mut self, name: &str, ty: u32) -> u32 {
        const GLOBAL_ALLOCATED: u32 = 1;
        self.raw(name, kind::VAR, false, 0, ty, &[GLOBAL_ALLOCATED])
    }

    /// `DATASEC` with entries `(var type id, offset, size)`.
    pub fn datasec(&mut self, name: &str, size: u32, vars: &[(u32, u32, u32)]) -> u32 {
        let trailing: Vec<u32> = vars.iter().flat_map(|&(t, o, s)| [t, o, s]).collect();
        self.raw(
            name,
            kind::DATASEC,
            false,
            vars.len() as u32,
            size,
            &trailing,
        )
    }

    pub fn float(&mut self, name: &str, size: u32) -> u32 {
        self.raw(name, kind::FLOAT, false, 0, size, &[])
    }

    /// `DECL_TAG` on `target` (`component` -1 = the type itself).
    pub fn decl_tag(&mut self, tag: &str, target: u32, component: i32) -> u32 {
        self.raw(tag, kind::DECL_TAG, false, 0, target, &[component as u32])
    }

    /// The blob: header, then types, then strings.
    pub fn build(&self) -> Vec<u8> {
        let word = |w: u32| {
            if self.big_endian {
                w.to_be_bytes()
            } else {
                w.to_le_bytes()
            }
        };
        let type_len = self.words.len() as u32 * 4;
        let hdr_len = 24 + self.extra_header;
        let mut out = Vec::new();
        let magic: u16 = 0xeb9f;
        out.extend_from_slice(&if self.big_endian {
            magic.to_be_bytes()
        } else {
            magic.to_le_bytes()
        });
        out.extend_from_slice(&[1, 0]);
        for w in [hdr_len, 0, type_len, type_len, self.strings.len() as u32] {
            out.extend_from_slice(&word(w));
        }
        out.resize(hdr_len as usize, 0);
        for &w in &self.words {
            out.extend_from_slice(&word(w));
        }
        out.extend_from_slice(&self.strings);
        out
    }
}

/// A minimal little-endian ELF64 relocatable object whose only sections are `section` (holding
/// `btf`) and the section-name table, as a stand-in for a `.ko` in `from_file` tests.
pub(crate) fn elf_with_section(section: &str, btf: &[u8]) -> Vec<u8> {
    const EHDR: usize = 64;
    const SHDR: usize = 64;
    const SHT_PROGBITS: u32 = 1;
    const SHT_STRTAB: u32 = 3;
    let shstrtab = format!("\0{section}\0.shstrtab\0").into_bytes();
    let shstrtab_name = section.len() as u32 + 2;
    let btf_at = EHDR;
    let shstr_at = btf_at + btf.len();
    let mut sh_at = shstr_at + shstrtab.len();
    sh_at += (8 - sh_at % 8) % 8;

    let mut out = Vec::new();
    // e_ident: magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT, System V ABI, padding.
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&1u16.to_le_bytes()); // e_type: ET_REL
    out.extend_from_slice(&62u16.to_le_bytes()); // e_machine: EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&0u64.to_le_bytes()); // e_phoff
    out.extend_from_slice(&(sh_at as u64).to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&(EHDR as u16).to_le_bytes()); // e_ehsize
    out.extend_from_slice(&0u16.to_le_bytes()); // e_phentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // e_phnum
    out.extend_from_slice(&(SHDR as u16).to_le_bytes()); // e_shentsize
    out.extend_from_slice(&3u16.to_le_bytes()); // e_shnum
    out.extend_from_slice(&2u16.to_le_bytes()); // e_shstrndx
    assert_eq!(out.len(), EHDR);
    out.extend_from_slice(btf);
    out.extend_from_slice(&shstrtab);
    out.resize(sh_at, 0);

    let section_header =
        |out: &mut Vec<u8>, name: u32, sh_type: u32, offset: usize, size: usize| {
            out.extend_from_slice(&name.to_le_bytes());
            out.extend_from_slice(&sh_type.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes()); // sh_flags
            out.extend_from_slice(&0u64.to_le_bytes()); // sh_addr
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&(size as u64).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes()); // sh_link
            out.extend_from_slice(&0u32.to_le_bytes()); // sh_info
            out.extend_from_slice(&1u64.to_le_bytes()); // sh_addralign
            out.extend_from_slice(&0u64.to_le_bytes()); // sh_entsize
        };
    out.extend_from_slice(&[0; SHDR]);
    section_header(&mut out, 1, SHT_PROGBITS, btf_at, btf.len());
    section_header(
        &mut out,
        shstrtab_name,
        SHT_STRTAB,
        shstr_at,
        shstrtab.len(),
    );
    out
}
