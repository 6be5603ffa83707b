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
  encodeFunctionData,
  http,
  parseAbiItem,
  parseEther,
  recoverTypedDataAddress,
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
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// The first value `start`'s callback gives within 20 s; `start` returns how to stop it.
const within = (what, start) =>
  new Promise((resolve, reject) => {
    let stop = null;
    let settled = false;
    const settle = (outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      queueMicrotask(() => stop?.());
      outcome();
    };
    const timer = setTimeout(() => settle(() => reject(new Error(`no ${what} within 20 s`))), 20_000);
    stop = start(
      (value) => settle(() => resolve(value)),
      (error) => settle(() => reject(error)),
    );
  });
// The values of Transfer logs.
const values = (logs) => logs.map((log) => log.args.value.toString());

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

// EIP-712 typed data signed by the node for its unlocked account (eth_signTypedData_v4, as a
// wallet would), the same signature as the account's own key gives here.
const typedData = {
  domain: {
    name: "Ether Mail",
    version: "1",
    chainId: chain.id,
    verifyingContract: "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
  },
  types: {
    Person: [
      { name: "name", type: "string" },
      { name: "wallet", type: "address" },
    ],
    Mail: [
      { name: "from", type: "Person" },
      { name: "to", type: "Person" },
      { name: "contents", type: "string" },
    ],
  },
  primaryType: "Mail",
  message: {
    from: { name: "Cow", wallet: "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826" },
    to: { name: "Bob", wallet: "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB" },
    contents: "Hello, Bob!",
  },
};
const nodeWallet = createWalletClient({ account: account.address, chain, transport: http(url) });
const typedSignature = await nodeWallet.signTypedData(typedData);
seen.typedDataSameSignature = typedSignature === (await account.signTypedData(typedData));
seen.typedDataSigner = await recoverTypedDataAddress({ ...typedData, signature: typedSignature });

// An ERC-20: deployed, read, called, its events found.
const supply = 1000n * 10n ** 18n;
const deployed = await wallet.deployContract({ abi, bytecode, args: ["Viem Token", "VT", supply] });
const deployReceipt = await client.waitForTransactionReceipt({ hash: deployed });
const token = deployReceipt.contractAddress;
seen.tokenAddress = token;
seen.deployStatus = deployReceipt.status;
seen.codeBytes = ((await client.getCode({ address: token })).length - 2) / 2;
seen.name = await client.readContract({ address: token, abi, functionName: "name" });
seen.supply = (await client.readContract({ address: token, abi, functionName: "totalSupply" })).toString();

// A token transfer to the recipient, simulated, sent and waited for: its receipt.
const transferTokens = async (amount) => {
  const { request } = await client.simulateContract({
    account,
    address: token,
    abi,
    functionName: "transfer",
    args: [recipient, amount],
  });
  return client.waitForTransactionReceipt({ hash: await wallet.writeContract(request) });
};
const callReceipt = await transferTokens(25n);
const called = callReceipt.transactionHash;
seen.callStatus = callReceipt.status;
seen.callLogs = callReceipt.logs.length;
seen.recipientTokens = (
  await client.readContract({ address: token, abi, functionName: "balanceOf", args: [recipient] })
).toString();
const events = await client.getContractEvents({ address: token, abi, eventName: "Transfer", fromBlock: 0n });
seen.transferEvents = values(events);
const toRecipient = await client.getLogs({
  event: parseAbiItem("event Transfer(address indexed from, address indexed to, uint256 value)"),
  args: { to: recipient },
  fromBlock: deployReceipt.blockNumber,
  toBlock: "latest",
});
seen.logsToRecipient = toRecipient.length;
const block = await client.getBlock({ blockNumber: callReceipt.blockNumber, includeTransactions: true });
seen.blockHasCall = block.transactions.some((included) => included.hash === called);
// The recipient's tokens read at the block before the transfer (the node keeps the last 128).
seen.recipientTokensBefore = (
  await client.readContract({
    address: token,
    abi,
    functionName: "balanceOf",
    args: [recipient],
    blockNumber: callReceipt.blockNumber - 1n,
  })
).toString();
// A call with a state override: code returning BALANCE(recipient), the recipient given 5 wei.
const balanceOf = `0x73${recipient.slice(2)}3160005260206000f3`;
const overridden = await client.call({
  data: balanceOf,
  stateOverride: [{ address: recipient, balance: 5n }],
});
seen.overriddenBalance = BigInt(overridden.data).toString();

