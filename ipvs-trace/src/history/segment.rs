//! The history on disk (`--history-dir DIR`): append-only segment files of checksummed
//! frames, read by serve's queries and offline by `ipvs-trace who --history-dir DIR`
//! ([`query_dir`]), which never writes to DIR.
//!
//! # Why an own format
//! The store appends ~10^4-10^5 small records a second from one thread, is read rarely, by a
//! handful of keys, newest first, and must survive `kill -9` and power loss losing at most
//! the last second. An embedded database (rusqlite with its bundled SQLite, ~1.5 MB of C;
//! redb) would bring transactions and B-tree indexes we do not need, and pay for them where we
//! care: each secondary index (client, client:port, backend, pod, service, time) stores its key
//! again per row plus B-tree overhead, so the indexes alone would outweigh a whole record here,
//! and sharing names between rows costs a join per lookup (an estimate from the layouts, not
//! measured here). Compressed segments of JSON lines (zstd) would be compact but unindexed: a
//! query reads and inflates everything. An own append-only format needs no dependency but a
//! CRC, writes each byte once, keeps names once per segment, and lets a query skip what it
//! does not need with a per-block summary and bloom filter read without the block. Measured
//! (`cargo xtask bench --only history`, names spread over a synthetic 100k-pod / 20k-Service
//! cluster, the worst case for interning): 61 bytes a decision on disk (of which ~8 bloom
//! filter, ~8 dictionary), some 1.4-1.6 million decisions a second encoded and written on one
//! core (about 1,600 instructions a decision, the segment's dictionary found by the names'
//! `Arc` addresses as the memory store's interner is), a client:port query over 10 million
//! decisions (610 MB) in about 80 ms.
//!
//! # Layout (format version 1)
//! `DIR/<created unix ns, 20 digits>-<run id, 16 hex>.ipvsh`, sortable by name. A file is a
//! 32-byte header (`IPVSHIST`, version u16, flags u16, run id u64, created ns i64, CRC-32 of
//! the 28 bytes before it; little-endian) and frames:
//!
//! ```text
//! magic u32 (E7 'h' 'F' 1A) | kind u8 | 0 0 0 | meta_len u32 | body_len u32
//! | meta_crc u32 (CRC-32 of the 12 bytes from kind, then meta) | body_crc u32 | meta | body
//! ```
//!
//! The meta is what a reader needs to skip: a block frame's meta is the block's
//! [`Summary`] and bloom filter, its body the records ([`block`](super::block)); a dictionary
//! frame's meta is its first string id and count, its body the strings (varint length, UTF-8).
//! A block's strings are written in a dictionary frame just before it, so a segment holds each
//! name once, and records refer to names by id in that segment's dictionary.
//!
//! # Damage
//! A reader walks the frames reading only headers and metas, checks the meta's CRC, and reads
//! a block's body (checking its CRC) only when the query needs it. A frame whose header or
//! meta does not check is skipped by searching for the next frame magic; a torn last write
//! (`kill -9`, power loss) is an incomplete frame at the end. Either loses that frame only,
//! except that a lost dictionary frame also loses the names it defined: the records that need
//! them are skipped and counted rather than shown without names. Segments are never appended
//! to by a later run: serve starts a new one. Files that are not segments are reported and
//! left alone.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use foldhash::fast::RandomState;

use super::block::{
    encode_body, put_varint, query_keys, Bloom, BodyDecoder, Collector, Intern, NameIds, Names,
    Reader, Summary,
};
use super::memory::Sealed;
use super::query::MAX_LIMIT;
use super::recorder::Answer;
use super::Query;

/// File name suffix of a segment.
pub const SUFFIX: &str = "ipvsh";
const FILE_MAGIC: &[u8; 8] = b"IPVSHIST";
/// The format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
const FILE_HEADER_LEN: u64 = 32;
const FRAME_MAGIC: [u8; 4] = [0xe7, b'h', b'F', 0x1a];
const FRAME_HEADER_LEN: usize = 24;
const KIND_DICT: u8 = 1;
const KIND_BLOCK: u8 = 2;
/// Largest meta a reader accepts: a block's summary and its largest bloom filter.
const MAX_META: u32 = 36 + 4096 * 64;
/// Largest body a reader accepts: a block of 4096 records or the strings of one.
const MAX_BODY: u32 = 16 << 20;
/// Bytes a resync reads at a time while looking for the next frame magic.
const RESYNC_CHUNK: usize = 64 << 10;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A segment file's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub run: u64,
    pub created_ns: i64,
}

impl FileHeader {
    fn encode(&self) -> [u8; FILE_HEADER_LEN as usize] {
        let mut out = [0u8; FILE_HEADER_LEN as usize];
        out[..8].copy_from_slice(FILE_MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.run.to_le_bytes());
        out[20..28].copy_from_slice(&self.created_ns.to_le_bytes());
        let crc = crc32fast::hash(&out[..28]);
        out[28..].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Why a file in DIR is not read.
#[derive(Debug, thiserror::Error)]
pub enum NotASegment {
    #[error("not an ipvs-trace history segment (no IPVSHIST header): left alone")]
    Foreign,
    #[error("written by a newer ipvs-trace (format version {0}, this one reads {FORMAT_VERSION}): left alone")]
    Version(u16),
    #[error("its header is damaged: left alone")]
    DamagedHeader,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// An open segment file.
struct SegmentFile {
    file: File,
    len: u64,
    header: FileHeader,
}

fn open_segment(path: &Path) -> Result<SegmentFile, NotASegment> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut bytes = [0u8; FILE_HEADER_LEN as usize];
    let got = read_at_most(&file, &mut bytes, 0)?;
    if got < FILE_MAGIC.len() || &bytes[..8] != FILE_MAGIC {
        return Err(NotASegment::Foreign);
    }
    if got < bytes.len() || crc32fast::hash(&bytes[..28]).to_le_bytes() != bytes[28..32] {
        return Err(NotASegment::DamagedHeader);
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(NotASegment::Version(version));
    }
    Ok(SegmentFile {
        file,
        len,
        header: FileHeader {
            run: u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")),
            created_ns: i64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes")),
        },
    })
}

/// Reads into `buf` from `offset` until it is full or the file ends; the bytes read.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(done)
}

/// Where a frame's body is.
#[derive(Clone, Copy, Debug)]
struct BodyRef {
    frame_pos: u64,
    pos: u64,
    len: u32,
    crc: u32,
}

/// A frame as the walk finds it.
enum Frame<'a> {
    Dict {
        first: u32,
        count: u32,
        body: BodyRef,
    },
    Block {
        summary: Summary,
        bloom: &'a [u8],
        body: BodyRef,
    },
}

