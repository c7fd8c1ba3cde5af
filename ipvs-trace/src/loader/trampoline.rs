//! fentry/fexit programs on module functions (ip_vs, nf_nat), loaded with our own `bpf()` calls.
//!
//! A BPF trampoline calls the program directly from the traced function's entry (and exit),
//! without the breakpoint trap and register save of a kprobe: the kernel's own bench puts an
//! fentry hit at about 7.5 ns against 18 for a kprobe (fexit 15 against 45 for a kretprobe).
//!
//! Why not aya: aya 0.14 loads fentry/fexit only against vmlinux. A function of a module is
//! described by the module's split BTF, so the kernel needs `attach_btf_obj_fd` (the module's
//! kernel BTF object) beside `attach_btf_id` (the function's id in split numbering), and aya
//! has no public way to set the former (aya-rs/aya issues #300, #301; PR #1594). Patching aya
//! would mean carrying a fork of it; the kernel interface needed is three commands. So aya
//! keeps doing everything else (it creates the maps, loads the kprobes, reads the ring), and
//! this module, for the trampoline programs only:
//! 1. parses the same embedded object with `aya-obj` (aya's own parser) and relocates the
//!    programs' map references to the maps aya created (duplicates of their fds, so the numbers
//!    in the instructions stay valid however aya's maps are passed around meanwhile);
//! 2. finds each traced module's kernel BTF object: `BPF_BTF_GET_NEXT_ID`,
//!    `BPF_BTF_GET_FD_BY_ID`, `BPF_OBJ_GET_INFO_BY_FD` (the kernel BTF named after it), as
//!    libbpf's `find_kernel_btf_id` and cilium/ebpf's `findTargetInModule` do. The kernel allows
//!    the first two to CAP_SYS_ADMIN only: with CAP_BPF and CAP_PERFMON alone the loader falls
//!    back to kprobes and says why;
//! 3. loads each program (`BPF_PROG_LOAD`, type tracing, `attach_btf_id` +
//!    `attach_btf_obj_fd`) and attaches it (`BPF_RAW_TRACEPOINT_OPEN` with no name, which
//!    works since 5.5; `BPF_LINK_CREATE` for tracing came later). Closing the link fd detaches.

use std::{
    collections::HashMap,
    ffi::CString,
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

use aya::{
    maps::{Map, MapData},
    Ebpf,
};
use aya_obj::generated::bpf_insn;
use ipvs_trace_common::offsets::RDONLY_CAST_CALL;

/// The verifier log asked for when a load fails, to explain it: bounded, as a log of a
/// rejected program can be long, and only its end says why.
const LOG_SIZE: usize = 1 << 20;
/// Lines of the verifier log kept in the error.
const LOG_TAIL_LINES: usize = 12;

/// Which end of the function a program runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Entry,
    Exit,
}

impl Side {
    /// `BPF_TRACE_FENTRY` / `BPF_TRACE_FEXIT`.
    fn attach_type(self) -> u32 {
        match self {
            Side::Entry => 24,
            Side::Exit => 25,
        }
    }
}

