// What a Solidity developer's viem code does against a Duet dev node: read the chain, send ETH,
// deploy an ERC-20, read it, call it, find its events, and have a revert decoded. Prints one
// JSON object of what it saw; any failure exits non-zero with the error.
//
// Usage: node flow.mjs RPC_URL PRIVATE_KEY TOKEN_ARTIFACT_JSON

import { once } from "node:events";
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  parseAbiItem,
  parseEther,
  webSocket,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";

const [url, key, artifactPath] = process.argv.slice(2);
const artifact = JSON.parse(readFileSync(artifactPath, "utf8"));
const abi = artifact.abi;
const bytecode = artifact.bytecode.object ?? artifact.bytecode;

const probe = createPublicClient({ transport: http(url) });
const chain = defineChain({
  id: await probe.getChainId(),
  name: "Duet dev",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [url] } },
});
// Blocks come every second: look for receipts more often than viem's default of four seconds.
const pollingInterval = 200;
const client = createPublicClient({ chain, transport: http(url), pollingInterval });
const account = privateKeyToAccount(key);
const wallet = createWalletClient({ account, chain, transport: http(url), pollingInterval });
const seen = { chainId: chain.id, from: account.address };

seen.blockNumber = (await client.getBlockNumber()).toString();
seen.balanceBefore = (await client.getBalance({ address: account.address })).toString();
const fees = await client.estimateFeesPerGas();
seen.maxFeePerGas = fees.maxFeePerGas.toString();
const history = await client.getFeeHistory({ blockCount: 4, rewardPercentiles: [25, 75] });
seen.feeHistoryBlocks = history.gasUsedRatio.length;

// ETH: prepared by viem (nonce, gas estimate, fees), signed here, sent raw.
const recipient = "0x000000000000000000000000000000000000c0de";
const sent = await wallet.sendTransaction({ to: recipient, value: parseEther("0.5") });
const sentReceipt = await client.waitForTransactionReceipt({ hash: sent });
seen.transferStatus = sentReceipt.status;
seen.recipientBalance = (await client.getBalance({ address: recipient })).toString();
const transaction = await client.getTransaction({ hash: sent });
seen.transferValue = transaction.value.toString();
seen.transferNonce = transaction.nonce;

// An ERC-20: deployed, read, called, its events found.
const supply = 1000n * 10n ** 18n;
const deployed = await wallet.deployContract({ abi, bytecode, args: ["Viem Token", "VT", supply] });
const deployReceipt = await client.waitForTransactionReceipt({ hash: deployed });
const token = deployReceipt.contractAddress;
seen.deployStatus = deployReceipt.status;
seen.codeBytes = ((await client.getCode({ address: token })).length - 2) / 2;
seen.name = await client.readContract({ address: token, abi, functionName: "name" });
seen.supply = (await client.readContract({ address: token, abi, functionName: "totalSupply" })).toString();

const { request } = await client.simulateContract({
  account,
  address: token,
  abi,
  functionName: "transfer",
  args: [recipient, 25n],
});
const called = await wallet.writeContract(request);
const callReceipt = await client.waitForTransactionReceipt({ hash: called });
seen.callStatus = callReceipt.status;
seen.callLogs = callReceipt.logs.length;
seen.recipientTokens = (
  await client.readContract({ address: token, abi, functionName: "balanceOf", args: [recipient] })
).toString();
const events = await client.getContractEvents({ address: token, abi, eventName: "Transfer", fromBlock: 0n });
seen.transferEvents = events.map((event) => event.args.value.toString());
const toRecipient = await client.getLogs({
  event: parseAbiItem("event Transfer(address indexed from, address indexed to, uint256 value)"),
  args: { to: recipient },
  fromBlock: deployReceipt.blockNumber,
  toBlock: "latest",
});
seen.logsToRecipient = toRecipient.length;
const block = await client.getBlock({ blockNumber: callReceipt.blockNumber, includeTransactions: true });
seen.blockHasCall = block.transactions.some((included) => included.hash === called);

// Watching: viem installs a log filter (eth_newFilter) and polls it (eth_getFilterChanges).
const watched = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("no Transfer event seen within 20 s")), 20_000);
  const unwatch = client.watchContractEvent({
    address: token,
    abi,
    eventName: "Transfer",
    onLogs: (logs) => {
      clearTimeout(timer);
      unwatch();
      resolve(logs.map((log) => log.args.value.toString()));
    },
    onError: (error) => {
      clearTimeout(timer);
      unwatch();
      reject(error);
    },
  });
});
// The watcher installs its filter on its first poll: give it a few before the transfer.
await new Promise((resolve) => setTimeout(resolve, 5 * pollingInterval));
const { request: seventh } = await client.simulateContract({
  account,
  address: token,
  abi,
  functionName: "transfer",
  args: [recipient, 7n],
});
await client.waitForTransactionReceipt({ hash: await wallet.writeContract(seventh) });
seen.watchedTransfers = await watched;