/// What a walk found wrong.
#[derive(Debug, Default)]
struct Damage {
    /// Byte ranges that are not frames.
    skipped: Vec<(u64, u64)>,
    /// An incomplete frame at the end: its offset.
    torn_at: Option<u64>,
}

/// Walks the frames of `seg` in file order, reading headers and metas only.
fn walk(seg: &SegmentFile, visit: &mut dyn FnMut(Frame<'_>)) -> io::Result<Damage> {
    let mut damage = Damage::default();
    let mut pos = FILE_HEADER_LEN;
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut meta = Vec::new();
    while pos < seg.len {
        let got = read_at_most(&seg.file, &mut header, pos)?;
        let fits = |meta_len: u32, body_len: u32| {
            pos + (FRAME_HEADER_LEN as u64) + u64::from(meta_len) + u64::from(body_len) <= seg.len
        };
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let (meta_len, body_len) = (word(8), word(12));
        let good_header = got == FRAME_HEADER_LEN
            && header[..4] == FRAME_MAGIC
            && header[5..8] == [0, 0, 0]
            && meta_len <= MAX_META
            && body_len <= MAX_BODY;
        let mut ok = good_header && fits(meta_len, body_len);
        if ok {
            meta.resize(meta_len as usize, 0);
            let start = pos + FRAME_HEADER_LEN as u64;
            ok = read_at_most(&seg.file, &mut meta, start)? == meta.len() && {
                let mut crc = crc32fast::Hasher::new();
                crc.update(&header[4..16]);
                crc.update(&meta);
                crc.finalize() == word(16)
            };
        }
        if !ok {
            // A torn last write starts with a whole or partial header at the end of the file.
            let next = find_magic(&seg.file, pos + 1, seg.len)?;
            let looks_torn = (got < FRAME_HEADER_LEN
                && header[..got.min(4)] == FRAME_MAGIC[..got.min(4)])
                || (good_header && !fits(meta_len, body_len));
            match next {
                None if looks_torn => damage.torn_at = Some(pos),
                None => damage.skipped.push((pos, seg.len)),
                Some(next) => damage.skipped.push((pos, next)),
            }
            match next {
                Some(next) => {
                    pos = next;
                    continue;
                }
                None => break,
            }
        }
        let body = BodyRef {
            frame_pos: pos,
            pos: pos + FRAME_HEADER_LEN as u64 + u64::from(meta_len),
            len: body_len,
            crc: word(20),
        };
        let mut reader = Reader::new(&meta);
        match header[4] {
            KIND_DICT => {
                if let (Ok(first), Ok(count)) = (reader.fixed::<4>(), reader.fixed::<4>()) {
                    visit(Frame::Dict {
                        first: u32::from_le_bytes(first),
                        count: u32::from_le_bytes(count),
                        body,
                    });
                }
            }
            KIND_BLOCK => {
                if let Ok(summary) = Summary::decode(&mut reader) {
                    let bloom = &meta[meta.len() - reader.remaining()..];
                    visit(Frame::Block {
                        summary,
                        bloom,
                        body,
                    });
                }
            }
            // A kind this version does not know: a later version's addition, skipped whole.
            _ => {}
        }
        pos = body.pos + u64::from(body_len);
    }
    Ok(damage)
}

/// The offset of the next frame magic at or after `from`, if any.
fn find_magic(file: &File, from: u64, len: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; RESYNC_CHUNK];
    let mut pos = from;
    while pos + 4 <= len {
        let got = read_at_most(file, &mut buf, pos)?;
        if got < 4 {
            break;
        }
        if let Some(i) = buf[..got].windows(4).position(|w| w == FRAME_MAGIC) {
            return Ok(Some(pos + i as u64));
        }
        pos += (got - 3) as u64;
    }
    Ok(None)
}

fn read_body(seg: &SegmentFile, body: BodyRef, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.resize(body.len as usize, 0);
    Ok(read_at_most(&seg.file, buf, body.pos)? == buf.len() && crc32fast::hash(buf) == body.crc)
}

/// A segment's dictionary, loaded when a decision of the segment is to be named.
struct Dictionary {
    text: Vec<u8>,
    /// Per id: its bytes in `text`; `None` when the frame defining it was lost.
    spans: Vec<Option<(u32, u32)>>,
    shared: HashMap<u32, Arc<str>>,
}

