/// Calls from Move into the EVM, synchronously and atomically, in the same transaction.
///
/// `msg.sender` is the signer's address (the zero address for a static call); the call runs as
/// a message call of the EVM with the EVM gas it uses charged to the Move transaction (one gas
/// unit in both VMs). As the EVM's `CALL` does (EIP-150), it passes on all but one 64th of the
/// gas left (after what sending the value costs, which the transaction must have: without it,
/// it runs out of gas): a callee that runs out of gas or halts fails the call (having used the
/// gas it was given), and the caller goes on with the rest, so no callee can stop `try_call`
/// from returning. The EVM sees everything the transaction did before the call (ETH that
/// Move moved included), and Move sees what the EVM did after it. If the Move transaction later
/// aborts or runs out of gas, the EVM's effects are undone with everything else; a call that
/// reverts has no effect.
///
/// Nesting: a Move function that the EVM called (through the Move call precompile) cannot call
/// the EVM (`ENO_EVM`), and EVM code that Move called cannot call Move (the precompile call
/// fails with `MoveFailed("REENTRANCY", ...)`): one crossing per transaction.
/// Build calldata and read return data with `duet::abi`.
module duet::evm {
    use std::signer;

    /// The EVM cannot be called here: this Move function was itself called from the EVM.
    const ENO_EVM: u64 = 1;
    /// The EVM call reverted or halted (`try_call` and `try_static_call` return this instead).
    const EREVERTED: u64 = 2;

    /// Calls `to` with `value` wei and `calldata` as `from`; returns the return data. Aborts
    /// with `EREVERTED` if the call reverts.
    public fun call(from: &signer, to: address, value: u128, calldata: vector<u8>): vector<u8> {
        let (success, output) = try_call(from, to, value, calldata);
        assert!(success, EREVERTED);
        output
    }

    /// Calls `to` like `call`; returns whether the call succeeded and its return (or revert)
    /// data. A failed call (a revert, a halt, running out of gas) has no effect but its gas.
    public fun try_call(
        from: &signer,
        to: address,
        value: u128,
        calldata: vector<u8>
    ): (bool, vector<u8>) {
        call_native(signer::address_of(from), to, value, calldata, false)
    }

    /// Calls `to` read-only (a `STATICCALL` from the zero address); returns the return data.
    /// Aborts with `EREVERTED` if the call reverts or tries to change state.
    public fun static_call(to: address, calldata: vector<u8>): vector<u8> {
        let (success, output) = try_static_call(to, calldata);
        assert!(success, EREVERTED);
        output
    }

    /// Calls `to` read-only like `static_call`; returns whether it succeeded and its data.
    public fun try_static_call(to: address, calldata: vector<u8>): (bool, vector<u8>) {
        call_native(@0x0, to, 0, calldata, true)
    }

    /// The keccak256 hash of `data`, as the EVM computes it.
    native public fun keccak256(data: vector<u8>): vector<u8>;

    native fun call_native(
        from: address,
        to: address,
        value: u128,
        calldata: vector<u8>,
        is_static: bool
    ): (bool, vector<u8>);
}
