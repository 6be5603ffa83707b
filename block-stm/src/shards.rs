//! The multi-version memory's map from keys to their versions.
//!
//! The memory needs little from its map: short reads and updates of one key under a lock, and,
//! once a block is done, the map taken apart in parts ("shards") so that worker threads can
//! finalize them in parallel. [`ShardedMap`] finds keys through a table that lookups only read
//! and keeps each key with its value under the key's own lock, so that threads working on
//! different keys do not write the same cache lines: with a lock per shard of keys, almost every
//! operation fetched that lock's line from the other core. Keys that do not fit go to a
//! [`LockedMap`], split into independently locked shards, each keeping its entries in a vector
//! in the order they were inserted and a hash table of positions in it (as `indexmap` does).

use std::cell::Cell;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crossbeam_utils::CachePadded;
use foldhash::fast::FixedState;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard, RwLock};

/// The parts a map is taken apart in for finalizing: enough that two to eight threads share the
/// work evenly.
pub(crate) const SHARD_COUNT: usize = 64;

type Shard<K, T> = CachePadded<RwLock<Entries<K, T>>>;

/// One shard's entries, and where each key's is.
struct Entries<K, T> {
    /// Positions in `entries`, by the hash of their key.
    positions: HashTable<u32>,
    /// The entries, in order of insertion.
    entries: Vec<(K, T)>,
}

impl<K: Hash + Eq, T> Entries<K, T> {
    fn position(&self, hash: u64, key: &K) -> Option<usize> {
        let entries = &self.entries;
        self.positions.find(hash, |&at| entries[at as usize].0 == *key).map(|&at| at as usize)
    }
}

/// Where keys go that the [`ShardedMap`]'s table or arena has no room for: shards of keys, each
/// behind its own lock. Its operations take the key's hash, which the map has computed.
struct LockedMap<K, T> {
    shards: Box<[Shard<K, T>]>,
}

impl<K: Hash + Eq + Clone, T: Default> LockedMap<K, T> {
    fn new() -> Self {
        let shard = || {
            CachePadded::new(RwLock::new(Entries {
                positions: HashTable::new(),
                entries: Vec::new(),
            }))
        };
        Self { shards: (0..SHARD_COUNT).map(|_| shard()).collect() }
    }

    /// The shard of a hash (from bits the table uses for neither its position nor its tag).
    fn shard(&self, hash: u64) -> &RwLock<Entries<K, T>> {
        &self.shards[(hash >> 40) as usize % SHARD_COUNT]
    }

    fn read<R>(&self, hash: u64, key: &K, read: impl FnOnce(&T) -> R) -> Option<R> {
        let shard = self.shard(hash).read();
        shard.position(hash, key).map(|at| read(&shard.entries[at].1))
    }

    fn update<R>(
        &self,
        hasher: &FixedState,
        hash: u64,
        key: &K,
        update: impl FnOnce(&mut T) -> R,
    ) -> R {
        let mut shard = self.shard(hash).write();
        let Entries { positions, entries } = &mut *shard;
        // One search of the table: the key's position, or where it goes.
        let found = positions.entry(
            hash,
            |&at| entries[at as usize].0 == *key,
            |&at| hasher.hash_one(&entries[at as usize].0),
        );
        let at = match found {
            Entry::Occupied(found) => *found.get() as usize,
            Entry::Vacant(slot) => {
                let at = entries.len();
                // Pushed first: a panicking `clone` leaves no position pointing at nothing.
                entries.push((key.clone(), T::default()));
                // INVARIANT: a shard holds far fewer than 2^32 entries.
                slot.insert(at as u32);
                at
            }
        };
        update(&mut entries[at].1)
    }

    fn update_existing<R>(
        &self,
        hash: u64,
        key: &K,
        update: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let mut shard = self.shard(hash).write();
        let at = shard.position(hash, key)?;
        Some(update(&mut shard.entries[at].1))
    }

    fn drain_shard<E>(
        &self,
        index: usize,
        mut visit: impl FnMut(K, T) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut shard = self.shards[index].write();
        shard.positions.clear();
        for (key, value) in shard.entries.drain(..) {
            visit(key, value)?;
        }
        Ok(())
    }

    /// Removes every entry, keeping the capacity.
    fn clear(&mut self) {
        for shard in &mut *self.shards {
            let shard = shard.get_mut();
            shard.positions.clear();
            shard.entries.clear();
        }
    }

