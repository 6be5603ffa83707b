// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Burner
/// @notice Reverts or burns gas on request, for tests of failed transactions.
contract Burner {
    /// @notice A counter that failed calls must leave unchanged.
    uint256 public counter;

    /// @notice The revert requested by `failAfterWrite`.
    error Burner_Requested(uint256 counter);

    /// @notice Writes, then reverts: the write must not survive.
    function failAfterWrite() external {
        counter += 1;
        revert Burner_Requested(counter);
    }

    /// @notice Writes, then loops until the gas runs out.
    function burnAll() external {
        counter += 1;
        while (true) {
            counter = counter * 2 + 1;
        }
    }

    /// @notice Increments the counter.
    function increment() external {
        counter += 1;
    }
}
