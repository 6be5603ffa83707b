//! The node's database: RocksDB under the data directory.
//!
//! Column families: `state` (the current state: [`StateKey::encode`] → [`StateValue::encode`]),
//! `blocks` (number, big-endian → the block), `block_hashes` (hash → number), `transactions`
//! (hash → the transaction with its receipt), `merkle` (the state tree's
//! nodes: [`Position::encode`] → [`Node::encode`]), `pending` (hash → an accepted transaction
//! not yet in a block, as signed) and `meta` (the head). A block is committed in one write batch
//! (its state updates and the tree nodes they change included), synced to disk, which also
//! removes its transactions from `pending`: after a crash the database holds every block that was reported committed, nothing
//! of a block that was not, and every transaction that was acknowledged.
//!
//! The state of recent blocks: each commit also writes, in `history`, the value every key it
//! changes had before the block (keyed by the key's commitment hash and the block's number), so
//! that the state after any of the last [`STATE_HISTORY_BLOCKS`] blocks (or as many as the node
//! is set to keep, all of them for an archive node) reads back ([`StateAt::back_to`]) as a geth
//! full node serves its last 128; older entries are dropped as RocksDB compacts the family.

use std::path::Path;
use std::sync::Arc;

use duet_block_stm::{Storage, StorageError};
use duet_types::{Address, Bytes, StateKey, StateValue, B256, KECCAK256_EMPTY, U256};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

use crate::block::{Block, TransactionRecord};
use crate::merkle::{Node, Nodes, Position};

const STATE: &str = "state";
const BLOCKS: &str = "blocks";
const BLOCK_HASHES: &str = "block_hashes";
const TRANSACTIONS: &str = "transactions";
const META: &str = "meta";
const PENDING: &str = "pending";
const MERKLE: &str = "merkle";
const HISTORY: &str = "history";
/// The dropped transactions' notes ([`crate::dropped`]), by hash.
const DROPPED: &str = "dropped";
const HEAD: &[u8] = b"head";
/// The `meta` entry holding the first block whose commit wrote history (databases of earlier
/// versions have none for the blocks before it).
const HISTORY_SINCE: &[u8] = b"history_since";
/// The `meta` entry holding the last block that published Move modules.
const CODE_CHANGED: &[u8] = b"code_changed";
/// The `meta` entry holding the oldest readable block at the last commit: compactions may have
/// dropped the history of the blocks before it, whatever window a later process keeps.
const HISTORY_FLOOR: &[u8] = b"history_floor";

/// The `meta` entry holding the version of the layout of the database's records.
const FORMAT_KEY: &[u8] = b"format";
/// The `meta` entry holding the chain id of the database's blocks.
const CHAIN_ID: &[u8] = b"chain_id";
/// The version of the records' layout this build reads and writes: a build that changes how a
/// record is laid out, or how blocks run (so that its replays and traces of the blocks an older
/// build made would not match their receipts), raises it, so that a datadir is never misread by
/// a build of another. 2: blocks carry their transactions' and receipts' roots (and their hash
/// commits to them), `BLOCKHASH` answers block hashes (it answered zero),
/// `account::sequence_number` is the next transaction's nonce, Move functions returning values
/// without `drop` are refused, and calls of a module's own functions count their acquires. 3: a
/// block's hash is Ethereum's, keccak256 of its RLP header ([`crate::block::Block::header`]);
/// Move calls into the EVM forward gas as `CALL` does (EIP-150, the stipend) and fail rather
/// than run out of gas; `String` arguments are taken (UTF-8). 4: a block records its size;
/// `bcs::to_bytes` pays for its layout's nodes. 5: a module a call or a publication loads
/// costs 1 gas per 2 bytes of it (it cost 1 per 8).
pub const FORMAT: u64 = 5;

/// How many blocks before the head the state of is kept: queries may name any of them.
pub const STATE_HISTORY_BLOCKS: u64 = 128;
/// The block cache all column families share.
const BLOCK_CACHE_BYTES: usize = 64 << 20;

/// The size of a family's memtable.
const WRITE_BUFFER_BYTES: usize = 16 << 20;

/// Every column family but the default one.
const FAMILIES: [&str; 9] =
    [STATE, BLOCKS, BLOCK_HASHES, TRANSACTIONS, META, PENDING, MERKLE, HISTORY, DROPPED];

/// The nonce and code hash an account header `value` holds (none: nonce 0, no code).
pub(crate) fn header_of(value: Option<&StateValue>) -> (u64, B256) {
    match value {
        Some(&StateValue::Account { nonce, code_hash }) => (nonce, code_hash),
        _ => (0, KECCAK256_EMPTY),
    }
}

/// A `history` entry's key: the state key's commitment hash, then the block's number
/// (big-endian), so that a key's entries lie together in block order.
fn history_key(key: &StateKey, block: u64) -> [u8; 40] {
    history_key_of(key.commitment_key(), block)
}

/// [`history_key`] of the key whose commitment hash is `commitment`.
fn history_key_of(commitment: B256, block: u64) -> [u8; 40] {
    let mut out = [0; 40];
    out[..32].copy_from_slice(commitment.as_slice());
    out[32..].copy_from_slice(&block.to_be_bytes());
    out
}

/// The block of a `history` entry's key.
fn history_block(key: &[u8]) -> Option<u64> {
    let number: [u8; 8] = key.get(32..40)?.try_into().ok()?;
    Some(u64::from_be_bytes(number))
}

/// The first byte of a block or transaction record in BCS; records that begin otherwise are
/// JSON (`{`), as databases of earlier versions hold them. BCS takes less than half the space
/// and time, which counts when a block carries tens of thousands of transactions.
const BCS_RECORD: u8 = 0;

/// A block or transaction record as stored.
fn encode_record<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![BCS_RECORD];
    bcs::serialize_into(&mut bytes, value).expect("blocks and transactions serialize");
    bytes
}

/// The record [`encode_record`] (or an earlier version, in JSON) stored.
fn decode_record<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&BCS_RECORD, rest)) => bcs::from_bytes(rest).map_err(|error| error.to_string()),
        _ => serde_json::from_slice(bytes).map_err(|error| error.to_string()),
    }
}

/// What RocksDB holds in memory, in bytes ([`Store::memory`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatabaseMemory {
    /// Memtables, active and waiting to be flushed.
    pub memtables: u64,
    /// Table readers: the index and filter blocks of open SST files.
    pub table_readers: u64,
    /// The block cache.
    pub block_cache: u64,
}

/// Why the database failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB failed.
    #[error("database: {0}")]
    Db(#[from] rocksdb::Error),
    /// The database holds bytes this node cannot read: it was written by something else.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// A write failed: the error, as text (shared by every transaction of a failed batch).
    #[error("the database failed to write: {0}")]
    WriteFailed(String),
    /// The database belongs to another chain, or to a build whose records this one cannot read.
    #[error("this datadir cannot be used: {0}")]
    Incompatible(String),
}

/// The node's RocksDB database.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    /// How many blocks before the head the state of is kept.
    history_blocks: u64,
    /// The first block whose commit wrote history.
    history_since: u64,
    /// The last block that published Move modules, as recorded when the database was opened.
    code_changed: Option<u64>,
    /// The oldest readable block when the database was last written (see [`HISTORY_FLOOR`]).
    history_floor: u64,
    /// Which `history` entries compactions may drop.
    history_window: Arc<HistoryWindow>,
    /// Recently read and written state, in front of the `state` column family.
    cache: Arc<StateCache>,
    /// RocksDB's block cache, which every column family reads through.
    block_cache: rocksdb::Cache,
    /// The arrival number the next accepted transaction's record gets (see [`PendingRecord`]).
    next_arrival: Arc<std::sync::atomic::AtomicU64>,
    /// Tests: whether synced writes fail, as on a failing disk.
    #[cfg(test)]
    failing: Arc<std::sync::atomic::AtomicBool>,
}

/// State entries (or their absence) as RocksDB holds them, so that executing a block and checking
/// incoming transactions read memory instead of RocksDB for the state they keep touching.
///
/// A commit puts its updates in after its batch is written. A read that missed goes to RocksDB
/// and puts what it found in only if no commit happened in between: otherwise it could put back
/// a value older than the commit's.
struct StateCache {
    shards: Box<[CacheShard]>,
    /// Picks a key's shard: fast, and seeded at random, so that keys chosen to meet in one shard
    /// cannot be computed ahead (what they would gain is one lock, not a slow map).
    hasher: foldhash::fast::RandomState,
    /// Twice the commits so far (this process), and one more while one writes: odd during a
    /// commit, from before its write to after the cache has its updates.
    commits: std::sync::atomic::AtomicU64,
}

