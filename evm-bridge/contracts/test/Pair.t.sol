// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {Pair} from "../src/Pair.sol";
import {Token} from "../src/Token.sol";

contract PairTest is Test {
    Token internal tokenA;
    Token internal tokenB;
    Pair internal pair;

    function setUp() public {
        tokenA = new Token("A", "A", 1e24);
        tokenB = new Token("B", "B", 1e24);
        pair = new Pair(tokenA, tokenB);
        tokenA.approve(address(pair), type(uint256).max);
        tokenB.approve(address(pair), type(uint256).max);
        pair.addLiquidity(1e21, 1e21);
    }

    function test_swap_paysTheQuoteAndKeepsTheProductGrowing() public {
        uint256 before = uint256(pair.reserve0()) * pair.reserve1();
        uint256 quoted = pair.quote(address(tokenA), 1e18);
        uint256 out = pair.swap(address(tokenA), 1e18, address(0xBEEF));
        assertEq(out, quoted);
        assertEq(tokenB.balanceOf(address(0xBEEF)), out);
        assertGt(uint256(pair.reserve0()) * pair.reserve1(), before);
    }

    function test_swap_unknownToken_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(Pair.Pair_UnknownToken.selector, address(0x1234)));
        pair.swap(address(0x1234), 1e18, address(this));
    }

    function test_swap_zeroOutput_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(Pair.Pair_InsufficientOutput.selector, 0));
        pair.swap(address(tokenA), 1, address(this));
    }
}
