//! Duet's EVM: the real revm, driven by Block-STM over Duet's one state.
//!
//! [`EvmVm`] implements [`duet_block_stm::Vm`]: each transaction runs in revm (newest hard fork
//! it supports) against a [`ViewDatabase`], a revm database that reads through the Block-STM
//! view, so every read, absent accounts and slots included, is recorded for validation. revm's
//! state changes become writes in Duet's key space ([`StateKey`]): the account header (nonce
//! and code hash), the balance, each changed storage slot, and new code. Only what changed is
//! written, so transactions that merely touch a contract do not conflict.
//!
//! Transactions carry their sender already recovered (`TxEnv::caller`). An invalid
//! transaction (bad nonce, insufficient funds for its maximum fee, wrong chain id…) is rejected
//! and changes nothing; a revert or a halt is an outcome with a receipt that still charges gas.
//!
//! Fees go to the block's beneficiary, the fee vault, as in revm; the vault's balance is read and
//! written exactly for now (see the crate's README section on what is next).

mod convert;
mod database;

pub use convert::{state_writes, EVM_EMPTY_CODE_HASH};
pub use database::{ViewDatabase, ViewDatabaseError};

use duet_block_stm::{TransactionView, TxnIndex, Vm, VmOutput};
use duet_types::{StateKey, StateValue};
use revm::context::result::{EVMError, ExecutionResult, HaltReason, InvalidTransaction};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::database_interface::WrapDatabaseRef;
use revm::{Context, ExecuteEvm, MainBuilder, MainContext};

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

/// The EVM for one block: its configuration (chain id, hard fork) and block environment
/// (number, timestamp, base fee, gas limit, beneficiary).
#[derive(Clone, Debug)]
pub struct EvmVm {
    /// Chain configuration.
    pub cfg: CfgEnv,
    /// The block's environment.
    pub block: BlockEnv,
}

impl EvmVm {
    /// An EVM for chain `chain_id` at revm's default (newest) hard fork, for `block`.
    #[must_use]
    pub fn new(chain_id: u64, block: BlockEnv) -> Self {
        let mut cfg = CfgEnv::default();
        cfg.chain_id = chain_id;
        Self { cfg, block }
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
        let database = WrapDatabaseRef(ViewDatabase::new(view));
        let mut evm = Context::mainnet()
            .with_db(database)
            .with_block(self.block.clone())
            .with_cfg(self.cfg.clone())
            .build_mainnet();
        match evm.transact(transaction.clone()) {
            Ok(outcome) => {
                Ok(VmOutput { writes: state_writes(outcome.state), output: outcome.result })
            }
            Err(EVMError::Transaction(invalid)) => Err(EvmError::Invalid(invalid)),
            Err(EVMError::Header(header)) => Err(EvmError::Header(header.to_string())),
            Err(EVMError::Database(error)) => Err(EvmError::Read(error)),
            Err(other) => Err(EvmError::Evm(other.to_string())),
        }
    }
}