/// Marks a commit in [`StateCache::commits`] from its start to its end, however it ends.
pub(crate) struct CommitMark<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for CommitMark<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Part of the state cache: entries by key, `None` for a key known to be absent.
type CacheShard = parking_lot::Mutex<CacheEntries>;

/// One shard's entries and about how many bytes they take.
#[derive(Default)]
struct CacheEntries {
    /// The standard hasher, keyed at random: keys are chosen by users, who must not be able to
    /// make them collide.
    entries: std::collections::HashMap<StateKey, Option<StateValue>>,
    bytes: usize,
}

impl CacheEntries {
    fn insert(&mut self, key: &StateKey, value: Option<StateValue>) {
        let added = entry_bytes(key, value.as_ref());
        if self.bytes + added > CACHE_SHARD_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        if let Some(old) = self.entries.insert(key.clone(), value) {
            self.bytes -= entry_bytes(key, old.as_ref());
        }
        self.bytes += added;
    }
}

/// About the memory a map's entry of `key` and `value` takes: a fixed cost per entry, and what
/// the key and value hold outside it (a module's name, a struct tag, bytes).
pub(crate) fn entry_bytes(key: &StateKey, value: Option<&StateValue>) -> usize {
    let key_bytes = match key {
        StateKey::MoveModule { name, .. } => name.len(),
        StateKey::MoveResource { struct_tag, .. } => struct_tag.len(),
        _ => 0,
    };
    let value_bytes = match value {
        Some(StateValue::Bytes(bytes)) => bytes.len(),
        _ => 0,
    };
    160 + key_bytes + value_bytes
}

/// Shards of the state cache: few enough to clear cheaply, enough that threads rarely meet.
const CACHE_SHARDS: usize = 16;

/// Bytes (roughly: keys, values and bookkeeping) a shard holds before it is emptied: 256 MiB in
/// all.
const CACHE_SHARD_BYTES: usize = (256 << 20) / CACHE_SHARDS;

impl StateCache {
    fn new() -> Self {
        Self {
            shards: (0..CACHE_SHARDS).map(|_| parking_lot::Mutex::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            commits: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &StateKey) -> &CacheShard {
        use std::hash::BuildHasher;
        &self.shards[self.hasher.hash_one(key) as usize % CACHE_SHARDS]
    }

    /// The cached entry of `key`: `Err(())` if there is none.
    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, ()> {
        self.shard(key).lock().entries.get(key).cloned().ok_or(())
    }

    /// Puts in what a read found, unless a commit ran while it read (`commits_before`: the
    /// count read before the RocksDB read; odd, a commit was running).
    fn fill(&self, key: &StateKey, value: Option<StateValue>, commits_before: u64) {
        let mut shard = self.shard(key).lock();
        if self.unchanged_since(commits_before) {
            shard.insert(key, value);
        }
    }

    /// Whether no commit ran since the count was `before` (even: none was running then).
    fn unchanged_since(&self, before: u64) -> bool {
        before % 2 == 0 && self.commits.load(std::sync::atomic::Ordering::Acquire) == before
    }

    /// Marks the start of a commit; the mark's end is when it is dropped.
    fn start_commit(&self) -> CommitMark<'_> {
        self.commits.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        CommitMark(&self.commits)
    }

    /// Puts in a committed block's updates.
    fn committed(&self, updates: &[(StateKey, Option<StateValue>)]) {
        for (key, value) in updates {
            self.shard(key).lock().insert(key, value.clone());
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Store").field("path", &self.db.path()).finish_non_exhaustive()
    }
}

/// A block's changes, committed together.
pub struct BlockCommit<'a> {
    /// The block.
    pub block: &'a Block,
    /// Its transactions with their receipts.
    pub transactions: &'a [TransactionRecord],
    /// The state updates (`None`: deleted).
    pub state: &'a [(StateKey, Option<StateValue>)],
    /// Accepted transactions that leave the mempool with this block (included, or dropped).
    pub settled: &'a [B256],
    /// The state tree's node writes (`None`: delete) that the state updates make.
    pub nodes: &'a std::collections::BTreeMap<Position, Option<Node>>,
}

#[cfg(test)]
impl<'a> BlockCommit<'a> {
    /// A commit of `block` with `state` and nothing else: no transactions, no tree nodes.
    pub(crate) fn of_state(block: &'a Block, state: &'a [(StateKey, Option<StateValue>)]) -> Self {
        static NO_NODES: std::collections::BTreeMap<Position, Option<Node>> =
            std::collections::BTreeMap::new();
        Self { block, transactions: &[], state, settled: &[], nodes: &NO_NODES }
    }
}

/// What the producer knows of a block beyond its [`BlockCommit`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CommitNotes<'a> {
    /// The values the state updates replace, in their order, read before the commit (which
    /// reads them itself otherwise).
    pub previous: Option<&'a [Option<StateValue>]>,
    /// The state tree's leaves of the state updates ([`crate::merkle::leaves`]), in their
    /// order: their commitment keys key the history too (the commit hashes each key itself
    /// otherwise).
    pub leaves: Option<&'a [(B256, Option<B256>)]>,
    /// Whether the block publishes Move modules ([`Store::last_code_change`]).
    pub publishes: bool,
}

/// A state entry as stored: its key's encoding and its value.
pub type StateEntry = (Vec<u8>, StateValue);

/// One page of a listing ([`Store::state_with_prefix`]).
#[derive(Debug)]
pub struct Page {
    /// Its entries, in key order.
    pub entries: Vec<StateEntry>,
    /// Whether the listing has entries after them.
    pub more: bool,
}

/// The most entries, and bytes of keys and values, one listing
/// ([`Store::state_with_prefix`]) reads.
#[derive(Clone, Copy, Debug)]
pub struct Listed {
    /// Entries.
    pub entries: usize,
    /// Bytes of their keys and values, as stored.
    pub bytes: usize,
}