// Filters by hand, as viem's filter actions and ethers' `on` use them.
const filter = await client.createContractEventFilter({
  address: token,
  abi,
  eventName: "Transfer",
  fromBlock: deployReceipt.blockNumber,
});
const blockFilter = await client.createBlockFilter();
const { request: third } = await client.simulateContract({
  account,
  address: token,
  abi,
  functionName: "transfer",
  args: [recipient, 3n],
});
const thirdReceipt = await client.waitForTransactionReceipt({ hash: await wallet.writeContract(third) });
seen.filterChanges = (await client.getFilterChanges({ filter })).map((log) => log.args.value.toString());
seen.filterChangesAgain = (await client.getFilterChanges({ filter })).length;
seen.filterLogs = (await client.getFilterLogs({ filter })).map((log) => log.args.value.toString());
seen.blockFilterHasThird = (await client.getFilterChanges({ filter: blockFilter })).includes(
  thirdReceipt.blockHash,
);
seen.uninstalled = await client.uninstallFilter({ filter });
seen.uninstalledAgain = await client.uninstallFilter({ filter });

// A revert: viem decodes the contract's custom error from eth_call's error data.
try {
  await client.simulateContract({
    account,
    address: token,
    abi,
    functionName: "transfer",
    args: [recipient, supply * 2n],
  });
  seen.revert = "none";
} catch (error) {
  const reverted = error instanceof BaseError && error.walk((cause) => cause instanceof ContractFunctionRevertedError);
  seen.revert = reverted ? reverted.data?.errorName ?? "undecoded" : `other: ${error.shortMessage ?? error}`;
}

// WebSocket on the same port: requests, and subscriptions (eth_subscribe) to new heads and logs.
const wsUrl = url.replace(/^http/, "ws");
const socket = createPublicClient({ chain, transport: webSocket(wsUrl) });
seen.wsChainId = await socket.getChainId();
const within = (what, start) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} within 20 s`)), 20_000);
    const stop = start((value) => {
      clearTimeout(timer);
      stop();
      resolve(value);
    }, reject);
  });
const head = within("new head", (done, failed) =>
  socket.watchBlockNumber({ onBlockNumber: done, onError: failed }),
);
const socketTransfers = within("Transfer log", (done, failed) =>
  socket.watchContractEvent({
    address: token,
    abi,
    eventName: "Transfer",
    onLogs: (logs) => done(logs.map((log) => log.args.value.toString())),
    onError: failed,
  }),
);
seen.wsHead = (await head) > 0n;
// The log subscription is in place once a head arrived on the same connection.
const { request: eleventh } = await client.simulateContract({
  account,
  address: token,
  abi,
  functionName: "transfer",
  args: [recipient, 11n],
});
await client.waitForTransactionReceipt({ hash: await wallet.writeContract(eleventh) });
seen.wsWatchedTransfers = await socketTransfers;

// Bad messages over WebSocket get JSON-RPC errors, and the connection stays.
const raw = new WebSocket(wsUrl);
await once(raw, "open");
// The answer to `text`: the next message that is not a subscription's notification.
const ask = (text) =>
  new Promise((resolve) => {
    const listener = (data) => {
      const message = JSON.parse(data.toString());
      if (message.method === "eth_subscription") return;
      raw.off("message", listener);
      resolve(message);
    };
    raw.on("message", listener);
    raw.send(text);
  });
seen.wsParseError = (await ask("{nope")).error.code;
seen.wsUnsupported = (
  await ask('{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newPendingTransactions"]}')
).error.message;
seen.wsUnsubscribeUnknown = (
  await ask('{"jsonrpc":"2.0","id":2,"method":"eth_unsubscribe","params":["0x1"]}')
).result;
seen.wsBatch = (await ask('[{"jsonrpc":"2.0","id":3,"method":"eth_chainId"}]'))[0].result;
const subscribe = '{"jsonrpc":"2.0","id":4,"method":"eth_subscribe","params":["newHeads"]}';
for (let count = 0; count < 100; count += 1) await ask(subscribe);
seen.wsTooMany = (await ask(subscribe)).error.message;
raw.close();

seen.nonceAfter = await client.getTransactionCount({ address: account.address });
console.log(JSON.stringify(seen));
// The WebSocket client would keep the process alive.
process.exit(0);
