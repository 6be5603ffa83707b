/// `duet::abi` against the Solidity ABI: what it encodes, what it decodes and what it refuses
/// (the test beside it compares with alloy's encoding, which is solc's).
module abi_check::codec {
    use std::string;
    use duet::abi;

    struct Encoded has key { bytes: vector<u8> }

    /// Encodes `(uint256, address, bool, bytes, string)` and keeps the encoding under `account`.
    public entry fun encode(
        account: &signer,
        number: u128,
        who: address,
        flag: bool,
        data: vector<u8>,
        text: vector<u8>
    ) {
        let encoder = abi::new(5);
        abi::add_u128(&mut encoder, number);
        abi::add_address(&mut encoder, who);
        abi::add_bool(&mut encoder, flag);
        abi::add_bytes(&mut encoder, data);
        abi::add_string(&mut encoder, string::utf8(text));
        move_to(account, Encoded { bytes: abi::finish(encoder) });
    }

    /// Decodes `encoded` as the same five values; aborts with 100 + i unless value i is the one
    /// given (or with `abi`'s own code when the encoding is malformed).
    public entry fun decode(
        encoded: vector<u8>,
        number: u128,
        who: address,
        flag: bool,
        data: vector<u8>,
        text: vector<u8>
    ) {
        assert!(abi::u128_at(&encoded, 0) == number, 100);
        assert!(abi::address_at(&encoded, 1) == who, 101);
        assert!(abi::bool_at(&encoded, 2) == flag, 102);
        assert!(abi::bytes_at(&encoded, 3) == data, 103);
        assert!(*string::bytes(&abi::string_at(&encoded, 4)) == text, 104);
    }

    /// Finishes calldata made for two values with only one added.
    public entry fun too_few() {
        let encoder = abi::new_call(b"f(string,uint256)", 2);
        abi::add_string(&mut encoder, string::utf8(b"hi"));
        abi::finish(encoder);
    }
}