impl Store {
    /// Opens (or creates) the database in `path`.
    ///
    /// # Errors
    /// RocksDB could not open it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_keeping(path, STATE_HISTORY_BLOCKS)
    }

    /// [`open`](Self::open), keeping the state of `history_blocks` blocks before the head.
    ///
    /// # Errors
    /// RocksDB could not open it, or it is corrupt.
    pub fn open_keeping(path: &Path, history_blocks: u64) -> Result<Self, StoreError> {
        Self::open_checked(path, history_blocks, None)
    }

    /// [`open_keeping`](Self::open_keeping) for a node of chain `chain_id`: a datadir that holds
    /// another chain is refused before anything of it is written (its history window, its
    /// history floor), as one of another format is.
    ///
    /// # Errors
    /// As [`open_keeping`](Self::open_keeping), and [`StoreError::Incompatible`] for another
    /// chain's datadir.
    pub fn open_for_chain(
        path: &Path,
        history_blocks: u64,
        chain_id: u64,
    ) -> Result<Self, StoreError> {
        Self::open_checked(path, history_blocks, Some(chain_id))
    }

    fn open_checked(
        path: &Path,
        history_blocks: u64,
        chain_id: Option<u64>,
    ) -> Result<Self, StoreError> {
        let history_window = Arc::new(HistoryWindow::default());
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // The pending family's memtable is a vector (below), which takes one writer at a time;
        // RocksDB still groups concurrent writes into one log write and one sync.
        options.set_allow_concurrent_memtable_write(false);
        // Point reads, many of keys that are absent (new storage slots, empty tree positions):
        // a bloom filter per table file answers those mostly without reading its data blocks,
        // and one block cache serves every family.
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES)?;
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_block_cache(&cache);
        let families = FAMILIES.map(|name| {
            let mut family = Options::default();
            family.set_block_based_table_factory(&table);
            family.set_memtable_whole_key_filtering(true);
            family.set_memtable_prefix_bloom_ratio(0.02);
            family.set_write_buffer_size(WRITE_BUFFER_BYTES);
            family.set_max_write_buffer_number(4);
            if name == PENDING {
                // Written for every accepted transaction and deleted at its inclusion, read only
                // at restart: appending beats keeping a sorted skip list (sorted when flushed).
                family.set_memtable_factory(rocksdb::MemtableFactory::Vector);
            }
            if name == HISTORY {
                // Entries no read needs go as the family compacts. (RocksDB's compaction
                // filters see entries that snapshots still see: reads pin their blocks.)
                let window = Arc::clone(&history_window);
                family.set_compaction_filter(
                    "duet_history_window",
                    move |_, key: &[u8], _: &[u8]| match history_block(key) {
                        Some(block) if window.prunable(block) => {
                            rocksdb::compaction_filter::Decision::Remove
                        }
                        _ => rocksdb::compaction_filter::Decision::Keep,
                    },
                );
            }
            ColumnFamilyDescriptor::new(name, family)
        });
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let mut store = Self {
            db: Arc::new(db),
            history_blocks,
            history_since: 0,
            history_floor: 0,
            code_changed: None,
            history_window,
            cache: Arc::new(StateCache::new()),
            block_cache: cache,
            next_arrival: Arc::default(),
            #[cfg(test)]
            failing: Arc::default(),
        };
        // A datadir of another format, or another chain's, is refused before anything of it is
        // read or written.
        let format = store.format()?;
        if let Some(chain_id) = chain_id {
            store.refuse_unmarked_blocks(format)?;
            store.check_chain(chain_id)?;
        }
        // Arrivals go on from the last record's.
        let next_arrival = store.last_arrival()?.map_or(0, |last| last.saturating_add(1));
        store.next_arrival = Arc::new(next_arrival.into());
        let head = store.head()?;
        store.history_since =
            if let Some(since) = store.number(META, HISTORY_SINCE, "history start")? {
                since
            } else {
                // A new database records history from its first block; one of an earlier version
                // from its next.
                let since = head.map_or(0, |head| head + 1);
                let mut batch = WriteBatch::default();
                batch.put_cf(store.family(META), HISTORY_SINCE, since.to_be_bytes());
                store.write_synced(batch)?;
                since
            };
        // Without a floor: written by a version that kept 128 blocks and recorded none.
        store.history_floor = store
            .number(META, HISTORY_FLOOR, "history floor")?
            .unwrap_or_else(|| head.map_or(0, |head| head.saturating_sub(STATE_HISTORY_BLOCKS)));
        store.code_changed = store.number(META, CODE_CHANGED, "last code change")?;
        if let Some(head) = head {
            // A shorter window than the last process kept lets compactions drop history from
            // now on: the floor is on disk before they can, or a later process with a longer
            // window would read back values that are gone.
            let start = *store.readable_blocks(head).start();
            if start > store.history_floor {
                let mut batch = WriteBatch::default();
                batch.put_cf(store.family(META), HISTORY_FLOOR, start.to_be_bytes());
                store.write_synced(batch)?;
                store.history_floor = start;
            }
            store.note_head(head);
        }
        Ok(store)
    }

    /// The blocks whose state can be read with the head at `head`: the last
    /// [`history_blocks`](Self::history_blocks) before it (those with history; by default
    /// [`STATE_HISTORY_BLOCKS`]), and the head.
    #[must_use]
    pub fn readable_blocks(&self, head: u64) -> std::ops::RangeInclusive<u64> {
        // The state after the block before the first with history is that block's old values.
        let oldest = head
            .saturating_sub(self.history_blocks)
            .max(self.history_since.saturating_sub(1))
            .max(self.history_floor);
        oldest.min(head)..=head
    }

    /// Lets compactions drop the history no query can read once `head` is the head.
    fn note_head(&self, head: u64) {
        self.history_window.set_oldest(*self.readable_blocks(head).start());
    }

    /// How many blocks before the head the state of is kept.
    #[must_use]
    pub fn history_blocks(&self) -> u64 {
        self.history_blocks
    }

    /// The last block that published Move modules when the database was opened, if it is
    /// recorded (databases of earlier versions do not record it).
    #[must_use]
    pub fn last_code_change(&self) -> Option<u64> {
        self.code_changed
    }

    /// The current values of `updates`' keys, in their order: what a commit of them replaces.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    pub fn previous_values(
        &self,
        updates: &[(StateKey, Option<StateValue>)],
    ) -> Result<Vec<Option<StateValue>>, StoreError> {
        updates.iter().map(|(key, _)| self.get(key)).collect()
    }

    /// What RocksDB holds in memory, in bytes: memtables and table readers (index and filter
    /// blocks outside the block cache) summed over the column families, and the block cache they
    /// share.
    #[must_use]
    pub fn memory(&self) -> DatabaseMemory {
        let sum = |property: &str| -> u64 {
            FAMILIES
                .iter()
                .filter_map(|name| {
                    self.db.property_int_value_cf(self.family(name), property).ok().flatten()
                })
                .sum()
        };
        DatabaseMemory {
            memtables: sum("rocksdb.cur-size-all-mem-tables"),
            table_readers: sum("rocksdb.estimate-table-readers-mem"),
            block_cache: self.block_cache.get_usage() as u64,
        }
    }

    /// Tests: makes every synced write fail from now on (`true`), as on a failing disk, or work
    /// again.
    #[cfg(test)]
    pub(crate) fn fail_writes(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes `batch` atomically, synced to disk before returning.
    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        #[cfg(test)]
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::WriteFailed("the disk failed (a test's)".to_owned()));
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.write_opt(batch, &options)?)
    }

    fn family(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("every column family is created on open")
    }

    /// The number of the last committed block, if any.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    pub fn head(&self) -> Result<Option<u64>, StoreError> {
        self.number(META, HEAD, "head")
    }

    /// The block number (big-endian) stored under `key` in `family`, if any (`what` names it
    /// if it is corrupt).
    fn number(&self, family: &str, key: &[u8], what: &str) -> Result<Option<u64>, StoreError> {
        self.db
            .get_pinned_cf(self.family(family), key)?
            .map(|bytes| {
                let bytes: [u8; 8] = bytes.as_ref().try_into().map_err(|_| corrupt(what))?;
                Ok(u64::from_be_bytes(bytes))
            })
            .transpose()
    }

    /// The database's format mark, if it has one, which must be this build's [`FORMAT`].
    ///
    /// # Errors
    /// The database failed, or is of another format ([`StoreError::Incompatible`]).
    fn format(&self) -> Result<Option<u64>, StoreError> {
        let format = self.number(META, FORMAT_KEY, "format")?;
        if let Some(format) = format.filter(|format| *format != FORMAT) {
            return Err(StoreError::Incompatible(format!(
                "its records are of format {format}, and this build reads format {FORMAT}: give \
                 another datadir, or remove this one to start its chain afresh"
            )));
        }
        Ok(format)
    }

    /// Refuses blocks without a `format` mark: they were written before marks, in a layout or
    /// by rules this build does not share (a datadir without blocks takes the marks).
    fn refuse_unmarked_blocks(&self, format: Option<u64>) -> Result<(), StoreError> {
        if format.is_none() && self.head()?.is_some() {
            return Err(StoreError::Incompatible(format!(
                "its records are of a format from before format marks, and this build reads \
                 format {FORMAT}: give another datadir, or remove this one to start its chain \
                 afresh"
            )));
        }
        Ok(())
    }

    /// Checks that the database is of chain `chain_id` and of this build's [`FORMAT`], and
    /// marks it so if it holds no such marks yet (a new datadir, or one of a build before them),
    /// in one synced write.
    ///
    /// # Errors
    /// The database failed, belongs to another chain, or is of another format
    /// ([`StoreError::Incompatible`], saying which).
    pub fn claim_for_chain(&self, chain_id: u64) -> Result<(), StoreError> {
        let format = self.format()?;
        self.refuse_unmarked_blocks(format)?;
        match self.check_chain(chain_id)? {
            Some(_) if format.is_some() => Ok(()),
            _ => {
                let mut batch = WriteBatch::default();
                batch.put_cf(self.family(META), FORMAT_KEY, FORMAT.to_be_bytes());
                batch.put_cf(self.family(META), CHAIN_ID, chain_id.to_be_bytes());
                self.write_synced(batch)
            }
        }
    }

    /// The chain id the datadir is marked with, if any; refused if it is not `chain_id`.
    fn check_chain(&self, chain_id: u64) -> Result<Option<u64>, StoreError> {
        match self.number(META, CHAIN_ID, "chain id")? {
            Some(stored) if stored != chain_id => Err(StoreError::Incompatible(format!(
                "it holds the blocks of chain {stored}, and the node was started with chain id \
                 {chain_id}: start it with chain id {stored}, or give another datadir"
            ))),
            stored => Ok(stored),
        }
    }

    /// Block `number`.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    pub fn block(&self, number: u64) -> Result<Option<Block>, StoreError> {
        self.record(BLOCKS, &number.to_be_bytes())
    }

    /// The number of the block with `hash`.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    pub fn block_number(&self, hash: B256) -> Result<Option<u64>, StoreError> {
        self.number(BLOCK_HASHES, hash.as_slice(), "block hash index")
    }

    /// The included transaction with `hash`, with its receipt.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    pub fn transaction(&self, hash: B256) -> Result<Option<TransactionRecord>, StoreError> {
        self.record(TRANSACTIONS, hash.as_slice())
    }

    fn record<T: serde::de::DeserializeOwned>(
        &self,
        family: &str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.db.get_pinned_cf(self.family(family), key)? {
            None => Ok(None),
            Some(bytes) => decode_record(&bytes)
                .map(Some)
                .map_err(|error| corrupt(&format!("{family}: {error}"))),
        }
    }

    /// The count of commit starts and ends so far: odd while a block commits. Two reads with
    /// the same even count before and after them read the state of one block.
    #[must_use]
    pub fn commits(&self) -> u64 {
        self.cache.commits.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether no block committed, or was committing, since [`commits`](Self::commits) gave
    /// `before`: reads made in between read the state of one block.
    #[must_use]
    pub fn unchanged_since(&self, before: u64) -> bool {
        self.cache.unchanged_since(before)
    }

    /// Marks a commit as running until the mark is dropped, as [`commit`](Self::commit) does.
    #[cfg(test)]
    pub(crate) fn mark_commit(&self) -> CommitMark<'_> {
        self.cache.start_commit()
    }

    /// The current value of `key`.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    pub fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StoreError> {
        if let Ok(value) = self.cache.get(key) {
            return Ok(value);
        }
        let commits_before = self.commits();
        self.read_and_fill(key, &rocksdb::ReadOptions::default(), commits_before)
    }

    /// `key` read from RocksDB with `options`, put in the cache unless a commit ran since the
    /// count was `commits_before`.
    fn read_and_fill(
        &self,
        key: &StateKey,
        options: &rocksdb::ReadOptions,
        commits_before: u64,
    ) -> Result<Option<StateValue>, StoreError> {
        let value = match self.db.get_pinned_cf_opt(self.family(STATE), key.encode(), options)? {
            None => None,
            Some(bytes) => Some(
                StateValue::decode(&bytes)
                    .map_err(|error| corrupt(&format!("state {key:?}: {error}")))?,
            ),
        };
        self.cache.fill(key, value.clone(), commits_before);
        Ok(value)
    }

    /// The state as of the last committed block, with what `head` gives at that block (the
    /// caller's head, which [`commit_then`](Self::commit_then) moves): every read through it is
    /// of that block, however many blocks commit meanwhile. Waits while a block commits.
    pub fn state_at_head<T>(&self, head: impl Fn() -> T) -> (T, StateAt<'_>) {
        let mut waits = 0u32;
        loop {
            let before = self.commits();
            if before % 2 == 0 {
                let head = head();
                let snapshot = self.db.snapshot();
                // No commit started since: the snapshot and the head are of the same block.
                if self.unchanged_since(before) {
                    let state = StateAt { store: self, snapshot, commits: before, block: None };
                    return (head, state);
                }
            }
            // A block is committing (a synced write, milliseconds).
            if waits < 8 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            waits = waits.saturating_add(1);
        }
    }

    /// The state entries whose encoded key starts with `prefix`, in key order (the Move
    /// resources or modules of one account: see [`StateKey::encode`]), after the key `after` if
    /// given, at most `most.entries` of them, and whether more follow; `None` if those pass
    /// `most.bytes` (read no further).
    ///
    /// # Errors
    /// The database failed or is corrupt.
    pub fn state_with_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        most: Listed,
    ) -> Result<Option<Page>, StoreError> {
        let start = after.filter(|after| after.starts_with(prefix)).unwrap_or(prefix);
        let mode = rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward);
        let (mut entries, mut bytes) = (Vec::new(), 0);
        let mut follows = false;
        for entry in self.db.iterator_cf(self.family(STATE), mode) {
            let (key, value) = entry?;
            if !key.starts_with(prefix) {
                break;
            }
            if after == Some(&key[..]) {
                continue;
            }
            if entries.len() == most.entries {
                follows = true;
                break;
            }
            bytes += key.len() + value.len();
            if bytes > most.bytes {
                return Ok(None);
            }
            let value =
                StateValue::decode(&value).map_err(|error| corrupt(&format!("state: {error}")))?;
            entries.push((key.to_vec(), value));
        }
        Ok(Some(Page { entries, more: follows }))
    }

    /// Every state entry as a tree leaf: its key hash and value hash.
    ///
    /// # Errors
    /// The database failed.
    pub fn state_leaves(&self) -> Result<Vec<(B256, Option<B256>)>, StoreError> {
        let mut leaves = Vec::new();
        for entry in self.db.iterator_cf(self.family(STATE), rocksdb::IteratorMode::Start) {
            let (key, value) = entry?;
            // The stored bytes are the canonical encodings the commitment hashes.
            leaves.push((
                alloy_primitives::keccak256(&key),
                Some(alloy_primitives::keccak256(&value)),
            ));
        }
        Ok(leaves)
    }

    /// Writes tree nodes (`None`: deletes), synced: for a tree rebuilt from the state.
    ///
    /// # Errors
    /// The database failed; nothing was written.
    pub fn put_nodes(
        &self,
        nodes: &std::collections::BTreeMap<Position, Option<Node>>,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.add_nodes(&mut batch, nodes);
        self.write_synced(batch)?;
        Ok(())
    }

    fn add_nodes(
        &self,
        batch: &mut WriteBatch,
        nodes: &std::collections::BTreeMap<Position, Option<Node>>,
    ) {
        let family = self.family(MERKLE);
        for (position, node) in nodes {
            match node {
                Some(node) => batch.put_cf(family, position.encode(), node.encode()),
                None => batch.delete_cf(family, position.encode()),
            }
        }
    }

    /// Commits a block: its state updates, the block, its transactions and the new head, in one
    /// synced write batch.
    ///
    /// # Errors
    /// The database failed; nothing of the block was written.
    ///
    /// # Panics
    /// Never: blocks and transactions always serialize.
    pub fn commit(&self, commit: &BlockCommit<'_>) -> Result<(), StoreError> {
        self.commit_then(commit, CommitNotes::default(), || ())
    }

    /// [`commit`](Self::commit), calling `then` once the block is written and before the commit
    /// ends: what `then` moves (the caller's head) is of the new block for every
    /// [`state_at_head`](Self::state_at_head) that reads the new block's state.
    ///
    /// # Errors
    /// The database failed and `then` was not called; what the write left is not known (see
    /// [`crate::chain::ProduceError::WriteFailed`]).
    pub fn commit_then(
        &self,
        commit: &BlockCommit<'_>,
        notes: CommitNotes<'_>,
        then: impl FnOnce(),
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let (state, history) = (self.family(STATE), self.family(HISTORY));
        let read;
        let previous = match notes.previous {
            Some(previous) if previous.len() == commit.state.len() => previous,
            _ => {
                read = self.previous_values(commit.state)?;
                &read
            }
        };
        // Each family's entries go into the batch in key order: RocksDB inserts a batch's
        // entries into a family's skip list one after another, starting each search where the
        // last one ended, so that keys in order cost a step or two each where keys in random
        // order (hashes) cost a search of the whole list.
        let mut states = Vec::with_capacity(commit.state.len());
        let mut histories = Vec::with_capacity(commit.state.len());
        let leaves = notes.leaves.filter(|leaves| leaves.len() == commit.state.len());
        for (at, ((key, value), before)) in commit.state.iter().zip(previous).enumerate() {
            // The value before the block (empty: absent), for reads of the blocks before it.
            let before = before.as_ref().map_or_else(Vec::new, StateValue::encode);
            // Encoded once, for the state and (hashed, unless the leaves have the hash) for the
            // history.
            let encoded = key.encode();
            let commitment =
                leaves.map_or_else(|| alloy_primitives::keccak256(&encoded), |leaves| leaves[at].0);
            let history_key = history_key_of(commitment, commit.block.number);
            histories.push((history_key, before));
            states.push((encoded, value));
        }
        histories.sort_unstable_by_key(|(history_key, _)| *history_key);
        for (history_key, before) in histories {
            batch.put_cf(history, history_key, before);
        }
        states.sort_unstable_by(|left, right| left.0.cmp(&right.0));
        for (encoded, value) in states {
            match value {
                Some(value) => batch.put_cf(state, &encoded, value.encode()),
                None => batch.delete_cf(state, &encoded),
            }
        }
        let number = commit.block.number.to_be_bytes();
        batch.put_cf(self.family(BLOCKS), number, encode_record(commit.block));
        batch.put_cf(self.family(BLOCK_HASHES), commit.block.hash, number);
        let mut transactions: Vec<&TransactionRecord> = commit.transactions.iter().collect();
        transactions.sort_unstable_by_key(|transaction| transaction.hash);
        for transaction in transactions {
            batch.put_cf(self.family(TRANSACTIONS), transaction.hash, encode_record(transaction));
        }
        // In key order already: a map by position, whose keys encode in the same order.
        self.add_nodes(&mut batch, commit.nodes);
        for hash in commit.settled {
            batch.delete_cf(self.family(PENDING), hash);
        }
        batch.put_cf(self.family(META), HEAD, number);
        if notes.publishes {
            batch.put_cf(self.family(META), CODE_CHANGED, number);
        }
        let floor = *self.readable_blocks(commit.block.number).start();
        batch.put_cf(self.family(META), HISTORY_FLOOR, floor.to_be_bytes());
        // Readers' fills are refused from here on: building the batch changed nothing they see.
        let _commit = self.cache.start_commit();
        self.write_synced(batch)?;
        self.cache.committed(commit.state);
        self.note_head(commit.block.number);
        then();
        Ok(())
    }
}