// Watching: viem installs a log filter (eth_newFilter) and polls it (eth_getFilterChanges).
const watchTransfers = (watcher) =>
  within("Transfer log", (done, failed) =>
    watcher.watchContractEvent({
      address: token,
      abi,
      eventName: "Transfer",
      onLogs: (logs) => done(values(logs)),
      onError: failed,
    }),
  );
const watched = watchTransfers(client);
// The watcher installs its filter on its first poll: give it a few before the transfer.
await sleep(5 * pollingInterval);
await transferTokens(7n);
seen.watchedTransfers = await watched;

// Filters by hand, as viem's filter actions and ethers' `on` use them.
const filter = await client.createContractEventFilter({
  address: token,
  abi,
  eventName: "Transfer",
  fromBlock: deployReceipt.blockNumber,
});
const blockFilter = await client.createBlockFilter();
const thirdReceipt = await transferTokens(3n);
seen.filterChanges = values(await client.getFilterChanges({ filter }));
seen.filterChangesAgain = (await client.getFilterChanges({ filter })).length;
seen.filterLogs = values(await client.getFilterLogs({ filter }));
seen.blockFilterHasThird = (await client.getFilterChanges({ filter: blockFilter })).includes(
  thirdReceipt.blockHash,
);
seen.uninstalled = await client.uninstallFilter({ filter });
seen.uninstalledAgain = await client.uninstallFilter({ filter });

// Pending transactions, watched through a pending-transaction filter.
const pendingSeen = within("pending transaction", (done, failed) =>
  client.watchPendingTransactions({ onTransactions: done, onError: failed }),
);
await sleep(5 * pollingInterval);
const pendingHash = await wallet.sendTransaction({ to: recipient, value: 1n });
seen.pendingWatched = (await pendingSeen).includes(pendingHash);
await client.waitForTransactionReceipt({ hash: pendingHash });

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

// EIP-7702: an account with no ETH signs an authorization to run the token's code, and the
// wallet sends it (a sponsored set-code transaction) with a call to the account, which runs that
// code over the account's own storage: an approval stored there, and no token supply.
const delegator = privateKeyToAccount(`0x${"17".repeat(32)}`);
const authorization = await wallet.signAuthorization({ account: delegator, contractAddress: token });
const delegated = await wallet.sendTransaction({
  to: delegator.address,
  data: encodeFunctionData({ abi, functionName: "approve", args: [recipient, 9n] }),
  authorizationList: [authorization],
});
const delegatedReceipt = await client.waitForTransactionReceipt({ hash: delegated });
seen.delegationStatus = delegatedReceipt.status;
seen.delegationType = delegatedReceipt.type;
seen.delegationCode = await client.getCode({ address: delegator.address });
seen.delegatedSupply = (
  await client.readContract({ address: delegator.address, abi, functionName: "totalSupply" })
).toString();
seen.delegatedAllowance = (
  await client.readContract({
    address: delegator.address,
    abi,
    functionName: "allowance",
    args: [wallet.account.address, recipient],
  })
).toString();
seen.delegationListed = (await client.getTransaction({ hash: delegated })).authorizationList?.length ?? 0;

// WebSocket on the same port: requests, and subscriptions (eth_subscribe) to new heads and logs.
const wsUrl = url.replace(/^http/, "ws");
const socket = createPublicClient({ chain, transport: webSocket(wsUrl) });
seen.wsChainId = await socket.getChainId();
const head = within("new head", (done, failed) =>
  socket.watchBlockNumber({ onBlockNumber: done, onError: failed }),
);
seen.wsHead = (await head) > 0n;
// viem's event watch subscribes to logs now; the transfer below comes well after.
const socketTransfers = watchTransfers(socket);