impl Dictionary {
    fn load(
        seg: &SegmentFile,
        frames: &[(u32, u32, BodyRef)],
        path: &Path,
        warnings: &mut Vec<String>,
    ) -> io::Result<Dictionary> {
        let mut dict = Dictionary {
            text: Vec::new(),
            spans: Vec::new(),
            shared: HashMap::new(),
        };
        let mut buf = Vec::new();
        for &(first, count, body) in frames {
            // Ids come in order; a gap is a lost frame's. Each id took at least one byte of the
            // file, so a gap larger than the file is damage that slipped past the checksums.
            let gap_ok = u64::from(first) >= dict.spans.len() as u64
                && u64::from(first) - (dict.spans.len() as u64) <= seg.len
                && u64::from(count) <= u64::from(body.len);
            if !gap_ok || !read_body(seg, body, &mut buf)? {
                warnings.push(format!(
                    "{}: dictionary frame at offset {} is damaged: decisions naming its strings are lost",
                    path.display(),
                    body.frame_pos
                ));
                continue;
            }
            let mark = (dict.text.len(), dict.spans.len());
            dict.spans.resize(first as usize, None);
            let mut reader = Reader::new(&buf);
            let mut ok = true;
            for _ in 0..count {
                let Some(bytes) = reader
                    .varint_u32()
                    .ok()
                    .and_then(|len| reader.take(len as usize).ok())
                    .filter(|b| std::str::from_utf8(b).is_ok())
                else {
                    ok = false;
                    break;
                };
                let start = dict.text.len() as u32;
                dict.text.extend_from_slice(bytes);
                dict.spans.push(Some((start, bytes.len() as u32)));
            }
            if !ok || !reader.is_empty() {
                dict.text.truncate(mark.0);
                dict.spans.truncate(mark.1);
                warnings.push(format!(
                    "{}: dictionary frame at offset {} does not decode: decisions naming its strings are lost",
                    path.display(),
                    body.frame_pos
                ));
            }
        }
        Ok(dict)
    }
}

impl Dictionary {
    /// The id of `name`, if the segment has it (each string is in a segment once).
    fn find(&self, name: &str) -> Option<u32> {
        let text = &self.text;
        self.spans
            .iter()
            .position(|span| {
                span.is_some_and(|(start, len)| {
                    text.get(start as usize..(start + len) as usize) == Some(name.as_bytes())
                })
            })
            .map(|id| id as u32)
    }
}

impl Names for Dictionary {
    fn name(&mut self, id: u32) -> Option<Arc<str>> {
        if let Some(name) = self.shared.get(&id) {
            return Some(name.clone());
        }
        let (start, len) = (*self.spans.get(id as usize)?)?;
        let bytes = self.text.get(start as usize..(start + len) as usize)?;
        let name: Arc<str> = std::str::from_utf8(bytes).ok()?.into();
        self.shared.insert(id, name.clone());
        Some(name)
    }
}

/// Disk blocks a query over a live store need not read: this run's blocks of sequence numbers
/// `lo..hi`, which it read in memory.
#[derive(Clone, Copy, Debug)]
pub struct Covered {
    pub run: u64,
    pub lo: u64,
    pub hi: u64,
}

/// How a directory is read.
pub struct DirScan<'a> {
    pub query: &'a Query,
    pub keys: &'a [u64],
    pub covered: Option<Covered>,
    /// The run serve is recording: an incomplete frame at the end of one of its segments is a
    /// write in progress, not damage.
    pub live_run: Option<u64>,
    /// Report files that are not segments (the offline reader; serve did at start).
    pub report_foreign: bool,
}

/// The segments of `dir`, newest first, and the files that are not segments.
fn list_dir(dir: &Path) -> io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut segments = Vec::new();
    let mut others = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == SUFFIX) && path.is_file() {
            segments.push(path);
        } else {
            others.push(path);
        }
    }
    segments.sort();
    segments.reverse();
    others.sort();
    Ok((segments, others))
}

fn damage_warnings(path: &Path, damage: &Damage, live: bool, warnings: &mut Vec<String>, len: u64) {
    for (from, to) in &damage.skipped {
        warnings.push(format!(
            "{}: bytes {from}..{to} are damaged (not a frame): skipped",
            path.display()
        ));
    }
    if let Some(at) = damage.torn_at {
        if !live {
            warnings.push(format!(
                "{}: the last write is incomplete (a crash, or serve still writing): its {} bytes at offset {at} are ignored",
                path.display(),
                len - at
            ));
        }
    }
}

