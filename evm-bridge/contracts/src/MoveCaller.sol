// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMove, MOVE} from "./IMove.sol";

/// @notice Calls Move from Solidity, for Duet's cross-VM tests.
contract MoveCaller {
    uint256 public failures;
    bytes public lastError;

    /// Calls `module::function(arguments)` and returns its return values.
    function callMove(address module, string calldata name, string calldata functionName, bytes[] calldata arguments)
        public
        returns (bytes[] memory)
    {
        return MOVE.call(module, name, functionName, new string[](0), arguments);
    }

    /// Calls Move, then reverts: the Move effects must be undone with everything else.
    function callThenRevert(address module, string calldata name, string calldata functionName, bytes[] calldata arguments)
        external
    {
        callMove(module, name, functionName, arguments);
        revert("undone");
    }

    /// Calls Move through an inner call that reverts; the outer frame goes on.
    function callInRevertedFrame(
        address module,
        string calldata name,
        string calldata functionName,
        bytes[] calldata arguments
    ) external returns (bool) {
        try this.callThenRevert(module, name, functionName, arguments) {
            return true;
        } catch {
            failures += 1;
            return false;
        }
    }

    /// Calls Move and catches its failure, keeping the revert data.
    function tryCallMove(address module, string calldata name, string calldata functionName, bytes[] calldata arguments)
        external
        returns (bool)
    {
        try MOVE.call(module, name, functionName, new string[](0), arguments) returns (bytes[] memory) {
            return true;
        } catch (bytes memory reason) {
            failures += 1;
            lastError = reason;
            return false;
        }
    }

    /// Reads with a static call (a Move function that changes nothing).
    function viewMove(address module, string calldata name, string calldata functionName, bytes[] calldata arguments)
        external
        view
        returns (bytes[] memory)
    {
        (bool ok, bytes memory data) = address(MOVE).staticcall(
            abi.encodeCall(IMove.call, (module, name, functionName, new string[](0), arguments))
        );
        if (!ok) {
            assembly {
                revert(add(data, 32), mload(data))
            }
        }
        return abi.decode(data, (bytes[]));
    }

    /// The caller's ETH balance, as the EVM sees it.
    function balanceOf(address who) external view returns (uint256) {
        return who.balance;
    }
}