/// Why a trampoline program could not be used. Each says what was tried; with `--attach auto`
/// the loader then uses the kprobe and shows this as the reason.
#[derive(Debug, thiserror::Error)]
pub enum TrampolineError {
    #[error("the embedded eBPF object: {0}")]
    Object(String),
    #[error("the eBPF object has no program `{0}`")]
    NoProgram(String),
    #[error(
        "finding a module's kernel BTF object needs CAP_SYS_ADMIN (the kernel allows \
         BPF_BTF_GET_NEXT_ID and BPF_BTF_GET_FD_BY_ID to it only)"
    )]
    NeedsSysAdmin,
    #[error(
        "the kernel lists no BTF object for {0} (not loaded, or no module BTF: \
         CONFIG_DEBUG_INFO_BTF_MODULES)"
    )]
    NoModuleBtf(String),
    #[error("listing the kernel's BTF objects: {0}")]
    ListBtf(#[source] io::Error),
    /// The module's BTF object was not found when the programs were prepared (one of the three
    /// above, as text).
    #[error("{0}")]
    Module(String),
    #[error("the kernel refused to load the {side} program ({source}){log}")]
    Load {
        side: &'static str,
        #[source]
        source: io::Error,
        /// The end of the verifier log, with a leading newline, or empty.
        log: String,
    },
    #[error("the kernel refused to attach the {side} program: {0}", side = .1)]
    Attach(#[source] io::Error, &'static str),
}

/// The trampoline programs of the embedded object, relocated against the maps aya created,
/// and the traced modules' BTF objects, found once.
pub struct Trampolines {
    /// Relocated instructions, by program name.
    images: HashMap<String, Vec<bpf_insn>>,
    license: CString,
    /// Duplicates of the maps' fds, the numbers the relocated instructions name.
    _maps: Vec<OwnedFd>,
    /// Each traced module's kernel BTF object, or why there is none (shown as text, once per
    /// probe).
    module_btf: HashMap<&'static str, Result<OwnedFd, String>>,
}

/// A program attached through a trampoline; dropping it detaches it.
pub struct TrampolineLink {
    _link: OwnedFd,
    _program: OwnedFd,
}

impl Trampolines {
    /// Relocates `programs` of `object` (the bytes aya loaded into `ebpf`) against `ebpf`'s
    /// maps, and looks for the BTF objects of `modules`. Call before any map is taken out of
    /// `ebpf`.
    ///
    /// `rdonly_cast` is the vmlinux BTF id of the `bpf_rdonly_cast` kfunc, when the kernel has
    /// it: the programs' calls of [`RDONLY_CAST_CALL`] become calls of it (see
    /// [`link_rdonly_cast`]).
    pub fn prepare(
        ebpf: &Ebpf,
        object: &[u8],
        programs: &[&str],
        modules: &[&'static str],
        rdonly_cast: Option<u32>,
    ) -> Result<Trampolines, TrampolineError> {
        let mut obj =
            aya_obj::Object::parse(object).map_err(|e| TrampolineError::Object(e.to_string()))?;
        if obj.has_btf_relocations() {
            // Nothing here does CO-RE; the programs read through offsets userspace resolved.
            return Err(TrampolineError::Object(
                "it has CO-RE relocations, which this loader does not apply".to_owned(),
            ));
        }
        let mut fds = Vec::new();
        let mut by_name = HashMap::new();
        for (name, map) in ebpf.maps() {
            let fd = map_data(map)
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| TrampolineError::Object(format!("duplicating map {name}: {e}")))?;
            by_name.insert(name.to_owned(), fd.as_raw_fd());
            fds.push(fd);
        }
        let maps = std::mem::take(&mut obj.maps);
        let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
        // A map of the object aya did not create (global data on a kernel without it) is left
        // out, as aya leaves it out: a program using it fails to load and says so.
        obj.relocate_maps(
            maps.iter()
                .filter_map(|(name, map)| Some((name.as_str(), *by_name.get(name)?, map))),
            &text_sections,
        )
        .map_err(|e| TrampolineError::Object(e.to_string()))?;
        obj.relocate_calls(&text_sections)
            .map_err(|e| TrampolineError::Object(e.to_string()))?;
        obj.sanitize_functions(aya::features());
        let mut images = HashMap::new();
        for &name in programs {
            let program = obj
                .programs
                .get(name)
                .ok_or_else(|| TrampolineError::NoProgram(name.to_owned()))?;
            let function = obj
                .functions
                .get(&program.function_key())
                .ok_or_else(|| TrampolineError::NoProgram(name.to_owned()))?;
            let mut instructions = function.instructions.clone();
            link_rdonly_cast(&mut instructions, rdonly_cast);
            images.insert(name.to_owned(), instructions);
        }
        Ok(Trampolines {
            images,
            license: obj.license.clone(),
            _maps: fds,
            module_btf: modules
                .iter()
                .map(|&module| {
                    let found = find_module_btf(module).map_err(|err| err.to_string());
                    (module, found)
                })
                .collect(),
        })
    }

    /// `module`'s BTF object, or why it was not found.
    pub fn module_btf(&self, module: &str) -> Result<BorrowedFd<'_>, &str> {
        match self.module_btf.get(module) {
            Some(Ok(fd)) => Ok(fd.as_fd()),
            Some(Err(why)) => Err(why),
            None => Err("its module's BTF object was not looked for"),
        }
    }

    /// Loads `program` for the `side` of the function of `module` with split BTF id `btf_id`,
    /// and attaches it.
    pub fn attach(
        &self,
        program: &str,
        side: Side,
        module: &str,
        btf_id: u32,
    ) -> Result<TrampolineLink, TrampolineError> {
        let module_btf = self
            .module_btf(module)
            .map_err(|why| TrampolineError::Module(why.to_owned()))?;
        let insns = self
            .images
            .get(program)
            .ok_or_else(|| TrampolineError::NoProgram(program.to_owned()))?;
        let side_name = match side {
            Side::Entry => "fentry",
            Side::Exit => "fexit",
        };
        let load = |log: Option<&mut Vec<u8>>| {
            prog_load(
                program,
                insns,
                &self.license,
                side,
                btf_id,
                Some(module_btf),
                log,
            )
        };
        let prog = load_with_log(load).map_err(|(source, log)| TrampolineError::Load {
            side: side_name,
            source,
            log,
        })?;
        let link = raw_tracepoint_open(prog.as_fd())
            .map_err(|err| TrampolineError::Attach(err, side_name))?;
        Ok(TrampolineLink {
            _link: link,
            _program: prog,
        })
    }
}

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `src_reg` of a call of a kfunc (`BPF_PSEUDO_KFUNC_CALL`): `imm` is its BTF id, `off` the
/// index of its BTF object in `fd_array`, 0 for vmlinux.
const PSEUDO_KFUNC_CALL: u8 = 2;
/// `bpf_get_smp_processor_id`: a helper every program type may call, without arguments.
const HARMLESS_HELPER: i32 = 8;