impl DirScan<'_> {
    /// Adds the matching decisions of every segment of `dir` to `collector`.
    pub fn run(
        &self,
        dir: &Path,
        collector: &mut Collector,
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let (segments, others) = list_dir(dir)
            .with_context(|| format!("reading the history directory {}", dir.display()))?;
        if self.report_foreign {
            for path in others {
                warnings.push(format!(
                    "{}: not a history segment (*.{SUFFIX}): ignored",
                    path.display()
                ));
            }
        }
        for path in segments {
            let seg = match open_segment(&path) {
                Ok(seg) => seg,
                // Retention deleted it since the listing.
                Err(NotASegment::Io(err)) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => {
                    warnings.push(format!("{}: {err}", path.display()));
                    continue;
                }
            };
            self.segment(&path, &seg, collector, warnings)
                .with_context(|| format!("reading {}", path.display()))?;
        }
        Ok(())
    }

    fn segment(
        &self,
        path: &Path,
        seg: &SegmentFile,
        collector: &mut Collector,
        warnings: &mut Vec<String>,
    ) -> io::Result<()> {
        let query = self.query;
        let mut dict_frames = Vec::new();
        let mut candidates = Vec::new();
        let damage = walk(seg, &mut |frame| match frame {
            Frame::Dict { first, count, body } => dict_frames.push((first, count, body)),
            Frame::Block {
                summary,
                bloom,
                body,
            } => {
                let covered = self.covered.is_some_and(|c| {
                    summary.run == c.run && summary.seq_first >= c.lo && summary.seq_last() < c.hi
                });
                if covered || query.excludes_span(summary.oldest_ns, summary.newest_ns) {
                    return;
                }
                if Bloom::from_bytes(bloom).is_ok_and(|b| b.may_contain_all(self.keys)) {
                    candidates.push((summary, body));
                }
            }
        })?;
        let live = self.live_run == Some(seg.header.run);
        damage_warnings(path, &damage, live, warnings, seg.len);
        let mut dict: Option<Dictionary> = None;
        let mut names = NameIds::default();
        if !candidates.is_empty() && (query.pod.is_some() || query.service.is_some()) {
            let loaded = Dictionary::load(seg, &dict_frames, path, warnings)?;
            names = NameIds::resolve(query, |name| loaded.find(name));
            if names.impossible() {
                return Ok(());
            }
            dict = Some(loaded);
        }
        let mut unnamed = 0u64;
        let mut body = Vec::new();
        for (summary, body_ref) in candidates.iter().rev() {
            if !collector.wants_span(summary.newest_ns) {
                continue;
            }
            if !read_body(seg, *body_ref, &mut body)? {
                warnings.push(format!(
                    "{}: block at offset {} is damaged (checksum): its {} decisions are lost",
                    path.display(),
                    body_ref.frame_pos,
                    summary.count
                ));
                continue;
            }
            let mut decoder = BodyDecoder::new(summary, &body);
            loop {
                let raw = match decoder.next_raw() {
                    Ok(Some(raw)) => raw,
                    Ok(None) => break,
                    Err(err) => {
                        warnings.push(format!(
                            "{}: block at offset {}: {err}: the rest of it is lost",
                            path.display(),
                            body_ref.frame_pos
                        ));
                        break;
                    }
                };
                let key = (raw.unix_ns, summary.run, raw.seq);
                if !raw.may_match(query) || !raw.may_match_names(&names) || !collector.wants(key) {
                    continue;
                }
                if dict.is_none() {
                    dict = Some(Dictionary::load(seg, &dict_frames, path, warnings)?);
                }
                let Some(decision) = dict.as_mut().and_then(|d| raw.decision(d)) else {
                    unnamed += 1;
                    continue;
                };
                if query.matches(&decision) {
                    collector.offer(key, decision);
                }
            }
        }
        if unnamed > 0 {
            warnings.push(format!(
                "{}: {unnamed} decision(s) skipped: their names were in a damaged frame",
                path.display()
            ));
        }
        Ok(())
    }
}

/// Answers `query` from the segments in `dir`, as `who --history-dir DIR` does with no serve
/// running. Reads only: DIR is not written, locked or cleaned. Damaged segments and files that
/// are not segments are reported in the answer's warnings.
pub fn query_dir(dir: &Path, query: &Query) -> anyhow::Result<Answer> {
    let meta = fs::metadata(dir).with_context(|| format!("history directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (expected serve's --history-dir)",
            dir.display()
        );
    }
    let keys = query_keys(query);
    let mut collector = Collector::new(query.limit.min(MAX_LIMIT));
    let mut warnings = Vec::new();
    DirScan {
        query,
        keys: &keys,
        covered: None,
        live_run: None,
        report_foreign: true,
    }
    .run(dir, &mut collector, &mut warnings)?;
    Ok(Answer {
        truncated: collector.truncated,
        decisions: collector.into_decisions(),
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A closed segment retention may delete.
#[derive(Clone, Debug)]
struct SegmentInfo {
    path: PathBuf,
    bytes: u64,
    /// Its newest decision, or its creation when it holds none.
    newest_ns: i64,
}

/// A map of the writer's dictionary: std's table with foldhash, as the memory store's.
type FastMap<K, V> = HashMap<K, V, RandomState>;

/// Strings a segment's dictionary has room for from the start (about 2 MB): a segment holds
/// tens of thousands of names over a large cluster, and its maps then do not grow and rehash
/// while decisions wait.
const DICTIONARY_CAPACITY: usize = 1 << 15;

/// The address of a name's text (see the memory store's interner): equal while both `Arc`s
/// are held only if they are the same name.
fn address(name: &Arc<str>) -> usize {
    Arc::as_ptr(name).cast::<u8>() as usize
}

/// The segment being written and its dictionary.
struct Current {
    path: PathBuf,
    file: File,
    /// Bytes of whole frames written.
    len: u64,
    /// The segment's strings by text (each is in a segment once)...
    ids: FastMap<Arc<str>, u32>,
    /// ... and by the address of each `Arc` seen for them, which `ids` or `aliases` holds.
    by_address: FastMap<usize, u32>,
    aliases: Vec<Arc<str>>,
    /// Strings of the block being encoded that the segment does not have yet.
    new: Vec<Arc<str>>,
    created_ns: i64,
    newest_ns: Option<i64>,
    dirty: bool,
}

impl Intern for Current {
    fn intern(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&id) = self.by_address.get(&address(name)) {
            return id;
        }
        let id = if let Some(&id) = self.ids.get(&**name) {
            self.aliases.push(name.clone());
            id
        } else {
            let id = self.ids.len() as u32;
            self.ids.insert(name.clone(), id);
            self.new.push(name.clone());
            id
        };
        self.by_address.insert(address(name), id);
        id
    }

    fn intern_str(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        self.intern(&Arc::from(name))
    }
}

/// Limits of the directory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_age: Duration,
}

impl Limits {
    /// The current segment is closed at this size, so that retention has whole segments to
    /// delete: an eighth of the limit, between 256 KiB and 64 MiB.
    #[must_use]
    pub fn roll_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(256 << 10, 64 << 20)
    }
}

/// Seconds between attempts to write again after a write error.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Writes sealed blocks to DIR and keeps it within its limits.
pub struct SegmentWriter {
    dir: PathBuf,
    run: u64,
    limits: Limits,
    current: Option<Current>,
    /// Closed segments, oldest first.
    closed: Vec<SegmentInfo>,
    retry_at: Option<Instant>,
    frame: Vec<u8>,
    meta: Vec<u8>,
    body: Vec<u8>,
}

