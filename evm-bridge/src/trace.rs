//! Call traces as geth's `callTracer` gives them (`debug_traceTransaction`, `debug_traceCall`).
//!
//! An EVM made [`with_call_tracer`](EvmVm::with_call_tracer) builds, for each EVM transaction
//! it runs (with exact balances, so once), the tree of its frames: the transaction's own call or
//! creation, and every `CALL`, `CALLCODE`, `DELEGATECALL`, `STATICCALL`, `CREATE`, `CREATE2` and
//! `SELFDESTRUCT` under it, each with its caller, callee, value, gas, input, output and how it
//! ended; with `with_logs`, the logs each frame emitted (none for a frame that failed, or whose
//! caller did, as geth clears them). A call of the Move call precompile is a frame like a call
//! of any precompile: its input is the `IMove.call` calldata, its output the BCS return values
//! or the Move abort.
//!
//! A Move transaction run by a [`crate::DuetVm`] whose EVM has a call tracer is traced too: its
//! own frame is its sender calling the Move entry address with its payload (BCS, as the
//! transaction's input carries it) and its gas limit, failed with its Move status if it failed,
//! and under it the frames of the EVM code its Move code calls into (the `evm` module): each call
//! a frame as revm runs it (`evm::call` from the sender, `evm::static_call` a `STATICCALL` from
//! the zero address), with what it made under it. Like every trace, for sequential runs only.

use duet_types::{Address, Bytes, U256};
use revm::context::result::HaltReason;
use revm::context::ContextTr;
use revm::context_interface::either::Either;
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::SuccessOrHalt;
use revm::interpreter::{
    CallInputs, CallOutcome, CallScheme, CallValue, CreateInputs, CreateOutcome, InstructionResult,
};
use revm::primitives::Log;
use revm::Inspector;

use crate::EvmVm;

/// What kind of frame a [`CallFrame`] is, named as geth names it (`CALL`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// `CALL`, or a transaction's call.
    Call,
    /// `CALLCODE`.
    CallCode,
    /// `DELEGATECALL`.
    DelegateCall,
    /// `STATICCALL`.
    StaticCall,
    /// `CREATE`, or a transaction's creation.
    Create,
    /// `CREATE2`.
    Create2,
    /// `SELFDESTRUCT`: the contract sends its balance to `to`.
    SelfDestruct,
}

impl FrameKind {
    /// geth's name for it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Call => "CALL",
            Self::CallCode => "CALLCODE",
            Self::DelegateCall => "DELEGATECALL",
            Self::StaticCall => "STATICCALL",
            Self::Create => "CREATE",
            Self::Create2 => "CREATE2",
            Self::SelfDestruct => "SELFDESTRUCT",
        }
    }
}

/// A log a frame emitted, and where among its calls (`position`: how many it had made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameLog {
    /// The log.
    pub log: Log,
    /// How many calls the frame had made before it.
    pub position: usize,
}

/// One frame of a call trace, with the frames it made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFrame {
    /// Its kind.
    pub kind: FrameKind,
    /// Who called: for a `DELEGATECALL` or `CALLCODE`, the contract whose code made it.
    pub from: Address,
    /// The callee (for a `DELEGATECALL` or `CALLCODE`, the contract whose code runs), or the
    /// contract created (`None` for a creation that failed).
    pub to: Option<Address>,
    /// The value sent (for a `DELEGATECALL`, its caller's, which it sees; `None` for a
    /// `STATICCALL`).
    pub value: Option<U256>,
    /// The gas given to it (for the transaction's own frame, its gas limit).
    pub gas: u64,
    /// The gas it used (for the transaction's own frame, the transaction's).
    pub gas_used: u64,
    /// Its input: calldata, or a creation's init code.
    pub input: Bytes,
    /// What it returned: return data, revert data, or a created contract's code.
    pub output: Bytes,
    /// Why it failed, in geth's words (`execution reverted`, `out of gas`, …).
    pub error: Option<String>,
    /// The reason a revert gave (`Error(string)`, or a Move abort through the Move call
    /// precompile), if it gave one.
    pub revert_reason: Option<String>,
    /// The frames it made, in order.
    pub calls: Vec<CallFrame>,
    /// The logs it emitted (with `with_logs` only).
    pub logs: Vec<FrameLog>,
}

