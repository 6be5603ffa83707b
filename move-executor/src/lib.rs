//! Duet's Move executor: the Move VM (the `mv-*` 0.3.2 crates, built with 20-byte addresses),
//! driven by Block-STM over Duet's one state.
//!
//! [`MoveVm`] implements [`duet_block_stm::Vm`] for [`MoveTransaction`]s. Each transaction runs
//! in a Move VM session whose storage is the Block-STM view ([`resolver`]): modules are read
//! from [`StateKey::MoveModule`], resources from [`StateKey::MoveResource`] (the struct tag in
//! its BCS encoding), and the framework's natives ([`natives`]) read and move the ETH balance and
//! nonce the EVM uses ([`StateKey::Balance`], [`StateKey::Account`]).
//!
//! A transaction is checked first (nonce, gas limit, the sender can afford its maximum fee); a
//! transaction that fails these checks is rejected and changes nothing. Otherwise its nonce
//! advances and it pays `gas used × gas price` to the fee vault (a commutative delta), whatever
//! happens next. As in the EVM, the sender's balance is read and written exactly; the balances
//! it pays (recipients, the vault) only receive deltas. An abort, running out of gas, or any other failure (unknown module or function,
//! wrong arguments, bytecode that does not deserialize or verify, an incompatible upgrade) is
//! reported in the [`MoveReceipt`] and discards every other effect; running out of gas charges
//! the whole gas limit. Gas: see [`gas`].
//!
//! Publishing: a module bundle is published under the sender's address only (the VM refuses any
//! other), passes the bytecode verifier, and may replace existing modules only with compatible
//! upgrades (no public function or struct layout removed or changed). Because the Move VM caches
//! loaded code across sessions, a publishing transaction is a barrier in a block
//! ([`MoveBlockExecutor`]): it runs alone, and the code cache is flushed after it, so no
//! execution ever sees code from a publish that was not (or not yet) committed.
//!
//! The framework ([`framework_modules`]: the Move standard library plus `account`, `eth` and
//! `event`, all at `0x1`) is compiled from `framework/sources` by the build script.

mod arguments;
mod block;
mod compiler;
pub mod evm;
pub mod gas;
pub mod limits;
mod loading;
pub mod natives;
mod package;
pub mod resolver;

pub use block::{Barriers, MoveBlockExecutor, SegmentedExecutor};
pub use package::compile_package;

use smallvec::SmallVec;
use std::cell::Cell;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use duet_block_stm::{Delta, ReadError, TransactionView, TxnIndex, Vm, VmOutput, WriteOp};
use duet_types::{
    Address, EntryFunction, MovePayload, MoveTransaction, StateKey, StateValue, B256,
    KECCAK256_EMPTY,
};
use move_binary_format::errors::{Location, PartialVMError, VMError};
use move_core_types::account_address::AccountAddress;
use move_core_types::effects::Op;
use move_core_types::identifier::Identifier;
use move_core_types::language_storage::{ModuleId, StructTag, TypeTag};
use move_core_types::vm_status::{StatusCode, StatusType};
use move_vm_runtime::move_vm::MoveVM;
use move_vm_runtime::native_extensions::NativeContextExtensions;
use parking_lot::Mutex;

use crate::evm::{EvmHost, EvmHostFactory};
use crate::gas::DuetGasMeter;
use crate::natives::{BalanceChange, EvmAccess, Sender, StateNatives, StateView};
use crate::resolver::{struct_tag_bytes, ViewResolver};

/// The address of the standard library and the framework.
pub const FRAMEWORK_ADDRESS: AccountAddress = AccountAddress::ONE;

/// The most gas one transaction may ask for.
pub const MAX_TRANSACTION_GAS: u64 = 30_000_000;

/// The framework's compiled modules (name, bytecode), built from Move source by the build script.
static FRAMEWORK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/framework.bin"));

/// The framework's modules: the Move standard library and Duet's own, all at `0x1`.
#[must_use]
pub fn framework_modules() -> Vec<(String, Vec<u8>)> {
    embedded_pairs(FRAMEWORK)
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes.to_vec()))
        .collect()
}

/// The pairs of names and bytes in a bundle the build script wrote.
///
/// # Panics
/// Never: the bundles are written by this crate's build script.
fn embedded_pairs(bundle: &'static [u8]) -> Vec<(&'static str, &'static [u8])> {
    fn take(rest: &mut &'static [u8]) -> &'static [u8] {
        let (length, tail) = rest.split_at(4);
        let length = u32::from_le_bytes(length.try_into().expect("four bytes")) as usize;
        let (part, tail) = tail.split_at(length);
        *rest = tail;
        part
    }
    let mut rest = bundle;
    let mut pairs = Vec::new();
    while !rest.is_empty() {
        let name = std::str::from_utf8(take(&mut rest)).expect("names are UTF-8");
        pairs.push((name, take(&mut rest)));
    }
    pairs
}

/// The state a chain starts with for Move: the framework's modules at `0x1`.
#[must_use]
pub fn genesis_state() -> Vec<(StateKey, StateValue)> {
    framework_modules()
        .into_iter()
        .map(|(name, bytes)| {
            let key =
                StateKey::MoveModule { address: to_address(FRAMEWORK_ADDRESS), name: name.into() };
            (key, StateValue::Bytes(bytes.into()))
        })
        .collect()
}

/// A Move address as a Duet address: the same 20 bytes.
#[must_use]
pub fn to_address(address: AccountAddress) -> Address {
    Address::from(address.into_bytes())
}

/// A Duet address as a Move address: the same 20 bytes.
#[must_use]
pub fn to_account_address(address: Address) -> AccountAddress {
    AccountAddress::new(address.0 .0)
}

/// Why a Move transaction was rejected; a rejected transaction changes nothing, not even the
/// sender's nonce.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// The nonce is not the sender's next one.
    #[error("nonce {got} is not the sender's next nonce {expected}")]
    Nonce {
        /// The sender's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The sender is a contract (EIP-3607): it cannot sign transactions. (An account whose
    /// code is an EIP-7702 delegation still can.)
    #[error("the sender has EVM code and cannot send transactions")]
    SenderHasCode,
    /// The gas limit does not cover the transaction's intrinsic gas.
    #[error("gas limit {limit} is below the intrinsic gas {intrinsic}")]
    IntrinsicGas {
        /// The transaction's gas limit.
        limit: u64,
        /// What the transaction costs before it runs.
        intrinsic: u64,
    },
    /// The gas limit is above [`MAX_TRANSACTION_GAS`].
    #[error("gas limit {0} is above the maximum {MAX_TRANSACTION_GAS}")]
    GasLimitTooHigh(u64),
    /// The sender cannot pay `gas limit × gas price`.
    #[error("the sender cannot pay the maximum fee of {0} wei")]
    InsufficientFunds(u128),
    /// `gas limit × gas price` does not fit in 128 bits.
    #[error("the maximum fee overflows")]
    FeeOverflow,
    /// A read of the state failed; the executor handles it.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The state holds a value of the wrong kind under a key: a bug, or corrupt state.
    #[error("state key {0:?} holds a value of the wrong kind")]
    WrongKind(StateKey),
}

/// How an executed Move transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveStatus {
    /// It ran to the end; its effects are applied.
    Success,
    /// It aborted with `code` in `location` (a module id); only the fee was charged.
    Aborted {
        /// The module that aborted (`0xAbC…::name`, the address checksummed).
        location: String,
        /// The abort code.
        code: u64,
    },
    /// It ran out of gas; the whole gas limit was charged and nothing else changed.
    OutOfGas,
    /// It failed for another reason (an unknown module or function, wrong arguments, bytecode
    /// that does not deserialize or verify, an incompatible upgrade, an arithmetic error…); only
    /// the fee was charged.
    Failed {
        /// The Move VM's status code (`LINKER_ERROR`, `NUMBER_OF_ARGUMENTS_MISMATCH`, …).
        status: String,
        /// What went wrong, in words.
        message: String,
    },
}

