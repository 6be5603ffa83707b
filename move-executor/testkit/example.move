/// A module for tests and benchmarks: counters per account and shared, a growing vector, aborts,
/// loops, payments.
module example::counter {
    use std::signer;
    use std::vector;
    use duet::eth;

    struct Counter has key { value: u64 }

    struct Shared has key { value: u64 }

    struct Log has key { entries: vector<u64> }

    /// Adds one to the caller's counter, creating it at 1.
    public entry fun increment(account: &signer) acquires Counter {
        let owner = signer::address_of(account);
        if (exists<Counter>(owner)) {
            let counter = borrow_global_mut<Counter>(owner);
            counter.value = counter.value + 1;
        } else {
            move_to(account, Counter { value: 1 });
        }
    }

    /// Creates a counter that anyone can bump.
    public entry fun create_shared(account: &signer) {
        move_to(account, Shared { value: 0 });
    }

    /// Adds one to the shared counter held by `owner`.
    public entry fun bump_shared(_account: &signer, owner: address) acquires Shared {
        let shared = borrow_global_mut<Shared>(owner);
        shared.value = shared.value + 1;
    }

    /// Appends `items` to the caller's log.
    public entry fun append(account: &signer, items: vector<u64>) acquires Log {
        let owner = signer::address_of(account);
        if (!exists<Log>(owner)) {
            move_to(account, Log { entries: vector::empty() });
        };
        let log = borrow_global_mut<Log>(owner);
        vector::append(&mut log.entries, items);
    }

    /// Aborts with `code`.
    public entry fun fail(_account: &signer, code: u64) {
        abort code
    }

    /// Loops `rounds` times.
    public entry fun spin(_account: &signer, rounds: u64) {
        let i = 0;
        while (i < rounds) { i = i + 1 };
    }

    /// Pays `amount` to `to`, then aborts if `then_abort`.
    public entry fun pay(from: &signer, to: address, amount: u128, then_abort: bool) {
        eth::transfer(from, to, amount);
        assert!(!then_abort, 7);
    }

    /// The ETH balance of `owner`, as Move sees it.
    public fun balance_of(owner: address): u128 {
        eth::balance(owner)
    }

    /// The caller's counter (0 if none).
    public fun value(owner: address): u64 acquires Counter {
        if (exists<Counter>(owner)) { borrow_global<Counter>(owner).value } else { 0 }
    }
}
