//! The natives of the Move standard library and of the Duet framework.
//!
//! The framework's natives reach Duet's state through a [`StateNatives`] extension that holds the
//! transaction's Block-STM view: `account::sequence_number` reads the account header the EVM
//! also uses, `eth::balance` the shared ETH balance, and `eth::move_balance` moves ETH. Balance
//! moves are kept per account as credits and debits. The sender's balance is read exactly (as in
//! the EVM) and written as a value; every other account's change becomes a commutative delta, so
//! transfers and fees never make transactions conflict on their recipients or on the fee vault.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use better_any::{Tid, TidAble};
use duet_block_stm::{Delta, TransactionView};
use duet_types::{Address, StateKey, StateValue};
use move_binary_format::errors::{PartialVMError, PartialVMResult};
use move_core_types::account_address::AccountAddress;
use move_core_types::vm_status::StatusCode;
use move_vm_runtime::native_functions::{
    make_table_from_iter, NativeContext, NativeFunction, NativeFunctionTable,
};
use move_vm_types::loaded_data::runtime_types::Type;
use move_vm_types::natives::function::NativeResult;
use move_vm_types::pop_arg;
use move_vm_types::values::Value;
use smallvec::smallvec;

use crate::gas::{ETH_TRANSFER, NATIVE_STATE_READ};
use crate::{to_address, FRAMEWORK_ADDRESS};

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
    /// The transaction's sender, its exact balance before the transaction, and the fee reserved
    /// out of it (the most the transaction can pay).
    sender: Address,
    sender_balance: u128,
    reserved_fee: u128,
    /// Balance moves, by account.
    pub(crate) balances: BTreeMap<Address, BalanceChange>,
}

impl<'a> StateNatives<'a> {
    pub(crate) fn new(
        view: &'a StateView<'a>,
        sender: Address,
        sender_balance: u128,
        reserved_fee: u128,
    ) -> Self {
        Self { view, sender, sender_balance, reserved_fee, balances: BTreeMap::new() }
    }

    fn nonce(&self, address: Address) -> PartialVMResult<u64> {
        match self.view.read(&StateKey::Account(address)).map_err(storage_error)? {
            None => Ok(0),
            Some(StateValue::Account { nonce, .. }) => Ok(nonce),
            Some(_) => Err(wrong_kind(&StateKey::Account(address))),
        }
    }

    /// The balance of `address` as this transaction sees it: stored, plus its own moves.
    fn balance(&self, address: Address) -> PartialVMResult<u128> {
        let stored = if address == self.sender {
            self.sender_balance
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
        let change = self.balances.get(&from).copied().unwrap_or_default();
        let spent = change.debit.saturating_add(amount);
        let affordable = if from == self.sender {
            self.sender_balance.saturating_add(change.credit)
                >= spent.saturating_add(self.reserved_fee)
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
    let nonce = context.extensions().get::<StateNatives<'_>>().nonce(address)?;
    Ok(NativeResult::ok(NATIVE_STATE_READ.into(), smallvec![Value::u64(nonce)]))
}

fn native_balance(
    context: &mut NativeContext<'_, '_>,
    _types: Vec<Type>,
    mut arguments: VecDeque<Value>,
) -> PartialVMResult<NativeResult> {
    let address = to_address(pop_arg!(arguments, AccountAddress));
    let balance = context.extensions().get::<StateNatives<'_>>().balance(address)?;
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

/// Every native function: the standard library's and the framework's, all at `0x1`.
pub(crate) fn all_natives() -> NativeFunctionTable {
    let mut natives = move_stdlib::natives::all_natives(FRAMEWORK_ADDRESS, stdlib_gas());
    let framework: [(&str, &str, NativeFn); 3] = [
        ("account", "sequence_number", native_sequence_number),
        ("eth", "balance", native_balance),
        ("eth", "move_balance", native_move_balance),
    ];
    let framework = framework
        .into_iter()
        .map(|(module, function, native)| (module, function, Arc::new(native) as NativeFunction));
    natives.extend(make_table_from_iter(FRAMEWORK_ADDRESS, framework));
    let events =
        move_stdlib::natives::event::make_all(move_stdlib::natives::event::GasParameters {
            // Events are charged when the transaction's effects are written (see `gas`).
            write_to_event_store: move_stdlib::natives::event::WriteToEventStoreGasParameters {
                unit_cost: 0.into(),
            },
        });
    natives.extend(make_table_from_iter(
        FRAMEWORK_ADDRESS,
        events.map(|(function, native)| ("event".to_owned(), function, native)),
    ));
    natives
}

/// The standard library natives' gas: a base cost per call and a cost per byte handled.
fn stdlib_gas() -> move_stdlib::natives::GasParameters {
    let mut gas = move_stdlib::natives::GasParameters::zeros();
    gas.bcs.to_bytes.input_unit_cost = 1.into();
    gas.bcs.to_bytes.output_unit_cost = 1.into();
    gas.bcs.to_bytes.failure_cost = 10.into();
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