impl std::fmt::Display for MoveStatus {
    /// `success`, `aborted in … with code …`, `out of gas`, or `STATUS: message`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Success => formatter.write_str("success"),
            Self::Aborted { location, code } => {
                write!(formatter, "aborted in {location} with code {code}")
            }
            Self::OutOfGas => formatter.write_str("out of gas"),
            Self::Failed { status, message } => write!(formatter, "{status}: {message}"),
        }
    }
}

/// An event a Move transaction emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveEvent {
    /// The event's type (`0x…1::eth::Transfer`), shared by the events of one type that a VM
    /// instance emits (each instance writes a type out once).
    pub type_tag: Arc<str>,
    /// The event's value, BCS-encoded.
    pub data: EventData,
}

/// An event's BCS-encoded value: held in place up to 64 bytes (an `eth::Transfer` takes 56), so
/// that a receipt with one small event holds no allocation (the Move VM's buffer is freed on the
/// executing thread; the receipt is often freed on another).
pub type EventData = SmallVec<[u8; EVENT_DATA_IN_PLACE]>;

/// The bytes of event data an [`EventData`] holds in place.
const EVENT_DATA_IN_PLACE: usize = 64;

/// A transaction's events, in order: the first held in place (most transactions emit at most
/// one).
pub type Events = SmallVec<[MoveEvent; 1]>;

/// Events as a session emits them, in order: each type's shared text and the data in the
/// buffer the Move VM wrote it to (a call from Solidity turns it into a log without a copy; a
/// receipt holds [`Events`]).
pub type SessionEvents = SmallVec<[(Arc<str>, Vec<u8>); 1]>;

/// A session's events as a receipt holds them: data of up to 64 bytes in place, whatever its
/// buffer's capacity (`from_vec` keeps a buffer of more than 64 bytes' capacity on the heap).
fn receipt_events(events: SessionEvents) -> Events {
    events
        .into_iter()
        .map(|(type_tag, data)| {
            let data = if data.len() <= EVENT_DATA_IN_PLACE {
                EventData::from_slice(&data)
            } else {
                EventData::from_vec(data)
            };
            MoveEvent { type_tag, data }
        })
        .collect()
}

/// The receipt of an executed Move transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveReceipt {
    /// How it ended.
    pub status: MoveStatus,
    /// The gas charged (intrinsic gas included).
    pub gas_used: u64,
    /// The events emitted, in order (none unless it succeeded).
    pub events: Events,
    /// The logs of the EVM code it called (`duet::evm`), in order (none unless it succeeded).
    pub logs: Vec<duet_types::Log>,
}

impl MoveReceipt {
    /// Whether the transaction succeeded.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.status == MoveStatus::Success
    }
}

/// The Move VM, with Duet's natives, for the blocks of a chain whose fees go to `fee_vault`.
///
/// It holds several Move VM instances, and each executing thread takes its own: the Move VM's
/// code cache takes a write lock on every hit, so threads sharing one instance would queue on it
/// (measured here: two threads on one instance ran 1.07 times as fast as one thread; on two
/// instances, 1.94 times).
pub struct MoveVm {
    /// Move VM instances, created on first use; a thread prefers the same one every time. Each on
    /// cache lines of its own: side by side, one thread's lock shared a line with the end of the
    /// instance another thread was writing (the lock's `cmpxchg` was a third of the samples of
    /// `execute_checked` in the slow mode; padded, the parallel Move block ran 3–4 % faster
    /// there, and no differently in the fast mode).
    instances: Box<[InstanceSlot]>,
    fee_vault: Address,
    /// Whether its instances keep the modules they deserialize for the whole process (see
    /// [`for_calls`](Self::for_calls)).
    keeps_modules: bool,
}

/// Where an instance is kept between runs (boxed: a run takes it out and puts it back).
type InstanceSlot = CachePadded<Mutex<Option<Box<Instance>>>>;

thread_local! {
    /// The instance this thread prefers.
    static PREFERRED_INSTANCE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Hands out preferred instances to threads, round robin.
static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(0);

impl std::fmt::Debug for MoveVm {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MoveVm")
            .field("instances", &self.instances.len())
            .field("fee_vault", &self.fee_vault)
            .finish_non_exhaustive()
    }
}