/// Reads of the state, with what users ask of it: the latest state ([`Store`]), or one
/// block's ([`StateAt`]).
pub trait ReadState {
    /// The value of `key`.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    fn value(&self, key: &StateKey) -> Result<Option<StateValue>, StoreError>;

    /// The ETH balance of `address`, in wei.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    fn balance(&self, address: Address) -> Result<u128, StoreError> {
        Ok(self.value(&StateKey::Balance(address))?.and_then(|v| v.as_balance()).unwrap_or(0))
    }

    /// The nonce and code hash of `address`.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    fn account(&self, address: Address) -> Result<(u64, B256), StoreError> {
        Ok(header_of(self.value(&StateKey::Account(address))?.as_ref()))
    }

    /// The code of `address`.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    fn code(&self, address: Address) -> Result<Bytes, StoreError> {
        let (_, code_hash) = self.account(address)?;
        if code_hash == KECCAK256_EMPTY {
            return Ok(Bytes::new());
        }
        Ok(match self.value(&StateKey::Code(code_hash))? {
            Some(StateValue::Bytes(bytes)) => bytes,
            _ => Bytes::new(),
        })
    }

    /// Storage slot `slot` of `address`.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    fn storage(&self, address: Address, slot: B256) -> Result<U256, StoreError> {
        Ok(match self.value(&StateKey::Storage { address, slot })? {
            Some(StateValue::Slot(value)) => value,
            _ => U256::ZERO,
        })
    }
}

