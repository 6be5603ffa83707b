//! `duet`: the Duet node's command line.

mod move_cli;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use clap::{Parser, Subcommand};
use duet_node::chain::{Chain, ChainConfig, ProduceError};
use duet_node::genesis::{dev_accounts, dev_genesis, DEV_BALANCE};
use duet_node::store::Store;

/// The allocator the node runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Duet: an optimistic rollup running Move and EVM transactions in the same block.
#[derive(Parser, Debug)]
#[command(name = "duet", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a node.
    Node(NodeArgs),
    /// Builds, publishes, runs and views Move code on a node.
    #[command(subcommand)]
    Move(move_cli::MoveCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Sustained ERC-20 transfers over JSON-RPC: committed tx/s and send-to-inclusion latency,
    /// for a Duet dev node and anvil started here with the same block time.
    Rpc(RpcBenchArgs),
}

#[derive(clap::Args, Debug)]
struct RpcBenchArgs {
    /// Which node: duet, anvil or both.
    #[arg(long, default_value = "both")]
    target: String,
    /// Senders.
    #[arg(long, default_value_t = 1_000)]
    senders: usize,
    /// Transfers in all.
    #[arg(long, default_value_t = 20_000)]
    txs: usize,
    /// Client threads, at most one per sender (each sends for its own senders).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Transactions per JSON-RPC request (a batch when above 1).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seconds between blocks, for both nodes.
    #[arg(long, default_value_t = 1.0)]
    block_time: f64,
    /// The block gas limit, for both nodes.
    #[arg(long, default_value_t = 1_000_000_000)]
    block_gas_limit: u64,
    /// One JSON object per target per line.
    #[arg(long)]
    json: bool,
    /// Run against the node already listening here instead of starting one (`--target` then
    /// only names it).
    #[arg(long)]
    url: Option<String>,
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// A single-sequencer development chain with prefunded accounts.
    #[arg(long)]
    dev: bool,
    /// A TOML file with any of the settings below (`datadir`, `http_port`, `block_time`,
    /// `chain_id`, `block_gas_limit`, `mempool_limit`, `mempool_lifetime`, `http_max_connections`,
    /// `http_idle_timeout`, `state_history`); flags and
    /// environment variables override it.
    #[arg(long, env = "DUET_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

/// The settings a node runs with, each from its flag or environment variable (clap), else from
/// the TOML file (serde), else its default: one list for both sources.
#[derive(clap::Args, Debug, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Where the database lives [default: `$XDG_DATA_HOME/duet/dev`, or
    /// ~/.local/share/duet/dev].
    #[arg(long, env = "DUET_DATADIR")]
    datadir: Option<PathBuf>,
    /// The JSON-RPC port, on 127.0.0.1 [default: 8545].
    #[arg(long, env = "DUET_HTTP_PORT")]
    http_port: Option<u16>,
    /// Seconds between blocks [default: 1].
    #[arg(long, env = "DUET_BLOCK_TIME")]
    block_time: Option<f64>,
    /// The chain id [default: 31337].
    #[arg(long, env = "DUET_CHAIN_ID")]
    chain_id: Option<u64>,
    /// The most gas a block's transactions may use; a transaction is taken while its gas limit
    /// fits in what is left [default: 1000000000].
    #[arg(long, env = "DUET_BLOCK_GAS_LIMIT")]
    block_gas_limit: Option<u64>,
    /// The most transactions the mempool holds; past it, a new one evicts the cheapest other
    /// sender's last transaction if it pays more, and is refused with "txpool is full" if not
    /// [default: 50000].
    #[arg(long, env = "DUET_MEMPOOL_LIMIT")]
    mempool_limit: Option<usize>,
    /// Seconds a sender's transactions above a nonce gap wait after its last one arrived,
    /// before they are dropped [default: 10800, three hours].
    #[arg(long, env = "DUET_MEMPOOL_LIFETIME")]
    mempool_lifetime: Option<f64>,
    /// The most HTTP and WebSocket connections open at once; past it, new ones wait until one
    /// closes [default: 512].
    #[arg(long, env = "DUET_HTTP_MAX_CONNECTIONS")]
    http_max_connections: Option<usize>,
    /// Seconds a connection may take to send a request's head (an idle keep-alive connection is
    /// closed after them), and then its body [default: 30].
    #[arg(long, env = "DUET_HTTP_IDLE_TIMEOUT")]
    http_idle_timeout: Option<f64>,
    /// How many blocks before the head stay queryable at their own state (`eth_call`,
    /// `eth_getBalance`… at a block number or hash, the Move API's `?block=`); 0 keeps every
    /// block's from now on, as an archive node does [default: 128].
    #[arg(long, env = "DUET_STATE_HISTORY")]
    state_history: Option<u64>,
}