impl CallFrame {
    /// A frame entered and not yet left: nothing used, returned or made yet.
    fn entered(
        kind: FrameKind,
        (from, to): (Address, Option<Address>),
        value: Option<U256>,
        gas: u64,
        input: Bytes,
    ) -> Self {
        Self {
            kind,
            from,
            to,
            value,
            gas,
            gas_used: 0,
            input,
            output: Bytes::new(),
            error: None,
            revert_reason: None,
            calls: Vec::new(),
            logs: Vec::new(),
        }
    }
}

/// How a trace is taken: geth's `callTracer` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallTraceConfig {
    /// Only the transaction's own frame (`onlyTopCall`).
    pub only_top_call: bool,
    /// The logs of each frame (`withLog`).
    pub with_logs: bool,
}

/// The most bytes one transaction's trace holds (its frames, their inputs, outputs and logs):
/// a transaction can pass the same megabyte of memory as calldata to thousands of calls, for
/// little gas, and each frame keeps a copy.
pub const MAX_TRACE_BYTES: usize = 16 << 20;

/// The most bytes the traces an EVM takes hold together (a block's, for
/// `debug_traceBlockByNumber`): a block of cheap transactions each near [`MAX_TRACE_BYTES`]
/// would hold gigabytes.
pub const MAX_TRACES_BYTES: usize = 32 << 20;

/// Why a transaction has no call trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceFailure {
    /// It ran no frame (it was rejected before it started).
    #[error("the transaction ran no frame")]
    NoFrame,
    /// Its trace would hold more than [`MAX_TRACE_BYTES`].
    #[error(
        "its call trace holds more than {} MiB (its frames, inputs, outputs and logs); \
         onlyTopCall gives its own frame",
        MAX_TRACE_BYTES >> 20
    )]
    TooLarge,
    /// The traces before it already hold [`MAX_TRACES_BYTES`].
    #[error(
        "the block's call traces hold more than {} MiB up to it; trace it alone \
         (debug_traceTransaction) or with onlyTopCall",
        MAX_TRACES_BYTES >> 20
    )]
    TracesTooLarge,
}

/// A transaction's call trace, or why it has none.
pub type Trace = Result<CallFrame, TraceFailure>;

/// The inspector that builds each transaction's [`CallFrame`].
#[derive(Debug, Default)]
pub(crate) struct CallTracer {
    config: CallTraceConfig,
    /// The frames entered and not yet left, outermost first.
    open: Vec<CallFrame>,
    /// The bytes the current transaction's trace holds, and all the traces together.
    held: usize,
    total: usize,
    /// Each finished transaction's trace.
    finished: Vec<Trace>,
}

impl CallTracer {
    pub(crate) fn new(config: CallTraceConfig) -> Self {
        Self { config, ..Self::default() }
    }

    pub(crate) fn empty_like(&self) -> Self {
        Self::new(self.config)
    }

    /// Called before each transaction: a new trace starts.
    pub(crate) fn begin_transaction(&mut self) {
        self.open.clear();
        self.held = 0;
        self.finished.push(Err(TraceFailure::NoFrame));
    }

    /// Called before a Move transaction from `from` with `gas_limit` and `input` (its payload,
    /// encoded): a new trace starts, its own frame entered, under which the EVM calls of its
    /// Move code are traced.
    pub(crate) fn begin_move_transaction(&mut self, from: Address, gas_limit: u64, input: Bytes) {
        self.begin_transaction();
        let input = if self.keeps(input.len()) { input } else { Bytes::new() };
        let to = Some(duet_types::MOVE_ENTRY_ADDRESS);
        self.enter(CallFrame::entered(
            FrameKind::Call,
            (from, to),
            Some(U256::ZERO),
            gas_limit,
            input,
        ));
    }