/// A Move VM instance, and what it learned from the modules it was called into.
struct Instance {
    vm: MoveVM,
    /// The text of the event types it emitted.
    event_types: EventTypes,
    /// Each module's size, dependencies and friends, to charge for loading them (see
    /// [`loading`]), and which of its functions may be called from outside Move (see
    /// [`ensure_callable`]): read once per module (modules that do not exist are not kept, so
    /// calls naming ever new ones do not grow it). Like the VM's code cache, it holds what the
    /// state's code says, and is flushed with it.
    footprints: loading::Footprints,
}

/// The text of event types, by type, as an instance emits them: nearly every transaction emits
/// an event of one of a few types, and writing a type out (its address in hex, its module and
/// name) cost more than a transfer's own instructions. Bounded: emptied when full, and only
/// texts an event may carry (at most [`MAX_RESOURCE_TAG_BYTES`]) are kept.
#[derive(Default)]
struct EventTypes(HashMap<TypeTag, Arc<str>, foldhash::fast::FixedState>);

impl EventTypes {
    /// The most types kept.
    const CAPACITY: usize = 1024;

    fn text(&mut self, type_tag: TypeTag) -> Arc<str> {
        if let Some(text) = self.0.get(&type_tag) {
            return Arc::clone(text);
        }
        let text: Arc<str> = type_tag.to_string().into();
        if text.len() <= MAX_RESOURCE_TAG_BYTES {
            if self.0.len() >= Self::CAPACITY {
                self.0.clear();
            }
            self.0.insert(type_tag, Arc::clone(&text));
        }
        text
    }
}

impl Instance {
    /// Forgets all loaded code, and what it learned from it.
    fn flush_code_cache(&mut self) {
        self.vm.mark_loader_cache_as_invalid();
        self.vm.flush_loader_cache_if_invalidated();
        self.footprints.clear();
    }
}

/// A new instance; keeping the modules it deserializes for the whole process if `keeps_modules`
/// (see [`MoveVm::for_calls`]).
fn new_instance(keeps_modules: bool) -> Instance {
    let vm = MoveVM::new(natives::all_natives())
        .expect("the native table is consistent")
        .keeps_deserialized_modules(keeps_modules);
    let footprints = loading::Footprints::new(keeps_modules);
    Instance { vm, event_types: EventTypes::default(), footprints }
}

impl MoveVm {
    /// A Move VM paying fees to `fee_vault`.
    ///
    /// # Panics
    /// If the native function table is inconsistent (a bug caught by every test).
    #[must_use]
    pub fn new(fee_vault: Address) -> Self {
        Self::with_keeping(fee_vault, true)
    }

    /// A Move VM for calls no one pays for (`eth_call`, views, traces): it runs as [`new`]'s,
    /// but the modules it deserializes are not kept for the process's other VMs, so that no
    /// such call adds to what they keep or empties it (see
    /// `move_vm_runtime::deserialize_module`), nor to the verified publications they remember.
    ///
    /// [`new`]: Self::new
    #[must_use]
    pub fn for_calls(fee_vault: Address) -> Self {
        Self::with_keeping(fee_vault, false)
    }

    fn with_keeping(fee_vault: Address, keeps_modules: bool) -> Self {
        let count = 2 * std::thread::available_parallelism().map_or(4, usize::from).max(4);
        let instances: Box<[_]> = (0..count).map(|_| CachePadded::new(Mutex::new(None))).collect();
        *instances[0].lock() = Some(Box::new(new_instance(keeps_modules)));
        Self { instances, fee_vault, keeps_modules }
    }

    /// Forgets all loaded code. Call it when state that modules were loaded from is discarded
    /// (a publishing block that is not committed); [`MoveBlockExecutor`] calls it after every
    /// publishing transaction. Must not be called while transactions are executing.
    pub fn flush_code_cache(&self) {
        for instance in &self.instances {
            if let Some(instance) = instance.lock().as_mut() {
                instance.flush_code_cache();
            }
        }
    }

    /// The most nodes (of type arguments, tags and layouts) any of its instances caches for
    /// instantiated structs: at most [`move_vm_runtime::TYPE_CACHE_NODES_MAX`].
    #[must_use]
    pub fn cached_type_nodes(&self) -> usize {
        self.instances
            .iter()
            .filter_map(|instance| instance.lock().as_ref().map(|it| it.vm.cached_type_nodes()))
            .max()
            .unwrap_or(0)
    }

    /// Runs `run` with a Move VM instance no other thread is using. A panic of the VM (a bug
    /// of the VM, which a crafted transaction could reach) is the transaction's failure
    /// ([`Failure::Panicked`]): it pays all its gas, as when it runs out, rather than nothing.
    fn with_instance<'a>(
        &self,
        run: impl FnOnce(&mut Instance) -> Result<Effects<'a>, Failure>,
    ) -> Result<Effects<'a>, Failure> {
        let count = self.instances.len();
        let preferred = PREFERRED_INSTANCE.with(|preferred| {
            preferred.get().unwrap_or_else(|| {
                let index = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed) % count;
                preferred.set(Some(index));
                index
            })
        }) % count;
        let mut slot = (0..count)
            .find_map(|offset| self.instances[(preferred + offset) % count].try_lock())
            .unwrap_or_else(|| self.instances[preferred].lock());
        // Taken out while it runs and put back only if `run` returns: a panic drops it, in
        // whatever state it was left, and the next run on this slot starts a new one.
        let mut instance =
            slot.take().unwrap_or_else(|| Box::new(new_instance(self.keeps_modules)));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut instance)));
        match outcome {
            Ok(outcome) => {
                *slot = Some(instance);
                outcome
            }
            Err(_) => Err(Failure::Panicked),
        }
    }
}

/// What a call of a Move function from the EVM returned and did (see [`MoveVm::call_function`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOutcome {
    /// How the call ended. Anything but [`MoveStatus::Success`] comes with no effects.
    pub status: MoveStatus,
    /// The gas the call used; all of `gas_limit` when it ran out.
    pub gas_used: u64,
    /// The function's return values, each BCS-encoded.
    pub return_values: Vec<Vec<u8>>,
    /// Writes of Move resources, in the order the Move VM reports them.
    pub writes: Vec<(StateKey, WriteOp<StateValue>)>,
    /// ETH moved by the call: every account credited, with the amount (only the caller is
    /// debited, by the sum of these).
    pub credits: Vec<(Address, u128)>,
    /// Events emitted, in order.
    pub events: SessionEvents,
}

