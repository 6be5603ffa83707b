//! The Move call precompile: Solidity calls a Move function and gets its return values back in
//! the same call, synchronously and atomically.
//!
//! At [`MOVE_CALL_ADDRESS`], the precompile takes the ABI encoding of [`IMove::callCall`]
//! (module address, module name, function name, type arguments in Move syntax, BCS-encoded
//! arguments) and returns the function's BCS-encoded return values as an ABI `bytes[]`. The
//! function must be `public` or `entry`; its `signer`, if it takes one, is `msg.sender`.
//!
//! One transaction, one overlay. The Move VM reads through a `BridgeView`: account headers
//! and ETH balances come from revm's journal (so Move sees what EVM code did earlier in the
//! transaction; a stand-in balance it reads is noted like `BALANCE`'s, so the transaction runs
//! again with exact balances), Move resources from this transaction's earlier Move writes, then from the
//! Block-STM view. Move's effects go back into revm's journal: ETH moves as journaled transfers,
//! events as logs of the precompile, and each resource write as a journaled storage write of a
//! reserved account ([`MOVE_OVERLAY_ADDRESS`]) whose slot for the resource holds the number of
//! the write. When revm reverts a frame, it restores those slots with everything else, so the
//! Move writes made inside the frame are undone too; at the end of the transaction the slots'
//! final values say which writes survive (`MoveOverlay::writes`).
//!
//! Failures: a Move abort reverts the precompile call with `MoveAborted(location, code)`, any
//! other Move failure with `MoveFailed(status, message)`; the Solidity caller can catch either
//! like any failed call, and the Move effects are gone. Running out of gas halts the call
//! (all gas passed to it is spent). `DELEGATECALL` and `CALLCODE` to the precompile, sending
//! it ETH, and a `STATICCALL` of a function that changes anything are refused the same way.
//! Move gas is EVM gas (the Move gas schedule is in EVM gas units): the call is charged exactly
//! the Move VM's gas, out of the gas passed to the precompile.
//!
//! Nesting: one crossing between the VMs per transaction. The Move function called here cannot
//! call the EVM (`evm::ENO_EVM`), and under a Move transaction that called the EVM, this
//! precompile refuses with `MoveFailed("REENTRANCY", …)`; either way nothing changes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use alloy_sol_types::abi::AbiDecoderConfig;
use alloy_sol_types::{SolCall, SolError, SolInterface};
use duet_block_stm::{Delta, ReadError, TransactionView, WriteOp};
use duet_move::{CallOutcome, MoveStatus, MoveVm};
use duet_types::{
    Address, Bytes, EntryFunction, StateKey, StateValue, B256, KECCAK256_EMPTY, MOVE_CALL_ADDRESS,
    MOVE_OVERLAY_ADDRESS, U256,
};
use revm::context::{ContextTr, JournalTr};
use revm::database_interface::WrapDatabaseRef;
use revm::handler::{precompile_output_to_interpreter_result, EthPrecompiles, PrecompileProvider};
use revm::interpreter::{CallInputs, CallScheme, InterpreterResult};
use revm::precompile::{PrecompileHalt, PrecompileOutput};
use revm::primitives::{keccak256, AddressSet, Log};

use crate::database::{BalanceWatch, ViewDatabase};

alloy_sol_types::sol! {
    #[derive(Debug, PartialEq, Eq)]
    /// The Move call precompile, as Solidity sees it.
    interface IMove {
        /// Calls `module::function<typeArguments>(arguments)` at `moduleAddress`, as
        /// `msg.sender`; returns its BCS-encoded return values.
        function call(
            address moduleAddress,
            string moduleName,
            string functionName,
            string[] typeArguments,
            bytes[] arguments
        ) external returns (bytes[] memory returnValues);

        /// The Move function aborted with `code` in module `location`.
        error MoveAborted(string location, uint64 code);

        /// The Move call failed for another reason (`status` is the Move VM's status code).
        error MoveFailed(string status, string message);
    }
}