    /// Called after a Move transaction that ran: its frame takes the gas it used and, if it
    /// failed, its Move status (and keeps no logs, as a failed frame keeps none).
    pub(crate) fn end_move_transaction(&mut self, gas_used: u64, error: Option<String>) {
        // A frame still open was left by a run that did not finish (the VM panicked in it, which
        // the Move executor makes the transaction's failure): closed as aborted, all its gas
        // used.
        while self.open.len() > 1 {
            let Some(mut frame) = self.open.pop() else { break };
            frame.gas_used = frame.gas;
            frame.error = Some("execution aborted".to_owned());
            clear_logs(&mut frame);
            if let (Some(parent), false) = (self.open.last_mut(), self.config.only_top_call) {
                parent.calls.push(frame);
            }
        }
        let Some(mut frame) = self.open.pop() else { return };
        let gas_limit = frame.gas;
        if error.is_some() {
            clear_logs(&mut frame);
        }
        frame.error = error;
        if let Some(slot) = self.finished.last_mut() {
            *slot = Ok(frame);
        }
        self.end_transaction(gas_limit, gas_used);
    }

    /// Called after a Move transaction that was rejected (it did not run): no trace, and
    /// nothing of it held.
    pub(crate) fn drop_move_transaction(&mut self) {
        self.open.clear();
        self.total = self.total.saturating_sub(self.held);
        self.held = 0;
    }

    /// Called after each transaction: its own frame takes its gas limit and gas used.
    pub(crate) fn end_transaction(&mut self, gas_limit: u64, gas_used: u64) {
        if let Some(trace) = self.finished.last_mut() {
            if self.held > MAX_TRACE_BYTES {
                *trace = Err(TraceFailure::TooLarge);
                // Dropped: what it held is free again.
                self.total = self.total.saturating_sub(self.held);
            } else if self.total > MAX_TRACES_BYTES {
                *trace = Err(TraceFailure::TracesTooLarge);
            } else if let Ok(frame) = trace {
                frame.gas = gas_limit;
                frame.gas_used = gas_used;
            }
        }
    }

    pub(crate) fn take(&mut self) -> Vec<Trace> {
        std::mem::take(&mut self.finished)
    }

    /// Counts `bytes` more held by the trace; whether it still fits (past the bound it keeps
    /// only the frames, without inputs or outputs, which the gas bounds, and fails at the
    /// transaction's end).
    fn hold(&mut self, bytes: usize) -> bool {
        self.held = self.held.saturating_add(bytes);
        self.total = self.total.saturating_add(bytes);
        self.held <= MAX_TRACE_BYTES && self.total <= MAX_TRACES_BYTES
    }

    /// Whether a frame entered now, or just left, is kept: not under `onlyTopCall`'s top frame.
    fn kept_here(&self) -> bool {
        self.open.is_empty() || !self.config.only_top_call
    }

    /// Whether the frame about to be entered is kept and its input of `input` bytes fits.
    fn keeps(&mut self, input: usize) -> bool {
        self.kept_here() && self.hold(std::mem::size_of::<CallFrame>() + input)
    }

    fn enter(&mut self, frame: CallFrame) {
        self.open.push(frame);
    }

    fn leave(
        &mut self,
        result: InstructionResult,
        output: &Bytes,
        gas_used: u64,
        to: Option<Address>,
    ) {
        let Some(mut frame) = self.open.pop() else { return };
        // A halt (not a revert, nor a call refused for depth or funds) uses all the frame's gas;
        // revm charges it to the caller only after this hook.
        let halted = !result.is_ok() && !result.is_revert();
        frame.gas_used = if halted { frame.gas } else { gas_used };
        if !halted && self.kept_here() && self.hold(output.len()) {
            frame.output = output.clone();
        }
        if to.is_some() || frame.kind == FrameKind::Create || frame.kind == FrameKind::Create2 {
            frame.to = to;
        }
        if !result.is_ok() {
            frame.error = Some(error_words(result));
            if result == InstructionResult::Revert {
                frame.revert_reason = revert_reason(output);
            }
            // geth keeps no logs of a frame that failed, nor of the frames it made.
            clear_logs(&mut frame);
        }
        match self.open.last_mut() {
            Some(parent) => {
                if !self.config.only_top_call {
                    parent.calls.push(frame);
                }
            }
            None => {
                if let Some(slot) = self.finished.last_mut() {
                    *slot = Ok(frame);
                }
            }
        }
    }
}

