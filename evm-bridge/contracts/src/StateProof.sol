// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Duet state proofs
/// @notice Verifies a proof from `duet_getProof` against a Duet state root: the keccak256 sparse
/// Merkle tree of `node/src/merkle.rs`. A leaf sits at `keyHash = keccak256(encoded state key)`,
/// read from its most significant bit, and holds `valueHash = keccak256(encoded value)`; a leaf
/// is `keccak256(0x00 ‖ keyHash ‖ valueHash)`, an inner node `keccak256(0x01 ‖ left ‖ right)`,
/// an empty subtree zero, and a subtree with one leaf is that leaf.
library StateProof {
    /// Where the key's path ends.
    enum Terminal {
        Empty,
        Leaf
    }

    function leafHash(bytes32 keyHash, bytes32 valueHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes1(0x00), keyHash, valueHash));
    }

    function innerHash(bytes32 left, bytes32 right) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes1(0x01), left, right));
    }

    function bit(bytes32 key, uint256 depth) internal pure returns (bool) {
        return (uint256(key) >> (255 - depth)) & 1 == 1;
    }

    /// @notice Whether the proof shows that under `root`, `keyHash` holds `valueHash` (if
    /// `present`) or is absent.
    /// @param siblings The siblings from the root down.
    /// @param terminal Where the path ends; for a leaf, `leafKey` and `leafValue` are its hashes.
    function verify(
        bytes32 root,
        bytes32 keyHash,
        bool present,
        bytes32 valueHash,
        bytes32[] memory siblings,
        Terminal terminal,
        bytes32 leafKey,
        bytes32 leafValue
    ) internal pure returns (bool) {
        uint256 depth = siblings.length;
        if (depth > 256) return false;
        bytes32 hash;
        if (terminal == Terminal.Empty) {
            if (present) return false;
            hash = bytes32(0);
        } else if (present) {
            if (leafKey != keyHash || leafValue != valueHash) return false;
            hash = leafHash(leafKey, leafValue);
        } else {
            // Another key's leaf where this key's path ends: it must share the path.
            if (leafKey == keyHash) return false;
            for (uint256 at = 0; at < depth; at++) {
                if (bit(leafKey, at) != bit(keyHash, at)) return false;
            }
            hash = leafHash(leafKey, leafValue);
        }
        for (uint256 at = depth; at > 0; at--) {
            bytes32 sibling = siblings[at - 1];
            hash = bit(keyHash, at - 1) ? innerHash(sibling, hash) : innerHash(hash, sibling);
        }
        return hash == root;
    }
}

/// @notice `StateProof.verify` as a contract, for callers that prefer a call to a library.
contract StateProofVerifier {
    function verify(
        bytes32 root,
        bytes32 keyHash,
        bool present,
        bytes32 valueHash,
        bytes32[] calldata siblings,
        StateProof.Terminal terminal,
        bytes32 leafKey,
        bytes32 leafValue
    ) external pure returns (bool) {
        return StateProof.verify(root, keyHash, present, valueHash, siblings, terminal, leafKey, leafValue);
    }
}
