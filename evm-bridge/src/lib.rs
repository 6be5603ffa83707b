//! Duet's EVM: the real revm, driven by Block-STM over Duet's one state.
//!
//! [`EvmVm`] implements [`duet_block_stm::Vm`]: each transaction runs in revm (newest hard fork
//! it supports) against a [`ViewDatabase`], a revm database that reads through the Block-STM
//! view, so every read, absent accounts and slots included, is recorded for validation. revm's
//! state changes become writes in Duet's key space ([`StateKey`]): the account header (nonce
//! and code hash), the balance, each changed storage slot, and new code. Only what changed is
//! written, so transactions that merely touch a contract do not conflict. An EVM is built for
//! each transaction, but each thread hands revm's journal (with its warm precompile addresses)
//! and memory buffer from one finished EVM to the next, as revm keeps them over a block. A
//! sequential run needs no view per transaction: without the Move call precompile, `EvmVm` runs
//! it with one EVM over a cache of the accounts it touched (`sequential`).
//!
//! Signed transactions (legacy, EIP-2930, EIP-1559, EIP-7702) have their senders recovered for
//! a whole block in parallel before execution ([`recover_block`]); the executed transactions
//! carry their sender (`TxEnv::caller`), and a set-code transaction its signed authorizations,
//! whose authorities revm recovers as it applies them (a delegation's code is written by its
//! hash, as a created contract's is). An invalid
//! transaction (bad nonce, insufficient funds for its maximum fee, wrong chain id…) is rejected
//! and changes nothing; a revert or a halt is an outcome with a receipt that still charges gas.
//!
//! Fees go to the block's beneficiary, the fee vault, as in revm. The vault and every other
//! account that cannot observe its own balance during a transaction (no code, not the sender)
//! is credited with a commutative delta instead of a read-modify-write (see [`database`]), so
//! paying fees and receiving transfers never makes transactions conflict.
//!
//! With a Move VM ([`EvmVm::with_move`]), Solidity calls Move through the Move call precompile
//! ([`move_call`]), synchronously and atomically with the EVM frame that calls it. Move calls the
//! EVM through the framework's `evm` module, which runs here (`from_move`). [`DuetVm`] runs
//! mixed blocks of Move and EVM transactions ([`MixedBlockExecutor`]).
//!
//! An EVM can watch the code its transactions run: for an EIP-2930 access list
//! ([`access_list()`], `eth_createAccessList`) or for a call trace ([`trace`],
//! `debug_traceTransaction`), with revm's inspector.

mod access_list;
mod convert;
pub mod database;
mod from_move;
mod mixed;
pub mod move_call;
mod receipt;
mod recovery;
mod scratch;
mod sequential;
pub mod trace;

pub use access_list::{access_list, Accessed};
pub use convert::{state_writes, EVM_EMPTY_CODE_HASH};
pub use database::{BalanceWatch, ViewDatabase, ViewDatabaseError, LAZY_BALANCE};
pub use mixed::{DuetError, DuetReceipt, DuetTransaction, DuetVm, MixedBlockExecutor};
use move_call::DuetPrecompiles;
pub use move_call::{call_data, move_revert_reason, return_values, revert_reason, IMove};
pub use receipt::{block_receipts, BlockReceipt};
pub use recovery::{recover, recover_block, tx_env, RecoveryError};
use revm::context_interface::either::Either;
use revm::context_interface::local::FrameStack;
use scratch::Scratch;

use duet_block_stm::{TransactionView, TxnIndex, Vm, VmOutput};
use duet_types::{Address, B256, U256};
use duet_types::{StateKey, StateValue};
use revm::bytecode::opcode::{BALANCE, CALL, CALLCODE, CREATE, CREATE2, SELFBALANCE, SELFDESTRUCT};
use revm::context::result::{EVMError, ExecutionResult, HaltReason, InvalidTransaction};
use revm::context::Evm;
use revm::context::{BlockEnv, Cfg, CfgEnv, ContextTr, Journal, JournalTr, TxEnv};
use revm::context_interface::cfg::gas_params::Eip2780TxInfo;
use revm::database_interface::WrapDatabaseRef;
use revm::handler::instructions::EthInstructions;
use revm::handler::validation::{validate_initial_tx_gas_with_gas_params, validate_tx_env};
use revm::handler::{EthFrame, MainnetContext};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_types::InputsTr;
use revm::interpreter::{Instruction, InstructionContext, InstructionExecResult};
use revm::{Context, ExecuteEvm, MainContext};

