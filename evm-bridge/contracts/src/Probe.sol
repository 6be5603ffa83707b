// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Probe
/// @notice Records balances as the EVM sees them, for tests of exact balance reads.
contract Probe {
    /// @notice The last balance recorded.
    uint256 public seen;

    /// @notice Records the balance of `who`.
    function record(address who) external {
        seen = who.balance;
    }

    /// @notice Records the fee vault's (the block's beneficiary's) balance.
    function recordCoinbase() external {
        seen = block.coinbase.balance;
    }

    /// @notice Forwards the value sent to `to`, then records `to`'s balance.
    function payAndRecord(address payable to) external payable {
        to.transfer(msg.value);
        seen = to.balance;
    }
}