/// What opening DIR found.
pub struct Opened {
    pub writer: SegmentWriter,
    /// Damaged segments and foreign files, one line each.
    pub warnings: Vec<String>,
}

impl SegmentWriter {
    /// Opens DIR for run `run`: creates it (0700) if missing, reads what earlier runs left
    /// (reporting damage and foreign files), applies the limits, and starts a new segment.
    pub fn open(dir: &Path, run: u64, limits: Limits) -> anyhow::Result<Opened> {
        match fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                bail!(
                    "history directory {} exists and is not a directory",
                    dir.display()
                )
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating the history directory {}", dir.display()))?,
            Err(err) => {
                return Err(err).with_context(|| format!("history directory {}", dir.display()))
            }
        }
        let (segments, others) = list_dir(dir)
            .with_context(|| format!("reading the history directory {}", dir.display()))?;
        let mut warnings: Vec<String> = others
            .iter()
            .map(|p| {
                format!(
                    "{}: not a history segment (*.{SUFFIX}): left alone",
                    p.display()
                )
            })
            .collect();
        let mut closed = Vec::new();
        for path in segments.into_iter().rev() {
            let seg = match open_segment(&path) {
                Ok(seg) => seg,
                Err(err) => {
                    warnings.push(format!("{}: {err}", path.display()));
                    continue;
                }
            };
            let mut newest: Option<i64> = None;
            let damage = walk(&seg, &mut |frame| {
                if let Frame::Block { summary, .. } = frame {
                    newest = Some(newest.map_or(summary.newest_ns, |n| n.max(summary.newest_ns)));
                }
            })
            .with_context(|| format!("reading {}", path.display()))?;
            damage_warnings(&path, &damage, false, &mut warnings, seg.len);
            closed.push(SegmentInfo {
                path,
                bytes: seg.len,
                newest_ns: newest.unwrap_or(seg.header.created_ns),
            });
        }
        let mut writer = SegmentWriter {
            dir: dir.to_owned(),
            run,
            limits,
            current: None,
            closed,
            retry_at: None,
            frame: Vec::new(),
            meta: Vec::new(),
            body: Vec::new(),
        };
        warnings.extend(writer.retain());
        writer
            .start_segment()
            .with_context(|| format!("cannot write to the history directory {}", dir.display()))?;
        Ok(Opened { writer, warnings })
    }

    /// Creates a new segment: the header is written under a temporary name and renamed, so a
    /// `*.ipvsh` file always starts with a whole header.
    fn start_segment(&mut self) -> io::Result<()> {
        let mut created_ns = now_ns();
        let (path, tmp) = loop {
            let name = format!("{created_ns:020}-{:016x}.{SUFFIX}", self.run);
            let path = self.dir.join(&name);
            if !path.exists() {
                break (path, self.dir.join(format!("{name}.tmp")));
            }
            created_ns += 1;
        };
        let header = FileHeader {
            run: self.run,
            created_ns,
        };
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            file.write_all(&header.encode())?;
            file.sync_data()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()?;
            Ok(file)
        })();
        let file = match result {
            Ok(file) => file,
            Err(err) => {
                let _ = fs::remove_file(&tmp);
                return Err(err);
            }
        };
        self.current = Some(Current {
            path,
            file,
            len: FILE_HEADER_LEN,
            ids: FastMap::with_capacity_and_hasher(DICTIONARY_CAPACITY, RandomState::default()),
            by_address: FastMap::with_capacity_and_hasher(
                DICTIONARY_CAPACITY,
                RandomState::default(),
            ),
            aliases: Vec::new(),
            new: Vec::new(),
            created_ns,
            newest_ns: None,
            dirty: false,
        });
        Ok(())
    }

    /// Appends a sealed block (its strings first). On an error the segment is cut back to its
    /// last whole frame and closed; writing resumes in a new segment [`RETRY_AFTER`] later.
    pub fn write(&mut self, sealed: &Sealed) -> io::Result<()> {
        if self.current.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(io::Error::other("writes paused after an error"));
            }
            if let Err(err) = self.start_segment() {
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                return Err(err);
            }
            self.retry_at = None;
        }
        let current = self.current.as_mut().expect("a segment was just started");
        let first_new = current.ids.len() as u32;
        self.body.clear();
        encode_body(&sealed.summary, &sealed.decisions, current, &mut self.body);
        self.frame.clear();
        if !current.new.is_empty() {
            self.meta.clear();
            self.meta.extend_from_slice(&first_new.to_le_bytes());
            self.meta
                .extend_from_slice(&(current.new.len() as u32).to_le_bytes());
            let mut strings = Vec::new();
            for name in current.new.drain(..) {
                put_varint(&mut strings, name.len() as u64);
                strings.extend_from_slice(name.as_bytes());
            }
            push_frame(&mut self.frame, KIND_DICT, &self.meta, &strings);
        }
        self.meta.clear();
        sealed.summary.encode(&mut self.meta);
        self.meta.extend_from_slice(sealed.bloom.as_bytes());
        push_frame(&mut self.frame, KIND_BLOCK, &self.meta, &self.body);
        if let Err(err) = current.file.write_all(&self.frame) {
            let _ = current.file.set_len(current.len);
            self.close_current();
            self.retry_at = Some(Instant::now() + RETRY_AFTER);
            return Err(err);
        }
        current.len += self.frame.len() as u64;
        let newest = sealed.summary.newest_ns;
        current.newest_ns = Some(current.newest_ns.map_or(newest, |n| n.max(newest)));
        current.dirty = true;
        if current.len >= self.limits.roll_bytes() {
            self.close_current();
        }
        Ok(())
    }

    fn close_current(&mut self) {
        if let Some(current) = self.current.take() {
            if current.dirty {
                let _ = current.file.sync_data();
            }
            self.closed.push(SegmentInfo {
                path: current.path,
                bytes: current.len,
                newest_ns: current.newest_ns.unwrap_or(current.created_ns),
            });
        }
    }

    /// Makes what was written durable (every few seconds and at shutdown).
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(current) = self.current.as_mut().filter(|c| c.dirty) {
            current.file.sync_data()?;
            current.dirty = false;
        }
        Ok(())
    }

    /// Deletes the oldest closed segments while the directory is over its byte limit, and
    /// those whose newest decision is older than the age limit. Returns what went wrong.
    pub fn retain(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let oldest_kept = now_ns()
            .saturating_sub(i64::try_from(self.limits.max_age.as_nanos()).unwrap_or(i64::MAX));
        let mut total = self.bytes();
        while let Some(first) = self.closed.first() {
            if total <= self.limits.max_bytes && first.newest_ns >= oldest_kept {
                // Age: a later segment can be older than this one only by clock steps; they go
                // when they reach the front.
                break;
            }
            let first = self.closed.remove(0);
            match fs::remove_file(&first.path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => warnings.push(format!("deleting {}: {err}", first.path.display())),
            }
            total -= first.bytes;
        }
        warnings
    }

    /// Bytes of the directory's segments.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.closed.iter().map(|s| s.bytes).sum::<u64>()
            + self.current.as_ref().map_or(0, |c| c.len)
    }

    /// Segments in the directory.
    #[must_use]
    pub fn segments(&self) -> usize {
        self.closed.len() + usize::from(self.current.is_some())
    }

    /// Closes the current segment, durably (at shutdown).
    pub fn finish(mut self) -> io::Result<()> {
        let result = self.sync();
        self.close_current();
        result
    }
}