/// A transaction's receipt as revm reports it: success, revert or halt, gas used, logs, output.
pub type Receipt = ExecutionResult<HaltReason>;

/// Why a transaction was rejected; a rejected transaction changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvmError {
    /// The transaction is invalid (nonce, balance, gas, chain id, …).
    #[error("invalid transaction: {0}")]
    Invalid(InvalidTransaction),
    /// The block environment does not allow the transaction.
    #[error("invalid block header: {0}")]
    Header(String),
    /// A read of the state failed; the executor handles it.
    #[error(transparent)]
    Read(#[from] ViewDatabaseError),
    /// revm reported an error of its own.
    #[error("evm: {0}")]
    Evm(String),
}

impl From<EVMError<ViewDatabaseError>> for EvmError {
    fn from(error: EVMError<ViewDatabaseError>) -> Self {
        match error {
            EVMError::Transaction(invalid) => Self::Invalid(invalid),
            EVMError::Header(header) => Self::Header(header.to_string()),
            EVMError::Database(error) => Self::Read(error),
            other => Self::Evm(other.to_string()),
        }
    }
}

/// The EVM for one block: its configuration (chain id, hard fork) and block environment
/// (number, timestamp, base fee, gas limit, beneficiary).
#[derive(Debug)]
pub struct EvmVm {
    /// Chain configuration: always revm's default hard fork (Osaka in revm 43). Not settable
    /// from outside: Duet's
    /// state writes rely on EIP-6780 (Cancun), under which SELFDESTRUCT deletes only a contract
    /// created in the same transaction, whose every slot that transaction wrote; an older fork's
    /// self-destruct would leave a contract's other slots in the state.
    cfg: CfgEnv,
    /// The block's environment.
    pub block: BlockEnv,
    /// The Move VM that the Move call precompile runs, if the chain has one, and the precompile
    /// addresses with the Move call precompile's.
    move_call: Option<(std::sync::Arc<duet_move::MoveVm>, revm::primitives::AddressSet)>,
    /// What watches the code of the transactions run, if asked: for an access list
    /// ([`access_list`]) or a call trace ([`trace`]).
    tracer: Option<std::sync::Mutex<Tracer>>,
    /// The hashes of the blocks before this one that `BLOCKHASH` answers.
    block_hashes: std::sync::Arc<BlockHashes>,
}

/// The hashes of the (up to 256) blocks before a block, which `BLOCKHASH` answers in it; none
/// (zero, as Ethereum answers for a block out of range) unless the chain gives them
/// ([`EvmVm::with_block_hashes`]). Part of a block's environment, as its number and time are:
/// what the chain's blocks hashed to, not the state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockHashes {
    /// The number of the first block in `hashes`.
    first: u64,
    hashes: Vec<B256>,
}

impl BlockHashes {
    /// The hashes of blocks `first`, `first + 1`, … in order.
    #[must_use]
    pub fn new(first: u64, hashes: Vec<B256>) -> Self {
        Self { first, hashes }
    }

    /// Block `number`'s hash, zero if it is not here.
    #[must_use]
    pub fn get(&self, number: u64) -> B256 {
        number
            .checked_sub(self.first)
            .and_then(|at| self.hashes.get(usize::try_from(at).ok()?))
            .copied()
            .unwrap_or(B256::ZERO)
    }
}

impl EvmVm {
    /// An EVM for chain `chain_id` at revm's default (newest) hard fork, for `block`.
    #[must_use]
    pub fn new(chain_id: u64, block: BlockEnv) -> Self {
        let mut cfg = CfgEnv::default();
        cfg.chain_id = chain_id;
        Self { cfg, block, move_call: None, tracer: None, block_hashes: std::sync::Arc::default() }
    }

    /// This EVM with `hashes` as the hashes `BLOCKHASH` answers (of the blocks before its
    /// block, the last 256 of them).
    #[must_use]
    pub fn with_block_hashes(mut self, hashes: std::sync::Arc<BlockHashes>) -> Self {
        self.block_hashes = hashes;
        self
    }

