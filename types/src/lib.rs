//! Duet's shared vocabulary, used by every other crate.
//!
//! This crate owns the things both virtual machines must agree on, and nothing that executes:
//!
//! - [`Address`]: one 20-byte address space for the Move VM and the EVM, so the account `0xabc…`
//!   is the same account in both.
//! - [`StateKey`] and [`StateValue`]: the one key space of Duet's state and what it holds. Both VMs read and write only through it, so
//!   the parallel executor sees every conflict whichever VM caused it.
//! - [`keccak256`] and the state-commitment key scheme ([`StateKey::commitment_key`]): the leaf
//!   position of every key in the keccak256 sparse Merkle tree that Ethereum verifies.
//!
//! No VM, no I/O.

mod move_transaction;
mod state_key;
mod state_value;

pub use alloy_primitives::{keccak256, Address, Bytes, Log, B256, KECCAK256_EMPTY, U256};
pub use move_transaction::{
    BcsReader, EntryFunction, MovePayload, MoveTransaction, PayloadError, MAX_ARGUMENTS,
    MAX_BUNDLE_MODULES, MAX_PAYLOAD_BYTES, MAX_TYPE_ARGUMENTS, MOVE_CALL_ADDRESS,
    MOVE_ENTRY_ADDRESS, MOVE_OVERLAY_ADDRESS,
};
pub use state_key::{KeyDecodeError, StateKey, SystemKey};
pub use state_value::{StateValue, ValueDecodeError};