/// Rewrites the calls of [`RDONLY_CAST_CALL`] (a helper number no kernel has, which the eBPF
/// code uses as a placeholder: aya's toolchain has no way to declare a kfunc) into calls of
/// the `bpf_rdonly_cast` kfunc with vmlinux BTF id `kfunc`, as libbpf does for an `extern`
/// `__ksym` function. Without the kfunc they become a harmless helper instead: the code that
/// calls it then sits behind [`flags::PACKET_CAST`](ipvs_trace_common::offsets::flags), which
/// is unset, so the verifier never walks it, but the program still holds only calls the
/// kernel knows. Returns how many calls were rewritten.
fn link_rdonly_cast(insns: &mut [bpf_insn], kfunc: Option<u32>) -> usize {
    let kfunc = kfunc.and_then(|id| i32::try_from(id).ok());
    let mut rewritten = 0;
    for insn in insns.iter_mut().filter(|i| is_rdonly_cast_placeholder(**i)) {
        match kfunc {
            Some(id) => {
                insn.set_src_reg(PSEUDO_KFUNC_CALL);
                insn.off = 0;
                insn.imm = id;
            }
            None => insn.imm = HARMLESS_HELPER,
        }
        rewritten += 1;
    }
    rewritten
}

/// A helper call (`src_reg` 0, not a bpf-to-bpf or kfunc call) of [`RDONLY_CAST_CALL`].
fn is_rdonly_cast_placeholder(insn: bpf_insn) -> bool {
    insn.code == CALL && insn.src_reg() == 0 && insn.imm == RDONLY_CAST_CALL
}

/// What [`probe_vmlinux_fentry`] found wrong.
#[derive(Debug)]
pub enum ProbeError {
    /// The kernel refused to load the program (no JIT, no BTF support, privileges), with the
    /// verifier log's last lines when it wrote any.
    Load(io::Error, String),
    /// It loaded, but the kernel refused to attach it (no trampolines).
    Attach(io::Error),
}

