// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title BCS, Move's binary encoding, in Solidity
/// @notice Encodes the arguments of a Move call made through the Move call precompile (`IMove`)
/// and decodes its return values: the types Duet's Move has (`bool`, `u8`, `u64`, `u128`,
/// `address`, `vector<u8>`, `0x1::string::String`). Integers are little-endian and fixed-size;
/// `bool` is one byte (0 or 1); an `address` is its 20 bytes; `vector<u8>` and `String` are a
/// ULEB128 length and the bytes.
/// @dev Each `decode*` reads at `offset` and returns the value and the offset after it, so that
/// values packed one after another (a struct) can be read in turn; `expectEnd` then checks that
/// nothing follows the last (a return value of a longer type than expected would otherwise be
/// read in part). Malformed input (too short, a `bool` other than 0 or 1, a non-canonical
/// length or one over 2^31 - 1, bytes left over) reverts with `BcsInvalid`.
library Bcs {
    /// The input is not a valid BCS encoding of the type asked for, at `offset`.
    error BcsInvalid(uint256 offset);

    function encodeBool(bool value) internal pure returns (bytes memory) {
        return abi.encodePacked(value ? uint8(1) : uint8(0));
    }

    function encodeU8(uint8 value) internal pure returns (bytes memory) {
        return abi.encodePacked(value);
    }

    function encodeU64(uint64 value) internal pure returns (bytes memory) {
        return _littleEndian(value, 8);
    }

    function encodeU128(uint128 value) internal pure returns (bytes memory) {
        return _littleEndian(value, 16);
    }

    function encodeAddress(address value) internal pure returns (bytes memory) {
        return abi.encodePacked(value);
    }

    /// @notice `vector<u8>`.
    function encodeBytes(bytes memory value) internal pure returns (bytes memory) {
        return abi.encodePacked(encodeLength(value.length), value);
    }

    /// @notice `0x1::string::String` (the bytes must be UTF-8; Move checks).
    function encodeString(string memory value) internal pure returns (bytes memory) {
        return encodeBytes(bytes(value));
    }

    /// @notice BCS's longest sequence.
    uint256 internal constant MAX_LENGTH = (1 << 31) - 1;

    /// @notice A ULEB128 length, as BCS prefixes every vector with.
    function encodeLength(uint256 length) internal pure returns (bytes memory out) {
        if (length > MAX_LENGTH) revert BcsInvalid(0);
        do {
            uint8 low = uint8(length & 0x7f);
            length >>= 7;
            out = abi.encodePacked(out, length == 0 ? low : low | 0x80);
        } while (length != 0);
    }

    function decodeBool(bytes memory data, uint256 offset) internal pure returns (bool, uint256) {
        _need(data, offset, 1);
        uint8 byte0 = uint8(data[offset]);
        if (byte0 > 1) revert BcsInvalid(offset);
        return (byte0 == 1, offset + 1);
    }

    function decodeU8(bytes memory data, uint256 offset) internal pure returns (uint8, uint256) {
        _need(data, offset, 1);
        return (uint8(data[offset]), offset + 1);
    }

    function decodeU64(bytes memory data, uint256 offset) internal pure returns (uint64, uint256) {
        return (uint64(_readLittleEndian(data, offset, 8)), offset + 8);
    }

    function decodeU128(bytes memory data, uint256 offset) internal pure returns (uint128, uint256) {
        return (uint128(_readLittleEndian(data, offset, 16)), offset + 16);
    }

    function decodeAddress(bytes memory data, uint256 offset) internal pure returns (address, uint256) {
        _need(data, offset, 20);
        uint160 value;
        for (uint256 i = 0; i < 20; i++) {
            value = (value << 8) | uint8(data[offset + i]);
        }
        return (address(value), offset + 20);
    }

    function decodeBytes(bytes memory data, uint256 offset) internal pure returns (bytes memory out, uint256) {
        uint256 length;
        (length, offset) = decodeLength(data, offset);
        _need(data, offset, length);
        out = new bytes(length);
        for (uint256 i = 0; i < length; i++) {
            out[i] = data[offset + i];
        }
        return (out, offset + length);
    }

    function decodeString(bytes memory data, uint256 offset) internal pure returns (string memory, uint256) {
        (bytes memory out, uint256 next) = decodeBytes(data, offset);
        return (string(out), next);
    }

    /// @notice A ULEB128 length: canonical (no trailing zero group) and at most 2^31 - 1.
    function decodeLength(bytes memory data, uint256 offset) internal pure returns (uint256 length, uint256) {
        uint256 start = offset;
        for (uint256 shift = 0; shift < 35; shift += 7) {
            _need(data, offset, 1);
            uint8 group = uint8(data[offset]);
            offset += 1;
            length |= uint256(group & 0x7f) << shift;
            if (group & 0x80 == 0) {
                if ((group == 0 && shift != 0) || length > MAX_LENGTH) revert BcsInvalid(start);
                return (length, offset);
            }
        }
        revert BcsInvalid(start);
    }

    /// @notice Reverts unless `offset` is the end of `data`: the last value read was the last.
    function expectEnd(bytes memory data, uint256 offset) internal pure {
        if (offset != data.length) revert BcsInvalid(offset);
    }

    function _littleEndian(uint256 value, uint256 size) private pure returns (bytes memory out) {
        out = new bytes(size);
        for (uint256 i = 0; i < size; i++) {
            out[i] = bytes1(uint8(value >> (8 * i)));
        }
    }

    function _readLittleEndian(bytes memory data, uint256 offset, uint256 size) private pure returns (uint256 value) {
        _need(data, offset, size);
        for (uint256 i = 0; i < size; i++) {
            value |= uint256(uint8(data[offset + i])) << (8 * i);
        }
    }

    function _need(bytes memory data, uint256 offset, uint256 size) private pure {
        if (offset + size > data.length) revert BcsInvalid(offset);
    }
}
