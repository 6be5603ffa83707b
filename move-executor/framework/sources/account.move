/// Accounts. An account is the same in Move and in the EVM: one 20-byte address, one nonce, one
/// ETH balance.
module duet::account {
    /// The account's sequence number: the nonce of its next transaction, Move or EVM (the same
    /// counter `eth_getTransactionCount` reports).
    native public fun sequence_number(addr: address): u64;
}
