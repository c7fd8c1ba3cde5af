//! The in-memory store: the newest `--history-size` decisions of this run, as encoded
//! [`block`](super::block)s, plus the block being filled as plain [`Decision`]s.
//!
//! Names are interned once for the whole store ([`Interner`]): a record holds ids, the
//! interner holds each distinct name once as the same `Arc<str>` the Kubernetes index holds,
//! found by that `Arc`'s address, and freed when the last block that refers to it is evicted.
//! A per-block table of `Arc<str>` pointers would cost 16 bytes per distinct name per block:
//! with connections spread over a large cluster nearly every name of a block is distinct, some
//! 60 bytes a decision; the interner costs about 100 bytes per distinct name in the whole
//! store.
//!
//! The store sits behind the [`Store`](super::recorder::Store)'s mutex. A query reads it in
//! steps of a few blocks ([`Memory::scan_step`]) and lets the worker in between, so that a
//! query that has to decode everything never holds the worker up for long.

use std::collections::VecDeque;
use std::sync::Arc;

use super::block::{
    encode_block, key_hash, Bloom, BodyDecoder, Collector, Intern, KeySet, KeyTag, NameIds, Names,
    Summary, BLOCK_DECISIONS,
};
use super::{Decision, Query};

/// A map of the interner: std's table with foldhash, as the Kubernetes index does.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Slot {
    name: Option<Arc<str>>,
    /// The name's bloom filter keys (pod, service, label) once hashed; 0: not yet.
    keys: [u64; 3],
}

/// The address of a name's text: with the `Arc` held (by a slot or as an alias), no other
/// name can have it, so equal addresses are equal names.
fn address(name: &Arc<str>) -> usize {
    Arc::as_ptr(name).cast::<u8>() as usize
}

/// Other `Arc`s of one name found by address, at most: the index shares one `Arc` per name,
/// so more are rare (a name dropped and made again); beyond, the text finds them.
const MAX_ALIASES: usize = 4;

/// Every name the store's sealed blocks refer to, once.
///
/// A name is found by the address of its `Arc` first (the Kubernetes index hands out the same
/// `Arc` for a name every time, so that is one hash of a pointer, not of the text, and no read
/// of the text, which lives in a cold corner of a large heap), then by its text. A name is kept
/// as long as a block refers to it: each name remembers the newest block that does (by the
/// block's last sequence number), and when the oldest blocks are evicted the names whose
/// newest block went with them are freed, without decoding the evicted blocks.
#[derive(Debug, Default)]
pub struct Interner {
    ids: HashMap<Arc<str>, u32>,
    by_address: HashMap<usize, u32>,
    /// `Arc`s other than the slot's own that `by_address` maps, kept so their addresses stay
    /// theirs.
    aliases: HashMap<u32, Vec<Arc<str>>>,
    slots: Vec<Slot>,
    /// Per slot: the last sequence number of the newest block referring to it
    /// (`u64::MAX`: free). Apart from the slots, so that eviction scans it quickly.
    newest: Vec<u64>,
    free: Vec<u32>,
    /// The last sequence number of the block being encoded.
    block_last: u64,
}

impl Interner {
    fn insert(&mut self, name: Arc<str>) -> u32 {
        let slot = Slot {
            name: Some(name.clone()),
            keys: [0; 3],
        };
        let id = if let Some(id) = self.free.pop() {
            self.slots[id as usize] = slot;
            id
        } else {
            self.slots.push(slot);
            self.newest.push(0);
            (self.slots.len() - 1) as u32
        };
        self.by_address.insert(address(&name), id);
        self.ids.insert(name, id);
        id
    }

    /// Frees every name no block from sequence number `floor` on refers to.
    fn release_below(&mut self, floor: u64) {
        for id in 0..self.newest.len() {
            if self.newest[id] >= floor {
                continue;
            }
            self.newest[id] = u64::MAX;
            let slot = std::mem::take(&mut self.slots[id]);
            if let Some(name) = slot.name {
                self.by_address.remove(&address(&name));
                self.ids.remove(&name);
            }
            if let Some(aliases) = self.aliases.remove(&(id as u32)) {
                for alias in &aliases {
                    self.by_address.remove(&address(alias));
                }
            }
            self.free.push(id as u32);
        }
    }

    /// Distinct names held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
            + self.newest.capacity() * 8
            + self.free.capacity() * 4
            + self.ids.capacity() * (size_of::<(Arc<str>, u32)>() + 1)
            + self.by_address.capacity() * (size_of::<(usize, u32)>() + 1)
    }
}

