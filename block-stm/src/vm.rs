//! The seam between the executor and a virtual machine.
//!
//! A VM plugs into Block-STM by implementing [`Vm`]. It reads state only through the
//! [`TransactionView`] it is handed, and returns what it wants written as a list of [`WriteOp`]s.
//! The executor never looks inside transactions, keys or values beyond the bounds given here.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use crate::delta::Delta;

/// A transaction's position in its block.
pub type TxnIndex = usize;

/// How many times a transaction has been (re-)started in one block run; `0` is the first.
pub type Incarnation = u32;

/// A state key, as the executor needs it: hashable for the multi-version memory, ordered for
/// canonical output.
pub trait StateKeyBound: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static> StateKeyBound for T {}

/// A state value.
///
/// Values that commutative [`Delta`]s apply to (balances, counters) must round-trip through
/// `u128`; other values return `None` from [`as_u128`](Self::as_u128), and a delta on them is an
/// error for the block.
pub trait StateValueBound: Clone + Eq + Debug + Send + Sync + 'static {
    /// The value as an integer a delta can apply to, or `None` if it is not numeric.
    fn as_u128(&self) -> Option<u128>;
    /// The value that holds the integer `value` (the result of applying a delta).
    fn from_u128(value: u128) -> Self;
}

impl StateValueBound for duet_types::StateValue {
    fn as_u128(&self) -> Option<u128> {
        self.as_balance()
    }
    fn from_u128(value: u128) -> Self {
        Self::Balance(value)
    }
}

impl StateValueBound for u128 {
    fn as_u128(&self) -> Option<u128> {
        Some(*self)
    }
    fn from_u128(value: u128) -> Self {
        value
    }
}

/// One write of a transaction's write set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp<V> {
    /// Set the key to this value.
    Put(V),
    /// Remove the key.
    Delete,
    /// Change the key's integer value by a bounded amount, without having read it. Deltas of
    /// different transactions do not conflict with each other; an absent key counts as `0`.
    Delta(Delta),
}

/// What a transaction's execution produced: the writes to apply and the VM's own output (a
/// receipt, events, gas used…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmOutput<K, V, O> {
    /// The write set. One write per key: where a key appears twice, the later write replaces the
    /// earlier one.
    pub writes: Vec<(K, WriteOp<V>)>,
    /// The VM's output for this transaction.
    pub output: O,
}

/// A failure of the state behind the executor (an I/O or database error). It is an error for the
/// whole block, never a transaction's outcome.
#[derive(Clone, Debug, thiserror::Error)]
#[error("storage failure: {0}")]
pub struct StorageError(pub Arc<dyn std::error::Error + Send + Sync>);

impl PartialEq for StorageError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for StorageError {}

/// The committed state a block executes on top of.
pub trait Storage: Sync {
    /// The key type.
    type Key;
    /// The value type.
    type Value;
    /// The value stored under `key`, `None` if absent.
    ///
    /// # Errors
    /// A failure of the backing store; the block's execution stops with it.
    fn get(&self, key: &Self::Key) -> Result<Option<Self::Value>, StorageError>;
}

/// Why a read through a [`TransactionView`] failed.
///
/// A VM must stop executing and return (any error, or any output) when it gets one: the executor
/// remembers the cause and ignores what the VM returns for this execution.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The value depends on a transaction earlier in the block that has not finished; the executor
    /// will run this transaction again once it has.
    #[error("read depends on an unfinished earlier transaction")]
    Dependency,
    /// The storage behind the block failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A transaction's window onto the state: the storage, plus the writes of every transaction before
/// it in the block.
///
/// Methods take `&self` so that VM resolvers (which take `&self`) can wrap a view directly.
pub trait TransactionView {
    /// The key type.
    type Key;
    /// The value type.
    type Value;

    /// The value of `key` as of this transaction: `None` if absent. Pending deltas on it are
    /// applied, so the value is exact.
    ///
    /// # Errors
    /// [`ReadError`]: stop executing and return.
    fn read(&self, key: &Self::Key) -> Result<Option<Self::Value>, ReadError>;

    /// Whether `delta` would stay within its bounds if applied to the current value of `key`,
    /// without making the transaction depend on the exact value: other transactions' deltas to the
    /// same key only invalidate this answer if they change it.
    ///
    /// # Errors
    /// [`ReadError`]: stop executing and return.
    fn delta_fits(&self, key: &Self::Key, delta: Delta) -> Result<bool, ReadError>;
}

/// A virtual machine that Block-STM can drive.
///
/// `execute` must be deterministic: given the same transaction and the same answers from the
/// view, it returns the same result. It may run several times for one transaction (speculatively,
/// on state that later turns out stale) and concurrently for different transactions.
pub trait Vm: Sync {
    /// A transaction of this VM.
    type Transaction: Sync;
    /// The state key type.
    type Key: StateKeyBound;
    /// The state value type.
    type Value: StateValueBound;
    /// What a successful execution reports (a receipt).
    type Output: Send;
    /// Why the VM rejected a transaction outright; a rejected transaction changes no state.
    type Error: Send;

    /// Executes the transaction at `txn_index` of the block against `view`.
    ///
    /// # Errors
    /// The transaction is invalid and must change nothing (for example a bad nonce). Outcomes
    /// that still change state (a revert that charges gas) belong in the `Ok` output instead.
    #[allow(clippy::type_complexity)] // Spelled out: exactly what a VM returns.
    fn execute<View>(
        &self,
        txn_index: TxnIndex,
        transaction: &Self::Transaction,
        view: &View,
    ) -> Result<VmOutput<Self::Key, Self::Value, Self::Output>, Self::Error>
    where
        View: TransactionView<Key = Self::Key, Value = Self::Value>;

    /// A key that nearly every transaction of a block credits (a fee vault), if the VM has one.
    ///
    /// The parallel executor keeps each transaction's plain credit ([`Delta::Add`]) of this key
    /// with the transaction's own record instead of in the key's shared list of writes, so that
    /// paying fees does not make every transaction touch the same memory. Whether its value is
    /// at least some amount is still answered at once; reading its exact value walks the
    /// transactions below the reader, as reading any key that many transactions credited does.
    /// Results are the same either way.
    fn hot_credit_key(&self) -> Option<Self::Key> {
        None
    }

    /// Executes `transactions` (the block's, from `first_index` on) one after another over
    /// `storage`, if the VM has a faster way to than one [`execute`](Self::execute) per
    /// transaction through a view of the writes before it; `None` if it has not. The sequential
    /// executor uses it for whole runs; the output must be exactly the one it would make.
    #[allow(clippy::type_complexity)] // Spelled out: exactly what the sequential executor returns.
    fn execute_sequentially<S>(
        &self,
        transactions: &[Self::Transaction],
        first_index: TxnIndex,
        storage: &S,
    ) -> Option<Result<crate::VmBlockOutput<Self>, crate::BlockError<Self::Key>>>
    where
        Self: Sized,
        S: Storage<Key = Self::Key, Value = Self::Value>,
    {
        let _ = (transactions, first_index, storage);
        None
    }
}

/// The final result of one transaction of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionResult<O, E> {
    /// The VM executed the transaction; its writes are in the block's state updates.
    Executed(O),
    /// The VM rejected the transaction; it changed nothing.
    Rejected(E),
    /// The VM panicked on this transaction (with this message); it changed nothing. Deterministic
    /// like any other result, because the VM is.
    Panicked(String),
}