    /// The chain configuration.
    #[must_use]
    pub const fn cfg(&self) -> &CfgEnv {
        &self.cfg
    }

    /// The same EVM with its configuration changed by `change` (the node's calls turn its
    /// nonce, balance and fee checks off).
    ///
    /// # Panics
    /// If `change` changes the hard fork (see the `cfg` field).
    #[must_use]
    pub fn with_cfg_changed(mut self, change: impl FnOnce(&mut CfgEnv)) -> Self {
        let spec = self.cfg.spec;
        change(&mut self.cfg);
        assert_eq!(self.cfg.spec, spec, "Duet's EVM runs revm's default hard fork only");
        self
    }

    /// The same EVM with the Move call precompile at [`duet_types::MOVE_CALL_ADDRESS`], running
    /// `move_vm` (see [`move_call`]).
    #[must_use]
    pub fn with_move(mut self, move_vm: std::sync::Arc<duet_move::MoveVm>) -> Self {
        self.move_call = Some((
            move_vm,
            move_call::addresses_with_move_call(&revm::handler::EthPrecompiles::new(self.cfg.spec)),
        ));
        self
    }
}

impl EvmVm {
    /// The checks revm makes of `transaction` before it reads any state (chain id, fee fields,
    /// gas limit against the cap and the block's, intrinsic gas and the EIP-7623 calldata floor,
    /// initcode size, nonce overflow): a node makes them before accepting a transaction, since
    /// one that fails them is rejected by every block.
    ///
    /// # Errors
    /// The first check that fails.
    pub fn check_transaction(&self, transaction: &TxEnv) -> Result<(), InvalidTransaction> {
        // The arguments revm's own `Handler::validate_initial_tx_gas` passes (check them
        // against it when revm changes); calling it needs a built EVM for every transaction.
        let cfg = &self.cfg;
        let eip2780 = cfg.is_amsterdam_eip2780_enabled().then(|| Eip2780TxInfo {
            value: transaction.value,
            is_self_transfer: transaction.kind.to() == Some(&transaction.caller),
        });
        validate_initial_tx_gas_with_gas_params(
            transaction,
            cfg.spec,
            cfg.gas_params(),
            cfg.is_eip7623_disabled(),
            cfg.is_amsterdam_eip8037_enabled(),
            cfg.tx_gas_limit_cap(),
            eip2780,
        )?;
        let context = Context::mainnet()
            .with_cfg(cfg.clone())
            .with_block(self.block.clone())
            .with_tx(transaction.clone());
        validate_tx_env(context, cfg.spec)
    }
}

impl Vm for EvmVm {
    type Transaction = TxEnv;
    type Key = StateKey;
    type Value = StateValue;
    type Output = Receipt;
    type Error = EvmError;

    fn execute<View>(
        &self,
        _txn_index: TxnIndex,
        transaction: &TxEnv,
        view: &View,
    ) -> Result<VmOutput<StateKey, StateValue, Receipt>, EvmError>
    where
        View: TransactionView<Key = StateKey, Value = StateValue>,
    {
        // Traced for an access list: once, with exact balances.
        let lazy = self.tracer.is_none();
        match self.transact(transaction, view, lazy)? {
            Some(output) => Ok(output),
            // A lazy balance was observed or spent: run again with every balance exact.
            None => Ok(self.transact(transaction, view, false)?.expect("exact runs are final")),
        }
    }

    /// The beneficiary's balance (the fee vault), which every transaction credits.
    fn hot_credit_key(&self) -> Option<StateKey> {
        Some(StateKey::Balance(self.block.beneficiary))
    }

    /// One EVM for the whole run (module `sequential`), unless Move code can run in it or its
    /// transactions are traced.
    fn execute_sequentially<S>(
        &self,
        transactions: &[TxEnv],
        _first_index: TxnIndex,
        storage: &S,
    ) -> Option<Result<duet_block_stm::VmBlockOutput<Self>, duet_block_stm::BlockError<StateKey>>>
    where
        S: duet_block_stm::Storage<Key = StateKey, Value = StateValue>,
    {
        let own_run = self.move_call.is_none() && self.tracer.is_none();
        own_run.then(|| self.run_sequentially(transactions, storage))
    }
}