    fn for_each_entry<E>(&self, mut visit: impl FnMut(&K, &T) -> Result<(), E>) -> Result<(), E> {
        for shard in &*self.shards {
            for (key, value) in &shard.read().entries {
                visit(key, value)?;
            }
        }
        Ok(())
    }
}

/// The next number for a map's block, each given once: a thread's run of slots belongs to the
/// map and block whose number it was claimed under.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The thread's run of arena slots: (generation, next slot, end of the run).
    static RUN: Cell<(u64, usize, usize)> = const { Cell::new((0, 0, 0)) };
}

/// Slots a thread claims at a time, so that claiming one is rarely a write every thread shares:
/// at most this many, and about a sixteenth of a small block's arena (so that it is not taken
/// whole by one thread's first run). A power of two.
const RUN_LENGTH: usize = 64;

/// How far an insertion or a lookup probes the table before it turns to the overflow map.
const MAX_PROBES: usize = 64;

/// A table entry that sends every probe reaching it to the overflow map (see
/// [`ShardedMap::update`]).
const TO_OVERFLOW: u32 = u32::MAX;

/// A table entry's low bits hold the slot + 1, its high bits a tag from the key's hash.
const SLOT_BITS: u32 = 22;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// The most slots an arena has (more keys go to the overflow map).
const MAX_SLOTS: usize = SLOT_MASK as usize - 1;

/// The tag of a hash in a table entry (bits the table position does not use).
fn tag_of(hash: u64) -> u32 {
    (hash >> (64 - (32 - SLOT_BITS))) as u32
}

/// One key's place in the arena, under its own lock: the key (`None` while the slot is free, and
/// in a slot whose insertion lost the race for its table entry to the same key) and its value.
/// The key is written before the slot is published in the table.
struct Slot<K, T>(Mutex<(Option<K>, T)>);

/// The slots of one run.
type Chunk<K, T> = Box<[Slot<K, T>]>;

impl<K, T: Default> Slot<K, T> {
    fn new() -> Self {
        Self(Mutex::new((None, T::default())))
    }
}

/// A locked slot.
type Held<'a, K, T> = MutexGuard<'a, (Option<K>, T)>;

/// A concurrent map from `K` to `T` for one block's keys.
///
/// Each key lives in a slot of an arena, with its value, under the slot's lock; an
/// open-addressing table of atomic words (a tag of the key's hash and the slot) finds it. Looking
/// a key up only reads the table, so that two threads working on different keys share no cache
/// line they write. A new key takes the next slot of its thread's run of slots (the thread's
/// recent insertions lie together), is written into it, and is published with a
/// compare-and-swap on the table. The table and the arena are sized for the block
/// ([`clear_for`](Self::clear_for)); what does not fit goes to a [`LockedMap`].
pub(crate) struct ShardedMap<K, T> {
    hasher: FixedState,
    /// Per entry: 0 (empty), [`TO_OVERFLOW`], or a tag of the key's hash and the slot + 1
    /// (four bytes, so that the table of a large block stays in the core's cache).
    table: Box<[AtomicU32]>,
    /// The arena, one chunk per run of slots, each built by the thread that claims the run (a
    /// map built for a block costs no more than the slots its keys take).
    chunks: Box<[OnceLock<Chunk<K, T>>]>,
    /// Slots in the arena (the last chunk may be short), and log2 of a run's length.
    capacity: usize,
    run_bits: u32,
    /// The first slot of the next run to claim.
    next_run: CachePadded<AtomicUsize>,
    /// Identifies this map's current block for the threads' runs.
    generation: u64,
    overflow: LockedMap<K, T>,
    /// How many parts were drained to the end since the map was cleared: all of them leave
    /// every slot empty, and the next clearing need not look at the slots.
    drained: CachePadded<AtomicUsize>,
}

