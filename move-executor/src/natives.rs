//! The natives of the Move standard library and of the Duet framework.
//!
//! The framework's natives reach Duet's state through a `StateNatives` extension that holds the
//! transaction's Block-STM view: `account::sequence_number` reads the account header the EVM
//! also uses, `eth::balance` the shared ETH balance, and `eth::move_balance` moves ETH. Balance
//! moves are kept per account as credits and debits. The sender's balance is read exactly (as in
//! the EVM) and written as a value; every other account's change becomes a commutative delta, so
//! transfers and fees never make transactions conflict on their recipients or on the fee vault.
//!
//! `evm::call_native` calls the EVM through an [`EvmHost`], opened on the
//! transaction's first call; from then on balances, nonces and transfers go through the EVM's
//! journal, the transaction's one overlay (see [`crate::evm`]). `evm::keccak256` hashes.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use better_any::{Tid, TidAble};
use duet_block_stm::{Delta, TransactionView};
use duet_types::{Address, StateKey, StateValue};
use move_binary_format::errors::{PartialVMError, PartialVMResult};
use move_core_types::account_address::AccountAddress;
use move_core_types::vm_status::sub_status::NFE_BCS_SERIALIZATION_FAILURE;
use move_core_types::vm_status::StatusCode;
use move_vm_runtime::native_functions::{
    make_table_from_iter, NativeContext, NativeFunction, NativeFunctionTable,
};
use move_vm_types::loaded_data::runtime_types::Type;
use move_vm_types::natives::function::NativeResult;
use move_vm_types::pop_arg;
use move_vm_types::values::{Reference, Value};
use move_vm_types::views::ValueView;
use smallvec::smallvec;

use crate::evm::{EvmCall, EvmCallResult, EvmHost, EvmHostFactory};
use crate::gas::{
    BCS_FAILURE, ETH_TRANSFER, EVENT, EVM_CALL, KECCAK, KECCAK_WORD, LAYOUT_NODE,
    NATIVE_STATE_READ, SIZE_UNITS_PER_GAS,
};
use crate::{to_address, FRAMEWORK_ADDRESS};

/// `evm::ENO_EVM`: the EVM cannot be called here.
const ENO_EVM: u64 = 1;

/// The EVM as this transaction's natives reach it.
pub(crate) enum EvmAccess<'a> {
    /// None: a Move function called from the EVM, or a chain without an EVM.
    Unavailable,
    /// Not opened yet.
    Closed(&'a (dyn EvmHostFactory + 'a)),
    /// Opened by the transaction's first call into the EVM.
    Open(Box<dyn EvmHost + 'a>),
}

/// A transaction's view of the state, as the natives see it.
pub(crate) type StateView<'a> = dyn TransactionView<Key = StateKey, Value = StateValue> + 'a;

/// What a transaction's natives have done to ETH balances so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BalanceChange {
    pub(crate) credit: u128,
    pub(crate) debit: u128,
}

/// The natives' access to the state, and what they changed, for one transaction.
#[derive(Tid)]
pub(crate) struct StateNatives<'a> {
    view: &'a StateView<'a>,
    /// The transaction's sender.
    sender: Sender,
    /// Balance moves, by account, until the EVM is opened (then they are in its journal).
    pub(crate) balances: BTreeMap<Address, BalanceChange>,
    /// The gas the transaction has left.
    gas: Rc<Cell<u64>>,
    pub(crate) evm: EvmAccess<'a>,
}

/// The sender of a session and what the natives need to know about it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sender {
    pub(crate) address: Address,
    /// Its exact balance before the transaction.
    pub(crate) balance: u128,
    /// The fee reserved out of it: the most the transaction can pay.
    pub(crate) reserved_fee: u128,
    /// Its nonce, advanced by the transaction; `None` for a caller from the EVM, whose nonce
    /// the view reads (its transaction advanced it in the EVM's journal).
    pub(crate) nonce: Option<u64>,
    /// Its code hash: empty, or an EIP-7702 delegation's, which the transaction keeps.
    pub(crate) code_hash: duet_types::B256,
}