fn clear_logs(frame: &mut CallFrame) {
    frame.logs.clear();
    for call in &mut frame.calls {
        clear_logs(call);
    }
}

/// geth's words for how a frame failed.
fn error_words(result: InstructionResult) -> String {
    match SuccessOrHalt::<HaltReason>::from(result) {
        SuccessOrHalt::Revert => "execution reverted".to_owned(),
        SuccessOrHalt::Halt(reason) => halt_words(&reason),
        _ => format!("{result:?}"),
    }
}

/// How geth words a call's or a frame's halt (revm's words where geth's are the same or it
/// has none): what `eth_call` answers and what a trace's frame says.
#[must_use]
pub fn halt_words(reason: &HaltReason) -> String {
    match reason {
        HaltReason::OutOfGas(_) => "out of gas".to_owned(),
        HaltReason::StackUnderflow => "stack underflow".to_owned(),
        HaltReason::InvalidJump => "invalid jump destination".to_owned(),
        HaltReason::OutOfOffset => "return data out of bounds".to_owned(),
        HaltReason::PrecompileError => "precompile failed".to_owned(),
        HaltReason::OpcodeNotFound | HaltReason::NotActivated => "invalid opcode".to_owned(),
        HaltReason::InvalidFEOpcode => "invalid opcode: INVALID".to_owned(),
        HaltReason::StackOverflow => "stack limit reached 1024 (1023)".to_owned(),
        HaltReason::CallTooDeep => "max call depth exceeded".to_owned(),
        HaltReason::CreateCollision => "contract address collision".to_owned(),
        HaltReason::OutOfFunds => "insufficient balance for transfer".to_owned(),
        HaltReason::StateChangeDuringStaticCall | HaltReason::CallNotAllowedInsideStatic => {
            "write protection".to_owned()
        }
        HaltReason::NonceOverflow => "nonce uint64 overflow".to_owned(),
        HaltReason::CreateContractSizeLimit => "max code size exceeded".to_owned(),
        HaltReason::CreateInitCodeSizeLimit => "max initcode size exceeded".to_owned(),
        HaltReason::CreateContractStartingWithEF => {
            "invalid code: must not begin with 0xef".to_owned()
        }
        other => other.to_string(),
    }
}

/// The reason in revert data: `Error(string)`, a Solidity `Panic(uint256)` in geth's words,
/// or the Move failure the Move call precompile reports.
fn revert_reason(output: &[u8]) -> Option<String> {
    use alloy_sol_types::SolError;
    if let Ok(revert) = alloy_sol_types::Revert::abi_decode(output) {
        return Some(revert.reason);
    }
    if let Ok(panic) = alloy_sol_types::Panic::abi_decode(output) {
        let words = match u64::try_from(panic.code) {
            Ok(0x00) => "generic panic",
            Ok(0x01) => "assert(false)",
            Ok(0x11) => "arithmetic underflow or overflow",
            Ok(0x12) => "division or modulo by zero",
            Ok(0x21) => "enum overflow",
            Ok(0x22) => "invalid encoded storage byte array accessed",
            Ok(0x31) => "out-of-bounds array access; popping on an empty array",
            Ok(0x32) => "out-of-bounds access of an array or bytesN",
            Ok(0x41) => "out of memory",
            Ok(0x51) => "uninitialized function",
            _ => return Some(format!("unknown panic code: {:#x}", panic.code)),
        };
        return Some(words.to_owned());
    }
    crate::move_revert_reason(output)
}

/// The call tracer of a Move transaction's EVM calls, if they are traced: taken from the EVM
/// that runs them for the transaction ([`EvmVm::take_call_tracer`]), and given back to it when
/// dropped, whatever the run's outcome.
pub(crate) struct MoveCallTracer<'a> {
    tracer: Option<CallTracer>,
    owner: &'a EvmVm,
}

impl MoveCallTracer<'_> {
    /// Whether the calls are traced.
    pub(crate) const fn is_tracing(&self) -> bool {
        self.tracer.is_some()
    }
}