impl MoveVm {
    /// Calls the `public` or `entry` function `call` as `caller` (its `signer`, if the function
    /// takes one) over `view`, with `gas_limit` gas: the Move side of a call from Solidity. The
    /// caller's balance is read through `view` and may be spent entirely. Publishing is not
    /// possible this way.
    ///
    /// # Errors
    /// A read of the caller's balance failed; the executor handles it.
    pub fn call_function<View>(
        &self,
        view: &View,
        caller: Address,
        call: &EntryFunction,
        gas_limit: u64,
    ) -> Result<CallOutcome, MoveError>
    where
        View: TransactionView<Key = StateKey, Value = StateValue>,
    {
        let caller = Sender {
            address: caller,
            balance: read_balance(view, caller)?,
            reserved_fee: 0,
            // Read through the view when asked: the EVM's journal, which its transaction
            // advanced.
            nonce: None,
            code_hash: KECCAK256_EMPTY,
        };
        let mut meter = DuetGasMeter::new(gas_limit);
        let state: &StateView<'_> = view;
        let resolver = ViewResolver::new(state);
        let outcome = self.with_instance(|instance| {
            let work = Work::Call(call);
            Self::run(instance, &caller, work, &resolver, EvmAccess::Unavailable, &mut meter)
        });
        let caller = caller.address;
        let (status, effects) = settle(outcome, &mut meter);
        let effects = effects.unwrap_or_default();
        Ok(CallOutcome {
            status,
            gas_used: gas_limit - meter.remaining(),
            return_values: effects.return_values,
            writes: effects.writes,
            credits: effects
                .balances
                .into_iter()
                .filter(|(address, change)| *address != caller && change.credit > 0)
                .map(|(address, change)| (address, change.credit))
                .collect(),
            events: effects.events,
        })
    }
}

/// The exact balance of `address` through `view`.
fn read_balance<View>(view: &View, address: Address) -> Result<u128, MoveError>
where
    View: TransactionView<Key = StateKey, Value = StateValue>,
{
    let key = StateKey::Balance(address);
    match view.read(&key)? {
        None => Ok(0),
        Some(StateValue::Balance(balance)) => Ok(balance),
        Some(_) => Err(MoveError::WrongKind(key)),
    }
}

/// How a session ended, and its effects if it succeeded. Running out of gas leaves `meter`
/// empty, so "gas limit − remaining" charges the whole limit then.
fn settle<'a>(
    outcome: Result<Effects<'a>, Failure>,
    meter: &mut DuetGasMeter,
) -> (MoveStatus, Option<Effects<'a>>) {
    match outcome {
        Ok(effects) => (MoveStatus::Success, Some(effects)),
        Err(failure) => {
            if matches!(failure, Failure::Panicked) {
                meter.exhaust();
            }
            let status = status_of(failure);
            debug_assert!(status != MoveStatus::OutOfGas || meter.remaining() == 0);
            (status, None)
        }
    }
}

/// What a session produced: writes of modules and resources, balance moves (or the EVM that
/// holds them), events, and the function's return values.
#[derive(Default)]
struct Effects<'a> {
    writes: Vec<(StateKey, WriteOp<StateValue>)>,
    balances: BTreeMap<Address, BalanceChange>,
    evm: Option<Box<dyn EvmHost + 'a>>,
    events: SessionEvents,
    return_values: Vec<Vec<u8>>,
}

/// Why a session failed.
enum Failure {
    Vm(Box<VMError>),
    /// The payload names something that cannot exist (an invalid identifier or type).
    Invalid(String),
    /// The VM panicked: the transaction pays all its gas.
    Panicked,
}

impl From<VMError> for Failure {
    fn from(error: VMError) -> Self {
        Self::Vm(Box::new(error))
    }
}

impl From<PartialVMError> for Failure {
    fn from(error: PartialVMError) -> Self {
        Self::Vm(Box::new(error.finish(Location::Undefined)))
    }
}

impl Vm for MoveVm {
    type Transaction = MoveTransaction;
    type Key = StateKey;
    type Value = StateValue;
    type Output = MoveReceipt;
    type Error = MoveError;

    fn execute<View>(
        &self,
        _txn_index: TxnIndex,
        transaction: &MoveTransaction,
        view: &View,
    ) -> Result<VmOutput<StateKey, StateValue, MoveReceipt>, MoveError>
    where
        View: TransactionView<Key = StateKey, Value = StateValue>,
    {
        self.execute_transaction(transaction, view, None)
    }

    /// The fee vault's balance, which every transaction credits.
    fn hot_credit_key(&self) -> Option<StateKey> {
        Some(StateKey::Balance(self.fee_vault))
    }
}

/// The first bytes of an EIP-7702 delegation: the code of an account that delegated to the 20
/// bytes of an address after them.
const DELEGATION_PREFIX: [u8; 3] = [0xef, 0x01, 0x00];

/// Whether the code with `code_hash` is an EIP-7702 delegation: its account is still one a key
/// signs for (EIP-7702 lifts EIP-3607's rule for it).
fn is_delegation<View>(view: &View, code_hash: B256) -> Result<bool, MoveError>
where
    View: TransactionView<Key = StateKey, Value = StateValue>,
{
    Ok(match view.read(&StateKey::Code(code_hash))? {
        Some(StateValue::Bytes(code)) => code.len() == 23 && code.starts_with(&DELEGATION_PREFIX),
        _ => false,
    })
}

