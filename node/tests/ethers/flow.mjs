// What a Solidity developer's ethers v6 code does against a Duet dev node: read the chain and
// its fees, send ETH, deploy an ERC-20 with a ContractFactory, read and call it, listen for its
// events (`contract.on`, which polls a log filter) and for blocks, and get a revert decoded.
// Prints one JSON object of what it saw; any failure exits non-zero with the error.
//
// Usage: node flow.mjs RPC_URL PRIVATE_KEY TOKEN_ARTIFACT_JSON

import { readFileSync } from "node:fs";
import { ContractFactory, JsonRpcProvider, Transaction, Wallet, parseEther } from "ethers";

const [url, key, artifactPath] = process.argv.slice(2);
const artifact = JSON.parse(readFileSync(artifactPath, "utf8"));
const bytecode = artifact.bytecode.object ?? artifact.bytecode;

// Blocks come every second (every 0.2 s in the tests): poll more often than ethers' default of
// four seconds, and do not let ethers answer a repeated request from its 250 ms cache, which
// would give a nonce from before the last block.
const provider = new JsonRpcProvider(url, undefined, { pollingInterval: 200, cacheTimeout: -1 });
const wallet = new Wallet(key, provider);
const seen = {};

const network = await provider.getNetwork();
seen.chainId = Number(network.chainId);
seen.blockNumber = await provider.getBlockNumber();
const fees = await provider.getFeeData();
seen.maxFeePerGas = fees.maxFeePerGas?.toString();
seen.balance = (await provider.getBalance(wallet.address)).toString();

// ETH: ethers fills in nonce, gas and fees, signs, sends, and waits for the receipt.
const recipient = "0x000000000000000000000000000000000000e7e5";
const sent = await wallet.sendTransaction({ to: recipient, value: parseEther("0.25") });
const sentReceipt = await sent.wait();
seen.transferStatus = sentReceipt.status;
seen.recipientBalance = (await provider.getBalance(recipient)).toString();

// An ERC-20 from its artifact.
const factory = new ContractFactory(artifact.abi, bytecode, wallet);
const token = await factory.deploy("Ethers Token", "ET", 1000n * 10n ** 18n);
await token.waitForDeployment();
const address = await token.getAddress();
seen.deployed = (await provider.getCode(address)).length > 2;
seen.name = await token.name();
seen.symbol = await token.symbol();

// Events by `contract.on` (a log filter polled with eth_getFilterChanges) and blocks by
// `provider.on("block")`.
const within = (what, promise) =>
  Promise.race([
    promise,
    new Promise((_, reject) =>
      // Unreferenced: a timer left pending does not keep the script alive.
      setTimeout(() => reject(new Error(`no ${what} within 20 s`)), 20_000).unref(),
    ),
  ]);
let hear;
const heard = within(
  "Transfer event",
  new Promise((resolve) => {
    hear = resolve;
  }),
);
// Resolves once the listener's log filter is installed.
await token.on("Transfer", (from, to, value) => hear([to, value.toString()]));
const block = within(
  "block",
  new Promise((resolve) => {
    provider.once("block", (number) => resolve(number));
  }),
);
seen.blockEvent = (await block) > 0;
const transfer = await token.transfer(recipient, 42n);
const transferReceipt = await transfer.wait();
seen.callStatus = transferReceipt.status;
seen.parsedLog = token.interface.parseLog(transferReceipt.logs[0])?.args.value.toString();
seen.heard = await heard;
await token.removeAllListeners();
seen.recipientTokens = (await token.balanceOf(recipient)).toString();
seen.queried = (await token.queryFilter(token.filters.Transfer(null, recipient), 0)).length;

// A revert: ethers decodes the contract's custom error from the call's error data.
try {
  await token.transfer.staticCall(recipient, 10n ** 30n);
  seen.revert = "none";
} catch (error) {
  seen.revert = error.revert?.name ?? `undecoded: ${error.shortMessage ?? error.message}`;
}

seen.nonce = await provider.getTransactionCount(wallet.address);

// A dev account the node holds the key of (as anvil does): ethers' JsonRpcSigner has the node
// sign a transaction (eth_signTransaction) without sending it.
const nodeSigner = await provider.getSigner(1);
const signed = await nodeSigner.signTransaction({ to: recipient, value: 1n });
seen.nodeSignedFrom = Transaction.from(signed).from;
seen.nodeSignedNonce = Transaction.from(signed).nonce;
console.log(JSON.stringify(seen));
provider.destroy();
