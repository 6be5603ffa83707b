//! Move calls the EVM: the [`EvmHost`] behind the framework's `evm` module.
//!
//! A Move transaction's first call into the EVM opens one revm journal over the transaction's
//! Block-STM view, with the sender's advanced nonce and its balance minus the fee reserved for
//! the transaction ([`EvmForMove::open`]); the ETH that Move moved before is credited into it.
//! Each call then runs as a message call at depth 0 (revm's own frame loop: value transfer,
//! checkpoint, revert of a failed call) with the gas a CALL would give it: of the Move
//! transaction's remaining gas (less the call's own charge), what sending value costs first,
//! then all but one 64th of the rest (EIP-150), and the 2 300 stipend of a call with value.
//! Between calls, Move's balance reads, nonce reads and transfers go through the same
//! journal. Every balance in it is exact (Move can read any balance, so no account is loaded with
//! a stand-in as in EVM transactions). When the Move transaction ends, the journal's accounts
//! become its writes ([`state_writes`]).
//!
//! EVM code running here cannot call Move (the Move call precompile refuses with
//! `MoveFailed("REENTRANCY", …)`): the Move session that called it is still open.
//!
//! If the EVM has a call tracer, the calls run with it (see [`crate::trace`]): the host takes it
//! for the transaction, and it goes back when the host's EVM is dropped.

use std::sync::Arc;

use duet_block_stm::{ReadError, StorageError, TransactionView};
use duet_move::evm::{EvmCall, EvmCallResult, EvmEffects, EvmHost, EvmHostFactory};
use duet_types::{Address, StateKey, StateValue, U256};
use revm::context::result::EVMError;
use revm::context::{ContextTr, JournalTr};
use revm::context_interface::journaled_state::account::JournaledAccountTr;
use revm::context_interface::local::LocalContextTr;
use revm::handler::{pre_execution, EthFrame, Handler, MainnetHandler};
use revm::inspector::InspectorHandler;
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_action::FrameInit;
use revm::interpreter::{CallInput, CallInputs, CallScheme, CallValue, FrameInput, SharedMemory};

use crate::trace::MoveCallTracer;
use crate::{state_writes, Caller, EvmVm, InspectedEvm, ViewDatabaseError};

/// revm over a Block-STM view for a Move transaction's calls, with its call tracer if traced.
type HostEvm<'a, View> = InspectedEvm<'a, View, MoveCallTracer<'a>>;

/// Opens the EVM for Move transactions over one view.
pub(crate) struct EvmForMove<'a, View> {
    pub(crate) vm: &'a EvmVm,
    pub(crate) view: &'a View,
    /// The Move transaction's gas price (what `GASPRICE` returns).
    pub(crate) gas_price: u128,
}

impl<View> EvmHostFactory for EvmForMove<'_, View>
where
    View: TransactionView<Key = StateKey, Value = StateValue>,
{
    fn open<'s>(
        &'s self,
        sender: Address,
        nonce: u64,
        balance: u128,
        reserved_fee: u128,
    ) -> Result<Box<dyn EvmHost + 's>, ReadError> {
        // Exact balances: Move may read any balance, so no account is a stand-in.
        let mut evm: HostEvm<'_, View> = self
            .vm
            .evm(self.view, sender, false, Caller::Move)
            .with_inspector(self.vm.take_call_tracer());
        evm.ctx.tx.caller = sender;
        evm.ctx.tx.gas_price = self.gas_price;
        pre_execution::load_accounts::<_, EVMError<ViewDatabaseError>>(&mut evm)
            .map_err(into_read_error)?;
        let journal = evm.ctx.journal_mut();
        let mut account = journal.load_account_mut(sender)?.data;
        // INVARIANT: the Move executor checked that the balance covers the reserved fee.
        account.set_balance(U256::from(balance.saturating_sub(reserved_fee)));
        account.set_nonce(nonce);
        Ok(Box::new(Host { evm, sender, reserved_fee }))
    }
}

/// The EVM of one Move transaction.
struct Host<'a, View>
where
    View: TransactionView<Key = StateKey, Value = StateValue>,
{
    evm: HostEvm<'a, View>,
    sender: Address,
    /// Held out of the sender's balance in the journal until the transaction ends.
    reserved_fee: u128,
}