/// The calldata of the Move call precompile for `call`.
#[must_use]
pub fn call_data(call: &EntryFunction) -> Vec<u8> {
    IMove::callCall {
        moduleAddress: call.module_address,
        moduleName: call.module_name.clone(),
        functionName: call.function.clone(),
        typeArguments: call.type_arguments.clone(),
        arguments: call.arguments.iter().cloned().map(Bytes::from).collect(),
    }
    .abi_encode()
}

/// The BCS return values in the precompile's output.
///
/// # Errors
/// The output is not the precompile's.
pub fn return_values(output: &[u8]) -> Result<Vec<Bytes>, String> {
    IMove::callCall::abi_decode_returns(output)
        .map_err(|error| format!("not the Move call precompile's output: {error}"))
}

/// Why the precompile reverted, in words, from its revert data.
#[must_use]
pub fn revert_reason(data: &[u8]) -> String {
    move_revert_reason(data)
        .unwrap_or_else(|| format!("reverted: {}", revm::primitives::hex::encode_prefixed(data)))
}

/// The Move failure that revert data reports (`MoveAborted` or `MoveFailed` of the
/// precompile), in words; `None` for other revert data.
#[must_use]
pub fn move_revert_reason(data: &[u8]) -> Option<String> {
    match IMove::IMoveErrors::abi_decode(data).ok()? {
        IMove::IMoveErrors::MoveAborted(IMove::MoveAborted { location, code }) => {
            Some(MoveStatus::Aborted { location, code }.to_string())
        }
        IMove::IMoveErrors::MoveFailed(IMove::MoveFailed { status, message }) => {
            Some(MoveStatus::Failed { status, message }.to_string())
        }
    }
}

/// This transaction's Move writes made through the precompile, numbered in order.
#[derive(Debug, Default)]
pub(crate) struct MoveOverlay {
    /// The overlay account's slot for each key written.
    slots: HashMap<StateKey, U256>,
    /// The key of each slot, in slot order (slot `i + 1` is `keys[i]`).
    keys: Vec<StateKey>,
    /// Every write's value, in write order (write `n` is `values[n - 1]`).
    values: Vec<Option<StateValue>>,
}

impl MoveOverlay {
    fn slot(&mut self, key: &StateKey) -> U256 {
        if let Some(slot) = self.slots.get(key) {
            return *slot;
        }
        self.keys.push(key.clone());
        let slot = U256::from(self.keys.len());
        self.slots.insert(key.clone(), slot);
        slot
    }

    fn record(&mut self, value: Option<StateValue>) -> U256 {
        self.values.push(value);
        U256::from(self.values.len())
    }

    /// The surviving Move writes, given the overlay account's final storage (slot → write
    /// number): a slot back at zero was reverted entirely.
    #[must_use]
    pub(crate) fn writes(
        &self,
        final_slots: impl Fn(U256) -> U256,
    ) -> Vec<(StateKey, WriteOp<StateValue>)> {
        let mut writes = Vec::new();
        for (index, key) in self.keys.iter().enumerate() {
            let number = final_slots(U256::from(index + 1));
            let Ok(number) = usize::try_from(number) else { continue };
            let Some(value) = number.checked_sub(1).and_then(|at| self.values.get(at)) else {
                continue;
            };
            let write = match value {
                Some(value) => WriteOp::Put(value.clone()),
                None => WriteOp::Delete,
            };
            writes.push((key.clone(), write));
        }
        writes
    }
}

/// revm's precompiles plus, with a Move VM, the Move call precompile.
pub(crate) struct DuetPrecompiles<'a> {
    eth: EthPrecompiles,
    /// The Move VM and the precompile addresses with the Move call precompile's, built once per
    /// [`EvmVm`](crate::EvmVm) (copied again only if the hard fork changes).
    move_call: Option<(&'a MoveVm, Cow<'a, AddressSet>)>,
    /// This transaction's Move writes.
    pub(crate) overlay: MoveOverlay,
    /// Who runs this EVM: under a Move transaction, Move cannot be called again.
    caller: crate::Caller,
}