/// Whether this kernel attaches BPF trampolines at all: an fentry program that returns at
/// once, loaded on the vmlinux function with BTF id `btf_id`, attached, then detached and
/// closed. `check` aims it at `bpf_fentry_test1`, which only `BPF_PROG_TEST_RUN` calls, so
/// nothing else ever runs through the trampoline for the moment it exists.
pub fn probe_vmlinux_fentry(btf_id: u32) -> Result<(), ProbeError> {
    // r0 = 0; exit
    const MOV64_IMM: u8 = 0xb7;
    const EXIT: u8 = 0x95;
    let insn = |code: u8| bpf_insn {
        code,
        _bitfield_align_1: [],
        _bitfield_1: bpf_insn::new_bitfield_1(0, 0),
        off: 0,
        imm: 0,
    };
    let license = CString::from(c"GPL");
    let insns = [insn(MOV64_IMM), insn(EXIT)];
    let load = |log: Option<&mut Vec<u8>>| {
        prog_load(
            "ipvs_trace_chk",
            &insns,
            &license,
            Side::Entry,
            btf_id,
            None,
            log,
        )
    };
    let prog = load_with_log(load).map_err(|(err, log)| ProbeError::Load(err, log))?;
    let _link = raw_tracepoint_open(prog.as_fd()).map_err(ProbeError::Attach)?;
    Ok(())
}

/// Runs `load` without a verifier log (the fast path); on a refusal runs it again with one,
/// which says why, and returns the error with the log's last lines.
fn load_with_log(
    load: impl Fn(Option<&mut Vec<u8>>) -> io::Result<OwnedFd>,
) -> Result<OwnedFd, (io::Error, String)> {
    load(None).map_err(|err| {
        let mut log = vec![0u8; LOG_SIZE];
        let tail = match load(Some(&mut log)) {
            Ok(_) => String::new(),
            Err(_) => log_tail(&log),
        };
        (err, tail)
    })
}

/// Whether `module`'s kernel BTF object can be found (what `check` reports; nothing is
/// loaded).
pub fn find_module(module: &str) -> Result<(), TrampolineError> {
    find_module_btf(module).map(drop)
}

