//! The Move API: REST and JSON under `/move/v1`, for Move developers and their tools.
//!
//! - `GET /move/v1/accounts/{address}/resources`: the resources, as their type and BCS data, a
//!   page at a time (`?limit=N&after=<type>`: at most N, 1 000 unless given, after that type;
//!   or `after_key=<key>`, each entry's `key`). A page with more after it has the header
//!   [`CURSOR_HEADER`], the `after_key` of the next page; the last page has none.
//! - `GET /move/v1/accounts/{address}/resource/{type}`: one resource (`0x…::module::Struct`).
//!   This, one module and a view take a block (`?block=N`; a view's `"block": N`): the state
//!   after that block, one of the last 128 (see [`crate::store`]); the latest by default.
//! - `GET /move/v1/accounts/{address}/modules`: the modules' names and bytecode, a page at a
//!   time (`?limit=N&after=<name>`, or `after_key`).
//! - `GET /move/v1/accounts/{address}/module/{name}`: one module's bytecode and ABI (its
//!   address, name and friends; its functions with visibility, entry, type parameters and their
//!   constraints, parameters and returns; its structs with abilities, type parameters (their
//!   constraints, phantom or not) and fields).
//! - `POST /move/v1/view` `{function, type_arguments, arguments, block}`: a public function's
//!   BCS return values, without a transaction (arguments BCS-encoded, in hex; `block`
//!   optional).
//! - `POST /move/v1/transactions` `{transaction}`: submits a signed transaction (hex), as
//!   `eth_sendRawTransaction` does, but one sent again while it waits answers its hash (a
//!   retry), not `already known`.
//! - `GET /move/v1/transactions/{hash}`: an included transaction with its Move status and
//!   events; else 404 saying it is pending, was dropped (and why: [`crate::dropped`]) or is
//!   not known.
//!
//! Errors are `{"error": "…"}` with status 400 (a bad request) or 404 (nothing there).

use std::sync::Arc;

use alloy_primitives::{Address, Bytes, B256};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use duet_types::{EntryFunction, StateKey, StateValue, MOVE_CALL_ADDRESS};
use move_binary_format::access::ModuleAccess;
use move_binary_format::file_format::{
    Ability, AbilitySet, ModuleHandle, SignatureToken, StructFieldInformation, Visibility,
};
use move_binary_format::CompiledModule;
use move_core_types::language_storage::StructTag;
use revm::context::TxEnv;
use revm::primitives::TxKind;
use serde_json::{json, Value};

use crate::chain::{
    CallError, CallOverrides, Chain, StateBlock, StateUnavailable, SubmitError, TransactionStatus,
};
use crate::mempool::MempoolError;
use crate::store::Listed;

type Answer = (StatusCode, Json<Value>);

/// The Move API's routes.
///
/// `answering` holds a permit per answer being built, shared with JSON-RPC: queries and view
/// calls wait their turn beside JSON-RPC requests; submitted transactions do not.
pub fn router(chain: Arc<Chain>, answering: Arc<tokio::sync::Semaphore>) -> Router {
    Router::new()
        .route("/move/v1/accounts/{address}/resources", get(resources))
        .route("/move/v1/accounts/{address}/resource/{tag}", get(resource))
        .route("/move/v1/accounts/{address}/modules", get(modules))
        .route("/move/v1/accounts/{address}/module/{name}", get(module))
        .route("/move/v1/view", post(view))
        .route("/move/v1/transactions", post(submit))
        .route("/move/v1/transactions/{hash}", get(transaction))
        .with_state(Api { chain, answering })
}

/// The Move API's state: the chain, and the permits of answers being built (see [`router`]).
#[derive(Clone)]
struct Api {
    chain: Arc<Chain>,
    answering: Arc<tokio::sync::Semaphore>,
}

impl Api {
    /// Runs `work` on the chain off the async runtime once it has its turn among the answers
    /// being built ([`crate::rpc::in_turn`]); its `Ok` is a 200 answer.
    async fn query(
        self,
        work: impl FnOnce(&Chain) -> Result<Value, Answer> + Send + 'static,
    ) -> Answer {
        self.answer(work).await.map_or_else(|answer| answer, ok)
    }

    /// [`query`](Self::query) for a listing's page, with its cursor.
    async fn page(
        self,
        work: impl FnOnce(&Chain) -> Result<Listing, Answer> + Send + 'static,
    ) -> Response {
        self.answer(work)
            .await
            .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
    }

