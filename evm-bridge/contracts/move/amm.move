/// A constant-product market between two assets held in Move: what `AmmTrader.sol` swaps on
/// through the Move call precompile. Holdings and pools are Move resources; a swap pays 0.3 %
/// to the pool and returns the amount bought, so the Solidity caller can use it in the same
/// transaction.
module examples::amm {
    use std::signer;

    /// The signer already has a pool.
    const EPOOL_EXISTS: u64 = 1;
    /// There is no pool at that address.
    const ENO_POOL: u64 = 2;
    /// The trader holds less than it sells.
    const EINSUFFICIENT_HOLDINGS: u64 = 3;
    /// The swap would return less than the minimum asked for.
    const ESLIPPAGE: u64 = 4;

    /// What an account holds of the two assets.
    struct Holdings has key { a: u128, b: u128 }

    /// A pool's reserves.
    struct Pool has key { a: u128, b: u128 }

    /// Creates a pool at the signer's address with the given reserves.
    public entry fun create_pool(owner: &signer, a: u128, b: u128) {
        assert!(!exists<Pool>(signer::address_of(owner)), EPOOL_EXISTS);
        move_to(owner, Pool { a, b });
    }

    /// Gives the signer `a` and `b` of the two assets (a faucet, for examples and tests).
    public entry fun faucet(account: &signer, a: u128, b: u128) acquires Holdings {
        let owner = signer::address_of(account);
        if (!exists<Holdings>(owner)) move_to(account, Holdings { a: 0, b: 0 });
        let holdings = borrow_global_mut<Holdings>(owner);
        holdings.a = holdings.a + a;
        holdings.b = holdings.b + b;
    }

    /// What selling `amount_in` of A to the pool at `pool` would return in B.
    public fun quote_a_for_b(pool: address, amount_in: u128): u128 acquires Pool {
        assert!(exists<Pool>(pool), ENO_POOL);
        let reserves = borrow_global<Pool>(pool);
        let with_fee = amount_in * 997;
        with_fee * reserves.b / (reserves.a * 1000 + with_fee)
    }

    /// Sells `amount_in` of A to the pool at `pool` for B; aborts unless at least `min_out`
    /// comes back. Returns the amount of B bought.
    public fun swap_a_for_b(
        trader: &signer,
        pool: address,
        amount_in: u128,
        min_out: u128
    ): u128 acquires Holdings, Pool {
        let out = quote_a_for_b(pool, amount_in);
        assert!(out >= min_out, ESLIPPAGE);
        let owner = signer::address_of(trader);
        assert!(exists<Holdings>(owner), EINSUFFICIENT_HOLDINGS);
        let holdings = borrow_global_mut<Holdings>(owner);
        assert!(holdings.a >= amount_in, EINSUFFICIENT_HOLDINGS);
        holdings.a = holdings.a - amount_in;
        holdings.b = holdings.b + out;
        let reserves = borrow_global_mut<Pool>(pool);
        reserves.a = reserves.a + amount_in;
        reserves.b = reserves.b - out;
        out
    }

    /// What `owner` holds of A and B.
    public fun holdings(owner: address): (u128, u128) acquires Holdings {
        if (!exists<Holdings>(owner)) return (0, 0);
        let holdings = borrow_global<Holdings>(owner);
        (holdings.a, holdings.b)
    }
}
