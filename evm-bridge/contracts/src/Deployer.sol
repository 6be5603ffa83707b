// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Child
/// @notice A contract created by Deployer; it can destroy itself.
contract Child {
    /// @notice A value set at creation.
    uint256 public value;

    /// @param value_ The value to keep.
    constructor(uint256 value_) payable {
        value = value_;
    }

    /// @notice SELFDESTRUCT, sending the balance to `beneficiary`. Under EIP-6780 the code and
    ///         storage survive unless this runs in the transaction that created the contract.
    function destroy(address payable beneficiary) external {
        selfdestruct(beneficiary);
    }
}

/// @title Deployer
/// @notice Creates Child contracts with CREATE and CREATE2, and one that destroys itself at once.
contract Deployer {
    /// @notice Emitted for every child created.
    event Created(address child, bool create2);

    /// @notice Creates a child with CREATE.
    function create(uint256 value) external returns (address child) {
        child = address(new Child(value));
        emit Created(child, false);
    }

    /// @notice Creates a child with CREATE2 at an address fixed by `salt`.
    function create2(uint256 value, bytes32 salt) external returns (address child) {
        child = address(new Child{salt: salt}(value));
        emit Created(child, true);
    }

    /// @notice Creates a child and destroys it in the same transaction (EIP-6780: it is removed).
    function createAndDestroy(uint256 value) external payable returns (address child) {
        Child created = new Child{value: msg.value}(value);
        created.destroy(payable(msg.sender));
        child = address(created);
    }
}