impl MoveVm {
    /// Executes `transaction` over `view`; with `evm`, its Move code can call the EVM
    /// (`duet::evm`), which that factory opens. What [`Vm::execute`] does, with `evm: None`.
    ///
    /// # Errors
    /// The transaction is rejected ([`MoveError`]); it changes nothing.
    pub fn execute_transaction<View>(
        &self,
        transaction: &MoveTransaction,
        view: &View,
        evm: Option<&dyn EvmHostFactory>,
    ) -> Result<VmOutput<StateKey, StateValue, MoveReceipt>, MoveError>
    where
        View: TransactionView<Key = StateKey, Value = StateValue>,
    {
        let sender = transaction.sender;
        let header_key = StateKey::Account(sender);
        let (nonce, code_hash) = match view.read(&header_key)? {
            None => (0, KECCAK256_EMPTY),
            Some(StateValue::Account { nonce, code_hash }) => (nonce, code_hash),
            Some(_) => return Err(MoveError::WrongKind(header_key)),
        };
        if code_hash != KECCAK256_EMPTY && !is_delegation(view, code_hash)? {
            return Err(MoveError::SenderHasCode);
        }
        if transaction.nonce != nonce {
            return Err(MoveError::Nonce { expected: nonce, got: transaction.nonce });
        }
        let intrinsic = gas::intrinsic_gas(transaction.payload.encoded_len());
        if transaction.gas_limit < intrinsic {
            return Err(MoveError::IntrinsicGas { limit: transaction.gas_limit, intrinsic });
        }
        if transaction.gas_limit > MAX_TRANSACTION_GAS {
            return Err(MoveError::GasLimitTooHigh(transaction.gas_limit));
        }
        let max_fee = u128::from(transaction.gas_limit)
            .checked_mul(transaction.gas_price)
            .ok_or(MoveError::FeeOverflow)?;
        let sender_balance = read_balance(view, sender)?;
        if sender_balance < max_fee {
            return Err(MoveError::InsufficientFunds(max_fee));
        }
        let sender = Sender {
            address: sender,
            balance: sender_balance,
            reserved_fee: max_fee,
            nonce: Some(nonce + 1),
            code_hash,
        };
        let evm = evm.map_or(EvmAccess::Unavailable, EvmAccess::Closed);
        self.execute_checked(transaction, view, &sender, evm, transaction.gas_limit - intrinsic)
    }

    /// Runs a checked transaction, with `budget` gas after its intrinsic gas.
    fn execute_checked(
        &self,
        transaction: &MoveTransaction,
        state: &StateView<'_>,
        sender: &Sender,
        evm: EvmAccess<'_>,
        budget: u64,
    ) -> Result<VmOutput<StateKey, StateValue, MoveReceipt>, MoveError> {
        let resolver = ViewResolver::new(state);
        let mut meter = DuetGasMeter::new(budget);
        let outcome = self.with_instance(|instance| {
            let work = match &transaction.payload {
                MovePayload::EntryFunction(call) => Work::Entry(call),
                MovePayload::ModuleBundle(modules) => {
                    // Publishing checks the bundle against the code it loads (the depth of its
                    // dependencies' chains among others): from an empty cache, so that what
                    // earlier transactions cached cannot change the outcome.
                    instance.flush_code_cache();
                    Work::Publish(modules)
                }
            };
            Self::run(instance, sender, work, &resolver, evm, &mut meter)
        });
        let (status, effects) = settle(outcome, &mut meter);
        let gas_used = transaction.gas_limit - meter.remaining();
        // INVARIANT: gas_used <= gas_limit, so the fee is at most the reserved fee.
        let fee = u128::from(gas_used) * transaction.gas_price;

        let mut effects = effects.unwrap_or_default();
        if let Some(host) = effects.evm.take() {
            // The EVM's journal holds every account change, the sender's nonce and balance too.
            let evm = host.finish(fee)?;
            let mut writes = evm.writes;
            writes.extend(effects.writes);
            credit(&mut writes, self.fee_vault, fee);
            let events = receipt_events(effects.events);
            let output = MoveReceipt { status, gas_used, events, logs: evm.logs };
            return Ok(VmOutput { writes, output });
        }
        // INVARIANT: a transaction's sender has its nonce.
        let nonce = sender.nonce.unwrap_or_default();
        let header = StateValue::Account { nonce, code_hash: sender.code_hash };
        let mut writes = vec![(StateKey::Account(sender.address), WriteOp::Put(header))];
        writes.extend(effects.writes);
        let mut balances = effects.balances;
        if fee > 0 {
            let payer = balances.entry(sender.address).or_default();
            payer.debit = payer.debit.saturating_add(fee);
            let vault = balances.entry(self.fee_vault).or_default();
            vault.credit = vault.credit.saturating_add(fee);
        }
        if let Some(change) = balances.remove(&sender.address) {
            // INVARIANT: every debit, the fee included, was checked against the exact balance.
            let balance = sender.balance.saturating_add(change.credit).saturating_sub(change.debit);
            if balance != sender.balance {
                let write = if balance == 0 {
                    WriteOp::Delete
                } else {
                    WriteOp::Put(StateValue::Balance(balance))
                };
                writes.push((StateKey::Balance(sender.address), write));
            }
        }
        for (address, change) in balances {
            let delta = match change.credit.cmp(&change.debit) {
                CmpOrdering::Greater => Delta::add(change.credit - change.debit),
                CmpOrdering::Less => Delta::sub(change.debit - change.credit),
                CmpOrdering::Equal => continue,
            };
            writes.push((StateKey::Balance(address), WriteOp::Delta(delta)));
        }
        let events = receipt_events(effects.events);
        let output = MoveReceipt { status, gas_used, events, logs: Vec::new() };
        Ok(VmOutput { writes, output })
    }
}

/// Adds `amount` to `address`'s balance in `writes`, which hold at most one write per key.
fn credit(writes: &mut Vec<(StateKey, WriteOp<StateValue>)>, address: Address, amount: u128) {
    if amount == 0 {
        return;
    }
    let key = StateKey::Balance(address);
    let Some((_, write)) = writes.iter_mut().find(|(written, _)| *written == key) else {
        writes.push((key, WriteOp::Delta(Delta::add(amount))));
        return;
    };
    *write = match write {
        WriteOp::Put(StateValue::Balance(balance)) => {
            WriteOp::Put(StateValue::Balance(balance.saturating_add(amount)))
        }
        WriteOp::Delete => WriteOp::Put(StateValue::Balance(amount)),
        WriteOp::Delta(Delta::Add { amount: added, .. }) => {
            WriteOp::Delta(Delta::add(added.saturating_add(amount)))
        }
        WriteOp::Delta(Delta::Sub { amount: taken, .. }) if *taken > amount => {
            WriteOp::Delta(Delta::sub(*taken - amount))
        }
        WriteOp::Delta(Delta::Sub { amount: taken, .. }) => {
            WriteOp::Delta(Delta::add(amount - *taken))
        }
        // INVARIANT: balance keys hold balances.
        WriteOp::Put(other) => WriteOp::Put(other.clone()),
    };
}

