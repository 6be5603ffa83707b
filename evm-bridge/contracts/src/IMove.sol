// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title The Move call precompile
/// @notice Calls a `public` or `entry` Move function synchronously, in the same transaction, and
/// returns its BCS-encoded return values. The function's `signer`, if it takes one, is
/// `msg.sender`. Whatever the Move function changes is undone if the calling frame reverts.
/// @dev A Move abort reverts the call with `MoveAborted`; any other Move failure (unknown module
/// or function, wrong arguments, a static call that would change state...) with `MoveFailed`.
/// Move gas is EVM gas, charged out of the gas passed to the call.
interface IMove {
    /// @param moduleAddress The account the module is published under.
    /// @param moduleName The module's name.
    /// @param functionName The function's name.
    /// @param typeArguments Type arguments in Move syntax ("u64", "0x1::string::String").
    /// @param arguments Each argument BCS-encoded; the signer is implied.
    /// @return returnValues Each return value BCS-encoded.
    function call(
        address moduleAddress,
        string calldata moduleName,
        string calldata functionName,
        string[] calldata typeArguments,
        bytes[] calldata arguments
    ) external returns (bytes[] memory returnValues);

    /// The Move function aborted with `code` in module `location` ("0xAbC...::name").
    error MoveAborted(string location, uint64 code);

    /// The Move call failed for another reason; `status` is the Move VM's status code.
    error MoveFailed(string status, string message);
}

/// @dev Where the Move call precompile lives.
IMove constant MOVE = IMove(0x000000000000000000000000000000000000d0E1);