impl ReadState for Store {
    fn value(&self, key: &StateKey) -> Result<Option<StateValue>, StoreError> {
        self.get(key)
    }
}

impl ReadState for StateAt<'_> {
    fn value(&self, key: &StateKey) -> Result<Option<StateValue>, StoreError> {
        self.get(key)
    }
}

/// Which `history` entries compactions may drop: a read after block B looks at the entries of
/// the blocks after B, so entries of the oldest readable block and earlier ones are never read,
/// except by reads that began while their block was readable, which pin it.
#[derive(Default)]
struct HistoryWindow {
    /// Entries of this block and earlier ones may be dropped (the compaction filter's bound).
    prunable: std::sync::atomic::AtomicU64,
    /// The oldest readable block at the last commit, and the blocks being read (how many reads
    /// of each).
    reads: parking_lot::Mutex<(u64, std::collections::BTreeMap<u64, usize>)>,
}

impl HistoryWindow {
    fn prunable(&self, block: u64) -> bool {
        block <= self.prunable.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The bound: below the oldest readable block and below every pinned one.
    fn update(&self, (oldest, pinned): &(u64, std::collections::BTreeMap<u64, usize>)) {
        let bound = pinned.keys().next().map_or(*oldest, |first| (*first).min(*oldest));
        self.prunable.store(bound, std::sync::atomic::Ordering::Release);
    }

    fn set_oldest(&self, oldest: u64) {
        let mut reads = self.reads.lock();
        reads.0 = oldest;
        self.update(&reads);
    }

    /// Pins `block` for a read, unless its entries may be gone already.
    fn pin(&self, block: u64) -> bool {
        let mut reads = self.reads.lock();
        // The bound only rises while nothing pins below it: every earlier bound was at most
        // this one, so no compaction has dropped an entry of a block after `block`.
        if self.prunable.load(std::sync::atomic::Ordering::Acquire) > block {
            return false;
        }
        *reads.1.entry(block).or_default() += 1;
        self.update(&reads);
        true
    }

    fn unpin(&self, block: u64) {
        let mut reads = self.reads.lock();
        if let std::collections::btree_map::Entry::Occupied(mut count) = reads.1.entry(block) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
        self.update(&reads);
    }
}

/// The state as of one committed block ([`Store::state_at_head`]): a RocksDB snapshot, and the
/// state cache while no later block has begun to commit.
pub struct StateAt<'a> {
    store: &'a Store,
    snapshot: rocksdb::Snapshot<'a>,
    /// The commit count when the snapshot was taken (even).
    commits: u64,
    /// The earlier block whose state this is ([`back_to`](Self::back_to)), if not the
    /// snapshot's.
    block: Option<u64>,
}

impl StateAt<'_> {
    /// The store's commit count when this state was taken (see [`Store::commits`]).
    #[must_use]
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// This state as it was after block `number`, one of the
    /// [`readable_blocks`](Store::readable_blocks) before the snapshot's head (the caller
    /// checks: an older block reads values its history no longer has); `None` if blocks
    /// committed since have let its history go. The block's history is kept until this state
    /// is dropped.
    #[must_use]
    pub fn back_to(mut self, number: u64) -> Option<Self> {
        if let Some(pinned) = self.block.take() {
            self.store.history_window.unpin(pinned);
        }
        if !self.store.history_window.pin(number) {
            return None;
        }
        self.block = Some(number);
        Some(self)
    }

    /// The value of `key` at this block.
    ///
    /// # Errors
    /// The database failed or is corrupt.
    pub fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StoreError> {
        let Some(block) = self.block else { return self.get_latest(key) };
        // The value before the first later block that changed the key, if one did.
        let mut options = rocksdb::ReadOptions::default();
        options.set_snapshot(&self.snapshot);
        let family = self.store.family(HISTORY);
        let mut entries = self.store.db.raw_iterator_cf_opt(family, options);
        let from = history_key(key, block + 1);
        entries.seek(from);
        match (entries.key(), entries.value()) {
            (Some(found), Some(value)) if found.get(..32) == Some(&from[..32]) => match value {
                [] => Ok(None),
                bytes => StateValue::decode(bytes)
                    .map(Some)
                    .map_err(|error| corrupt(&format!("history of {key:?}: {error}"))),
            },
            _ => {
                entries.status()?;
                self.get_latest(key)
            }
        }
    }

    /// The value of `key` at the snapshot's block.
    fn get_latest(&self, key: &StateKey) -> Result<Option<StateValue>, StoreError> {
        // The cache holds the latest state, which is this block's while no commit has started
        // since the snapshot (checked after the cache's answer: a commit puts its updates in
        // after it starts).
        if let Ok(value) = self.store.cache.get(key) {
            if self.store.unchanged_since(self.commits) {
                return Ok(value);
            }
        }
        let mut options = rocksdb::ReadOptions::default();
        options.set_snapshot(&self.snapshot);
        // Put in the cache only while the latest state is still this block's.
        self.store.read_and_fill(key, &options, self.commits)
    }
}

impl Drop for StateAt<'_> {
    fn drop(&mut self) {
        if let Some(block) = self.block {
            self.store.history_window.unpin(block);
        }
    }
}

