//! The dev chain's genesis: the Move framework and ten prefunded accounts whose keys are public
//! (the same ten that anvil and Hardhat print, so tools and tutorials work unchanged).

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;
use duet_types::{StateKey, StateValue};

/// The dev accounts' private keys (never use them anywhere else).
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// What each dev account holds: 10 000 ETH.
pub const DEV_BALANCE: u128 = 10_000 * 10u128.pow(18);

/// Block 0's timestamp: fixed, so that every node that builds the same genesis state gets the
/// same genesis block, and so the same hash for every block after it (a challenger replaying the
/// chain must). Later blocks take the clock's second.
pub const GENESIS_TIMESTAMP: u64 = 0;

/// The dev accounts: (address, private key).
#[must_use]
pub fn dev_accounts() -> Vec<(Address, &'static str)> {
    dev_signers().iter().map(PrivateKeySigner::address).zip(DEV_KEYS).collect()
}

/// The dev accounts' signers.
///
/// # Panics
/// Never: the keys are valid.
#[must_use]
pub fn dev_signers() -> Vec<PrivateKeySigner> {
    DEV_KEYS.iter().map(|key| key.parse().expect("a valid secp256k1 key")).collect()
}

/// The dev genesis state: the Move framework at `0x1` and the funded dev accounts.
#[must_use]
pub fn dev_genesis() -> Vec<(StateKey, StateValue)> {
    let mut state = duet_move::genesis_state();
    for (address, _) in dev_accounts() {
        state.push((StateKey::Balance(address), StateValue::Balance(DEV_BALANCE)));
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_accounts_are_the_well_known_ones() {
        let accounts = dev_accounts();
        let first: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse().unwrap();
        let second: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse().unwrap();
        assert_eq!(accounts[0].0, first);
        assert_eq!(accounts[1].0, second);
        assert_eq!(accounts.len(), 10);
    }
}