impl Intern for Interner {
    fn intern(&mut self, name: &Arc<str>) -> u32 {
        let id = match self.by_address.get(&address(name)) {
            Some(&id) => id,
            None => match self.ids.get(&**name) {
                Some(&id) => {
                    let aliases = self.aliases.entry(id).or_default();
                    if aliases.len() < MAX_ALIASES {
                        aliases.push(name.clone());
                        self.by_address.insert(address(name), id);
                    }
                    id
                }
                None => self.insert(name.clone()),
            },
        };
        self.newest[id as usize] = self.block_last;
        id
    }

    fn intern_str(&mut self, name: &str) -> u32 {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => self.insert(name.into()),
        };
        self.newest[id as usize] = self.block_last;
        id
    }

    fn name_key(&mut self, id: u32, name: &str, tag: KeyTag) -> u64 {
        let i = match tag {
            KeyTag::Pod => 0,
            KeyTag::Service => 1,
            KeyTag::Label => 2,
            _ => return key_hash(tag, name.as_bytes()),
        };
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return key_hash(tag, name.as_bytes());
        };
        if slot.keys[i] == 0 {
            slot.keys[i] = key_hash(tag, name.as_bytes());
        }
        slot.keys[i]
    }
}

/// The interner as a decoder reads it.
struct Lookup<'a>(&'a Interner);

impl Names for Lookup<'_> {
    fn name(&mut self, id: u32) -> Option<Arc<str>> {
        self.0
            .slots
            .get(id as usize)
            .and_then(|slot| slot.name.clone())
    }
}

/// A sealed block in memory.
#[derive(Debug)]
struct MemBlock {
    summary: Summary,
    bloom: Bloom,
    body: Box<[u8]>,
}

/// A block just sealed, for the disk: the decisions themselves (the disk encodes them with its
/// own dictionary) and the summary and filter both stores share.
#[derive(Debug)]
pub struct Sealed {
    pub summary: Summary,
    pub bloom: Bloom,
    pub decisions: Vec<Decision>,
}

/// The newest decisions of the run.
#[derive(Debug)]
pub struct Memory {
    capacity: usize,
    block_capacity: usize,
    run: u64,
    interner: Interner,
    sealed: VecDeque<MemBlock>,
    sealed_decisions: usize,
    open: Vec<Decision>,
    open_seq_first: u64,
    next_seq: u64,
    keys: KeySet,
    /// Record bytes of the block being sealed (reused).
    body: Vec<u8>,
}

/// Where a query over memory stands between its steps.
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    /// Blocks from this sequence number up have been read.
    pub below: u64,
    /// The run's next sequence number when the query began: everything the query read is in
    /// `below..top`.
    pub top: u64,
    started: bool,
}

impl Cursor {
    #[must_use]
    pub fn new() -> Cursor {
        Cursor {
            below: u64::MAX,
            top: 0,
            started: false,
        }
    }
}

impl Default for Cursor {
    fn default() -> Cursor {
        Cursor::new()
    }
}

impl Memory {
    /// A store for `capacity` decisions of run `run`. Blocks are an eighth of the capacity (at
    /// least 64 decisions, at most [`BLOCK_DECISIONS`]), so that eviction, a block at a time,
    /// keeps most of what was asked for.
    #[must_use]
    pub fn new(capacity: usize, run: u64) -> Memory {
        let block_capacity = (capacity / 8).clamp(64, BLOCK_DECISIONS);
        Memory {
            capacity,
            block_capacity,
            run,
            interner: Interner::default(),
            sealed: VecDeque::new(),
            sealed_decisions: 0,
            open: Vec::with_capacity(block_capacity),
            open_seq_first: 0,
            next_seq: 0,
            keys: KeySet::default(),
            body: Vec::new(),
        }
    }

    /// Decisions held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sealed_decisions + self.open.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[must_use]
    pub fn run(&self) -> u64 {
        self.run
    }

    /// Distinct names held.
    #[must_use]
    pub fn names(&self) -> usize {
        self.interner.len()
    }

    /// Decisions in the block being filled.
    #[must_use]
    pub fn open_len(&self) -> usize {
        self.open.len()
    }

    /// Appends a decision (its `event.timestamp_ns` set to `unix_ns`, as decoded decisions
    /// have it). Returns the block it completed, if it did.
    pub fn push(&mut self, mut decision: Decision) -> Option<Sealed> {
        decision.event.timestamp_ns = decision.unix_ns as u64;
        if self.open.is_empty() {
            self.open_seq_first = self.next_seq;
        }
        self.open.push(decision);
        self.next_seq += 1;
        if self.open.len() >= self.block_capacity {
            self.seal()
        } else {
            None
        }
    }

