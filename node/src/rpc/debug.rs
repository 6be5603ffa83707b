//! geth's `debug_traceTransaction`, `debug_traceBlockByNumber`, `debug_traceBlockByHash` and
//! `debug_traceCall` with the `callTracer` (what block explorers ask for a transaction's
//! internal calls): the tree of a transaction's frames, with each frame's caller, callee, value,
//! gas, input, output and error, and with `withLog` its logs (see [`duet_evm::trace`]). The
//! default opcode logger and the other tracers are refused. A Move transaction's trace is its
//! call of the Move entry address, with the calls its Move code made into the EVM under it; it
//! is replayed as an EVM transaction is. A replay of a block gives up after
//! `timeout` (5 s unless asked, at most [`MAX_TRACE_TIME`]), checked between chunks of its
//! transactions.

use std::time::Duration;

use duet_evm::trace::{CallFrame, CallTraceConfig};
use serde_json::{json, Value};

use super::{
    call_error, call_overrides, call_request, hex, in_call_turn, parse, state_block, RpcError,
};
use crate::chain::{Chain, StateBlock, TraceError};
use crate::turns::Turn;

/// How long a replay runs unless the request says (geth's default tracer timeout), and the
/// longest it may ask for.
const TRACE_TIME: Duration = Duration::from_secs(5);
pub(super) const MAX_TRACE_TIME: Duration = Duration::from_secs(10);

/// `debug_traceTransaction`: `params[0]` the transaction's hash, `params[1]` the tracer.
pub(super) fn trace_transaction(
    chain: &Chain,
    params: &[Value],
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    let hash = parse(params, 0, "transaction hash")?;
    let (config, time) = tracer_config(params.get(1), false)?;
    let frame = in_call_turn(call_turn, |turn| {
        chain.trace_transaction(turn, hash, config, time).map_err(trace_error)
    })?;
    Ok(frame_json(&frame))
}

/// `debug_traceBlockByNumber` (`params[0]` a number or tag) and `debug_traceBlockByHash`
/// (`params[0]` a hash): each transaction's `{"txHash", "result"}`, or `{"txHash", "error"}`
/// for one whose trace is too large; `params[1]` the tracer.
pub(super) fn trace_block(
    chain: &Chain,
    head: &crate::block::Block,
    method: &str,
    params: &[Value],
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    let number = if method == "debug_traceBlockByHash" {
        let hash = parse(params, 0, "block hash")?;
        chain.committed_block_number(hash).map_err(RpcError::server)?
    } else {
        super::block_number(head, params.first())?
    };
    let number = number.ok_or_else(|| RpcError::server("block not found"))?;
    let (config, time) = tracer_config(params.get(1), false)?;
    let traces = in_call_turn(call_turn, |turn| {
        chain.trace_block(turn, number, config, time).map_err(trace_error)
    })?;
    let traces = traces.into_iter().map(|(hash, trace)| match trace {
        Some(Ok(frame)) => json!({ "txHash": hash, "result": frame_json(&frame) }),
        Some(Err(failure)) => json!({ "txHash": hash, "error": failure.to_string() }),
        None => json!({ "txHash": hash, "error": "not traced" }),
    });
    Ok(Value::Array(traces.collect()))
}

fn trace_error(error: TraceError) -> RpcError {
    match error {
        TraceError::Busy => RpcError::limit_exceeded(&error.to_string()),
        TraceError::Replay(_)
        | TraceError::Store(_)
        | TraceError::Trace(duet_evm::trace::TraceFailure::NoFrame) => RpcError::internal(error),
        other => RpcError::server(other),
    }
}

/// `debug_traceCall`: `params[0]` the call object, `params[1]` the block (latest unless named),
/// `params[2]` the tracer, with geth's `stateOverrides` and `blockOverrides`, taken as
/// `eth_call` takes them (its `timeout` means nothing here: the call runs as `eth_call` runs,
/// bounded by its gas).
pub(super) fn trace_call(
    chain: &Chain,
    params: &[Value],
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    let tx = call_request(chain, params.first())?;
    let block = state_block(params.get(1), StateBlock::Latest)?;
    let options = params.get(2);
    let (config, _) = tracer_config(options, true)?;
    let field = |name| options.and_then(|options| options.get(name));
    let overrides = call_overrides(field("stateOverrides"), field("blockOverrides"))?;
    let frame = in_call_turn(call_turn, |turn| {
        chain.trace_call(turn, tx, block, &overrides, config).map_err(call_error)
    })?;
    Ok(frame_json(&frame))
}

/// The trace options geth takes besides overrides (see [`tracer_config`]).
const KNOWN_OPTIONS: [&str; 10] = [
    "tracer",
    "tracerConfig",
    "timeout",
    "reexec",
    "disableStack",
    "disableStorage",
    "enableMemory",
    "enableReturnData",
    "debug",
    "limit",
];