impl<'a> StateNatives<'a> {
    pub(crate) fn new(
        view: &'a StateView<'a>,
        sender: &Sender,
        gas: Rc<Cell<u64>>,
        evm: EvmAccess<'a>,
    ) -> Self {
        Self { view, sender: *sender, balances: BTreeMap::new(), gas, evm }
    }

    fn nonce(&mut self, address: Address) -> PartialVMResult<u64> {
        if let EvmAccess::Open(host) = &mut self.evm {
            return host.nonce(address).map_err(storage_error);
        }
        // The sender's as its transaction advanced it (the nonce of its next transaction), as
        // the EVM's journal holds it once opened and as an EVM transaction's code sees its own.
        if let (true, Some(nonce)) = (address == self.sender.address, self.sender.nonce) {
            return Ok(nonce);
        }
        match self.view.read(&StateKey::Account(address)).map_err(storage_error)? {
            None => Ok(0),
            Some(StateValue::Account { nonce, .. }) => Ok(nonce),
            Some(_) => Err(wrong_kind(&StateKey::Account(address))),
        }
    }

    /// The balance of `address` as this transaction sees it: stored, plus its own moves.
    fn balance(&mut self, address: Address) -> PartialVMResult<u128> {
        if let EvmAccess::Open(host) = &mut self.evm {
            return host.balance(address).map_err(storage_error);
        }
        let stored = if address == self.sender.address {
            self.sender.balance
        } else {
            match self.view.read(&StateKey::Balance(address)).map_err(storage_error)? {
                None => 0,
                Some(StateValue::Balance(balance)) => balance,
                Some(_) => return Err(wrong_kind(&StateKey::Balance(address))),
            }
        };
        let change = self.balances.get(&address).copied().unwrap_or_default();
        // INVARIANT: every debit was checked against the balance, so this cannot underflow.
        Ok(stored.saturating_add(change.credit).saturating_sub(change.debit))
    }

    /// Moves `amount` from `from` to `to` if `from` can afford it (the sender keeps its reserved
    /// fee); returns whether it did. The sender's balance is known exactly; any other payer's is
    /// asked as a bound, which credits from other transactions do not invalidate.
    fn move_balance(&mut self, from: Address, to: Address, amount: u128) -> PartialVMResult<bool> {
        if amount == 0 {
            return Ok(true);
        }
        if let EvmAccess::Open(host) = &mut self.evm {
            return host.transfer(from, to, amount).map_err(storage_error);
        }
        let change = self.balances.get(&from).copied().unwrap_or_default();
        let spent = change.debit.saturating_add(amount);
        let affordable = if from == self.sender.address {
            self.sender.balance.saturating_add(change.credit)
                >= spent.saturating_add(self.sender.reserved_fee)
        } else {
            spent <= change.credit
                || self
                    .view
                    .delta_fits(&StateKey::Balance(from), Delta::sub(spent - change.credit))
                    .map_err(storage_error)?
        };
        if !affordable {
            return Ok(false);
        }
        let debited = self.balances.entry(from).or_default();
        debited.debit = debited.debit.saturating_add(amount);
        let credited = self.balances.entry(to).or_default();
        credited.credit = credited.credit.saturating_add(amount);
        Ok(true)
    }
}

impl StateNatives<'_> {
    /// Calls the EVM, opening it first if this is the transaction's first call; `None` if the EVM
    /// cannot be called here.
    fn call_evm(&mut self, call: EvmCall) -> PartialVMResult<Option<EvmCallResult>> {
        if let EvmAccess::Closed(factory) = self.evm {
            let sender = self.balances.remove(&self.sender.address).unwrap_or_default();
            // INVARIANT: every debit, the reserved fee included, was checked against the balance.
            let balance =
                self.sender.balance.saturating_add(sender.credit).saturating_sub(sender.debit);
            // INVARIANT: only a transaction's session has an EVM to open, and its sender's nonce.
            let nonce = self.sender.nonce.unwrap_or_default();
            let mut host = factory
                .open(self.sender.address, nonce, balance, self.sender.reserved_fee)
                .map_err(storage_error)?;
            for (address, change) in std::mem::take(&mut self.balances) {
                // Only a signer pays, and a transaction's only signer is its sender.
                if change.debit > 0 {
                    return Err(PartialVMError::new(StatusCode::UNKNOWN_INVARIANT_VIOLATION_ERROR)
                        .with_message(format!("{address} paid without being the sender")));
                }
                host.credit(address, change.credit).map_err(storage_error)?;
            }
            self.evm = EvmAccess::Open(host);
        }
        match &mut self.evm {
            EvmAccess::Open(host) => host.call(call).map(Some).map_err(storage_error),
            _ => Ok(None),
        }
    }
}

