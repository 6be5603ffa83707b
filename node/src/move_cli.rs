//! `duet move`: build, publish, run and view Move code on a node.

use std::time::Duration;

use alloy_primitives::Bytes;
use duet_node::client::RpcClient;
use duet_types::{EntryFunction, MovePayload, MOVE_CALL_ADDRESS, MOVE_ENTRY_ADDRESS};
use serde_json::{json, Value};

/// `duet move` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum MoveCommand {
    /// Compiles Move source files into a module bundle and lists its modules.
    Build(BuildArgs),
    /// Compiles Move source files and publishes the bundle from the key's account.
    Publish(PublishArgs),
    /// Calls an entry function in a transaction.
    Run(RunArgs),
    /// Calls a public function without a transaction and prints its BCS return values.
    View(ViewArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct BuildArgs {
    /// Named addresses, `name=0x…` (repeatable).
    #[arg(long = "named-address", value_name = "NAME=ADDRESS")]
    named: Vec<String>,
    /// The Move source files of the package.
    #[arg(required = true)]
    files: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Account {
    /// The account's private key (hex).
    // Its value stays out of `--help`, which shows an environment variable's value otherwise.
    #[arg(long, env = "DUET_PRIVATE_KEY", hide_env_values = true)]
    private_key: String,
    /// The node's JSON-RPC URL.
    #[arg(long, env = "DUET_RPC_URL", default_value = "http://127.0.0.1:8545")]
    rpc_url: String,
    /// The transaction's gas limit.
    #[arg(long, default_value_t = 3_000_000)]
    gas_limit: u64,
    /// Print the signed transaction (hex) instead of sending it: for `POST
    /// /move/v1/transactions` or `eth_sendRawTransaction` later (the node still gives the nonce
    /// and fees).
    #[arg(long)]
    sign_only: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    build: BuildArgs,
    #[command(flatten)]
    account: Account,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Call {
    /// The function, `0xADDRESS::module::function`.
    function: String,
    /// Type arguments in Move syntax (`u64`, `0x1::string::String`; repeatable).
    #[arg(long = "type-arg")]
    type_args: Vec<String>,
    /// Arguments as `type:value`: `u8`, `u64`, `u128`, `bool`, `address`, `string` (a
    /// `0x1::string::String`, or a `vector<u8>` of its UTF-8), `hex` (a `vector<u8>` in hex),
    /// `vector<T>:a,b,c` of any of these but `hex`, `bcs` (the argument's BCS bytes in hex,
    /// as they are); the signer is implied (repeatable).
    #[arg(long = "arg")]
    args: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    call: Call,
    #[command(flatten)]
    account: Account,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ViewArgs {
    #[command(flatten)]
    call: Call,
    /// The block whose state the view reads: `latest`, `pending`, `earliest` or a number (one
    /// of the last 128).
    #[arg(long, default_value = "latest")]
    block: String,
    /// The node's JSON-RPC URL.
    #[arg(long, env = "DUET_RPC_URL", default_value = "http://127.0.0.1:8545")]
    rpc_url: String,
}

/// Runs a `duet move` command.
pub(crate) fn run(command: MoveCommand) -> Result<(), String> {
    match command {
        MoveCommand::Build(args) => {
            for (name, bytes) in build(&args)? {
                println!("{name}: {} bytes", bytes.len());
            }
            Ok(())
        }
        MoveCommand::Publish(args) => {
            let modules = build(&args.build)?.into_iter().map(|(_, bytes)| bytes).collect();
            submit(&args.account, &MovePayload::ModuleBundle(modules))
        }
        MoveCommand::Run(args) => {
            submit(&args.account, &MovePayload::EntryFunction(entry_function(&args.call)?))
        }
        MoveCommand::View(args) => {
            let call = entry_function(&args.call)?;
            let client = RpcClient::new(&args.rpc_url)?;
            let input = Bytes::from(duet_evm::call_data(&call));
            let block = match args.block.parse::<u64>() {
                Ok(number) => json!(format!("{number:#x}")),
                Err(_) => json!(args.block),
            };
            let output = client.request(
                "eth_call",
                &json!([{ "to": MOVE_CALL_ADDRESS, "input": input }, block]),
            )?;
            let output: Bytes =
                serde_json::from_value(output).map_err(|error| error.to_string())?;
            for value in duet_evm::return_values(&output)? {
                println!("{value}");
            }
            Ok(())
        }
    }
}

fn build(args: &BuildArgs) -> Result<Vec<(String, Vec<u8>)>, String> {
    // Addresses as everywhere else: hex, short or long, `0x` or not (the compiler alone would
    // read `10` as decimal).
    let named: Vec<(&str, String)> = args
        .named
        .iter()
        .map(|pair| {
            let (name, address) =
                pair.split_once('=').ok_or_else(|| format!("{pair}: expected NAME=ADDRESS"))?;
            let address = duet_node::move_api::parse_address(address)
                .map_err(|error| format!("named address {name}: {error}"))?;
            Ok((name, format!("{address:#x}")))
        })
        .collect::<Result<_, String>>()?;
    let named: Vec<(&str, &str)> =
        named.iter().map(|(name, address)| (*name, address.as_str())).collect();
    duet_move::compile_package(args.files.clone(), &named)
}

fn submit(account: &Account, payload: &MovePayload) -> Result<(), String> {
    let client = RpcClient::new(&account.rpc_url)?;
    let raw = client.sign(
        &account.private_key,
        MOVE_ENTRY_ADDRESS,
        payload.encode(),
        account.gas_limit,
    )?;
    if account.sign_only {
        println!("{raw}");
        return Ok(());
    }
    let hash = client.send_raw(&raw)?;
    let receipt = client.wait_for_receipt(hash, Duration::from_secs(60))?;
    let status = receipt.get("moveStatus").and_then(Value::as_str).unwrap_or("unknown");
    println!("transaction {hash}");
    let number = |name: &str| {
        receipt[name]
            .as_str()
            .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok())
            .map_or_else(|| "?".to_owned(), |number| number.to_string())
    };
    println!("block       {}", number("blockNumber"));
    println!("gas used    {}", number("gasUsed"));
    println!("status      {status}");
    if let Some(events) = receipt.get("moveEvents").and_then(Value::as_array) {
        for event in events {
            println!("event       {} {}", event["type"].as_str().unwrap_or("?"), event["data"]);
        }
    }
    if status == "success" {
        Ok(())
    } else {
        Err(format!("the transaction failed: {status}"))
    }
}

fn entry_function(call: &Call) -> Result<EntryFunction, String> {
    let (module_address, module_name, function) =
        duet_node::move_api::parse_function(&call.function)?;
    let arguments = call.args.iter().map(|arg| argument(arg)).collect::<Result<_, _>>()?;
    Ok(EntryFunction {
        module_address,
        module_name,
        function,
        type_arguments: call
            .type_args
            .iter()
            .map(|tag| duet_node::move_api::short_addresses(tag))
            .collect::<Result<_, _>>()?,
        arguments,
    })
}

/// The BCS encoding of a `type:value` argument.
fn argument(text: &str) -> Result<Vec<u8>, String> {
    let (kind, value) =
        text.split_once(':').ok_or_else(|| format!("{text}: expected type:value"))?;
    let hex = |value: &str| -> Result<Vec<u8>, String> {
        let bytes: Bytes = value.parse().map_err(|_| format!("{text}: not hex"))?;
        Ok(bytes.to_vec())
    };
    match kind {
        "hex" => bcs::to_bytes(&hex(value)?).map_err(|error| format!("{text}: {error}")),
        "bcs" => hex(value),
        _ => match kind.strip_prefix("vector<").and_then(|inner| inner.strip_suffix('>')) {
            Some(inner) => {
                let items: Vec<&str> =
                    if value.is_empty() { Vec::new() } else { value.split(',').collect() };
                // The vector's length as BCS writes it (a vector of units is that alone).
                let mut encoded = bcs::to_bytes(&vec![(); items.len()])
                    .map_err(|error| format!("{text}: {error}"))?;
                for item in items {
                    encoded
                        .extend(scalar(inner, item).map_err(|error| format!("{text}: {error}"))?);
                }
                Ok(encoded)
            }
            None => scalar(kind, value).map_err(|error| format!("{text}: {error}")),
        },
    }
}

/// The BCS encoding of one value of a scalar `kind`.
fn scalar(kind: &str, value: &str) -> Result<Vec<u8>, String> {
    let number = || format!("{value:?} is not a {kind}");
    let encoded = match kind {
        "u8" => bcs::to_bytes(&value.parse::<u8>().map_err(|_| number())?),
        "u64" => bcs::to_bytes(&value.parse::<u64>().map_err(|_| number())?),
        "u128" => bcs::to_bytes(&value.parse::<u128>().map_err(|_| number())?),
        "bool" => bcs::to_bytes(
            &value.parse::<bool>().map_err(|_| format!("{value:?} is not true or false"))?,
        ),
        // A Move address is its 20 bytes, with no length.
        "address" => return Ok(duet_node::move_api::parse_address(value)?.to_vec()),
        "string" => bcs::to_bytes(value),
        _ => {
            return Err(format!(
                "unknown type {kind}: u8, u64, u128, bool, address, string, hex, bcs or vector<…>"
            ))
        }
    };
    encoded.map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::argument;

    #[test]
    fn arguments_are_encoded_as_bcs_from_type_and_value() {
        let one: [u8; 20] = {
            let mut address = [0; 20];
            address[19] = 1;
            address
        };
        let cases: [(&str, Vec<u8>); 11] = [
            ("u8:7", vec![7]),
            ("u64:258", bcs(&258u64)),
            ("u128:340282366920938463463374607431768211455", bcs(&u128::MAX)),
            ("bool:true", vec![1]),
            ("address:0x1", one.to_vec()),
            ("string:héllo", bcs(&"héllo")),
            ("hex:0x0102", vec![2, 1, 2]),
            ("bcs:0x0102", vec![1, 2]),
            ("vector<u64>:1,2", bcs(&vec![1u64, 2])),
            ("vector<address>:0x1,0x1", [vec![2], one.to_vec(), one.to_vec()].concat()),
            ("vector<u8>:", vec![0]),
        ];
        for (text, expected) in cases {
            assert_eq!(argument(text), Ok(expected), "{text}");
        }
        for text in ["u16:1", "u32:1", "u8:256", "u64", "bool:yes", "vector<u64>:1,x", "bcs:zz"] {
            assert!(argument(text).is_err(), "{text}");
        }
    }

    fn bcs<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
        bcs::to_bytes(value).unwrap()
    }
}