impl std::fmt::Debug for DuetPrecompiles<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DuetPrecompiles")
            .field("move_call", &self.move_call.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> DuetPrecompiles<'a> {
    /// revm's precompiles for `spec`, and the Move call precompile if there is a Move VM, with
    /// `addresses` from [`addresses_with_move_call`] for the same `spec`.
    pub(crate) fn new(
        spec: revm::primitives::hardfork::SpecId,
        move_call: Option<(&'a MoveVm, &'a AddressSet)>,
        caller: crate::Caller,
    ) -> Self {
        Self {
            eth: EthPrecompiles::new(spec),
            move_call: move_call.map(|(vm, addresses)| (vm, Cow::Borrowed(addresses))),
            overlay: MoveOverlay::default(),
            caller,
        }
    }

    /// Whether the Move call precompile is among them.
    pub(crate) fn has_move_call(&self) -> bool {
        self.move_call.is_some()
    }
}

/// `eth`'s addresses (revm's precompiles) and the Move call precompile's.
pub(crate) fn addresses_with_move_call(eth: &EthPrecompiles) -> AddressSet {
    let mut addresses = eth.warm_addresses().clone();
    addresses.insert(MOVE_CALL_ADDRESS);
    addresses
}

impl<'view, View, CTX> PrecompileProvider<CTX> for DuetPrecompiles<'_>
where
    View: TransactionView<Key = StateKey, Value = StateValue> + 'view,
    CTX: ContextTr<Db = WrapDatabaseRef<ViewDatabase<'view, View>>>,
{
    type Output = InterpreterResult;

    fn set_spec(&mut self, spec: <CTX::Cfg as revm::context::Cfg>::Spec) -> bool {
        let changed = <EthPrecompiles as PrecompileProvider<CTX>>::set_spec(&mut self.eth, spec);
        if let (true, Some((_, addresses))) = (changed, &mut self.move_call) {
            *addresses = Cow::Owned(addresses_with_move_call(&self.eth));
        }
        changed
    }

    fn run(
        &mut self,
        context: &mut CTX,
        inputs: &CallInputs,
    ) -> Result<Option<InterpreterResult>, String> {
        match &self.move_call {
            Some((move_vm, _)) if inputs.bytecode_address == MOVE_CALL_ADDRESS => {
                let output = if self.caller == crate::Caller::Move {
                    let error = IMove::MoveFailed {
                        status: "REENTRANCY".to_owned(),
                        message: "EVM code called from Move cannot call Move: one crossing \
                                  between the VMs per transaction"
                            .to_owned(),
                    };
                    PrecompileOutput::revert(0, error.abi_encode().into(), inputs.reservoir)
                } else {
                    move_call(move_vm, &mut self.overlay, context, inputs)?
                };
                Ok(Some(precompile_output_to_interpreter_result(output, inputs.gas_limit)))
            }
            _ => self.eth.run(context, inputs),
        }
    }

    fn warm_addresses(&self) -> &AddressSet {
        match &self.move_call {
            Some((_, addresses)) => addresses,
            None => self.eth.warm_addresses(),
        }
    }

    fn contains(&self, address: &Address) -> bool {
        match &self.move_call {
            Some((_, addresses)) => addresses.contains(address),
            None => self.eth.contains(address),
        }
    }
}

/// What the Move call precompile charges per 32-byte word of its input, before the Move VM
/// runs: the identity precompile's price for copying a word.
pub const INPUT_WORD_GAS: u64 = 3;

/// The most type arguments and arguments one Move call from Solidity takes: as many as a Move
/// transaction's call.
pub use duet_types::{MAX_ARGUMENTS, MAX_TYPE_ARGUMENTS};

