/// The Solidity ABI in Move: calldata for calls into the EVM (`duet::evm`), and the values in
/// their return data.
///
/// Encoding: `new_call(b"transfer(address,uint256)", 2)` starts calldata for a function of two
/// parameters; `add_address`, `add_u128`, `add_bytes`... append them in order (static values in
/// their 32-byte word, `bytes` and `string` as offset and tail); `finish` returns the calldata.
/// Decoding: `u128_at(&data, i)`, `address_at`, `bool_at`, `bytes_at`... read the `i`-th value
/// of return data. Move has no 256-bit integer: `uint256` values are read into `u128` and abort
/// with `EOUT_OF_RANGE` when they do not fit.
module duet::abi {
    use std::string::{Self, String};
    use std::vector;
    use duet::evm;

    /// A word does not fit the Move type asked for (or is not a valid `bool`).
    const EOUT_OF_RANGE: u64 = 1;
    /// The data is shorter than the value asked for.
    const ETOO_SHORT: u64 = 2;
    /// More values were added than the encoder was made for.
    const ETOO_MANY: u64 = 3;
    /// Fewer values were added than the encoder was made for (the offsets of `bytes` and
    /// `string` values count on all of them).
    const ETOO_FEW: u64 = 4;

    /// Calldata being built.
    struct Encoder has drop {
        head: vector<u8>,
        tail: vector<u8>,
        /// How many values the head holds when complete.
        count: u64,
        added: u64,
    }

    /// The 4-byte selector of a function `signature` such as `b"transfer(address,uint256)"`.
    public fun selector(signature: vector<u8>): vector<u8> {
        let hash = evm::keccak256(signature);
        let selector = vector::empty<u8>();
        let i = 0;
        while (i < 4) {
            vector::push_back(&mut selector, *vector::borrow(&hash, i));
            i = i + 1;
        };
        selector
    }

    /// Calldata for the function `signature` taking `count` values.
    public fun new_call(signature: vector<u8>, count: u64): Encoder {
        let encoder = new(count);
        let prefix = selector(signature);
        vector::append(&mut prefix, encoder.head);
        encoder.head = prefix;
        encoder
    }

    /// An encoding of `count` values with no selector (constructor arguments, return data).
    public fun new(count: u64): Encoder {
        Encoder { head: vector::empty(), tail: vector::empty(), count, added: 0 }
    }

    /// Appends a `uint` value.
    public fun add_u128(encoder: &mut Encoder, value: u128) {
        counted(encoder);
        append_word(&mut encoder.head, value);
    }

    /// Appends a `uint` value.
    public fun add_u64(encoder: &mut Encoder, value: u64) {
        add_u128(encoder, (value as u128));
    }

    /// Appends a `bool`.
    public fun add_bool(encoder: &mut Encoder, value: bool) {
        add_u128(encoder, if (value) 1 else 0);
    }

    /// Appends an `address`.
    public fun add_address(encoder: &mut Encoder, value: address) {
        counted(encoder);
        append_zeros(&mut encoder.head, 12);
        vector::append(&mut encoder.head, std::bcs::to_bytes(&value));
    }

    /// Appends a `bytes` value.
    public fun add_bytes(encoder: &mut Encoder, value: vector<u8>) {
        counted(encoder);
        let offset = 32 * encoder.count + vector::length(&encoder.tail);
        append_word(&mut encoder.head, (offset as u128));
        let length = vector::length(&value);
        append_word(&mut encoder.tail, (length as u128));
        vector::append(&mut encoder.tail, value);
        append_zeros(&mut encoder.tail, (32 - length % 32) % 32);
    }

    /// Appends a `string` value.
    public fun add_string(encoder: &mut Encoder, value: String) {
        add_bytes(encoder, *string::bytes(&value));
    }

    /// The encoding; aborts with `ETOO_FEW` unless all the values it was made for were added.
    public fun finish(encoder: Encoder): vector<u8> {
        let Encoder { head, tail, count, added } = encoder;
        assert!(added == count, ETOO_FEW);
        vector::append(&mut head, tail);
        head
    }

    /// The `index`-th value of `data` (return data, no selector) as a `u128`.
    public fun u128_at(data: &vector<u8>, index: u64): u128 {
        let start = 32 * index;
        assert!(vector::length(data) >= start + 32, ETOO_SHORT);
        let value: u128 = 0;
        let i = 0;
        while (i < 32) {
            let byte = *vector::borrow(data, start + i);
            if (i < 16) {
                assert!(byte == 0, EOUT_OF_RANGE);
            } else {
                value = (value << 8) | (byte as u128);
            };
            i = i + 1;
        };
        value
    }

    /// The `index`-th value of `data` as a `u64`.
    public fun u64_at(data: &vector<u8>, index: u64): u64 {
        let value = u128_at(data, index);
        assert!(value <= 18446744073709551615, EOUT_OF_RANGE);
        (value as u64)
    }

    /// The `index`-th value of `data` as a `bool`.
    public fun bool_at(data: &vector<u8>, index: u64): bool {
        let value = u128_at(data, index);
        assert!(value <= 1, EOUT_OF_RANGE);
        value == 1
    }

    /// The `index`-th value of `data` as an `address`.
    public fun address_at(data: &vector<u8>, index: u64): address {
        let start = 32 * index;
        assert!(vector::length(data) >= start + 32, ETOO_SHORT);
        let bytes = vector::empty<u8>();
        let i = 0;
        while (i < 32) {
            let byte = *vector::borrow(data, start + i);
            if (i < 12) assert!(byte == 0, EOUT_OF_RANGE) else vector::push_back(&mut bytes, byte);
            i = i + 1;
        };
        to_address(bytes)
    }

    /// The `index`-th value of `data` as `bytes`.
    public fun bytes_at(data: &vector<u8>, index: u64): vector<u8> {
        let start = (u64_at(data, index) as u64);
        assert!(start % 32 == 0, EOUT_OF_RANGE);
        let length = u64_at(data, start / 32);
        let first = start + 32;
        assert!(vector::length(data) >= first + length, ETOO_SHORT);
        let bytes = vector::empty<u8>();
        let i = 0;
        while (i < length) {
            vector::push_back(&mut bytes, *vector::borrow(data, first + i));
            i = i + 1;
        };
        bytes
    }

    /// The `index`-th value of `data` as a `string` (aborts if it is not UTF-8).
    public fun string_at(data: &vector<u8>, index: u64): String {
        string::utf8(bytes_at(data, index))
    }

    fun counted(encoder: &mut Encoder) {
        assert!(encoder.added < encoder.count, ETOO_MANY);
        encoder.added = encoder.added + 1;
    }

    fun append_word(out: &mut vector<u8>, value: u128) {
        append_zeros(out, 16);
        let i = 16;
        while (i > 0) {
            i = i - 1;
            vector::push_back(out, (((value >> ((8 * i) as u8)) & 255) as u8));
        };
    }

    fun append_zeros(out: &mut vector<u8>, count: u64) {
        let i = 0;
        while (i < count) {
            vector::push_back(out, 0);
            i = i + 1;
        };
    }

    /// The address of 20 bytes.
    native fun to_address(bytes: vector<u8>): address;
}