/// The resolved settings.
struct NodeSettings {
    datadir: PathBuf,
    http_port: u16,
    block_time: Duration,
    chain_id: u64,
    block_gas_limit: u64,
    mempool_limit: usize,
    mempool_lifetime: Duration,
    http: duet_node::server::Limits,
    /// Blocks whose state is kept before the head (`u64::MAX`: all).
    state_history: u64,
}

impl NodeArgs {
    fn settings(&self) -> Result<NodeSettings, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| format!("{}: {error}", path.display()))?;
                toml::from_str::<Settings>(&text)
                    .map_err(|error| format!("{}: {error}", path.display()))?
            }
            None => Settings::default(),
        };
        let given = &self.settings;
        let defaults = duet_node::server::Limits::default();
        let settings = NodeSettings {
            datadir: match given.datadir.clone().or(file.datadir) {
                Some(datadir) => datadir,
                None => default_datadir()?,
            },
            http_port: given.http_port.or(file.http_port).unwrap_or(8545),
            block_time: seconds(given.block_time.or(file.block_time).unwrap_or(1.0), "block time")?,
            chain_id: given.chain_id.or(file.chain_id).unwrap_or(31_337),
            block_gas_limit: given
                .block_gas_limit
                .or(file.block_gas_limit)
                .unwrap_or(1_000_000_000),
            mempool_limit: given.mempool_limit.or(file.mempool_limit).unwrap_or(50_000),
            mempool_lifetime: seconds(
                given.mempool_lifetime.or(file.mempool_lifetime).unwrap_or(10_800.0),
                "mempool lifetime",
            )?,
            http: duet_node::server::Limits {
                max_connections: given
                    .http_max_connections
                    .or(file.http_max_connections)
                    .unwrap_or(defaults.max_connections),
                idle_timeout: seconds(
                    given
                        .http_idle_timeout
                        .or(file.http_idle_timeout)
                        .unwrap_or(defaults.idle_timeout.as_secs_f64()),
                    "HTTP idle timeout",
                )?,
            },
            state_history: match given.state_history.or(file.state_history) {
                Some(0) => u64::MAX,
                blocks => blocks.unwrap_or(duet_node::store::STATE_HISTORY_BLOCKS),
            },
        };
        if settings.mempool_limit == 0 {
            return Err("the mempool limit must be at least 1".to_owned());
        }
        settings.http.check()?;
        Ok(settings)
    }
}

/// Where the fees go.
const FEE_VAULT: Address =
    Address::new([0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11]);

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        // Logs go to stderr, so that what a command prints (the node's start-up message, `duet
        // move`'s and `duet bench rpc --json`'s output) stays alone on stdout.
        .with_writer(std::io::stderr)
        // Colours only on a terminal, not in a redirected log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node(args) => run(&args),
        Command::Move(command) => move_cli::run(command),
        Command::Bench(BenchCommand::Rpc(args)) => bench_rpc(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("duet: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &NodeArgs) -> Result<(), String> {
    if !args.dev {
        return Err("only a development chain exists yet: run `duet node --dev`".to_owned());
    }
    let settings = args.settings()?;
    let datadir = settings.datadir.clone();
    std::fs::create_dir_all(&datadir)
        .map_err(|error| format!("cannot create {}: {error}", datadir.display()))?;
    let store =
        Store::open_for_chain(&datadir.join("db"), settings.state_history, settings.chain_id)
            .map_err(|error| error.to_string())?;
    let config = ChainConfig {
        chain_id: settings.chain_id,
        block_gas_limit: settings.block_gas_limit,
        base_fee: 1_000_000_000,
        fee_vault: FEE_VAULT,
        mempool_limit: settings.mempool_limit,
        mempool_lifetime: settings.mempool_lifetime,
        max_block_transactions: 100_000,
    };
    let chain =
        Arc::new(Chain::open(config, store, &dev_genesis()).map_err(|error| error.to_string())?);
    let restored = chain.restore_pending().map_err(|error| error.to_string())?;
    if restored > 0 {
        tracing::info!(restored, "accepted transactions put back into the mempool");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(serve(chain, &settings, &datadir))
}

/// `value` seconds, which must be a number above zero, as a duration.
fn seconds(value: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("the {what} must be a number of seconds above zero"))
}

/// `$XDG_DATA_HOME/duet/dev`, or `~/.local/share/duet/dev` (the XDG default); never a path
/// relative to wherever the node happens to start.
fn default_datadir() -> Result<PathBuf, String> {
    let absolute =
        |name| std::env::var_os(name).map(PathBuf::from).filter(|path| path.is_absolute());
    if let Some(data) = absolute("XDG_DATA_HOME") {
        return Ok(data.join("duet/dev"));
    }
    absolute("HOME").map(|home| home.join(".local/share/duet/dev")).ok_or_else(|| {
        "no --datadir given, and no HOME (nor XDG_DATA_HOME) to keep one under: say where the \
         database lives with --datadir, DUET_DATADIR or the settings file"
            .to_owned()
    })
}

async fn serve(
    chain: Arc<Chain>,
    args: &NodeSettings,
    datadir: &std::path::Path,
) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, args.http_port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    print_banner(&chain, address, datadir, args.block_time.as_secs_f64());
    let producer = Producer::start(Arc::clone(&chain), args.block_time)?;
    // A dev chain's accounts are unlocked, as on anvil.
    let unlocked = duet_node::genesis::dev_signers();
    let router = duet_node::rpc::router(chain, unlocked, args.http.idle_timeout);
    duet_node::server::serve(listener, router, args.http, stopped()).await;
    // The block in progress, if any, is committed first.
    tokio::task::block_in_place(|| producer.stop());
    tracing::info!("stopped");
    Ok(())
}

