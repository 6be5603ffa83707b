//! The chain: its database, its mempool, and the block builder that runs mixed blocks through
//! Block-STM and commits them.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Bytes, B256, U256};
use duet_block_stm::{
    execute_sequential, BlockError, BlockOutput, ExecutorConfig, LayeredStorage, TransactionResult,
    VmBlockOutput,
};
use duet_evm::trace::{CallFrame, CallTraceConfig, TraceFailure};
use duet_evm::{BlockHashes, DuetReceipt, DuetTransaction, DuetVm, EvmVm};
use duet_move::MoveVm;
use duet_types::{
    MovePayload, MoveTransaction, StateKey, StateValue, KECCAK256_EMPTY, MOVE_ENTRY_ADDRESS,
};
use parking_lot::{Mutex, RwLock};
use revm::context::result::{ExecutionResult, HaltReason, InvalidTransaction, Output};
use revm::context::{BlockEnv, TxEnv};
use revm::context_interface::Transaction as _;
use revm::primitives::eip7825::TX_GAS_LIMIT_CAP;
use revm::primitives::TxKind;

use crate::block::{Block, Kind, TransactionRecord};
use crate::dropped::DropKind;
use crate::mempool::{Arrival, Mempool, MempoolError, PendingTransaction};
use crate::merkle::{self, NodeCache, Proof};
use crate::metrics::Metrics;
use crate::store::{BlockCommit, CommitNotes, ReadState, StateAt, Store, StoreError};
use crate::turns::{Turn, Turns};

/// The most rounds of execution that fill one block (see `Chain::fill_block`).
const FILL_ROUNDS: usize = 4;
/// The largest transaction accepted, in bytes (as geth's).
pub const MAX_TRANSACTION_SIZE: usize = 128 * 1024;

/// What a chain is made of.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// The chain id transactions must sign for.
    pub chain_id: u64,
    /// The most gas a block's transactions may use.
    pub block_gas_limit: u64,
    /// The base fee per gas, in wei (fixed for now).
    pub base_fee: u64,
    /// Who receives the fees.
    pub fee_vault: Address,
    /// The most transactions the mempool holds.
    pub mempool_limit: usize,
    /// How long a sender's transactions above a nonce gap wait after its last one arrived.
    pub mempool_lifetime: std::time::Duration,
    /// The most transactions in one block.
    pub max_block_transactions: usize,
}

#[cfg(test)]
impl ChainConfig {
    /// A small chain for unit tests.
    pub(crate) fn for_tests() -> Self {
        Self {
            chain_id: 1,
            block_gas_limit: 30_000_000,
            base_fee: 1,
            fee_vault: Address::ZERO,
            mempool_limit: 10,
            mempool_lifetime: std::time::Duration::from_secs(3 * 60 * 60),
            max_block_transactions: 10,
        }
    }
}

/// One sender's waiting transactions (see [`Chain::pool`]).
#[derive(Debug)]
pub struct PoolSender {
    /// The sender.
    pub sender: Address,
    /// Those a block could take now, in nonce order.
    pub pending: Vec<PoolTransaction>,
    /// Those above a nonce gap, in nonce order.
    pub queued: Vec<PoolTransaction>,
}

/// What the pool shows of a waiting transaction.
#[derive(Debug)]
pub struct PoolTransaction {
    /// Its nonce.
    pub nonce: u64,
    /// Its EIP-2718 bytes.
    pub raw: Bytes,
    /// Its max fee per gas.
    pub max_fee: u128,
    /// Its gas limit.
    pub gas_limit: u64,
}

/// What became of a transaction ([`Chain::transaction_status`]).
#[derive(Debug)]
pub enum TransactionStatus {
    /// In a block: its record.
    Included(Box<TransactionRecord>),
    /// Waiting in the pool.
    Pending,
    /// Acknowledged, then dropped without being included: why.
    Dropped(crate::dropped::Dropped),
    /// Never seen, or dropped too long ago to be remembered.
    Unknown,
}

/// Why a transaction was refused (worded as Ethereum clients word it).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Not a valid EIP-2718 transaction.
    #[error("invalid transaction: {0}")]
    Malformed(String),
    /// The signature does not recover a sender.
    #[error("invalid sender")]
    InvalidSender,
    /// Signed for another chain, or for none.
    #[error("invalid chain id")]
    ChainId,
    /// Larger than [`MAX_TRANSACTION_SIZE`].
    #[error("oversized data")]
    Oversized,
    /// Blob transactions are not accepted.
    #[error("transaction type not supported")]
    UnsupportedType,
    /// A set-code (EIP-7702) transaction without authorizations.
    #[error("EIP-7702 transaction with empty auth list")]
    EmptyAuthorizationList,
    /// The sender is delegated (EIP-7702), or about to be, and already has a transaction
    /// waiting.
    #[error("in-flight transaction limit reached for delegated accounts")]
    DelegatedInFlight,
    /// A set-code transaction names an authority with more than one transaction waiting.
    #[error("authority already reserved")]
    AuthorityReserved,
    /// The sender is delegated (EIP-7702), or about to be, and the transaction is not its next.
    #[error("gapped-nonce tx from delegated accounts")]
    DelegatedGapped,
    /// The nonce was already used.
    #[error("nonce too low: next nonce {expected}, tx nonce {got}")]
    NonceTooLow {
        /// The sender's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The sender cannot pay for it.
    #[error("insufficient funds for gas * price + value: balance {balance}, tx cost {cost}")]
    InsufficientFunds {
        /// The sender's balance.
        balance: U256,
        /// Gas limit × max fee + value.
        cost: U256,
    },
    /// The sender cannot pay for it and its waiting transactions together.
    #[error("transaction would cause overdraft: balance {balance}, cost with the sender's waiting transactions {cost}")]
    Overdraft {
        /// The sender's balance.
        balance: U256,
        /// What its waiting transactions and this one can take together.
        cost: U256,
    },
    /// The max fee is below the base fee.
    #[error(
        "max fee per gas less than block base fee: maxFeePerGas: {max_fee}, baseFee: {base_fee}"
    )]
    FeeTooLow {
        /// The transaction's max fee.
        max_fee: u128,
        /// The block base fee.
        base_fee: u64,
    },
    /// The gas limit is above the block gas limit.
    #[error("exceeds block gas limit")]
    GasLimit,
    /// Above the gas one transaction may use (EIP-7825), though within the block's.
    #[error("transaction gas limit too high (cap: {cap}, tx: {got})")]
    TransactionGasLimit {
        /// The most gas one transaction may use.
        cap: u64,
        /// The transaction's gas limit.
        got: u64,
    },
    /// The gas limit is below the intrinsic gas.
    #[error("intrinsic gas too low")]
    IntrinsicGas,
    /// The gas limit is below the EIP-7623 floor for its calldata.
    #[error("insufficient gas for floor data gas cost: gas {gas_limit}, minimum needed {floor}")]
    FloorDataGas {
        /// The transaction's gas limit.
        gas_limit: u64,
        /// The floor.
        floor: u64,
    },
    /// The tip is above the max fee.
    #[error("max priority fee per gas higher than max fee per gas")]
    TipAboveFeeCap,
    /// A contract creation's initcode is above the EIP-3860 limit.
    #[error("max initcode size exceeded")]
    InitCodeSize,
    /// Another check the EVM makes before it reads any state failed.
    #[error("invalid transaction: {0}")]
    Invalid(String),
    /// A Move transaction (to the Move entry address) whose payload does not decode, or that
    /// sends ETH.
    #[error("invalid Move transaction: {0}")]
    Move(String),
    /// The mempool refused it.
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a call (`eth_call`, `eth_estimateGas`) failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call reverted, with this revert data.
    #[error("execution reverted")]
    Reverted(Bytes),
    /// The call ran out of gas (geth's words).
    #[error("out of gas")]
    OutOfGas,
    /// The call halted otherwise (an invalid opcode, …), in geth's words where it has some.
    #[error("{0}")]
    Halted(String),
    /// The call is not a valid transaction.
    #[error("invalid call: {0}")]
    Invalid(String),
    /// There is no state to run it on: the block it names does not exist, or its state is no
    /// longer kept.
    #[error("{0}")]
    Unavailable(#[from] StateUnavailable),
    /// Estimating took longer than this (geth's words).
    #[error("execution aborted (timeout = {0:?})")]
    TimedOut(std::time::Duration),
}