impl<K: Hash + Eq + Clone, T: Default> ShardedMap<K, T> {
    /// An empty map; [`clear_for`](Self::clear_for) sizes it.
    pub(crate) fn new() -> Self {
        Self {
            hasher: FixedState::default(),
            table: Box::new([]),
            chunks: Box::new([]),
            capacity: 0,
            run_bits: 0,
            next_run: CachePadded::new(AtomicUsize::new(0)),
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            overflow: LockedMap::new(),
            drained: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Slot `index` of the arena, if its run was claimed.
    fn slot(&self, index: usize) -> Option<&Slot<K, T>> {
        let chunk = self.chunks.get(index >> self.run_bits)?.get()?;
        chunk.get(index & ((1 << self.run_bits) - 1))
    }

    /// The positions `hash` probes in the table, in order.
    fn probes(&self, hash: u64) -> impl Iterator<Item = &AtomicU32> {
        let mask = self.table.len().wrapping_sub(1);
        (0..MAX_PROBES.min(self.table.len()))
            .map(move |probe| &self.table[(hash as usize).wrapping_add(probe) & mask])
    }

    /// `key`'s slot, locked, if table entry `word` (not empty, not [`TO_OVERFLOW`]) is it.
    fn holding(&self, word: u32, hash: u64, key: &K) -> Option<Held<'_, K, T>> {
        if word >> SLOT_BITS != tag_of(hash) {
            return None;
        }
        let held = self.slot((word & SLOT_MASK) as usize - 1)?.0.lock();
        (held.0.as_ref() == Some(key)).then_some(held)
    }

    /// `key`'s slot, locked; or `Err(true)` if the key may be in the overflow map, `Err(false)`
    /// if it is nowhere.
    fn find(&self, hash: u64, key: &K) -> Result<Held<'_, K, T>, bool> {
        for entry in self.probes(hash) {
            // `SeqCst` (as cheap as `Acquire` on x86 and ARM): see the fence in
            // `Scheduler::finish_execution`.
            match entry.load(Ordering::SeqCst) {
                0 => return Err(false),
                TO_OVERFLOW => return Err(true),
                word => {
                    if let Some(held) = self.holding(word, hash, key) {
                        return Ok(held);
                    }
                }
            }
        }
        Err(true)
    }

    /// Calls `read` on the value of `key`, under the key's lock.
    pub(crate) fn read<R>(&self, key: &K, read: impl FnOnce(&T) -> R) -> Option<R> {
        let hash = self.hasher.hash_one(key);
        match self.find(hash, key) {
            Ok(held) => Some(read(&held.1)),
            Err(true) => self.overflow.read(hash, key, read),
            Err(false) => None,
        }
    }

    /// Calls `update` on the value of `key` if there is one.
    pub(crate) fn update_existing<R>(
        &self,
        key: &K,
        update: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let hash = self.hasher.hash_one(key);
        match self.find(hash, key) {
            Ok(mut held) => Some(update(&mut held.1)),
            Err(true) => self.overflow.update_existing(hash, key, update),
            Err(false) => None,
        }
    }