impl EvmVm {
    /// Runs `transaction` once; `None` if lazy balances were used and must not be.
    fn transact<View>(
        &self,
        transaction: &TxEnv,
        view: &View,
        lazy: bool,
    ) -> Result<Option<VmOutput<StateKey, StateValue, Receipt>>, EvmError>
    where
        View: TransactionView<Key = StateKey, Value = StateValue>,
    {
        let mut evm = self.evm(view, transaction.caller, lazy, Caller::Transaction);
        // revm leaves its journal clean after any outcome, a rejection included.
        let (outcome, (database, precompiles)) = match &self.tracer {
            None => (evm.transact(transaction.clone()), keep_parts(evm)),
            Some(tracer) => {
                let mut tracer = lock_tracer(tracer);
                if let Either::Right(calls) = &mut *tracer {
                    calls.begin_transaction();
                }
                // An empty tracer of the same kind stays behind: a panic in the run leaves it.
                let empty = empty_like(&tracer);
                let mut evm = evm.with_inspector(std::mem::replace(&mut *tracer, empty));
                let outcome = revm::InspectEvm::inspect_tx(&mut evm, transaction.clone());
                let Evm { ctx, precompiles, inspector, .. } = evm;
                *tracer = inspector;
                if let (Either::Right(calls), Ok(outcome)) = (&mut *tracer, &outcome) {
                    calls.end_transaction(transaction.gas_limit, outcome.result.tx_gas_used());
                }
                (outcome, (keep_context(ctx, precompiles.has_move_call()).0, precompiles))
            }
        };
        // A lazy balance was observed or spent (a Move call may ask for one and fail): run again
        // with exact balances.
        if database.lazy_balance_observed() {
            return Ok(None);
        }
        let outcome = outcome.map_err(EvmError::from)?;
        let mut state = outcome.state;
        // The overlay account's storage numbers the Move writes; it is not EVM storage.
        let move_writes = match state.get_mut(&duet_types::MOVE_OVERLAY_ADDRESS) {
            Some(overlay) => {
                let slots = std::mem::take(&mut overlay.storage);
                precompiles
                    .overlay
                    .writes(|slot| slots.get(&slot).map_or(U256::ZERO, |value| value.present_value))
            }
            None => Vec::new(),
        };
        let writes = state_writes(state, &database.lazy_accounts());
        Ok(writes.map(|mut writes| {
            // The executors need no order; the Move writes are keys of their own.
            writes.extend(move_writes);
            VmOutput { writes, output: outcome.result }
        }))
    }
}

/// What watches the code an EVM runs: for an access list (left) or for a call trace (right).
/// revm's inspector runs either.
pub(crate) type Tracer = Either<access_list::AccessTracer, trace::CallTracer>;

/// A tracer of the same kind and configuration as `tracer`, holding nothing.
fn empty_like(tracer: &Tracer) -> Tracer {
    match tracer {
        Either::Left(_) => Either::Left(access_list::AccessTracer::default()),
        Either::Right(calls) => Either::Right(calls.empty_like()),
    }
}

/// The tracer, locked (one transaction runs at a time on an EVM that traces; a panic in an
/// earlier one leaves nothing half-done that matters).
pub(crate) fn lock_tracer(tracer: &std::sync::Mutex<Tracer>) -> std::sync::MutexGuard<'_, Tracer> {
    tracer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// revm over a Block-STM view, as Duet runs it.
pub(crate) type DuetEvm<'a, View> = InspectedEvm<'a, View, ()>;

/// revm over a Block-STM view with `Inspector` watching (`()`: nothing).
pub(crate) type InspectedEvm<'a, View, Inspector> = Evm<
    DuetContext<'a, View>,
    Inspector,
    EthInstructions<EthInterpreter, DuetContext<'a, View>>,
    DuetPrecompiles<'a>,
    EthFrame<EthInterpreter>,
>;

/// revm's context over a Block-STM view.
pub(crate) type DuetContext<'a, View> = MainnetContext<WrapDatabaseRef<ViewDatabase<'a, View>>>;