fn push_frame(out: &mut Vec<u8>, kind: u8, meta: &[u8], body: &[u8]) {
    let mut head = [0u8; 12];
    head[0] = kind;
    head[4..8].copy_from_slice(&(meta.len() as u32).to_le_bytes());
    head[8..12].copy_from_slice(&(body.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(meta);
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(body);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::block::tests::{varied, Rng};
    use super::super::memory::Memory;
    use super::super::Decision;
    use super::*;

    /// A directory under the system's temporary directory, removed when dropped.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "ipvs-trace-history-{name}-{}-{n}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("creating a temporary directory");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn all() -> Query {
        Query {
            limit: MAX_LIMIT,
            ..Query::default()
        }
    }

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 30,
        max_age: Duration::from_hours(365 * 24),
    };

    /// `n` varied decisions recorded as a run would, starting `age` before now, in blocks of
    /// 250 written to `dir`; returns them (as stored) and the segment's path.
    fn write_run(
        dir: &Path,
        n: u64,
        seed: u64,
        limits: Limits,
        age: Duration,
    ) -> (Vec<Decision>, PathBuf) {
        let mut rng = Rng(seed);
        let shift = now_ns() - 1_795_713_172_000_000_000 - age.as_nanos() as i64;
        let opened = SegmentWriter::open(dir, seed, limits).expect("opening the directory");
        let mut writer = opened.writer;
        let path = writer.current.as_ref().expect("a segment").path.clone();
        let mut memory = Memory::new(2000, seed);
        let mut stored = Vec::new();
        for i in 0..n {
            let mut d = varied(i, &mut rng);
            d.unix_ns += shift;
            d.event.timestamp_ns = d.unix_ns as u64;
            stored.push(d.clone());
            if let Some(sealed) = memory.push(d) {
                writer.write(&sealed).expect("writing a block");
            }
        }
        if let Some(sealed) = memory.seal() {
            writer.write(&sealed).expect("writing a block");
        }
        writer.finish().expect("closing the segment");
        stored.sort_by_key(|d| d.unix_ns);
        (stored, path)
    }

    /// The frames of a segment: (offset, kind, body offset, body length).
    fn frames(path: &Path) -> Vec<(u64, u8, u64, u32)> {
        let seg = open_segment(path).expect("a segment");
        let mut out = Vec::new();
        walk(&seg, &mut |frame| match frame {
            Frame::Dict { body, .. } => out.push((body.frame_pos, KIND_DICT, body.pos, body.len)),
            Frame::Block { body, .. } => out.push((body.frame_pos, KIND_BLOCK, body.pos, body.len)),
        })
        .expect("walking");
        out
    }

    fn modify(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = fs::read(path).expect("reading the segment");
        edit(&mut bytes);
        fs::write(path, bytes).expect("writing the segment");
    }

    #[test]
    fn a_directory_answers_what_was_written_exactly() {
        let dir = TempDir::new("round-trip");
        let (stored, _) = write_run(&dir.0, 5000, 41, LIMITS, Duration::ZERO);
        let answer = query_dir(&dir.0, &all()).expect("query");
        assert!(answer.warnings.is_empty(), "{:?}", answer.warnings);
        assert!(!answer.truncated);
        assert_eq!(answer.decisions, stored);
        let sample = &stored[1234];
        for text in [
            format!("client={}", sample.event.client),
            format!("client={}&limit=3", sample.event.client.ip()),
            "pod=ns-2/pod-7".to_owned(),
            "service=ns-1/svc-3:http".to_owned(),
            "service=ns-1/svc-3".to_owned(),
            format!(
                "backend={}",
                sample.event.backend.map_or(sample.event.client, |b| b)
            ),
        ] {
            let mut query = Query::parse(&text, 0).expect("query");
            query.since = Some(stored[100].unix_ns);
            query.until = Some(stored[4000].unix_ns);
            let want: Vec<&Decision> = stored.iter().filter(|d| query.matches(d)).collect();
            let answer = query_dir(&dir.0, &query).expect("query");
            assert_eq!(answer.truncated, want.len() > query.limit, "{text}");
            let want = &want[want.len().saturating_sub(query.limit)..];
            assert_eq!(answer.decisions.iter().collect::<Vec<_>>(), want, "{text}");
        }
    }

    #[test]
    fn a_torn_last_write_loses_only_it_with_one_warning() {
        let dir = TempDir::new("torn");
        let (stored, path) = write_run(&dir.0, 3000, 43, LIMITS, Duration::ZERO);
        let last = *frames(&path).last().expect("frames");
        modify(&path, |bytes| bytes.truncate(bytes.len() - 10));
        let answer = query_dir(&dir.0, &all()).expect("query");
        assert_eq!(answer.warnings.len(), 1, "{:?}", answer.warnings);
        assert!(
            answer.warnings[0].contains("incomplete"),
            "{:?}",
            answer.warnings
        );
        // The last block held the last 3000 % 250 (or 250) decisions by sequence.
        let lost_decisions = 250;
        assert_eq!(answer.decisions.len(), stored.len() - lost_decisions);
        assert!(answer.decisions.iter().all(|d| stored.contains(d)));
        // A torn header too.
        modify(&path, |bytes| bytes.truncate(last.0 as usize + 7));
        let again = query_dir(&dir.0, &all()).expect("query");
        assert_eq!(again.warnings.len(), 1, "{:?}", again.warnings);
        assert!(
            again.warnings[0].contains("incomplete"),
            "{:?}",
            again.warnings
        );
        assert_eq!(again.decisions.len(), stored.len() - lost_decisions);
        // Serve opens it again, reports it once and writes a new segment beside it.
        let before = fs::read(&path).expect("reading");
        let opened = SegmentWriter::open(&dir.0, 1, LIMITS).expect("reopening");
        assert_eq!(opened.warnings.len(), 1, "{:?}", opened.warnings);
        assert_ne!(
            opened.writer.current.as_ref().expect("a segment").path,
            path
        );
        drop(opened);
        assert_eq!(
            fs::read(&path).expect("reading"),
            before,
            "the old segment is not appended to"
        );
    }

    #[test]
    fn a_damaged_frame_in_the_middle_loses_only_its_block() {
        let dir = TempDir::new("damaged");
        let (stored, path) = write_run(&dir.0, 3000, 47, LIMITS, Duration::ZERO);
        let blocks: Vec<_> = frames(&path)
            .into_iter()
            .filter(|f| f.1 == KIND_BLOCK)
            .collect();
        assert_eq!(blocks.len(), 12);
        // A flipped bit in the records of block 5, and a damaged header of block 8.
        modify(&path, |bytes| {
            bytes[(blocks[5].2 + u64::from(blocks[5].3) / 2) as usize] ^= 0x10;
            bytes[blocks[8].0 as usize + 1] ^= 0xff;
        });
        let answer = query_dir(&dir.0, &all()).expect("query");
        assert_eq!(answer.warnings.len(), 2, "{:?}", answer.warnings);
        assert!(
            answer.warnings.iter().any(|w| w.contains("checksum")),
            "{:?}",
            answer.warnings
        );
        assert!(
            answer.warnings.iter().any(|w| w.contains("not a frame")),
            "{:?}",
            answer.warnings
        );
        assert_eq!(answer.decisions.len(), stored.len() - 500);
        assert!(answer.decisions.iter().all(|d| stored.contains(d)));
    }

    #[test]
    fn foreign_files_are_reported_and_left_alone() {
        let dir = TempDir::new("foreign");
        let (stored, _) = write_run(&dir.0, 600, 53, LIMITS, Duration::ZERO);
        let notes = dir.0.join("notes.txt");
        let bogus = dir.0.join("00000000000000000000-bogus.ipvsh");
        let empty = dir.0.join("00000000000000000001-empty.ipvsh");
        fs::write(&notes, "not ours").expect("writing");
        fs::write(&bogus, vec![0x42; 5000]).expect("writing");
        fs::write(&empty, b"IPVSHI").expect("writing");
        let answer = query_dir(&dir.0, &all()).expect("query");
        assert_eq!(answer.decisions, stored);
        assert_eq!(answer.warnings.len(), 3, "{:?}", answer.warnings);
        // Serve reports them, keeps them through retention, and writes beside them.
        let tight = Limits {
            max_bytes: 1,
            max_age: Duration::from_secs(1),
        };
        let opened = SegmentWriter::open(&dir.0, 2, tight).expect("opening");
        assert_eq!(opened.warnings.len(), 3, "{:?}", opened.warnings);
        drop(opened);
        assert_eq!(fs::read(&notes).expect("kept"), b"not ours");
        assert_eq!(fs::read(&bogus).expect("kept"), vec![0x42; 5000]);
        assert_eq!(fs::read(&empty).expect("kept"), b"IPVSHI");
    }

    #[test]
    fn retention_deletes_the_oldest_segments_by_bytes_and_by_age() {
        let dir = TempDir::new("retention");
        // Two runs a day old, then one now; the age limit is an hour.
        let week = Limits {
            max_bytes: 1 << 30,
            max_age: Duration::from_hours(1),
        };
        let (old, old_path) = write_run(&dir.0, 500, 59, LIMITS, Duration::from_hours(24));
        let (recent, _) = write_run(&dir.0, 500, 61, week, Duration::ZERO);
        assert!(
            !old_path.exists(),
            "the day-old segment is deleted when serve opens the directory"
        );
        let answer = query_dir(&dir.0, &all()).expect("query");
        assert_eq!(answer.decisions, recent);
        assert!(!old.is_empty());
        // Bytes: 2 MiB limit, segments roll at 256 KiB.
        let small = Limits {
            max_bytes: 2 << 20,
            max_age: Duration::from_hours(1),
        };
        let opened = SegmentWriter::open(&dir.0, 63, small).expect("opening");
        let mut writer = opened.writer;
        let mut memory = Memory::new(1 << 20, 63);
        let mut rng = Rng(63);
        let shift = now_ns() - 1_795_713_172_000_000_000;
        let first_ns = 1_795_713_172_000_000_000 + shift;
        for i in 0..200_000 {
            let mut d = varied(i, &mut rng);
            d.unix_ns += shift;
            if let Some(sealed) = memory.push(d) {
                writer.write(&sealed).expect("writing a block");
                assert!(writer.retain().is_empty());
                assert!(
                    writer.bytes() <= small.max_bytes + small.roll_bytes(),
                    "{} bytes",
                    writer.bytes()
                );
            }
        }
        assert!(writer.segments() >= 3, "{} segments", writer.segments());
        let on_disk: u64 = fs::read_dir(&dir.0)
            .expect("listing")
            .map(|e| e.expect("entry").metadata().expect("metadata").len())
            .sum();
        assert_eq!(on_disk, writer.bytes());
        assert!(on_disk <= small.max_bytes, "{on_disk} bytes on disk");
        writer.finish().expect("closing");
        let mut first = all();
        first.until = Some(first_ns + 20_000_000);
        let answer = query_dir(&dir.0, &first).expect("query");
        assert!(answer.warnings.is_empty(), "{:?}", answer.warnings);
        assert!(answer.decisions.is_empty(), "the oldest segment is deleted");
        assert!(!query_dir(&dir.0, &all())
            .expect("query")
            .decisions
            .is_empty());
    }

    #[test]
    fn a_directory_that_is_a_file_or_unwritable_is_a_clear_error() {
        let dir = TempDir::new("not-a-dir");
        let file = dir.0.join("history");
        fs::write(&file, "x").expect("writing");
        let err = SegmentWriter::open(&file, 1, LIMITS)
            .err()
            .expect("a file is not a directory");
        assert!(format!("{err:#}").contains("is not a directory"), "{err:#}");
        let err = query_dir(&file, &all()).expect_err("a file is not a directory");
        assert!(format!("{err:#}").contains("is not a directory"), "{err:#}");
        let err = query_dir(&dir.0.join("missing"), &all()).expect_err("missing");
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!(
                "running as root: permissions do not apply, the unwritable case is not tested"
            );
            return;
        }
        let locked = dir.0.join("locked");
        fs::create_dir(&locked).expect("creating");
        fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o500))
            .expect("chmod");
        let err = SegmentWriter::open(&locked, 1, LIMITS)
            .err()
            .expect("an unwritable directory");
        assert!(format!("{err:#}").contains("cannot write"), "{err:#}");
        fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
    }

    /// The committed segment of format version 1 (`tests/history/v1.ipvsh`, also the fuzz
    /// target's seed) reads back as the committed JSON lines: a later build reads what an
    /// earlier one wrote. `IPVS_TRACE_BLESS=1` writes both anew (review the diff: a change of
    /// the lines is a change of the format).
    #[test]
    fn the_committed_version_1_segment_still_reads() {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/history");
        let segment = fixtures.join("v1.ipvsh");
        let lines = fixtures.join("v1.jsonl");
        let dir = TempDir::new("v1");
        if std::env::var_os("IPVS_TRACE_BLESS").is_some() {
            let mut rng = Rng(0x5eed);
            let forever = Limits {
                max_bytes: 1 << 30,
                max_age: Duration::from_hours(100 * 365 * 24),
            };
            let mut writer = SegmentWriter::open(&dir.0, 0x0123_4567_89ab_cdef, forever)
                .expect("opening")
                .writer;
            let written = writer.current.as_ref().expect("a segment").path.clone();
            let mut memory = Memory::new(800, 1);
            for i in 0..210 {
                if let Some(sealed) = memory.push(varied(i, &mut rng)) {
                    writer.write(&sealed).expect("writing");
                }
            }
            writer
                .write(&memory.seal().expect("a last block"))
                .expect("writing");
            writer.finish().expect("closing");
            fs::create_dir_all(&fixtures).expect("creating tests/history");
            fs::copy(&written, &segment).expect("copying the segment");
        }
        fs::copy(&segment, dir.0.join(segment.file_name().expect("a name"))).unwrap_or_else(
            |err| {
                panic!(
                    "{}: {err} (run with IPVS_TRACE_BLESS=1 to create it)",
                    segment.display()
                )
            },
        );
        let answer = query_dir(&dir.0, &all()).expect("query");
        assert!(answer.warnings.is_empty(), "{:?}", answer.warnings);
        let clock = crate::clock::WallClock::with_offset(0);
        let mut actual = Vec::new();
        for d in &answer.decisions {
            crate::output::json::write_line(&mut actual, &clock, &d.event, &d.names.names(), None)
                .expect("a Vec takes it");
        }
        let actual = String::from_utf8(actual).expect("JSON is UTF-8");
        if std::env::var_os("IPVS_TRACE_BLESS").is_some() {
            fs::write(&lines, &actual).expect("writing the JSON lines");
        }
        let expected = fs::read_to_string(&lines).unwrap_or_else(|err| {
            panic!("{}: {err} (run with IPVS_TRACE_BLESS=1)", lines.display())
        });
        assert_eq!(answer.decisions.len(), 210);
        assert!(
            expected == actual,
            "{} differs from what the segment reads as",
            lines.display()
        );
    }

    #[test]
    fn a_new_directory_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new("create");
        let history = dir.0.join("a/b");
        let opened = SegmentWriter::open(&history, 1, LIMITS).expect("creating");
        drop(opened);
        let mode = fs::metadata(&history)
            .expect("created")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