/// Runs one call of the Move call precompile.
fn move_call<'view, View, CTX>(
    move_vm: &MoveVm,
    overlay: &mut MoveOverlay,
    context: &mut CTX,
    inputs: &CallInputs,
) -> Result<PrecompileOutput, String>
where
    View: TransactionView<Key = StateKey, Value = StateValue> + 'view,
    CTX: ContextTr<Db = WrapDatabaseRef<ViewDatabase<'view, View>>>,
{
    let reservoir = inputs.reservoir;
    let failed = |status: &str, message: &str, gas_used: u64| {
        let error = IMove::MoveFailed { status: status.to_owned(), message: message.to_owned() };
        PrecompileOutput::revert(gas_used, error.abi_encode().into(), reservoir)
    };
    if !matches!(inputs.scheme, CallScheme::Call | CallScheme::StaticCall) {
        return Ok(failed("CALL_SCHEME", "call the Move precompile with CALL or STATICCALL", 0));
    }
    if !inputs.value.get().is_zero() {
        return Ok(failed("VALUE", "the Move precompile takes no ETH", 0));
    }
    let input = inputs.input.bytes(context);
    // The input is read, decoded and copied before the Move VM meters anything: charged per
    // word first, as the identity precompile charges a copy, and decoded strictly (offsets may
    // not point into the same data twice), so the work is linear in what was paid for.
    let input_gas = INPUT_WORD_GAS.saturating_mul((input.len() as u64).div_ceil(32));
    if input_gas > inputs.gas_limit {
        return Ok(PrecompileOutput::halt(PrecompileHalt::OutOfGas, reservoir));
    }
    let strict = AbiDecoderConfig::new().strict(true).validate_allow_trailing_bytes(true);
    let Ok(request) = IMove::callCall::abi_decode_with_config(&input, strict) else {
        let message = "calldata is not IMove.call(...), strictly ABI-encoded";
        return Ok(failed("INVALID_INPUT", message, input_gas));
    };
    if request.typeArguments.len() > MAX_TYPE_ARGUMENTS || request.arguments.len() > MAX_ARGUMENTS {
        let message =
            format!("at most {MAX_TYPE_ARGUMENTS} type arguments and {MAX_ARGUMENTS} arguments");
        return Ok(failed("INVALID_INPUT", &message, input_gas));
    }
    // The arguments become Move values before the Move VM meters anything: charged per byte as
    // a Move transaction's payload is (a megabyte of empty vectors makes a million values).
    let argument_bytes: usize = request.arguments.iter().map(|argument| argument.len()).sum();
    let input_gas = input_gas.saturating_add(duet_move::gas::payload_gas(argument_bytes));
    if input_gas > inputs.gas_limit {
        return Ok(PrecompileOutput::halt(PrecompileHalt::OutOfGas, reservoir));
    }
    let call = EntryFunction {
        module_address: request.moduleAddress,
        module_name: request.moduleName,
        function: request.functionName,
        type_arguments: request.typeArguments,
        arguments: request.arguments.into_iter().map(|bytes| bytes.to_vec()).collect(),
    };
    let caller = inputs.caller;
    let outcome = {
        let view = BridgeView { context: RefCell::new(&mut *context), overlay: &*overlay };
        view.load_overlay_account()?;
        move_vm
            .call_function(&view, caller, &call, inputs.gas_limit - input_gas)
            .map_err(|error| error.to_string())?
    };
    let CallOutcome { status, gas_used, return_values, writes, credits, events } = outcome;
    let gas_used = gas_used + input_gas;
    match status {
        MoveStatus::Success => {}
        MoveStatus::OutOfGas => {
            return Ok(PrecompileOutput::halt(PrecompileHalt::OutOfGas, reservoir))
        }
        MoveStatus::Aborted { location, code } => {
            let error = IMove::MoveAborted { location, code }.abi_encode();
            return Ok(PrecompileOutput::revert(gas_used, error.into(), reservoir));
        }
        MoveStatus::Failed { status, message } => return Ok(failed(&status, &message, gas_used)),
    }
    if inputs.is_static && !(writes.is_empty() && credits.is_empty() && events.is_empty()) {
        return Ok(failed("STATIC_CALL", "a static call cannot change state", gas_used));
    }
    let journal = context.journal_mut();
    for (to, amount) in credits {
        let transfer =
            journal.transfer(caller, to, U256::from(amount)).map_err(|error| error.to_string())?;
        if let Some(error) = transfer {
            // INVARIANT: the Move VM checked every debit against the caller's balance.
            return Err(format!("a Move transfer the Move VM allowed failed: {error:?}"));
        }
    }
    for (key, write) in writes {
        let value = match write {
            WriteOp::Put(value) => Some(value),
            WriteOp::Delete => None,
            WriteOp::Delta(_) => return Err("the Move VM wrote a delta".to_owned()),
        };
        let slot = overlay.slot(&key);
        let number = overlay.record(value);
        journal.sstore(MOVE_OVERLAY_ADDRESS, slot, number).map_err(|error| error.to_string())?;
    }
    for (type_tag, data) in events {
        let topic = keccak256(type_tag.as_bytes());
        journal.log(Log::new_unchecked(MOVE_CALL_ADDRESS, vec![topic], data.into()));
    }
    let output = IMove::callCall::abi_encode_returns(
        &return_values.into_iter().map(Bytes::from).collect::<Vec<_>>(),
    );
    Ok(PrecompileOutput::new(gas_used, output.into(), reservoir))
}

