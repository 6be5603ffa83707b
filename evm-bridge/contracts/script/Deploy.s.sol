// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Script} from "forge-std/Script.sol";
import {Probe} from "../src/Probe.sol";

/// @title Deploy
/// @notice The README's forge walkthrough as a deployment script: deploys a `Probe` and has it
/// record the balance of 0x…bEEF, each a transaction `forge script --broadcast` sends.
contract Deploy is Script {
    /// @notice Deploys the probe and records the balance with it.
    function run() external returns (Probe probe) {
        vm.startBroadcast();
        probe = new Probe();
        probe.record(address(0xBEEF));
        vm.stopBroadcast();
    }
}