impl MoveVm {
    /// Runs `work` in a session for `sender`; on success, charges for what it writes.
    fn run<'a>(
        instance: &mut Instance,
        sender: &Sender,
        work: Work<'_>,
        resolver: &'a ViewResolver<'a>,
        evm: EvmAccess<'a>,
        meter: &mut DuetGasMeter,
    ) -> Result<Effects<'a>, Failure> {
        let mut extensions = NativeContextExtensions::default();
        extensions.add(StateNatives::new(resolver.state(), sender, meter.gauge(), evm));
        let Instance { vm, event_types, footprints } = instance;
        let mut session = vm.new_session_with_extensions(resolver, extensions);
        let signer = to_account_address(sender.address);
        let mut return_values = Vec::new();
        match work {
            Work::Entry(call) | Work::Call(call) => {
                let module = ModuleId::new(
                    to_account_address(call.module_address),
                    identifier(&call.module_name)?,
                );
                let function = identifier(&call.function)?;
                let type_arguments = call
                    .type_arguments
                    .iter()
                    .map(|text| {
                        type_argument_fits(text)?;
                        move_core_types::parser::parse_type_tag(text)
                            .map_err(|error| Failure::Invalid(format!("type `{text}`: {error}")))
                    })
                    .collect::<Result<Vec<TypeTag>, Failure>>()?;
                loading::charge_call(footprints, resolver, &module, &type_arguments, meter)?;
                let loaded = session.load_function(&module, &function, &type_arguments)?;
                let name = || format!("{}::{function}", module.short_str_lossless());
                let arguments =
                    arguments::call_arguments(&session, &loaded, &signer, &call.arguments, name)?;
                droppable_returns(&session, &loaded, name)?;
                let returned = if matches!(work, Work::Entry(_)) {
                    session.execute_entry_function(
                        &module,
                        &function,
                        type_arguments,
                        arguments,
                        meter,
                    )?
                } else {
                    ensure_callable(footprints, resolver, &module, &function)?;
                    session.execute_function_bypass_visibility(
                        &module,
                        &function,
                        type_arguments,
                        arguments,
                        meter,
                    )?
                };
                return_values =
                    returned.return_values.into_iter().map(|(bytes, _layout)| bytes).collect();
            }
            Work::Publish(modules) => {
                limits::check_bundle(modules.len())?;
                let bytes: usize = modules.iter().map(Vec::len).sum();
                meter.charge(
                    gas::MODULE
                        .saturating_mul(modules.len() as u64)
                        .saturating_add(gas::MODULE_BYTE.saturating_mul(bytes as u64)),
                )?;
                // Malformed bytes are the VM's to report.
                let (compiled, work) = limits::check_bundle_modules(modules)?;
                meter.charge(gas::VERIFICATION_WORK.saturating_mul(work as u64))?;
                loading::charge_publication(footprints, resolver, &compiled, meter)?;
                session.publish_module_bundle(modules.to_vec(), signer, meter)?;
            }
        }
        let (changes, events, mut extensions) = session.finish_with_extensions()?;
        let natives: StateNatives<'a> = extensions.remove();
        let evm = match natives.evm {
            EvmAccess::Open(host) => Some(host),
            EvmAccess::Unavailable | EvmAccess::Closed { .. } => None,
        };

        let mut writes = Vec::new();
        for (address, account) in changes.into_inner() {
            let address = to_address(address);
            let (modules, resources) = account.into_inner();
            for (name, op) in modules {
                let key = StateKey::MoveModule { address, name: name.as_str().into() };
                // Paid for when published (`gas::MODULE`, `gas::MODULE_BYTE`), not again here.
                writes.push((key, state_write(op)));
            }
            for (tag, op) in resources {
                writes.push(resource_write(meter, address, &tag, op)?);
            }
        }
        let events = events
            .into_iter()
            .map(|(_guid, _sequence, type_tag, data)| {
                // The type's name is kept with the data (in the receipt, as a log's topic):
                // paid for by the byte too, and bounded as a resource's key is.
                let text = event_types.text(type_tag);
                within_type_bound("an event type", text.len())?;
                let bytes = data.len() + text.len();
                // Its base was charged when it was emitted (`natives`).
                meter.charge(gas::EVENT_BYTE * bytes as u64)?;
                Ok((text, data))
            })
            .collect::<Result<SessionEvents, PartialVMError>>()?;
        Ok(Effects { writes, balances: natives.balances, evm, events, return_values })
    }
}