impl Storage for StateAt<'_> {
    type Key = StateKey;
    type Value = StateValue;

    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StorageError> {
        StateAt::get(self, key).map_err(|error| StorageError(Arc::new(error)))
    }
}

impl Store {
    /// Records accepted transactions (hash, as signed), synced to disk before they are
    /// acknowledged: one write for all of them. (Concurrent synced writes also share one log
    /// write and one sync: RocksDB groups them.)
    ///
    /// # Errors
    /// The database failed; the transactions must not be acknowledged.
    pub fn put_pending(&self, records: &[(B256, &[u8])]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let first =
            self.next_arrival.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for ((hash, raw), arrival) in records.iter().zip(first..) {
            let mut value = Vec::with_capacity(1 + 8 + raw.len());
            value.push(ARRIVAL_MARK);
            value.extend_from_slice(&arrival.to_be_bytes());
            value.extend_from_slice(raw);
            batch.put_cf(self.family(PENDING), hash, value);
        }
        self.write_synced(batch)?;
        Ok(())
    }

    /// Forgets accepted transactions that will never be included, by the keys of their records
    /// (their hashes), in one write.
    ///
    /// # Errors
    /// The database failed.
    pub fn delete_pending<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<(), StoreError> {
        let family = self.family(PENDING);
        let mut batch = WriteBatch::default();
        for key in keys {
            batch.delete_cf(family, key);
        }
        Ok(self.db.write(batch)?)
    }

    /// Every accepted transaction not yet in a block, as signed, with the key of its record
    /// (its hash, for every record this node wrote).
    ///
    /// # Errors
    /// The database failed.
    pub fn pending(&self) -> Result<Vec<PendingRecord>, StoreError> {
        let mut pending = Vec::new();
        for entry in self.db.iterator_cf(self.family(PENDING), rocksdb::IteratorMode::Start) {
            let (key, value) = entry?;
            let (arrival, raw) = arrival_of(&value);
            pending.push(PendingRecord { key: key.to_vec(), arrival, raw: raw.to_vec() });
        }
        Ok(pending)
    }

    /// Writes the notes of dropped transactions (`(hash, note)`) and deletes those of
    /// `forgotten`, in one write, not synced (the notes tell why; losing the last few to a
    /// crash loses no transaction).
    ///
    /// # Errors
    /// The database failed.
    pub fn put_dropped(
        &self,
        notes: &[(B256, Vec<u8>)],
        forgotten: &[B256],
    ) -> Result<(), StoreError> {
        if notes.is_empty() && forgotten.is_empty() {
            return Ok(());
        }
        let family = self.family(DROPPED);
        let mut batch = WriteBatch::default();
        for (hash, note) in notes {
            batch.put_cf(family, hash, note);
        }
        for hash in forgotten {
            batch.delete_cf(family, hash);
        }
        Ok(self.db.write(batch)?)
    }

    /// Every dropped transaction's note the store holds, by hash (keys that are not hashes left
    /// out).
    ///
    /// # Errors
    /// The database failed.
    pub fn dropped_notes(&self) -> Result<Vec<(B256, Vec<u8>)>, StoreError> {
        let mut notes = Vec::new();
        for entry in self.db.iterator_cf(self.family(DROPPED), rocksdb::IteratorMode::Start) {
            let (key, note) = entry?;
            if let Ok(hash) = B256::try_from(&key[..]) {
                notes.push((hash, note.to_vec()));
            }
        }
        Ok(notes)
    }

    /// The highest arrival number of the pending records, if there are any.
    fn last_arrival(&self) -> Result<Option<u64>, StoreError> {
        let mut last = None;
        for entry in self.db.iterator_cf(self.family(PENDING), rocksdb::IteratorMode::Start) {
            let (_, value) = entry?;
            last = last.max(Some(arrival_of(&value).0));
        }
        Ok(last)
    }
}

/// A pending record's arrival number and transaction (see [`PendingRecord`]).
fn arrival_of(value: &[u8]) -> (u64, &[u8]) {
    match value.split_first() {
        Some((&ARRIVAL_MARK, rest)) => match rest.split_first_chunk::<8>() {
            Some((arrival, raw)) => (u64::from_be_bytes(*arrival), raw),
            None => (0, value),
        },
        // Written before records had arrival numbers: the oldest.
        _ => (0, value),
    }
}

/// The first byte of a pending record's value, before its arrival number and the transaction:
/// no transaction starts with it (typed ones start with their type, below 0x80; a legacy one
/// with an RLP list's prefix, 0xff only for one of 2^56 bytes or more).
const ARRIVAL_MARK: u8 = 0xff;

/// A pending transaction's record.
#[derive(Clone, Debug)]
pub struct PendingRecord {
    /// Its key: the transaction's hash, for every record this node wrote.
    pub key: Vec<u8>,
    /// When it was accepted, among the records: a number that grows with each one written (0
    /// for those written before records had one).
    pub arrival: u64,
    /// The signed transaction.
    pub raw: Vec<u8>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl Nodes for Store {
    type Error = StoreError;

    fn node(&self, position: &Position) -> Result<Option<Node>, StoreError> {
        match self.db.get_pinned_cf(self.family(MERKLE), position.encode())? {
            None => Ok(None),
            Some(bytes) => match Node::decode(&bytes) {
                // Two keys part by their last bit at the latest: no inner node lies at depth
                // 256, and the tree's walks would look for a 257th bit below one.
                Some(Node::Inner(_)) if position.depth() >= 256 => Err(corrupt("tree node")),
                Some(node) => Ok(Some(node)),
                None => Err(corrupt("tree node")),
            },
        }
    }
}

impl Storage for Store {
    type Key = StateKey;
    type Value = StateValue;

    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StorageError> {
        Store::get(self, key).map_err(|error| StorageError(Arc::new(error)))
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, Bytes, Log, LogData, B256};

    use super::{
        decode_record, encode_record, history_block, BlockCommit, Store, HISTORY, HISTORY_SINCE,
        META,
    };
    use crate::block::{Block, Kind, TransactionRecord};
    use duet_types::{StateKey, StateValue};

    #[test]
    fn reads_see_every_commit_through_the_state_cache() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        let block = Block::empty(0, B256::ZERO, 0, &crate::chain::ChainConfig::for_tests());
        let (kept, changed, added) = (
            StateKey::Balance(Address::repeat_byte(1)),
            StateKey::Balance(Address::repeat_byte(2)),
            StateKey::Balance(Address::repeat_byte(3)),
        );
        let commit = |state: &[(StateKey, Option<StateValue>)]| {
            store.commit(&BlockCommit::of_state(&block, state)).unwrap();
        };
        commit(&[
            (kept.clone(), Some(StateValue::Balance(1))),
            (changed.clone(), Some(StateValue::Balance(2))),
        ]);
        // Read twice: from RocksDB, then from the cache (absence included).
        for _ in 0..2 {
            assert_eq!(store.get(&kept).unwrap(), Some(StateValue::Balance(1)));
            assert_eq!(store.get(&changed).unwrap(), Some(StateValue::Balance(2)));
            assert_eq!(store.get(&added).unwrap(), None);
        }
        commit(&[(changed.clone(), None), (added.clone(), Some(StateValue::Balance(3)))]);
        assert_eq!(store.get(&kept).unwrap(), Some(StateValue::Balance(1)));
        assert_eq!(store.get(&changed).unwrap(), None);
        assert_eq!(store.get(&added).unwrap(), Some(StateValue::Balance(3)));
        // A read from before a commit does not put its value back over the commit's.
        let before = store.commits();
        commit(&[(kept.clone(), Some(StateValue::Balance(10)))]);
        store.cache.fill(&kept, Some(StateValue::Balance(1)), before);
        assert_eq!(store.get(&kept).unwrap(), Some(StateValue::Balance(10)));
        // What a fresh process reads from RocksDB alone is the same.
        drop(store);
        let reopened = Store::open(directory.path()).unwrap();
        assert_eq!(reopened.get(&kept).unwrap(), Some(StateValue::Balance(10)));
        assert_eq!(reopened.get(&changed).unwrap(), None);
        assert_eq!(reopened.get(&added).unwrap(), Some(StateValue::Balance(3)));
    }