    /// Appends a batch of decisions as [`Memory::push`] does, adding the blocks it completed to
    /// `sealed`.
    pub fn push_batch(&mut self, batch: &mut Vec<Decision>, sealed: &mut Vec<Sealed>) {
        for decision in batch.drain(..) {
            sealed.extend(self.push(decision));
        }
    }

    /// Seals the block being filled (if any): encoded into memory, handed back for the disk.
    pub fn seal(&mut self) -> Option<Sealed> {
        if self.open.is_empty() {
            return None;
        }
        let decisions = std::mem::replace(&mut self.open, Vec::with_capacity(self.block_capacity));
        self.interner.block_last = self.next_seq - 1;
        self.body.clear();
        let (summary, bloom) = encode_block(
            self.run,
            self.open_seq_first,
            &decisions,
            &mut self.interner,
            &mut self.keys,
            &mut self.body,
        );
        self.sealed_decisions += decisions.len();
        self.sealed.push_back(MemBlock {
            summary: summary.clone(),
            bloom: bloom.clone(),
            body: self.body.as_slice().into(),
        });
        self.evict();
        Some(Sealed {
            summary,
            bloom,
            decisions,
        })
    }

    fn evict(&mut self) {
        let mut evicted = false;
        while self.len() > self.capacity {
            let Some(block) = self.sealed.pop_front() else {
                break;
            };
            self.sealed_decisions -= block.summary.count as usize;
            evicted = true;
        }
        if evicted {
            let floor = self
                .sealed
                .front()
                .map_or(self.next_seq, |b| b.summary.seq_first);
            self.interner.release_below(floor);
        }
    }