    /// [`query`](Self::query) without waiting its turn: for submitted transactions, whose
    /// answers are small and whose work is bounded, as for `eth_sendRawTransaction`.
    async fn now(
        self,
        work: impl FnOnce(&Chain) -> Result<Value, Answer> + Send + 'static,
    ) -> Answer {
        let answer = crate::rpc::in_turn(None, move || work(&self.chain)).await;
        answer.unwrap_or_else(|| Err(internal("internal error"))).map_or_else(|answer| answer, ok)
    }

    /// `work`'s result once it has its turn among the answers being built.
    async fn answer<T: Send + 'static>(
        self,
        work: impl FnOnce(&Chain) -> Result<T, Answer> + Send + 'static,
    ) -> Result<T, Answer> {
        let answering = Arc::clone(&self.answering);
        let answer = crate::rpc::in_turn(Some(&answering), move || work(&self.chain)).await;
        answer.unwrap_or_else(|| Err(internal("internal error")))
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Answer {
    (status, Json(json!({ "error": message.to_string() })))
}

fn ok(value: Value) -> Answer {
    (StatusCode::OK, Json(value))
}

fn address(text: &str) -> Result<Address, Answer> {
    parse_address(text).map_err(|message| error(StatusCode::BAD_REQUEST, message))
}

/// An address as Move writes it: up to 64 hex digits after `0x` (or `0X`, or none), a short one
/// standing for its value (`0x1` is `0x00…01`, as in `0x1::string::String`), a long one with
/// zeros beyond the 20 bytes.
///
/// # Errors
/// Not hex, empty, or a value that does not fit in 20 bytes.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let invalid = || format!("{text}: not an address (0x and up to 40 hex digits)");
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let (beyond, digits) = digits.split_at(digits.len().saturating_sub(40));
    if beyond.bytes().any(|digit| digit != b'0') {
        return Err(invalid());
    }
    format!("{digits:0>40}").parse::<Address>().map_err(|_| invalid())
}

/// `text` (a Move type) with every address in it in its shortest form (`0x1`), so that the
/// Move parser takes the forms [`parse_address`] takes: short, 40 digits, or 32 bytes with
/// leading zeros, after `0x` or `0X`. The text never grows, so the executor's bounds on a type
/// argument's length hold for what the user wrote.
///
/// # Errors
/// An address that does not fit in 20 bytes.
pub fn short_addresses(text: &str) -> Result<String, String> {
    let mut short = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("0x").into_iter().chain(rest.find("0X")).min() {
        let (before, from) = rest.split_at(at);
        short.push_str(before);
        let digits = from[2..].bytes().take_while(u8::is_ascii_hexdigit).count();
        let (token, after) = from.split_at(2 + digits);
        // An address starts a word: not the tail of an identifier such as `a0x1`.
        let starts_word = short
            .chars()
            .next_back()
            .is_none_or(|last| !last.is_ascii_alphanumeric() && last != '_');
        if starts_word && digits > 0 {
            let address = duet_move::to_account_address(parse_address(token)?);
            short.push_str("0x");
            short.push_str(&address.short_str_lossless());
        } else {
            short.push_str(token);
        }
        rest = after;
    }
    short.push_str(rest);
    Ok(short)
}

/// A failure of the node itself.
#[allow(clippy::needless_pass_by_value)] // Used as `map_err(internal)`.
fn internal(failure: impl std::fmt::Display) -> Answer {
    error(StatusCode::INTERNAL_SERVER_ERROR, failure)
}

/// `owner`'s state entries of one kind (Move modules or resources), a page of them from the
/// query (see [`page_query`]; an `after` names an entry, whose key `after_key` makes), each as
/// `entry` shows it (`None` leaves it out) with its key, in a JSON list.
fn listing(
    chain: &Chain,
    owner: &str,
    query: Option<&str>,
    kind: fn(Address) -> StateKey,
    after_key: fn(Address, &str) -> Result<StateKey, Answer>,
    entry: fn(StateKey, StateValue) -> Option<Value>,
) -> Result<Listing, Answer> {
    let owner = address(owner)?;
    let page = page_query(query)?;
    // A kind's tag and the address lead the encoding of each of its keys.
    let prefix = kind(owner).encode()[..=Address::len_bytes()].to_vec();
    let after = match page.after {
        None => None,
        Some(After::Entry(after)) => Some(after_key(owner, &after)?.encode()),
        Some(After::Key(key)) if key.starts_with(&prefix) => Some(key.to_vec()),
        Some(After::Key(_)) => {
            return Err(error(StatusCode::BAD_REQUEST, "after_key: not a key of this listing"))
        }
    };
    let most = Listed { entries: page.limit, bytes: MAX_PAGE_BYTES };
    let entries = chain.store().state_with_prefix(&prefix, after.as_deref(), most);
    let Some(read) = entries.map_err(internal)? else {
        let mib = MAX_PAGE_BYTES >> 20;
        let message = format!("a page of {} passes {mib} MiB: ask for fewer (limit)", page.limit);
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, message));
    };
    // The last key read, shown or not, is where the next page starts.
    let next = read.entries.last().filter(|_| read.more).map(|(key, _)| Bytes::from(key.clone()));
    let list: Vec<Value> = read
        .entries
        .into_iter()
        .filter_map(|(key, value)| {
            let mut shown = entry(StateKey::decode(&key).ok()?, value)?;
            shown["key"] = json!(Bytes::from(key));
            Some(shown)
        })
        .collect();
    Ok(Listing { list: json!(list), next })
}

