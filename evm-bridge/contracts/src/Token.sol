// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Token
/// @notice A plain ERC-20 token: the whole supply goes to the deployer.
contract Token is ERC20 {
    /// @param name_ The token's name.
    /// @param symbol_ The token's symbol.
    /// @param supply The number of tokens (in base units) minted to the deployer.
    constructor(string memory name_, string memory symbol_, uint256 supply) ERC20(name_, symbol_) {
        _mint(msg.sender, supply);
    }
}