/// The `callTracer` options of a trace request: `{"tracer": "callTracer", "tracerConfig":
/// {"onlyTopCall": …, "withLog": …}, "timeout": "5s"}`, and for a call's trace (`call`)
/// `stateOverrides` and `blockOverrides`. As geth with a named tracer, the opcode logger's
/// options (`disableStack`, `disableStorage`, `enableMemory`, `enableReturnData`, `debug`,
/// `limit`) and `reexec` (for state geth has to rebuild) are taken and mean nothing here.
/// Anything else is refused rather than ignored.
fn tracer_config(
    options: Option<&Value>,
    call: bool,
) -> Result<(CallTraceConfig, Duration), RpcError> {
    let refused = |what: &str| {
        RpcError::invalid_params(format!(
            "{what}: this node traces with geth's callTracer only, \
             {{\"tracer\": \"callTracer\", \"tracerConfig\": {{\"onlyTopCall\": false, \
             \"withLog\": false}}}}"
        ))
    };
    let Some(Value::Object(options)) = options.filter(|options| !options.is_null()) else {
        return Err(refused("no tracer named (the opcode logger)"));
    };
    for (name, _) in options {
        let overrides = ["stateOverrides", "blockOverrides"].contains(&name.as_str());
        if overrides && !call {
            let message = format!("{name}: only a call's trace (debug_traceCall) takes overrides");
            return Err(RpcError::invalid_params(message));
        }
        if !overrides && !KNOWN_OPTIONS.contains(&name.as_str()) {
            return Err(refused(&format!("option {name}")));
        }
    }
    match options.get("tracer").and_then(Value::as_str) {
        Some("callTracer") => {}
        Some(other) => return Err(refused(&format!("tracer {other}"))),
        None => return Err(refused("no tracer named (the opcode logger)")),
    }
    let mut config = CallTraceConfig::default();
    match options.get("tracerConfig") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (name, value) in fields {
                let flag = value.as_bool().ok_or_else(|| refused(&format!("{name}: {value}")))?;
                match name.as_str() {
                    "onlyTopCall" => config.only_top_call = flag,
                    "withLog" => config.with_logs = flag,
                    other => return Err(refused(&format!("tracerConfig field {other}"))),
                }
            }
        }
        Some(other) => return Err(refused(&format!("tracerConfig {other}"))),
    }
    // Longer than the node allows runs as long as it allows (indexers often ask for 30 s).
    let invalid = |value: &Value| {
        RpcError::invalid_params(format!(
            "invalid timeout {value}: a Go duration such as \"5s\", \"1.5s\" or \"500ms\""
        ))
    };
    let time = match options.get("timeout") {
        None | Some(Value::Null) => TRACE_TIME,
        Some(value) => value.as_str().and_then(duration).ok_or_else(|| invalid(value))?,
    };
    Ok((config, time.min(MAX_TRACE_TIME)))
}

/// A Go duration: a sequence of decimal numbers, each with a unit (`h`, `m`, `s`, `ms`, `us` or
/// `µs`, `ns`), such as `1m30s`, `1.5s` or `500ms`; or `0`.
pub(super) fn duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let amount: f64 = rest[..number].parse().ok()?;
        rest = &rest[number..];
        let unit = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(amount * seconds_per).ok()?)?;
        rest = &rest[unit..];
    }
    (!text.is_empty()).then_some(total)
}

/// A frame as geth's `callTracer` prints it.
fn frame_json(frame: &CallFrame) -> Value {
    let mut json = json!({
        "type": frame.kind.name(),
        "from": frame.from,
        "gas": hex(frame.gas),
        "gasUsed": hex(frame.gas_used),
        "input": frame.input,
    });
    if let Some(to) = frame.to {
        json["to"] = json!(to);
    }
    if let Some(value) = frame.value {
        json["value"] = json!(value);
    }
    if !frame.output.is_empty() {
        json["output"] = json!(frame.output);
    }
    if let Some(error) = &frame.error {
        json["error"] = json!(error);
    }
    if let Some(reason) = &frame.revert_reason {
        json["revertReason"] = json!(reason);
    }
    if !frame.logs.is_empty() {
        let logs = frame.logs.iter().map(|log| {
            json!({
                "address": log.log.address,
                "topics": log.log.data.topics(),
                "data": log.log.data.data,
                "position": hex(log.position as u64),
            })
        });
        json["logs"] = Value::Array(logs.collect());
    }
    if !frame.calls.is_empty() {
        json["calls"] = Value::Array(frame.calls.iter().map(frame_json).collect());
    }
    json
}