/// A page of a listing, and the key its next page starts after when there is one.
struct Listing {
    list: Value,
    next: Option<Bytes>,
}

/// The header that gives a listing's next page: the `after_key` that asks for it. A page without
/// it is the last.
pub const CURSOR_HEADER: &str = "x-duet-cursor";

impl IntoResponse for Listing {
    fn into_response(self) -> Response {
        let mut response = ok(self.list).into_response();
        if let Some(next) = self.next {
            // Hex digits are always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&next.to_string()) {
                response.headers_mut().insert(CURSOR_HEADER, value);
            }
        }
        response
    }
}

/// The most entries a page of a listing holds, and how many it holds unless asked.
const MAX_PAGE: usize = 10_000;
const DEFAULT_PAGE: usize = 1_000;

/// The most bytes of entries one page reads: past it, the request is refused (413) and asks for
/// a smaller `limit`.
const MAX_PAGE_BYTES: usize = 32 << 20;

/// Where a page of a listing starts: after the entry a name or type names, or after a key (any
/// entry's `key`, which works whatever its type).
enum After {
    Entry(String),
    Key(Bytes),
}

/// A page of a listing: after which entry, and how many entries at most.
struct Page {
    after: Option<After>,
    limit: usize,
}

/// A listing's query: `after` (a name or type, percent-encoded, `+` for a space) or
/// `after_key` (an entry's `key`), `limit` (1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] unless given),
/// and a `block` that must be the latest (the kept history is by key, not by account); each
/// at most once.
fn page_query(query: Option<&str>) -> Result<Page, Answer> {
    let bad = |message: String| error(StatusCode::BAD_REQUEST, message);
    let mut page = Page { after: None, limit: DEFAULT_PAGE };
    for (name, text) in query_params(query, &["after", "after_key", "limit", "block"])? {
        match name {
            "after" | "after_key" if page.after.is_some() => {
                return Err(bad(format!("{name}: given twice, or with another after")));
            }
            "after" => {
                let text = text.replace('+', " ");
                let text = percent_encoding::percent_decode_str(&text)
                    .decode_utf8()
                    .map_err(|_| bad(format!("after: not UTF-8: {text}")))?;
                page.after = Some(After::Entry(text.into_owned()));
            }
            "after_key" => {
                let key: Bytes =
                    text.parse().map_err(|_| bad(format!("after_key: not hex: {text}")))?;
                page.after = Some(After::Key(key));
            }
            "limit" => {
                page.limit = Some(text)
                    .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|text| text.parse().ok())
                    .filter(|limit| (1..=MAX_PAGE).contains(limit))
                    .ok_or_else(|| bad(format!("limit: a number from 1 to {MAX_PAGE}: {text}")))?;
            }
            _ => {
                if !matches!(block_param(text)?, StateBlock::Latest | StateBlock::Pending) {
                    return Err(bad("listings are of the latest state: ask for one resource \
                         or module at a block"
                        .to_owned()));
                }
            }
        }
    }
    Ok(page)
}

/// The struct type `tag` names (text, as a listing shows it), within the lookup's bounds.
fn struct_tag_of(tag: &str) -> Result<StructTag, Answer> {
    duet_move::type_text_fits(tag, "a type", MAX_TAG_LENGTH, MAX_TAG_NESTING)
        .map_err(|message| error(StatusCode::BAD_REQUEST, message))?;
    let short = short_addresses(tag).map_err(|message| error(StatusCode::BAD_REQUEST, message))?;
    move_core_types::parser::parse_struct_tag(&short)
        .map_err(|_| error(StatusCode::BAD_REQUEST, format!("{tag}: not a struct type")))
}

/// The key of `owner`'s resource of type `tag`.
fn resource_key(owner: Address, tag: &StructTag) -> Result<StateKey, Answer> {
    duet_move::resolver::resource_key(owner, tag)
        .map_err(|failure| error(StatusCode::BAD_REQUEST, failure.0))
}