/// The block producer: a thread of its own that builds a block every block time, so that no flood
/// of requests holding the runtime's threads can hold a block back.
struct Producer {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// How late the producer may wake before the next block's time moves with it (as tokio's
/// intervals allow).
const LATE: Duration = Duration::from_millis(5);

impl Producer {
    fn start(chain: Arc<Chain>, period: Duration) -> Result<Self, String> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("duet-producer".to_owned())
            .spawn(move || {
                let mut next = std::time::Instant::now() + period;
                loop {
                    let wait = next.saturating_duration_since(std::time::Instant::now());
                    if !matches!(
                        stopped.recv_timeout(wait),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    ) {
                        return;
                    }
                    let started = std::time::Instant::now();
                    // A block that takes longer than the block time delays the next one; a wake-up
                    // a little late does not move the schedule.
                    next = if started.saturating_duration_since(next) > LATE {
                        started + period
                    } else {
                        next + period
                    };
                    if chain.ahead_of_the_clock() && !chain.has_executable() {
                        // A failed write asked for by `evm_mine` stops the node at the next tick
                        // (a block produced here says so itself).
                        if let Some(failure) = chain.write_failure() {
                            stop_after_failed_write(&failure);
                        }
                        continue;
                    }
                    let produced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        chain.produce_block()
                    }));
                    match produced {
                        Ok(Ok(block)) if !block.transactions.is_empty() => tracing::info!(
                            number = block.number,
                            transactions = block.transactions.len(),
                            gas_used = block.gas_used,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            hash = %block.hash,
                            "block committed"
                        ),
                        Ok(Ok(_)) => {}
                        // The database's state is not known: stop, and let a restart read it.
                        Ok(Err(error @ ProduceError::WriteFailed(_))) => {
                            stop_after_failed_write(&error.to_string());
                        }
                        Ok(Err(error)) => tracing::error!(%error, "block production failed"),
                        Err(payload) => tracing::error!(
                            message = %duet_block_stm::panic_message(payload.as_ref()),
                            "block production panicked"
                        ),
                    }
                }
            })
            .map_err(|error| format!("cannot start the block producer: {error}"))?;
        Ok(Self { stop, thread })
    }

    /// Stops producing, after the block in progress.
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Ends the process after a block's write failed: what the database holds is not known, and a
/// restart reads it back ([`ProduceError::WriteFailed`]).
fn stop_after_failed_write(failure: &str) -> ! {
    tracing::error!(error = %failure, "a block's write failed: the node stops");
    std::process::exit(1);
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stopping");
}

fn print_banner(chain: &Chain, address: SocketAddr, datadir: &std::path::Path, block_time: f64) {
    let head = chain.head();
    println!("Duet dev node {}", duet_node::rpc::CLIENT_VERSION);
    println!();
    println!("Available accounts (each {} ETH)", DEV_BALANCE / 10u128.pow(18));
    println!("==================");
    for (index, (account, _)) in dev_accounts().iter().enumerate() {
        println!("({index}) {account}");
    }
    println!();
    println!("Private keys");
    println!("==================");
    for (index, (_, key)) in dev_accounts().iter().enumerate() {
        println!("({index}) {key}");
    }
    println!();
    println!("Chain id:       {}", chain.config().chain_id);
    println!("Block time:     {block_time} s");
    println!("Head block:     {} ({})", head.number, head.hash);
    println!("Data directory: {}", datadir.display());
    println!("Fee vault:      {}", chain.config().fee_vault);
    let readable = chain.store().readable_blocks(head.number);
    println!(
        "State kept:     {} (now {} to {})",
        kept_state(chain.store().history_blocks()),
        readable.start(),
        readable.end()
    );
    println!();
    println!("Listening on http://{address} and ws://{address}");
}