/// The last lines of a verifier log (NUL-terminated in `buf`), each indented, after a newline.
fn log_tail(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        return String::new();
    }
    let mut out = String::from("; the verifier's log ends with:");
    for line in tail {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

/// The `MapData` behind any kind of map (each variant holds one).
fn map_data(map: &Map) -> &MapData {
    match map {
        Map::Array(d)
        | Map::ArrayOfMaps(d)
        | Map::BloomFilter(d)
        | Map::CgroupArray(d)
        | Map::CgroupStorage(d)
        | Map::CgrpStorage(d)
        | Map::CpuMap(d)
        | Map::DevMap(d)
        | Map::DevMapHash(d)
        | Map::HashMap(d)
        | Map::HashOfMaps(d)
        | Map::InodeStorage(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuCgroupStorage(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::PerfEventArray(d)
        | Map::ProgramArray(d)
        | Map::Queue(d)
        | Map::ReusePortSockArray(d)
        | Map::RingBuf(d)
        | Map::SockHash(d)
        | Map::SockMap(d)
        | Map::SkStorage(d)
        | Map::Stack(d)
        | Map::StackTraceMap(d)
        | Map::Unsupported(d)
        | Map::XskMap(d) => d,
    }
}

// The kernel's `bpf()` interface, for the four commands used here. Each attribute struct is the
// prefix of `union bpf_attr` a command reads (the kernel zero-fills the rest), laid out as in
// include/uapi/linux/bpf.h.

const BPF_PROG_LOAD: i32 = 5;
const BPF_OBJ_GET_INFO_BY_FD: i32 = 15;
const BPF_RAW_TRACEPOINT_OPEN: i32 = 17;
const BPF_BTF_GET_FD_BY_ID: i32 = 19;
const BPF_BTF_GET_NEXT_ID: i32 = 23;
const BPF_PROG_TYPE_TRACING: u32 = 26;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    /// `attach_prog_fd` or, for a kernel function, `attach_btf_obj_fd` (5.11+).
    attach_btf_obj_fd: u32,
}

/// `BPF_BTF_GET_NEXT_ID` (`start_id`, `next_id`) and `BPF_BTF_GET_FD_BY_ID` (`start_id` is
/// `btf_id` there).
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    start_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
#[derive(Default)]
struct BtfInfo {
    btf: u64,
    btf_size: u32,
    id: u32,
    name: u64,
    name_len: u32,
    kernel_btf: u32,
}

#[repr(C)]
#[derive(Default)]
struct RawTracepointAttr {
    name: u64,
    prog_fd: u32,
}

/// `bpf(cmd, attr, sizeof attr)`.
fn sys_bpf<T>(cmd: i32, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, writable attribute struct of the size passed; the kernel reads
    // (and for some commands writes) at most that many bytes. Pointers inside it are set by the
    // callers to buffers that outlive the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// For the commands that return a new file descriptor.
fn sys_bpf_fd<T>(cmd: i32, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = sys_bpf(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf() returned no fd"))?;
    // SAFETY: the command returned a new descriptor, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn prog_load(
    name: &str,
    insns: &[bpf_insn],
    license: &CString,
    side: Side,
    btf_id: u32,
    btf_obj: Option<BorrowedFd<'_>>,
    log: Option<&mut Vec<u8>>,
) -> io::Result<OwnedFd> {
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_TRACING,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| io::Error::other("program too long"))?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: side.attach_type(),
        attach_btf_id: btf_id,
        // 0: an id in vmlinux's BTF.
        attach_btf_obj_fd: btf_obj.map_or(0, |fd| fd.as_raw_fd().cast_unsigned()),
        ..ProgLoadAttr::default()
    };
    // The kernel takes up to 15 characters of [A-Za-z0-9_.]: program names qualify.
    for (dst, src) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src;
    }
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    sys_bpf_fd(BPF_PROG_LOAD, &mut attr)
}

fn raw_tracepoint_open(prog: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut attr = RawTracepointAttr {
        name: 0,
        prog_fd: prog.as_raw_fd().cast_unsigned(),
    };
    sys_bpf_fd(BPF_RAW_TRACEPOINT_OPEN, &mut attr)
}

/// The kernel BTF object of `module`: every BTF object in turn, by id, until one is a kernel
/// BTF of that name.
fn find_module_btf(module: &str) -> Result<OwnedFd, TrampolineError> {
    let mut id = 0;
    loop {
        let mut next = IdAttr {
            start_id: id,
            ..IdAttr::default()
        };
        match sys_bpf(BPF_BTF_GET_NEXT_ID, &mut next) {
            Ok(_) => id = next.next_id,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                return Err(TrampolineError::NoModuleBtf(module.to_owned()))
            }
            Err(err) if err.raw_os_error() == Some(libc::EPERM) => {
                return Err(TrampolineError::NeedsSysAdmin)
            }
            Err(err) => return Err(TrampolineError::ListBtf(err)),
        }
        let mut by_id = IdAttr {
            start_id: id,
            ..IdAttr::default()
        };
        let fd = match sys_bpf_fd(BPF_BTF_GET_FD_BY_ID, &mut by_id) {
            Ok(fd) => fd,
            // Freed between the two calls (a module unloaded): go on with the next.
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(err) if err.raw_os_error() == Some(libc::EPERM) => {
                return Err(TrampolineError::NeedsSysAdmin)
            }
            Err(err) => return Err(TrampolineError::ListBtf(err)),
        };
        // Module names are at most 56 bytes (MODULE_NAME_LEN); the name is all we read.
        let mut name = [0u8; 64];
        let mut info = BtfInfo {
            name: name.as_mut_ptr() as u64,
            name_len: name.len() as u32,
            ..BtfInfo::default()
        };
        let mut attr = InfoAttr {
            bpf_fd: fd.as_raw_fd().cast_unsigned(),
            info_len: size_of::<BtfInfo>() as u32,
            info: std::ptr::from_mut(&mut info) as u64,
        };
        if sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).is_err() {
            continue;
        }
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        if info.kernel_btf != 0 && &name[..len] == module.as_bytes() {
            return Ok(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribute_structs_have_the_kernels_layout() {
        // include/uapi/linux/bpf.h: attach_btf_obj_fd at 112, the struct 8-aligned.
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, func_info), 80);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, attach_btf_id), 108);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, attach_btf_obj_fd), 112);
        assert_eq!(size_of::<ProgLoadAttr>(), 120);
        assert_eq!(std::mem::offset_of!(BtfInfo, kernel_btf), 28);
        assert_eq!(size_of::<BtfInfo>(), 32);
        assert_eq!(size_of::<InfoAttr>(), 16);
        assert_eq!(size_of::<RawTracepointAttr>(), 16);
    }

    #[test]
    fn a_verifier_log_is_cut_to_its_end() {
        let log = (0..40)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut buf = log.into_bytes();
        buf.push(0);
        buf.extend_from_slice(b"garbage after the NUL");
        let tail = log_tail(&buf);
        assert!(
            tail.starts_with("; the verifier's log ends with:\n    line 28"),
            "{tail}"
        );
        assert!(tail.ends_with("line 39"), "{tail}");
        assert_eq!(log_tail(&[0; 8]), "");
    }

    fn call(src_reg: u8, imm: i32) -> bpf_insn {
        bpf_insn {
            code: CALL,
            _bitfield_align_1: [],
            _bitfield_1: bpf_insn::new_bitfield_1(0, src_reg),
            off: 0,
            imm,
        }
    }

    #[test]
    fn rdonly_cast_placeholders_become_kfunc_calls_or_a_known_helper() {
        let program = [
            call(0, RDONLY_CAST_CALL),
            call(0, 113),
            call(0, RDONLY_CAST_CALL),
            // A bpf-to-bpf call with the same number is not a placeholder.
            call(1, RDONLY_CAST_CALL),
        ];
        let mut linked = program;
        assert_eq!(link_rdonly_cast(&mut linked, Some(55_000)), 2);
        for i in [0, 2] {
            assert_eq!(
                (linked[i].src_reg(), linked[i].off, linked[i].imm),
                (PSEUDO_KFUNC_CALL, 0, 55_000)
            );
        }
        assert_eq!((linked[1].src_reg(), linked[1].imm), (0, 113));
        assert_eq!((linked[3].src_reg(), linked[3].imm), (1, RDONLY_CAST_CALL));

        let mut unlinked = program;
        assert_eq!(link_rdonly_cast(&mut unlinked, None), 2);
        assert_eq!(
            (unlinked[0].src_reg(), unlinked[0].imm),
            (0, HARMLESS_HELPER)
        );
        assert_eq!(
            (unlinked[2].src_reg(), unlinked[2].imm),
            (0, HARMLESS_HELPER)
        );
    }

    #[test]
    fn the_per_packet_program_calls_the_placeholder_and_no_kprobe_does() {
        // The placeholder is only ever compiled into trampoline programs: aya loads the
        // kprobes, and nothing rewrites their calls.
        let obj = aya_obj::Object::parse(super::super::EBPF_OBJECT).unwrap();
        let calls = |program: &str| {
            let key = obj.programs[program].function_key();
            obj.functions[&key]
                .instructions
                .iter()
                .filter(|i| is_rdonly_cast_placeholder(**i))
                .count()
        };
        assert_eq!(calls("tcp_state_transition_fentry"), 2);
        for probe in super::super::probes::PROBES {
            assert_eq!(calls(probe.program), 0, "{}", probe.program);
        }
    }

    #[test]
    fn every_trampoline_program_is_in_the_object() {
        let obj = aya_obj::Object::parse(super::super::EBPF_OBJECT).unwrap();
        for probe in super::super::probes::PROBES {
            assert!(
                obj.programs.contains_key(probe.trampoline_program),
                "{} missing",
                probe.trampoline_program
            );
            assert!(
                obj.programs.contains_key(probe.program),
                "{}",
                probe.program
            );
        }
    }
}