/// The key of `owner`'s resource of type `tag` (text, as a listing shows it).
fn resource_key_of(owner: Address, tag: &str) -> Result<StateKey, Answer> {
    resource_key(owner, &struct_tag_of(tag)?)
}

/// The key of `owner`'s module `name`.
#[allow(clippy::unnecessary_wraps)] // One of the listings' key functions.
fn module_key_of(owner: Address, name: &str) -> Result<StateKey, Answer> {
    Ok(StateKey::MoveModule { address: owner, name: name.into() })
}

fn resource_kind(address: Address) -> StateKey {
    StateKey::MoveResource { address, struct_tag: Box::default() }
}

fn module_kind(address: Address) -> StateKey {
    StateKey::MoveModule { address, name: Box::default() }
}

async fn resources(
    State(api): State<Api>,
    Path(owner): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    api.page(move |chain| {
        listing(chain, &owner, query.as_deref(), resource_kind, resource_key_of, |key, value| {
            let StateKey::MoveResource { struct_tag, .. } = key else { return None };
            let tag: StructTag = bcs::from_bytes(&struct_tag).ok()?;
            let StateValue::Bytes(data) = value else { return None };
            Some(json!({ "type": tag.to_string(), "data": data }))
        })
    })
    .await
}

/// The longest resource type a lookup takes, in bytes: room for a few type arguments written
/// with full addresses.
const MAX_TAG_LENGTH: usize = 1024;

/// The deepest nesting of type arguments a lookup takes (`0x1::m::S<vector<u8>>` is 2).
const MAX_TAG_NESTING: usize = 16;

/// The block a query names: `block=…` in its query string (see [`block_param`]), else the
/// latest.
fn block_query(query: Option<&str>) -> Result<StateBlock, Answer> {
    match query_params(query, &["block"])?.first() {
        Some((_, text)) => block_param(text),
        None => Ok(StateBlock::Latest),
    }
}

/// A query string's parameters (`name=value`, in order), each one of `known` and given at most
/// once (else a 400 saying which).
fn query_params<'a>(
    query: Option<&'a str>,
    known: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, Answer> {
    let mut params: Vec<(&str, &str)> = Vec::new();
    for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (name, text) = match pair.split_once('=') {
            Some((name, text)) if known.contains(&name) => (name, text),
            _ => return Err(error(StatusCode::BAD_REQUEST, format!("unknown parameter {pair}"))),
        };
        if params.iter().any(|(given, _)| *given == name) {
            return Err(error(StatusCode::BAD_REQUEST, format!("{name}: given twice")));
        }
        params.push((name, text));
    }
    Ok(params)
}

/// A block: a number (decimal or `0x` hexadecimal), `latest`, `pending` or `earliest`.
fn block_param(text: &str) -> Result<StateBlock, Answer> {
    let number = match text {
        "latest" => return Ok(StateBlock::Latest),
        "pending" => return Ok(StateBlock::Pending),
        "earliest" => return Ok(StateBlock::Number(0)),
        // Digits only (Rust's parsers would also take a leading `+`).
        _ => match text.strip_prefix("0x") {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u64::from_str_radix(hex, 16)
            }
            None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse(),
            _ => "-".parse(),
        },
    };
    number
        .map(StateBlock::Number)
        .map_err(|_| error(StatusCode::BAD_REQUEST, format!("block: not a block: {text}")))
}

/// The answer for a block without state: 404 if it is not there (yet), 410 if its state is no
/// longer kept, 500 if the database failed.
fn unavailable(failure: &StateUnavailable) -> Answer {
    let status = match failure {
        StateUnavailable::NotYet | StateUnavailable::UnknownHash(_) => StatusCode::NOT_FOUND,
        StateUnavailable::Gone { .. } => StatusCode::GONE,
        StateUnavailable::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, failure)
}

/// The value of `key` at `block`.
fn value_at(
    chain: &Chain,
    block: StateBlock,
    key: &StateKey,
) -> Result<Option<StateValue>, Answer> {
    chain.read_at(block, |state| state.value(key)).map_err(|failure| unavailable(&failure))
}

