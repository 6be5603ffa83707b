// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {Bcs} from "../src/Bcs.sol";

/// Calls the library externally, so that its reverts can be expected.
contract BcsDecoder {
    function decodeBool(bytes memory data) external pure returns (bool value) {
        (value,) = Bcs.decodeBool(data, 0);
    }

    function decodeU64(bytes memory data) external pure returns (uint64 value) {
        (value,) = Bcs.decodeU64(data, 0);
    }

    function decodeBytes(bytes memory data) external pure returns (bytes memory value) {
        (value,) = Bcs.decodeBytes(data, 0);
    }

    /// A `u128` and nothing after it.
    function decodeOnlyU128(bytes memory data) external pure returns (uint128 value) {
        uint256 end;
        (value, end) = Bcs.decodeU128(data, 0);
        Bcs.expectEnd(data, end);
    }

    function encodeLength(uint256 length) external pure returns (bytes memory) {
        return Bcs.encodeLength(length);
    }
}

contract BcsTest is Test {
    BcsDecoder internal decoder = new BcsDecoder();

    // Expected encodings as Move's `bcs::to_bytes` gives them (the BCS specification's examples).
    function test_encodings_matchMove() public pure {
        assertEq(Bcs.encodeBool(true), hex"01");
        assertEq(Bcs.encodeBool(false), hex"00");
        assertEq(Bcs.encodeU8(0xab), hex"ab");
        assertEq(Bcs.encodeU64(0x1234), hex"3412000000000000");
        assertEq(Bcs.encodeU128(1 << 64), hex"00000000000000000100000000000000");
        assertEq(
            Bcs.encodeAddress(0x00000000000000000000000000000000000000e1),
            hex"00000000000000000000000000000000000000e1"
        );
        assertEq(Bcs.encodeString("hello"), hex"0568656c6c6f");
        assertEq(Bcs.encodeBytes(""), hex"00");
        assertEq(Bcs.encodeLength(127), hex"7f");
        assertEq(Bcs.encodeLength(128), hex"8001");
        assertEq(Bcs.encodeLength(200), hex"c801");
        assertEq(Bcs.encodeLength(16384), hex"808001");
        assertEq(Bcs.encodeLength((1 << 31) - 1), hex"ffffffff07");
    }

    function test_decodes_valuesPackedOneAfterAnother() public pure {
        // A struct { a: u64, b: bool, c: address, d: vector<u8>, e: u128 }.
        bytes memory data = abi.encodePacked(
            Bcs.encodeU64(42),
            Bcs.encodeBool(true),
            Bcs.encodeAddress(address(0xBEEF)),
            Bcs.encodeBytes(hex"c0ffee"),
            Bcs.encodeU128(type(uint128).max)
        );
        (uint64 a, uint256 offset) = Bcs.decodeU64(data, 0);
        bool b;
        (b, offset) = Bcs.decodeBool(data, offset);
        address c;
        (c, offset) = Bcs.decodeAddress(data, offset);
        bytes memory d;
        (d, offset) = Bcs.decodeBytes(data, offset);
        uint128 e;
        (e, offset) = Bcs.decodeU128(data, offset);
        assertEq(a, 42);
        assertTrue(b);
        assertEq(c, address(0xBEEF));
        assertEq(d, hex"c0ffee");
        assertEq(e, type(uint128).max);
        assertEq(offset, data.length);
    }

    function testFuzz_roundTrips(uint64 x, uint128 y, address w, bytes memory v, string memory s)
        public
        pure
    {
        (uint64 x2,) = Bcs.decodeU64(Bcs.encodeU64(x), 0);
        (uint128 y2,) = Bcs.decodeU128(Bcs.encodeU128(y), 0);
        (address w2,) = Bcs.decodeAddress(Bcs.encodeAddress(w), 0);
        (bytes memory v2, uint256 end) = Bcs.decodeBytes(Bcs.encodeBytes(v), 0);
        (string memory s2,) = Bcs.decodeString(Bcs.encodeString(s), 0);
        assertEq(x2, x);
        assertEq(y2, y);
        assertEq(w2, w);
        assertEq(v2, v);
        assertEq(end, Bcs.encodeBytes(v).length);
        assertEq(s2, s);
    }

    function test_malformed_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(Bcs.BcsInvalid.selector, 0));
        decoder.decodeBool(hex"02");
        vm.expectRevert(abi.encodeWithSelector(Bcs.BcsInvalid.selector, 0));
        decoder.decodeU64(hex"01020304");
        // A length longer than the data.
        vm.expectRevert(abi.encodeWithSelector(Bcs.BcsInvalid.selector, 1));
        decoder.decodeBytes(hex"05aabb");
        // A non-canonical length (a trailing zero group).
        vm.expectRevert(abi.encodeWithSelector(Bcs.BcsInvalid.selector, 0));
        decoder.decodeBytes(hex"8000");
        // A length that never ends.
        vm.expectRevert(abi.encodeWithSelector(Bcs.BcsInvalid.selector, 0));
        decoder.decodeBytes(hex"ffffffffffff");
        // 2^31, one past BCS's longest sequence (bcs::to_bytes refuses it as Move reads it).
        vm.expectRevert(abi.encodeWithSelector(Bcs.BcsInvalid.selector, 0));
        decoder.decodeBytes(hex"8080808008");
        vm.expectRevert(abi.encodeWithSelector(Bcs.BcsInvalid.selector, 0));
        decoder.encodeLength(1 << 31);
        // A u128 where a u256 (32 bytes) came back: read in part without `expectEnd`.
        assertEq(decoder.decodeOnlyU128(Bcs.encodeU128(7)), 7);
        vm.expectRevert(abi.encodeWithSelector(Bcs.BcsInvalid.selector, 16));
        decoder.decodeOnlyU128(abi.encodePacked(Bcs.encodeU128(7), bytes16(0)));
    }
}
