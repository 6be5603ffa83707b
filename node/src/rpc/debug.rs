//! geth's `debug_traceTransaction` and `debug_traceCall` with the `callTracer` (what block
//! explorers ask for a transaction's internal calls): the tree of a transaction's frames, with
//! each frame's caller, callee, value, gas, input, output and error, and with `withLog` its logs
//! (see [`duet_evm::trace`]). The default opcode logger and the other tracers are refused.

use duet_evm::trace::{CallFrame, CallTraceConfig};
use serde_json::{json, Value};

use super::{call_error, call_request, hex, in_call_turn, parse, state_block, RpcError};
use crate::chain::{CallOverrides, Chain, StateBlock, TraceError};
use crate::turns::Turn;

/// `debug_traceTransaction`: `params[0]` the transaction's hash, `params[1]` the tracer.
pub(super) fn trace_transaction(
    chain: &Chain,
    params: &[Value],
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    let hash = parse(params, 0, "transaction hash")?;
    let config = tracer_config(params.get(1))?;
    let frame = in_call_turn(call_turn, |turn| {
        chain.trace_transaction(turn, hash, config).map_err(|error| match error {
            TraceError::Replay(_) | TraceError::Store(_) => RpcError::internal(error),
            other => RpcError::server(other),
        })
    })?;
    Ok(frame_json(&frame))
}

/// `debug_traceCall`: `params[0]` the call object, `params[1]` the block (latest unless named),
/// `params[2]` the tracer.
pub(super) fn trace_call(
    chain: &Chain,
    params: &[Value],
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    let tx = call_request(chain, params.first())?;
    let block = state_block(params.get(1), StateBlock::Latest)?;
    let config = tracer_config(params.get(2))?;
    let no_overrides = CallOverrides::default();
    let frame = in_call_turn(call_turn, |turn| {
        chain.trace_call(turn, tx, block, &no_overrides, config).map_err(call_error)
    })?;
    Ok(frame_json(&frame))
}

/// The `callTracer` options of a trace request: `{"tracer": "callTracer", "tracerConfig":
/// {"onlyTopCall": …, "withLog": …}}`. Anything else is refused rather than ignored.
fn tracer_config(options: Option<&Value>) -> Result<CallTraceConfig, RpcError> {
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
        if !matches!(name.as_str(), "tracer" | "tracerConfig" | "timeout") {
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
    Ok(config)
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