/// The state as a Move call inside an EVM transaction sees it.
struct BridgeView<'a, CTX> {
    context: RefCell<&'a mut CTX>,
    overlay: &'a MoveOverlay,
}

impl<'view, View, CTX> BridgeView<'_, CTX>
where
    View: TransactionView<Key = StateKey, Value = StateValue> + 'view,
    CTX: ContextTr<Db = WrapDatabaseRef<ViewDatabase<'view, View>>>,
{
    fn load_overlay_account(&self) -> Result<(), String> {
        let mut context = self.context.borrow_mut();
        context
            .journal_mut()
            .load_account(MOVE_OVERLAY_ADDRESS)
            .map_err(|error| error.to_string())?;
        Ok(())
    }

    fn account(&self, address: Address) -> Result<(u64, B256, U256), ReadError> {
        let mut context = self.context.borrow_mut();
        let account = context.journal_mut().load_account(address)?;
        let info = &account.data.info;
        Ok((info.nonce, info.code_hash, info.balance))
    }
}

impl<'view, View, CTX> TransactionView for BridgeView<'_, CTX>
where
    View: TransactionView<Key = StateKey, Value = StateValue> + 'view,
    CTX: ContextTr<Db = WrapDatabaseRef<ViewDatabase<'view, View>>>,
{
    type Key = StateKey;
    type Value = StateValue;

    fn read(&self, key: &StateKey) -> Result<Option<StateValue>, ReadError> {
        match key {
            StateKey::Account(address) => {
                let (nonce, code_hash, _) = self.account(*address)?;
                Ok((nonce != 0 || code_hash != KECCAK256_EMPTY)
                    .then_some(StateValue::Account { nonce, code_hash }))
            }
            StateKey::Balance(address) => {
                let (_, _, balance) = self.account(*address)?;
                // A stand-in balance seen by Move makes the transaction run again with exact
                // balances, as `BALANCE` does.
                self.context.borrow().db_ref().note_balance_read(*address);
                let balance = u128::try_from(balance)
                    .map_err(|_| crate::ViewDatabaseError::WrongKind(key.clone()))?;
                Ok((balance != 0).then_some(StateValue::Balance(balance)))
            }
            StateKey::MoveResource { .. } | StateKey::MoveModule { .. } => {
                if let Some(slot) = self.overlay.slots.get(key) {
                    let mut context = self.context.borrow_mut();
                    let number = context.journal_mut().sload(MOVE_OVERLAY_ADDRESS, *slot)?.data;
                    if let Some(value) = usize::try_from(number)
                        .ok()
                        .and_then(|number| number.checked_sub(1))
                        .and_then(|at| self.overlay.values.get(at))
                    {
                        return Ok(value.clone());
                    }
                }
                self.context.borrow().db_ref().0.view().read(key)
            }
            _ => self.context.borrow().db_ref().0.view().read(key),
        }
    }

    fn delta_fits(&self, key: &StateKey, delta: Delta) -> Result<bool, ReadError> {
        let value = match self.read(key)? {
            None => 0,
            Some(StateValue::Balance(balance)) => balance,
            Some(_) => return Ok(false),
        };
        Ok(delta.apply(value).is_some())
    }
}
