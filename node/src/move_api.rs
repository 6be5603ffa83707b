//! The Move API: REST and JSON under `/move/v1`, for Move developers and their tools.
//!
//! - `GET /move/v1/accounts/{address}/resources`: every resource, as its type and BCS data.
//! - `GET /move/v1/accounts/{address}/resource/{type}`: one resource (`0x…::module::Struct`).
//! - `GET /move/v1/accounts/{address}/modules`: every module's name and bytecode.
//! - `GET /move/v1/accounts/{address}/module/{name}`: one module's bytecode and ABI (its
//!   functions with visibility, entry, type parameters, parameters and returns; its structs with
//!   abilities and fields).
//! - `POST /move/v1/view` `{function, type_arguments, arguments}`: a public function's BCS
//!   return values, without a transaction (arguments BCS-encoded, in hex).
//! - `POST /move/v1/transactions` `{transaction}`: submits a signed transaction (hex), as
//!   `eth_sendRawTransaction` does.
//! - `GET /move/v1/transactions/{hash}`: an included transaction with its Move status and
//!   events.
//!
//! Errors are `{"error": "…"}` with status 400 (a bad request) or 404 (nothing there).

use std::sync::Arc;

use alloy_primitives::{Address, Bytes, B256};
use alloy_sol_types::{SolCall, SolError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use duet_evm::IMove;
use duet_types::{StateKey, StateValue, MOVE_CALL_ADDRESS};
use move_binary_format::access::ModuleAccess;
use move_binary_format::file_format::{SignatureToken, StructFieldInformation, Visibility};
use move_binary_format::CompiledModule;
use move_core_types::language_storage::StructTag;
use revm::context::TxEnv;
use revm::primitives::TxKind;
use serde_json::{json, Value};

use crate::chain::{CallError, Chain, SubmitError};
use crate::mempool::MempoolError;

type Answer = (StatusCode, Json<Value>);

/// The Move API's routes.
pub fn router(chain: Arc<Chain>) -> Router {
    Router::new()
        .route("/move/v1/accounts/{address}/resources", get(resources))
        .route("/move/v1/accounts/{address}/resource/{tag}", get(resource))
        .route("/move/v1/accounts/{address}/modules", get(modules))
        .route("/move/v1/accounts/{address}/module/{name}", get(module))
        .route("/move/v1/view", post(view))
        .route("/move/v1/transactions", post(submit))
        .route("/move/v1/transactions/{hash}", get(transaction))
        .with_state(chain)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Answer {
    (status, Json(json!({ "error": message.to_string() })))
}

fn ok(value: Value) -> Answer {
    (StatusCode::OK, Json(value))
}

fn address(text: &str) -> Result<Address, Answer> {
    text.parse()
        .map_err(|_| error(StatusCode::BAD_REQUEST, format!("{text}: not a 20-byte address")))
}

/// The encoded-key prefix of `address`'s entries of one kind (4: modules, 5: resources).
fn prefix(tag: u8, address: Address) -> Vec<u8> {
    let mut prefix = vec![tag];
    prefix.extend_from_slice(address.as_slice());
    prefix
}

/// Runs a blocking chain query off the async runtime.
async fn blocking(work: impl FnOnce() -> Answer + Send + 'static) -> Answer {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

async fn resources(State(chain): State<Arc<Chain>>, Path(owner): Path<String>) -> Answer {
    blocking(move || {
        let owner = match address(&owner) {
            Ok(owner) => owner,
            Err(answer) => return answer,
        };
        let entries = match chain.store().state_with_prefix(&prefix(5, owner)) {
            Ok(entries) => entries,
            Err(failure) => return error(StatusCode::INTERNAL_SERVER_ERROR, failure),
        };
        // The key: tag, address, 4-byte length, the struct tag's BCS.
        let list: Vec<Value> = entries
            .into_iter()
            .filter_map(|(key, value)| {
                let tag: StructTag = bcs::from_bytes(key.get(25..)?).ok()?;
                let StateValue::Bytes(data) = value else { return None };
                Some(json!({ "type": tag.to_string(), "data": data }))
            })
            .collect();
        ok(json!(list))
    })
    .await
}

async fn resource(
    State(chain): State<Arc<Chain>>,
    Path((owner, tag)): Path<(String, String)>,
) -> Answer {
    blocking(move || {
        let owner = match address(&owner) {
            Ok(owner) => owner,
            Err(answer) => return answer,
        };
        let Ok(parsed) = move_core_types::parser::parse_struct_tag(&tag) else {
            return error(StatusCode::BAD_REQUEST, format!("{tag}: not a struct type"));
        };
        match chain.store().get(&duet_move::resolver::resource_key(owner, &parsed)) {
            Ok(Some(StateValue::Bytes(data))) => {
                ok(json!({ "type": parsed.to_string(), "data": data }))
            }
            Ok(_) => error(StatusCode::NOT_FOUND, format!("{owner} holds no {tag}")),
            Err(failure) => error(StatusCode::INTERNAL_SERVER_ERROR, failure),
        }
    })
    .await
}

async fn modules(State(chain): State<Arc<Chain>>, Path(owner): Path<String>) -> Answer {
    blocking(move || {
        let owner = match address(&owner) {
            Ok(owner) => owner,
            Err(answer) => return answer,
        };
        let entries = match chain.store().state_with_prefix(&prefix(4, owner)) {
            Ok(entries) => entries,
            Err(failure) => return error(StatusCode::INTERNAL_SERVER_ERROR, failure),
        };
        let list: Vec<Value> = entries
            .into_iter()
            .filter_map(|(key, value)| {
                let name = String::from_utf8(key.get(25..)?.to_vec()).ok()?;
                let StateValue::Bytes(bytecode) = value else { return None };
                Some(json!({ "name": name, "bytecode": bytecode }))
            })
            .collect();
        ok(json!(list))
    })
    .await
}

async fn module(
    State(chain): State<Arc<Chain>>,
    Path((owner, name)): Path<(String, String)>,
) -> Answer {
    blocking(move || {
        let owner = match address(&owner) {
            Ok(owner) => owner,
            Err(answer) => return answer,
        };
        let key = StateKey::MoveModule { address: owner, name: name.clone().into() };
        let bytecode = match chain.store().get(&key) {
            Ok(Some(StateValue::Bytes(bytecode))) => bytecode,
            Ok(_) => return error(StatusCode::NOT_FOUND, format!("{owner} has no module {name}")),
            Err(failure) => return error(StatusCode::INTERNAL_SERVER_ERROR, failure),
        };
        match CompiledModule::deserialize(&bytecode) {
            Ok(compiled) => {
                ok(json!({ "name": name, "bytecode": bytecode, "abi": abi(&compiled) }))
            }
            Err(failure) => {
                error(StatusCode::INTERNAL_SERVER_ERROR, format!("stored bytecode: {failure}"))
            }
        }
    })
    .await
}

/// A module's functions and structs.
fn abi(module: &CompiledModule) -> Value {
    let functions: Vec<Value> = module
        .function_defs()
        .iter()
        .map(|definition| {
            let handle = module.function_handle_at(definition.function);
            let types = |index| {
                module
                    .signature_at(index)
                    .0
                    .iter()
                    .map(|token| type_name(module, token))
                    .collect::<Vec<_>>()
            };
            json!({
                "name": module.identifier_at(handle.name).as_str(),
                "visibility": match definition.visibility {
                    Visibility::Public => "public",
                    Visibility::Friend => "friend",
                    Visibility::Private => "private",
                },
                "is_entry": definition.is_entry,
                "is_native": definition.code.is_none(),
                "type_parameters": handle.type_parameters.len(),
                "parameters": types(handle.parameters),
                "returns": types(handle.return_),
            })
        })
        .collect();
    let structs: Vec<Value> = module
        .struct_defs()
        .iter()
        .map(|definition| {
            let handle = module.struct_handle_at(definition.struct_handle);
            let fields: Vec<Value> = match &definition.field_information {
                StructFieldInformation::Native => Vec::new(),
                StructFieldInformation::Declared(fields) => fields
                    .iter()
                    .map(|field| {
                        json!({
                            "name": module.identifier_at(field.name).as_str(),
                            "type": type_name(module, &field.signature.0),
                        })
                    })
                    .collect(),
            };
            json!({
                "name": module.identifier_at(handle.name).as_str(),
                "abilities": format!("{:?}", handle.abilities),
                "fields": fields,
            })
        })
        .collect();
    json!({ "functions": functions, "structs": structs })
}

/// A signature token in Move syntax.
fn type_name(module: &CompiledModule, token: &SignatureToken) -> String {
    let struct_name = |index| {
        let handle = module.struct_handle_at(index);
        let owner = module.module_handle_at(handle.module);
        format!(
            "{}::{}::{}",
            duet_move::to_address(*module.address_identifier_at(owner.address)),
            module.identifier_at(owner.name),
            module.identifier_at(handle.name)
        )
    };
    match token {
        SignatureToken::Bool => "bool".to_owned(),
        SignatureToken::U8 => "u8".to_owned(),
        SignatureToken::U64 => "u64".to_owned(),
        SignatureToken::U128 => "u128".to_owned(),
        SignatureToken::Address => "address".to_owned(),
        SignatureToken::Signer => "signer".to_owned(),
        SignatureToken::Vector(inner) => format!("vector<{}>", type_name(module, inner)),
        SignatureToken::Struct(index) => struct_name(*index),
        SignatureToken::StructInstantiation(index, arguments) => format!(
            "{}<{}>",
            struct_name(*index),
            arguments
                .iter()
                .map(|argument| type_name(module, argument))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        SignatureToken::Reference(inner) => format!("&{}", type_name(module, inner)),
        SignatureToken::MutableReference(inner) => format!("&mut {}", type_name(module, inner)),
        SignatureToken::TypeParameter(index) => format!("T{index}"),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

async fn view(State(chain): State<Arc<Chain>>, Json(request): Json<Value>) -> Answer {
    blocking(move || {
        let Some(function) = request.get("function").and_then(Value::as_str) else {
            return error(StatusCode::BAD_REQUEST, "missing function (0x…::module::function)");
        };
        let mut parts = function.split("::");
        let (Some(owner), Some(module), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{function}: expected 0x…::module::function"),
            );
        };
        let owner = match address(owner) {
            Ok(owner) => owner,
            Err(answer) => return answer,
        };
        let strings = |field: &str| -> Result<Vec<String>, Answer> {
            match request.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(value) => serde_json::from_value(value.clone()).map_err(|_| {
                    error(StatusCode::BAD_REQUEST, format!("{field}: expected a list of strings"))
                }),
            }
        };
        let type_arguments = match strings("type_arguments") {
            Ok(list) => list,
            Err(answer) => return answer,
        };
        let arguments = match strings("arguments") {
            Ok(list) => list,
            Err(answer) => return answer,
        };
        let arguments: Result<Vec<Bytes>, _> =
            arguments.iter().map(|hex| hex.parse::<Bytes>()).collect();
        let Ok(arguments) = arguments else {
            return error(StatusCode::BAD_REQUEST, "arguments: each must be BCS bytes in hex");
        };
        let data = IMove::callCall {
            moduleAddress: owner,
            moduleName: module.to_owned(),
            functionName: name.to_owned(),
            typeArguments: type_arguments,
            arguments,
        }
        .abi_encode();
        let tx =
            TxEnv { kind: TxKind::Call(MOVE_CALL_ADDRESS), data: data.into(), ..TxEnv::default() };
        match chain.call(tx) {
            Ok((output, _)) => match IMove::callCall::abi_decode_returns(&output) {
                Ok(values) => ok(json!({ "values": values })),
                Err(failure) => error(StatusCode::INTERNAL_SERVER_ERROR, failure),
            },
            Err(CallError::Reverted(data)) => {
                let reason = IMove::MoveAborted::abi_decode(&data)
                    .map(|aborted| {
                        format!("aborted in {} with code {}", aborted.location, aborted.code)
                    })
                    .or_else(|_| {
                        IMove::MoveFailed::abi_decode(&data)
                            .map(|failed| format!("{}: {}", failed.status, failed.message))
                    })
                    .unwrap_or_else(|_| format!("reverted: {data}"));
                error(StatusCode::BAD_REQUEST, reason)
            }
            Err(failure) => error(StatusCode::BAD_REQUEST, failure),
        }
    })
    .await
}

async fn submit(State(chain): State<Arc<Chain>>, Json(request): Json<Value>) -> Answer {
    blocking(move || {
        let Some(raw) = request
            .get("transaction")
            .and_then(Value::as_str)
            .and_then(|hex| hex.parse::<Bytes>().ok())
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "transaction: expected a signed transaction in hex",
            );
        };
        match chain.submit(&raw) {
            Ok(hash) => ok(json!({ "hash": hash })),
            Err(failure @ SubmitError::Store(_)) => {
                error(StatusCode::INTERNAL_SERVER_ERROR, failure)
            }
            // Nothing wrong with the transaction: worth sending again later.
            Err(failure @ SubmitError::Mempool(MempoolError::Full | MempoolError::SenderFull)) => {
                error(StatusCode::SERVICE_UNAVAILABLE, failure)
            }
            Err(failure) => error(StatusCode::BAD_REQUEST, failure),
        }
    })
    .await
}

async fn transaction(State(chain): State<Arc<Chain>>, Path(hash): Path<String>) -> Answer {
    blocking(move || {
        let Ok(hash) = hash.parse::<B256>() else {
            return error(StatusCode::BAD_REQUEST, format!("{hash}: not a 32-byte hash"));
        };
        match chain.store().transaction(hash) {
            Ok(Some(record)) => ok(json!({
                "hash": record.hash,
                "block_number": record.block_number,
                "sender": record.from,
                "kind": record.kind,
                "success": record.success,
                "status": record.move_status,
                "gas_used": record.gas_used,
                "events": record.move_events.iter().map(|(tag, data)| json!({ "type": tag, "data": data })).collect::<Vec<_>>(),
            })),
            Ok(None) if chain.pending(&hash).is_some() => error(StatusCode::NOT_FOUND, "pending: not in a block yet"),
            Ok(None) => error(StatusCode::NOT_FOUND, "no such transaction"),
            Err(failure) => error(StatusCode::INTERNAL_SERVER_ERROR, failure),
        }
    })
    .await
}