/// A read through the view failed: execution stops, and the executor handles the cause.
#[allow(clippy::needless_pass_by_value)] // Used as `map_err(storage_error)`.
fn storage_error(error: duet_block_stm::ReadError) -> PartialVMError {
    PartialVMError::new(StatusCode::STORAGE_ERROR).with_message(error.to_string())
}

fn wrong_kind(key: &StateKey) -> PartialVMError {
    PartialVMError::new(StatusCode::STORAGE_ERROR)
        .with_message(format!("state key {key:?} holds a value of the wrong kind"))
}

type NativeFn =
    fn(&mut NativeContext<'_, '_>, Vec<Type>, VecDeque<Value>) -> PartialVMResult<NativeResult>;

fn native_sequence_number(
    context: &mut NativeContext<'_, '_>,
    _types: Vec<Type>,
    mut arguments: VecDeque<Value>,
) -> PartialVMResult<NativeResult> {
    let address = to_address(pop_arg!(arguments, AccountAddress));
    let nonce = context.extensions_mut().get_mut::<StateNatives<'_>>().nonce(address)?;
    Ok(NativeResult::ok(NATIVE_STATE_READ.into(), smallvec![Value::u64(nonce)]))
}

fn native_balance(
    context: &mut NativeContext<'_, '_>,
    _types: Vec<Type>,
    mut arguments: VecDeque<Value>,
) -> PartialVMResult<NativeResult> {
    let address = to_address(pop_arg!(arguments, AccountAddress));
    let balance = context.extensions_mut().get_mut::<StateNatives<'_>>().balance(address)?;
    Ok(NativeResult::ok(NATIVE_STATE_READ.into(), smallvec![Value::u128(balance)]))
}

fn native_move_balance(
    context: &mut NativeContext<'_, '_>,
    _types: Vec<Type>,
    mut arguments: VecDeque<Value>,
) -> PartialVMResult<NativeResult> {
    let amount = pop_arg!(arguments, u128);
    let to = to_address(pop_arg!(arguments, AccountAddress));
    let from = to_address(pop_arg!(arguments, AccountAddress));
    let moved =
        context.extensions_mut().get_mut::<StateNatives<'_>>().move_balance(from, to, amount)?;
    Ok(NativeResult::ok(ETH_TRANSFER.into(), smallvec![Value::bool(moved)]))
}

fn native_evm_call(
    context: &mut NativeContext<'_, '_>,
    _types: Vec<Type>,
    mut arguments: VecDeque<Value>,
) -> PartialVMResult<NativeResult> {
    let is_static = pop_arg!(arguments, bool);
    let calldata = pop_arg!(arguments, Vec<u8>);
    let value = pop_arg!(arguments, u128);
    let to = to_address(pop_arg!(arguments, AccountAddress));
    let caller = to_address(pop_arg!(arguments, AccountAddress));
    let natives = context.extensions_mut().get_mut::<StateNatives<'_>>();
    let gas_limit = natives.gas.get().saturating_sub(EVM_CALL);
    let call = EvmCall { caller, to, value, calldata: calldata.into(), is_static, gas_limit };
    Ok(match natives.call_evm(call)? {
        None => NativeResult::err(EVM_CALL.into(), ENO_EVM),
        Some(result) if result.out_of_gas => {
            // The transaction cannot pay for sending the call's value: out of gas, as a CALL
            // would be.
            natives.gas.set(0);
            return Err(PartialVMError::new(StatusCode::OUT_OF_GAS));
        }
        Some(result) => NativeResult::ok(
            (EVM_CALL + result.gas_used).into(),
            smallvec![Value::bool(result.success), Value::vector_u8(result.output)],
        ),
    })
}