impl Drop for MoveCallTracer<'_> {
    fn drop(&mut self) {
        if let Some(taken) = self.tracer.take() {
            self.owner.on_call_tracer(|tracer| *tracer = taken);
        }
    }
}

impl<CTX: ContextTr> Inspector<CTX, EthInterpreter> for MoveCallTracer<'_> {
    fn call(&mut self, context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        Inspector::<CTX, EthInterpreter>::call(self.tracer.as_mut()?, context, inputs)
    }

    fn call_end(&mut self, context: &mut CTX, inputs: &CallInputs, outcome: &mut CallOutcome) {
        if let Some(tracer) = &mut self.tracer {
            Inspector::<CTX, EthInterpreter>::call_end(tracer, context, inputs, outcome);
        }
    }

    fn create(&mut self, context: &mut CTX, inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        Inspector::<CTX, EthInterpreter>::create(self.tracer.as_mut()?, context, inputs)
    }

    fn create_end(
        &mut self,
        context: &mut CTX,
        inputs: &CreateInputs,
        outcome: &mut CreateOutcome,
    ) {
        if let Some(tracer) = &mut self.tracer {
            Inspector::<CTX, EthInterpreter>::create_end(tracer, context, inputs, outcome);
        }
    }

    fn selfdestruct(&mut self, contract: Address, target: Address, value: U256) {
        if let Some(tracer) = &mut self.tracer {
            Inspector::<CTX, EthInterpreter>::selfdestruct(tracer, contract, target, value);
        }
    }

    fn log(&mut self, context: &mut CTX, log: Log) {
        if let Some(tracer) = &mut self.tracer {
            Inspector::<CTX, EthInterpreter>::log(tracer, context, log);
        }
    }
}

impl<CTX: ContextTr> Inspector<CTX, EthInterpreter> for CallTracer {
    fn call(&mut self, context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        let kind = match inputs.scheme {
            CallScheme::Call => FrameKind::Call,
            CallScheme::CallCode => FrameKind::CallCode,
            CallScheme::DelegateCall => FrameKind::DelegateCall,
            CallScheme::StaticCall => FrameKind::StaticCall,
        };
        // geth gives a DELEGATECALL its caller's value (the apparent value), a STATICCALL none.
        let value = match (kind, &inputs.value) {
            (FrameKind::StaticCall, _) => None,
            (_, CallValue::Transfer(value) | CallValue::Apparent(value)) => Some(*value),
        };
        // revm runs a DELEGATECALL or CALLCODE as the calling contract (its target and, for a
        // DELEGATECALL, its caller too); geth shows the calling contract calling the code.
        let (from, to) = match kind {
            FrameKind::DelegateCall | FrameKind::CallCode => {
                (inputs.target_address, inputs.bytecode_address)
            }
            _ => (inputs.caller, inputs.target_address),
        };
        let input = if self.keeps(inputs.input.len()) {
            Bytes::copy_from_slice(&inputs.input.as_bytes(context))
        } else {
            Bytes::new()
        };
        self.enter(CallFrame::entered(kind, (from, Some(to)), value, inputs.gas_limit, input));
        None
    }

    fn call_end(&mut self, _context: &mut CTX, _inputs: &CallInputs, outcome: &mut CallOutcome) {
        let result = &outcome.result;
        self.leave(result.result, &result.output, result.gas.total_gas_spent(), None);
    }

    fn create(&mut self, _context: &mut CTX, inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        let kind = match inputs.scheme() {
            revm::context_interface::cfg::CreateScheme::Create2 { .. } => FrameKind::Create2,
            _ => FrameKind::Create,
        };
        // Shared, not copied; counted all the same, as it is held until the trace is.
        let input = if self.keeps(inputs.init_code().len()) {
            inputs.init_code().clone()
        } else {
            Bytes::new()
        };
        let (from, value, gas) = (inputs.caller(), Some(inputs.value()), inputs.gas_limit());
        self.enter(CallFrame::entered(kind, (from, None), value, gas, input));
        None
    }