    /// Calls `update` on the value of `key`, inserting a default value first if there is none.
    ///
    /// A new key goes into the first empty table entry of its probe sequence, which the
    /// insertion takes with a compare-and-swap: a thread that loses it to another key probes on,
    /// and one that loses it to the same key uses that key's slot. Entries never become empty
    /// again within a block, so two insertions of a key meet at the same entry. When the key's
    /// thread has no slot left, it marks that entry [`TO_OVERFLOW`] instead and the key goes to
    /// the overflow map, as do keys whose probe sequence is full: every later insertion or
    /// lookup of the key stops at the same mark or runs through the same full sequence.
    pub(crate) fn update<R>(&self, key: &K, update: impl FnOnce(&mut T) -> R) -> R {
        let hash = self.hasher.hash_one(key);
        // The slot this insertion claimed and wrote the key into, held from its claim to the
        // update (so that a new key costs one lock, not three): no other thread can wait for it
        // before it is published, so holding it while probing other slots cannot deadlock.
        // Freed if it is not published.
        let mut claimed: Option<(usize, Held<'_, K, T>)> = None;
        let abandon = |claimed: Option<(usize, Held<'_, K, T>)>| {
            if let Some((_, mut held)) = claimed {
                held.0 = None;
            }
        };
        for entry in self.probes(hash) {
            let mut word = entry.load(Ordering::Acquire);
            if word == 0 {
                if claimed.is_none() {
                    claimed = self.claim_slot(key);
                }
                let published = claimed.as_ref().map_or(TO_OVERFLOW, |(index, _)| {
                    // INVARIANT: index < MAX_SLOTS.
                    (tag_of(hash) << SLOT_BITS) | (*index as u32 + 1)
                });
                match entry.compare_exchange(0, published, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => match claimed {
                        Some((_, mut held)) => return update(&mut held.1),
                        None => return self.overflow.update(&self.hasher, hash, key, update),
                    },
                    Err(now) => word = now,
                }
            }
            if word == TO_OVERFLOW {
                abandon(claimed);
                return self.overflow.update(&self.hasher, hash, key, update);
            }
            if let Some(mut held) = self.holding(word, hash, key) {
                abandon(claimed);
                return update(&mut held.1);
            }
        }
        abandon(claimed);
        self.overflow.update(&self.hasher, hash, key, update)
    }

    /// A slot of the thread's run for this map's block, locked and holding `key` (claiming a
    /// new run, and building its chunk if an earlier block did not, when the thread has none);
    /// `None` when the arena is full.
    fn claim_slot(&self, key: &K) -> Option<(usize, Held<'_, K, T>)> {
        let index = RUN.with(|run| {
            let (generation, next, end) = run.get();
            if generation == self.generation && next < end {
                run.set((generation, next + 1, end));
                return Some(next);
            }
            // A full arena takes no more claims: no write every thread shares.
            if self.next_run.load(Ordering::Relaxed) >= self.capacity {
                return None;
            }
            let length = 1 << self.run_bits;
            let start = self.next_run.fetch_add(length, Ordering::Relaxed);
            if start >= self.capacity {
                return None;
            }
            let end = (start + length).min(self.capacity);
            self.chunks[start >> self.run_bits]
                .get_or_init(|| (start..end).map(|_| Slot::new()).collect());
            run.set((self.generation, start + 1, end));
            Some(start)
        })?;
        let mut held = self.slot(index)?.0.lock();
        // Written before the slot is published: a thread that finds the entry finds the key.
        held.0 = Some(key.clone());
        Some((index, held))
    }

    /// The slots of part `index` of the [`SHARD_COUNT`] parts of the arena's claimed runs.
    fn part(&self, index: usize) -> impl Iterator<Item = &Slot<K, T>> {
        let used = self.next_run.load(Ordering::Acquire).min(self.capacity);
        let chunks = used.div_ceil(1 << self.run_bits);
        self.chunks[index * chunks / SHARD_COUNT..(index + 1) * chunks / SHARD_COUNT]
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|chunk| chunk.iter())
    }