/// The state-history setting in words.
fn kept_state(blocks: u64) -> String {
    match blocks {
        u64::MAX => "every block's (archive)".to_owned(),
        1 => "the last block's".to_owned(),
        blocks => format!("the last {blocks} blocks'"),
    }
}

/// A node process started for a benchmark; killed when dropped.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bench_rpc(args: &RpcBenchArgs) -> Result<(), String> {
    let targets: &[&str] = match args.target.as_str() {
        "both" => &["duet", "anvil"],
        "duet" => &["duet"],
        "anvil" => &["anvil"],
        other => return Err(format!("--target {other}: expected duet, anvil or both")),
    };
    if args.senders == 0 || args.txs == 0 || args.clients == 0 {
        return Err("--senders, --txs and --clients must be at least 1".to_owned());
    }
    let load = duet_node::load::Load {
        senders: args.senders,
        transactions: args.txs,
        clients: args.clients,
        batch: args.batch,
    };
    if !args.json {
        println!(
            "ERC-20 transfers over JSON-RPC: {} senders, {} transactions, {} clients, {} s blocks of at most {} gas",
            args.senders, args.txs, args.clients, args.block_time, args.block_gas_limit
        );
        println!("{:>8} {:>12} {:>10} {:>10}", "target", "tx/s", "p50 ms", "p99 ms");
    }
    let mut results = Vec::new();
    if let Some(url) = &args.url {
        report(args, &args.target, &duet_node::load::run(url, load)?);
        return Ok(());
    }
    for target in targets {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| error.to_string())?
            .port();
        // Declared before the node, so dropped after it: removed once the node has stopped,
        // whichever way this loop is left.
        let datadir = tempfile::Builder::new()
            .prefix("duet-bench-rpc-")
            .tempdir()
            .map_err(|error| error.to_string())?;
        let _node = start_target(target, args, port, datadir.path())?;
        let url = format!("http://127.0.0.1:{port}");
        let client = duet_node::client::RpcClient::new(&url)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while client.request("eth_chainId", &serde_json::json!([])).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!("{target} did not start"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let measured = duet_node::load::run(&url, load)?;
        report(args, target, &measured);
        results.push((*target, measured.tps));
    }
    if let [("duet", duet), ("anvil", anvil)] = results.as_slice() {
        if args.json {
            let ratio = duet_bench_ratio(*duet, *anvil);
            println!("{}", serde_json::json!({ "target": "duet/anvil", "tps_ratio": ratio }));
        } else {
            println!("duet / anvil: {:.2}", duet / anvil);
        }
    }
    Ok(())
}

/// `duet / anvil`, to three decimals.
fn duet_bench_ratio(duet: f64, anvil: f64) -> f64 {
    (duet / anvil * 1000.0).round() / 1000.0
}

/// Prints what one target measured: a table row, or a JSON object with `--json`.
fn report(args: &RpcBenchArgs, target: &str, measured: &duet_node::load::Measured) {
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "target": target, "senders": args.senders, "txs": args.txs, "clients": args.clients,
                "batch": args.batch, "block_time": args.block_time,
                "block_gas_limit": args.block_gas_limit, "tps": measured.tps.round(),
                "committed": measured.committed,
                "p50_ms": measured.p50.as_millis(), "p99_ms": measured.p99.as_millis(),
            })
        );
    } else {
        println!(
            "{target:>8} {:>12.0} {:>10} {:>10}",
            measured.tps,
            measured.p50.as_millis(),
            measured.p99.as_millis()
        );
    }
}

/// Starts `target` (duet or anvil) on `port` for a benchmark.
fn start_target(
    target: &str,
    args: &RpcBenchArgs,
    port: u16,
    datadir: &std::path::Path,
) -> Result<Started, String> {
    let block_time = args.block_time.to_string();
    let mut command = if target == "duet" {
        let mut command =
            std::process::Command::new(std::env::current_exe().map_err(|error| error.to_string())?);
        command.args([
            "node",
            "--dev",
            "--block-time",
            &block_time,
            "--http-port",
            &port.to_string(),
        ]);
        command.arg("--datadir").arg(datadir);
        // As scripts/devnet runs it: the allocator keeps the memory it frees.
        command.env("MIMALLOC_PURGE_DELAY", "-1");
        command.args(["--block-gas-limit", &args.block_gas_limit.to_string()]);
        command
    } else {
        let anvil = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        let mut command = std::process::Command::new(anvil);
        command.args([
            "--block-time",
            &block_time,
            "--port",
            &port.to_string(),
            "--chain-id",
            "31337",
            "--silent",
        ]);
        command.args(["--gas-limit", &args.block_gas_limit.to_string()]);
        command
    };
    Ok(Started(
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start {target}: {error}"))?,
    ))
}