impl EvmVm {
    /// revm for one transaction from `sender` over `view` (`lazy`: see [`ViewDatabase`]), run
    /// by `caller`.
    pub(crate) fn evm<'a, View>(
        &'a self,
        view: &'a View,
        sender: Address,
        lazy: bool,
        caller: Caller,
    ) -> DuetEvm<'a, View>
    where
        View: TransactionView<Key = StateKey, Value = StateValue>,
    {
        let database = WrapDatabaseRef(ViewDatabase::new(view, sender, lazy, &self.block_hashes));
        // Built by hand rather than with `Context::new` and `build_mainnet` (which pre-allocates
        // eight call frames, a 32 KiB stack each), from the parts the thread's last EVM left
        // (see [`scratch`]); call frames are made as calls need them.
        let spec = self.cfg.spec;
        let precompiles = DuetPrecompiles::new(
            spec,
            self.move_call.as_ref().map(|(move_vm, addresses)| (&**move_vm, addresses)),
            caller,
        );
        let mut evm = Evm {
            ctx: self.context(database, precompiles.has_move_call()),
            inspector: (),
            instruction: EthInstructions::new_mainnet_with_spec(spec),
            precompiles,
            frame_stack: FrameStack::new(),
        };
        watch_balance_opcode(&mut evm.instruction);
        evm
    }
}

impl EvmVm {
    /// revm's context over `database`, built by hand rather than with `Context::new` (which
    /// pre-allocates eight call frames, a 32 KiB stack each), from the parts the thread's last
    /// EVM with the same warm precompile addresses (this hard fork's, with the Move call
    /// precompile's if `move_call`) left (see [`scratch`]); call frames are made as calls need
    /// them.
    pub(crate) fn context<DB: revm::Database>(
        &self,
        database: DB,
        move_call: bool,
    ) -> MainnetContext<DB> {
        let scratch = Scratch::take((self.cfg.spec, move_call));
        let mut journaled_state = Journal::new_with_inner(database, scratch.journal);
        // As revm's `Context` does when it is built (`sync_cfg_to_journal`): a transaction's
        // pre-execution sets the spec again, but a Move-to-EVM call (`from_move`) runs frames
        // without it.
        journaled_state.set_spec_id(self.cfg.spec);
        journaled_state.set_eip7708_config(
            self.cfg.is_eip7708_disabled(),
            self.cfg.is_eip8246_delayed_clear_disabled(),
        );
        Context {
            block: self.block.clone(),
            tx: TxEnv::default(),
            // The thread's copy: its gas table is not shared with other threads.
            cfg: scratch::thread_cfg(&self.cfg),
            journaled_state,
            chain: (),
            local: scratch.local,
            error: Ok(()),
        }
    }
}

/// Keeps the reusable parts of a finished EVM's `context` (whose precompiles include the Move
/// call precompile if `move_call`) for the thread's next one (see [`scratch`]); returns its
/// database.
pub(crate) fn keep_context<DB: revm::Database>(context: MainnetContext<DB>, move_call: bool) -> DB {
    let Context { journaled_state, local, cfg, .. } = context;
    Scratch { journal: journaled_state.inner, local }.keep((cfg.spec, move_call));
    journaled_state.database
}

/// Keeps the reusable parts of a finished `evm` for the thread's next one (see [`scratch`]);
/// returns what the caller still reads: its database and its precompiles.
pub(crate) fn keep_parts<View, Inspector>(
    evm: InspectedEvm<'_, View, Inspector>,
) -> (ViewDatabase<'_, View>, DuetPrecompiles<'_>)
where
    View: TransactionView<Key = StateKey, Value = StateValue>,
{
    let Evm { ctx, precompiles, .. } = evm;
    (keep_context(ctx, precompiles.has_move_call()).0, precompiles)
}

/// Who runs the EVM: an EVM transaction, or a Move transaction calling into it (whose EVM code
/// cannot call Move again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    Transaction,
    Move,
}

