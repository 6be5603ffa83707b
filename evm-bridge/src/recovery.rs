//! Signed Ethereum transactions: recovering their senders (secp256k1) for a whole block in
//! parallel, before execution, and turning them into revm transactions.

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{Transaction, TxEnvelope, Typed2718};
use duet_types::Address;
use revm::context::TxEnv;

/// Why a signed transaction cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// The signature does not recover a sender.
    #[error("invalid transaction signature")]
    InvalidSignature,
    /// Blob (EIP-4844) transactions are not accepted: a rollup has no blobs to carry.
    #[error("unsupported transaction type {0}")]
    UnsupportedType(u8),
}

/// The revm transaction of `envelope`, sent by `sender`. A set-code (EIP-7702) transaction's
/// authorizations go in signed: revm recovers each authority when it applies the list, and
/// skips one that does not recover, as the EIP says.
///
/// # Errors
/// [`RecoveryError::UnsupportedType`] for blob transactions.
pub fn tx_env(envelope: &TxEnvelope, sender: Address) -> Result<TxEnv, RecoveryError> {
    let tx_type = envelope.ty();
    if envelope.is_eip4844() {
        return Err(RecoveryError::UnsupportedType(tx_type));
    }
    let mut tx = TxEnv {
        tx_type,
        caller: sender,
        gas_limit: envelope.gas_limit(),
        gas_price: if envelope.is_dynamic_fee() {
            envelope.max_fee_per_gas()
        } else {
            envelope.gas_price().unwrap_or_default()
        },
        gas_priority_fee: envelope.max_priority_fee_per_gas(),
        kind: envelope.kind(),
        value: envelope.value(),
        data: envelope.input().clone(),
        nonce: envelope.nonce(),
        chain_id: envelope.chain_id(),
        access_list: envelope.access_list().cloned().unwrap_or_default(),
        ..TxEnv::default()
    };
    if let Some(authorizations) = envelope.authorization_list() {
        tx.set_signed_authorization(authorizations.to_vec());
    }
    Ok(tx)
}

/// Recovers the sender of `envelope` and builds its revm transaction.
///
/// # Errors
/// See [`RecoveryError`].
pub fn recover(envelope: &TxEnvelope) -> Result<TxEnv, RecoveryError> {
    let sender = envelope.recover_signer().map_err(|_| RecoveryError::InvalidSignature)?;
    tx_env(envelope, sender)
}

/// [`recover`] for every transaction of a block, on `threads` threads (the caller's included),
/// in block order.
///
/// # Panics
/// If the signature library panics on a helper thread (a bug there), the panic is passed on.
#[must_use]
pub fn recover_block(
    envelopes: &[TxEnvelope],
    threads: usize,
) -> Vec<Result<TxEnv, RecoveryError>> {
    let threads = threads.clamp(1, envelopes.len().max(1));
    if threads == 1 {
        return envelopes.iter().map(recover).collect();
    }
    let chunk = envelopes.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = envelopes.chunks(chunk);
        let first = chunks.next().unwrap_or_default();
        let helpers: Vec<_> = chunks
            .map(|part| scope.spawn(move || part.iter().map(recover).collect::<Vec<_>>()))
            .collect();
        let mut recovered: Vec<_> = first.iter().map(recover).collect();
        for helper in helpers {
            // A panic in recovery is a bug in the signature library: let it surface.
            recovered.extend(helper.join().expect("sender recovery does not panic"));
        }
        recovered
    })
}
