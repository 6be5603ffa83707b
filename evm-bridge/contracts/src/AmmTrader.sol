// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Bcs} from "./Bcs.sol";
import {IMove, MOVE} from "./IMove.sol";

/// @title A Solidity contract trading on a Move AMM (`examples::amm`)
/// @notice Swaps through the Move call precompile and uses the amount the Move function returns
/// in the same transaction. The contract itself is the Move signer: its holdings are Move
/// resources under its address.
contract AmmTrader {
    /// @notice Where the `amm` module is published.
    address public immutable amm;
    /// @notice The total bought so far, as the Move AMM reported it.
    uint256 public totalBought;

    event Swapped(address indexed pool, uint128 amountIn, uint128 amountOut);

    constructor(address amm_) {
        amm = amm_;
    }

    /// @notice Gives this contract `a` and `b` of the AMM's two assets (its faucet).
    function fund(uint128 a, uint128 b) external {
        bytes[] memory arguments = new bytes[](2);
        arguments[0] = Bcs.encodeU128(a);
        arguments[1] = Bcs.encodeU128(b);
        MOVE.call(amm, "amm", "faucet", new string[](0), arguments);
    }

    /// @notice Sells `amountIn` of A for B in the pool at `pool`, at least `minOut`; returns and
    /// records the amount bought.
    function swap(address pool, uint128 amountIn, uint128 minOut) external returns (uint128 amountOut) {
        bytes[] memory arguments = new bytes[](3);
        arguments[0] = Bcs.encodeAddress(pool);
        arguments[1] = Bcs.encodeU128(amountIn);
        arguments[2] = Bcs.encodeU128(minOut);
        bytes[] memory returned = MOVE.call(amm, "amm", "swap_a_for_b", new string[](0), arguments);
        uint256 end;
        (amountOut, end) = Bcs.decodeU128(returned[0], 0);
        Bcs.expectEnd(returned[0], end);
        totalBought += amountOut;
        emit Swapped(pool, amountIn, amountOut);
    }

    /// @notice What this contract holds of A and B, read from Move.
    function holdings() external returns (uint128 a, uint128 b) {
        bytes[] memory arguments = new bytes[](1);
        arguments[0] = Bcs.encodeAddress(address(this));
        bytes[] memory returned = MOVE.call(amm, "amm", "holdings", new string[](0), arguments);
        uint256 end;
        (a, end) = Bcs.decodeU128(returned[0], 0);
        Bcs.expectEnd(returned[0], end);
        (b, end) = Bcs.decodeU128(returned[1], 0);
        Bcs.expectEnd(returned[1], end);
    }
}