/// Why a transaction has no call trace.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// No included transaction has this hash.
    #[error("transaction {0} not found")]
    NotFound(B256),
    /// The state before its block is no longer kept (or the block is not there).
    #[error(transparent)]
    Unavailable(#[from] StateUnavailable),
    /// Its trace could not be taken (too large).
    #[error(transparent)]
    Trace(TraceFailure),
    /// Another replay is running (one runs at a time).
    #[error("another trace's replay is running")]
    Busy,
    /// Replaying its block took longer than this (geth's words).
    #[error("execution timeout (replaying the block took longer than {0:?})")]
    TimedOut(std::time::Duration),
    /// Running it again did not give what its block recorded: a bug of ours.
    #[error("running the transaction again failed: {0}")]
    Replay(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Transactions a trace's replay runs at a time, between looks at its deadline...
const REPLAY_CHUNK: usize = 64;

/// ...and the gas they used in their block, past which a chunk ends sooner (a block of 1e9 gas
/// in 64 transactions would otherwise run whole, sequentially, before a first look).
const REPLAY_CHUNK_GAS: u64 = 50_000_000;

/// Where a trace's replay stopped: the block, its next transaction, and what the transactions
/// before it wrote over the state before the block.
struct ReplayPoint {
    block: B256,
    next: usize,
    written: BTreeMap<StateKey, Option<StateValue>>,
}

/// The most a kept [`ReplayPoint`] holds, counted by [`replay_point_bytes`]: a block's writes
/// can be a hundred megabytes of Move resources, and the point stays until the next trace.
const MAX_REPLAY_POINT_BYTES: usize = 32 << 20;

/// About what `written` holds in memory ([`crate::store::entry_bytes`]).
fn replay_point_bytes(written: &BTreeMap<StateKey, Option<StateValue>>) -> usize {
    written.iter().map(|(key, value)| crate::store::entry_bytes(key, value.as_ref())).sum()
}

/// The transaction `record` holds, as its block ran it.
fn replayed(record: &TransactionRecord) -> Result<DuetTransaction, String> {
    let envelope = envelope_of(record)?;
    let tx = duet_evm::tx_env(&envelope, record.from)
        .map_err(|error| format!("transaction {}: {error:?}", record.hash))?;
    Ok(match record.kind {
        Kind::Evm => DuetTransaction::Evm(tx),
        // At what it paid per gas, as its block charged it.
        Kind::Move => DuetTransaction::Move(
            move_transaction(&tx, record.from, record.effective_gas_price)
                .map_err(|error| format!("transaction {}: {error}", record.hash))?,
        ),
    })
}

/// The signed transaction `record` holds.
fn envelope_of(record: &TransactionRecord) -> Result<TxEnvelope, String> {
    TxEnvelope::decode_2718_exact(record.raw.as_ref())
        .map_err(|error| format!("transaction {}: {error}", record.hash))
}

/// Whether `result`, a transaction run again, is what `record` says its block made of it: its
/// gas, outcome and logs.
fn check_replayed(
    record: &TransactionRecord,
    result: &TransactionResult<DuetReceipt, duet_evm::DuetError>,
) -> Result<(), TraceError> {
    let TransactionResult::Executed(receipt) = result else {
        return Err(TraceError::Replay(format!("{}: {result:?}", record.hash)));
    };
    let (gas_used, success) = (receipt.gas_used(), receipt.is_success());
    if receipt.logs() != record.logs.as_slice() {
        return Err(TraceError::Replay(format!(
            "{} logged otherwise than its receipt says",
            record.hash
        )));
    }
    if (gas_used, success) != (record.gas_used, record.success) {
        return Err(TraceError::Replay(format!(
            "{} used {gas_used} gas (success: {success}); its receipt says {} ({})",
            record.hash, record.gas_used, record.success
        )));
    }
    Ok(())
}

/// What `eth_createAccessList` answers: the list, the gas the call uses with it, and why the
/// call failed if it did.
#[derive(Debug)]
pub struct AccessListResult {
    /// The EIP-2930 access list.
    pub access_list: revm::context::transaction::AccessList,
    /// The gas the call uses with that list (its intrinsic gas included).
    pub gas_used: u64,
    /// Why the call reverted or halted, in geth's words.
    pub error: Option<String>,
}

/// The most runs of a call `eth_createAccessList` makes to settle its list (each run can only
/// add entries; a call that reads by what `GAS` says could go on adding).
const MAX_ACCESS_LIST_RUNS: usize = 8;

/// The longest an `eth_estimateGas` may run its executions, as geth's `--rpc.evmtimeout`: each
/// is bounded by its gas (at most 16 777 216), but an estimate runs up to about 26 of them.
const ESTIMATE_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// How many of the latest accepted transactions' hashes are kept for pending-transaction
/// filters and subscriptions.
const ACCEPTED_FEED: usize = 10_000;

/// The chain.
pub struct Chain {
    config: ChainConfig,
    store: Store,
    /// The Move VM blocks run on.
    move_vm: Arc<MoveVm>,
    /// The Move VM calls (`eth_call`) run on: its own code cache, so a call never loads code
    /// from a block being committed into the VM blocks use, and keeping nothing for the VM
    /// blocks use ([`MoveVm::for_calls`], as every VM of calls and traces). Replaced by a fresh
    /// one when a block that published modules commits (calls starting meanwhile wait; calls
    /// still running keep the old one).
    call_move_vm: RwLock<CallVm>,
    /// Turns to run a call (`eth_call`, `eth_estimateGas`, a Move view): see [`Turns`].
    call_turns: Turns,
    /// Held by the one trace replay that may run at a time (`debug_traceTransaction`, …): each
    /// may run a block's worth of transactions for up to 10 s, and a few at once would take
    /// every core from the block producer. It holds where the last replay of a transaction's
    /// trace stopped, so that tracing the next transaction of the same block (as an explorer
    /// traces a block's one by one) runs only the transactions between them.
    replaying: Mutex<Option<ReplayPoint>>,
    mempool: Mutex<Mempool>,
    /// When the next block looks for expired transactions: a scan of every sender, for a
    /// lifetime of hours, need not run every block.
    next_expiry: Mutex<std::time::Instant>,
    /// The hashes of the latest transactions accepted, for pending-transaction filters and
    /// subscriptions.
    accepted: crate::filters::Feed<B256>,
    /// The acknowledged transactions dropped without being included, with why.
    dropped: crate::dropped::DroppedLog,
    head: RwLock<Arc<Block>>,
    /// The state tree's nodes as last read or committed (bounded, see [`NodeCache`]), as of the
    /// head block. Held while a block is committed, so a proof always matches the head.
    tree: Mutex<NodeCache>,
    threads: NonZeroUsize,
    /// The EVM as incoming transactions are checked against it before they are accepted: what
    /// those checks read (chain id, hard fork, block gas limit, base fee) is the same for every
    /// block.
    admission: EvmVm,
    /// What the block executor allocated and started (the multi-version memory sized for the
    /// largest block so far, the helper threads), kept from one block's executor to the next:
    /// made anew for every block, they cost page faults of megabytes and thread starts.
    executor_parts: Mutex<duet_block_stm::ExecutorParts<DuetVm>>,
    /// Held while a block is built and committed: the producer's blocks and those asked for
    /// (`evm_mine`) are built one after another, each on the last. Holds the error of a block's
    /// write that failed: after it, no block is written (see [`ProduceError::WriteFailed`]).
    producing: Mutex<Option<String>>,
    /// The hashes of the last [`KEPT_HASHES`] blocks (to the head), from which `BLOCKHASH` is
    /// answered in the next block and in calls at recent blocks, and the hashes last read from
    /// the store for an older one (see [`Chain::block_hashes_before`]).
    recent_hashes: RwLock<KeptHashes>,
    older_hashes: Mutex<Option<(u64, Arc<BlockHashes>)>>,
    metrics: Metrics,
}

/// The hashes of consecutive blocks: `first`'s, then each next block's.
#[derive(Debug, Default)]
struct KeptHashes {
    first: u64,
    hashes: std::collections::VecDeque<B256>,
}

/// How many block hashes the chain keeps in memory: the 256 before each of the last 257 blocks
/// and the next one (calls at the blocks whose state is kept by default, 128, and their
/// estimates, which build an EVM for each run, read none from the store).
const KEPT_HASHES: usize = 513;

impl KeptHashes {
    /// The hashes of blocks `first..end`, if all are kept.
    fn range(&self, first: u64, end: u64) -> Option<Vec<B256>> {
        let from = usize::try_from(first.checked_sub(self.first)?).ok()?;
        let to = usize::try_from(end.checked_sub(self.first)?).ok()?;
        (to <= self.hashes.len()).then(|| self.hashes.range(from..to).copied().collect())
    }

    /// Keeps block `number`'s `hash` (the one after the last kept; any other starts again).
    fn push(&mut self, number: u64, hash: B256) {
        if self.first + self.hashes.len() as u64 != number {
            self.first = number;
            self.hashes.clear();
        }
        self.hashes.push_back(hash);
        while self.hashes.len() > KEPT_HASHES {
            self.hashes.pop_front();
            self.first += 1;
        }
    }
}

/// How long a read of a sender's funds waits for a block's commit to end before it reads
/// whatever commits ([`Chain::wait_out_commit`]).
const FUNDS_READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// A sender's nonce and balance as the state holds them, for the checks of a new transaction.
#[derive(Clone, Copy, Debug)]
struct Funds {
    nonce: u64,
    balance: U256,
    /// Whether the sender has code: an EIP-7702 delegation (an account with a contract's code
    /// cannot send). Anyone may then spend its ETH through that code, so it may have one
    /// transaction waiting at a time, as geth allows (others could be made stale for free).
    delegated: bool,
    /// The lowest nonce of the sender's waiting transactions that its balance has not paid for
    /// yet: its nonce if both were read as of one block (those below were included, or replaced
    /// by an included one), else 0 (every waiting one counts, which can only count too much).
    unpaid_from: u64,
    /// The store's commit count before the read: a block the mempool settled after it (see
    /// [`Mempool::settled_at`]) may be missing from these funds.
    commits_before: u64,
}

impl Funds {
    /// Refuses `pending`, as geth does, if its sender is delegated, or named by a waiting
    /// set-code transaction, and already has another transaction waiting (counting those before
    /// it in the same request: `earlier`), unless `pending` replaces it; and if it is a set-code
    /// transaction naming an authority with more than one transaction waiting (each of those
    /// could be made stale by the delegation).
    ///
    /// `earlier` is the sender's next nonce after its transactions earlier in the same request,
    /// if any. Such a sender's transaction must also be its next (one above a gap would hold its
    /// only place while the one below is refused).
    fn check_delegated(
        self,
        mempool: &Mempool,
        pending: &PendingTransaction,
        earlier: Option<u64>,
    ) -> Result<(), SubmitError> {
        if self.delegated || mempool.is_authority(pending.sender) {
            let next = earlier.unwrap_or(self.nonce).max(self.nonce);
            let replaces = |waiting: &PendingTransaction| waiting.nonce == pending.nonce;
            let other = earlier.is_some_and(|next| pending.nonce >= next)
                || mempool
                    .waiting(pending.sender)
                    .any(|waiting| waiting.nonce >= self.nonce && !replaces(waiting));
            if other {
                return Err(SubmitError::DelegatedInFlight);
            }
            if pending.nonce > mempool.pending_nonce(pending.sender, next) {
                return Err(SubmitError::DelegatedGapped);
            }
        }
        let reserved = |authority: &Address| {
            *authority != pending.sender && mempool.waiting(*authority).nth(1).is_some()
        };
        if pending.authorities.iter().any(reserved) {
            return Err(SubmitError::AuthorityReserved);
        }
        Ok(())
    }

    /// Refuses `pending` if its nonce is used.
    fn check_nonce(self, pending: &PendingTransaction) -> Result<(), SubmitError> {
        if pending.nonce < self.nonce {
            return Err(SubmitError::NonceTooLow { expected: self.nonce, got: pending.nonce });
        }
        Ok(())
    }

    /// Refuses `pending` if its nonce is used or its sender cannot pay its cost.
    fn check(self, pending: &PendingTransaction) -> Result<(), SubmitError> {
        self.check_nonce(pending)?;
        if self.balance < pending.cost {
            return Err(SubmitError::InsufficientFunds {
                balance: self.balance,
                cost: pending.cost,
            });
        }
        Ok(())
    }
}

impl Chain {
    /// Why no block is written any more, if a block's write failed ([`ProduceError::WriteFailed`]).
    #[must_use]
    pub fn write_failure(&self) -> Option<String> {
        self.producing.lock().clone()
    }
}

/// How many of a round's `taken` transactions fit in `gas_left`, in block order, and the gas
/// they leave: a transaction fits while its gas limit does not pass what is left.
fn fitting(
    taken: &[PendingTransaction],
    results: &[TransactionResult<DuetReceipt, impl Sized>],
    gas_left: u64,
) -> (usize, u64) {
    let mut left = gas_left;
    let fitting = taken
        .iter()
        .zip(results)
        .position(|(pending, result)| {
            if pending.gas_limit > left {
                return true;
            }
            if let TransactionResult::Executed(receipt) = result {
                left = left.saturating_sub(receipt.gas_used());
            }
            false
        })
        .unwrap_or(taken.len());
    (fitting, left)
}

/// The most transactions that fail their block (see `Chain::run_round`) a round drops before it
/// gives the block up: each costs the round another run.
const MAX_CULPRITS: usize = 4;

/// Why [`Chain::produce_block`] made no block.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The block could not be built: no block was written (a transaction that failed it left
    /// the pool: see `drop_culprit`), and a later try may succeed.
    #[error("{0}")]
    NotBuilt(String),
    /// Writing a block failed, this time or before. What the database holds is then not known
    /// (RocksDB may have logged the write, or go on after a full disk as if it had not), so
    /// this process writes no further block: a restart reads back what is on disk.
    #[error("{0}; no block is written until the node restarts")]
    WriteFailed(String),
}

impl From<String> for ProduceError {
    fn from(error: String) -> Self {
        Self::NotBuilt(error)
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Chain")
            .field("head", &self.head.read().number)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// The most gas one transaction may ask for: the block's limit, within EIP-7825's cap.
    fn max_transaction_gas(&self) -> u64 {
        self.config.block_gas_limit.min(TX_GAS_LIMIT_CAP)
    }

    /// Opens the chain in `store`, committing `genesis` as block 0 if the store is empty.
    ///
    /// # Errors
    /// The database failed, holds no head block, or is of another chain or format.
    pub fn open(
        config: ChainConfig,
        store: Store,
        genesis: &[(StateKey, StateValue)],
    ) -> Result<Self, StoreError> {
        store.claim_for_chain(config.chain_id)?;
        let state: Vec<_> =
            genesis.iter().map(|(key, value)| (key.clone(), Some(value.clone()))).collect();
        let existing = store.head()?;
        let head = if let Some(number) = existing {
            store
                .block(number)?
                .ok_or_else(|| StoreError::Corrupt(format!("head block {number} is missing")))?
        } else {
            let mut block = Block::empty(0, B256::ZERO, crate::genesis::GENESIS_TIMESTAMP, &config);
            let update = merkle::update(&store, merkle::leaves(&state))?;
            block.seal(update.root, []);
            // The genesis state holds the framework's modules: its code is block 0's.
            let notes = CommitNotes { publishes: true, ..CommitNotes::default() };
            let genesis = BlockCommit {
                block: &block,
                transactions: &[],
                state: &state,
                settled: &[],
                nodes: &update.writes,
            };
            store.commit_then(&genesis, notes, || ())?;
            block
        };
        let mut root = merkle::root(&store)?;
        if root == B256::ZERO {
            // A database from before tree nodes were stored: build them from the state once
            // (and check them against the head's root below, like any other). An empty state
            // has no nodes to build.
            let update = merkle::update(&store, store.state_leaves()?)?;
            if !update.writes.is_empty() {
                store.put_nodes(&update.writes)?;
            }
            root = update.root;
        }
        if root != head.state_root {
            return Err(StoreError::Corrupt(format!(
                "the state does not match block {}'s state root",
                head.number
            )));
        }
        if existing.is_some() {
            // A chain that began from another genesis state (a build with another framework
            // or other dev accounts) is refused: this build's framework natives, say, may not
            // be those its modules call.
            let first = store
                .block(0)?
                .ok_or_else(|| StoreError::Corrupt("block 0 is missing".to_owned()))?;
            let nodes: HashMap<merkle::Position, merkle::Node> = HashMap::new();
            let Ok(update) = merkle::update(&nodes, merkle::leaves(&state));
            if first.state_root != update.root {
                return Err(StoreError::Incompatible(
                    "its chain began from another genesis state than this build's (another \
                         framework or other dev accounts): give another datadir, or remove this \
                         one to start its chain afresh"
                        .to_owned(),
                ));
            }
        }
        let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        let mut recent_hashes = KeptHashes::default();
        for number in head.number.saturating_sub(KEPT_HASHES as u64 - 1)..=head.number {
            let block = store.block(number)?;
            let block =
                block.ok_or_else(|| StoreError::Corrupt(format!("block {number} is missing")))?;
            recent_hashes.push(number, block.hash);
        }
        // The dropped transactions' reasons the last process noted.
        let dropped = crate::dropped::DroppedLog::new(crate::dropped::DROPPED_KEPT);
        store.put_dropped(&[], &dropped.restore(store.dropped_notes()?))?;
        Ok(Self {
            admission: EvmVm::new(config.chain_id, block_env(&config, 0, 0)),
            tree: Mutex::new(NodeCache::default()),
            move_vm: Arc::new(MoveVm::new(config.fee_vault)),
            // Its code is that of every block since the last that published modules (if the
            // database does not say, the head: the blocks after it are all it loads).
            call_move_vm: RwLock::new(CallVm {
                vm: Arc::new(MoveVm::for_calls(config.fee_vault)),
                since: store
                    .last_code_change()
                    .map_or(head.number, |changed| changed.min(head.number)),
            }),
            call_turns: Turns::new(threads.saturating_add(threads.get())), // two per core
            replaying: Mutex::new(None),
            mempool: Mutex::new(Mempool::new(config.mempool_limit)),
            next_expiry: Mutex::new(std::time::Instant::now()),
            accepted: crate::filters::Feed::new(ACCEPTED_FEED),
            dropped,
            head: RwLock::new(Arc::new(head)),
            threads,
            executor_parts: Mutex::new(duet_block_stm::ExecutorParts::default()),
            producing: Mutex::new(None),
            recent_hashes: RwLock::new(recent_hashes),
            older_hashes: Mutex::new(None),
            metrics: Metrics::default(),
            config,
            store,
        })
    }

    /// The chain's configuration.
    #[must_use]
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// The database.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The last committed block (shared: a block holds up to 100 000 transaction hashes, and
    /// every request asks for the head).
    #[must_use]
    pub fn head(&self) -> Arc<Block> {
        Arc::clone(&self.head.read())
    }

    /// The EVM of a block whose environment is `env`: the chain's, with the hashes of the blocks
    /// before it ([`block_hashes_before`](Self::block_hashes_before)). Blocks, the pool's writes
    /// in pending calls, calls and trace replays all run in one so made.
    fn block_evm(&self, env: BlockEnv) -> Result<EvmVm, StoreError> {
        let hashes = self.block_hashes_before(env.number.saturating_to())?;
        Ok(EvmVm::new(self.config.chain_id, env).with_block_hashes(hashes))
    }

    /// The hashes of the (up to 256) blocks before block `number`, which `BLOCKHASH` answers in
    /// it: kept in memory for the next block and recent ones, read from the store for an older
    /// block (a call at it, a trace's replay).
    ///
    /// # Errors
    /// The database failed.
    pub fn block_hashes_before(&self, number: u64) -> Result<Arc<BlockHashes>, StoreError> {
        let first = number.saturating_sub(256);
        if let Some(hashes) = self.recent_hashes.read().range(first, number) {
            return Ok(Arc::new(BlockHashes::new(first, hashes)));
        }
        // A block's hashes never change: the last read serves the next calls at that block.
        if let Some((at, hashes)) = &*self.older_hashes.lock() {
            if *at == number {
                return Ok(Arc::clone(hashes));
            }
        }
        let hashes = (first..number)
            .map(|at| Ok(self.store.block(at)?.map_or(B256::ZERO, |block| block.hash)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let hashes = Arc::new(BlockHashes::new(first, hashes));
        *self.older_hashes.lock() = Some((number, Arc::clone(&hashes)));
        Ok(hashes)
    }

    /// The record of the transaction with `hash`, if its block is the head or below. The
    /// store holds a block a moment before it becomes the head; until then nothing of it is
    /// shown, so that no answer is ahead of the head (read after the record: a head that moved
    /// meanwhile counts).
    ///
    /// # Errors
    /// The store failed.
    pub fn committed_transaction(
        &self,
        hash: B256,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        let record = self.store.transaction(hash)?;
        Ok(record.filter(|record| record.block_number <= self.head().number))
    }

    /// The number of the block with `hash`, if it is the head or below (see
    /// [`committed_transaction`](Self::committed_transaction)).
    ///
    /// # Errors
    /// The store failed.
    pub fn committed_block_number(&self, hash: B256) -> Result<Option<u64>, StoreError> {
        let number = self.store.block_number(hash)?;
        Ok(number.filter(|number| *number <= self.head().number))
    }

    /// The hashes of the latest transactions accepted (not those put back at start-up).
    #[must_use]
    pub fn accepted(&self) -> &crate::filters::Feed<B256> {
        &self.accepted
    }

    /// How many transactions wait.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.mempool.lock().len()
    }

    /// Whether an empty block should wait for the clock: blocks mined on request (`evm_mine`),
    /// each a second after its parent at least, put the head ahead of it.
    #[must_use]
    pub fn ahead_of_the_clock(&self) -> bool {
        self.head().timestamp > now()
    }

    /// Whether a block could take a waiting transaction now: one of a sender's at its nonce in
    /// the state (those queued above a nonce gap cannot be taken, and would otherwise make
    /// empty blocks while the head is ahead of the clock, each a second further ahead).
    #[must_use]
    pub fn has_executable(&self) -> bool {
        let senders = self.mempool.lock().senders();
        senders.into_iter().any(|sender| {
            let Ok((nonce, _)) = self.account(sender) else { return true };
            self.mempool.lock().pending_nonce(sender, nonce) > nonce
        })
    }

    /// The waiting transaction with `hash`.
    #[must_use]
    pub fn pending(&self, hash: &B256) -> Option<PendingTransaction> {
        self.mempool.lock().get(hash).cloned()
    }

    /// The waiting transactions, by sender (sorted), each split into those a block could take
    /// now (from the sender's nonce on, without a gap) and those above a gap: what
    /// `txpool_content` shows.
    ///
    /// # Errors
    /// The database failed.
    pub fn pool(&self) -> Result<Vec<PoolSender>, StoreError> {
        // What each transaction shows, copied under the lock (the raw bytes are shared).
        let mut senders: Vec<(Address, Vec<PoolTransaction>)> = {
            let mempool = self.mempool.lock();
            mempool
                .senders()
                .into_iter()
                .map(|sender| {
                    let waiting = mempool.waiting(sender).map(|transaction| PoolTransaction {
                        nonce: transaction.nonce,
                        raw: transaction.raw.clone(),
                        max_fee: transaction.max_fee,
                        gas_limit: transaction.gas_limit,
                    });
                    (sender, waiting.collect())
                })
                .collect()
        };
        senders.sort_unstable_by_key(|(sender, _)| *sender);
        senders
            .into_iter()
            .map(|(sender, waiting)| {
                let mut next = self.account(sender)?.0;
                let (mut pending, mut queued) = (Vec::new(), Vec::new());
                for transaction in waiting {
                    // Below the state nonce: already in a block, about to leave the pool.
                    if transaction.nonce < next {
                        continue;
                    }
                    if transaction.nonce == next && queued.is_empty() {
                        next += 1;
                        pending.push(transaction);
                    } else {
                        queued.push(transaction);
                    }
                }
                Ok(PoolSender { sender, pending, queued })
            })
            .collect()
    }

    /// The balance of `address`.
    ///
    /// # Errors
    /// The database failed.
    pub fn balance(&self, address: Address) -> Result<u128, StoreError> {
        self.store.balance(address)
    }

    /// Waits, for up to [`FUNDS_READ_PATIENCE`], until no block is being committed (a synced
    /// write takes milliseconds), so that a read of a sender's funds made next reads one block
    /// ([`funds`](Self::funds)). Called before the mempool's lock is taken, never under it.
    fn wait_out_commit(&self) {
        let patience = std::time::Instant::now() + FUNDS_READ_PATIENCE;
        while !self.store.unchanged_since(self.store.commits())
            && std::time::Instant::now() < patience
        {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// `sender`'s nonce and balance, read as of one block if they can be (see [`Funds`]); read
    /// whatever commits if a block's commit goes on past a few tries, counting every waiting
    /// transaction of the sender as unpaid then (which may refuse an affordable transaction as
    /// an overdraft, never take one that is not). Callers wait a commit out first
    /// ([`wait_out_commit`](Self::wait_out_commit)).
    ///
    /// # Errors
    /// The database failed.
    fn funds(&self, sender: Address) -> Result<Funds, StoreError> {
        let read = || -> Result<(u64, bool, U256), StoreError> {
            let (nonce, code_hash) = self.account(sender)?;
            Ok((nonce, code_hash != KECCAK256_EMPTY, U256::from(self.balance(sender)?)))
        };
        for _ in 0..3 {
            let before = self.store.commits();
            // A block committing: reading now could mix two blocks.
            if self.store.unchanged_since(before) {
                let (nonce, delegated, balance) = read()?;
                if self.store.unchanged_since(before) {
                    return Ok(Funds {
                        nonce,
                        balance,
                        delegated,
                        unpaid_from: nonce,
                        commits_before: before,
                    });
                }
            }
            std::thread::yield_now();
        }
        let commits_before = self.store.commits();
        let (nonce, delegated, balance) = read()?;
        Ok(Funds { nonce, balance, delegated, unpaid_from: 0, commits_before })
    }

    /// The nonce and code hash of `address`.
    ///
    /// # Errors
    /// The database failed.
    pub fn account(&self, address: Address) -> Result<(u64, B256), StoreError> {
        self.store.account(address)
    }

    /// The next nonce of `address`, counting its waiting transactions.
    ///
    /// # Errors
    /// The database failed.
    pub fn pending_nonce(&self, address: Address) -> Result<u64, StoreError> {
        let mut nonce = self.account(address)?.0;
        loop {
            let pending = self.mempool.lock().pending_nonce(address, nonce);
            // A block may have committed meanwhile and taken some of the sender's transactions
            // out of the mempool: then look again from the new nonce.
            let now = self.account(address)?.0;
            if now == nonce {
                return Ok(pending);
            }
            nonce = now;
        }
    }

    /// The value of `key` with a proof against the head block's state root: (the head, value,
    /// proof). The block is the one whose state was read, whatever commits meanwhile.
    ///
    /// # Errors
    /// The database failed.
    pub fn prove(
        &self,
        key: &StateKey,
    ) -> Result<(Arc<Block>, Option<StateValue>, Proof), StoreError> {
        let mut cache = self.tree.lock();
        let value = self.store.get(key)?;
        let proof = merkle::prove(&cache.over(&self.store), key.commitment_key())?;
        Ok((self.head(), value, proof))
    }

    /// The latest block's state, with the head at it (waits while a block commits).
    fn latest_state(&self) -> (Arc<Block>, StateAt<'_>) {
        self.store.state_at_head(|| self.head())
    }

    /// Checks a signed transaction against the state and adds it to the mempool; returns its
    /// hash.
    ///
    /// # Errors
    /// See [`SubmitError`]; a refused transaction changes nothing.
    pub fn submit(&self, raw: &[u8]) -> Result<B256, SubmitError> {
        self.submit_many(&[raw])
            .pop()
            .unwrap_or(Err(SubmitError::Malformed("no result".to_owned())))
    }

    /// [`submit`](Self::submit) for several transactions at once (a JSON-RPC batch): the ones
    /// accepted are synced to disk together, in one write.
    pub fn submit_many(&self, raws: &[&[u8]]) -> Vec<Result<B256, SubmitError>> {
        // Each sender's next nonce after its transactions earlier in the request, as the pool
        // will hold them by then: a request may carry a run of one sender's nonces.
        let mut earlier = HashMap::new();
        let checked: Vec<Result<PendingTransaction, SubmitError>> =
            raws.iter().map(|raw| self.check_transaction(raw, &mut earlier)).collect();
        let records: Vec<(B256, &[u8])> = checked
            .iter()
            .filter_map(|pending| pending.as_ref().ok())
            .map(|pending| (pending.hash, pending.raw.as_ref()))
            .collect();
        // On disk before they are acknowledged: a crash after this loses none of them.
        let persisted = self.store.put_pending(&records);
        let results: Vec<Result<B256, SubmitError>> = checked
            .into_iter()
            .map(|pending| {
                let pending = pending?;
                if let Err(error) = &persisted {
                    self.mempool.lock().end_submission(&pending.hash);
                    return Err(SubmitError::Store(StoreError::WriteFailed(error.to_string())));
                }
                self.admit(pending, false)
            })
            .collect();
        for result in &results {
            let counter =
                if result.is_ok() { &self.metrics.accepted } else { &self.metrics.refused };
            Metrics::add(counter, 1);
        }
        results
    }

    /// Puts a checked transaction, already on disk, into the mempool (`restored`: on disk when
    /// the node started, see [`Arrival::Restored`]). A refused one's record is deleted, unless
    /// it is another's: the same transaction in the pool, or on its way there.
    fn admit(&self, pending: PendingTransaction, restored: bool) -> Result<B256, SubmitError> {
        let hash = pending.hash;
        // Read before the pool's lock: the head's lock is not taken under it (a block's commit
        // waits for the head's readers, one of which may wait for the pool).
        let head = self.head.read().number;
        self.wait_out_commit();
        let mut mempool = self.mempool.lock();
        if !restored {
            mempool.end_submission(&hash);
        }
        // A block may have committed since the check: under the mempool lock, which the block's
        // clean-up also takes, the nonce read now is the one that counts.
        let inserted = self.funds(pending.sender).map_err(SubmitError::from).and_then(|funds| {
            funds.check_nonce(&pending)?;
            let nonce = funds.nonce;
            if !restored {
                // With the transactions of its batch that came in before it.
                check_overdraft(&mempool, &pending, funds)?;
                funds.check_delegated(&mempool, &pending, None)?;
            }
            // The gap rule again, against what the pool holds now: one of the batch's
            // transactions refused since its check (a concurrent request filled the pool,
            // say) leaves those after it further ahead than they were checked for.
            let arrival = if restored {
                Arrival::Restored { state_nonce: nonce }
            } else {
                Arrival::New { state_nonce: nonce }
            };
            let replacing = mempool.waiting_hash(pending.sender, pending.nonce);
            let (sender, at) = (pending.sender, pending.nonce);
            let displaced = mempool.insert(pending, arrival)?;
            // Told of as pending once a block could take it, as geth tells of them: with the
            // ones it lets through after it, if it filled a gap.
            Ok((displaced, replacing, mempool.newly_executable(sender, nonce, at)))
        });
        match inserted {
            Ok((displaced, replacing, executable)) => {
                // Replaced or evicted: gone from the pool, so from disk too.
                let drops = displaced.iter().map(|dropped| {
                    if Some(*dropped) == replacing {
                        (*dropped, DropKind::Replaced, format!("replaced by {hash}"))
                    } else {
                        let why = format!("evicted from the full pool by {hash}, which pays more");
                        (*dropped, DropKind::Evicted, why)
                    }
                });
                self.drop_from_pool(&mempool, drops.collect(), head);
                // Sent again after it was dropped: pending again.
                if self.dropped.forget(&hash) {
                    self.keep_dropped(&[], &[hash]);
                }
                drop(mempool);
                if !restored {
                    for executable in executable {
                        self.accepted.push(executable);
                    }
                }
                Ok(hash)
            }
            Err(error) => {
                // Not acknowledged. Deleted under the lock, so that no other submission of the
                // same transaction writes its record between the decision and the delete; also
                // when the pool still holds the hash if the state has used its nonce (a block
                // just included it, and the pool is not settled yet): it can never run again.
                let used = matches!(error, SubmitError::NonceTooLow { .. });
                if used || !mempool.holds_or_awaits(&hash) {
                    self.store.delete_pending(&[hash])?;
                }
                Err(error)
            }
        }
    }

    /// Drops acknowledged transactions, out of `mempool` already: deletes their pending records
    /// (those the pool no longer holds or awaits), then notes them as dropped at `head`, each
    /// with its kind (counted in the metrics) and why, in one write. In that order: the log of
    /// writes keeps it, so a note that survives a power loss has its delete with it, and a
    /// restart never restores a transaction noted as dropped.
    fn drop_from_pool(&self, mempool: &Mempool, drops: Vec<(B256, DropKind, String)>, head: u64) {
        let hashes: Vec<B256> = drops.iter().map(|(hash, _, _)| *hash).collect();
        self.delete_records(mempool, &hashes);
        self.note_dropped(drops, head);
    }

    /// Notes acknowledged transactions, whose records are gone, as dropped at `head`, each with
    /// its kind (counted in the metrics) and why, in one write.
    fn note_dropped(&self, drops: Vec<(B256, DropKind, String)>, head: u64) {
        let (mut notes, mut forgotten) = (Vec::new(), Vec::new());
        for (hash, kind, why) in drops {
            Metrics::add(&self.metrics.dropped[kind.index()], 1);
            let (note, forgot) = self.dropped.note(hash, why, head);
            notes.push((hash, note));
            forgotten.extend(forgot);
        }
        self.keep_dropped(&notes, &forgotten);
    }

    /// Writes the dropped log's changes to the store; a failure is logged (the log in memory
    /// still has them).
    fn keep_dropped(&self, notes: &[(B256, Vec<u8>)], forgotten: &[B256]) {
        if let Err(error) = self.store.put_dropped(notes, forgotten) {
            tracing::warn!(%error, "dropped transactions' reasons not written");
        }
    }

    /// What became of a transaction: included (its record), waiting in the pool, dropped (why),
    /// or not known here.
    ///
    /// # Errors
    /// The store failed.
    pub fn transaction_status(&self, hash: B256) -> Result<TransactionStatus, StoreError> {
        // The pool first: a transaction leaves it only once its block is the head, so one not
        // waiting any more is found committed if it was included. The drops are noted and
        // forgotten under the pool's lock: read with it, they agree with the pool.
        let dropped = {
            let mempool = self.mempool.lock();
            if mempool.get(&hash).is_some() {
                return Ok(TransactionStatus::Pending);
            }
            self.dropped.get(&hash)
        };
        if let Some(record) = self.committed_transaction(hash)? {
            return Ok(TransactionStatus::Included(Box::new(record)));
        }
        Ok(dropped.map_or(TransactionStatus::Unknown, TransactionStatus::Dropped))
    }

    /// Deletes the records of transactions the mempool dropped, unless one is still needed (a
    /// submission of the same transaction is on its way). Called under the mempool lock, for
    /// the same reason as the delete of a refused transaction's record.
    fn delete_records(&self, mempool: &Mempool, hashes: &[B256]) {
        let unneeded: Vec<B256> =
            hashes.iter().copied().filter(|hash| !mempool.holds_or_awaits(hash)).collect();
        if unneeded.is_empty() {
            return;
        }
        // The transactions are out of the pool whatever happens here: a stale record is
        // dropped at restart, when its nonce is used or it expires again.
        if let Err(error) = self.store.delete_pending(&unneeded) {
            tracing::warn!(records = unneeded.len(), %error, "dropped transactions' records stay on disk");
        }
    }

    /// The node's metrics, as Prometheus text.
    #[must_use]
    pub fn metrics(&self) -> String {
        // The head's lock released before the pool's is taken (see `admit`).
        let head = self.head.read().number;
        self.metrics.render(head, self.pending_count(), self.store.memory())
    }

    /// Checks a signed transaction against the state and the mempool, and against the
    /// transactions before it in the same request (`earlier`: each sender's next nonce after
    /// them, updated here).
    fn check_transaction(
        &self,
        raw: &[u8],
        earlier: &mut HashMap<Address, u64>,
    ) -> Result<PendingTransaction, SubmitError> {
        if raw.len() > MAX_TRANSACTION_SIZE {
            return Err(SubmitError::Oversized);
        }
        // Exactly one transaction: bytes after it would be stored and served with it, uncharged.
        let envelope = TxEnvelope::decode_2718_exact(raw)
            .map_err(|error| SubmitError::Malformed(error.to_string()))?;
        let sender = envelope.recover_signer().map_err(|_| SubmitError::InvalidSender)?;
        let (pending, funds) = self.check_signed(raw, &envelope, sender)?;
        self.precheck(pending, funds, earlier)
    }

    /// Checks a transaction that passed [`check_signed`](Self::check_signed) with `funds`
    /// against the mempool, before it is written to disk: refused if too far ahead, if the pool
    /// is full or if the sender over-committed. The gap counts from the request's earlier
    /// transactions of the sender on (`earlier`, updated here), through those the pool holds
    /// after them.
    fn precheck(
        &self,
        pending: PendingTransaction,
        funds: Funds,
        earlier: &mut HashMap<Address, u64>,
    ) -> Result<PendingTransaction, SubmitError> {
        let sender = pending.sender;
        self.wait_out_commit();
        let mut mempool = self.mempool.lock();
        // A block committed and settled since the funds were read: its transactions have left
        // the pool, and the funds do not count them yet (the sender's next nonce would look
        // like the first of them). Read again, under the lock that settling takes.
        let funds = if mempool.settled_at() > funds.commits_before {
            let funds = self.funds(sender)?;
            funds.check(&pending)?;
            funds
        } else {
            funds
        };
        let state_nonce = funds.nonce;
        let from = earlier.get(&sender).map_or(state_nonce, |&earlier| earlier.max(state_nonce));
        let admission = mempool.check(&pending, Arrival::Precheck { from })?;
        check_overdraft(&mempool, &pending, funds)?;
        // Last, as geth does it: a signature recovery for each authorization of a transaction
        // that passed every other check (a refused one costs no more than any other), with the
        // pool free meanwhile (hundreds of recoveries would hold up blocks and every other
        // submission). The block then runs the authorizations recovered.
        let has_authorizations = matches!(
            &pending.transaction,
            DuetTransaction::Evm(tx) if !tx.authorization_list.is_empty()
        );
        let pending = if has_authorizations {
            drop(mempool);
            let pending = with_authorizations_recovered(pending);
            mempool = self.mempool.lock();
            pending
        } else {
            pending
        };
        funds.check_delegated(&mempool, &pending, earlier.get(&sender).copied())?;
        mempool.begin_submission(&pending);
        if admission.next == Some(pending.nonce) {
            earlier.insert(sender, pending.nonce + 1);
        }
        Ok(pending)
    }

    /// The checks against the state of a transaction whose signature recovered `sender` (a
    /// restored transaction was accepted by a node that may have had another chain id or
    /// state); returns it with the sender's balance and nonce in the state.
    fn check_signed(
        &self,
        raw: &[u8],
        envelope: &TxEnvelope,
        sender: Address,
    ) -> Result<(PendingTransaction, Funds), SubmitError> {
        if envelope.chain_id() != Some(self.config.chain_id) {
            return Err(SubmitError::ChainId);
        }
        let tx = duet_evm::tx_env(envelope, sender).map_err(|_| SubmitError::UnsupportedType)?;
        if tx.gas_limit > self.config.block_gas_limit {
            return Err(SubmitError::GasLimit);
        }
        if tx.gas_limit > TX_GAS_LIMIT_CAP {
            return Err(SubmitError::TransactionGasLimit {
                cap: TX_GAS_LIMIT_CAP,
                got: tx.gas_limit,
            });
        }
        if tx.gas_limit < duet_move::gas::TRANSACTION_BASE {
            return Err(SubmitError::IntrinsicGas);
        }
        if tx.gas_price < u128::from(self.config.base_fee) {
            return Err(SubmitError::FeeTooLow {
                max_fee: tx.gas_price,
                base_fee: self.config.base_fee,
            });
        }
        // Everything that needs no state first (as geth orders them): what a block would refuse
        // whatever the state costs no store read.
        let cost = tx.max_balance_spending().unwrap_or(U256::MAX);
        let (tx_nonce, max_fee, gas_limit) = (tx.nonce, tx.gas_price, tx.gas_limit);
        let tip = tx.gas_priority_fee.unwrap_or(tx.gas_price);
        let paid = tx.effective_gas_price(u128::from(self.config.base_fee));
        let (kind, transaction) = if tx.kind == TxKind::Call(MOVE_ENTRY_ADDRESS) {
            move_shape(&tx).map_err(SubmitError::Move)?;
            if tx.gas_priority_fee.is_some_and(|tip| tip > tx.gas_price) {
                return Err(SubmitError::TipAboveFeeCap);
            }
            let transaction = move_transaction(&tx, sender, paid)
                .map_err(|error| SubmitError::Move(error.to_string()))?;
            // A Move transaction's intrinsic gas counts its payload's bytes.
            if tx.gas_limit < duet_move::gas::intrinsic_gas(transaction.payload.encoded_len()) {
                return Err(SubmitError::IntrinsicGas);
            }
            (Kind::Move, DuetTransaction::Move(transaction))
        } else {
            // What every block would check before reading any state (the intrinsic gas of the
            // calldata, a creation and an access list; the calldata floor; the tip against the
            // max fee; the initcode's size).
            self.admission.check_transaction(&tx).map_err(refusal)?;
            (Kind::Evm, DuetTransaction::Evm(tx))
        };
        let hash = *envelope.tx_hash();
        let pending = PendingTransaction {
            hash,
            raw: Bytes::copy_from_slice(raw),
            sender,
            nonce: tx_nonce,
            max_fee,
            tip,
            paid,
            gas_limit,
            cost,
            kind,
            transaction,
            received: std::time::Instant::now(),
            authorities: Vec::new(),
        };
        self.wait_out_commit();
        let funds = self.funds(sender)?;
        funds.check(&pending)?;
        Ok((pending, funds))
    }

    /// Puts back into the mempool the accepted transactions a previous run left on disk;
    /// returns how many it kept.
    ///
    /// # Errors
    /// The database failed.
    pub fn restore_pending(&self) -> Result<usize, StoreError> {
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        // Each sender's first arrival among its records: senders take turns in about the order
        // they first sent, as before the restart (a sender whose first transactions were
        // included or replaced since counts from its oldest record left).
        let mut first_arrival: HashMap<Address, u64> = HashMap::new();
        for crate::store::PendingRecord { key, arrival, raw } in self.store.pending()? {
            // The hash first: recovering the signer costs far more.
            let signed = TxEnvelope::decode_2718_exact(raw.as_slice())
                .ok()
                .filter(|envelope| envelope.tx_hash().as_slice() == key.as_slice())
                .and_then(|envelope| Some((envelope.recover_signer().ok()?, envelope)));
            match signed {
                Some((sender, envelope)) => {
                    let first = first_arrival.entry(sender).or_insert(arrival);
                    *first = (*first).min(arrival);
                    records.push((sender, envelope, raw));
                }
                // Damaged, or not written by this node as it writes them now (bytes after the
                // transaction were once kept).
                None => unreadable.push(key),
            }
        }
        // Said loudly and noted as dropped (a client asking after one learns why), then
        // forgotten, all in one write.
        let mut refused = Vec::new();
        if !unreadable.is_empty() {
            tracing::error!(
                count = unreadable.len(),
                "accepted transactions' records could not be read on restart and are dropped"
            );
            let why = "its record could not be read when the node restarted";
            refused.extend(unreadable.iter().filter_map(|key| {
                let hash = B256::try_from(key.as_slice()).ok()?;
                Some((hash, DropKind::Restart, why.to_owned()))
            }));
            self.store.delete_pending(&unreadable)?;
        }
        // Senders in the order they first sent, each one's transactions in nonce order, so none
        // looks too far ahead. They are on disk already: checked and admitted, not written again.
        records.sort_by_key(|(sender, envelope, _)| {
            (first_arrival[sender], *sender, envelope.nonce())
        });
        let mut kept = 0;
        for (sender, envelope, raw) in records {
            let admitted = match self.check_signed(&raw, &envelope, sender) {
                // A refusal deletes the record.
                Ok((pending, _)) => self.admit(with_authorizations_recovered(pending), true),
                Err(SubmitError::Store(error)) => return Err(error),
                Err(error) => {
                    self.store.delete_pending(&[*envelope.tx_hash()])?;
                    Err(error)
                }
            };
            match admitted {
                Ok(_) => kept += 1,
                Err(SubmitError::Store(error)) => return Err(error),
                // Included or made invalid since: forgotten.
                Err(error) => {
                    let hash = *envelope.tx_hash();
                    tracing::info!(%hash, %error, "an accepted transaction was dropped on restart");
                    let why = format!("refused when the node restarted: {error}");
                    refused.push((hash, DropKind::Restart, why));
                }
            }
        }
        self.note_dropped(refused, self.head().number);
        Ok(kept)
    }

    /// Builds the next block from the mempool, executes it with Block-STM and commits it.
    ///
    /// # Errors
    /// The block could not be built (no block was written), or its write failed (now or
    /// before: see [`ProduceError::WriteFailed`]).
    pub fn produce_block(&self) -> Result<Arc<Block>, ProduceError> {
        let mut producing = self.producing.lock();
        if let Some(failed) = &*producing {
            return Err(ProduceError::WriteFailed(failed.clone()));
        }
        let parent = self.head();
        let number = parent.number + 1;
        let timestamp = now().max(parent.timestamp + 1);
        // The senders' nonces are read with the mempool unlocked, so submissions go on.
        let senders = self.mempool.lock().senders();
        let nonces: HashMap<Address, u64> = senders
            .into_iter()
            .map(|sender| (sender, self.account(sender).map_or(u64::MAX, |(nonce, _)| nonce)))
            .collect();
        let evm = self
            .block_evm(block_env(&self.config, number, timestamp))
            .map_err(|error| format!("block {number}: {error}"))?;
        let vm = DuetVm::new(evm, Arc::clone(&self.move_vm));
        let started = std::time::Instant::now();
        let (candidates, output, published) =
            self.fill_block(&vm, &nonces).map_err(|error| format!("block {number}: {error}"))?;
        let execution_micros = started.elapsed().as_micros() as u64;
        let mut block = Block::empty(number, parent.hash, timestamp, &self.config);
        let (mut records, rejected) = self.records(&candidates, output.results, &mut block);
        // The values the block replaces, for the state history: read now, before the locks
        // that calls and proofs wait for.
        let previous = self
            .store
            .previous_values(&output.state_updates)
            .map_err(|error| format!("block {number}: {error}"))?;
        block.set_roots(&records);
        let mut cache = self.tree.lock();
        let leaves: Vec<_> = merkle::leaves(&output.state_updates).collect();
        let update = merkle::update(&cache.over(&self.store), leaves.iter().copied())
            .map_err(|error| format!("block {number}: {error}"))?;
        block.seal(update.root, records.iter().map(|record| &record.raw));
        for record in &mut records {
            record.block_hash = block.hash;
        }
        let build_micros = started.elapsed().as_micros() as u64;
        Metrics::add(&self.metrics.execution_micros, execution_micros);
        Metrics::add(&self.metrics.sealing_micros, build_micros - execution_micros);
        let committing = std::time::Instant::now();
        // The included transactions' records go with the block. A rejected one's go after it,
        // under the mempool lock: another submission of it may be writing its record now, and
        // would be acknowledged once the rejected one has left the pool.
        let settled: Vec<B256> = records.iter().map(|record| record.hash).collect();
        // A block that published Move code: calls that start while it commits wait for it and
        // run on a fresh Move VM, whose code cache holds no code the block replaced (the old VM
        // could serve old code over the new state).
        let call_move_vm = published.then(|| self.call_move_vm.write());
        let block = Arc::new(block);
        // Marked as failed until the write is known done: a panic between the write and its
        // bookkeeping would otherwise let the next try write block `number` again.
        *producing = Some(format!("writing block {number} did not finish"));
        // The head moves within the commit: a call's state and head are of one block.
        self.store
            .commit_then(
                &BlockCommit {
                    block: &block,
                    transactions: &records,
                    state: &output.state_updates,
                    settled: &settled,
                    nodes: &update.writes,
                },
                CommitNotes {
                    previous: Some(&previous),
                    leaves: Some(&leaves),
                    publishes: published,
                },
                || *self.head.write() = Arc::clone(&block),
            )
            .map_err(|error| {
                let failed = format!("writing block {number} failed: {error}");
                *producing = Some(failed.clone());
                ProduceError::WriteFailed(failed)
            })?;
        *producing = None;
        self.recent_hashes.write().push(number, block.hash);
        // Only now: a block that failed to commit leaves the cache as the store is.
        cache.committed(&update.writes);
        let commit_micros = committing.elapsed().as_micros() as u64;
        tracing::debug!(
            number,
            state_updates = output.state_updates.len(),
            tree_writes = update.writes.len(),
            build_ms = build_micros / 1000,
            commit_ms = commit_micros / 1000,
            "block written"
        );
        Metrics::add(&self.metrics.commit_micros, commit_micros);
        Metrics::add(&self.metrics.blocks, 1);
        Metrics::add(&self.metrics.transactions, block.transactions.len() as u64);
        Metrics::add(&self.metrics.gas, block.gas_used);
        drop(cache);
        if let Some(mut call_move_vm) = call_move_vm {
            *call_move_vm = CallVm { vm: self.new_call_move_vm(), since: number };
        }
        // Accounts whose nonce the block moved without sending (a delegated account's code
        // that ran CREATE when another transaction called it): their waiting transactions may
        // be stale too.
        let moved: Vec<Address> = output
            .state_updates
            .iter()
            .filter_map(|(key, _)| match key {
                StateKey::Account(address) => Some(*address),
                _ => None,
            })
            .collect();
        self.settle_mempool(&candidates, &moved, (&rejected, settled), number);
        Ok(block)
    }

    /// Takes transactions from the mempool and executes them, filling the block by the gas its
    /// transactions use, as geth and anvil fill theirs: a transaction is taken while its gas limit
    /// fits in the gas the block has left. Block-STM runs a set of transactions at once, before
    /// their gas used is known, so a block fills in rounds, each on top of the state the earlier
    /// ones left. The first takes transactions whose gas limits add up to at most the block gas
    /// limit. Each next one takes more, as many as the gas left holds if they use the share of
    /// their limits that the earlier rounds' transactions used (at most four times the gas left
    /// in limits), runs them, and keeps those that fit by the rule above, in block order: when
    /// one does not, the round runs again without it and those after it, which wait for the next
    /// round or block. Rounds stop when the gas left is below a transaction's least gas, when
    /// none is waiting or none fits, or after [`FILL_ROUNDS`] rounds. Returns the transactions
    /// taken, in block order, with the block's output and whether one of them publishes Move
    /// modules.
    fn fill_block(
        &self,
        vm: &DuetVm,
        nonces: &HashMap<Address, u64>,
    ) -> Result<(Vec<PendingTransaction>, VmBlockOutput<DuetVm>, bool), BlockError<StateKey>> {
        let config = ExecutorConfig { threads: self.threads, ..ExecutorConfig::default() };
        // The executor of the block before's memory and threads (see `executor_parts`). A panic
        // in the rounds leaves the parts behind, and the next block starts afresh.
        let parts = std::mem::take(&mut *self.executor_parts.lock());
        let executor = duet_evm::MixedBlockExecutor::parallel_with_parts(vm, config, parts);
        let mut flush = FlushUnlessFilled { vm, filled: false };
        let filled = self.fill_rounds(vm, &executor, nonces);
        flush.filled = filled.is_ok();
        drop(flush);
        *self.executor_parts.lock() = executor.into_parts();
        filled
    }

    /// The rounds of [`fill_block`](Self::fill_block), on `executor`.
    fn fill_rounds(
        &self,
        vm: &DuetVm,
        executor: &duet_evm::MixedBlockExecutor<'_>,
        nonces: &HashMap<Address, u64>,
    ) -> Result<(Vec<PendingTransaction>, VmBlockOutput<DuetVm>, bool), BlockError<StateKey>> {
        // The block's parent, read before the pool's lock (see `admit`).
        let parent = self.head().number;
        let mut candidates: Vec<PendingTransaction> = Vec::new();
        let mut results = Vec::new();
        // The state the rounds so far left: the first round's updates, then, from the second
        // round on, every round's by key (the state the next round runs on).
        let mut updates = Vec::new();
        let mut top: Option<BTreeMap<StateKey, Option<StateValue>>> = None;
        // Each sender's next nonce after the transactions taken (`u64::MAX` after a rejected one:
        // the sender's later transactions wait for the next block).
        let mut next_nonces: HashMap<Address, u64> = HashMap::new();
        let mut gas_left = self.config.block_gas_limit;
        // Gas used and gas limits of the transactions executed so far.
        let (mut used, mut limits) = (0u128, 0u128);
        let mut published = false;
        for round in 0..FILL_ROUNDS {
            let nonce_of = |sender| {
                next_nonces
                    .get(&sender)
                    .or_else(|| nonces.get(&sender))
                    .copied()
                    .unwrap_or(u64::MAX)
            };
            let most = self.config.max_block_transactions - candidates.len();
            let mut taken = {
                let mut mempool = self.mempool.lock();
                if round == 0 {
                    self.expire(&mut mempool, nonce_of, parent);
                    mempool.executable(nonce_of, most, gas_left)
                } else {
                    let limits_to_take = (u128::from(gas_left) * limits)
                        .checked_div(used)
                        // A sixteenth short of the estimate, so that a round rarely runs again.
                        .map_or(u128::from(gas_left), |limits| {
                            (limits / 16 * 15).clamp(u128::from(gas_left), 4 * u128::from(gas_left))
                        });
                    let limits_to_take = u64::try_from(limits_to_take).unwrap_or(u64::MAX);
                    mempool.executable_more(nonce_of, most, limits_to_take, gas_left)
                }
            };
            if round == 1 && !taken.is_empty() {
                // A second round runs: the first round's updates become the state it runs on.
                top = Some(std::mem::take(&mut updates).into_iter().collect());
            }
            let mut transactions: Vec<DuetTransaction> =
                taken.iter().map(|pending| pending.transaction.clone()).collect();
            let first = candidates.len();
            let run = |taken: &mut Vec<PendingTransaction>, transactions: &mut Vec<_>| {
                self.run_round(executor, taken, transactions, top.as_ref(), first, parent)
            };
            let mut output = run(&mut taken, &mut transactions)?;
            let (fitting, left) = fitting(&taken, &output.results, gas_left);
            if fitting < taken.len() {
                // Those left out may be replaced again.
                self.mempool.lock().put_back(&taken.split_off(fitting));
                transactions.truncate(fitting);
                output = run(&mut taken, &mut transactions)?;
            }
            gas_left = left;
            if published && round > 0 {
                // Code loaded from an earlier round's publish, which is not committed yet.
                duet_move::Barriers::after_barrier(vm);
            }
            if taken.is_empty() {
                break;
            }
            published |= taken
                .iter()
                .any(|pending| duet_move::Barriers::is_barrier(vm, &pending.transaction));
            for (pending, result) in taken.iter().zip(&output.results) {
                let next = next_nonces.entry(pending.sender).or_insert(0);
                match result {
                    // Counted whatever came before: the block holds it.
                    TransactionResult::Executed(receipt) => {
                        used += u128::from(receipt.gas_used());
                        limits += u128::from(pending.gas_limit);
                        if *next != u64::MAX {
                            *next = pending.nonce + 1;
                        }
                    }
                    _ => *next = u64::MAX,
                }
            }
            results.extend(output.results);
            match &mut top {
                Some(top) => top.extend(output.state_updates),
                None => updates = output.state_updates,
            }
            candidates.extend(taken);
            if gas_left < duet_move::gas::TRANSACTION_BASE {
                break;
            }
        }
        let state_updates = match top {
            Some(top) => top.into_iter().collect(),
            None => updates,
        };
        Ok((candidates, BlockOutput { results, state_updates }, published))
    }

    /// Runs one round of [`fill_block`](Self::fill_block): the transactions `taken`, the first
    /// at place `first` of the block (errors name transactions by their place in the block), on
    /// the store, with the state the earlier rounds left (`top`) over it from the second round
    /// on, for the block after `parent`. A transaction that fails the whole round (an error that
    /// names it) leaves the pool ([`drop_culprit`](Self::drop_culprit)) and the round runs
    /// again without it and its sender's later transactions (which wait, above the gap it
    /// leaves); after [`MAX_CULPRITS`] such transactions, the round fails.
    fn run_round(
        &self,
        executor: &duet_evm::MixedBlockExecutor<'_>,
        taken: &mut Vec<PendingTransaction>,
        transactions: &mut Vec<DuetTransaction>,
        top: Option<&BTreeMap<StateKey, Option<StateValue>>>,
        first: usize,
        parent: u64,
    ) -> Result<VmBlockOutput<DuetVm>, BlockError<StateKey>> {
        let mut culprits = 0;
        loop {
            if taken.is_empty() {
                return Ok(BlockOutput { results: Vec::new(), state_updates: Vec::new() });
            }
            let (output, stats) = match top {
                None => executor.execute_block_with_stats(transactions, &self.store),
                Some(top) => executor
                    .execute_block_with_stats(transactions, &LayeredStorage::new(&self.store, top)),
            };
            self.metrics.add_execution(&stats);
            let error = match output {
                Ok(output) => return Ok(output),
                Err(error) => error,
            };
            let named = match &error {
                BlockError::DeltaOutOfBounds { txn_index, .. }
                | BlockError::DeltaOnNonNumeric { txn_index, .. } => {
                    Some(*txn_index).filter(|at| *at < taken.len())
                }
                BlockError::Storage(_) | BlockError::Invariant(_) => None,
            };
            let error = error.shifted(first);
            let Some(at) = named else { return Err(error) };
            self.drop_culprit(taken, at, &error, parent);
            // Rare: the round runs again without the transactions that left it.
            *transactions = taken.iter().map(|pending| pending.transaction.clone()).collect();
            culprits += 1;
            if culprits == MAX_CULPRITS {
                return Err(error);
            }
        }
    }

    /// Drops `taken[at]`, which failed its round with `error`, from the pool (noted as
    /// rejected) and from the round, with its sender's later transactions in the round (given
    /// back to the pool: their nonces follow the dropped one's). `head` is the head's number
    /// (read before the pool's lock was taken).
    fn drop_culprit(
        &self,
        taken: &mut Vec<PendingTransaction>,
        at: usize,
        error: &BlockError<StateKey>,
        head: u64,
    ) {
        let (hash, sender, nonce) = (taken[at].hash, taken[at].sender, taken[at].nonce);
        tracing::warn!(%hash, %error, "a transaction failed its block: dropped from the pool");
        let leaves =
            |pending: &PendingTransaction| pending.sender == sender && pending.nonce >= nonce;
        let (left, kept): (Vec<_>, Vec<_>) = std::mem::take(taken).into_iter().partition(leaves);
        *taken = kept;
        let mut mempool = self.mempool.lock();
        mempool.put_back(&left);
        mempool.remove(&hash);
        let why = format!("rejected: its block could not be built with it ({error})");
        self.drop_from_pool(&mempool, vec![(hash, DropKind::Rejected, why)], head);
    }

    /// Drops the transactions that waited above a nonce gap for the mempool's lifetime, when it
    /// is time to look for them.
    /// `head` is the head's number (read before the pool's lock was taken).
    fn expire(&self, mempool: &mut Mempool, nonce_of: impl FnMut(Address) -> u64, head: u64) {
        let now = std::time::Instant::now();
        if !self.expiry_due(now) {
            return;
        }
        let expired = mempool.expire(nonce_of, now, self.config.mempool_lifetime);
        if !expired.is_empty() {
            tracing::info!(
                transactions = expired.len(),
                "dropped transactions that waited above a nonce gap for the mempool's lifetime"
            );
            let lifetime = self.config.mempool_lifetime.as_secs();
            let why = format!(
                "expired: it waited above a nonce gap for the pool's lifetime ({lifetime} s)"
            );
            let drops = expired.iter().map(|hash| (*hash, DropKind::Expired, why.clone()));
            self.drop_from_pool(mempool, drops.collect(), head);
        }
    }

    /// Whether the block built at `now` looks for expired transactions: every quarter of the
    /// lifetime, at most every minute.
    fn expiry_due(&self, now: std::time::Instant) -> bool {
        let mut next = self.next_expiry.lock();
        if now < *next {
            return false;
        }
        *next = now + (self.config.mempool_lifetime / 4).min(std::time::Duration::from_secs(60));
        true
    }

    /// The block's transactions with their receipts, counted into `block`, and the hashes of
    /// those it rejected for good.
    fn records(
        &self,
        candidates: &[PendingTransaction],
        results: Vec<TransactionResult<DuetReceipt, duet_evm::DuetError>>,
        block: &mut Block,
    ) -> (Vec<TransactionRecord>, Vec<(B256, String)>) {
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        let mut log_count = 0;
        for (pending, result) in candidates.iter().zip(results) {
            let receipt = match result {
                TransactionResult::Executed(receipt) => receipt,
                TransactionResult::Rejected(error) => {
                    tracing::debug!(hash = %pending.hash, %error, "transaction rejected by the block");
                    // Behind a rejected transaction of the same sender: it waits for a new one
                    // with the missing nonce.
                    if !error.is_future_nonce() {
                        rejected.push((
                            pending.hash,
                            format!("rejected by block {}: {error}", block.number),
                        ));
                    }
                    continue;
                }
                TransactionResult::Panicked(message) => {
                    tracing::error!(hash = %pending.hash, %message, "transaction panicked");
                    let reason = format!(
                        "rejected by block {}: the executor failed: {message}",
                        block.number
                    );
                    rejected.push((pending.hash, reason));
                    continue;
                }
            };
            let mut record = self.record(pending, receipt, block, records.len() as u64);
            record.first_log_index = log_count;
            log_count += record.logs.len() as u64;
            block.transactions.push(record.hash);
            records.push(record);
        }
        (records, rejected)
    }

    /// After a block: drops from the mempool what it rejected, what it included, and what an
    /// included transaction replaced, and from disk the records of the rejected and the replaced
    /// (the included ones' went with the block), unless another submission of one is on its way.
    fn settle_mempool(
        &self,
        candidates: &[PendingTransaction],
        moved: &[Address],
        (rejected, settled): (&[(B256, String)], Vec<B256>),
        number: u64,
    ) {
        // The senders' nonces now, read before the mempool is locked (the block's commit is
        // counted: no other block commits before this one is settled).
        let commits = self.store.commits();
        // The accounts set-code transactions named too (an authorization uses its account's
        // nonce), and those whose header the block changed (`moved`) that have transactions
        // waiting: any of them can leave a waiting transaction of that account stale.
        let waiting: Vec<Address> = {
            let mempool = self.mempool.lock();
            moved.iter().copied().filter(|account| mempool.has_waiting(*account)).collect()
        };
        let mut senders: Vec<Address> = candidates
            .iter()
            .flat_map(|pending| {
                std::iter::once(pending.sender).chain(pending.authorities.iter().copied())
            })
            .chain(waiting)
            .collect();
        senders.sort_unstable();
        senders.dedup();
        let nonces: Vec<(Address, u64)> = senders
            .into_iter()
            .map(|sender| (sender, self.account(sender).map_or(0, |(nonce, _)| nonce)))
            .collect();
        let settled: std::collections::HashSet<B256> = settled.into_iter().collect();
        let mut mempool = self.mempool.lock();
        mempool.block_done(commits);
        let why_used = format!("its nonce was used by another transaction in block {number}");
        let mut drops: Vec<(B256, DropKind, String)> =
            rejected.iter().map(|(hash, why)| (*hash, DropKind::Rejected, why.clone())).collect();
        for (hash, _, _) in &drops {
            mempool.remove(hash);
        }
        let mut executable = Vec::new();
        for (sender, nonce) in nonces {
            // What is left below the nonce was replaced by an included transaction (or its
            // nonce used by a set-code transaction's authorization).
            let used =
                mempool.prune(sender, nonce).into_iter().filter(|hash| !settled.contains(hash));
            drops.extend(used.map(|hash| (hash, DropKind::NonceUsed, why_used.clone())));
            // Those the block let through (a gap an authorization closed), told of now.
            executable.extend(mempool.newly_executable(sender, nonce, nonce));
        }
        self.drop_from_pool(&mempool, drops, number);
        drop(mempool);
        for hash in executable {
            self.accepted.push(hash);
        }
    }

    /// The stored form of an executed transaction, gas counted into `block`.
    fn record(
        &self,
        pending: &PendingTransaction,
        receipt: DuetReceipt,
        block: &mut Block,
        index: u64,
    ) -> TransactionRecord {
        let gas_used = receipt.gas_used();
        let (success, logs, contract_address, move_status, move_events) = match receipt {
            DuetReceipt::Evm(receipt) => {
                // A creation's address whatever its outcome, as geth gives it (a failed
                // deployment is named by the address it would have had).
                let contract = match (&receipt, &pending.transaction) {
                    (ExecutionResult::Success { output: Output::Create(_, address), .. }, _) => {
                        *address
                    }
                    (_, DuetTransaction::Evm(tx)) if tx.kind == TxKind::Create => {
                        Some(pending.sender.create(tx.nonce))
                    }
                    _ => None,
                };
                (receipt.is_success(), receipt.into_logs(), contract, None, Vec::new())
            }
            DuetReceipt::Move(receipt) => {
                let (success, status) = (receipt.is_success(), receipt.status.to_string());
                let events = receipt
                    .events
                    .into_iter()
                    .map(|event| (event.type_tag, Bytes::from(event.data.into_vec())))
                    .collect();
                (success, receipt.logs, None, Some(status), events)
            }
        };
        block.gas_used += gas_used;
        let effective_gas_price = match &pending.transaction {
            DuetTransaction::Evm(tx) => tx.effective_gas_price(u128::from(self.config.base_fee)),
            DuetTransaction::Move(tx) => tx.gas_price,
        };
        TransactionRecord {
            hash: pending.hash,
            block_number: block.number,
            block_hash: B256::ZERO,
            index,
            from: pending.sender,
            kind: pending.kind,
            raw: pending.raw.clone(),
            success,
            gas_used,
            cumulative_gas_used: block.gas_used,
            effective_gas_price,
            contract_address,
            logs,
            first_log_index: 0,
            move_status,
            move_events,
        }
    }

    /// A turn to run calls (`eth_call`, `eth_estimateGas`, Move views): a few per core (see
    /// [`crate::turns`]); the task waits for one without holding a thread.
    pub async fn call_turn(&self) -> Turn {
        self.call_turns.take().await
    }

    /// [`call_turn`](Self::call_turn) for a caller off the async threads (the thread waits).
    #[must_use]
    pub fn call_turn_blocking(&self) -> Turn {
        self.call_turns.take_blocking()
    }

    /// Runs `tx` on the latest state without committing anything (`eth_call`), in the caller's
    /// `turn` ([`call_turn`](Self::call_turn)): no nonce, fee or balance checks; returns the
    /// output and the gas used.
    ///
    /// # Errors
    /// See [`CallError`].
    pub fn call(&self, turn: &Turn, tx: TxEnv) -> Result<(Bytes, u64), CallError> {
        self.call_at_block(turn, tx, StateBlock::Latest, &CallOverrides::default())
    }

    /// [`call`](Self::call) on the state after `block`, in that block's environment (for
    /// [`StateBlock::Pending`], the next block's): the latest when it runs or one of the
    /// [`readable_blocks`](Store::readable_blocks).
    ///
    /// # Errors
    /// [`CallError::Unavailable`] for a block that does not exist or whose state is not kept;
    /// else see [`CallError`].
    pub fn call_at_block(
        &self,
        _turn: &Turn,
        tx: TxEnv,
        block: StateBlock,
        overrides: &CallOverrides,
    ) -> Result<(Bytes, u64), CallError> {
        let at = self.call_state(block, tx.caller, overrides)?;
        self.call_at(&at, tx)
    }

    /// What calls from `caller` run on: the state after `block` (for
    /// [`StateBlock::Pending`], with the caller's transactions waiting in the pool run on it)
    /// under `overrides`, that block, and a Move VM whose code cache holds that block's code.
    fn call_state(
        &self,
        block: StateBlock,
        caller: Address,
        overrides: &CallOverrides,
    ) -> Result<CallState<'_>, CallError> {
        let mut attempts = 0;
        loop {
            let (head, state, mut move_vm) = self.state_and_vm(block)?;
            let next = block == StateBlock::Pending;
            let (pool, settled_since) = if next {
                self.pool_writes(caller, &head, &state, &mut move_vm)?
            } else {
                (BTreeMap::new(), false)
            };
            // A block that committed after the state was taken may have taken some of the
            // caller's transactions out of the pool before it was read: then run on its state
            // (a few times at most: blocks mined back to back could otherwise starve a call).
            attempts += 1;
            if !settled_since || attempts == 3 {
                let block = overrides.block;
                let overrides = OverrideLayer::new(overrides, &LayeredStorage::new(&state, &pool))?;
                return Ok(CallState { move_vm, head, state, next, pool, overrides, block });
            }
        }
    }

    /// The state after `block`, that block, and a Move VM whose code cache holds that block's
    /// code.
    fn state_and_vm(
        &self,
        block: StateBlock,
    ) -> Result<(Arc<Block>, StateAt<'_>, Arc<MoveVm>), CallError> {
        // The Move VM's lock first, held until the state is taken: a block that published
        // modules holds it from before its commit until it has replaced the VM (and a block
        // committing without it cannot be waiting for it, so waiting for its commit here ends).
        let call_vm = self.call_move_vm.read();
        let (head, state) = self.state_at(block)?;
        // The call VM's code is that of the blocks since it was made; a call at an earlier
        // block gets a VM of its own, which loads that block's code.
        let move_vm = if head.number >= call_vm.since {
            Arc::clone(&call_vm.vm)
        } else {
            self.new_call_move_vm()
        };
        Ok((head, state, move_vm))
    }

    /// The writes of `caller`'s transactions waiting in the pool, from its nonce in `state` on
    /// (up to [`MAX_POOL_TRANSACTIONS_IN_CALLS`]), run in order as the block after `head`: what
    /// a `pending` call of the caller sees, as a transaction it sends after them would (an
    /// approval, then the call that spends it). A transaction that publishes modules gives the
    /// call a Move VM of its own, so the code never reaches the shared one. Also whether the
    /// pool had settled a block `state` does not have (its included transactions gone from the
    /// pool, their writes not in `state`): then the writes miss them.
    fn pool_writes(
        &self,
        caller: Address,
        head: &Block,
        state: &StateAt<'_>,
        move_vm: &mut Arc<MoveVm>,
    ) -> Result<(BTreeMap<StateKey, Option<StateValue>>, bool), CallError> {
        let invalid = |error: &dyn std::fmt::Display| CallError::Invalid(error.to_string());
        let nonce = state.account(caller).map_err(|error| invalid(&error))?.0;
        let (waiting, settled_since): (Vec<DuetTransaction>, bool) = {
            let mempool = self.mempool.lock();
            let settled_since = mempool.settled_at() > state.commits();
            // Gas limits adding up to one transaction's at most: a pending call costs at most
            // about twice a call, whoever's waiting transactions it names.
            let mut gas = self.max_transaction_gas();
            let waiting = (nonce..)
                .zip(mempool.waiting(caller).skip_while(|pending| pending.nonce < nonce))
                .take_while(|(next, pending)| pending.nonce == *next)
                .take(MAX_POOL_TRANSACTIONS_IN_CALLS)
                .take_while(|(_, pending)| {
                    let fits = pending.gas_limit <= gas;
                    gas = gas.saturating_sub(pending.gas_limit);
                    fits
                })
                .map(|(_, pending)| pending.transaction.clone())
                .collect();
            (waiting, settled_since)
        };
        if waiting.is_empty() {
            return Ok((BTreeMap::new(), settled_since));
        }
        let next_block = block_env(&self.config, head.number + 1, head.timestamp + 1);
        let vm = |move_vm: &Arc<MoveVm>| -> Result<DuetVm, CallError> {
            let evm = self.block_evm(next_block.clone()).map_err(|error| invalid(&error))?;
            Ok(DuetVm::new(evm, Arc::clone(move_vm)))
        };
        let mut duet_vm = vm(move_vm)?;
        if waiting.iter().any(|transaction| duet_move::Barriers::is_barrier(&duet_vm, transaction))
        {
            *move_vm = self.new_call_move_vm();
            duet_vm = vm(move_vm)?;
        }
        // As a block runs them: the Move VM's code cache flushed after each publication.
        let output = duet_evm::MixedBlockExecutor::sequential(&duet_vm)
            .execute_block(&waiting, state)
            .map_err(|error| invalid(&error))?;
        Ok((output.state_updates.into_iter().collect(), settled_since))
    }

    /// The state after `block` and that block: the latest, or one of the
    /// [`readable_blocks`](Store::readable_blocks) (waits while a block commits).
    ///
    /// # Errors
    /// Why there is no such state, worded for users: the block does not exist (yet), or its
    /// state is no longer kept; or the database failed.
    pub fn state_at(
        &self,
        block: StateBlock,
    ) -> Result<(Arc<Block>, StateAt<'_>), StateUnavailable> {
        let (head, state) = self.latest_state();
        let number = match block {
            StateBlock::Pending | StateBlock::Latest => return Ok((head, state)),
            StateBlock::Number(number) => number,
            StateBlock::Hash(hash) => {
                self.store.block_number(hash)?.ok_or(StateUnavailable::UnknownHash(hash))?
            }
        };
        if number == head.number {
            return Ok((head, state));
        }
        if number > head.number {
            return Err(StateUnavailable::NotYet);
        }
        let gone = |head: u64| StateUnavailable::Gone {
            number,
            kept: self.store.history_blocks(),
            readable: self.store.readable_blocks(head),
        };
        if !self.store.readable_blocks(head.number).contains(&number) {
            return Err(gone(head.number));
        }
        let block = self.store.block(number)?.ok_or_else(|| {
            StateUnavailable::Failed(StoreError::Corrupt(format!("block {number} is missing")))
        })?;
        // `None`: blocks committed meanwhile let its history go (the window as it is now).
        let state = state.back_to(number).ok_or_else(|| gone(self.head().number))?;
        Ok((Arc::new(block), state))
    }

    /// What `read` finds in the state at `block`: for `latest` and `pending`, the latest state
    /// when it reads (a read of keys runs no pool transactions); for a number or a hash, the
    /// state after that block (see [`state_at`](Self::state_at)).
    ///
    /// # Errors
    /// See [`StateUnavailable`].
    pub fn read_at<T>(
        &self,
        block: StateBlock,
        read: impl FnOnce(&dyn ReadState) -> Result<T, StoreError>,
    ) -> Result<T, StateUnavailable> {
        Ok(match block {
            StateBlock::Latest | StateBlock::Pending => read(&self.store)?,
            block => read(&self.state_at(block)?.1)?,
        })
    }

    /// [`call`](Self::call) on `at`, once the caller has a turn.
    fn call_at(&self, at: &CallState<'_>, tx: TxEnv) -> Result<(Bytes, u64), CallError> {
        if tx.kind == TxKind::Call(MOVE_ENTRY_ADDRESS) {
            return self.move_call_at(at, tx);
        }
        call_outcome(self.run_call(&self.call_evm(at, &tx)?, at, tx)?)
    }

    /// A call of the Move entry address on `at`: the Move transaction its calldata is, run as a
    /// block would run it (the EVM has nothing at that address, so an EVM run of it answered
    /// success for any payload, and its gas, the calldata's alone, was an estimate the
    /// transaction then ran out of); its gas used and no output, or its Move status as the
    /// failure. Move gas does not depend on the limit, so an estimate's first run finds it.
    fn move_call_at(&self, at: &CallState<'_>, tx: TxEnv) -> Result<(Bytes, u64), CallError> {
        let (receipt, _) = self.move_call_output(at, tx, None)?;
        if receipt.is_success() {
            Ok((Bytes::new(), receipt.gas_used))
        } else {
            Err(CallError::Halted(format!("Move transaction failed: {}", receipt.status)))
        }
    }

    /// The receipt of the Move transaction a call of the Move entry address on `at` is (see
    /// [`move_call_at`](Self::move_call_at); a gas limit of 0 is a transaction's most), with
    /// the call's trace if `trace` asks.
    fn move_call_output(
        &self,
        at: &CallState<'_>,
        mut tx: TxEnv,
        trace: Option<CallTraceConfig>,
    ) -> Result<(duet_move::MoveReceipt, Option<duet_evm::trace::Trace>), CallError> {
        move_shape(&tx).map_err(CallError::Invalid)?;
        if tx.gas_limit == 0 {
            tx.gas_limit = self.max_transaction_gas();
        }
        tx.nonce = at.nonce(tx.caller)?;
        // At no price, as EVM calls charge no fee: Move's gas does not depend on it, and a
        // sender need not hold the limit's worth at the price named to have it estimated.
        let transaction = move_transaction(&tx, tx.caller, 0).map_err(|error| {
            CallError::Invalid(format!("a Move transaction's payload: {error}"))
        })?;
        // A publication runs on a VM of its own, whose code cache no later call reads.
        let move_vm = match &transaction.payload {
            MovePayload::ModuleBundle(_) => self.new_call_move_vm(),
            MovePayload::EntryFunction(_) => Arc::clone(&at.move_vm),
        };
        let mut evm = self.call_evm(at, &tx)?;
        if let Some(config) = trace {
            evm = evm.with_call_tracer(config);
        }
        let vm = DuetVm::new(evm, move_vm);
        let output = at
            .reading(|state| {
                duet_evm::MixedBlockExecutor::sequential(&vm)
                    .execute_block(&[DuetTransaction::Move(transaction)], state)
            })
            .map_err(|error| CallError::Invalid(error.to_string()))?;
        match output.results.into_iter().next() {
            Some(TransactionResult::Executed(DuetReceipt::Move(receipt))) => {
                let trace = trace.and_then(|_| vm.evm().take_call_traces().pop());
                Ok((receipt, trace))
            }
            Some(TransactionResult::Rejected(error)) => Err(CallError::Invalid(error.to_string())),
            Some(TransactionResult::Panicked(message)) => Err(CallError::Invalid(message)),
            Some(TransactionResult::Executed(DuetReceipt::Evm(_))) | None => {
                Err(CallError::Invalid("no Move result".to_owned()))
            }
        }
    }

    /// A new Move VM for calls, views and traces: paying fees to the chain's fee vault, keeping
    /// nothing for the VM blocks run on ([`MoveVm::for_calls`]).
    fn new_call_move_vm(&self) -> Arc<MoveVm> {
        Arc::new(MoveVm::for_calls(self.config.fee_vault))
    }

    /// The EVM calls on `at` run in: its block's environment (for a pending call, the next
    /// block's), with the Move call precompile, and without nonce, balance or fee checks.
    fn call_evm(&self, at: &CallState<'_>, tx: &TxEnv) -> Result<EvmVm, CallError> {
        let block = if at.next {
            block_env(&self.config, at.head.number + 1, at.head.timestamp + 1)
        } else {
            // As the block ran: its own limits, base fee and beneficiary.
            ran_in(&at.head)
        };
        // `BLOCKHASH` as in the block whose environment this is, before any override.
        let mut evm =
            self.block_evm(block).map_err(|error| CallError::Invalid(error.to_string()))?;
        // As geth: a call that names no price runs with a base fee of 0, so that code computing
        // `tx.gasprice - block.basefee` does not underflow (unless the call's block overrides
        // name a base fee).
        if tx.gas_price == 0 {
            evm.block.basefee = 0;
        }
        at.block.apply(&mut evm.block);
        Ok(evm.with_move(Arc::clone(&at.move_vm)).with_cfg_changed(|cfg| {
            cfg.disable_nonce_check = true;
            // As geth and anvil: a call may come from a contract (a Safe, an ERC-4337 entry
            // point estimating); only transactions must come from accounts without code.
            cfg.disable_eip3607 = true;
            cfg.disable_balance_check = true;
            cfg.disable_base_fee = true;
            cfg.disable_fee_charge = true;
            // As geth: a call's gas is not held to its block's gas limit (only GASLIMIT sees
            // it).
            cfg.disable_block_gas_limit = true;
        }))
    }

    /// Runs `tx` as a call with `evm` on what a call at `at` sees (its state, the caller's pool
    /// writes over it, the overrides over both; a gas limit of 0: a transaction's most): its
    /// receipt, whatever its outcome.
    fn run_call(
        &self,
        evm: &EvmVm,
        at: &CallState<'_>,
        mut tx: TxEnv,
    ) -> Result<duet_evm::Receipt, CallError> {
        tx.chain_id = Some(self.config.chain_id);
        if tx.gas_limit == 0 {
            tx.gas_limit = self.max_transaction_gas();
        }
        let output = at
            .reading(|state| execute_sequential(evm, std::slice::from_ref(&tx), state))
            .map_err(|error| CallError::Invalid(error.to_string()))?;
        match output.results.into_iter().next() {
            Some(TransactionResult::Executed(receipt)) => Ok(receipt),
            Some(TransactionResult::Rejected(error)) => Err(CallError::Invalid(error.to_string())),
            Some(TransactionResult::Panicked(message)) => Err(CallError::Invalid(message)),
            None => Err(CallError::Invalid("no result".to_owned())),
        }
    }

    /// The EIP-2930 access list of `tx` on the state after `block` (`eth_createAccessList`), and
    /// the gas `tx` uses with it: `tx`'s own list, with the slots and accounts its code accesses
    /// (see [`duet_evm::access_list`]). As geth, the call runs again with the list found until
    /// it finds no more (the list can change what the call does: its gas, `GAS`), at most
    /// [`MAX_ACCESS_LIST_RUNS`] times and for at most 5 s (geth's `--rpc.evmtimeout`, as an
    /// estimate); a call that reverts or halts still has its list, with the reason.
    ///
    /// # Errors
    /// The transaction is invalid, the block's state is not there, or the list did not settle.
    pub fn create_access_list(
        &self,
        _turn: &Turn,
        mut tx: TxEnv,
        block: StateBlock,
    ) -> Result<AccessListResult, CallError> {
        let deadline = std::time::Instant::now() + ESTIMATE_TIME;
        let authorities = recover_in_place(&mut tx);
        let at = self.call_state(block, tx.caller, &CallOverrides::default())?;
        let evm = self.call_evm(&at, &tx)?.with_access_tracer();
        // A creation's address comes from the sender's nonce in this state.
        tx.nonce = at.nonce(tx.caller)?;
        let warm = evm.warm_addresses(&tx, &authorities);
        for _ in 0..MAX_ACCESS_LIST_RUNS {
            if std::time::Instant::now() >= deadline {
                return Err(CallError::TimedOut(ESTIMATE_TIME));
            }
            tx.derive_tx_type().map_err(|error| CallError::Invalid(format!("{error:?}")))?;
            let receipt = self.run_call(&evm, &at, tx.clone())?;
            let accessed = evm.take_accessed();
            let list =
                duet_evm::access_list(&tx.access_list, &accessed, |address| warm.contains(address));
            if list == tx.access_list {
                let gas_used = receipt.tx_gas_used();
                let error = call_outcome(receipt).err().map(|error| error.to_string());
                return Ok(AccessListResult { access_list: list, gas_used, error });
            }
            tx.access_list = list;
        }
        Err(CallError::Invalid(format!(
            "the access list did not settle in {MAX_ACCESS_LIST_RUNS} runs of the call"
        )))
    }

    /// The call trace of `tx` run as a call on the state after `block` under `overrides`
    /// (`debug_traceCall`): see [`duet_evm::trace`].
    ///
    /// # Errors
    /// As [`call_at_block`](Self::call_at_block), but for a call that reverts or halts, whose
    /// trace says so.
    pub fn trace_call(
        &self,
        _turn: &Turn,
        mut tx: TxEnv,
        block: StateBlock,
        overrides: &CallOverrides,
        config: CallTraceConfig,
    ) -> Result<CallFrame, CallError> {
        recover_in_place(&mut tx);
        let at = self.call_state(block, tx.caller, overrides)?;
        let trace = if tx.kind == TxKind::Call(MOVE_ENTRY_ADDRESS) {
            // The Move transaction it is, traced as an included one is.
            self.move_call_output(&at, tx, Some(config))?.1
        } else {
            let evm = self.call_evm(&at, &tx)?.with_call_tracer(config);
            self.run_call(&evm, &at, tx)?;
            evm.take_call_traces().pop()
        };
        let trace = trace.unwrap_or(Err(TraceFailure::NoFrame));
        trace.map_err(|failure| CallError::Invalid(failure.to_string()))
    }

    /// The call trace of the included transaction `hash` (`debug_traceTransaction`): its
    /// block's transactions before it run again on the state after the block before, then it
    /// runs traced, in its block's environment (see [`replay_block`](Self::replay_block)), a
    /// Move transaction as an EVM one (see [`duet_evm::trace`]).
    ///
    /// # Errors
    /// See [`TraceError`].
    pub fn trace_transaction(
        &self,
        _turn: &Turn,
        hash: B256,
        config: CallTraceConfig,
        time: std::time::Duration,
    ) -> Result<CallFrame, TraceError> {
        let record = self.committed_transaction(hash)?.ok_or(TraceError::NotFound(hash))?;
        let index = usize::try_from(record.index).unwrap_or(usize::MAX);
        let mut traces = self.replay_block(record.block_number, index, false, config, time)?;
        match traces.pop() {
            Some((last, Some(trace))) if last == hash => trace.map_err(TraceError::Trace),
            _ => Err(TraceError::Replay(format!("transaction {hash} was not traced"))),
        }
    }

    /// The call traces of block `number`'s transactions (`debug_traceBlockByNumber`), in order
    /// (a Move transaction's too: see [`duet_evm::trace`]).
    ///
    /// # Errors
    /// See [`TraceError`].
    pub fn trace_block(
        &self,
        _turn: &Turn,
        number: u64,
        config: CallTraceConfig,
        time: std::time::Duration,
    ) -> Result<Vec<(B256, Option<duet_evm::trace::Trace>)>, TraceError> {
        if number > self.head().number {
            return Err(StateUnavailable::NotYet.into());
        }
        let block = self.store.block(number)?.ok_or(StateUnavailable::NotYet)?;
        let last = block.transactions.len();
        if last == 0 {
            return Ok(Vec::new());
        }
        self.replay_block(number, last - 1, true, config, time)
    }

    /// Runs block `number`'s transactions up to and including the one at `last` again, in the
    /// block's environment, on the state after the block before: the last one traced with
    /// `config`, or every transaction with `all`. Each transaction's gas, outcome and logs
    /// are checked against its receipt. The transactions run in chunks, and the replay gives up once
    /// `time` has passed between two (a chunk is at most [`REPLAY_CHUNK`] transactions, and at
    /// most one past [`REPLAY_CHUNK_GAS`]), keeping where it stopped for the next try, which
    /// runs at least one chunk: retried, a transaction's trace gets there (unless the replay's
    /// writes pass [`MAX_REPLAY_POINT_BYTES`]; a block's traces, `all`, start over each time).
    /// Returns each transaction's hash and, for the transactions traced, its trace.
    ///
    /// # Errors
    /// See [`TraceError`].
    fn replay_block(
        &self,
        number: u64,
        last: usize,
        all: bool,
        config: CallTraceConfig,
        time: std::time::Duration,
    ) -> Result<Vec<(B256, Option<duet_evm::trace::Trace>)>, TraceError> {
        let mut replaying = self.replaying.try_lock().ok_or(TraceError::Busy)?;
        // No deadline past what an `Instant` can hold.
        let deadline = std::time::Instant::now().checked_add(time);
        let corrupt = |what: String| TraceError::Store(StoreError::Corrupt(what));
        let block = self
            .store
            .block(number)?
            .ok_or_else(|| corrupt(format!("block {number} is missing")))?;
        let parent =
            number.checked_sub(1).ok_or_else(|| corrupt("the genesis block".to_owned()))?;
        let (_, state) = self.state_at(StateBlock::Number(parent))?;
        // A trace of one of its later transactions goes on from where the last one stopped.
        let kept = if all { None } else { replaying.take() };
        let (first, mut written) = match kept {
            Some(point) if point.block == block.hash && point.next <= last => {
                (point.next, point.written)
            }
            _ => (0, BTreeMap::new()),
        };
        if block.transactions.len() <= last {
            return Err(corrupt(format!("block {number} has no transaction {last}")));
        }
        let records = block.transactions[first..=last]
            .iter()
            .map(|hash| {
                self.committed_transaction(*hash)?.ok_or_else(|| corrupt(format!("{hash}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let transactions = records
            .iter()
            .map(|record| replayed(record).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        let env = ran_in(&block);
        let move_vm = Arc::new(MoveVm::for_calls(block.beneficiary));
        let plain = DuetVm::new(self.block_evm(env.clone())?, Arc::clone(&move_vm));
        let tracing_vm =
            DuetVm::new(self.block_evm(env)?.with_call_tracer(config), Arc::clone(&move_vm));
        let mut replayed_traces = Vec::with_capacity(records.len());
        // The end of a chunk from `start`, before `limit`: at most REPLAY_CHUNK transactions,
        // ending with the one that takes their gas to REPLAY_CHUNK_GAS.
        let chunk_end = |start: usize, limit: usize| {
            let (mut end, mut gas) = (start, 0u64);
            while end < limit && end - start < REPLAY_CHUNK && gas < REPLAY_CHUNK_GAS {
                gas = gas.saturating_add(records[end - first].gas_used);
                end += 1;
            }
            end
        };
        // Where the replay stopped, kept for a trace of the block's later transaction (the
        // same one, again, after a timeout), if it is not large.
        let keep = |replaying: &mut Option<ReplayPoint>, next, written| {
            let small = || replay_point_bytes(&written) <= MAX_REPLAY_POINT_BYTES;
            if !all && next < block.transactions.len() && small() {
                *replaying = Some(ReplayPoint { block: block.hash, next, written });
            }
        };
        let mut start = first;
        while start <= last {
            // One chunk runs whatever the time, so that trying again gets further.
            let late = deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline);
            if start > first && late {
                keep(&mut replaying, start, written);
                return Err(TraceError::TimedOut(time));
            }
            // The transaction traced alone runs in a chunk of its own.
            let end = if all {
                chunk_end(start, last + 1)
            } else if start == last {
                last + 1
            } else {
                chunk_end(start, last)
            };
            let tracing = all || start == last;
            let vm = if tracing { &tracing_vm } else { &plain };
            let (chunk, at) = (start..end, start - first..end - first);
            let output = duet_evm::MixedBlockExecutor::sequential(vm)
                .execute_block(&transactions[at.clone()], &LayeredStorage::new(&state, &written))
                .map_err(|error| TraceError::Replay(error.to_string()))?;
            Metrics::add(&self.metrics.trace_replays, chunk.len() as u64);
            if output.results.len() != chunk.len() {
                return Err(TraceError::Replay("a transaction has no result".to_owned()));
            }
            let mut traces =
                if tracing { vm.evm().take_call_traces() } else { Vec::new() }.into_iter();
            for (record, result) in records[at].iter().zip(&output.results) {
                check_replayed(record, result)?;
                let trace = if tracing {
                    Some(traces.next().ok_or_else(|| {
                        TraceError::Replay(format!("{} was not traced", record.hash))
                    })?)
                } else {
                    None
                };
                replayed_traces.push((record.hash, trace));
            }
            if traces.next().is_some() {
                return Err(TraceError::Replay("more traces than transactions".to_owned()));
            }
            written.extend(output.state_updates);
            start = end;
        }
        keep(&mut replaying, last + 1, written);
        Ok(replayed_traces)
    }

    /// The least gas limit with which `tx` succeeds (`eth_estimateGas`) on the state after
    /// `block` (see [`call_at_block`](Self::call_at_block)).
    ///
    /// # Errors
    /// It fails even with the block gas limit, or the block's state is not there.
    pub fn estimate_gas(
        &self,
        turn: &Turn,
        tx: TxEnv,
        block: StateBlock,
        overrides: &CallOverrides,
    ) -> Result<u64, CallError> {
        self.estimate_gas_within(turn, tx, block, overrides, ESTIMATE_TIME)
    }

    /// [`estimate_gas`](Self::estimate_gas), giving up once `time` has passed (checked between
    /// executions).
    fn estimate_gas_within(
        &self,
        _turn: &Turn,
        mut tx: TxEnv,
        block: StateBlock,
        overrides: &CallOverrides,
        time: std::time::Duration,
    ) -> Result<u64, CallError> {
        let deadline = std::time::Instant::now() + time;
        // Its authorizations recovered once, not in each of the search's executions.
        recover_in_place(&mut tx);
        // One state for all its executions: the search is over one block.
        let at = self.call_state(block, tx.caller, overrides)?;
        // As geth: the search goes up to the block's gas limit, overridden or not.
        let most = self.max_transaction_gas().min(at.block.gas_limit.unwrap_or(u64::MAX));
        let cap = if tx.gas_limit == 0 { most } else { tx.gas_limit.min(most) };
        tx.gas_limit = cap;
        let (_, used) = self.call_at(&at, tx.clone()).map_err(|error| match error {
            // geth's words: no gas limit up to the cap is enough.
            CallError::OutOfGas => {
                CallError::Halted(format!("gas required exceeds allowance ({cap})"))
            }
            other => other,
        })?;
        let mut low = used.saturating_sub(1);
        let mut high = cap;
        tx.gas_limit = used;
        if self.call_at(&at, tx.clone()).is_ok() {
            return Ok(used);
        }
        while high - low > 1 {
            if std::time::Instant::now() >= deadline {
                return Err(CallError::TimedOut(time));
            }
            let middle = low + (high - low) / 2;
            tx.gas_limit = middle;
            if self.call_at(&at, tx.clone()).is_ok() {
                high = middle;
            } else {
                low = middle;
            }
        }
        Ok(high)
    }
}

/// Why there is no state at a block, worded as Ethereum clients word it.
#[derive(Debug, thiserror::Error)]
pub enum StateUnavailable {
    /// The block is not there yet.
    #[error("header not found")]
    NotYet,
    /// No block has this hash.
    #[error("header for hash {0} not found")]
    UnknownHash(B256),
    /// The block's state is no longer kept.
    #[error(
        "state of block {number} is not available: this node keeps the state of {}, now blocks \
         {} to {}",
        kept_blocks(*kept),
        readable.start(),
        readable.end()
    )]
    Gone {
        /// The block asked for.
        number: u64,
        /// How many blocks before the head are kept.
        kept: u64,
        /// The blocks whose state can be read now.
        readable: std::ops::RangeInclusive<u64>,
    },
    /// The database failed.
    #[error(transparent)]
    Failed(#[from] StoreError),
}

/// Which blocks' state a node keeps, in words: `kept` blocks before the head (`u64::MAX`: every
/// block whose history it still holds).
fn kept_blocks(kept: u64) -> String {
    match kept {
        u64::MAX => "every block it still holds".to_owned(),
        1 => "the last block before the head".to_owned(),
        kept => format!("the last {kept} blocks before the head"),
    }
}

/// The block whose state a query reads, and a call runs in, as Ethereum clients take a block
/// parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateBlock {
    /// The latest state when the query runs, a call running as the block after the latest
    /// (its number + 1, its time + 1) after the caller's own transactions waiting in the pool:
    /// `pending`, and `eth_estimateGas` by default. (Reads of one key read the latest state.)
    Pending,
    /// The latest block when the query runs (a call runs with its number and time).
    Latest,
    /// The block with this number.
    Number(u64),
    /// The block with this hash.
    Hash(B256),
}

/// Changes a call makes to the state and block it runs in (`eth_call`'s state and block
/// overrides, as geth takes them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallOverrides {
    /// By account.
    pub accounts: Vec<AccountOverride>,
    /// The block's fields.
    pub block: BlockOverrides,
}

/// The fields of the block a call runs in that it sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockOverrides {
    /// `NUMBER`.
    pub number: Option<u64>,
    /// `TIMESTAMP`.
    pub time: Option<u64>,
    /// `GASLIMIT`.
    pub gas_limit: Option<u64>,
    /// `COINBASE`.
    pub fee_recipient: Option<Address>,
    /// `PREVRANDAO`.
    pub prev_randao: Option<B256>,
    /// `BASEFEE`.
    pub base_fee: Option<u64>,
}

impl BlockOverrides {
    fn apply(&self, block: &mut BlockEnv) {
        if let Some(number) = self.number {
            block.number = U256::from(number);
        }
        if let Some(time) = self.time {
            block.timestamp = U256::from(time);
        }
        if let Some(gas_limit) = self.gas_limit {
            block.gas_limit = gas_limit;
        }
        if let Some(fee_recipient) = self.fee_recipient {
            block.beneficiary = fee_recipient;
        }
        if let Some(prev_randao) = self.prev_randao {
            block.prevrandao = Some(prev_randao);
        }
        if let Some(base_fee) = self.base_fee {
            block.basefee = base_fee;
        }
    }
}

/// The overrides of one account: any of its balance, nonce, code and storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountOverride {
    /// The account.
    pub address: Address,
    /// Its balance, in wei.
    pub balance: Option<u128>,
    /// Its nonce.
    pub nonce: Option<u64>,
    /// Its code (empty: none).
    pub code: Option<Bytes>,
    /// Storage slots and their values; with `replace_storage`, every other slot reads as zero.
    pub storage: Vec<(B256, U256)>,
    /// Whether `storage` is the whole storage (geth's `state`) or changes to it (`stateDiff`).
    pub replace_storage: bool,
}

/// [`CallOverrides`]' accounts as state entries over a call's state.
struct OverrideLayer {
    values: BTreeMap<StateKey, Option<StateValue>>,
    /// Accounts whose slots not in `values` read as zero.
    replaced_storage: std::collections::BTreeSet<Address>,
}

/// What a slot of an account whose storage an override replaced reads as.
static ABSENT: Option<StateValue> = None;

impl OverrideLayer {
    /// `overrides` as entries, with the accounts' other fields read from `state`.
    fn new(
        overrides: &CallOverrides,
        state: &impl duet_block_stm::Storage<Key = StateKey, Value = StateValue>,
    ) -> Result<Self, CallError> {
        let mut layer =
            Self { values: BTreeMap::new(), replaced_storage: std::collections::BTreeSet::new() };
        for account in &overrides.accounts {
            let address = account.address;
            if let Some(balance) = account.balance {
                layer.values.insert(StateKey::Balance(address), Some(StateValue::Balance(balance)));
            }
            if account.nonce.is_some() || account.code.is_some() {
                let stored = state
                    .get(&StateKey::Account(address))
                    .map_err(|error| CallError::Invalid(error.to_string()))?;
                let (nonce, code_hash) = crate::store::header_of(stored.as_ref());
                let code_hash = match &account.code {
                    None => code_hash,
                    Some(code) if code.is_empty() => KECCAK256_EMPTY,
                    Some(code) => {
                        let hash = alloy_primitives::keccak256(code);
                        let value = StateValue::Bytes(code.clone());
                        layer.values.insert(StateKey::Code(hash), Some(value));
                        hash
                    }
                };
                let nonce = account.nonce.unwrap_or(nonce);
                let value = StateValue::Account { nonce, code_hash };
                layer.values.insert(StateKey::Account(address), Some(value));
            }
            if account.replace_storage {
                layer.replaced_storage.insert(address);
            }
            for &(slot, value) in &account.storage {
                // Zero is no entry, as the EVM's writes store it.
                let value = (value != U256::ZERO).then_some(StateValue::Slot(value));
                layer.values.insert(StateKey::Storage { address, slot }, value);
            }
        }
        Ok(layer)
    }
}

impl duet_block_stm::Overlay<StateKey, StateValue> for OverrideLayer {
    fn entry(&self, key: &StateKey) -> Option<&Option<StateValue>> {
        if let Some(value) = self.values.get(key) {
            return Some(value);
        }
        match key {
            StateKey::Storage { address, .. } if self.replaced_storage.contains(address) => {
                Some(&ABSENT)
            }
            _ => None,
        }
    }
}

/// The Move VM calls run on, and the first block whose code its cache may hold: it is replaced
/// after every block that publishes modules.
struct CallVm {
    vm: Arc<MoveVm>,
    since: u64,
}

/// What [`Chain::call`] runs on: one block's state and head, and a Move VM for its code.
struct CallState<'a> {
    move_vm: Arc<MoveVm>,
    head: Arc<Block>,
    state: StateAt<'a>,
    /// Whether the call runs as the block after `head` rather than in it.
    next: bool,
    /// The writes of the caller's transactions waiting in the pool, over `state` (pending
    /// calls).
    pool: BTreeMap<StateKey, Option<StateValue>>,
    /// The call's state overrides, over both.
    overrides: OverrideLayer,
    /// The call's block overrides.
    block: BlockOverrides,
}

/// What a call sees: the state, the caller's waiting transactions' writes over it, and the
/// call's overrides over both.
type CallStorage<'s, 'a> = LayeredStorage<
    's,
    LayeredStorage<'s, StateAt<'a>, BTreeMap<StateKey, Option<StateValue>>>,
    OverrideLayer,
>;

impl<'a> CallState<'a> {
    /// `read` of what a call on this state sees.
    fn reading<R>(&self, read: impl FnOnce(&CallStorage<'_, 'a>) -> R) -> R {
        let with_pool = LayeredStorage::new(&self.state, &self.pool);
        read(&LayeredStorage::new(&with_pool, &self.overrides))
    }

    /// `address`'s nonce as a call on this state sees it.
    fn nonce(&self, address: Address) -> Result<u64, CallError> {
        let key = StateKey::Account(address);
        let header = self.reading(|state| duet_block_stm::Storage::get(state, &key));
        let header = header.map_err(|error| CallError::Invalid(error.to_string()))?;
        Ok(crate::store::header_of(header.as_ref()).0)
    }
}

/// The most of a caller's waiting transactions a `pending` call runs first.
const MAX_POOL_TRANSACTIONS_IN_CALLS: usize = 64;

/// Empties the Move VM's code caches when dropped, unless the block's rounds all ran: a round
/// that fails (or panics) after an earlier round published modules may have loaded them, and the
/// block will not be committed. (Rounds that run flush after each other: see `fill_rounds`.)
struct FlushUnlessFilled<'a> {
    vm: &'a DuetVm,
    filled: bool,
}

impl Drop for FlushUnlessFilled<'_> {
    fn drop(&mut self) {
        if !self.filled {
            duet_move::Barriers::after_barrier(self.vm);
        }
    }
}

/// The EVM's environment `block` ran in: its number, time, gas limit, base fee and beneficiary.
fn ran_in(block: &Block) -> BlockEnv {
    BlockEnv {
        number: U256::from(block.number),
        timestamp: U256::from(block.timestamp),
        beneficiary: block.beneficiary,
        gas_limit: block.gas_limit,
        basefee: block.base_fee,
        ..BlockEnv::default()
    }
}

/// The EVM's environment for block `number` at `timestamp`.
fn block_env(config: &ChainConfig, number: u64, timestamp: u64) -> BlockEnv {
    BlockEnv {
        number: U256::from(number),
        timestamp: U256::from(timestamp),
        beneficiary: config.fee_vault,
        gas_limit: config.block_gas_limit,
        basefee: config.base_fee,
        ..BlockEnv::default()
    }
}

/// The Move transaction an Ethereum transaction `tx` to the Move entry address from `sender`
/// carries, paying `gas_price` per gas (what an EVM transaction with its fees pays at the base
/// fee).
/// A call's output and gas used, or why it failed (reverted, halted).
fn call_outcome(receipt: duet_evm::Receipt) -> Result<(Bytes, u64), CallError> {
    match receipt {
        ExecutionResult::Success { .. } => {
            let gas_used = receipt.tx_gas_used();
            Ok((receipt.into_output().unwrap_or_default(), gas_used))
        }
        ExecutionResult::Revert { output, .. } => Err(CallError::Reverted(output)),
        ExecutionResult::Halt { reason: HaltReason::OutOfGas(_), .. } => Err(CallError::OutOfGas),
        ExecutionResult::Halt { reason, .. } => {
            Err(CallError::Halted(duet_evm::trace::halt_words(&reason)))
        }
    }
}

/// What a Move transaction (to the Move entry address) may not carry: ETH (its gas does not
/// pay for a transfer), an access list (its gas does not count one, which would ride along
/// uncharged), or EIP-7702 authorizations (it runs none).
fn move_shape(tx: &TxEnv) -> Result<(), String> {
    if !tx.value.is_zero() {
        return Err("a Move transaction sends no ETH".to_owned());
    }
    if !tx.access_list.is_empty() {
        return Err("a Move transaction has no access list".to_owned());
    }
    if tx.tx_type == 4 {
        return Err("a Move transaction is not a set-code (EIP-7702) transaction".to_owned());
    }
    Ok(())
}

fn move_transaction(
    tx: &TxEnv,
    sender: Address,
    gas_price: u128,
) -> Result<MoveTransaction, duet_types::PayloadError> {
    Ok(MoveTransaction {
        sender,
        nonce: tx.nonce,
        gas_limit: tx.gas_limit,
        gas_price,
        payload: MovePayload::decode(&tx.data)?,
    })
}

/// `pending` with its authorizations recovered and the accounts they name (see
/// [`recover_authorizations`]).
fn with_authorizations_recovered(pending: PendingTransaction) -> PendingTransaction {
    let (transaction, authorities) = recover_authorizations(pending.transaction);
    PendingTransaction { transaction, authorities, ..pending }
}

/// A set-code transaction with its authorizations recovered (so that no execution of it
/// recovers them again), and the accounts they name, each once (an authorization whose
/// signature does not recover names none; a block skips it).
fn recover_authorizations(transaction: DuetTransaction) -> (DuetTransaction, Vec<Address>) {
    let DuetTransaction::Evm(mut tx) = transaction else { return (transaction, Vec::new()) };
    let authorities = recover_in_place(&mut tx);
    (DuetTransaction::Evm(tx), authorities)
}

/// Recovers `tx`'s signed authorizations in place; returns the accounts they name, each once.
fn recover_in_place(tx: &mut TxEnv) -> Vec<Address> {
    use revm::context_interface::either::Either;
    let mut authorities = Vec::new();
    for authorization in &mut tx.authorization_list {
        if let Either::Left(signed) = authorization {
            *authorization = Either::Right(signed.clone().into_recovered());
        }
        if let Either::Right(recovered) = authorization {
            authorities.extend(recovered.authority());
        }
    }
    authorities.sort_unstable();
    authorities.dedup();
    authorities
}

/// How the node words a transaction the EVM refuses before reading any state, as geth does.
fn refusal(invalid: InvalidTransaction) -> SubmitError {
    match invalid {
        InvalidTransaction::CallGasCostMoreThanGasLimit { .. } => SubmitError::IntrinsicGas,
        InvalidTransaction::GasFloorMoreThanGasLimit { gas_floor, gas_limit } => {
            SubmitError::FloorDataGas { gas_limit, floor: gas_floor }
        }
        InvalidTransaction::PriorityFeeGreaterThanMaxFee => SubmitError::TipAboveFeeCap,
        InvalidTransaction::CreateInitCodeSizeLimit => SubmitError::InitCodeSize,
        InvalidTransaction::EmptyAuthorizationList => SubmitError::EmptyAuthorizationList,
        other => SubmitError::Invalid(other.to_string()),
    }
}

/// Whether a sender with `balance` can pay for `pending` and its other waiting transactions
/// together: otherwise, the block would reject one of them and leave the rest waiting above a
/// nonce gap.
fn check_overdraft(
    mempool: &Mempool,
    pending: &PendingTransaction,
    funds: Funds,
) -> Result<(), SubmitError> {
    let waiting = mempool.waiting_cost(pending.sender, pending.nonce, funds.unpaid_from);
    let cost = waiting.saturating_add(pending.cost);
    if funds.balance < cost {
        return Err(SubmitError::Overdraft { balance: funds.balance, cost });
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeMap, HashMap};

    use alloy_eips::eip2718::Decodable2718;
    use duet_types::{Address, StateKey, StateValue, B256};

    use super::{CallError, Chain, ChainConfig, LayeredStorage, MempoolError, StateBlock, TxEnv};
    use crate::block::Block;
    use crate::mempool::MAX_NONCE_GAP;
    use crate::merkle;
    use crate::store::{BlockCommit, Store, StoreError};

    #[test]
    fn a_datadir_of_another_chain_id_is_refused_and_keeps_its_accepted_transactions() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let chain_id = chain.config().chain_id;
        chain.submit(&transfer(&dev_signer(0), 0, 10)).unwrap();
        drop(chain);
        // Started with another chain id, the node refuses the datadir instead of dropping the
        // accepted transaction as signed for another chain and going on under a new id.
        let other = ChainConfig { chain_id: chain_id + 1, ..ChainConfig::for_tests() };
        let store = Store::open(directory.path()).unwrap();
        let opened = Chain::open(other, store, &crate::genesis::dev_genesis());
        let Err(refused) = opened else { panic!("a datadir of chain {chain_id} was opened") };
        assert!(matches!(refused, StoreError::Incompatible(_)), "{refused:?}");
        assert!(refused.to_string().contains(&format!("chain {chain_id}")), "{refused}");
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        assert_eq!(chain.restore_pending().unwrap(), 1, "the accepted transaction is kept");
        assert_eq!(chain.head().number, 0);
    }

    /// A transaction is told of as pending (filters, subscriptions) once a block could take it,
    /// as geth tells of them: one above a nonce gap when the gap fills, with those it lets
    /// through; a replacement of a pending one at once.
    #[test]
    fn transactions_are_announced_as_pending_once_a_block_could_take_them() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let signer = dev_signer(0);
        let feed = |chain: &Chain| chain.accepted().get(1..=chain.accepted().last());
        let second = chain.submit(&transfer(&signer, 1, 10)).unwrap();
        let third = chain.submit(&transfer(&signer, 2, 10)).unwrap();
        assert_eq!(feed(&chain), Vec::<B256>::new(), "above a gap: not pending yet");
        let first = chain.submit(&transfer(&signer, 0, 10)).unwrap();
        assert_eq!(feed(&chain), vec![first, second, third]);
        let replacement = chain.submit(&transfer(&signer, 2, 20)).unwrap();
        assert_eq!(feed(&chain), vec![first, second, third, replacement]);
        // Replacing the first does not tell of those after it again.
        let again = chain.submit(&transfer(&signer, 0, 40)).unwrap();
        assert_eq!(feed(&chain), vec![first, second, third, replacement, again]);
        let beyond = chain.submit(&transfer(&signer, 4, 10)).unwrap();
        assert!(!feed(&chain).contains(&beyond));
        // A gap a block closes (an authorization used the nonce below): told of with the block.
        let config = ChainConfig { max_block_transactions: 1, ..ChainConfig::for_tests() };
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), config);
        let (sponsor, authority) = (dev_signer(1), dev_signer(2));
        let gapped = chain.submit(&transfer(&authority, 1, 10_000_000_000)).unwrap();
        let delegating = chain.submit(&set_code(&sponsor, 0, &authority, 0)).unwrap();
        assert_eq!(feed(&chain), vec![delegating]);
        assert_eq!(chain.produce_block().unwrap().transactions, vec![delegating]);
        assert_eq!(feed(&chain), vec![delegating, gapped]);
    }

    /// A datadir whose chain began from another genesis state (a build with another framework,
    /// other dev accounts) is refused, as one of another chain is; with the same genesis it
    /// opens, whatever its block gas limit (a header field of each block, free to change).
    #[test]
    fn a_datadir_whose_chain_began_from_another_genesis_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        chain.submit(&transfer(&dev_signer(0), 0, 10)).unwrap();
        chain.produce_block().unwrap();
        drop(chain);
        let mut genesis = crate::genesis::dev_genesis();
        genesis.push((StateKey::Balance(Address::repeat_byte(0x99)), StateValue::Balance(1)));
        let store = Store::open(directory.path()).unwrap();
        let opened = Chain::open(ChainConfig::for_tests(), store, &genesis);
        let Err(refused) = opened else { panic!("a chain of another genesis was opened") };
        assert!(matches!(refused, StoreError::Incompatible(_)), "{refused:?}");
        assert!(refused.to_string().contains("another genesis state"), "{refused}");
        let config = ChainConfig { block_gas_limit: 40_000_000, ..ChainConfig::for_tests() };
        assert_eq!(open_chain(directory.path(), config).head().number, 1);
    }

    #[test]
    fn after_a_blocks_write_fails_no_block_is_written_until_a_restart() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let hash = chain.submit(&transfer(&dev_signer(0), 0, 10)).unwrap();
        chain.store.fail_writes(true);
        let failed = chain.produce_block();
        assert!(matches!(failed, Err(super::ProduceError::WriteFailed(_))), "{failed:?}");
        assert_eq!(chain.head().number, 0, "the head stays");
        // Writes work again (RocksDB may resume after a full disk), but what the failed write
        // left is not known: no further block is written over it.
        chain.store.fail_writes(false);
        let refused = chain.produce_block().unwrap_err().to_string();
        assert!(refused.contains("writing block 1 failed"), "{refused}");
        assert!(refused.contains("until the node restarts"), "{refused}");
        assert_eq!(chain.head().number, 0);
        assert!(chain.write_failure().is_some_and(|failure| failure.contains("block 1")));
        drop(chain);
        // After a restart, the accepted transaction is back and goes into block 1.
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        assert_eq!(chain.restore_pending().unwrap(), 1);
        assert_eq!(chain.write_failure(), None);
        assert_eq!(chain.produce_block().unwrap().transactions, [hash]);
    }

    #[test]
    fn a_transaction_that_fails_its_block_is_dropped_and_the_chain_goes_on() {
        // An account one credit short of the most a balance holds: a payment to it leaves the
        // bounds of its balance's delta, which fails the block, not only the transaction.
        let full = Address::repeat_byte(0xf0);
        let mut genesis = crate::genesis::dev_genesis();
        genesis.push((StateKey::Balance(full), StateValue::Balance(u128::MAX - 1)));
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        let chain = Chain::open(ChainConfig::for_tests(), store, &genesis).unwrap();
        let overflowing = alloy_consensus::TxEip1559 {
            to: alloy_primitives::TxKind::Call(full),
            ..unsigned_transfer(0, alloy_primitives::U256::from(10), 10, 21_000)
        };
        let overflowing = crate::client::sign(&dev_signer(0), overflowing).unwrap();
        let overflowing = chain.submit(&overflowing).unwrap();
        // The same sender's next transaction, and another sender's.
        let next = chain.submit(&transfer(&dev_signer(0), 1, 10)).unwrap();
        let fine = chain.submit(&transfer(&dev_signer(1), 0, 10)).unwrap();
        // The block is built again without it (and without what follows it from its sender).
        assert_eq!(chain.produce_block().unwrap().transactions, [fine]);
        let reason = dropped_reason(&chain, overflowing);
        assert!(reason.starts_with("rejected: its block could not be built with it"), "{reason}");
        assert!(reason.contains("leaves its bounds"), "{reason}");
        // The sender's next transaction waits above the gap, for a transaction with nonce 0.
        assert!(matches!(
            chain.transaction_status(next).unwrap(),
            super::TransactionStatus::Pending
        ));
        assert!(chain.produce_block().unwrap().transactions.is_empty());
        let replacement = chain.submit(&transfer(&dev_signer(0), 0, 10)).unwrap();
        assert_eq!(chain.produce_block().unwrap().transactions, [replacement, next]);
    }

    #[test]
    fn a_damaged_pending_record_is_noted_as_dropped_on_restart() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let good = chain.submit(&transfer(&dev_signer(0), 0, 10)).unwrap();
        // A record whose bytes are not the transaction its key names.
        let damaged = B256::repeat_byte(0xdd);
        chain.store.put_pending(&[(damaged, &[0x02, 0xc0][..])]).unwrap();
        drop(chain);
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        assert_eq!(chain.restore_pending().unwrap(), 1, "the readable one is kept");
        let reason = dropped_reason(&chain, damaged);
        assert!(reason.contains("could not be read when the node restarted"), "{reason}");
        assert!(chain.store.pending().unwrap().iter().all(|record| record.key[..] == good[..]));
    }

    #[test]
    fn a_restart_puts_back_every_accepted_transaction_however_full_the_pool_is() {
        // Two dev accounts: `first` sorts before `second`, so a restart restores its
        // transactions first.
        let mut signers = [dev_signer(0), dev_signer(1)];
        signers.sort_by_key(alloy_signer_local::PrivateKeySigner::address);
        let (first, second) = (&signers[0], &signers[1]);
        let transfer = |signer, nonce| transfer(signer, nonce, 10);
        let directory = tempfile::tempdir().unwrap();
        let open = || open_chain(directory.path(), ChainConfig::for_tests());
        let chain = open();
        // A pool of 10 keeps 3 for transactions a block could take. Seven transactions of
        // `second` above its missing nonce 0 fill the rest; its eighth waits.
        for nonce in 1..=7 {
            chain.submit(&transfer(second, nonce)).unwrap();
        }
        let refused = chain.submit(&transfer(second, 8));
        assert!(
            matches!(refused, Err(super::SubmitError::Mempool(MempoolError::Full))),
            "past three quarters, what is above a gap waits: {refused:?}"
        );
        // Three of `first` in one batch: each follows the one before it in the batch.
        let batch = [transfer(first, 0), transfer(first, 1), transfer(first, 2)];
        let batch: Vec<&[u8]> = batch.iter().map(|raw| &raw[..]).collect();
        for result in chain.submit_many(&batch) {
            result.unwrap();
        }
        assert_eq!(chain.pending_count(), 10);
        drop(chain);

        // Restored in order, `first`'s three come back before `second`'s seven, which then
        // find the pool past three quarters: they come back all the same.
        let chain = open();
        assert_eq!(chain.restore_pending().unwrap(), 10);
        assert_eq!(chain.pending_count(), 10);
        drop(chain);
        assert_eq!(open().restore_pending().unwrap(), 10, "and stay on disk");
    }

    #[test]
    fn transactions_every_block_would_refuse_are_refused_at_once_and_not_kept() {
        use super::SubmitError;
        use alloy_consensus::TxEip1559;
        use alloy_primitives::{Bytes, TxKind, U256};

        let signer = dev_signer(0);
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let base = unsigned_transfer(0, U256::from(1), 10, 21_000);
        let submit = |tx: TxEip1559| chain.submit(&crate::client::sign(&signer, tx).unwrap());
        // Calldata costs gas: 21 000 is too little with 100 bytes of it (16 each).
        let refused = submit(TxEip1559 { input: Bytes::from(vec![1; 100]), ..base.clone() });
        assert!(matches!(refused, Err(SubmitError::IntrinsicGas)), "{refused:?}");
        let creation = |gas_limit, initcode: usize| TxEip1559 {
            to: TxKind::Create,
            gas_limit,
            input: Bytes::from(vec![0; initcode]),
            ..base.clone()
        };
        // A creation costs 32 000 more.
        let refused = submit(creation(50_000, 10));
        assert!(matches!(refused, Err(SubmitError::IntrinsicGas)), "{refused:?}");
        // 1 000 bytes of calldata: 37 000 intrinsic gas, but a floor of 61 000 (EIP-7623).
        let refused = submit(TxEip1559 {
            input: Bytes::from(vec![1; 1_000]),
            gas_limit: 50_000,
            ..base.clone()
        });
        assert!(
            matches!(refused, Err(SubmitError::FloorDataGas { gas_limit: 50_000, floor: 61_000 })),
            "{refused:?}"
        );
        let refused = submit(TxEip1559 { max_priority_fee_per_gas: 11, ..base.clone() });
        assert!(matches!(refused, Err(SubmitError::TipAboveFeeCap)), "{refused:?}");
        // Initcode above 49 152 bytes (EIP-3860), with gas enough for it.
        let refused = submit(creation(2_000_000, 49_153));
        assert!(matches!(refused, Err(SubmitError::InitCodeSize)), "{refused:?}");
        // Bytes after the transaction would be kept and served with it, uncharged.
        let mut trailing = crate::client::sign(&signer, base.clone()).unwrap().to_vec();
        trailing.extend_from_slice(&[0; 64]);
        let refused = chain.submit(&trailing);
        assert!(matches!(refused, Err(SubmitError::Malformed(_))), "{refused:?}");
        // A Move transaction's gas does not count an access list; and its tip is held to its
        // max fee as an EVM transaction's is.
        let move_call = TxEip1559 {
            to: TxKind::Call(duet_types::MOVE_ENTRY_ADDRESS),
            value: U256::ZERO,
            input: duet_types::MovePayload::EntryFunction(duet_types::EntryFunction {
                module_address: alloy_primitives::Address::with_last_byte(1),
                module_name: "eth".to_owned(),
                function: "transfer".to_owned(),
                type_arguments: vec![],
                arguments: vec![vec![7; 20], 1u128.to_le_bytes().to_vec()],
            })
            .encode()
            .into(),
            gas_limit: 100_000,
            ..base.clone()
        };
        let entry = alloy_eips::eip2930::AccessListItem {
            address: alloy_primitives::Address::ZERO,
            storage_keys: vec![alloy_primitives::B256::ZERO; 100],
        };
        let listed = TxEip1559 {
            access_list: alloy_eips::eip2930::AccessList(vec![entry]),
            ..move_call.clone()
        };
        let refused = submit(listed);
        assert!(
            matches!(&refused, Err(SubmitError::Move(why)) if why.contains("access list")),
            "{refused:?}"
        );
        let refused = submit(TxEip1559 { max_priority_fee_per_gas: 11, ..move_call });
        assert!(matches!(refused, Err(SubmitError::TipAboveFeeCap)), "{refused:?}");
        // None was kept: the same nonce is still free, and only it comes back after a restart.
        submit(base).unwrap();
        assert_eq!(chain.pending_count(), 1);
        drop(chain);
        assert_eq!(
            open_chain(directory.path(), ChainConfig::for_tests()).restore_pending().unwrap(),
            1
        );
    }

    #[test]
    fn a_sender_cannot_queue_more_than_it_can_pay_for_together() {
        use alloy_primitives::U256;

        let signer = dev_signer(0);
        let ether = |amount: u64| U256::from(amount) * U256::from(10u64.pow(18));
        let transfer = |nonce, value, max_fee| payment(&signer, nonce, value, max_fee);
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let balance = U256::from(chain.balance(signer.address()).unwrap());
        assert_eq!(balance, ether(10_000));

        chain.submit(&transfer(0, ether(6_000), 10)).unwrap();
        // Each alone is affordable, not both.
        let refused = chain.submit(&transfer(1, ether(6_000), 10));
        assert!(matches!(refused, Err(super::SubmitError::Overdraft { .. })), "{refused:?}");
        // In one batch, the second sees the first.
        let batch = [transfer(1, ether(3_000), 10), transfer(2, ether(3_000), 10)];
        let batch: Vec<&[u8]> = batch.iter().map(|raw| &raw[..]).collect();
        let results = chain.submit_many(&batch);
        assert!(results[0].is_ok(), "{results:?}");
        assert!(matches!(results[1], Err(super::SubmitError::Overdraft { .. })), "{results:?}");
        // A replacement counts instead of the one it replaces.
        chain.submit(&transfer(0, ether(6_900), 20)).unwrap();
        assert_eq!(chain.pending_count(), 2);
        // Nothing refused stays on disk: a restart brings back the two accepted.
        drop(chain);
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        assert_eq!(chain.restore_pending().unwrap(), 2);
    }

    #[test]
    fn right_after_a_block_its_transactions_are_not_counted_twice_against_the_balance() {
        use alloy_primitives::U256;

        let signer = dev_signer(0);
        let ether = |amount: u64| U256::from(amount) * U256::from(10u64.pow(18));
        let transfer = |nonce, value| payment(&signer, nonce, value, 10);
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let spent = transfer(0, ether(6_000));
        let copy = chain.check_transaction(&spent, &mut HashMap::new()).unwrap();
        chain.mempool.lock().end_submission(&copy.hash);
        chain.submit(&spent).unwrap();
        chain.produce_block().unwrap();
        // The block has paid the 6 000 ether; until the pool catches up with it, it still holds
        // the transaction (put back here, as it is between the block's commit and its clean-up).
        let arrival = crate::mempool::Arrival::Restored { state_nonce: 0 };
        chain.mempool.lock().insert(copy, arrival).unwrap();
        assert_eq!(chain.pending_count(), 1);
        // While a block commits, the nonce and the balance may be of two blocks: past the
        // read's patience every waiting transaction counts, which may refuse too much but never
        // too little.
        let next = transfer(1, ether(3_000));
        let in_commit = chain.store.mark_commit();
        let refused = chain.submit(&next);
        assert!(matches!(refused, Err(super::SubmitError::Overdraft { .. })), "{refused:?}");
        drop(in_commit);
        // A commit that ends while the read waits: it reads after it. 3 000 of the 4 000 left:
        // not an overdraft, though 6 000 + 3 000 are waiting.
        std::thread::scope(|scope| {
            let in_commit = chain.store.mark_commit();
            scope.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                drop(in_commit);
            });
            chain.submit(&next).unwrap();
        });
        // 2 000 more would be.
        let refused = chain.submit(&transfer(2, ether(2_000)));
        assert!(matches!(refused, Err(super::SubmitError::Overdraft { .. })), "{refused:?}");
    }

    #[test]
    fn the_block_executors_counters_count_each_execution_once() {
        let signer = dev_signer(0);
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        for nonce in 0..3 {
            chain.submit(&transfer(&signer, nonce, 10)).unwrap();
        }
        assert_eq!(chain.produce_block().unwrap().transactions.len(), 3);
        let metrics = chain.metrics();
        let counter = |name: &str| -> u64 {
            let line = metrics.lines().find(|line| line.starts_with(&format!("{name} ")));
            line.and_then(|line| line.rsplit(' ').next()?.parse().ok()).unwrap()
        };
        // Three transactions, too few for parallel execution: each ran once, sequentially.
        assert_eq!(counter("duet_block_stm_executions_total"), 3, "{metrics}");
        assert_eq!(counter("duet_block_stm_sequential_transactions_total"), 3, "{metrics}");
        assert_eq!(counter("duet_block_stm_validation_aborts_total"), 0, "{metrics}");
        assert_eq!(counter("duet_block_stm_dependency_waits_total"), 0, "{metrics}");
        // The block's time, in its three parts.
        let seconds = |name: &str| -> f64 {
            let line = metrics.lines().find(|line| line.starts_with(&format!("{name} ")));
            line.and_then(|line| line.rsplit(' ').next()?.parse().ok()).unwrap()
        };
        for part in ["execution", "sealing", "commit"] {
            assert!(seconds(&format!("duet_block_{part}_seconds_total")) > 0.0, "{metrics}");
        }
    }

    /// A signed transfer of 1 wei from `signer` with `nonce`, paying `max_fee` per gas.
    pub(crate) fn transfer(
        signer: &alloy_signer_local::PrivateKeySigner,
        nonce: u64,
        max_fee: u128,
    ) -> alloy_primitives::Bytes {
        payment(signer, nonce, alloy_primitives::U256::from(1), max_fee)
    }

    /// A signed transfer of `value` wei from `signer` with `nonce`, paying `max_fee` per gas.
    fn payment(
        signer: &alloy_signer_local::PrivateKeySigner,
        nonce: u64,
        value: alloy_primitives::U256,
        max_fee: u128,
    ) -> alloy_primitives::Bytes {
        signed_transfer(signer, nonce, value, max_fee, 21_000)
    }

    /// A signed transfer of `value` wei from `signer` with `nonce`, `max_fee` per gas and
    /// `gas_limit`.
    fn signed_transfer(
        signer: &alloy_signer_local::PrivateKeySigner,
        nonce: u64,
        value: alloy_primitives::U256,
        max_fee: u128,
        gas_limit: u64,
    ) -> alloy_primitives::Bytes {
        let unsigned = unsigned_transfer(nonce, value, max_fee, gas_limit);
        crate::client::sign(signer, unsigned).unwrap()
    }

    /// A Move transaction of `payload` from `signer` with `nonce` and `gas_limit`, at 10 wei per
    /// gas.
    pub(crate) fn signed_move(
        signer: &alloy_signer_local::PrivateKeySigner,
        nonce: u64,
        payload: &duet_types::MovePayload,
        gas_limit: u64,
    ) -> alloy_primitives::Bytes {
        let unsigned = alloy_consensus::TxEip1559 {
            chain_id: ChainConfig::for_tests().chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: 10,
            to: alloy_primitives::TxKind::Call(duet_types::MOVE_ENTRY_ADDRESS),
            input: payload.encode().into(),
            ..alloy_consensus::TxEip1559::default()
        };
        crate::client::sign(signer, unsigned).unwrap()
    }

    /// A transfer of `value` wei with `nonce`, `max_fee` per gas and `gas_limit`, not signed.
    fn unsigned_transfer(
        nonce: u64,
        value: alloy_primitives::U256,
        max_fee: u128,
        gas_limit: u64,
    ) -> alloy_consensus::TxEip1559 {
        alloy_consensus::TxEip1559 {
            chain_id: ChainConfig::for_tests().chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: max_fee,
            // All of it may be tip, so that a higher max fee outbids in both (a replacement must).
            max_priority_fee_per_gas: max_fee,
            to: alloy_primitives::TxKind::Call(Address::repeat_byte(0xbe)),
            value,
            ..alloy_consensus::TxEip1559::default()
        }
    }

    #[test]
    fn blocks_produced_from_two_threads_at_once_each_build_on_the_last() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        for index in 0..5 {
            for nonce in 0..2 {
                chain.submit(&transfer(&dev_signer(index), nonce, 10_000_000_000)).unwrap();
            }
        }
        let mut blocks: Vec<std::sync::Arc<Block>> = std::thread::scope(|scope| {
            let producers: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        (0..5).map(|_| chain.produce_block().unwrap()).collect::<Vec<_>>()
                    })
                })
                .collect();
            producers.into_iter().flat_map(|producer| producer.join().unwrap()).collect()
        });
        blocks.sort_by_key(|block| block.number);
        let numbers: Vec<u64> = blocks.iter().map(|block| block.number).collect();
        assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
        for pair in blocks.windows(2) {
            assert_eq!(pair[1].parent_hash, pair[0].hash, "block {}", pair[1].number);
        }
        assert_eq!(chain.head().hash, blocks[9].hash);
    }

    #[test]
    fn a_transaction_checked_while_a_block_settles_counts_from_the_nonce_after_that_block() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let signer = dev_signer(0);
        for nonce in 0..10 {
            chain.submit(&transfer(&signer, nonce, 10_000_000_000)).unwrap();
        }
        // The sender's funds as a check reads them just before the block with its ten
        // transactions commits and leaves the pool.
        let before = chain.funds(signer.address()).unwrap();
        assert_eq!(before.nonce, 0);
        assert_eq!(chain.produce_block().unwrap().transactions.len(), 10);
        // As far ahead of the sender's next nonce (10) as the pool allows: with the funds from
        // before the block, the pool (which no longer holds 0 to 9) would count from 0.
        let raw = transfer(&signer, 10 + MAX_NONCE_GAP, 10_000_000_000);
        let envelope = alloy_consensus::TxEnvelope::decode_2718_exact(&raw).unwrap();
        let (pending, _) = chain.check_signed(&raw, &envelope, signer.address()).unwrap();
        let checked = chain.precheck(pending, before, &mut HashMap::new()).unwrap();
        assert_eq!(checked.nonce, 74);
        // One further ahead is still refused, in the next nonce's words.
        let raw = transfer(&signer, 11 + MAX_NONCE_GAP, 10_000_000_000);
        let refused = chain.submit(&raw).unwrap_err();
        assert_eq!(refused.to_string(), "nonce too high: next nonce 10, tx nonce 75");
    }

    #[test]
    fn a_pending_view_of_a_state_from_before_a_settled_block_says_so() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let sender = dev_signer(0);
        chain.submit(&transfer(&sender, 0, 10)).unwrap();
        // A pending call's state, taken before the block with the transfer commits.
        let (head, state, mut move_vm) = chain.state_and_vm(StateBlock::Pending).unwrap();
        let (writes, settled_since) =
            chain.pool_writes(sender.address(), &head, &state, &mut move_vm).unwrap();
        assert!(!writes.is_empty() && !settled_since);
        chain.produce_block().unwrap();
        // The pool no longer holds the transfer, and that state does not have it either: the
        // call must take the state again (with the old state, the transfer would be missing).
        let (writes, settled_since) =
            chain.pool_writes(sender.address(), &head, &state, &mut move_vm).unwrap();
        assert!(writes.is_empty() && settled_since);
        let (head, state, mut move_vm) = chain.state_and_vm(StateBlock::Pending).unwrap();
        let (writes, settled_since) =
            chain.pool_writes(sender.address(), &head, &state, &mut move_vm).unwrap();
        assert!(writes.is_empty() && !settled_since);
    }

    #[test]
    fn set_code_transactions_without_authorizations_or_to_move_are_refused_and_change_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let signer = dev_signer(0);
        let unsigned = alloy_consensus::TxEip7702 {
            chain_id: ChainConfig::for_tests().chain_id,
            nonce: 0,
            gas_limit: 100_000,
            max_fee_per_gas: 10_000_000_000,
            to: Address::repeat_byte(0xbe),
            authorization_list: Vec::new(),
            ..alloy_consensus::TxEip7702::default()
        };
        let raw = crate::client::sign(&signer, unsigned).unwrap();
        let refused = chain.submit(&raw).unwrap_err();
        assert_eq!(refused.to_string(), "EIP-7702 transaction with empty auth list");
        // Nor is a Move transaction a set-code one, with or without authorizations.
        let mut to_move = alloy_consensus::TxEip7702 {
            chain_id: ChainConfig::for_tests().chain_id,
            gas_limit: 100_000,
            max_fee_per_gas: 10_000_000_000,
            to: duet_types::MOVE_ENTRY_ADDRESS,
            ..alloy_consensus::TxEip7702::default()
        };
        for list in [Vec::new(), vec![authorization(&signer, 0)]] {
            to_move.authorization_list = list;
            let raw = crate::client::sign(&signer, to_move.clone()).unwrap();
            let refused = chain.submit(&raw).unwrap_err();
            assert!(refused.to_string().contains("not a set-code"), "{refused}");
        }
        assert_eq!(chain.pending_count(), 0);
        assert_eq!(chain.pending_nonce(signer.address()).unwrap(), 0);
    }

    #[test]
    fn a_delegated_account_has_one_transaction_waiting_at_a_time() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let (sponsor, delegated) = (dev_signer(1), dev_signer(2));
        // The sponsor sends the delegated account's authorization (its nonce 0).
        chain.submit(&set_code(&sponsor, 0, &delegated, 0)).unwrap();
        chain.produce_block().unwrap();
        assert_ne!(chain.account(delegated.address()).unwrap().1, duet_types::KECCAK256_EMPTY);
        // Its next transaction waits; a second is refused in geth's words, alone or in the
        // same request; a replacement of the first is taken.
        chain.submit(&transfer(&delegated, 1, 10_000_000_000)).unwrap();
        let second = transfer(&delegated, 2, 10_000_000_000);
        let refused = chain.submit(&second).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "in-flight transaction limit reached for delegated accounts"
        );
        let batch = [transfer(&delegated, 1, 20_000_000_000), second.clone()];
        let answers = chain.submit_many(&[&batch[0], &batch[1]]);
        assert!(answers[0].is_ok(), "{answers:?}");
        assert!(answers[1].as_ref().unwrap_err().to_string().contains("in-flight"), "{answers:?}");
        // Once a block includes it, the next one is taken; in one request, its next and the
        // one after: the second is refused by the request's first (not yet in the pool), and
        // one above a gap is refused, whatever waits.
        chain.produce_block().unwrap();
        let third = transfer(&delegated, 3, 10_000_000_000);
        let answers = chain.submit_many(&[&second, &third]);
        assert!(answers[0].is_ok(), "{answers:?}");
        assert!(answers[1].as_ref().unwrap_err().to_string().contains("in-flight"), "{answers:?}");
        chain.produce_block().unwrap();
        let refused = chain.submit(&transfer(&delegated, 4, 10_000_000_000)).unwrap_err();
        assert_eq!(refused.to_string(), "gapped-nonce tx from delegated accounts");
        chain.submit(&third).unwrap();
        // An account without code has no such limit.
        for nonce in 1..4 {
            chain.submit(&transfer(&sponsor, nonce, 10_000_000_000)).unwrap();
        }
    }

    /// Creation code returning BALANCE(0xbebe…be) (the test transfers' recipient) and NUMBER:
    /// PUSH20 0xbe… BALANCE PUSH1 0 MSTORE NUMBER PUSH1 32 MSTORE PUSH1 64 PUSH1 0 RETURN.
    pub(crate) fn balance_and_number_code() -> Vec<u8> {
        let mut code = vec![0x73];
        code.extend([0xbe; 20]);
        code.extend(alloy_primitives::hex!("316000524360205260406000f3"));
        code
    }

    /// `authority`'s EIP-7702 authorization, for any chain and its account nonce `nonce`, to
    /// run 0xbebe…be's code.
    pub(crate) fn authorization(
        authority: &alloy_signer_local::PrivateKeySigner,
        nonce: u64,
    ) -> alloy_eips::eip7702::SignedAuthorization {
        let authorization = alloy_eips::eip7702::Authorization {
            chain_id: alloy_primitives::U256::ZERO,
            address: Address::repeat_byte(0xbe),
            nonce,
        };
        let signature =
            alloy_signer::SignerSync::sign_hash_sync(authority, &authorization.signature_hash())
                .unwrap();
        authorization.into_signed(signature)
    }

    /// A set-code transaction from `sponsor` with `nonce`, carrying `authority`'s
    /// [`authorization`] for its nonce `authority_nonce`.
    fn set_code(
        sponsor: &alloy_signer_local::PrivateKeySigner,
        nonce: u64,
        authority: &alloy_signer_local::PrivateKeySigner,
        authority_nonce: u64,
    ) -> alloy_primitives::Bytes {
        let unsigned = alloy_consensus::TxEip7702 {
            chain_id: ChainConfig::for_tests().chain_id,
            nonce,
            gas_limit: 100_000,
            max_fee_per_gas: 10_000_000_000,
            to: Address::repeat_byte(0xbe),
            authorization_list: vec![authorization(authority, authority_nonce)],
            ..alloy_consensus::TxEip7702::default()
        };
        crate::client::sign(sponsor, unsigned).unwrap()
    }

    #[test]
    fn a_set_code_transaction_reserves_its_authority_as_geth_does() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let (sponsor, busy, authority) = (dev_signer(1), dev_signer(2), dev_signer(3));
        let fee = 10_000_000_000;
        // An authority with two transactions waiting: naming it is refused.
        chain.submit(&transfer(&busy, 0, fee)).unwrap();
        chain.submit(&transfer(&busy, 1, fee)).unwrap();
        let refused = chain.submit(&set_code(&sponsor, 0, &busy, 2)).unwrap_err();
        assert_eq!(refused.to_string(), "authority already reserved");
        // With one waiting, it is taken; the authority, about to be delegated, may then have
        // only that one (or its replacement) waiting.
        chain.submit(&transfer(&authority, 0, fee)).unwrap();
        let hash = chain.submit(&set_code(&sponsor, 0, &authority, 1)).unwrap();
        // The pool holds its authorization recovered: no execution recovers it again.
        let pool = chain.mempool.lock();
        let Some(duet_evm::DuetTransaction::Evm(tx)) =
            pool.get(&hash).map(|pending| &pending.transaction)
        else {
            panic!("the set-code transaction waits")
        };
        let recovered = tx.authorization_list[0]
            .as_ref()
            .right()
            .map(alloy_eips::eip7702::RecoveredAuthorization::authority);
        assert_eq!(recovered, Some(Some(authority.address())));
        drop(pool);
        let second = transfer(&authority, 1, fee);
        let refused = chain.submit(&second).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "in-flight transaction limit reached for delegated accounts"
        );
        chain.submit(&transfer(&authority, 0, 2 * fee)).unwrap();
        // The busy account, named by no waiting transaction, still sends freely.
        chain.submit(&transfer(&busy, 2, fee)).unwrap();
        // Once a block has run them, the authority is delegated: one at a time still.
        chain.produce_block().unwrap();
        assert_ne!(chain.account(authority.address()).unwrap().1, duet_types::KECCAK256_EMPTY);
        chain.submit(&transfer(&authority, 2, fee)).unwrap();
        assert!(chain.submit(&transfer(&authority, 3, fee)).is_err());
        chain.mempool.lock().assert_consistent();
    }

    #[test]
    fn a_transaction_an_authorization_made_stale_leaves_the_pool_with_that_block() {
        let directory = tempfile::tempdir().unwrap();
        // One transaction a block: the authority's own transaction waits for the next one.
        let config = ChainConfig { max_block_transactions: 1, ..ChainConfig::for_tests() };
        let chain = open_chain(directory.path(), config);
        let (sponsor, authority) = (dev_signer(1), dev_signer(2));
        chain.submit(&set_code(&sponsor, 0, &authority, 0)).unwrap();
        let stale = chain.submit(&transfer(&authority, 0, 10_000_000_000)).unwrap();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions.len(), 1, "the set-code transaction alone");
        // The authorization used the authority's nonce 0: its transaction with it is gone.
        assert_eq!(chain.account(authority.address()).unwrap().0, 1);
        assert!(chain.mempool.lock().get(&stale).is_none(), "the stale transaction waits");
        let reason = dropped_reason(&chain, stale);
        assert_eq!(reason, "its nonce was used by another transaction in block 1");
        assert_eq!(chain.pending_count(), 0);
        chain.mempool.lock().assert_consistent();
    }

    #[test]
    fn a_transaction_whose_nonce_delegated_code_used_leaves_the_pool_with_that_block() {
        let directory = tempfile::tempdir().unwrap();
        // One transaction a block, taken in the order they came.
        let config = ChainConfig { max_block_transactions: 1, ..ChainConfig::for_tests() };
        let chain = open_chain(directory.path(), config);
        let (deployer, sponsor, delegated, caller) =
            (dev_signer(0), dev_signer(1), dev_signer(2), dev_signer(3));
        let no_list = alloy_eips::eip2930::AccessList::default;
        // A contract whose code creates an empty contract: PUSH1 0 PUSH1 0 PUSH1 0 CREATE STOP.
        let creator_code = deploying(&alloy_primitives::hex!("600060006000f000"));
        let create = alloy_primitives::TxKind::Create;
        chain.submit(&signed_call(&deployer, 0, create, creator_code, no_list())).unwrap();
        chain.produce_block().unwrap();
        let creator = deployer.address().create(0);
        // The delegated account runs it (its authorization takes its nonce 0).
        let authorization = alloy_eips::eip7702::Authorization {
            chain_id: alloy_primitives::U256::ZERO,
            address: creator,
            nonce: 0,
        };
        let signature =
            alloy_signer::SignerSync::sign_hash_sync(&delegated, &authorization.signature_hash())
                .unwrap();
        let unsigned = alloy_consensus::TxEip7702 {
            chain_id: ChainConfig::for_tests().chain_id,
            gas_limit: 100_000,
            max_fee_per_gas: 10_000_000_000,
            to: Address::repeat_byte(0xbe),
            authorization_list: vec![authorization.into_signed(signature)],
            ..alloy_consensus::TxEip7702::default()
        };
        chain.submit(&crate::client::sign(&sponsor, unsigned).unwrap()).unwrap();
        chain.produce_block().unwrap();
        assert_eq!(chain.account(delegated.address()).unwrap().0, 1);
        // Another account calls it first: its CREATE takes the delegated account's nonce 1,
        // which the account's own transaction, waiting behind that call, was sent with.
        let call = alloy_primitives::TxKind::Call(delegated.address());
        chain.submit(&signed_call(&caller, 0, call, Vec::new(), no_list())).unwrap();
        let stale = chain.submit(&transfer(&delegated, 1, 10_000_000_000)).unwrap();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions.len(), 1, "the call alone");
        assert_eq!(chain.account(delegated.address()).unwrap().0, 2);
        assert!(chain.mempool.lock().get(&stale).is_none(), "the stale transaction waits");
        assert_eq!(
            dropped_reason(&chain, stale),
            "its nonce was used by another transaction in block 3"
        );
        assert_eq!(chain.pending_count(), 0);
        chain.mempool.lock().assert_consistent();
    }

    #[test]
    fn a_transaction_queued_above_a_gap_is_not_one_a_block_could_take() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        // Blocks made at once run ahead of the clock, a second each.
        for _ in 0..5 {
            chain.produce_block().unwrap();
        }
        assert!(chain.ahead_of_the_clock());
        let signer = dev_signer(0);
        chain.submit(&transfer(&signer, 1, 10_000_000_000)).unwrap();
        assert_eq!(chain.pending_count(), 1);
        assert!(!chain.has_executable(), "nonce 1 waits for nonce 0: the producer waits too");
        chain.submit(&transfer(&signer, 0, 10_000_000_000)).unwrap();
        assert!(chain.has_executable());
    }

    #[test]
    fn a_restart_serves_senders_in_the_order_they_first_sent() {
        let directory = tempfile::tempdir().unwrap();
        let config = ChainConfig { max_block_transactions: 1, ..ChainConfig::for_tests() };
        let chain = open_chain(directory.path(), config.clone());
        // Senders whose addresses sort against the order they send in.
        let mut senders: Vec<_> = (0..4).map(dev_signer).collect();
        senders.sort_by_key(|signer| std::cmp::Reverse(signer.address()));
        let sent: Vec<B256> =
            senders.iter().map(|signer| chain.submit(&transfer(signer, 0, 10)).unwrap()).collect();
        drop(chain);
        let chain = open_chain(directory.path(), config);
        assert_eq!(chain.restore_pending().unwrap(), 4);
        for hash in sent {
            assert_eq!(chain.produce_block().unwrap().transactions, [hash]);
        }
    }

    #[test]
    fn an_acknowledged_transaction_is_pending_included_or_dropped_with_why() {
        use super::TransactionStatus;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let reason = |hash| dropped_reason(&chain, hash);
        let (first, second) = (dev_signer(0), dev_signer(1));
        let replaced = chain.submit(&transfer(&first, 0, 10)).unwrap();
        assert!(matches!(chain.transaction_status(replaced), Ok(TransactionStatus::Pending)));
        let replacement = chain.submit(&transfer(&first, 0, 20)).unwrap();
        assert_eq!(reason(replaced), format!("replaced by {replacement}"));
        // The pool holds 10: full, the cheapest last transaction of another sender is evicted
        // for one that pays 10 % more.
        let cheapest = chain.submit(&transfer(&second, 0, 10)).unwrap();
        for index in 2..10 {
            chain.submit(&transfer(&dev_signer(index), 0, 15)).unwrap();
        }
        let evicting = chain.submit(&transfer(&first, 1, 30)).unwrap();
        assert_eq!(
            reason(cheapest),
            format!("evicted from the full pool by {evicting}, which pays more")
        );
        let metrics = chain.metrics();
        for (reason, count) in [("replaced", 1), ("evicted", 1), ("expired", 0), ("restart", 0)] {
            let line = format!("duet_transactions_dropped_total{{reason=\"{reason}\"}} {count}\n");
            assert!(metrics.contains(&line), "{line}{metrics}");
        }
        let block = chain.produce_block().unwrap();
        let TransactionStatus::Included(record) = chain.transaction_status(replacement).unwrap()
        else {
            panic!("not included");
        };
        assert_eq!((record.block_number, record.block_hash), (block.number, block.hash));
        let unknown = B256::repeat_byte(7);
        assert!(matches!(chain.transaction_status(unknown), Ok(TransactionStatus::Unknown)));
        // Waiting when the node stops, refused when it restarts with a base fee above its
        // max fee: dropped, and said so.
        let waiting = chain.submit(&transfer(&second, 0, 10)).unwrap();
        drop(chain);
        let config = ChainConfig { base_fee: 1_000, ..ChainConfig::for_tests() };
        let chain = open_chain(directory.path(), config);
        assert_eq!(chain.restore_pending().unwrap(), 0);
        let reason = dropped_reason(&chain, waiting);
        assert!(reason.starts_with("refused when the node restarted: "), "{reason}");
        // The drops before the restart are known after it (the evicted transfer was sent again
        // since, as `waiting`: its reason is the restart's).
        assert_eq!(dropped_reason(&chain, replaced), format!("replaced by {replacement}"));
        assert_eq!(waiting, cheapest);
        let metrics = chain.metrics();
        assert!(metrics.contains("duet_transactions_dropped_total{reason=\"restart\"} 1\n"));
    }

    #[test]
    fn a_listing_of_an_accounts_state_reads_pages_after_an_entry_within_its_bounds() {
        use crate::store::Listed;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        // The framework's modules at 0x1.
        let framework = Address::from_word(B256::with_last_byte(1));
        let key = StateKey::MoveModule { address: framework, name: Box::default() }.encode();
        let prefix = &key[..=Address::len_bytes()];
        let list = |after: Option<&[u8]>, most| chain.store.state_with_prefix(prefix, after, most);
        let all = Listed { entries: 1_000, bytes: 64 << 20 };
        let whole = list(None, all).unwrap().unwrap();
        assert!(!whole.more, "nothing follows the whole listing");
        let modules = whole.entries;
        assert!(modules.len() > 3, "{}", modules.len());
        assert!(modules.iter().all(|(key, _)| key.starts_with(prefix)));
        // Pages of two, each after the last key of the one before, read them all once; each
        // but the last says more follow (also a full last page, when the count is even).
        let mut paged = Vec::new();
        loop {
            let after = paged.last().map(|(key, _): &(Vec<u8>, _)| key.clone());
            let page = list(after.as_deref(), Listed { entries: 2, ..all }).unwrap().unwrap();
            paged.extend(page.entries);
            assert_eq!(page.more, paged.len() < modules.len());
            if !page.more {
                break;
            }
        }
        assert_eq!(paged, modules);
        // A page holding exactly the rest says nothing follows.
        let exact = Listed { entries: modules.len(), ..all };
        assert!(!list(None, exact).unwrap().unwrap().more);
        let short = Listed { entries: modules.len() - 1, ..all };
        assert!(list(None, short).unwrap().unwrap().more);
        // A page past the bytes it may read is refused.
        assert!(list(None, Listed { bytes: 1_000, ..all }).unwrap().is_none());
    }

    /// Why `chain` dropped `hash` (the test fails if it did not).
    fn dropped_reason(chain: &Chain, hash: B256) -> String {
        match chain.transaction_status(hash).unwrap() {
            super::TransactionStatus::Dropped(dropped) => dropped.reason,
            other => panic!("{hash} is not dropped: {other:?}"),
        }
    }

    pub(crate) fn dev_signer(index: usize) -> alloy_signer_local::PrivateKeySigner {
        crate::genesis::DEV_KEYS[index].parse().unwrap()
    }

    /// The test package (`move-executor/testkit/example.move`) published at `owner`, compiled.
    fn example_package(owner: Address) -> Vec<Vec<u8>> {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../move-executor/testkit/example.move");
        duet_move::compile_package(vec![example.to_owned()], &[("example", &owner.to_string())])
            .unwrap()
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect()
    }

    /// `counter::increment` of the test package at `owner`.
    fn increment(owner: Address) -> duet_types::EntryFunction {
        duet_types::EntryFunction {
            module_address: owner,
            module_name: "counter".to_owned(),
            function: "increment".to_owned(),
            type_arguments: vec![],
            arguments: vec![],
        }
    }

    pub(crate) fn open_chain(directory: &std::path::Path, config: ChainConfig) -> Chain {
        let store = Store::open(directory).unwrap();
        Chain::open(config, store, &crate::genesis::dev_genesis()).unwrap()
    }

    #[test]
    fn an_estimate_is_the_least_gas_that_succeeds_and_gives_up_after_its_time() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        // Creation code that reverts unless at least 100 000 gas is left when it starts:
        // GAS PUSH3 100000 GT PUSH1 10 JUMPI STOP JUMPDEST PUSH1 0 DUP1 REVERT. With the most
        // gas it uses far less than it needs, so the estimate searches.
        let tx = TxEnv {
            caller: dev_signer(0).address(),
            kind: alloy_primitives::TxKind::Create,
            data: alloy_primitives::hex!("5a620186a011600a57005b600080fd").into(),
            ..TxEnv::default()
        };
        let turn = chain.call_turn_blocking();
        let estimate = chain
            .estimate_gas(&turn, tx.clone(), StateBlock::Latest, &super::CallOverrides::default())
            .unwrap();
        assert!(estimate > 100_000, "{estimate}");
        let with = |gas_limit| chain.call(&turn, TxEnv { gas_limit, ..tx.clone() });
        assert!(with(estimate).is_ok());
        assert!(matches!(with(estimate - 1), Err(CallError::Reverted(_))));
        // Out of time before the search: geth's words.
        let timed_out = chain.estimate_gas_within(
            &turn,
            tx,
            StateBlock::Latest,
            &super::CallOverrides::default(),
            std::time::Duration::ZERO,
        );
        let timed_out = timed_out.unwrap_err();
        assert_eq!(timed_out.to_string(), "execution aborted (timeout = 0ns)");
    }

    /// A signed EIP-1559 transaction from `signer` with `nonce` of `kind` with `input`, at 10
    /// wei per gas and at most 1 000 000 gas, carrying `access_list`.
    pub(crate) fn signed_call(
        signer: &alloy_signer_local::PrivateKeySigner,
        nonce: u64,
        kind: alloy_primitives::TxKind,
        input: Vec<u8>,
        access_list: alloy_eips::eip2930::AccessList,
    ) -> alloy_primitives::Bytes {
        let unsigned = alloy_consensus::TxEip1559 {
            to: kind,
            input: input.into(),
            access_list,
            ..unsigned_transfer(nonce, alloy_primitives::U256::ZERO, 10, 1_000_000)
        };
        crate::client::sign(signer, unsigned).unwrap()
    }

    /// Creation code that deploys `runtime`: PUSH1 len PUSH1 12 PUSH1 0 CODECOPY PUSH1 len
    /// PUSH1 0 RETURN, then the runtime code.
    pub(crate) fn deploying(runtime: &[u8]) -> Vec<u8> {
        let length = u8::try_from(runtime.len()).unwrap();
        let mut code = vec![0x60, length, 0x60, 12, 0x60, 0, 0x39, 0x60, length, 0x60, 0, 0xf3];
        code.extend_from_slice(runtime);
        code
    }

    /// The accounts [`reading_contracts`] names.
    struct Readers {
        /// An account whose BALANCE the reader reads.
        cold: Address,
        /// One whose EXTCODESIZE it reads.
        sized: Address,
        /// The contract that reads its slot 7, which the reader CALLs.
        store: Address,
        /// The reader.
        reader: Address,
    }

    /// Deploys, from the first dev account (nonces 0 and 1), a contract that reads its slot 7,
    /// and one (the reader) that reads its slot 5, BALANCE of a cold account, EXTCODESIZE of
    /// another, BALANCE of its caller and of the block's beneficiary (warm), STATICCALLs the
    /// identity precompile and CALLs the first.
    fn reading_contracts(chain: &Chain) -> Readers {
        use alloy_eips::eip2930::AccessList;
        use alloy_primitives::TxKind;
        let sender = dev_signer(0);
        let (cold, sized) = (Address::repeat_byte(0xc0), Address::repeat_byte(0xca));
        // A contract that reads its slot 7 (PUSH1 7 SLOAD POP STOP).
        let store = sender.address().create(0);
        chain
            .submit(&signed_call(
                &sender,
                0,
                TxKind::Create,
                deploying(&alloy_primitives::hex!("6007545000")),
                AccessList::default(),
            ))
            .unwrap();
        let mut runtime = alloy_primitives::hex!("60055450").to_vec();
        for (address, opcode) in [(cold, 0x31), (sized, 0x3b)] {
            runtime.push(0x73);
            runtime.extend_from_slice(address.as_slice());
            runtime.extend([opcode, 0x50]);
        }
        runtime.extend(alloy_primitives::hex!("333150413150600060006000600060045afa50"));
        runtime.extend(alloy_primitives::hex!("60006000600060006000"));
        runtime.push(0x73);
        runtime.extend_from_slice(store.as_slice());
        runtime.extend(alloy_primitives::hex!("5af15000"));
        let reader = sender.address().create(1);
        chain
            .submit(&signed_call(
                &sender,
                1,
                TxKind::Create,
                deploying(&runtime),
                AccessList::default(),
            ))
            .unwrap();
        chain.produce_block().unwrap();
        assert!(!crate::store::ReadState::code(chain.store(), reader).unwrap().is_empty());
        Readers { cold, sized, store, reader }
    }

    #[test]
    fn an_access_list_holds_what_a_call_accesses_cold_and_its_gas_is_the_transactions() {
        use alloy_eips::eip2930::{AccessList, AccessListItem};
        use alloy_primitives::TxKind;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let sender = dev_signer(0);
        let Readers { cold, sized, store, reader } = reading_contracts(&chain);
        let call =
            TxEnv { caller: sender.address(), kind: TxKind::Call(reader), ..TxEnv::default() };
        let turn = chain.call_turn_blocking();
        let found = chain.create_access_list(&turn, call.clone(), StateBlock::Latest).unwrap();
        let slot = |n: u8| B256::with_last_byte(n);
        let mut expected = vec![
            AccessListItem { address: cold, storage_keys: vec![] },
            AccessListItem { address: sized, storage_keys: vec![] },
            AccessListItem { address: reader, storage_keys: vec![slot(5)] },
            AccessListItem { address: store, storage_keys: vec![slot(7)] },
        ];
        expected.sort_by_key(|item| item.address);
        assert_eq!(found.access_list, AccessList(expected), "{found:?}");
        assert_eq!(found.error, None);
        // Calls and estimates count a given list: each entry costs its intrinsic gas and warms
        // what it names (2 400 more for an address, 2 500 less for its first access).
        let (_, without) = chain.call(&turn, call.clone()).unwrap();
        let (_, with) = chain
            .call(
                &turn,
                TxEnv { access_list: found.access_list.clone(), tx_type: 1, ..call.clone() },
            )
            .unwrap();
        assert_eq!(with, found.gas_used);
        // Each of the three cold accounts and two slots saves 100; the reader, warm anyway,
        // costs 2 400 as the place of its slot, as geth lists it.
        assert_eq!(with + 5 * 100, without + 2_400);
        // Sent with the list, the transaction uses what the list's answer said.
        let hash = chain
            .submit(&signed_call(
                &sender,
                2,
                TxKind::Call(reader),
                Vec::new(),
                found.access_list.clone(),
            ))
            .unwrap();
        chain.produce_block().unwrap();
        let record = chain.committed_transaction(hash).unwrap().unwrap();
        assert!(record.success);
        assert_eq!(record.gas_used, found.gas_used);
    }

    #[test]
    fn an_access_list_keeps_what_it_is_given_and_leaves_out_what_only_move_reads() {
        use alloy_eips::eip2930::{AccessList, AccessListItem};
        use alloy_primitives::TxKind;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let sender = dev_signer(0);
        let Readers { cold, reader, .. } = reading_contracts(&chain);
        let call =
            TxEnv { caller: sender.address(), kind: TxKind::Call(reader), ..TxEnv::default() };
        let turn = chain.call_turn_blocking();
        let slot = |n: u8| B256::with_last_byte(n);
        // Given a list, the answer keeps it, and a call that reverts has its list and the reason.
        let extra =
            AccessListItem { address: Address::repeat_byte(0xee), storage_keys: vec![slot(1)] };
        let given = TxEnv { access_list: AccessList(vec![extra.clone()]), ..call.clone() };
        let kept = chain.create_access_list(&turn, given, StateBlock::Latest).unwrap();
        assert!(kept.access_list.0.contains(&extra), "{kept:?}");
        assert_eq!(kept.access_list.0.len(), 5);
        // A creation that reads its new contract's slot 7 and reverts: the slot is listed with
        // the contract's address, from the sender's nonce, as geth lists it.
        let reverting = TxEnv {
            kind: TxKind::Create,
            data: alloy_primitives::hex!("600754600080fd").into(),
            ..call
        };
        let failed = chain.create_access_list(&turn, reverting, StateBlock::Latest).unwrap();
        assert_eq!(failed.error.as_deref(), Some("execution reverted"));
        let created = sender.address().create(2);
        let listed = AccessListItem { address: created, storage_keys: vec![slot(7)] };
        assert_eq!(failed.access_list, AccessList(vec![listed]));
        // A payment made by Move code through the Move call precompile: the accounts Move reads
        // are not the EVM code's accesses, and warming them would cost gas for nothing.
        let transfer = duet_types::EntryFunction {
            module_address: Address::with_last_byte(1),
            module_name: "eth".to_owned(),
            function: "transfer".to_owned(),
            type_arguments: vec![],
            arguments: vec![cold.to_vec(), 5u128.to_le_bytes().to_vec()],
        };
        let paying = TxEnv {
            caller: sender.address(),
            kind: TxKind::Call(duet_types::MOVE_CALL_ADDRESS),
            data: duet_evm::call_data(&transfer).into(),
            ..TxEnv::default()
        };
        let paid = chain.create_access_list(&turn, paying, StateBlock::Latest).unwrap();
        assert_eq!((paid.access_list, paid.error), (AccessList::default(), None));
    }

    /// `eth::transfer` of `amount` wei to `to`, as a Move entry function.
    pub(crate) fn move_transfer(to: Address, amount: u128) -> duet_types::EntryFunction {
        duet_types::EntryFunction {
            module_address: Address::with_last_byte(1),
            module_name: "eth".to_owned(),
            function: "transfer".to_owned(),
            type_arguments: vec![],
            arguments: vec![to.to_vec(), amount.to_le_bytes().to_vec()],
        }
    }

    #[test]
    fn a_transaction_is_traced_as_its_block_ran_it_after_the_transactions_before_it() {
        use alloy_eips::eip2930::AccessList;
        use alloy_primitives::TxKind;
        use duet_evm::trace::{CallTraceConfig, FrameKind};
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let sender = dev_signer(0);
        let Readers { store, reader, .. } = reading_contracts(&chain);
        // A counter (slot 0 + 1: PUSH1 0 SLOAD PUSH1 1 ADD PUSH1 0 SSTORE STOP).
        let counter = sender.address().create(2);
        let counting = deploying(&alloy_primitives::hex!("60005460010160005500"));
        chain
            .submit(&signed_call(&sender, 2, TxKind::Create, counting, AccessList::default()))
            .unwrap();
        chain.produce_block().unwrap();
        // One block: the counter counted twice (0 to 1 costs more than 1 to 2), a Move
        // transfer, and a call of the reader.
        let count = |nonce| {
            signed_call(&sender, nonce, TxKind::Call(counter), Vec::new(), AccessList::default())
        };
        let first = chain.submit(&count(3)).unwrap();
        let paying = duet_types::MovePayload::EntryFunction(move_transfer(reader, 5));
        let paid = chain.submit(&signed_move(&dev_signer(1), 0, &paying, 100_000)).unwrap();
        let second = chain.submit(&count(4)).unwrap();
        let read = chain
            .submit(&signed_call(
                &sender,
                5,
                TxKind::Call(reader),
                Vec::new(),
                AccessList::default(),
            ))
            .unwrap();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, vec![first, paid, second, read]);
        let turn = chain.call_turn_blocking();
        let config = CallTraceConfig::default();
        let time = std::time::Duration::from_secs(5);
        let trace_of = |hash| chain.trace_transaction(&turn, hash, config, time);
        let receipt = |hash| chain.committed_transaction(hash).unwrap().unwrap();
        let (first_trace, second_trace) = (trace_of(first).unwrap(), trace_of(second).unwrap());
        assert_eq!(first_trace.gas_used, receipt(first).gas_used);
        assert_eq!(second_trace.gas_used, receipt(second).gas_used);
        assert!(first_trace.gas_used > second_trace.gas_used + 10_000, "{first_trace:?}");
        assert_eq!((second_trace.kind, second_trace.to), (FrameKind::Call, Some(counter)));
        assert_eq!(second_trace.gas, 1_000_000, "its frame's gas is the transaction's");
        assert!(second_trace.calls.is_empty());
        // The reader's call: a STATICCALL of the identity precompile, then a CALL of the store.
        let trace = trace_of(read).unwrap();
        assert_eq!(
            (trace.from, trace.to, trace.error.clone()),
            (sender.address(), Some(reader), None)
        );
        let calls: Vec<_> =
            trace.calls.iter().map(|call| (call.kind, call.from, call.to)).collect();
        assert_eq!(
            calls,
            vec![
                (FrameKind::StaticCall, reader, Some(Address::with_last_byte(4))),
                (FrameKind::Call, reader, Some(store)),
            ]
        );
        assert_eq!(trace.calls[1].value, Some(alloy_primitives::U256::ZERO));
        assert_eq!(trace.calls[0].value, None, "a STATICCALL sends nothing");
        // Only the top call, if asked.
        let only_top = CallTraceConfig { only_top_call: true, ..config };
        let top = chain.trace_transaction(&turn, read, only_top, time).unwrap();
        assert!(top.calls.is_empty() && top.gas_used == trace.gas_used);
        // A Move transaction's trace is its call of the Move entry address; an unknown hash is
        // not found.
        let moved = trace_of(paid).unwrap();
        assert_eq!(
            (moved.from, moved.to),
            (dev_signer(1).address(), Some(duet_types::MOVE_ENTRY_ADDRESS))
        );
        assert_eq!((moved.gas_used, moved.error.clone()), (receipt(paid).gas_used, None));
        assert_eq!(moved.input.as_ref(), paying.encode().as_slice());
        let unknown = B256::repeat_byte(3);
        assert!(
            matches!(trace_of(unknown), Err(super::TraceError::NotFound(hash)) if hash == unknown)
        );
        // The whole block: each transaction's trace in order, the Move one's too.
        let traces = chain.trace_block(&turn, block.number, config, time).unwrap();
        let hashes: Vec<B256> = traces.iter().map(|(hash, _)| *hash).collect();
        assert_eq!(hashes, block.transactions);
        assert_eq!(traces[1].1.clone().unwrap().unwrap(), moved, "the Move transfer");
        assert_eq!(traces[2].1.clone().unwrap().unwrap(), second_trace);
        assert_eq!(traces[3].1.clone().unwrap().unwrap(), trace);
        // Out of time after a first chunk of the replay: geth's words.
        let late = chain.trace_transaction(&turn, read, config, std::time::Duration::ZERO);
        assert!(matches!(late, Err(super::TraceError::TimedOut(_))), "{late:?}");
        *chain.replaying.lock() = None;
        // Traced one by one, as an explorer traces a block's transactions, a replay runs only
        // the transactions after the last one traced (the Move one's as an EVM one's); back to an
        // earlier one, it starts from the block's start again.
        let replays = || chain.metrics.trace_replays.load(std::sync::atomic::Ordering::Relaxed);
        let before = replays();
        assert_eq!(trace_of(first).unwrap(), first_trace);
        assert_eq!(trace_of(paid).unwrap(), moved);
        assert_eq!(trace_of(second).unwrap(), second_trace);
        assert_eq!(trace_of(read).unwrap(), trace);
        assert_eq!(replays() - before, 4, "each transaction once");
        assert_eq!(trace_of(second).unwrap(), second_trace);
        assert_eq!(replays() - before, 7, "from the block's start again");
        // One replay at a time: another waits for none, it is refused.
        let replaying = chain.replaying.lock();
        assert!(matches!(trace_of(read), Err(super::TraceError::Busy)));
        drop(replaying);
        assert!(trace_of(read).is_ok());
    }

    /// A trace that runs out of time keeps where its replay stopped, and each try runs at least
    /// one chunk of the transactions before it: tried again, it gets there, running each
    /// transaction once.
    #[test]
    fn a_trace_out_of_time_goes_on_where_it_stopped_when_tried_again() {
        use duet_evm::trace::CallTraceConfig;
        let directory = tempfile::tempdir().unwrap();
        let config = ChainConfig {
            mempool_limit: 1_000,
            max_block_transactions: 1_000,
            ..ChainConfig::for_tests()
        };
        let chain = open_chain(directory.path(), config);
        let count = 2 * super::REPLAY_CHUNK + 2;
        for nonce in 0..count as u64 {
            chain.submit(&transfer(&dev_signer(0), nonce, 10)).unwrap();
        }
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions.len(), count);
        let turn = chain.call_turn_blocking();
        let last = *block.transactions.last().unwrap();
        let config = CallTraceConfig::default();
        let replays = || chain.metrics.trace_replays.load(std::sync::atomic::Ordering::Relaxed);
        let mut tries = 0;
        let trace = loop {
            tries += 1;
            assert!(tries <= 4, "no progress");
            match chain.trace_transaction(&turn, last, config, std::time::Duration::ZERO) {
                Err(super::TraceError::TimedOut(_)) => {}
                other => break other.unwrap(),
            }
        };
        // 64, then 64, then 1, then the traced one alone.
        assert_eq!(tries, 4);
        assert_eq!(replays(), count as u64, "each transaction once");
        assert_eq!(trace.gas_used, 21_000);
    }

    #[test]
    fn delegated_and_halted_frames_are_traced_as_geth_shows_them() {
        use alloy_eips::eip2930::AccessList;
        use alloy_primitives::TxKind;
        use duet_evm::trace::{CallTraceConfig, FrameKind};
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let sender = dev_signer(0);
        let Readers { store, .. } = reading_contracts(&chain);
        // A contract whose code is INVALID.
        let invalid = sender.address().create(2);
        chain
            .submit(&signed_call(
                &sender,
                2,
                TxKind::Create,
                deploying(&[0xfe]),
                AccessList::default(),
            ))
            .unwrap();
        chain.produce_block().unwrap();
        // Creation code: DELEGATECALL and CALLCODE the store's code, then CALL the INVALID one
        // with 1 000 gas.
        let mut code = alloy_primitives::hex!("6000600060006000 73").to_vec();
        code.extend_from_slice(store.as_slice());
        code.extend(alloy_primitives::hex!("5af450 60006000600060006000 73"));
        code.extend_from_slice(store.as_slice());
        code.extend(alloy_primitives::hex!("5af250 60006000600060006000 73"));
        code.extend_from_slice(invalid.as_slice());
        code.extend(alloy_primitives::hex!("6103e8f150 00"));
        let tx = TxEnv {
            caller: sender.address(),
            kind: TxKind::Create,
            data: code.into(),
            ..TxEnv::default()
        };
        let turn = chain.call_turn_blocking();
        let no_overrides = super::CallOverrides::default();
        let trace = chain
            .trace_call(&turn, tx, StateBlock::Latest, &no_overrides, CallTraceConfig::default())
            .unwrap();
        let created = sender.address().create(3);
        assert_eq!(trace.to, Some(created));
        let calls: Vec<_> =
            trace.calls.iter().map(|call| (call.kind, call.from, call.to, call.value)).collect();
        let zero = Some(alloy_primitives::U256::ZERO);
        assert_eq!(
            calls,
            vec![
                (FrameKind::DelegateCall, created, Some(store), zero),
                (FrameKind::CallCode, created, Some(store), zero),
                (FrameKind::Call, created, Some(invalid), zero),
            ]
        );
        // The halted call used all its gas, and returned nothing; its error in the words
        // `eth_call` gives the same halt (geth's for `INVALID`).
        let halted = &trace.calls[2];
        assert_eq!((halted.gas, halted.gas_used), (1_000, 1_000));
        assert_eq!(
            (halted.error.as_deref(), halted.output.len()),
            (Some("invalid opcode: INVALID"), 0)
        );
        assert!(trace.error.is_none(), "the creation goes on: {trace:?}");
    }

    #[test]
    fn a_call_is_traced_with_the_reason_it_reverted() {
        use alloy_primitives::TxKind;
        use duet_evm::trace::CallTraceConfig;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        // Creation code reverting with Error("no"): the ABI encoding of the reason, then REVERT.
        let reason = alloy_sol_types::SolError::abi_encode(&alloy_sol_types::Revert::from("no"));
        let mut code = Vec::new();
        for (at, word) in reason.chunks(32).enumerate() {
            let mut word = word.to_vec();
            word.resize(32, 0);
            code.push(0x7f);
            code.extend(word);
            code.extend([0x60, u8::try_from(at * 32).unwrap(), 0x52]);
        }
        code.extend([0x60, u8::try_from(reason.len()).unwrap(), 0x60, 0, 0xfd]);
        let tx = TxEnv {
            caller: dev_signer(0).address(),
            kind: TxKind::Create,
            data: code.into(),
            ..TxEnv::default()
        };
        let turn = chain.call_turn_blocking();
        let no_overrides = super::CallOverrides::default();
        let config = CallTraceConfig::default();
        let trace = chain.trace_call(&turn, tx, StateBlock::Latest, &no_overrides, config).unwrap();
        assert_eq!(trace.error.as_deref(), Some("execution reverted"));
        assert_eq!(trace.revert_reason.as_deref(), Some("no"));
        assert_eq!(trace.output.as_ref(), reason.as_slice());
        assert_eq!(trace.to, None, "nothing was created");
    }

    #[test]
    fn call_traces_past_their_bounds_are_refused_and_a_top_frame_still_given() {
        use alloy_primitives::TxKind;
        use duet_evm::trace::CallTraceConfig;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        // 40 CALLs of an empty account, each passing the same 1 MiB of memory as calldata
        // (2.2 million gas for the memory, about 150 a call): 40 MiB of inputs to copy.
        let mut code = Vec::new();
        for _ in 0..40 {
            code.extend(alloy_primitives::hex!("6000 6000 62100000 6000 6000 61dead 5a f1 50"));
        }
        let tx = TxEnv {
            caller: dev_signer(0).address(),
            kind: TxKind::Create,
            data: code.into(),
            ..TxEnv::default()
        };
        let turn = chain.call_turn_blocking();
        let no_overrides = super::CallOverrides::default();
        let traced =
            |config| chain.trace_call(&turn, tx.clone(), StateBlock::Latest, &no_overrides, config);
        let refused = traced(CallTraceConfig::default()).unwrap_err();
        assert!(refused.to_string().contains("more than 16 MiB"), "{refused}");
        let top = traced(CallTraceConfig { only_top_call: true, with_logs: false }).unwrap();
        assert!(top.calls.is_empty() && top.error.is_none(), "{top:?}");
        // Three transactions of 12 such calls in one block: each trace fits, the three do not.
        let sender = dev_signer(0);
        let twelve: Vec<u8> = tx.data[..12 * 18].to_vec();
        let hashes: Vec<B256> = (0..3)
            .map(|nonce| {
                let unsigned = alloy_consensus::TxEip1559 {
                    to: TxKind::Create,
                    input: twelve.clone().into(),
                    ..unsigned_transfer(nonce, alloy_primitives::U256::ZERO, 10, 3_000_000)
                };
                chain.submit(&crate::client::sign(&sender, unsigned).unwrap()).unwrap()
            })
            .collect();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, hashes);
        let time = std::time::Duration::from_secs(5);
        let block_traces = chain.trace_block(&turn, block.number, CallTraceConfig::default(), time);
        let outcomes: Vec<_> =
            block_traces.unwrap().into_iter().map(|(_, trace)| trace.unwrap().err()).collect();
        let too_large = Some(duet_evm::trace::TraceFailure::TracesTooLarge);
        assert_eq!(outcomes, vec![None, None, too_large]);
        let alone = chain.trace_transaction(&turn, hashes[2], CallTraceConfig::default(), time);
        assert_eq!(alone.unwrap().calls.len(), 12);
    }

    #[test]
    fn a_call_reads_one_block_even_while_the_next_one_commits() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let code = balance_and_number_code();
        let tx = TxEnv {
            caller: dev_signer(0).address(),
            kind: alloy_primitives::TxKind::Create,
            data: code.into(),
            ..TxEnv::default()
        };
        let balance_and_number = |output: alloy_primitives::Bytes| {
            (
                alloy_primitives::U256::from_be_slice(&output[..32]),
                alloy_primitives::U256::from_be_slice(&output[32..]),
            )
        };
        chain.submit(&payment(&dev_signer(0), 0, alloy_primitives::U256::from(5), 10)).unwrap();
        let first = chain.produce_block().unwrap().number;
        // A call's state taken now, then a block pays 7 more: the call sees the first block
        // whole (its balance and its number), as a call that started before the second block
        // committed would.
        let before = chain
            .call_state(StateBlock::Latest, Address::ZERO, &super::CallOverrides::default())
            .unwrap();
        chain.submit(&payment(&dev_signer(0), 1, alloy_primitives::U256::from(7), 10)).unwrap();
        chain.produce_block().unwrap();
        let (output, _) = chain.call_at(&before, tx.clone()).unwrap();
        assert_eq!(
            balance_and_number(output),
            (alloy_primitives::U256::from(5), alloy_primitives::U256::from(first))
        );
        let (output, _) = chain.call(&chain.call_turn_blocking(), tx.clone()).unwrap();
        assert_eq!(
            balance_and_number(output),
            (alloy_primitives::U256::from(12), alloy_primitives::U256::from(first + 1))
        );
        // Pending: the latest state, as the next block.
        let turn = chain.call_turn_blocking();
        let (output, _) = chain
            .call_at_block(&turn, tx, super::StateBlock::Pending, &super::CallOverrides::default())
            .unwrap();
        assert_eq!(
            balance_and_number(output),
            (alloy_primitives::U256::from(12), alloy_primitives::U256::from(first + 2))
        );
    }

    #[test]
    fn a_block_takes_transactions_by_the_gas_they_use_as_ethereum_clients_do() {
        // Transfers that ask for 50 000 gas and use 21 000, in blocks of 100 000 gas. Taken by
        // their gas limits, a block would hold two; taken as geth and anvil take them (while a
        // transaction's gas limit fits in the gas left), it holds three: 21 000 × 3 leaves
        // 37 000, too little for a fourth.
        let (first, second) = (dev_signer(0), dev_signer(1));
        let config = ChainConfig { block_gas_limit: 100_000, ..ChainConfig::for_tests() };
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), config);
        let send = |signer, nonce| {
            let raw = signed_transfer(signer, nonce, alloy_primitives::U256::from(1), 10, 50_000);
            chain.submit(&raw).unwrap()
        };
        let hashes: Vec<B256> = (0..5).map(|nonce| send(&first, nonce)).collect();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, hashes[..3], "nonces 0 and 1, then 2 for the gas left");
        assert_eq!(block.gas_used, 63_000);
        let last = chain.committed_transaction(hashes[2]).unwrap().unwrap();
        assert_eq!((last.index, last.cumulative_gas_used, last.success), (2, 63_000, true));
        assert_eq!(chain.account(first.address()).unwrap().0, 3);
        // The next block takes the other two, and a second sender's first in the gas left.
        let other = send(&second, 0);
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, [hashes[3], other, hashes[4]]);
        assert_eq!(block.gas_used, 63_000);
        assert_eq!(chain.account(first.address()).unwrap().0, 5);
        assert_eq!(chain.pending_count(), 0);
    }

    #[test]
    fn a_block_holds_what_geth_would_when_gas_limits_are_padded_many_times_over() {
        // Transfers asking for 100 000 gas and using 21 000, in blocks of 1 000 000: geth takes
        // one while the gas left is at least 100 000, so 43 (after 43, 97 000 is left).
        let signer = dev_signer(0);
        let config = ChainConfig {
            block_gas_limit: 1_000_000,
            mempool_limit: 100,
            max_block_transactions: 100,
            ..ChainConfig::for_tests()
        };
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), config);
        let hashes: Vec<B256> = (0..50)
            .map(|nonce| {
                let one = alloy_primitives::U256::from(1);
                chain.submit(&signed_transfer(&signer, nonce, one, 10, 100_000)).unwrap()
            })
            .collect();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, hashes[..43]);
        assert_eq!(block.gas_used, 43 * 21_000);
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, hashes[43..]);
        assert_eq!(chain.account(signer.address()).unwrap().0, 50);
    }

    #[test]
    fn a_module_published_in_one_round_of_a_block_is_called_in_the_next() {
        // The publish asks for 3 000 000 gas and the call for 1 000 000, in a block of 3 999 999:
        // the first round takes the publish alone, the second the call, which runs on the state
        // the first left (the module is not committed yet).
        use duet_types::MovePayload;

        let signer = dev_signer(0);
        let me = signer.address();
        let modules = example_package(me);
        let increment = || MovePayload::EntryFunction(increment(me));
        let config = ChainConfig { block_gas_limit: 3_999_999, ..ChainConfig::for_tests() };
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), config);
        let publish = chain
            .submit(&signed_move(&signer, 0, &MovePayload::ModuleBundle(modules), 3_000_000))
            .unwrap();
        let call = chain.submit(&signed_move(&signer, 1, &increment(), 1_000_000)).unwrap();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, [publish, call]);
        for hash in [publish, call] {
            let record = chain.committed_transaction(hash).unwrap().unwrap();
            assert_eq!(record.move_status.as_deref(), Some("success"), "{record:?}");
        }
        // The code loaded in the second round came from the block's own state: the next block
        // loads it again from the committed state.
        let again = chain.submit(&signed_move(&signer, 2, &increment(), 1_000_000)).unwrap();
        assert_eq!(chain.produce_block().unwrap().transactions, [again]);
        let record = chain.committed_transaction(again).unwrap().unwrap();
        assert_eq!(record.move_status.as_deref(), Some("success"));
    }

    #[test]
    fn a_call_of_a_module_published_earlier_in_its_block_is_traced() {
        use alloy_eips::eip2930::AccessList;
        use duet_evm::trace::{CallTraceConfig, FrameKind};
        use duet_types::{MovePayload, MOVE_CALL_ADDRESS};
        let signer = dev_signer(0);
        let me = signer.address();
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        // One block: a publication, then `counter::increment` through the Move call precompile
        // (twice: the first creates the counter, the second changes it), from a contract-less
        // account, as an EVM transaction.
        let bundle = MovePayload::ModuleBundle(example_package(me));
        let publish = chain.submit(&signed_move(&signer, 0, &bundle, 3_000_000)).unwrap();
        let input = duet_evm::call_data(&increment(me));
        let kind = alloy_primitives::TxKind::Call(MOVE_CALL_ADDRESS);
        let calls: Vec<B256> = (1..3)
            .map(|nonce| {
                let call = signed_call(&signer, nonce, kind, input.clone(), AccessList::default());
                chain.submit(&call).unwrap()
            })
            .collect();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, [publish, calls[0], calls[1]]);
        let turn = chain.call_turn_blocking();
        let time = std::time::Duration::from_secs(5);
        for hash in &calls {
            // The replay runs the publication first, or the call fails; its gas is checked
            // against the receipt's.
            let trace = chain.trace_transaction(&turn, *hash, CallTraceConfig::default(), time);
            let trace = trace.unwrap();
            assert_eq!(
                (trace.kind, trace.to, trace.error.clone()),
                (FrameKind::Call, Some(MOVE_CALL_ADDRESS), None)
            );
            let record = chain.committed_transaction(*hash).unwrap().unwrap();
            assert!(record.success);
            assert_eq!(trace.gas_used, record.gas_used);
        }
        let published = chain.trace_transaction(&turn, publish, CallTraceConfig::default(), time);
        assert_eq!(published.unwrap().to, Some(duet_types::MOVE_ENTRY_ADDRESS));
    }

    #[test]
    fn state_overrides_change_only_what_they_name() {
        use duet_block_stm::Storage as _;
        use duet_types::{StateKey, StateValue};
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let (replaced, renonced, recoded) =
            (Address::repeat_byte(1), Address::repeat_byte(2), Address::repeat_byte(3));
        let slot = |address, slot: u8| StateKey::Storage { address, slot: B256::repeat_byte(slot) };
        let code_hash = B256::repeat_byte(9);
        let account = |nonce, code_hash| Some(StateValue::Account { nonce, code_hash });
        let base: BTreeMap<StateKey, Option<StateValue>> = [
            (slot(replaced, 1), Some(StateValue::Slot(alloy_primitives::U256::from(5)))),
            (slot(renonced, 1), Some(StateValue::Slot(alloy_primitives::U256::from(6)))),
            (slot(renonced, 2), Some(StateValue::Slot(alloy_primitives::U256::from(11)))),
            (StateKey::Account(renonced), account(3, code_hash)),
            (StateKey::Account(recoded), account(4, code_hash)),
        ]
        .into_iter()
        .collect();
        let base = LayeredStorage::new(&chain.store, &base);
        let code = alloy_primitives::Bytes::from(vec![0x60, 0x00]);
        let overrides = super::CallOverrides {
            accounts: vec![
                super::AccountOverride {
                    address: replaced,
                    storage: vec![(B256::repeat_byte(0), alloy_primitives::U256::from(7))],
                    replace_storage: true,
                    ..Default::default()
                },
                super::AccountOverride {
                    address: renonced,
                    nonce: Some(10),
                    storage: vec![(B256::repeat_byte(2), alloy_primitives::U256::ZERO)],
                    ..Default::default()
                },
                super::AccountOverride {
                    address: recoded,
                    code: Some(code.clone()),
                    balance: Some(8),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let layer = super::OverrideLayer::new(&overrides, &base).unwrap();
        let state = LayeredStorage::new(&base, &layer);
        let read = |key: StateKey| state.get(&key).unwrap();
        // `state` replaces the storage: the slot it names, and nothing of the others.
        assert_eq!(
            read(slot(replaced, 0)),
            Some(StateValue::Slot(alloy_primitives::U256::from(7)))
        );
        assert_eq!(read(slot(replaced, 1)), None);
        // `stateDiff` and a nonce change what they name and keep the rest (code, other slots).
        assert_eq!(
            read(slot(renonced, 1)),
            Some(StateValue::Slot(alloy_primitives::U256::from(6)))
        );
        assert_eq!(read(slot(renonced, 2)), None);
        assert_eq!(read(StateKey::Account(renonced)), account(10, code_hash));
        // Code keeps the nonce and is found by its hash; the balance is the one given.
        let hash = alloy_primitives::keccak256(&code);
        assert_eq!(read(StateKey::Account(recoded)), account(4, hash));
        assert_eq!(read(StateKey::Code(hash)), Some(StateValue::Bytes(code)));
        assert_eq!(read(StateKey::Balance(recoded)), Some(StateValue::Balance(8)));
    }

    #[test]
    fn a_pending_call_runs_after_the_callers_transactions_waiting_in_the_pool() {
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let code = balance_and_number_code();
        let balance_from = |caller: Address, block| {
            let tx = TxEnv {
                caller,
                kind: alloy_primitives::TxKind::Create,
                data: code.clone().into(),
                ..TxEnv::default()
            };
            let (output, _) = chain
                .call_at_block(
                    &chain.call_turn_blocking(),
                    tx,
                    block,
                    &super::CallOverrides::default(),
                )
                .unwrap();
            // Pending runs as the next block; the others as the latest.
            let head = chain.head().number;
            let number = if block == StateBlock::Pending { head + 1 } else { head };
            assert_eq!(alloy_primitives::U256::from_be_slice(&output[32..]), number);
            alloy_primitives::U256::from_be_slice(&output[..32])
        };
        // Two payments of 5 and 7 wei wait in the pool (no block yet), and one of 100 from
        // nonce 3, above a gap: it could not run next.
        let (sender, other) = (dev_signer(0), dev_signer(1));
        chain.submit(&payment(&sender, 0, alloy_primitives::U256::from(5), 10)).unwrap();
        chain.submit(&payment(&sender, 1, alloy_primitives::U256::from(7), 10)).unwrap();
        chain.submit(&payment(&sender, 3, alloy_primitives::U256::from(100), 10)).unwrap();
        let twelve = alloy_primitives::U256::from(12);
        assert_eq!(balance_from(sender.address(), StateBlock::Pending), twelve);
        // The latest state, another caller's pending view, and the latest block's: none.
        assert_eq!(balance_from(sender.address(), StateBlock::Latest), 0);
        assert_eq!(balance_from(other.address(), StateBlock::Pending), 0);
        // Once a block holds them, the pending view is the latest state's, even while the pool
        // still holds one (as it may between a block's commit and its clean-up).
        let first = chain.mempool.lock().waiting(sender.address()).next().unwrap().clone();
        chain.produce_block().unwrap();
        assert_eq!(balance_from(sender.address(), StateBlock::Pending), twelve);
        assert_eq!(balance_from(sender.address(), StateBlock::Latest), twelve);
        let arrival = crate::mempool::Arrival::Restored { state_nonce: 0 };
        chain.mempool.lock().insert(first, arrival).unwrap();
        assert_eq!(balance_from(sender.address(), StateBlock::Pending), twelve);
        // Past the stale entry, the transactions from the state nonce run: nonce 2 (20 wei),
        // which closes the gap, and then nonce 3 (100).
        chain.submit(&payment(&sender, 2, alloy_primitives::U256::from(20), 10)).unwrap();
        let all_four = alloy_primitives::U256::from(132);
        assert_eq!(balance_from(sender.address(), StateBlock::Pending), all_four);
        // A state override lies over the pool's writes.
        let overridden = super::CallOverrides {
            accounts: vec![super::AccountOverride {
                address: Address::repeat_byte(0xbe),
                balance: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        };
        let tx = TxEnv {
            caller: sender.address(),
            kind: alloy_primitives::TxKind::Create,
            data: code.clone().into(),
            ..TxEnv::default()
        };
        let turn = chain.call_turn_blocking();
        let (output, _) = chain.call_at_block(&turn, tx, StateBlock::Pending, &overridden).unwrap();
        assert_eq!(alloy_primitives::U256::from_be_slice(&output[..32]), 1);
        drop(turn);
        // At most one transaction's gas limit of them runs: of a first that asks for all of it
        // and a second, only the first.
        let greedy = dev_signer(2);
        let all = chain.max_transaction_gas();
        let nine = alloy_primitives::U256::from(9);
        chain.submit(&signed_transfer(&greedy, 0, nine, 10, all)).unwrap();
        chain.submit(&payment(&greedy, 1, alloy_primitives::U256::from(4), 10)).unwrap();
        let after_first = alloy_primitives::U256::from(21);
        assert_eq!(balance_from(greedy.address(), StateBlock::Pending), after_first);
    }

    #[test]
    fn a_block_older_than_the_kept_history_is_refused_in_words() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open_keeping(directory.path(), 1).unwrap();
        let chain =
            Chain::open(ChainConfig::for_tests(), store, &crate::genesis::dev_genesis()).unwrap();
        for _ in 0..3 {
            chain.produce_block().unwrap();
        }
        let refused = chain.state_at(StateBlock::Number(1)).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            refused,
            "state of block 1 is not available: this node keeps the state of the last block \
             before the head, now blocks 2 to 3"
        );
        assert!(chain.state_at(StateBlock::Number(2)).is_ok());
        let future = chain.state_at(StateBlock::Number(4)).map(|_| ()).unwrap_err().to_string();
        assert_eq!(future, "header not found");
    }

    #[test]
    fn a_call_at_a_block_before_a_publication_runs_that_blocks_code() {
        use duet_types::{MovePayload, MOVE_CALL_ADDRESS};

        let signer = dev_signer(0);
        let me = signer.address();
        let modules = example_package(me);
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let before = chain.produce_block().unwrap().number;
        chain
            .submit(&signed_move(&signer, 0, &MovePayload::ModuleBundle(modules), 3_000_000))
            .unwrap();
        let published = chain.produce_block().unwrap().number;
        // `counter::increment` through the Move call precompile, as the signer.
        let tx = TxEnv {
            caller: me,
            kind: alloy_primitives::TxKind::Call(MOVE_CALL_ADDRESS),
            data: duet_evm::call_data(&increment(me)).into(),
            ..TxEnv::default()
        };
        let turn = chain.call_turn_blocking();
        let call =
            |block| chain.call_at_block(&turn, tx.clone(), block, &super::CallOverrides::default());
        // The calls' Move VM loads the module at the latest block...
        call(StateBlock::Latest).unwrap();
        call(StateBlock::Number(published)).unwrap();
        // ...which a call at the block before it must not run: there, it does not exist yet.
        let refused = call(StateBlock::Number(before)).unwrap_err();
        assert!(matches!(refused, CallError::Reverted(_)), "{refused:?}");
        call(StateBlock::Latest).unwrap();
    }

    #[test]
    fn a_transaction_a_block_rejects_keeps_its_record_for_a_submission_on_its_way() {
        use duet_types::{EntryFunction, MovePayload};
        use std::collections::HashMap;

        let (signer, funder) = (dev_signer(0), dev_signer(1));
        let one_eth = 10u128.pow(18);
        // A Move transfer of all but one ether, then a payment of two: admitted (the pool
        // counts what transactions may pay in fees and value, not what their Move code
        // moves), and rejected by the block for want of funds.
        let drain = MovePayload::EntryFunction(EntryFunction {
            module_address: Address::from_word(B256::with_last_byte(1)),
            module_name: "eth".to_owned(),
            function: "transfer".to_owned(),
            type_arguments: vec![],
            arguments: vec![
                bcs::to_bytes(&Address::repeat_byte(0xbe).0 .0).unwrap(),
                bcs::to_bytes(&(crate::genesis::DEV_BALANCE - one_eth)).unwrap(),
            ],
        });
        let drain = signed_move(&signer, 0, &drain, 1_000_000);
        let pay = payment(&signer, 1, alloy_primitives::U256::from(2 * one_eth), 10);
        let directory = tempfile::tempdir().unwrap();
        let open = || open_chain(directory.path(), ChainConfig::for_tests());
        let chain = open();
        let drain = chain.submit(&drain).unwrap();
        // Two submissions of the payment at once: both checked, the first admitted, the second
        // writing its record while the block runs.
        let first = chain.check_transaction(&pay, &mut HashMap::new()).unwrap();
        let second = chain.check_transaction(&pay, &mut HashMap::new()).unwrap();
        chain.store.put_pending(&[(first.hash, &first.raw[..])]).unwrap();
        let hash = chain.admit(first, false).unwrap();
        chain.store.put_pending(&[(second.hash, &second.raw[..])]).unwrap();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, [drain], "the payment is rejected");
        let reason = dropped_reason(&chain, hash);
        assert!(reason.starts_with("rejected by block 1: "), "{reason}");
        // Funded again, the second submission is admitted and acknowledged: its record must
        // be on disk.
        let funding = alloy_consensus::TxEip1559 {
            to: alloy_primitives::TxKind::Call(signer.address()),
            ..unsigned_transfer(0, alloy_primitives::U256::from(5 * one_eth), 10, 21_000)
        };
        chain.submit(&crate::client::sign(&funder, funding).unwrap()).unwrap();
        chain.produce_block().unwrap();
        assert_eq!(chain.admit(second, false).unwrap(), hash);
        let on_disk = chain.store.pending().unwrap();
        assert!(on_disk.iter().any(|record| record.key[..] == hash[..]), "the record was deleted");
        drop(chain);
        let chain = open();
        assert_eq!(chain.restore_pending().unwrap(), 1, "back after a restart");
        assert_eq!(chain.produce_block().unwrap().transactions, [hash]);
    }

    #[test]
    fn the_pool_splits_each_senders_transactions_at_its_first_nonce_gap() {
        let (first, second) = (dev_signer(0), dev_signer(1));
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        for nonce in [0, 1, 3, 4] {
            chain.submit(&transfer(&first, nonce, 10)).unwrap();
        }
        chain.submit(&transfer(&second, 2, 10)).unwrap();
        let pool = chain.pool().unwrap();
        let nonces =
            |part: &[super::PoolTransaction]| part.iter().map(|tx| tx.nonce).collect::<Vec<_>>();
        let of = |signer: &alloy_signer_local::PrivateKeySigner| {
            let sender = pool.iter().find(|entry| entry.sender == signer.address()).unwrap();
            (nonces(&sender.pending), nonces(&sender.queued))
        };
        assert_eq!(of(&first), (vec![0, 1], vec![3, 4]));
        assert_eq!(of(&second), (vec![], vec![2]), "nothing from its nonce 0");
        assert!(pool.windows(2).all(|pair| pair[0].sender < pair[1].sender), "sorted by sender");
        assert_eq!(chain.pending_nonce(first.address()).unwrap(), 2);
    }

    #[test]
    fn one_request_may_carry_a_long_run_of_a_senders_nonces_but_no_deeper_gap() {
        let signer = dev_signer(0);
        let directory = tempfile::tempdir().unwrap();
        let config = ChainConfig { mempool_limit: 1000, ..ChainConfig::for_tests() };
        let chain = open_chain(directory.path(), config);
        // Nonces 0 to 99 in one request: each follows the one before it, as the pool will hold
        // them, however far past the gap limit the last is from the pool's next nonce.
        let run: Vec<_> = (0..100).map(|nonce| transfer(&signer, nonce, 10)).collect();
        let run: Vec<&[u8]> = run.iter().map(|raw| &raw[..]).collect();
        let results = chain.submit_many(&run);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(chain.pending_nonce(signer.address()).unwrap(), 100);
        // A gap counts from the end of the run, and gaps do not chain: 100 + 64 is taken, 165
        // after it is not (the sender's next nonce is still 100).
        let gapped = [transfer(&signer, 100 + MAX_NONCE_GAP, 10), transfer(&signer, 165, 10)];
        let gapped: Vec<&[u8]> = gapped.iter().map(|raw| &raw[..]).collect();
        let results = chain.submit_many(&gapped);
        assert!(results[0].is_ok(), "{results:?}");
        assert!(
            matches!(
                results[1],
                Err(super::SubmitError::Mempool(MempoolError::NonceTooHigh {
                    expected: 100,
                    got: 165
                }))
            ),
            "{results:?}"
        );
        assert_eq!(chain.pending_count(), 101);
        // A run that fills the gap below the waiting 164 follows on through it: 165 to 229 are
        // as close as the run's next nonce (165, then on) allows.
        let filling: Vec<_> =
            (100..164).chain(165..230).map(|nonce| transfer(&signer, nonce, 10)).collect();
        let filling: Vec<&[u8]> = filling.iter().map(|raw| &raw[..]).collect();
        let results = chain.submit_many(&filling);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(chain.pending_nonce(signer.address()).unwrap(), 230);
        assert_eq!(chain.pending_count(), 230);

        // A run whose second transaction is refused (the two together overdraw the account): the
        // ones after it no longer follow on, and are taken only as far as the gap allows.
        let other = dev_signer(1);
        let ether = |amount: u64| {
            alloy_primitives::U256::from(amount) * alloy_primitives::U256::from(10u64.pow(18))
        };
        let mut run =
            vec![payment(&other, 0, ether(6_000), 10), payment(&other, 1, ether(6_000), 10)];
        run.extend((2..=70).map(|nonce| transfer(&other, nonce, 10)));
        let run: Vec<&[u8]> = run.iter().map(|raw| &raw[..]).collect();
        let results = chain.submit_many(&run);
        assert!(results[0].is_ok(), "{results:?}");
        assert!(matches!(results[1], Err(super::SubmitError::Overdraft { .. })), "{results:?}");
        assert!(results[2..=65].iter().all(Result::is_ok), "{results:?}");
        assert!(
            results[66..].iter().all(|result| matches!(
                result,
                Err(super::SubmitError::Mempool(MempoolError::NonceTooHigh { expected: 1, .. }))
            )),
            "{results:?}"
        );
        assert_eq!(chain.pending_count(), 230 + 1 + 64);
    }

    #[test]
    fn a_full_pool_evicts_for_a_better_fee_and_the_evicted_transaction_is_gone_from_disk() {
        let (first, second) = (dev_signer(0), dev_signer(1));
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        let hashes: Vec<B256> =
            (0..10).map(|nonce| chain.submit(&transfer(&first, nonce, 10)).unwrap()).collect();
        let refused = chain.submit(&transfer(&second, 0, 10));
        assert!(
            matches!(refused, Err(super::SubmitError::Mempool(MempoolError::Full))),
            "the same fee does not evict: {refused:?}"
        );
        chain.submit(&transfer(&second, 0, 11)).unwrap();
        assert_eq!(chain.pending_count(), 10);
        assert!(chain.pending(&hashes[9]).is_none(), "the sender's last transaction is evicted");
        assert!(chain.pending(&hashes[8]).is_some());
        assert!(chain
            .metrics()
            .contains("duet_transactions_dropped_total{reason=\"evicted\"} 1\n"));
        drop(chain);
        let chain = open_chain(directory.path(), ChainConfig::for_tests());
        assert_eq!(chain.restore_pending().unwrap(), 10);
        assert!(chain.pending(&hashes[9]).is_none(), "a restart does not bring it back");
    }

    #[test]
    fn transactions_above_a_gap_expire_when_their_sender_was_idle_for_the_lifetime() {
        let (first, second) = (dev_signer(0), dev_signer(1));
        let lifetime = std::time::Duration::from_millis(500);
        let config = ChainConfig { mempool_lifetime: lifetime, ..ChainConfig::for_tests() };
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), config.clone());
        // `first` never sends its nonce 0; `second` sends its 0.
        let stranded = chain.submit(&transfer(&first, 1, 10)).unwrap();
        let included = chain.submit(&transfer(&second, 0, 10)).unwrap();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, vec![included]);
        assert!(chain.pending(&stranded).is_some(), "within the lifetime it waits");
        std::thread::sleep(lifetime + std::time::Duration::from_millis(100));
        // `second` skips its nonce 1 now: above a gap too, but sent just now.
        let recent = chain.submit(&transfer(&second, 2, 10)).unwrap();
        let block = chain.produce_block().unwrap();
        assert!(block.transactions.is_empty());
        assert!(chain.pending(&stranded).is_none(), "its sender was idle for the lifetime");
        assert!(chain.pending(&recent).is_some(), "its sender was not");
        assert!(chain
            .metrics()
            .contains("duet_transactions_dropped_total{reason=\"expired\"} 1\n"));
        let filler = chain.submit(&transfer(&second, 1, 10)).unwrap();
        let block = chain.produce_block().unwrap();
        assert_eq!(block.transactions, vec![filler, recent]);
        drop(chain);
        let chain = open_chain(directory.path(), config);
        assert_eq!(chain.restore_pending().unwrap(), 0, "the expired one is gone from disk");
    }

    /// The genesis state of [`database_without_nodes`]: three balances.
    fn genesis_without_nodes() -> Vec<(StateKey, StateValue)> {
        (1..=3u8)
            .map(|byte| (StateKey::Balance(Address::repeat_byte(byte)), StateValue::Balance(7)))
            .collect()
    }

    /// A database as an earlier version left it: a head block and its state, no tree nodes.
    fn database_without_nodes(state_root: impl Fn(B256) -> B256) -> tempfile::TempDir {
        let directory = tempfile::tempdir().unwrap();
        let state: Vec<(StateKey, Option<StateValue>)> =
            genesis_without_nodes().into_iter().map(|(key, value)| (key, Some(value))).collect();
        let empty = HashMap::<merkle::Position, merkle::Node>::new();
        let root = merkle::update(&empty, merkle::leaves(&state)).unwrap().root;
        let mut block = Block::empty(0, B256::ZERO, 0, &ChainConfig::for_tests());
        block.seal(state_root(root), []);
        let store = Store::open(directory.path()).unwrap();
        store.claim_for_chain(ChainConfig::for_tests().chain_id).unwrap();
        store.commit(&BlockCommit::of_state(&block, &state)).unwrap();
        directory
    }

    #[test]
    fn a_database_without_tree_nodes_gets_them_from_its_state_and_a_wrong_root_is_refused() {
        let directory = database_without_nodes(|root| root);
        let store = Store::open(directory.path()).unwrap();
        let chain = Chain::open(ChainConfig::for_tests(), store, &genesis_without_nodes()).unwrap();
        let key = StateKey::Balance(Address::repeat_byte(2));
        let (head, value, proof) = chain.prove(&key).unwrap();
        let root = head.state_root;
        assert_eq!(root, chain.head().state_root);
        assert_eq!(value, Some(StateValue::Balance(7)));
        let value_hash = duet_types::keccak256(StateValue::Balance(7).encode());
        assert!(merkle::verify(root, key.commitment_key(), Some(value_hash), &proof));
        drop(chain);

        // A head that claims no state root over a state that is not empty.
        let directory = database_without_nodes(|_| B256::ZERO);
        let opened =
            Chain::open(ChainConfig::for_tests(), Store::open(directory.path()).unwrap(), &[]);
        assert!(matches!(opened, Err(StoreError::Corrupt(_))), "{opened:?}");
    }
}