/// What a session runs.
#[derive(Clone, Copy)]
enum Work<'a> {
    /// An entry function, called by a transaction.
    Entry(&'a EntryFunction),
    /// A public or entry function whose return values are wanted, called from the EVM.
    Call(&'a EntryFunction),
    /// A module bundle to publish.
    Publish(&'a [Vec<u8>]),
}

/// Refuses a call from outside Move of a function that is neither `public` nor `entry`: a
/// module's private and friend functions are reachable only as the module allows.
fn ensure_callable(
    footprints: &mut loading::Footprints,
    resolver: &ViewResolver<'_>,
    module: &ModuleId,
    function: &Identifier,
) -> Result<(), Failure> {
    let callable = footprints
        .of(resolver, module)?
        .map_or(loading::Callable::No, |footprint| footprint.callable(function));
    match callable {
        loading::Callable::Yes => Ok(()),
        // The VM runs natives only when Move code calls them.
        loading::Callable::Native => Err(Failure::Invalid(format!(
            "{module}::{function} is a native function: call a Move function that calls it"
        ))),
        loading::Callable::No => Err(Failure::Vm(Box::new(
            PartialVMError::new(StatusCode::EXECUTE_ENTRY_FUNCTION_CALLED_ON_NON_ENTRY_FUNCTION)
                .with_message(format!("{module}::{function} is neither public nor entry"))
                .finish(Location::Module(module.clone())),
        ))),
    }
}

/// The write of resource `tag` at `address`, charged: its key is stored too, so it is paid for
/// by the byte and bounded (a generic type can double its size at each level of a call chain).
fn resource_write(
    meter: &mut DuetGasMeter,
    address: Address,
    tag: &StructTag,
    op: Op<Vec<u8>>,
) -> Result<(StateKey, WriteOp<StateValue>), Failure> {
    let struct_tag = struct_tag_bytes(tag).map_err(|error| {
        PartialVMError::new(StatusCode::VALUE_SERIALIZATION_ERROR).with_message(error.0)
    })?;
    if matches!(op, Op::New(_)) {
        // New ones only: one stored before the bound can still change or go.
        within_type_bound("a resource type", struct_tag.len())?;
    }
    if !matches!(op, Op::Delete) {
        meter.charge(gas::WRITE_BYTE * struct_tag.len() as u64)?;
    }
    Ok((StateKey::MoveResource { address, struct_tag }, charge_write(meter, op)?))
}

/// `bytes` of a type (`what`) kept in the state or a receipt, if within [`MAX_RESOURCE_TAG_BYTES`].
fn within_type_bound(what: &str, bytes: usize) -> Result<(), PartialVMError> {
    if bytes > MAX_RESOURCE_TAG_BYTES {
        return Err(PartialVMError::new(StatusCode::VALUE_SERIALIZATION_ERROR)
            .with_message(format!("{what} of {bytes} bytes; at most {MAX_RESOURCE_TAG_BYTES}")));
    }
    Ok(())
}

/// Charges for one write of a resource's value, and turns it into a Block-STM write.
fn charge_write(meter: &mut DuetGasMeter, op: Op<Vec<u8>>) -> Result<WriteOp<StateValue>, Failure> {
    match &op {
        Op::New(bytes) => {
            meter.charge(gas::RESOURCE_CREATE + gas::WRITE_BYTE * bytes.len() as u64)?;
        }
        Op::Modify(bytes) => {
            meter.charge(gas::RESOURCE_CHANGE + gas::WRITE_BYTE * bytes.len() as u64)?;
        }
        Op::Delete => {}
    }
    Ok(state_write(op))
}

/// A write of a module or resource as a Block-STM write.
fn state_write(op: Op<Vec<u8>>) -> WriteOp<StateValue> {
    match op {
        Op::New(bytes) | Op::Modify(bytes) => WriteOp::Put(StateValue::Bytes(bytes.into())),
        Op::Delete => WriteOp::Delete,
    }
}

/// The status of a transaction the Move VM panicked on (see [`MoveVm`]'s `with_instance`).
pub const VM_PANIC: &str = "VM_PANIC";

/// The status of a transaction whose values held more heap at once than
/// [`gas::MEMORY_QUOTA`] allows; it pays the gas it used.
pub const MEMORY_LIMIT_EXCEEDED: &str = "MEMORY_LIMIT_EXCEEDED";

/// The longest resource type a transaction may store, in bytes of its BCS struct tag (its key),
/// and the longest event type it may emit, in bytes of its name.
pub const MAX_RESOURCE_TAG_BYTES: usize = 1_024;

// The VM refuses to read, write or emit a type whose tag is longer, before building it: the
// same bound, as a type tag (one byte more than the struct tag a key holds).
const _: () = assert!(move_vm_runtime::TYPE_TAG_BYTES_MAX == MAX_RESOURCE_TAG_BYTES + 1);

/// The longest type argument accepted, in bytes.
pub const MAX_TYPE_ARGUMENT_LENGTH: usize = 256;
/// The deepest nesting of a type argument accepted (`vector<vector<u8>>` is 2).
pub const MAX_TYPE_ARGUMENT_DEPTH: usize = 8;

/// Refuses the Move type written in `text` if it is longer than `max_length` bytes or nests
/// type arguments deeper than `max_depth` levels (`vector<vector<u8>>` is 2). Measured without
/// parsing: the Move parser recurses once per level, so text from outside goes through this
/// before it is parsed.
///
/// # Errors
/// What the type exceeds, in words, calling it `what` ("a type", "a type argument").
pub fn type_text_fits(
    text: &str,
    what: &str,
    max_length: usize,
    max_depth: usize,
) -> Result<(), String> {
    let mut depth: usize = 0;
    let mut deepest = 0;
    for byte in text.bytes() {
        match byte {
            b'<' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if text.len() > max_length || deepest > max_depth {
        return Err(format!("{what} is at most {max_length} bytes and {max_depth} levels deep"));
    }
    Ok(())
}

/// Refuses a type argument too long or too deeply nested to parse safely.
fn type_argument_fits(text: &str) -> Result<(), Failure> {
    type_text_fits(text, "a type argument", MAX_TYPE_ARGUMENT_LENGTH, MAX_TYPE_ARGUMENT_DEPTH)
        .map_err(Failure::Invalid)
}

/// `text` as a Move identifier, refused past [`limits::MAX_IDENTIFIER_BYTES`] (no published
/// module has a longer name) before anything is read or copied by it.
fn identifier(text: &str) -> Result<Identifier, Failure> {
    let max = limits::MAX_IDENTIFIER_BYTES;
    if text.len() > max {
        let message = format!("a Move identifier is at most {max} bytes, not {}", text.len());
        return Err(Failure::Invalid(message));
    }
    Identifier::new(text)
        .map_err(|_| Failure::Invalid(format!("`{text}` is not a Move identifier")))
}

/// Refuses a function that returns a value of a type without `drop`: its caller here (a
/// transaction, or Solidity through the Move call precompile) gets the value's bytes and the
/// value itself is thrown away, which Move code may not do. A module may count on it being
/// consumed (a flash loan's "hot potato" that must be handed back, a coin, a capability).
fn droppable_returns<S: move_core_types::resolver::MoveResolver>(
    session: &move_vm_runtime::session::Session<'_, '_, S>,
    loaded: &move_vm_runtime::session::LoadedFunctionInstantiation,
    name: impl Fn() -> String,
) -> Result<(), Failure> {
    for (at, returned) in loaded.return_.iter().enumerate() {
        let returned = returned.subst(&loaded.type_arguments).map_err(|error| {
            Failure::Invalid(format!("{}: return {at}: {:?}", name(), error.major_status()))
        })?;
        if !session.get_type_abilities(&returned)?.has_drop() {
            return Err(Failure::Invalid(format!(
                "{}: return {at} is of a type without `drop`: the caller would throw the value \
                 away, which Move does not allow",
                name()
            )));
        }
    }
    Ok(())
}

fn status_of(failure: Failure) -> MoveStatus {
    let error = match failure {
        Failure::Vm(error) => error,
        Failure::Invalid(message) => {
            return MoveStatus::Failed { status: "INVALID_PAYLOAD".to_owned(), message }
        }
        // Its message is the VM's and may print its state: every node says the same instead.
        Failure::Panicked => {
            return MoveStatus::Failed {
                status: VM_PANIC.to_owned(),
                message: "the Move VM failed on this transaction; it pays all its gas".to_owned(),
            }
        }
    };
    match error.major_status() {
        StatusCode::OUT_OF_GAS => MoveStatus::OutOfGas,
        StatusCode::VM_EXTENSION_ERROR
            if error.sub_status() == Some(gas::MEMORY_QUOTA_SUB_STATUS) =>
        {
            MoveStatus::Failed {
                status: MEMORY_LIMIT_EXCEEDED.to_owned(),
                message: error.message().cloned().unwrap_or_default(),
            }
        }
        StatusCode::ABORTED => MoveStatus::Aborted {
            location: match error.location() {
                Location::Module(module) => {
                    format!("{}::{}", to_address(*module.address()), module.name())
                }
                other => format!("{other:?}"),
            },
            code: error.sub_status().unwrap_or_default(),
        },
        // An invariant violation's message may print the VM's own state (a loaded type's index
        // in one VM instance's cache, say), which differs between the instances that run a
        // block's transactions; a Solidity caller can store what a failed Move call says. Only
        // its status is given: every node says the same.
        status if status.status_type() == StatusType::InvariantViolation => {
            MoveStatus::Failed { status: format!("{status:?}"), message: format!("{status:?}") }
        }
        status => MoveStatus::Failed {
            status: format!("{status:?}"),
            message: error.message().cloned().unwrap_or_else(|| format!("{status:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use move_core_types::language_storage::StructTag;

    use super::*;

    #[test]
    fn a_panic_of_the_vm_is_a_failure_that_pays_all_its_gas_and_the_instance_is_replaced() {
        let vm = MoveVm::new(Address::repeat_byte(0xfe));
        // This thread's slot holds an instance once a run returned.
        assert!(vm.with_instance(|_| Ok(Effects::default())).is_ok());
        let held = |vm: &MoveVm| vm.instances.iter().filter(|slot| slot.lock().is_some()).count();
        let before = held(&vm);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let panicked = vm.with_instance(|_| panic!("a bug of the VM"));
        std::panic::set_hook(previous);
        assert!(matches!(panicked, Err(Failure::Panicked)));
        let mut meter = DuetGasMeter::new(1_000);
        meter.charge(10).unwrap();
        let (status, effects) = settle(panicked, &mut meter);
        assert!(effects.is_none());
        assert_eq!(meter.remaining(), 0, "all its gas");
        let MoveStatus::Failed { status, message } = status else { panic!("{status:?}") };
        assert_eq!(status, VM_PANIC);
        assert!(!message.contains("a bug of the VM"), "the VM's message is not shown: {message}");
        // The instance that panicked was dropped, in whatever state it was left; the next run
        // on its slot gets a new one.
        assert_eq!(held(&vm), before - 1);
        assert!(vm.with_instance(|_| Ok(Effects::default())).is_ok());
        assert_eq!(held(&vm), before);
    }

    #[test]
    fn an_invariant_violation_says_its_status_only_and_other_failures_their_message() {
        use move_binary_format::errors::PartialVMError;
        let failure = |status, message: &str| {
            let error = PartialVMError::new(status).with_message(message.to_owned());
            status_of(Failure::Vm(Box::new(error.finish(Location::Undefined))))
        };
        let violation = failure(StatusCode::UNKNOWN_INVARIANT_VIOLATION_ERROR, "index 7 of VM 1");
        let status = "UNKNOWN_INVARIANT_VIOLATION_ERROR".to_owned();
        assert_eq!(violation, MoveStatus::Failed { status: status.clone(), message: status });
        let missing = failure(StatusCode::FUNCTION_RESOLUTION_FAILURE, "no function f");
        let status = "FUNCTION_RESOLUTION_FAILURE".to_owned();
        assert_eq!(missing, MoveStatus::Failed { status, message: "no function f".to_owned() });
    }

    fn struct_type(name: &str, type_params: Vec<TypeTag>) -> TypeTag {
        TypeTag::Struct(StructTag {
            address: AccountAddress::ONE,
            module: Identifier::new("m").expect("an identifier"),
            name: Identifier::new(name).expect("an identifier"),
            type_params,
        })
    }

    #[test]
    fn the_framework_keeps_to_the_limits_every_publication_does() {
        // Genesis writes it into the state directly: nothing else checks it.
        for (name, bytes) in framework_modules() {
            let module = move_binary_format::CompiledModule::deserialize(&bytes)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            limits::check_module(&module).unwrap_or_else(|error| panic!("{name}: {error}"));
        }
    }

    #[test]
    fn only_event_type_texts_an_event_may_carry_are_kept() {
        let mut types = EventTypes::default();
        let short = struct_type("Transfer", vec![]);
        let long = struct_type("E", vec![struct_type(&"x".repeat(255), vec![]); 8]);
        assert_eq!(&*types.text(short.clone()), "0x1::m::Transfer");
        assert!(types.text(long.clone()).len() > MAX_RESOURCE_TAG_BYTES);
        assert!(types.0.contains_key(&short) && !types.0.contains_key(&long));
    }
}