    #[test]
    fn a_state_at_a_block_reads_that_block_while_later_blocks_commit() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        let config = crate::chain::ChainConfig::for_tests();
        let head = AtomicU64::new(0);
        let (cached, changed, added) = (
            StateKey::Balance(Address::repeat_byte(1)),
            StateKey::Balance(Address::repeat_byte(2)),
            StateKey::Balance(Address::repeat_byte(3)),
        );
        let commit = |number: u64, state: &[(StateKey, Option<StateValue>)]| {
            let block = Block::empty(number, B256::ZERO, number, &config);
            let commit = BlockCommit::of_state(&block, state);
            let notes = super::CommitNotes::default();
            store.commit_then(&commit, notes, || head.store(number, Ordering::SeqCst)).unwrap();
        };
        commit(
            1,
            &[
                (cached.clone(), Some(StateValue::Balance(1))),
                (changed.clone(), Some(StateValue::Balance(2))),
            ],
        );
        let (number, at_one) = store.state_at_head(|| head.load(Ordering::SeqCst));
        assert_eq!(number, 1);
        assert_eq!(at_one.get(&cached).unwrap(), Some(StateValue::Balance(1)));
        // Block 2 changes all three; the cache then holds block 2's values, which a read at
        // block 1 must not take, and block 1's reads must not put theirs back in the cache.
        commit(
            2,
            &[
                (cached.clone(), Some(StateValue::Balance(10))),
                (changed.clone(), None),
                (added.clone(), Some(StateValue::Balance(3))),
            ],
        );
        for _ in 0..2 {
            assert_eq!(at_one.get(&cached).unwrap(), Some(StateValue::Balance(1)));
            assert_eq!(at_one.get(&changed).unwrap(), Some(StateValue::Balance(2)));
            assert_eq!(at_one.get(&added).unwrap(), None);
        }
        assert_eq!(store.get(&cached).unwrap(), Some(StateValue::Balance(10)));
        assert_eq!(store.get(&changed).unwrap(), None);
        assert_eq!(store.get(&added).unwrap(), Some(StateValue::Balance(3)));
        let (number, at_two) = store.state_at_head(|| head.load(Ordering::SeqCst));
        assert_eq!(number, 2);
        assert_eq!(at_two.get(&cached).unwrap(), Some(StateValue::Balance(10)));
        assert_eq!(at_two.get(&changed).unwrap(), None);
        // While a block commits, taking the state waits for it to end.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let in_commit = store.mark_commit();
            scope.spawn(|| {
                let (number, _) = store.state_at_head(|| head.load(Ordering::SeqCst));
                sender.send(number).unwrap();
            });
            let waited = receiver.recv_timeout(std::time::Duration::from_millis(100));
            assert!(waited.is_err(), "the state was taken during a commit: {waited:?}");
            head.store(3, Ordering::SeqCst);
            drop(in_commit);
            assert_eq!(receiver.recv().unwrap(), 3);
        });
    }

    #[test]
    fn the_state_after_each_kept_block_reads_back_and_older_history_goes() {
        let directory = tempfile::tempdir().unwrap();
        let config = crate::chain::ChainConfig::for_tests();
        let key = |byte| StateKey::Balance(Address::repeat_byte(byte));
        let (changed, deleted, created) = (key(1), key(2), key(3));
        // Block by block: (changed, deleted, created) after it.
        let mut expected = Vec::new();
        {
            let store = Store::open_keeping(directory.path(), 3).unwrap();
            for number in 0..8u64 {
                let paid = 100 + u128::from(number);
                let mut state = vec![(changed.clone(), Some(StateValue::Balance(paid)))];
                match number {
                    0 => state.push((deleted.clone(), Some(StateValue::Balance(7)))),
                    4 => state.push((deleted.clone(), None)),
                    5 => state.push((created.clone(), Some(StateValue::Balance(9)))),
                    _ => {}
                }
                state.sort_by(|a, b| a.0.cmp(&b.0));
                let block = Block::empty(number, B256::ZERO, number, &config);
                store.commit(&BlockCommit::of_state(&block, &state)).unwrap();
                expected.push((
                    Some(StateValue::Balance(paid)),
                    (number < 4).then_some(StateValue::Balance(7)),
                    (number >= 5).then_some(StateValue::Balance(9)),
                ));
            }
        }
        // After a restart too; keys never written read as absent at every block, wherever the
        // seek for them lands among the others' entries.
        let store = Store::open_keeping(directory.path(), 3).unwrap();
        assert_eq!(store.readable_blocks(7), 4..=7);
        for number in 4..=7u64 {
            let ((), state) = store.state_at_head(|| ());
            let state = state.back_to(number).unwrap();
            let (changed_value, deleted_value, created_value) = &expected[number as usize];
            assert_eq!(&state.get(&changed).unwrap(), changed_value, "block {number}");
            assert_eq!(&state.get(&deleted).unwrap(), deleted_value, "block {number}");
            assert_eq!(&state.get(&created).unwrap(), created_value, "block {number}");
            for byte in 10..40 {
                assert_eq!(state.get(&key(byte)).unwrap(), None, "block {number}");
            }
        }
        let family = store.family(HISTORY);
        let compact = || store.db.compact_range_cf(family, None::<&[u8]>, None::<&[u8]>);
        let blocks_with_history = || -> std::collections::BTreeSet<u64> {
            store
                .db
                .iterator_cf(family, rocksdb::IteratorMode::Start)
                .map(|entry| history_block(&entry.unwrap().0).unwrap())
                .collect()
        };
        // A read of the oldest kept block while the next block commits and the family
        // compacts: its history stays until the read ends.
        let ((), reading) = store.state_at_head(|| ());
        let reading = reading.back_to(4).unwrap();
        let block = Block::empty(8, B256::ZERO, 8, &config);
        let state = [(changed.clone(), Some(StateValue::Balance(108)))];
        store.commit(&BlockCommit::of_state(&block, &state)).unwrap();
        assert_eq!(store.readable_blocks(8), 5..=8);
        compact();
        assert_eq!(reading.get(&changed).unwrap(), expected[4].0);
        assert_eq!(reading.get(&deleted).unwrap(), None);
        assert_eq!(blocks_with_history(), (5..=8).collect(), "the pinned read's blocks stay");
        drop(reading);
        // Then only the kept blocks' history stays, and a read of an older block is refused.
        compact();
        assert_eq!(blocks_with_history(), (6..=8).collect(), "the blocks with history left");
        // Block 4's history is gone; block 5's state reads back.
        let reads_from_block_5 = |store: &Store| {
            let ((), state) = store.state_at_head(|| ());
            assert!(state.back_to(4).is_none(), "block 4's history is gone");
            let ((), state) = store.state_at_head(|| ());
            assert_eq!(state.back_to(5).unwrap().get(&changed).unwrap(), expected[5].0);
        };
        reads_from_block_5(&store);
        // A process keeping more blocks reads no further back than the last one could.
        drop(store);
        let store = Store::open_keeping(directory.path(), 10).unwrap();
        assert_eq!(store.readable_blocks(8), 5..=8);
        assert_eq!(store.readable_blocks(30), 20..=30);
        reads_from_block_5(&store);
        // A process keeping fewer blocks lets compactions drop more from its start, committing
        // nothing: the next one, keeping more again, still reads no further back than it.
        drop(store);
        let store = Store::open_keeping(directory.path(), 1).unwrap();
        assert_eq!(store.readable_blocks(8), 7..=8);
        drop(store);
        let store = Store::open_keeping(directory.path(), 10).unwrap();
        assert_eq!(store.readable_blocks(8), 7..=8, "the shorter window's start, kept on disk");
        // A database of an earlier version (no history recorded) keeps only the latest state
        // until blocks with history follow.
        store.db.delete_cf(store.family(META), HISTORY_SINCE).unwrap();
        drop(store);
        let store = Store::open_keeping(directory.path(), 3).unwrap();
        assert_eq!(store.readable_blocks(8), 8..=8);
        assert_eq!(store.readable_blocks(10), 8..=10);
        assert_eq!(store.readable_blocks(20), 17..=20);
    }

    #[test]
    fn records_round_trip_in_bcs_and_records_of_earlier_versions_still_read() {
        let log = Log {
            address: Address::repeat_byte(1),
            data: LogData::new_unchecked(vec![B256::repeat_byte(2)], Bytes::from(vec![3; 40])),
        };
        let record = TransactionRecord {
            hash: B256::repeat_byte(4),
            block_number: 7,
            block_hash: B256::repeat_byte(5),
            index: 2,
            from: Address::repeat_byte(6),
            kind: Kind::Move,
            raw: Bytes::from(vec![7; 120]),
            success: true,
            gas_used: 51_000,
            cumulative_gas_used: 90_000,
            effective_gas_price: 1_000_000_007,
            contract_address: Some(Address::repeat_byte(8)),
            logs: vec![log],
            first_log_index: 3,
            move_status: Some("success".to_owned()),
            move_events: vec![("0x1::eth::Transfer".into(), Bytes::from(vec![9; 16]))],
        };
        let binary = encode_record(&record);
        let json = serde_json::to_vec(&record).unwrap();
        assert!(binary.len() * 2 < json.len(), "{} bytes against {}", binary.len(), json.len());
        assert_eq!(decode_record::<TransactionRecord>(&binary).unwrap(), record);
        assert_eq!(decode_record::<TransactionRecord>(&json).unwrap(), record);
        assert!(decode_record::<TransactionRecord>(&binary[..binary.len() - 1]).is_err());
        assert!(decode_record::<TransactionRecord>(b"garbage").is_err());
    }

    #[test]
    fn a_tree_of_inner_nodes_down_to_depth_256_is_corrupt_not_a_crash() {
        let directory = tempfile::tempdir().unwrap();
        let store = super::Store::open(directory.path()).unwrap();
        let key = B256::repeat_byte(0xa5);
        let inner = crate::merkle::Node::Inner(B256::repeat_byte(1)).encode();
        for depth in 0..=256 {
            let position = crate::merkle::Position::on_path(key, depth);
            store.db.put_cf(store.family(super::MERKLE), position.encode(), &inner).unwrap();
        }
        let proved = crate::merkle::prove(&store, key);
        assert!(matches!(proved, Err(super::StoreError::Corrupt(_))), "{proved:?}");
        let changed = crate::merkle::update(&store, vec![(key, Some(B256::ZERO))]);
        assert!(matches!(changed, Err(super::StoreError::Corrupt(_))), "{changed:?}");
    }

    #[test]
    fn pending_records_carry_their_arrival_and_those_written_before_read_as_the_oldest() {
        let directory = tempfile::tempdir().unwrap();
        let store = super::Store::open(directory.path()).unwrap();
        let hash = B256::repeat_byte;
        // A record as written before records had arrival numbers: the transaction alone.
        store.db.put_cf(store.family(super::PENDING), hash(9), [0x02, 0xf8, 0x01]).unwrap();
        store.put_pending(&[(hash(1), &[0x02, 0x01][..]), (hash(2), &[0xf8, 0x02][..])]).unwrap();
        store.put_pending(&[(hash(3), &[0x01][..])]).unwrap();
        let arrivals = |store: &super::Store| {
            let mut records: Vec<_> = store
                .pending()
                .unwrap()
                .into_iter()
                .map(|record| (record.arrival, record.key[0], record.raw))
                .collect();
            records.sort();
            records
        };
        let expected = vec![
            (0, 1, vec![0x02, 0x01]),
            (0, 9, vec![0x02, 0xf8, 0x01]),
            (1, 2, vec![0xf8, 0x02]),
            (2, 3, vec![0x01]),
        ];
        assert_eq!(arrivals(&store), expected);
        // Reopened, arrivals go on after the last.
        drop(store);
        let store = super::Store::open(directory.path()).unwrap();
        store.put_pending(&[(hash(4), &[0x03][..])]).unwrap();
        assert_eq!(arrivals(&store).last().unwrap(), &(3, 4, vec![0x03]));
    }

    #[test]
    fn a_datadir_of_another_format_is_refused_before_anything_is_written() {
        use super::{StoreError, FORMAT, FORMAT_KEY, HISTORY_SINCE, META};
        let directory = tempfile::tempdir().unwrap();
        let store = super::Store::open(directory.path()).unwrap();
        store.db.put_cf(store.family(META), FORMAT_KEY, (FORMAT + 1).to_be_bytes()).unwrap();
        store.db.delete_cf(store.family(META), HISTORY_SINCE).unwrap();
        drop(store);
        let Err(refused) = super::Store::open(directory.path()) else { panic!("refused") };
        assert!(matches!(refused, StoreError::Incompatible(_)), "{refused:?}");
        // Nothing was written: the history start it would have written is still absent.
        assert_eq!(meta_on_disk(directory.path(), HISTORY_SINCE), None);
    }

    /// The `key` of the meta family of the database at `path`, read without opening it as a
    /// store (which writes).
    fn meta_on_disk(path: &std::path::Path, key: &[u8]) -> Option<Vec<u8>> {
        let options = rocksdb::Options::default();
        let families = rocksdb::DB::list_cf(&options, path).unwrap();
        let db = rocksdb::DB::open_cf_for_read_only(&options, path, families, false).unwrap();
        db.get_cf(db.cf_handle(super::META).unwrap(), key).unwrap()
    }

    #[test]
    fn a_datadir_is_claimed_for_one_chain_and_format_and_refused_to_others() {
        use super::{StoreError, CHAIN_ID, FORMAT, FORMAT_KEY, META};
        let directory = tempfile::tempdir().unwrap();
        let store = super::Store::open(directory.path()).unwrap();
        let marks = |store: &super::Store| {
            let format = store.number(META, FORMAT_KEY, "format").unwrap();
            (format, store.number(META, CHAIN_ID, "chain id").unwrap())
        };
        assert_eq!(marks(&store), (None, None));
        store.claim_for_chain(7).unwrap();
        assert_eq!(marks(&store), (Some(FORMAT), Some(7)));
        store.claim_for_chain(7).unwrap();
        // Another chain id is refused, saying which chain the datadir holds, and marks nothing.
        let refused = store.claim_for_chain(8).unwrap_err();
        assert!(matches!(refused, StoreError::Incompatible(_)), "{refused:?}");
        let message = refused.to_string();
        assert!(message.contains("chain 7") && message.contains("chain id 8"), "{message}");
        assert_eq!(marks(&store), (Some(FORMAT), Some(7)));
        // Records of another format are refused, whatever the chain.
        store.db.put_cf(store.family(META), FORMAT_KEY, (FORMAT + 1).to_be_bytes()).unwrap();
        let refused = store.claim_for_chain(7).unwrap_err().to_string();
        assert!(refused.contains(&format!("format {}", FORMAT + 1)), "{refused}");
        // A datadir of a build before the marks gets them from the chain it is opened for.
        store.db.delete_cf(store.family(META), FORMAT_KEY).unwrap();
        store.db.delete_cf(store.family(META), CHAIN_ID).unwrap();
        drop(store);
        let store = super::Store::open(directory.path()).unwrap();
        store.claim_for_chain(9).unwrap();
        assert_eq!(marks(&store), (Some(FORMAT), Some(9)));
        // One that holds blocks but no marks was written before them: refused, unmarked.
        let holding = tempfile::tempdir().unwrap();
        let unmarked = super::Store::open(holding.path()).unwrap();
        let config = crate::chain::ChainConfig::for_tests();
        let mut block = crate::block::Block::empty(0, B256::ZERO, 0, &config);
        block.seal(B256::ZERO, []);
        unmarked.commit(&super::BlockCommit::of_state(&block, &[])).unwrap();
        let refused = unmarked.claim_for_chain(9).unwrap_err().to_string();
        assert!(refused.contains("before format marks"), "{refused}");
        assert_eq!(marks(&unmarked), (None, None));
        // Opened for a chain, refused before anything is written (nor a history start).
        unmarked.db.delete_cf(unmarked.family(META), super::HISTORY_SINCE).unwrap();
        drop(unmarked);
        let refused = super::Store::open_for_chain(holding.path(), 1, 9).err().unwrap();
        assert!(refused.to_string().contains("before format marks"), "{refused}");
        assert_eq!(meta_on_disk(holding.path(), super::HISTORY_SINCE), None);
        // Opened for another chain, it is refused before anything is written: the history
        // start it would have written is still absent.
        store.db.delete_cf(store.family(META), super::HISTORY_SINCE).unwrap();
        drop(store);
        let refused = super::Store::open_for_chain(directory.path(), 1, 8).err().unwrap();
        assert!(refused.to_string().contains("chain 9"), "{refused}");
        assert_eq!(meta_on_disk(directory.path(), super::HISTORY_SINCE), None);
        let store = super::Store::open_for_chain(directory.path(), 1, 9).unwrap();
        assert_eq!(store.number(META, super::HISTORY_SINCE, "history start").unwrap(), Some(0));
    }
}