fn native_keccak256(
    _context: &mut NativeContext<'_, '_>,
    _types: Vec<Type>,
    mut arguments: VecDeque<Value>,
) -> PartialVMResult<NativeResult> {
    let data = pop_arg!(arguments, Vec<u8>);
    let cost = KECCAK + KECCAK_WORD * (data.len() as u64).div_ceil(32);
    let hash = duet_types::keccak256(&data);
    Ok(NativeResult::ok(cost.into(), smallvec![Value::vector_u8(hash)]))
}

/// `abi::to_address`: the address of 20 bytes (`abi` passes exactly 20).
fn native_to_address(
    _context: &mut NativeContext<'_, '_>,
    _types: Vec<Type>,
    mut arguments: VecDeque<Value>,
) -> PartialVMResult<NativeResult> {
    let bytes = pop_arg!(arguments, Vec<u8>);
    let address = AccountAddress::from_bytes(&bytes).map_err(|_| {
        PartialVMError::new(StatusCode::UNKNOWN_INVARIANT_VIOLATION_ERROR)
            .with_message(format!("an address has 20 bytes, not {}", bytes.len()))
    })?;
    Ok(NativeResult::ok(1.into(), smallvec![Value::address(address)]))
}

/// A call of one of `0x1::vector`'s natives as a function: refused.
fn native_vector_call(
    _context: &mut NativeContext<'_, '_>,
    _ty_args: Vec<Type>,
    _arguments: VecDeque<Value>,
) -> PartialVMResult<NativeResult> {
    Err(PartialVMError::new(StatusCode::FUNCTION_RESOLUTION_FAILURE).with_message(
        "0x1::vector's natives run as bytecode instructions, not as calls".to_owned(),
    ))
}

/// Every native function: the standard library's and the framework's, all at `0x1`.
pub(crate) fn all_natives() -> NativeFunctionTable {
    let mut natives = move_stdlib::natives::all_natives(FRAMEWORK_ADDRESS, stdlib_gas());
    for (_, module, function, native) in &mut natives {
        match (module.as_str(), function.as_str()) {
            // Bytecode instructions (`VecPack`, `VecPushBack`, …), which is how compiled code
            // runs them, with their gas and the memory quota's counts; called as natives from
            // hand-written bytecode they would grow vectors uncounted.
            ("vector", _) => *native = Arc::new(native_vector_call),
            ("bcs", "to_bytes") => *native = Arc::new(native_bcs_to_bytes),
            _ => {}
        }
    }
    let framework: [(&str, &str, NativeFn); 6] = [
        ("abi", "to_address", native_to_address),
        ("account", "sequence_number", native_sequence_number),
        ("eth", "balance", native_balance),
        ("eth", "move_balance", native_move_balance),
        ("evm", "call_native", native_evm_call),
        ("evm", "keccak256", native_keccak256),
    ];
    let framework = framework
        .into_iter()
        .map(|(module, function, native)| (module, function, Arc::new(native) as NativeFunction));
    natives.extend(make_table_from_iter(FRAMEWORK_ADDRESS, framework));
    let events =
        move_stdlib::natives::event::make_all(move_stdlib::natives::event::GasParameters {
            // An event's bytes are charged when the transaction's effects are written (see
            // `gas`); its base, and 1 per 32 units of the value's size, when it is emitted
            // (below); its type's nodes on the generic call. What the VM holds of events until
            // the transaction ends counts against the memory quota.
            write_to_event_store: move_stdlib::natives::event::WriteToEventStoreGasParameters {
                unit_cost: 0.into(),
            },
        });
    natives.extend(make_table_from_iter(
        FRAMEWORK_ADDRESS,
        events
            .map(|(function, native)| ("event".to_owned(), function, charged_at_emission(native))),
    ));
    natives
}