// The same by hand, on a socket of its own: subscription ids, what a notification holds, and
// that nothing comes after unsubscribing.
const raw = new WebSocket(wsUrl);
await once(raw, "open");
const notifications = [];
const pending = new Map();
raw.on("message", (data) => {
  const message = JSON.parse(data.toString());
  if (message.method === "eth_subscription") notifications.push(message.params);
  else if (Array.isArray(message)) pending.get("batch")?.(message);
  else pending.get(JSON.stringify(message.id ?? null))?.(message);
});
let asked = 0;
// The answer to `request` (an object, or raw text answered with id null).
const ask = (request) =>
  new Promise((resolve) => {
    if (typeof request === "string") {
      pending.set("null", resolve);
      raw.send(request);
      return;
    }
    asked += 1;
    pending.set(JSON.stringify(asked), resolve);
    raw.send(JSON.stringify({ jsonrpc: "2.0", id: asked, ...request }));
  });
// A slow request does not hold up a quick one sent after it on the same connection (answers
// are matched by id): a call that loops until its 2 000 000 gas run out, then eth_chainId.
const order = [];
const bothAnswered = new Promise((resolve) => {
  const listener = (data) => {
    const message = JSON.parse(data.toString());
    if (message.id === "slow" || message.id === "quick") {
      order.push(message.id);
      if (order.length === 2) {
        raw.off("message", listener);
        resolve();
      }
    }
  };
  raw.on("message", listener);
});
const loop = { data: "0x5b600056", gas: "0x1e8480" };
raw.send(JSON.stringify({ jsonrpc: "2.0", id: "slow", method: "eth_call", params: [loop, "latest"] }));
raw.send(JSON.stringify({ jsonrpc: "2.0", id: "quick", method: "eth_chainId", params: [] }));
await bothAnswered;
seen.wsAnswerOrder = order;
const before = BigInt((await ask({ method: "eth_blockNumber" })).result);
const heads = (await ask({ method: "eth_subscribe", params: ["newHeads"] })).result;
const pendings = (await ask({ method: "eth_subscribe", params: ["newPendingTransactions"] })).result;
// geth's flag: the transactions themselves.
const fullPendings = (await ask({ method: "eth_subscribe", params: ["newPendingTransactions", true] })).result;
// `latest` bounds are what a logs subscription does anyway: taken, as geth takes them.
const logs = (await ask({ method: "eth_subscribe", params: ["logs", { address: token, fromBlock: "latest" }] })).result;
// By topics: Transfer's (any sender, as an OR list with null), and one no log has.
const transferTopic = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
const byTopic = (await ask({ method: "eth_subscribe", params: ["logs", { topics: [transferTopic, [null]] }] })).result;
const noTopic = (await ask({ method: "eth_subscribe", params: ["logs", { topics: ["0x" + "11".repeat(32)] }] })).result;
const thirteenthReceipt = await transferTokens(13n);
const deadline = Date.now() + 20_000;
const headsSeen = () => notifications.filter((n) => n.subscription === heads).map((n) => n.result);
while (
  Date.now() < deadline &&
  !(notifications.some((n) => n.subscription === logs) &&
    headsSeen().some((header) => BigInt(header.number) >= thirteenthReceipt.blockNumber))
) {
  await sleep(50);
}
const numbers = headsSeen().map((header) => BigInt(header.number));
seen.wsHeadsAfterSubscribing = numbers.length > 0 && numbers[0] > before;
seen.wsHeadsConsecutive = numbers.every((number, index) => index === 0 || number === numbers[index - 1] + 1n);
const first = headsSeen()[0] ?? {};
seen.wsHeaderFields = ["hash", "parentHash", "stateRoot", "number", "timestamp"].every((f) => f in first)
  && !("transactions" in first);
const logged = notifications.filter((n) => n.subscription === logs).map((n) => n.result);
seen.wsPending = notifications
  .filter((n) => n.subscription === pendings)
  .map((n) => n.result === thirteenthReceipt.transactionHash);
