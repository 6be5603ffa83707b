// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title Pair
/// @notice A constant-product market of two ERC-20 tokens in the style of Uniswap v2: anyone adds
///         liquidity, anyone swaps with a 0.3 % fee. Reserves live in storage, so every swap reads
///         and writes the same slots, as on a real exchange.
contract Pair {
    using SafeERC20 for IERC20;

    /// @notice The first token.
    IERC20 public immutable token0;
    /// @notice The second token.
    IERC20 public immutable token1;
    /// @notice The reserve of token0 held by the pair.
    uint112 public reserve0;
    /// @notice The reserve of token1 held by the pair.
    uint112 public reserve1;

    /// @notice A swap would return nothing.
    error Pair_InsufficientOutput(uint256 amountOut);
    /// @notice The token is neither token0 nor token1.
    error Pair_UnknownToken(address token);

    /// @notice Emitted on every swap.
    event Swap(address indexed sender, address indexed tokenIn, uint256 amountIn, uint256 amountOut, address indexed to);

    /// @param token0_ The first token.
    /// @param token1_ The second token.
    constructor(IERC20 token0_, IERC20 token1_) {
        token0 = token0_;
        token1 = token1_;
    }

    /// @notice Deposits `amount0` of token0 and `amount1` of token1 (approved beforehand).
    function addLiquidity(uint256 amount0, uint256 amount1) external {
        token0.safeTransferFrom(msg.sender, address(this), amount0);
        token1.safeTransferFrom(msg.sender, address(this), amount1);
        reserve0 += uint112(amount0);
        reserve1 += uint112(amount1);
    }

    /// @notice The output of swapping `amountIn` of `tokenIn`, after the 0.3 % fee.
    function quote(address tokenIn, uint256 amountIn) public view returns (uint256) {
        (uint256 reserveIn, uint256 reserveOut) = _reserves(tokenIn);
        uint256 amountInWithFee = amountIn * 997;
        return (amountInWithFee * reserveOut) / (reserveIn * 1000 + amountInWithFee);
    }

    /// @notice Swaps `amountIn` of `tokenIn` (approved beforehand) for the other token, sent to `to`.
    /// @return amountOut What `to` received.
    function swap(address tokenIn, uint256 amountIn, address to) external returns (uint256 amountOut) {
        amountOut = quote(tokenIn, amountIn);
        if (amountOut == 0) revert Pair_InsufficientOutput(amountOut);
        IERC20(tokenIn).safeTransferFrom(msg.sender, address(this), amountIn);
        if (tokenIn == address(token0)) {
            reserve0 += uint112(amountIn);
            reserve1 -= uint112(amountOut);
            token1.safeTransfer(to, amountOut);
        } else {
            reserve1 += uint112(amountIn);
            reserve0 -= uint112(amountOut);
            token0.safeTransfer(to, amountOut);
        }
        emit Swap(msg.sender, tokenIn, amountIn, amountOut, to);
    }

    function _reserves(address tokenIn) private view returns (uint256, uint256) {
        if (tokenIn == address(token0)) return (reserve0, reserve1);
        if (tokenIn == address(token1)) return (reserve1, reserve0);
        revert Pair_UnknownToken(tokenIn);
    }
}