    fn create_end(
        &mut self,
        _context: &mut CTX,
        _inputs: &CreateInputs,
        outcome: &mut CreateOutcome,
    ) {
        let result = &outcome.result;
        let to = if result.result.is_ok() { outcome.address } else { None };
        self.leave(result.result, &result.output, result.gas.total_gas_spent(), to);
    }

    fn selfdestruct(&mut self, contract: Address, target: Address, value: U256) {
        if self.config.only_top_call {
            return;
        }
        if !self.hold(std::mem::size_of::<CallFrame>()) {
            return;
        }
        if let Some(parent) = self.open.last_mut() {
            let ends = (contract, Some(target));
            let kind = FrameKind::SelfDestruct;
            parent.calls.push(CallFrame::entered(kind, ends, Some(value), 0, Bytes::new()));
        }
    }

    fn log(&mut self, _context: &mut CTX, log: Log) {
        // Under `onlyTopCall` the logs of the frames below the top are not kept (nor by geth):
        // not counted either, so that they cannot make a trace too large to answer.
        if !self.config.with_logs || (self.config.only_top_call && self.open.len() > 1) {
            return;
        }
        let bytes = std::mem::size_of::<FrameLog>() + log.data.data.len() + 32 * log.topics().len();
        if !self.hold(bytes) {
            return;
        }
        if let Some(frame) = self.open.last_mut() {
            let position = frame.calls.len();
            frame.logs.push(FrameLog { log, position });
        }
    }
}

impl EvmVm {
    /// The same EVM building the call trace of each EVM transaction it runs, and of each Move
    /// transaction a [`crate::DuetVm`] runs with it (see the module documentation), for
    /// [`take_call_traces`](Self::take_call_traces), in the order they ran:
    /// for sequential runs (a parallel run would trace its re-executions too). Its transactions
    /// run with exact balances.
    #[must_use]
    pub fn with_call_tracer(mut self, config: CallTraceConfig) -> Self {
        self.tracer = Some(std::sync::Mutex::new(Either::Right(CallTracer::new(config))));
        self
    }

    /// `work` on this EVM's call tracer, locked, if it has one (`None` if not).
    fn on_call_tracer<R>(&self, work: impl FnOnce(&mut CallTracer) -> R) -> Option<R> {
        match self.tracer.as_ref().map(crate::lock_tracer).as_deref_mut() {
            Some(Either::Right(tracer)) => Some(work(tracer)),
            _ => None,
        }
    }

    /// Starts the trace of `transaction`, a Move transaction, if this EVM has a call tracer.
    pub(crate) fn begin_move_trace(&self, transaction: &duet_types::MoveTransaction) {
        self.on_call_tracer(|tracer| {
            let input = Bytes::from(transaction.payload.encode());
            tracer.begin_move_transaction(transaction.sender, transaction.gas_limit, input);
        });
    }

    /// Ends the trace of the Move transaction begun last, which ran to `receipt` (or was
    /// rejected: `None`).
    pub(crate) fn end_move_trace(&self, receipt: Option<&duet_move::MoveReceipt>) {
        self.on_call_tracer(|tracer| match receipt {
            Some(receipt) => {
                let error = (!receipt.is_success()).then(|| receipt.status.to_string());
                tracer.end_move_transaction(receipt.gas_used, error);
            }
            None => tracer.drop_move_transaction(),
        });
    }

    /// This EVM's call tracer, taken out for a Move transaction's EVM calls (an empty one of
    /// the same configuration stays behind until it is given back, when what it returns is
    /// dropped).
    pub(crate) fn take_call_tracer(&self) -> MoveCallTracer<'_> {
        let tracer = self.on_call_tracer(|tracer| {
            let empty = tracer.empty_like();
            std::mem::replace(tracer, empty)
        });
        MoveCallTracer { tracer, owner: self }
    }

    /// The call trace of each EVM transaction run since the last call, in the order they ran
    /// (and of each Move transaction, run by a [`crate::DuetVm`]); nothing without a call
    /// tracer.
    #[must_use]
    pub fn take_call_traces(&self) -> Vec<Trace> {
        self.on_call_tracer(CallTracer::take).unwrap_or_default()
    }
}
