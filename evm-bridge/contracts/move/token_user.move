/// A Move module that uses an ERC-20 contract through `duet::evm`: it reads `balanceOf`, pays
/// with `transfer`, checks the result and records the payment in a Move resource, in one
/// transaction. Its other functions show the rest of `duet::evm`: calls that may fail, ETH sent
/// with a call, balances read after the EVM moved them, and the nesting rule.
module examples::token_user {
    use std::signer;
    use std::vector;
    use duet::abi;
    use duet::eth;
    use duet::evm;

    /// The token's `transfer` returned false.
    const ETRANSFER_REFUSED: u64 = 1;
    /// The signer holds fewer tokens than it pays.
    const EINSUFFICIENT_TOKENS: u64 = 2;
    /// The signer's token balance did not go down by the amount paid.
    const EBALANCE_MISMATCH: u64 = 3;

    /// What an account paid through this module.
    struct Paid has key { total: u128, payments: u64 }

    /// How the account's last call through `call` went.
    struct LastCall has key { success: bool, output: vector<u8> }

    /// The last ETH balance the account looked at with `record_balance`.
    struct SeenBalance has key { balance: u128 }

    /// `owner`'s balance of the ERC-20 `token`.
    public fun balance_of(token: address, owner: address): u128 {
        let calldata = abi::new_call(b"balanceOf(address)", 1);
        abi::add_address(&mut calldata, owner);
        let output = evm::static_call(token, abi::finish(calldata));
        abi::u128_at(&output, 0)
    }

    /// Pays `amount` of `token` to `to`: checks the signer holds that much, calls `transfer`,
    /// checks that it returned true and that the balance went down by `amount`, and records the
    /// payment.
    public entry fun pay(from: &signer, token: address, to: address, amount: u128) acquires Paid {
        let owner = signer::address_of(from);
        let before = balance_of(token, owner);
        assert!(before >= amount, EINSUFFICIENT_TOKENS);
        let calldata = abi::new_call(b"transfer(address,uint256)", 2);
        abi::add_address(&mut calldata, to);
        abi::add_u128(&mut calldata, amount);
        let output = evm::call(from, token, 0, abi::finish(calldata));
        assert!(abi::bool_at(&output, 0), ETRANSFER_REFUSED);
        assert!(balance_of(token, owner) == before - amount, EBALANCE_MISMATCH);
        if (!exists<Paid>(owner)) move_to(from, Paid { total: 0, payments: 0 });
        let paid = borrow_global_mut<Paid>(owner);
        paid.total = paid.total + amount;
        paid.payments = paid.payments + 1;
    }

    /// Pays like `pay`, then aborts with `code`: nothing happens in either VM.
    public entry fun pay_then_abort(
        from: &signer,
        token: address,
        to: address,
        amount: u128,
        code: u64
    ) acquires Paid {
        pay(from, token, to, amount);
        abort code
    }

    /// Calls `to` with `value` wei and `calldata` and records how it went; a failed call has no
    /// effect and does not abort.
    public entry fun call(from: &signer, to: address, value: u128, calldata: vector<u8>) acquires LastCall {
        let (success, output) = evm::try_call(from, to, value, calldata);
        let owner = signer::address_of(from);
        if (!exists<LastCall>(owner)) {
            move_to(from, LastCall { success, output });
        } else {
            let last = borrow_global_mut<LastCall>(owner);
            last.success = success;
            last.output = output;
        }
    }

    /// Sends `amount` wei to `to` with `eth::transfer`, then calls `then` with `calldata`
    /// (which sees the ETH), aborting if that call fails.
    public entry fun transfer_then_call(
        from: &signer,
        to: address,
        amount: u128,
        then: address,
        calldata: vector<u8>
    ) {
        eth::transfer(from, to, amount);
        evm::call(from, then, 0, calldata);
    }

    /// Records `eth::balance(who)` as the signer sees it.
    public entry fun record_balance(account: &signer, who: address) acquires SeenBalance {
        let balance = eth::balance(who);
        let owner = signer::address_of(account);
        if (!exists<SeenBalance>(owner)) {
            move_to(account, SeenBalance { balance });
        } else {
            borrow_global_mut<SeenBalance>(owner).balance = balance;
        }
    }

    /// Calls `to`, then records `who`'s ETH balance as Move sees it after the call.
    public entry fun call_then_record_balance(
        from: &signer,
        to: address,
        value: u128,
        calldata: vector<u8>,
        who: address
    ) acquires SeenBalance {
        evm::call(from, to, value, calldata);
        record_balance(from, who);
    }

    /// Calls the EVM from a function the EVM calls: refused with `evm::ENO_EVM`.
    public fun call_back(account: &signer, to: address): u64 {
        evm::call(account, to, 0, vector::empty());
        1
    }
}