impl<View> EvmHost for Host<'_, View>
where
    View: TransactionView<Key = StateKey, Value = StateValue>,
{
    fn call(&mut self, mut call: EvmCall) -> Result<EvmCallResult, ReadError> {
        // What the EVM's CALL charges for value: the transfer, and a new account if the target
        // is empty (EIP-161), taken before the call runs, as CALL takes them.
        let params = &self.evm.ctx.cfg.gas_params;
        let (transfer_cost, new_account_cost) =
            (params.transfer_value_cost(), params.new_account_cost(true, true));
        let journal = self.evm.ctx.journal_mut();
        let target = journal.load_account_with_code(call.to)?;
        let value_gas = match (call.value != 0 && !call.is_static, target.data.is_empty()) {
            (false, _) => 0,
            (true, false) => transfer_cost,
            (true, true) => transfer_cost + new_account_cost,
        };
        let Some(left) = call.gas_limit.checked_sub(value_gas) else {
            let gas_used = call.gas_limit;
            let output = Vec::new();
            return Ok(EvmCallResult { success: false, output, gas_used, out_of_gas: true });
        };
        let info = &target.data.info;
        let mut known_bytecode = (info.code_hash, info.code.clone().unwrap_or_default());
        if let Some(delegate) = known_bytecode.1.eip7702_address() {
            let delegate = journal.load_account_with_code(delegate)?;
            let info = &delegate.data.info;
            known_bytecode = (info.code_hash, info.code.clone().unwrap_or_default());
        }
        // All but one 64th of what is left, as CALL forwards it (EIP-150): a callee that runs
        // out of gas or halts fails the call, and the caller still has gas to go on with.
        let params = &self.evm.ctx.cfg.gas_params;
        call.gas_limit = params.call_stipend_reduction(left);
        // A call with value gives the callee a stipend besides, which the value's cost paid for.
        let stipend = if value_gas == 0 { 0 } else { params.call_stipend() };
        let (scheme, value) = if call.is_static {
            (CallScheme::StaticCall, U256::ZERO)
        } else {
            (CallScheme::Call, U256::from(call.value))
        };
        let inputs = CallInputs {
            input: CallInput::Bytes(call.calldata),
            return_memory_offset: 0..0,
            gas_limit: call.gas_limit + stipend,
            reservoir: 0,
            bytecode_address: call.to,
            known_bytecode,
            target_address: call.to,
            caller: call.caller,
            value: CallValue::Transfer(value),
            scheme,
            is_static: call.is_static,
            charged_new_account_state_gas: false,
        };
        // The thread's kept memory buffer (see [`crate::scratch`]), emptied, as revm's handler
        // takes it for a transaction.
        self.evm.ctx.local.clear();
        let memory =
            SharedMemory::new_with_buffer(self.evm.ctx.local.shared_memory_buffer().clone());
        let init = FrameInit { depth: 0, memory, frame_input: FrameInput::Call(Box::new(inputs)) };
        let mut handler =
            MainnetHandler::<_, EVMError<ViewDatabaseError>, EthFrame<EthInterpreter>>::default();
        let result = if self.evm.inspector.is_tracing() {
            handler.inspect_run_exec_loop(&mut self.evm, init)
        } else {
            handler.run_exec_loop(&mut self.evm, init)
        };
        let result = result.map_err(into_read_error)?;
        let interpreter = result.interpreter_result();
        Ok(EvmCallResult {
            out_of_gas: false,
            success: interpreter.result.is_ok(),
            output: interpreter.output.to_vec(),
            // What the caller pays, as a CALL's caller sees it: the value's cost, and what the
            // callee used of the gas passed on (its unused stipend comes back too); a halt
            // spends all of it.
            gas_used: if interpreter.result.is_ok_or_revert() {
                (value_gas + call.gas_limit).saturating_sub(interpreter.gas.remaining())
            } else {
                value_gas + call.gas_limit
            },
        })
    }

    fn balance(&mut self, address: Address) -> Result<u128, ReadError> {
        let journal = self.evm.ctx.journal_mut();
        let balance = journal.load_account(address)?.data.info.balance;
        let balance = u128::try_from(balance)
            .map_err(|_| ViewDatabaseError::WrongKind(StateKey::Balance(address)))?;
        // Move sees the sender's whole balance, its reserved fee included, before and after.
        Ok(if address == self.sender { balance.saturating_add(self.reserved_fee) } else { balance })
    }

    fn nonce(&mut self, address: Address) -> Result<u64, ReadError> {
        let journal = self.evm.ctx.journal_mut();
        Ok(journal.load_account(address)?.data.info.nonce)
    }

    fn transfer(&mut self, from: Address, to: Address, amount: u128) -> Result<bool, ReadError> {
        let journal = self.evm.ctx.journal_mut();
        let refused = journal.transfer(from, to, U256::from(amount))?.is_some();
        Ok(!refused)
    }

    fn credit(&mut self, address: Address, amount: u128) -> Result<(), ReadError> {
        let journal = self.evm.ctx.journal_mut();
        Ok(journal.balance_incr(address, U256::from(amount))?)
    }

    fn finish(mut self: Box<Self>, fee: u128) -> Result<EvmEffects, ReadError> {
        // INVARIANT: the fee is at most the reserved fee.
        self.credit(self.sender, self.reserved_fee.saturating_sub(fee))?;
        let journal = self.evm.ctx.journal_mut();
        let logs = journal.take_logs();
        let state = journal.finalize();
        // With exact balances no account is a stand-in, so the writes always exist.
        let writes = state_writes(state, &[]).unwrap_or_default();
        crate::keep_parts(self.evm);
        Ok(EvmEffects { writes, logs })
    }
}

/// A failure inside revm, as a failed read: a read of the view (the executor handles it), or a
/// bug of ours that fails the block.
fn into_read_error(error: EVMError<ViewDatabaseError>) -> ReadError {
    match error {
        EVMError::Database(error) => error.into(),
        other => {
            ReadError::Storage(StorageError(Arc::new(std::io::Error::other(other.to_string()))))
        }
    }
}
