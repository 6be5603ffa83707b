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
    /// `mul_div`'s quotient does not fit in a `u128`.
    const EOVERFLOW: u64 = 5;
    /// `mul_div` by zero.
    const EZERO_DIVISOR: u64 = 6;

    const MAX_U64: u128 = 18446744073709551615;
    const MAX_U128: u128 = 340282366920938463463374607431768211455;

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
        // The product of two 18-decimal amounts passes 2^128 (a million tokens sold for a
        // thousand: about 10^48): it is taken in 256 bits.
        mul_div(with_fee, reserves.b, reserves.a * 1000 + with_fee)
    }

    /// `x * y / z` rounded down, the product taken in 256 bits; aborts if the quotient does not
    /// fit in a `u128`, or if `z` is 0.
    public fun mul_div(x: u128, y: u128, z: u128): u128 {
        assert!(z != 0, EZERO_DIVISOR);
        if (x == 0 || y <= MAX_U128 / x) return x * y / z;
        // x * y = hi * 2^128 + lo, from the products of 64-bit halves.
        let (x1, x0, y1, y0) = (x >> 64, x & MAX_U64, y >> 64, y & MAX_U64);
        let (p00, p01, p10, p11) = (x0 * y0, x0 * y1, x1 * y0, x1 * y1);
        let middle = (p00 >> 64) + (p01 & MAX_U64) + (p10 & MAX_U64);
        let lo = (p00 & MAX_U64) | ((middle & MAX_U64) << 64);
        let hi = p11 + (p01 >> 64) + (p10 >> 64) + (middle >> 64);
        assert!(hi < z, EOVERFLOW);
        // Long division, one bit of the quotient at a time; `hi` stays the remainder (< z).
        let quotient = 0;
        let i = 0;
        while (i < 128) {
            let carry = hi >> 127;
            hi = (hi << 1) | (lo >> 127);
            lo = lo << 1;
            quotient = quotient << 1;
            // With the bit shifted out of `hi`, the remainder is 2^128 + hi, which is more than z.
            if (carry == 1) {
                hi = hi + (MAX_U128 - z) + 1;
                quotient = quotient | 1;
            } else if (hi >= z) {
                hi = hi - z;
                quotient = quotient | 1;
            };
            i = i + 1;
        };
        quotient
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