/// Replaces the opcodes that could reveal or spend a stand-in balance with versions that tell the
/// database which account they touched, so that such a transaction runs again exactly:
/// `BALANCE` (any account), and `SELFBALANCE`, `CALL`, `CALLCODE`, `CREATE`, `CREATE2` and
/// `SELFDESTRUCT` run by code at a lazy account (a contract being created at an address that
/// already held ETH, whose constructor could pay out of the stand-in).
fn watch_balance_opcode<Host>(instructions: &mut EthInstructions<EthInterpreter, Host>)
where
    Host: revm::interpreter::Host + ContextTr,
    Host::Db: BalanceWatch,
{
    let gas = instructions.gas_table()[usize::from(BALANCE)];
    instructions.insert_instruction(BALANCE, Instruction::new(watched_balance::<Host>), gas);
    let spending: [(u8, OpcodeFn<Host>); 6] = [
        (SELFBALANCE, watched_at_own_account::<Host, SELFBALANCE>),
        (CALL, watched_at_own_account::<Host, CALL>),
        (CALLCODE, watched_at_own_account::<Host, CALLCODE>),
        (CREATE, watched_at_own_account::<Host, CREATE>),
        (CREATE2, watched_at_own_account::<Host, CREATE2>),
        (SELFDESTRUCT, watched_at_own_account::<Host, SELFDESTRUCT>),
    ];
    for (opcode, watched) in spending {
        let gas = instructions.gas_table()[usize::from(opcode)];
        instructions.insert_instruction(opcode, Instruction::new(watched), gas);
    }
}

/// An opcode's implementation.
type OpcodeFn<Host> = fn(InstructionContext<'_, Host, EthInterpreter>) -> InstructionExecResult;

/// `OPCODE`, noting the account whose code runs it: if that account is lazy, its stand-in
/// balance could be read (`SELFBALANCE`) or spent (the others).
fn watched_at_own_account<Host, const OPCODE: u8>(
    context: InstructionContext<'_, Host, EthInterpreter>,
) -> InstructionExecResult
where
    Host: revm::interpreter::Host + ContextTr,
    Host::Db: BalanceWatch,
{
    let address = context.interpreter.input.target_address();
    let instruction = match OPCODE {
        CALL => revm::interpreter::instructions::contract::call::<CALL, _, _>,
        CALLCODE => revm::interpreter::instructions::contract::call::<CALLCODE, _, _>,
        CREATE => revm::interpreter::instructions::contract::create::<false, _, _>,
        CREATE2 => revm::interpreter::instructions::contract::create::<true, _, _>,
        SELFBALANCE => revm::interpreter::instructions::host::selfbalance,
        _ => revm::interpreter::instructions::host::selfdestruct,
    };
    run_and_note(context, Some(address), instruction)
}

fn watched_balance<Host>(
    context: InstructionContext<'_, Host, EthInterpreter>,
) -> InstructionExecResult
where
    Host: revm::interpreter::Host + ContextTr,
    Host::Db: BalanceWatch,
{
    let address = context
        .interpreter
        .stack
        .top()
        .map(|top| Address::from_word(B256::from(top.to_be_bytes())));
    run_and_note(context, address, revm::interpreter::instructions::host::balance)
}

/// Runs revm's own `instruction`, then tells the database that it read `address`'s balance:
/// after, because only once an account is loaded is it known whether its balance is a stand-in.
fn run_and_note<Host>(
    context: InstructionContext<'_, Host, EthInterpreter>,
    address: Option<Address>,
    instruction: OpcodeFn<Host>,
) -> InstructionExecResult
where
    Host: revm::interpreter::Host + ContextTr,
    Host::Db: BalanceWatch,
{
    let InstructionContext { interpreter, host } = context;
    let result =
        instruction(InstructionContext { interpreter: &mut *interpreter, host: &mut *host });
    if let Some(address) = address {
        host.db().note_balance_read(address);
    }
    result
}

#[cfg(test)]
mod tests {
    /// Duet's state writes rely on EIP-6780 (see [`super::EvmVm`]'s `cfg`): the fork revm
    /// gives must be Cancun or later, also after a revm upgrade.
    #[test]
    fn the_evm_runs_cancun_or_a_later_fork() {
        let vm = super::EvmVm::new(1, revm::context::BlockEnv::default());
        assert!(vm.cfg().spec >= revm::primitives::hardfork::SpecId::CANCUN, "{:?}", vm.cfg().spec);
    }

    #[test]
    #[should_panic(expected = "default hard fork only")]
    fn the_fork_cannot_be_changed() {
        let vm = super::EvmVm::new(1, revm::context::BlockEnv::default());
        let _ = vm.with_cfg_changed(|cfg| cfg.spec = revm::primitives::hardfork::SpecId::SHANGHAI);
    }
}