    /// Takes the keys and values of part `index` of the map (and of the overflow map), handing
    /// each to `visit` until it fails; the map keeps its memory for the next block.
    ///
    /// # Errors
    /// The first error of `visit`; the rest of the part is left unvisited.
    pub(crate) fn drain_shard<E>(
        &self,
        index: usize,
        mut visit: impl FnMut(K, T) -> Result<(), E>,
    ) -> Result<(), E> {
        for slot in self.part(index) {
            let mut held = slot.0.lock();
            if let Some(key) = held.0.take() {
                let value = std::mem::take(&mut held.1);
                drop(held);
                visit(key, value)?;
            }
        }
        self.overflow.drain_shard(index, visit)?;
        self.drained.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes every entry, keeping the memory, and makes room for about `capacity` keys.
    pub(crate) fn clear_for(&mut self, capacity: usize) {
        let capacity = capacity.min(MAX_SLOTS);
        if capacity > self.capacity {
            let run = (capacity / 16).clamp(1, RUN_LENGTH).next_power_of_two();
            self.run_bits = run.trailing_zeros();
            self.chunks = (0..capacity.div_ceil(run)).map(|_| OnceLock::new()).collect();
            self.capacity = capacity;
            // At most two thirds full when every slot is used.
            let entries = (capacity * 3 / 2).next_power_of_two();
            self.table = (0..entries).map(|_| AtomicU32::new(0)).collect();
        } else {
            // Drained to the end, every slot is empty already.
            if *self.drained.get_mut() < SHARD_COUNT {
                self.clear_slots();
            }
            for entry in &mut *self.table {
                *entry.get_mut() = 0;
            }
        }
        *self.drained.get_mut() = 0;
        *self.next_run.get_mut() = 0;
        self.generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        self.overflow.clear();
    }

    /// Empties the slots of the claimed runs.
    fn clear_slots(&mut self) {
        let used = (*self.next_run.get_mut()).min(self.capacity);
        for chunk in &mut self.chunks[..used.div_ceil(1 << self.run_bits)] {
            for slot in chunk.get_mut().into_iter().flat_map(|chunk| chunk.iter_mut()) {
                // A slot without a key has its default value (drained, or never published).
                let slot = slot.0.get_mut();
                if slot.0.is_some() {
                    *slot = (None, T::default());
                }
            }
        }
    }

    /// Calls `visit` on every entry, until it fails.
    ///
    /// # Errors
    /// The first error of `visit`.
    pub(crate) fn for_each_entry<E>(
        &self,
        mut visit: impl FnMut(&K, &T) -> Result<(), E>,
    ) -> Result<(), E> {
        for index in 0..SHARD_COUNT {
            for slot in self.part(index) {
                let held = slot.0.lock();
                if let Some(key) = &held.0 {
                    visit(key, &held.1)?;
                }
            }
        }
        self.overflow.for_each_entry(visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// That `map` holds exactly `expected`: each key read back, and each key once in a walk.
    fn check(
        map: &ShardedMap<u64, Vec<u64>>,
        expected: &std::collections::BTreeMap<u64, Vec<u64>>,
    ) {
        for (key, values) in expected {
            assert_eq!(map.read(key, Clone::clone).as_ref(), Some(values), "key {key}");
        }
        let mut seen = std::collections::BTreeMap::new();
        map.for_each_entry(|key, values| {
            assert!(seen.insert(*key, values.clone()).is_none(), "key {key} twice");
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(&seen, expected);
    }

    #[test]
    fn reads_updates_and_drains_with_keys_in_the_table_and_in_the_overflow() {
        // Unsized (everything in the overflow map), room for a few keys, room for all.
        for capacity in [None, Some(8), Some(100), Some(5000)] {
            let mut map: ShardedMap<u64, Vec<u64>> = ShardedMap::new();
            if let Some(capacity) = capacity {
                map.clear_for(capacity);
            }
            let mut expected = std::collections::BTreeMap::new();
            for key in 0..1000 {
                map.update(&key, |values| values.push(key * 2));
                expected.insert(key, vec![key * 2]);
            }
            map.update(&7, |values| values.push(1));
            expected.get_mut(&7).unwrap().push(1);
            check(&map, &expected);
            assert_eq!(map.read(&5000, Clone::clone), None);
            assert_eq!(map.update_existing(&5000, |values| values.len()), None);
            assert_eq!(map.update_existing(&3, |values| values.len()), Some(1));
            let mut drained = std::collections::BTreeMap::new();
            for index in 0..SHARD_COUNT {
                map.drain_shard(index, |key, values| {
                    assert!(drained.insert(key, values).is_none(), "drained twice");
                    Ok::<(), ()>(())
                })
                .unwrap();
            }
            assert_eq!(drained, expected, "capacity {capacity:?}");
            map.update(&1, |values| values.push(1));
            map.clear_for(10);
            assert_eq!(map.read(&1, Clone::clone), None);
            assert_eq!(map.read(&999, Clone::clone), None);
            map.update(&1, |values| values.push(5));
            check(&map, &[(1, vec![5])].into_iter().collect());
        }
    }

    #[test]
    fn threads_inserting_the_same_keys_at_once_share_one_value_per_key() {
        // Four threads insert the same keys, in the same order (so that they race for the same
        // table entries) or in different ones, into maps with room for some of them: each key
        // must end with one value holding every thread's push, wherever it went (a table slot,
        // or the overflow map once the arena or a probe sequence is full).
        const KEYS: u64 = 2000;
        for round in 0..40u64 {
            let capacity = [64, 700, 1500, 4000][(round % 4) as usize];
            let same_order = round % 8 < 4;
            let mut map: ShardedMap<u64, Vec<u64>> = ShardedMap::new();
            map.clear_for(capacity);
            let start = std::sync::Barrier::new(4);
            std::thread::scope(|scope| {
                for thread in 0..4u64 {
                    let (map, start) = (&map, &start);
                    scope.spawn(move || {
                        start.wait();
                        for step in 0..KEYS {
                            // A permutation of the keys: the multiplier is prime to their count.
                            let key = if same_order {
                                step
                            } else {
                                (step * [1, 3, 7, 9][thread as usize] + thread * 7) % KEYS
                            };
                            map.update(&key, |values| values.push(thread));
                        }
                    });
                }
            });
            let expected = (0..KEYS)
                .map(|key| {
                    let values = map.read(&key, Clone::clone).unwrap();
                    let mut sorted = values.clone();
                    sorted.sort_unstable();
                    assert_eq!(sorted, [0, 1, 2, 3], "key {key}, capacity {capacity}");
                    (key, values)
                })
                .collect();
            // And each key once in the whole map.
            check(&map, &expected);
        }
    }
}