async fn resource(
    State(api): State<Api>,
    Path((owner, tag)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Answer {
    api.query(move |chain| {
        let block = block_query(query.as_deref())?;
        let owner = address(&owner)?;
        let parsed = struct_tag_of(&tag)?;
        let key = resource_key(owner, &parsed)?;
        match value_at(chain, block, &key)? {
            Some(StateValue::Bytes(data)) => {
                Ok(json!({ "type": parsed.to_string(), "data": data }))
            }
            _ => Err(error(StatusCode::NOT_FOUND, format!("{owner} holds no {tag}"))),
        }
    })
    .await
}

async fn modules(
    State(api): State<Api>,
    Path(owner): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    api.page(move |chain| {
        listing(chain, &owner, query.as_deref(), module_kind, module_key_of, |key, value| {
            let StateKey::MoveModule { name, .. } = key else { return None };
            let StateValue::Bytes(bytecode) = value else { return None };
            Some(json!({ "name": name, "bytecode": bytecode }))
        })
    })
    .await
}

async fn module(
    State(api): State<Api>,
    Path((owner, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Answer {
    api.query(move |chain| {
        let block = block_query(query.as_deref())?;
        let owner = address(&owner)?;
        let key = StateKey::MoveModule { address: owner, name: name.clone().into() };
        let Some(StateValue::Bytes(bytecode)) = value_at(chain, block, &key)? else {
            return Err(error(StatusCode::NOT_FOUND, format!("{owner} has no module {name}")));
        };
        let compiled = CompiledModule::deserialize(&bytecode)
            .map_err(|failure| internal(format!("stored bytecode: {failure}")))?;
        Ok(json!({ "name": name, "bytecode": bytecode, "abi": abi(&compiled) }))
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
                "type_parameters": handle
                    .type_parameters
                    .iter()
                    .map(|constraints| json!({ "constraints": abilities(*constraints) }))
                    .collect::<Vec<_>>(),
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
            let type_parameters: Vec<Value> = handle
                .type_parameters
                .iter()
                .map(|parameter| {
                    json!({
                        "constraints": abilities(parameter.constraints),
                        "is_phantom": parameter.is_phantom,
                    })
                })
                .collect();
            json!({
                "name": module.identifier_at(handle.name).as_str(),
                "abilities": abilities(handle.abilities),
                "type_parameters": type_parameters,
                "fields": fields,
            })
        })
        .collect();
    let id = module.self_id();
    let friends: Vec<String> =
        module.friend_decls().iter().map(|friend| module_path(module, friend)).collect();
    json!({
        "address": duet_move::to_address(*id.address()).to_string(),
        "name": id.name().as_str(),
        "friends": friends,
        "functions": functions,
        "structs": structs,
    })
}

/// An ability set as names, `["copy", "drop"]`.
fn abilities(set: AbilitySet) -> Vec<&'static str> {
    set.into_iter().map(ability_name).collect()
}

/// The module `handle` names, `address::name`.
fn module_path(module: &CompiledModule, handle: &ModuleHandle) -> String {
    let address = duet_move::to_address(*module.address_identifier_at(handle.address));
    format!("{address}::{}", module.identifier_at(handle.name))
}

/// A signature token in Move syntax.
fn type_name(module: &CompiledModule, token: &SignatureToken) -> String {
    let struct_name = |index| {
        let handle = module.struct_handle_at(index);
        let owner = module.module_handle_at(handle.module);
        format!("{}::{}", module_path(module, owner), module.identifier_at(handle.name))
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

/// `0xADDRESS::module::function`, split.
///
/// # Errors
/// Not three parts, or not an address (see [`parse_address`]).
pub fn parse_function(text: &str) -> Result<(Address, String, String), String> {
    let mut parts = text.split("::");
    let (Some(owner), Some(module), Some(function), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{text}: expected 0xADDRESS::module::function"));
    };
    let owner = parse_address(owner)?;
    Ok((owner, module.to_owned(), function.to_owned()))
}

/// The request's share of the bytes budget ([`crate::server::Received`]), held by the work.
type Held = Option<axum::Extension<crate::server::Received>>;

/// A request body as JSON, parsed off the async threads when it is large, as JSON-RPC's are
/// (holding its share of the bytes budget meanwhile); a 400 with a JSON error when it is not
/// JSON, whatever its content type.
async fn json_request(body: axum::body::Bytes, held: &Held) -> Result<Value, Answer> {
    crate::rpc::parse_request(body, held.clone()).await.map_err(|answer| {
        let message = answer["error"]["message"].as_str().unwrap_or("not JSON").to_owned();
        error(StatusCode::BAD_REQUEST, format!("request body: {message}"))
    })
}

async fn view(State(api): State<Api>, held: Held, body: axum::body::Bytes) -> Answer {
    let request = match json_request(body, &held).await {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    // A bad request is answered before it waits for anything.
    let (call, block) = match view_request(&request) {
        Ok(parsed) => parsed,
        Err(answer) => return answer,
    };
    // The call's turn first, waited for holding no answering turn and no thread.
    let turn = api.chain.call_turn().await;
    api.query(move |chain| {
        let _held = held;
        let data = duet_evm::call_data(&call).into();
        let tx = TxEnv { kind: TxKind::Call(MOVE_CALL_ADDRESS), data, ..TxEnv::default() };
        let bad = |message: String| error(StatusCode::BAD_REQUEST, message);
        match chain.call_at_block(&turn, tx, block, &CallOverrides::default()) {
            Ok((output, _)) => {
                Ok(json!({ "values": duet_evm::return_values(&output).map_err(internal)? }))
            }
            Err(CallError::Reverted(data)) => Err(bad(duet_evm::revert_reason(&data))),
            Err(CallError::Unavailable(failure)) => Err(unavailable(&failure)),
            Err(failure) => Err(bad(failure.to_string())),
        }
    })
    .await
}

/// A view request's call and block.
fn view_request(request: &Value) -> Result<(EntryFunction, StateBlock), Answer> {
    let bad = |message: String| error(StatusCode::BAD_REQUEST, message);
    let function = request
        .get("function")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing function (0x…::module::function)".to_owned()))?;
    let (module_address, module_name, function) = parse_function(function).map_err(bad)?;
    let strings = |field: &str| -> Result<Vec<String>, Answer> {
        match request.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|_| bad(format!("{field}: expected a list of strings"))),
        }
    };
    let arguments = strings("arguments")?
        .iter()
        .map(|hex| hex.parse::<Bytes>().map(Vec::from))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("arguments: each must be BCS bytes in hex".to_owned()))?;
    let call = EntryFunction {
        module_address,
        module_name,
        function,
        // Addresses as the other routes take them: short, or 32 bytes with leading zeros.
        type_arguments: strings("type_arguments")?
            .iter()
            .map(|tag| short_addresses(tag))
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        arguments,
    };
    let block = match request.get("block") {
        None | Some(Value::Null) => StateBlock::Latest,
        Some(Value::Number(number)) => StateBlock::Number(
            number.as_u64().ok_or_else(|| bad(format!("block: not a block: {number}")))?,
        ),
        Some(Value::String(text)) => block_param(text)?,
        Some(other) => return Err(bad(format!("block: not a block: {other}"))),
    };
    Ok((call, block))
}

async fn submit(State(api): State<Api>, held: Held, body: axum::body::Bytes) -> Answer {
    let request = match json_request(body, &held).await {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    api.now(move |chain| {
        let _held = held;
        let raw = request
            .get("transaction")
            .and_then(Value::as_str)
            .and_then(|hex| hex.parse::<Bytes>().ok())
            .ok_or_else(|| {
                error(StatusCode::BAD_REQUEST, "transaction: expected a signed transaction in hex")
            })?;
        match chain.submit(&raw) {
            Ok(hash) => Ok(json!({ "hash": hash })),
            // Sent again (a retry after a lost answer): it is waiting, as the first answer said.
            Err(SubmitError::Mempool(MempoolError::AlreadyKnown)) => {
                Ok(json!({ "hash": duet_types::keccak256(&raw) }))
            }
            Err(failure @ SubmitError::Store(_)) => Err(internal(failure)),
            // Nothing wrong with the transaction: worth sending again later.
            Err(failure @ SubmitError::Mempool(MempoolError::Full | MempoolError::SenderFull)) => {
                Err(error(StatusCode::SERVICE_UNAVAILABLE, failure))
            }
            Err(failure) => Err(error(StatusCode::BAD_REQUEST, failure)),
        }
    })
    .await
}

async fn transaction(State(api): State<Api>, Path(hash): Path<String>) -> Answer {
    api.query(move |chain| {
        let hash = hash
            .parse::<B256>()
            .map_err(|_| error(StatusCode::BAD_REQUEST, format!("{hash}: not a 32-byte hash")))?;
        let record = match chain.transaction_status(hash).map_err(internal)? {
            TransactionStatus::Included(record) => record,
            TransactionStatus::Pending => {
                return Err(error(StatusCode::NOT_FOUND, "pending: not in a block yet"))
            }
            TransactionStatus::Dropped(dropped) => {
                let why = format!("dropped: {}", dropped.reason);
                return Err(error(StatusCode::NOT_FOUND, why));
            }
            TransactionStatus::Unknown => {
                return Err(error(StatusCode::NOT_FOUND, "no such transaction"))
            }
        };
        let events: Vec<Value> = record
            .move_events
            .iter()
            .map(|(tag, data)| json!({ "type": tag, "data": data }))
            .collect();
        Ok(json!({
            "hash": record.hash,
            "block_number": record.block_number,
            "sender": record.from,
            "kind": record.kind,
            "success": record.success,
            "status": record.move_status,
            "gas_used": record.gas_used,
            "events": events,
            // The EVM's logs: an EVM transaction's, and those of EVM code a Move transaction
            // called; a Solidity call's Move events are among them, logs of the Move call
            // precompile (topic 0 the keccak256 of the event's type, data its BCS).
            "logs": record.logs,
        }))
    })
    .await
}

/// An ability as Move source writes it.
fn ability_name(ability: Ability) -> &'static str {
    match ability {
        Ability::Copy => "copy",
        Ability::Drop => "drop",
        Ability::Store => "store",
        Ability::Key => "key",
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_address, short_addresses};

    #[test]
    fn addresses_in_a_type_are_written_short_whatever_their_length() {
        let long = format!("0x{}1", "0".repeat(63));
        let forty = "0x0000000000000000000000000000000000000002";
        let text = format!("{long}::m::S<{forty}::n::T, 0X3::o::U, 0xAbC::p::V, vector<u8>>");
        let short = short_addresses(&text).unwrap();
        assert_eq!(short, "0x1::m::S<0x2::n::T, 0x3::o::U, 0xabc::p::V, vector<u8>>");
        assert!(move_core_types::parser::parse_struct_tag(&short).is_ok(), "{short}");
        assert_eq!(short_addresses("0x0::m::S").unwrap(), "0x0::m::S");
        // Never longer than what was written.
        assert_eq!(short_addresses("0x1::m::S<0x1::m::S>").unwrap(), "0x1::m::S<0x1::m::S>");
        // Not an address: the tail of a word, or no digits.
        assert_eq!(short_addresses("0x1::a0x1::S").unwrap(), "0x1::a0x1::S");
        assert_eq!(short_addresses("0x::m::S").unwrap(), "0x::m::S");
        assert!(short_addresses(&format!("0x1{}::m::S", "0".repeat(40))).is_err());
    }

    #[test]
    fn addresses_may_be_short_long_or_unprefixed_but_must_fit() {
        let one = "0x0000000000000000000000000000000000000001".parse().unwrap();
        for text in ["0x1", "0X1", "1", "0x0000000000000000000000000000000000000001"] {
            assert_eq!(parse_address(text), Ok(one), "{text}");
        }
        let long = format!("0x{}1", "0".repeat(63));
        assert_eq!(parse_address(&long), Ok(one));
        let full = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
        assert_eq!(parse_address(full).unwrap().to_string(), full);
        let too_big = format!("0x1{}", "0".repeat(40));
        for text in ["", "0x", "0xg1", "nope", " 0x1", "0x1 ", too_big.as_str()] {
            assert!(parse_address(text).is_err(), "{text:?}");
        }
        assert!(parse_address(&format!("0x{}", "0".repeat(65))).is_err());
    }

    /// Over the routes: a transaction sent again while it waits answers its hash (a client's
    /// retry after a lost answer), and an included one's record says how it ran, with its
    /// events, or where it aborted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_sent_again_answers_its_hash_and_its_record_says_how_it_ran() {
        use crate::chain::tests::{dev_signer, move_transfer, open_chain, signed_move};
        use crate::chain::ChainConfig;
        use duet_types::{Address, MovePayload};
        use tower::ServiceExt as _;

        let directory = tempfile::tempdir().unwrap();
        let chain = std::sync::Arc::new(open_chain(directory.path(), ChainConfig::for_tests()));
        let routes = super::router(
            std::sync::Arc::clone(&chain),
            std::sync::Arc::new(tokio::sync::Semaphore::new(4)),
        );
        let ask = |method: &str, path: String, body: String| {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let routes = routes.clone();
            async move {
                let answer = routes.oneshot(request).await.unwrap();
                let status = answer.status().as_u16();
                let body = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
                (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
            }
        };
        let to = Address::repeat_byte(0x77);
        let pays = MovePayload::EntryFunction(move_transfer(to, 5));
        let overdraws = MovePayload::EntryFunction(move_transfer(to, u128::MAX));
        let mut hashes = Vec::new();
        for (nonce, payload) in [(0, &pays), (1, &overdraws)] {
            let raw = signed_move(&dev_signer(0), nonce, payload, 200_000);
            let body = serde_json::json!({ "transaction": raw }).to_string();
            let first = ask("POST", "/move/v1/transactions".to_owned(), body.clone()).await;
            let again = ask("POST", "/move/v1/transactions".to_owned(), body).await;
            assert_eq!(first.0, 200, "{first:?}");
            assert_eq!(first, again);
            hashes.push(first.1["hash"].as_str().unwrap().to_owned());
        }
        // A Solidity-side transaction (an account calling the Move call precompile) paying too.
        let call = duet_evm::call_data(&move_transfer(to, 7));
        let kind = alloy_primitives::TxKind::Call(duet_types::MOVE_CALL_ADDRESS);
        let list = alloy_eips::eip2930::AccessList::default();
        let raw = crate::chain::tests::signed_call(&dev_signer(1), 0, kind, call, list);
        let body = serde_json::json!({ "transaction": raw }).to_string();
        let (status, sent) = ask("POST", "/move/v1/transactions".to_owned(), body).await;
        assert_eq!(status, 200, "{sent}");
        hashes.push(sent["hash"].as_str().unwrap().to_owned());
        let (status, waiting) =
            ask("GET", format!("/move/v1/transactions/{}", hashes[0]), String::new()).await;
        assert_eq!((status, waiting["error"].as_str()), (404, Some("pending: not in a block yet")));
        tokio::task::spawn_blocking(move || chain.produce_block().unwrap()).await.unwrap();

        let (status, paid) =
            ask("GET", format!("/move/v1/transactions/{}", hashes[0]), String::new()).await;
        assert_eq!(status, 200, "{paid}");
        assert_eq!(
            (paid["success"].as_bool(), paid["status"].as_str()),
            (Some(true), Some("success"))
        );
        let events = paid["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{paid}");
        assert_eq!(events[0]["type"], "0x1::eth::Transfer");
        // from, to, amount in BCS.
        let mut data = dev_signer(0).address().to_vec();
        data.extend(to.as_slice());
        data.extend(5u128.to_le_bytes());
        assert_eq!(events[0]["data"], format!("0x{}", alloy_primitives::hex::encode(data)));

        let (status, refused) =
            ask("GET", format!("/move/v1/transactions/{}", hashes[1]), String::new()).await;
        assert_eq!(status, 200, "{refused}");
        assert_eq!(refused["success"].as_bool(), Some(false));
        assert_eq!(
            refused["status"].as_str(),
            Some("aborted in 0x0000000000000000000000000000000000000001::eth with code 1"),
            "{refused}"
        );
        assert_eq!(refused["events"], serde_json::json!([]));
        // Its Move event is a log of the precompile, topic 0 the hash of the event's type.
        let (status, evm) =
            ask("GET", format!("/move/v1/transactions/{}", hashes[2]), String::new()).await;
        assert_eq!((status, evm["success"].as_bool()), (200, Some(true)), "{evm}");
        let log = &evm["logs"][0];
        assert_eq!(log["address"], serde_json::json!(duet_types::MOVE_CALL_ADDRESS), "{evm}");
        let topic = duet_types::keccak256("0x1::eth::Transfer");
        assert_eq!(log["topics"], serde_json::json!([topic]), "{evm}");
        assert_eq!(paid["logs"], serde_json::json!([]), "a Move transfer calls no EVM code");
    }

    /// A module's ABI names what a caller needs to build type arguments: each type parameter's
    /// constraints (and whether a struct's is phantom), and the module's address and friends.
    #[test]
    fn the_abi_gives_type_parameters_with_their_constraints_and_the_friends() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("generic.move");
        std::fs::write(
            &file,
            "module example::generic { friend example::other; \
             struct Box<T: store + drop, phantom M> has key, store { value: T } \
             public fun make<T: copy + drop, U>(value: T, _u: &U): vector<T> { \
                 vector[value] } }
             module example::other { }",
        )
        .unwrap();
        // Addresses are written as everywhere in the answers: checksummed (EIP-55).
        let owner = duet_types::Address::with_last_byte(0xab).to_string();
        let modules = duet_move::compile_package(
            vec![file.to_string_lossy().into_owned()],
            &[("example", owner.as_str())],
        )
        .unwrap();
        let (_, bytes) = modules.iter().find(|(name, _)| name == "generic").unwrap();
        let module = super::CompiledModule::deserialize(bytes).unwrap();
        let abi = super::abi(&module);
        assert_eq!(abi["address"], owner);
        assert_eq!(abi["name"], "generic");
        assert_eq!(abi["friends"], serde_json::json!([format!("{owner}::other")]));
        let boxed = &abi["structs"][0];
        assert_eq!(
            boxed["type_parameters"],
            serde_json::json!([
                { "constraints": ["drop", "store"], "is_phantom": false },
                { "constraints": [], "is_phantom": true },
            ])
        );
        assert_eq!(boxed["fields"][0]["type"], "T0");
        let make = &abi["functions"][0];
        assert_eq!(
            make["type_parameters"],
            serde_json::json!([{ "constraints": ["copy", "drop"] }, { "constraints": [] }])
        );
        assert_eq!(make["parameters"], serde_json::json!(["T0", "&T1"]));
        assert_eq!(make["returns"], serde_json::json!(["vector<T0>"]));
    }
}
