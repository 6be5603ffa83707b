//! The EVM as a Move transaction reaches it: what the framework's `evm` module needs from the
//! chain's EVM, which `duet-evm` provides.
//!
//! A Move transaction that calls the EVM (`evm::call`, `evm::try_call`, `evm::static_call`)
//! opens an [`EvmHost`] the first time it does: one EVM journal for the rest of the
//! transaction, over the same Block-STM view. From then on the journal is the transaction's one
//! overlay of accounts: the ETH that Move moved before is put into it, and every later balance,
//! nonce and transfer of the Move natives goes through it, so each VM sees what the other did.
//! When the transaction ends, the journal's changes become the transaction's writes of
//! accounts, balances, storage and code; an abort or running out of gas discards them with
//! everything else.
//!
//! Nesting: a Move function called from the EVM (through the Move call precompile) cannot call
//! the EVM, and EVM code called from a Move transaction cannot call Move; either attempt fails
//! clearly with no effect (see the `evm` module and `duet_evm::move_call`). One crossing per
//! transaction, in either direction, keeps each VM's own caches of the state exact.

use duet_block_stm::{ReadError, WriteOp};
use duet_types::{Address, Bytes, Log, StateKey, StateValue};

/// A call into the EVM from Move.
#[derive(Clone, Debug)]
pub struct EvmCall {
    /// `msg.sender`: the Move signer's address (the zero address for a static call).
    pub caller: Address,
    /// The account called.
    pub to: Address,
    /// Wei sent with the call (zero for a static call).
    pub value: u128,
    /// The calldata.
    pub calldata: Bytes,
    /// A `STATICCALL`: the EVM refuses any state change.
    pub is_static: bool,
    /// The EVM gas the Move transaction has left for the call: what it costs to send its value
    /// comes first, and the callee gets all but one 64th of the rest (EIP-150).
    pub gas_limit: u64,
}

/// How a call into the EVM ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvmCallResult {
    /// Whether it returned normally (not a revert or a halt). A failed call has no effect.
    pub success: bool,
    /// The return data, or the revert data.
    pub output: Vec<u8>,
    /// The EVM gas it used (a callee that ran out of gas or halted used all it was given).
    pub gas_used: u64,
    /// The Move transaction could not pay what sending the call's value costs: it runs out of
    /// gas. (A callee running out of gas is a failed call, as in the EVM.)
    pub out_of_gas: bool,
}

/// What the EVM did during a Move transaction, once it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvmEffects {
    /// Writes of accounts, balances, storage and code (the sender's included), one per key, in
    /// no particular order.
    pub writes: Vec<(StateKey, WriteOp<StateValue>)>,
    /// The logs of the calls that did not revert, in order.
    pub logs: Vec<Log>,
}

/// The EVM, open for one Move transaction.
pub trait EvmHost {
    /// Runs one call as a message call at depth 0 of a new frame stack: no nonce, no fee, gas
    /// from the Move transaction's budget.
    ///
    /// # Errors
    /// A read of the state failed (the executor handles it).
    fn call(&mut self, call: EvmCall) -> Result<EvmCallResult, ReadError>;

    /// The balance of `address` as the transaction sees it.
    ///
    /// # Errors
    /// A read of the state failed.
    fn balance(&mut self, address: Address) -> Result<u128, ReadError>;

    /// The nonce of `address` as the transaction sees it.
    ///
    /// # Errors
    /// A read of the state failed.
    fn nonce(&mut self, address: Address) -> Result<u64, ReadError>;

    /// Moves `amount` wei from `from` to `to` if `from` holds that much; returns whether it did.
    ///
    /// # Errors
    /// A read of the state failed.
    fn transfer(&mut self, from: Address, to: Address, amount: u128) -> Result<bool, ReadError>;

    /// Credits `address` with `amount` (ETH that Move moved before the EVM was opened).
    ///
    /// # Errors
    /// A read of the state failed.
    fn credit(&mut self, address: Address, amount: u128) -> Result<(), ReadError>;

    /// Ends the transaction, which pays `fee` out of its reserved fee, and returns what the EVM
    /// did.
    ///
    /// # Errors
    /// A read of the state failed.
    fn finish(self: Box<Self>, fee: u128) -> Result<EvmEffects, ReadError>;
}

/// Opens the EVM for a Move transaction.
pub trait EvmHostFactory {
    /// The EVM for a transaction from `sender`, whose nonce is already `nonce` (advanced) and
    /// whose balance is `balance`, `reserved_fee` of which is held back for the fee (as the EVM
    /// holds back a transaction's maximum fee: EVM code sees the balance without it). Every
    /// balance it reads is exact (no stand-ins): Move can read any balance at any time.
    ///
    /// # Errors
    /// A read of the state failed.
    fn open<'s>(
        &'s self,
        sender: Address,
        nonce: u64,
        balance: u128,
        reserved_fee: u128,
    ) -> Result<Box<dyn EvmHost + 's>, ReadError>;
}