seen.wsFullPending = notifications
  .filter((n) => n.subscription === fullPendings)
  .map((n) => [n.result.hash === thirteenthReceipt.transactionHash, n.result.to?.toLowerCase() === token.toLowerCase(), n.result.nonce !== undefined]);
await ask({ method: "eth_unsubscribe", params: [fullPendings] });
seen.wsLogs = logged.map((log) => [log.transactionHash === thirteenthReceipt.transactionHash, BigInt(log.data).toString()]);
seen.wsLogsByTopic = notifications.filter((n) => n.subscription === byTopic)
  .map((n) => n.result.transactionHash === thirteenthReceipt.transactionHash);
seen.wsLogsByOtherTopic = notifications.filter((n) => n.subscription === noTopic).length;
await ask({ method: "eth_unsubscribe", params: [byTopic] });
await ask({ method: "eth_unsubscribe", params: [noTopic] });
// Where the notified log sits is where its receipt says it does.
const receiptLog = thirteenthReceipt.logs[0] ?? {};
seen.wsLogPlaces = logged.map((log) => [
  BigInt(log.logIndex) === BigInt(receiptLog.logIndex),
  BigInt(log.transactionIndex) === BigInt(receiptLog.transactionIndex),
  log.blockHash === receiptLog.blockHash,
  BigInt(log.blockNumber) === BigInt(receiptLog.blockNumber),
  log.removed === false,
]);
seen.wsUnsubscribed = (await ask({ method: "eth_unsubscribe", params: [heads] })).result;
seen.wsUnsubscribedAgain = (await ask({ method: "eth_unsubscribe", params: [heads] })).error.message;
const afterUnsubscribe = notifications.length;
await sleep(1_500);
seen.wsWatchedTransfers = await socketTransfers;
seen.wsHeadsAfterUnsubscribing = notifications
  .slice(afterUnsubscribe)
  .filter((n) => n.subscription === heads).length;

// A large message (parsed with the runtime told that its thread blocks) is answered too.
seen.wsLargeMessage = (await ask({ method: "eth_chainId", pad: "x".repeat(100_000) })).result;

// Bad messages get JSON-RPC errors, and the connection stays.
seen.wsParseError = (await ask("{nope")).error.code;
seen.wsUnsupported = (await ask({ method: "eth_subscribe", params: ["syncing"] }))
  .error.message;
seen.wsBatch = await new Promise((resolve) => {
  pending.set("batch", (answers) => resolve(answers[0]?.result));
  raw.send('[{"jsonrpc":"2.0","id":"batch","method":"eth_chainId"}]');
});
await ask({ method: "eth_unsubscribe", params: [logs] });
await ask({ method: "eth_unsubscribe", params: [pendings] });
let refused = null;
for (let count = 0; count <= 100 && refused === null; count += 1) {
  const answer = await ask({ method: "eth_subscribe", params: ["newHeads"] });
  if (answer.error) refused = `${count}: ${answer.error.message}`;
}
seen.wsTooMany = refused;
raw.close();

// A transaction sent just before the client closes is still carried out (its answer goes
// nowhere): the unlocked account's nonce moves on.
const nonceBefore = await client.getTransactionCount({ address: account.address, blockTag: "pending" });
const closing = new WebSocket(wsUrl);
await once(closing, "open");
const lastWords = { from: account.address, to: recipient, value: "0x1" };
closing.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_sendTransaction", params: [lastWords] }));
closing.close();
const sentDeadline = Date.now() + 20_000;
seen.sentBeforeClosing = false;
while (Date.now() < sentDeadline && !seen.sentBeforeClosing) {
  await sleep(pollingInterval);
  const nonce = await client.getTransactionCount({ address: account.address });
  seen.sentBeforeClosing = nonce === nonceBefore + 1;
}

seen.nonceAfter = await client.getTransactionCount({ address: account.address });
console.log(JSON.stringify(seen));
// The WebSocket client would keep the process alive.
process.exit(0);