    /// Bytes the store holds on the heap, roughly (names shared with the index not counted).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let blocks: usize = self
            .sealed
            .iter()
            .map(|b| b.body.len() + b.bloom.as_bytes().len())
            .sum();
        blocks
            + self.sealed.capacity() * size_of::<MemBlock>()
            + self.open.capacity() * size_of::<Decision>()
            + self.interner.heap_bytes()
    }

    /// One step of a query, newest first: the block being filled (first step only), then up to
    /// `max_blocks` sealed blocks below `cursor`. Returns false when nothing is left to read.
    pub fn scan_step(
        &self,
        query: &Query,
        keys: &[u64],
        collector: &mut Collector,
        cursor: &mut Cursor,
        max_blocks: usize,
    ) -> bool {
        if !cursor.started {
            cursor.started = true;
            cursor.top = self.next_seq;
            cursor.below = if self.open.is_empty() {
                self.next_seq
            } else {
                self.open_seq_first
            };
            for (i, decision) in self.open.iter().enumerate() {
                if query.matches(decision) {
                    let seq = self.open_seq_first + i as u64;
                    collector.offer((decision.unix_ns, self.run, seq), decision.clone());
                }
            }
        }
        let end = self
            .sealed
            .partition_point(|b| b.summary.seq_first < cursor.below);
        let start = end.saturating_sub(max_blocks);
        let names = NameIds::resolve(query, |name| self.interner.ids.get(name).copied());
        if names.impossible() {
            // Every name of a sealed block is interned: none holds this one.
            cursor.below = self
                .sealed
                .front()
                .map_or(cursor.below, |b| b.summary.seq_first.min(cursor.below));
            return false;
        }
        let mut lookup = Lookup(&self.interner);
        for block in self.sealed.range(start..end).rev() {
            cursor.below = block.summary.seq_first;
            let s = &block.summary;
            if query.excludes_span(s.oldest_ns, s.newest_ns)
                || !collector.wants_span(s.newest_ns)
                || !block.bloom.may_contain_all(keys)
            {
                continue;
            }
            let mut decoder = BodyDecoder::new(s, &block.body);
            while let Ok(Some(raw)) = decoder.next_raw() {
                let key = (raw.unix_ns, self.run, raw.seq);
                if !raw.may_match(query) || !raw.may_match_names(&names) || !collector.wants(key) {
                    continue;
                }
                if let Some(decision) = raw.decision(&mut lookup) {
                    if query.matches(&decision) {
                        collector.offer(key, decision);
                    }
                }
            }
        }
        start > 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::block::query_keys;
    use super::super::block::tests::{varied, Rng};
    use super::*;

    fn query_all(memory: &Memory, query: &Query) -> (Vec<Decision>, bool) {
        let keys = query_keys(query);
        let mut collector = Collector::new(query.limit);
        let mut cursor = Cursor::new();
        while memory.scan_step(query, &keys, &mut collector, &mut cursor, 3) {}
        let truncated = collector.truncated;
        (collector.into_decisions(), truncated)
    }

    #[test]
    fn capacity_evicts_the_oldest_blocks_and_their_names() {
        let mut rng = Rng(17);
        let mut memory = Memory::new(2000, 1);
        let all: Vec<Decision> = (0..10_000).map(|i| varied(i, &mut rng)).collect();
        for d in &all {
            let _ = memory.push(d.clone());
        }
        assert!(
            memory.len() <= 2000 && memory.len() > 2000 - 250,
            "holds {}",
            memory.len()
        );
        let query = Query {
            limit: 100_000,
            ..Query::default()
        };
        let (found, truncated) = query_all(&memory, &query);
        assert!(!truncated);
        let mut want: Vec<Decision> = all[all.len() - memory.len()..].to_vec();
        want.sort_by_key(|d| d.unix_ns);
        assert_eq!(found.len(), want.len());
        assert_eq!(found, want, "the newest are kept, oldest first by time");
        // Names only the evicted blocks used are gone.
        let mut names = std::collections::HashSet::new();
        for d in &found {
            for n in [
                d.names.service.as_ref().map(|s| s.label.to_string()),
                d.names.service.as_ref().map(|s| s.service.to_string()),
                d.names
                    .backend
                    .as_ref()
                    .and_then(|b| b.pod.as_deref().map(str::to_owned)),
                d.names
                    .backend
                    .as_ref()
                    .and_then(|b| b.node.as_deref().map(str::to_owned)),
                d.names.names().client_label().map(str::to_owned),
                d.event
                    .scheduler
                    .as_ref()
                    .filter(|s| s.starts_with("custom"))
                    .map(ToString::to_string),
            ]
            .into_iter()
            .flatten()
            {
                names.insert(n);
            }
            if let Some(crate::kube::ClientName::Pod {
                node: Some(node), ..
            }) = &d.names.client
            {
                names.insert(node.to_string());
            }
        }
        // The open block's names are not interned yet; sealed ones are at most all of them.
        assert!(
            memory.names() <= names.len(),
            "{} interned, {} used",
            memory.names(),
            names.len()
        );
        let mut empty = Memory::new(100, 2);
        for d in all.iter().take(64) {
            let _ = empty.push(d.clone());
        }
        assert_eq!(empty.sealed.len(), 1);
        for _ in 0..2 {
            for d in all.iter().skip(64).take(64) {
                let _ = empty.push(d.clone());
            }
        }
        assert!(empty.len() <= 100);
    }

    #[test]
    fn a_name_is_one_id_whichever_arc_holds_it() {
        let mut interner = Interner::default();
        let names: Vec<Arc<str>> = (0..10).map(|_| Arc::from("ns-1/pod-1")).collect();
        let id = interner.intern(&names[0]);
        for name in &names {
            assert_eq!(interner.intern(name), id);
            assert_eq!(interner.intern(name), id);
        }
        assert_eq!(interner.intern_str("ns-1/pod-1"), id);
        assert_eq!(interner.len(), 1);
        let other = interner.intern(&Arc::from("ns-1/pod-2"));
        assert_ne!(other, id);
        interner.release_below(1);
        assert!(interner.is_empty());
        assert!(interner.by_address.is_empty());
    }

    #[test]
    fn limit_keeps_the_newest_and_filters_match_exactly() {
        let mut rng = Rng(23);
        let mut memory = Memory::new(50_000, 9);
        let all: Vec<Decision> = (0..20_000).map(|i| varied(i, &mut rng)).collect();
        for d in &all {
            let _ = memory.push(d.clone());
        }
        let sample = &all[12_345];
        let queries = [
            Query::parse(&format!("client={}", sample.event.client), 0).expect("query"),
            Query::parse(&format!("client={}", sample.event.client.ip()), 0).expect("query"),
            Query::parse("pod=ns-1/pod-3&limit=7", 0).expect("query"),
            Query::parse("service=ns-2/svc-4:http", 0).expect("query"),
            Query::parse("service=ns-2/svc-4", 0).expect("query"),
            Query::parse("limit=10", 0).expect("query"),
        ];
        for query in &queries {
            let mut want: Vec<&Decision> = all.iter().filter(|d| query.matches(d)).collect();
            want.sort_by_key(|d| d.unix_ns);
            let truncated_want = want.len() > query.limit;
            let want: Vec<Decision> = want[want.len().saturating_sub(query.limit)..]
                .iter()
                .map(|d| (*d).clone())
                .collect();
            let (found, truncated) = query_all(&memory, query);
            assert_eq!(truncated, truncated_want, "{query:?}");
            assert_eq!(found.len(), want.len(), "{query:?}");
            assert_eq!(
                found.iter().map(|d| d.unix_ns).collect::<Vec<_>>(),
                want.iter().map(|d| d.unix_ns).collect::<Vec<_>>(),
                "{query:?}"
            );
        }
    }
}
