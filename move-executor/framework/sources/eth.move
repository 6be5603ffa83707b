/// ETH, the one native token of Duet: 18 decimals, the very balance the EVM's `BALANCE` and
/// `CALL{value}` see. There is no second token and no conversion.
module duet::eth {
    use std::signer;
    use duet::event;

    /// The sender's balance is smaller than the amount.
    const EINSUFFICIENT_BALANCE: u64 = 1;

    /// Emitted by every transfer.
    struct Transfer has drop, store {
        from: address,
        to: address,
        amount: u128,
    }

    /// The balance of `addr`, in wei.
    native public fun balance(addr: address): u128;

    /// Moves `amount` wei from `from` to `to`; aborts with `EINSUFFICIENT_BALANCE` if `from`
    /// holds less.
    public entry fun transfer(from: &signer, to: address, amount: u128) {
        let from = signer::address_of(from);
        assert!(move_balance(from, to, amount), EINSUFFICIENT_BALANCE);
        event::emit(Transfer { from, to, amount });
    }

    /// Moves `amount` wei from `from` to `to` if `from` holds at least that much; returns whether
    /// it did. Only this module can call it, with the address of a signer.
    native fun move_balance(from: address, to: address, amount: u128): bool;
}
