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

/// @title Spender
/// @notice Sends ETH from its own balance while it is being created, then can destroy itself.
contract Spender {
    /// @notice Whether the payment made by the constructor went through.
    bool public paid;

    /// @param to Who the constructor pays.
    /// @param amount How much it tries to pay, possibly more than it holds.
    constructor(address payable to, uint256 amount) payable {
        (bool ok,) = to.call{value: amount}("");
        paid = ok;
    }

    /// @notice SELFDESTRUCT, sending everything to `beneficiary`.
    function destroy(address payable beneficiary) external {
        selfdestruct(beneficiary);
    }
}

/// @title SpenderFactory
/// @notice Deploys a Spender with CREATE2 at an address that may already hold ETH.
contract SpenderFactory {
    /// @notice Deploys a Spender at the address fixed by `salt`; with `destroy`, destroys it at once.
    function deploy(bytes32 salt, address payable to, uint256 amount, bool destroy) external returns (address spender) {
        Spender created = new Spender{salt: salt}(to, amount);
        if (destroy) created.destroy(to);
        spender = address(created);
    }
}
