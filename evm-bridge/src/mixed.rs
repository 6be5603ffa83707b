//! Mixed blocks: Move and EVM transactions, in any order, through one [`Vm`].
//!
//! [`DuetVm`] executes an EVM transaction in revm (whose code can call Move through the Move
//! call precompile) and a Move transaction in the Move VM (whose code can call the EVM through
//! the framework's `evm` module, see [`crate::from_move`]). Both read and write the one state
//! through the same Block-STM view, so Block-STM sees every conflict whichever VM caused it. A
//! Move publish is a barrier, as in Move blocks ([`duet_move::Barriers`]): run the blocks with
//! [`MixedBlockExecutor`].

use std::sync::Arc;

use duet_block_stm::{TransactionView, TxnIndex, Vm, VmOutput};
use duet_move::{Barriers, MoveError, MoveReceipt, MoveVm, SegmentedExecutor};
use duet_types::{MoveTransaction, StateKey, StateValue};
use revm::context::result::InvalidTransaction;
use revm::context::TxEnv;

use crate::from_move::EvmForMove;
use crate::{EvmError, EvmVm, Receipt};

/// A transaction of a mixed block.
#[derive(Clone, Debug)]
pub enum DuetTransaction {
    /// An EVM transaction, its sender recovered.
    Evm(TxEnv),
    /// A Move transaction.
    Move(MoveTransaction),
}

/// The receipt of a transaction of a mixed block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DuetReceipt {
    /// revm's receipt of an EVM transaction.
    Evm(Receipt),
    /// The receipt of a Move transaction.
    Move(MoveReceipt),
}

impl DuetReceipt {
    /// The gas the transaction used (what it is charged for, after refunds).
    #[must_use]
    pub fn gas_used(&self) -> u64 {
        match self {
            Self::Evm(receipt) => receipt.tx_gas_used(),
            Self::Move(receipt) => receipt.gas_used,
        }
    }

    /// Whether the transaction succeeded.
    #[must_use]
    pub fn is_success(&self) -> bool {
        match self {
            Self::Evm(receipt) => receipt.is_success(),
            Self::Move(receipt) => receipt.is_success(),
        }
    }

    /// Its logs (a Move transaction's are those of the EVM code it called).
    #[must_use]
    pub fn logs(&self) -> &[duet_types::Log] {
        match self {
            Self::Evm(receipt) => receipt.logs(),
            Self::Move(receipt) => &receipt.logs,
        }
    }
}

/// Why a transaction of a mixed block was rejected; it changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DuetError {
    /// An EVM transaction was rejected.
    #[error(transparent)]
    Evm(#[from] EvmError),
    /// A Move transaction was rejected.
    #[error(transparent)]
    Move(#[from] MoveError),
}

impl DuetError {
    /// Whether the transaction was rejected only because its nonce is ahead of the sender's
    /// (an earlier one is missing): it may run in a later block.
    #[must_use]
    pub fn is_future_nonce(&self) -> bool {
        match self {
            Self::Evm(EvmError::Invalid(InvalidTransaction::NonceTooHigh { .. })) => true,
            Self::Move(MoveError::Nonce { expected, got }) => got > expected,
            _ => false,
        }
    }
}

/// Both VMs of a chain, for one block.
#[derive(Debug)]
pub struct DuetVm {
    evm: EvmVm,
    move_vm: Arc<MoveVm>,
}

impl DuetVm {
    /// `evm` for the block, with the Move call precompile running `move_vm`, and `move_vm`
    /// (whose code caches outlive the block).
    #[must_use]
    pub fn new(evm: EvmVm, move_vm: Arc<MoveVm>) -> Self {
        // One fee vault for both VMs: it is the block's hot credit key.
        debug_assert_eq!(evm.hot_credit_key(), move_vm.hot_credit_key(), "one fee vault");
        Self { evm: evm.with_move(Arc::clone(&move_vm)), move_vm }
    }

    /// Its EVM (to take what a tracer on it noted).
    #[must_use]
    pub const fn evm(&self) -> &EvmVm {
        &self.evm
    }
}

impl Vm for DuetVm {
    type Transaction = DuetTransaction;
    type Key = StateKey;
    type Value = StateValue;
    type Output = DuetReceipt;
    type Error = DuetError;

    fn execute<View>(
        &self,
        txn_index: TxnIndex,
        transaction: &DuetTransaction,
        view: &View,
    ) -> Result<VmOutput<StateKey, StateValue, DuetReceipt>, DuetError>
    where
        View: TransactionView<Key = StateKey, Value = StateValue>,
    {
        match transaction {
            DuetTransaction::Evm(transaction) => {
                let output = self.evm.execute(txn_index, transaction, view)?;
                Ok(VmOutput { writes: output.writes, output: DuetReceipt::Evm(output.output) })
            }
            DuetTransaction::Move(transaction) => {
                self.evm.begin_move_trace(transaction);
                let evm = EvmForMove { vm: &self.evm, view, gas_price: transaction.gas_price };
                let output = self.move_vm.execute_transaction(transaction, view, Some(&evm));
                self.evm.end_move_trace(output.as_ref().ok().map(|output| &output.output));
                let output = output?;
                Ok(VmOutput { writes: output.writes, output: DuetReceipt::Move(output.output) })
            }
        }
    }

    /// The EVM's fee vault, which the chain's Move VM pays too.
    fn hot_credit_key(&self) -> Option<StateKey> {
        self.evm.hot_credit_key()
    }
}

/// The Move VM's barriers (module publishes); EVM transactions are never barriers.
impl Barriers for DuetVm {
    fn is_barrier(&self, transaction: &DuetTransaction) -> bool {
        matches!(transaction, DuetTransaction::Move(transaction) if self.move_vm.is_barrier(transaction))
    }

    fn after_barrier(&self) {
        self.move_vm.after_barrier();
    }
}

/// Executes mixed blocks, sequentially or in parallel, with Move publishes as barriers.
pub type MixedBlockExecutor<'vm> = SegmentedExecutor<'vm, DuetVm>;
