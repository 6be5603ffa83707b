//! A concurrent hash map split into a fixed number of independently locked shards.
//!
//! The multi-version memory needs little from its map: short reads and updates of one key under
//! a lock, and, once a block is done, each shard taken whole so that worker threads can finalize
//! and free the shards in parallel. Owning the shards makes that last step possible.
//!
//! Each shard keeps its entries in a vector, in the order they were inserted, and a hash table
//! of positions in it (as `indexmap` does). Executions run between the map's operations and push
//! its lines out of the cache, so what counts is how many lines an operation touches: the table
//! of four-byte positions stays small enough to be cached, an insertion appends where the
//! previous one wrote, and finalizing a shard walks its vector from start to end.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use foldhash::fast::FixedState;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use parking_lot::RwLock;

/// The number of shards: enough that two to eight threads rarely meet on one lock, and that
/// finalization splits evenly.
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

/// Bits of the filter of keys ever inserted: 2^16, so that a block's written keys rarely collide.
const FILTER_BITS: usize = 1 << 16;

/// A concurrent map from `K` to `T`.
///
/// Most keys a block reads are never written in it (a token contract's code and header, the
/// senders' balances of other contracts). A filter of the keys ever inserted (a one-hash Bloom
/// filter) lets a read of such a key return without taking any lock, so threads reading the same
/// popular key do not fight over its shard's lock word.
pub(crate) struct ShardedMap<K, T> {
    hasher: FixedState,
    shards: Box<[Shard<K, T>]>,
    inserted: Box<[AtomicU64]>,
}

impl<K: Hash + Eq + Clone, T: Default> ShardedMap<K, T> {
    /// An empty map; [`clear_for`](Self::clear_for) sizes it.
    pub(crate) fn new() -> Self {
        Self {
            hasher: FixedState::default(),
            shards: (0..SHARD_COUNT)
                .map(|_| {
                    CachePadded::new(RwLock::new(Entries {
                        positions: HashTable::new(),
                        entries: Vec::new(),
                    }))
                })
                .collect(),
            inserted: (0..FILTER_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The filter word and bit of a hash (from bits the table and the shard choice do not use).
    fn filter_bit(&self, hash: u64) -> (&AtomicU64, u64) {
        let bit = (hash >> 16) as usize % FILTER_BITS;
        (&self.inserted[bit / 64], 1 << (bit % 64))
    }

    fn locate(&self, key: &K) -> (u64, &RwLock<Entries<K, T>>) {
        let hash = self.hasher.hash_one(key);
        // The table itself uses the low bits (bucket) and the top seven bits (tag) of the hash:
        // pick the shard from bits neither uses.
        (hash, &self.shards[(hash >> 40) as usize % SHARD_COUNT])
    }

    /// Calls `read` on the value of `key`, under the shard's read lock.
    ///
    /// A key never inserted is answered without locking. Ordering: an insertion sets its filter
    /// bit before it takes the shard lock, so a reader that happens after the insertion (through
    /// the scheduler's sequentially consistent indices) sees the bit and then the entry.
    pub(crate) fn read<R>(&self, key: &K, read: impl FnOnce(&T) -> R) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let (word, bit) = self.filter_bit(hash);
        if word.load(Ordering::Acquire) & bit == 0 {
            return None;
        }
        let shard = shard.read();
        shard.position(hash, key).map(|at| read(&shard.entries[at].1))
    }

    /// Calls `update` on the value of `key`, inserting a default value first if there is none.
    pub(crate) fn update<R>(&self, key: &K, update: impl FnOnce(&mut T) -> R) -> R {
        let (hash, shard) = self.locate(key);
        let (word, bit) = self.filter_bit(hash);
        if word.load(Ordering::Relaxed) & bit == 0 {
            word.fetch_or(bit, Ordering::SeqCst);
        }
        let mut shard = shard.write();
        let Entries { positions, entries } = &mut *shard;
        let hasher = &self.hasher;
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

    /// Calls `update` on the value of `key` if there is one.
    pub(crate) fn update_existing<R>(
        &self,
        key: &K,
        update: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let mut shard = shard.write();
        let at = shard.position(hash, key)?;
        Some(update(&mut shard.entries[at].1))
    }

    /// Empties shard `index`, handing each entry to `visit` until it fails; the shard keeps its
    /// capacity for the next block.
    ///
    /// # Errors
    /// The first error of `visit`; the rest of the shard is dropped unvisited.
    pub(crate) fn drain_shard<E>(
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

    /// Removes every entry, keeping the capacity, and makes room for about `capacity` keys:
    /// growing a shard later would happen under its lock, with other threads waiting.
    pub(crate) fn clear_for(&mut self, capacity: usize) {
        let per_shard = capacity / SHARD_COUNT + 1;
        for shard in &mut *self.shards {
            let shard = shard.get_mut();
            shard.positions.clear();
            shard.entries.clear();
            // Both are empty: nothing to rehash.
            shard.positions.reserve(per_shard, |_| 0);
            shard.entries.reserve(per_shard);
        }
        for word in &mut *self.inserted {
            *word.get_mut() = 0;
        }
    }

    /// Calls `visit` on every entry, shard after shard, until it fails.
    ///
    /// # Errors
    /// The first error of `visit`.
    pub(crate) fn for_each_entry<E>(
        &self,
        mut visit: impl FnMut(&K, &T) -> Result<(), E>,
    ) -> Result<(), E> {
        for shard in &*self.shards {
            for (key, value) in &shard.read().entries {
                visit(key, value)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_updates_and_drains_shards() {
        let map: ShardedMap<u64, Vec<u64>> = ShardedMap::new();
        for key in 0..1000 {
            map.update(&key, |values| values.push(key * 2));
        }
        map.update(&7, |values| values.push(1));
        assert_eq!(map.read(&7, Clone::clone), Some(vec![14, 1]));
        assert_eq!(map.read(&5000, Clone::clone), None);
        assert_eq!(map.update_existing(&5000, |values| values.len()), None);
        assert_eq!(map.update_existing(&3, |values| values.len()), Some(1));
        let mut total = 0;
        for index in 0..SHARD_COUNT {
            map.drain_shard(index, |_, _| {
                total += 1;
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        assert_eq!(total, 1000);
        assert_eq!(map.read(&7, Clone::clone), None, "drained shards are empty");
        let mut map = map;
        map.update(&1, |values| values.push(1));
        map.clear_for(10);
        assert_eq!(map.read(&1, Clone::clone), None);
    }
}
