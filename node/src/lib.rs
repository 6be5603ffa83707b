//! The Duet node: a single sequencer that accepts Ethereum-signed transactions (EVM ones, and
//! Move ones sent to the Move entry address), builds blocks from its mempool, executes them as
//! mixed blocks through Block-STM ([`duet_evm::DuetVm`]), commits each block to RocksDB in one
//! synced write batch, and serves Ethereum JSON-RPC ([`rpc`], with the filters clients poll,
//! [`filters`]; the dev accounts are unlocked).
//!
//! Every block header carries the root of the state's sparse Merkle tree ([`merkle`]), and
//! `duet_getProof` proves any key against it. The node also serves the Move API ([`move_api`])
//! and Prometheus metrics ([`metrics`]), says what became of each transaction it acknowledged
//! (included, pending, or dropped and why: [`dropped`]), all on one port ([`server`]: a cap on open
//! connections, and time limits on request heads, bodies and unread answers). The state of the
//! last 128 blocks can be queried ([`store`]). Not here yet: archive state, the L1 pipeline.

pub mod block;
pub mod chain;
pub mod client;
pub mod dropped;
pub mod filters;
pub mod genesis;
pub mod load;
pub mod mempool;
pub mod merkle;
pub mod metrics;
pub mod move_api;
pub mod rpc;
pub mod server;
pub mod store;
pub mod turns;