/// `bcs::to_bytes` (the standard library's, with the layout built once): 1 gas per byte
/// written, 1 per [`SIZE_UNITS_PER_GAS`] units of the size of the value it serializes (through
/// its reference argument), and [`LAYOUT_NODE`] per node of the value's layout, which the VM
/// copies for each call; [`BCS_FAILURE`] if the value has no layout or does not serialize.
/// Unlike a copy's, the size's charge does not grow with the heap the transaction holds:
/// serializing shuffled vectors of 50 000 structs or 60 000 empty vectors (`move_gas` probes)
/// ran at 0.44 and 0.42 times plain arithmetic's time per gas, the bytes written paying most.
fn native_bcs_to_bytes(
    context: &mut NativeContext<'_, '_>,
    mut types: Vec<Type>,
    mut arguments: VecDeque<Value>,
) -> PartialVMResult<NativeResult> {
    let size = arguments.front().map_or(0, |value| u64::from(value.referent_size()));
    let reference = pop_arg!(arguments, Reference);
    let ty = types.pop().ok_or_else(|| {
        PartialVMError::new(StatusCode::UNKNOWN_INVARIANT_VIOLATION_ERROR)
            .with_message("bcs::to_bytes takes one type argument".to_owned())
    })?;
    let failed = |cost: u64| Ok(NativeResult::err(cost.into(), NFE_BCS_SERIALIZATION_FAILURE));
    let size_cost = size / SIZE_UNITS_PER_GAS;
    // The layout and its nodes, counted as the VM built it (or took it from its cache).
    let Some((layout, nodes)) = context.type_to_type_layout_with_nodes(&ty)? else {
        return failed(size_cost + BCS_FAILURE);
    };
    let cost = size_cost + LAYOUT_NODE * nodes as u64;
    let Some(bytes) = reference.read_ref()?.simple_serialize(&layout) else {
        return failed(cost + BCS_FAILURE);
    };
    let cost = cost + bytes.len() as u64;
    Ok(NativeResult::ok(cost.into(), smallvec![Value::vector_u8(bytes)]))
}

/// `emit`, charging [`EVENT`] and 1 gas per [`SIZE_UNITS_PER_GAS`] units of the message's size as
/// it runs: the VM keeps every event (its type and value) until the transaction ends, so a loop
/// of free emissions could make it hold any amount (what it holds also counts against the memory
/// quota). (The event's type was charged by its nodes on the generic call.) An event
/// whose type's tag no receipt may hold fails the transaction before the tag is built (a type
/// of a few nodes with long names could otherwise build hundreds of kilobytes of tag per event).
fn charged_at_emission(emit: NativeFunction) -> NativeFunction {
    Arc::new(move |context, ty_args, arguments| {
        for ty in &ty_args {
            context.check_type_tag_size(ty)?;
        }
        // The message, the last argument, is moved into the event store: 1 per 32 units of its
        // size, as a copy of it costs while the transaction holds little (its heap counts
        // against the memory quota, and its bytes pay 8 gas each at the transaction's end).
        let size =
            arguments.back().map_or(0, |message| u64::from(message.legacy_abstract_memory_size()));
        let mut result = emit(context, ty_args, arguments)?;
        result.cost += (EVENT + size / SIZE_UNITS_PER_GAS).into();
        Ok(result)
    })
}

/// The standard library natives' gas: a base cost per call and a cost per byte handled.
fn stdlib_gas() -> move_stdlib::natives::GasParameters {
    let mut gas = move_stdlib::natives::GasParameters::zeros();
    // `bcs::to_bytes` is Duet's own (`native_bcs_to_bytes`).
    for hash in [&mut gas.hash.sha2_256.base_cost, &mut gas.hash.sha3_256.base_cost] {
        *hash = 30.into();
    }
    gas.hash.sha2_256.unit_cost = 1.into();
    gas.hash.sha3_256.unit_cost = 1.into();
    gas.signer.borrow_address.base_cost = 1.into();
    gas.string.check_utf8.base_cost = 5.into();
    gas.string.check_utf8.unit_cost = 1.into();
    gas.string.is_char_boundary.base_cost = 5.into();
    gas.string.sub_string.base_cost = 5.into();
    gas.string.sub_string.unit_cost = 1.into();
    gas.string.index_of.base_cost = 5.into();
    gas.string.index_of.unit_cost = 1.into();
    gas.vector.empty.base_cost = 2.into();
    gas.vector.length.base_cost = 2.into();
    gas.vector.push_back.base_cost = 2.into();
    gas.vector.borrow.base_cost = 2.into();
    gas.vector.pop_back.base_cost = 2.into();
    gas.vector.destroy_empty.base_cost = 2.into();
    gas.vector.swap.base_cost = 2.into();
    gas
}
