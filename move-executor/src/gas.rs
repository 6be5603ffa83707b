//! Gas for Move transactions: the schedule, and the meter the Move VM charges.
//!
//! Move gas is counted in the same unit as EVM gas, so a transaction's gas limit, gas price and
//! fee mean the same in both VMs (and a cross-VM call needs no exchange rate). The schedule:
//!
//! | what | gas |
//! |---|---|
//! | every transaction (signature, nonce, fee) | 21 000 + 16 per payload byte |
//! | simple instruction (arithmetic, branch, load of a small constant, …) | 1 (`*`, `/`, `%`: 2) |
//! | call | 10 + 1 per argument (+ 1 per type argument) + 1 per 8 parameters and locals of the function called (its frame) |
//! | constant load | 2 + 1 per 32 bytes; a vector of vectors 4 per byte (each may become a value of its own) |
//! | move, store of a local; write through a reference | 1 |
//! | copy of a local; read through a reference | 1 + 1 per 32 units of the value's size (through a reference, of the value it points to: the VM is patched for it, `vendor/README.md`), twice that while the transaction's values hold more than 4 MiB, four times past 8 MiB; a value's size counts 16 a number or boolean, 20 an address, a vector's primitive elements their bytes, and 128 every vector and struct besides its elements (each a value of its own to allocate, borrow and walk) |
//! | `==`, `!=` | 1 + 1 per 32 units of each side's size, a vector or struct counting 32 (comparing one allocates nothing), twice that past 8 MiB held |
//! | pack, unpack of a struct | 2 + 1 per field |
//! | vector operation | 2 (+ 1 per element for pack and unpack) |
//! | a type an instruction instantiates (a generic call's type arguments, a vector or generic struct instruction's type) | 1 per node (`u64`: 1 node, `vector<Coin<T>>`: 3; the VM is patched to report them) |
//! | `borrow_global`, `exists`, `move_from`, `move_to` | 50 (+ 1 per 32 units moved) |
//! | first load of a resource in a Move session (a transaction, or each call from Solidity) | 2 100 + 4 per byte, before its bytes are decoded (each may become a value of its own) |
//! | code a call loads: each module of the call's closure outside the framework, every call, cached or not (`loading`) | 2 600 + 1 per 2 bytes + 100 per dependency it names |
//! | code a publication loads to verify the bundle: stored dependencies, upgraded modules' stored versions, friends (`loading`) | the same, per module |
//! | native function | its own cost (below) |
//! | `eth::balance`, `account::sequence_number` | 2 100 |
//! | ETH transfer (`eth::transfer`) | 6 700 |
//! | resource written, new / changed | 20 000 / 2 900, + 8 per byte |
//! | resource deleted | 0 |
//! | event | 375 + 1 per 32 units of the value's size when emitted, + 8 per byte of its data and type name when the transaction ends |
//! | `bcs::to_bytes` | 1 per 32 units of the value's size + 1 per byte written |
//! | call into the EVM (`evm::call`, `evm::static_call`, …) | 2 600 + the EVM gas the call used |
//! | `evm::keccak256` | 30 + 6 per 32 bytes |
//! | module published (its write included) | 20 000 + 200 per byte |
//!
//! Besides gas, the heap a transaction's values hold at once is bounded: 16 MiB as the VM counts
//! it ([`MEMORY_QUOTA`]); past it the transaction fails with `MEMORY_LIMIT_EXCEEDED`. Copies and
//! comparisons cost more while the transaction holds more than [`WARM_HEAP`] or [`COLD_HEAP`]
//! (its values outgrow the caches).
//!
//! Loading code is priced like the EVM's cold account access (2 600), reads and writes like its
//! cold `SLOAD` (2 100), `SSTORE` of a new slot
//! (20 000) and of a changed slot (2 900), logs (375 + 8 per byte) and code deposit (200 per
//! byte); instructions are priced well below EVM opcodes because one Move instruction is
//! executed by a typed interpreter over typed values.
//!
//! When the meter runs out, the transaction stops with `OUT_OF_GAS`: all of its gas limit is
//! charged and every other effect is discarded.

use std::cell::Cell;
use std::rc::Rc;

use move_binary_format::errors::{PartialVMError, PartialVMResult};
use move_core_types::gas_algebra::{InternalGas, NumArgs, NumBytes};
use move_core_types::language_storage::ModuleId;
use move_core_types::vm_status::StatusCode;
use move_vm_types::gas::{GasMeter, SimpleInstruction};
use move_vm_types::views::{TypeView, ValueView};

/// Gas of every transaction.
pub const TRANSACTION_BASE: u64 = 21_000;
/// Gas per byte of the payload.
pub const PAYLOAD_BYTE: u64 = 16;
/// First load of a resource.
pub const RESOURCE_LOAD: u64 = 2_100;
/// Gas per byte of a resource at its first load, charged before the bytes are decoded: each byte
/// may become a value of its own (a vector of empty vectors), which costs what copying it costs.
pub const RESOURCE_LOAD_BYTE: u64 = 4;
/// Reading a balance or a nonce from a native function.
pub const NATIVE_STATE_READ: u64 = 2_100;
/// Moving ETH between two accounts.
pub const ETH_TRANSFER: u64 = 6_700;
/// Writing a new resource.
pub const RESOURCE_CREATE: u64 = 20_000;
/// Changing a resource.
pub const RESOURCE_CHANGE: u64 = 2_900;
/// Per byte of a resource written.
pub const WRITE_BYTE: u64 = 8;
/// An event (charged when it is emitted, with 1 per unit of the value's size in memory; its
/// bytes when the transaction's effects are written).
pub const EVENT: u64 = 375;
/// Per byte of an event.
pub const EVENT_BYTE: u64 = 8;
/// A call into the EVM, before the EVM gas it uses (like a cold account access).
pub const EVM_CALL: u64 = 2_600;
/// `evm::keccak256`, and per 32 bytes hashed.
pub const KECCAK: u64 = 30;
/// Per 32 bytes hashed by `evm::keccak256`.
pub const KECCAK_WORD: u64 = 6;
/// Loading a module for a call or a publication (as a cold account access costs in the EVM; see
/// `loading`).
pub const MODULE_LOAD: u64 = 2_600;
/// Bytes of a loaded module per unit of gas: what loading a module into an instance whose code
/// cache was emptied costs (linking it and building the instance's tables for it, about 6 ns a
/// byte; `cargo run --release -p duet-move --example cold_load`), at about arithmetic's price,
/// since a call pays the same whether its code was cached or not.
pub const MODULE_LOAD_BYTES_PER_GAS: u64 = 2;
/// Each module a loaded module names as a dependency (or, in a publication, as a friend): the
/// walk looks each up.
pub const MODULE_LINK: u64 = 100;
/// Publishing a module.
pub const MODULE: u64 = 20_000;
/// Per byte of a published module.
pub const MODULE_BYTE: u64 = 200;
/// Per unit of the verifier's reference analysis work on a published module
/// ([`crate::limits::check_module`] returns it: about 3 µs each in a release build), so that verifying
/// a module costs about as much gas per second as running code: a few hundred bytes that declare
/// a hundred references and branch through them cost the verifier as much as 100 KB of code.
pub const VERIFICATION_WORK: u64 = 100;
/// Per node of the layout `bcs::to_bytes` serializes with: the VM copies a cached layout whole
/// for each call (allocations it frees after), and a layout may have 512 nodes where its type
/// names two (`vector<S>` of a struct of 254 fields).
pub const LAYOUT_NODE: u64 = 3;
/// A `bcs::to_bytes` that fails (a value without a layout, or one that does not serialize).
pub const BCS_FAILURE: u64 = 10;

const CALL: u64 = 10;
const GLOBAL: u64 = 50;
/// A call's parameters and locals per unit of gas: its frame allocates them (a function of 255
/// locals and no code, called in a loop, ran at 33 ns a unit of gas for its call's 10).
const LOCALS_PER_GAS: u64 = 8;
/// Type nodes an instruction may instantiate per unit of gas: a type is copied each time (an
/// allocation a node: about 23 ns, measured; at 4 nodes a gas a loop of `vector::length` over a
/// 15-node type ran at 28 ns a unit of gas).
const TYPE_NODES_PER_GAS: u64 = 1;

/// The gas a transaction with a payload of `payload_bytes` pays before it runs.
#[must_use]
pub fn intrinsic_gas(payload_bytes: usize) -> u64 {
    TRANSACTION_BASE.saturating_add(payload_gas(payload_bytes))
}

/// The gas `payload_bytes` of payload pay (a transaction's, or the arguments of a call from
/// Solidity): they become Move values before the VM meters anything.
#[must_use]
pub fn payload_gas(payload_bytes: usize) -> u64 {
    PAYLOAD_BYTE.saturating_mul(payload_bytes as u64)
}

/// Units of a value's size (the VM's abstract size: 16 a number, 20 an address, a primitive
/// vector's elements their bytes, 128 a vector or struct besides its elements, 32 when it is
/// compared) per unit of gas, wherever an instruction or native copies, compares, reads or
/// serializes a value.
pub const SIZE_UNITS_PER_GAS: u64 = 32;

/// While the transaction's values hold more than this much heap (in the VM's count, as
/// [`MEMORY_QUOTA`] counts it), a copy (from a local, or read through a reference) pays twice
/// per unit of its size, and past [`COLD_HEAP`] four times; a comparison pays twice past
/// [`COLD_HEAP`].
///
/// A value's containers are allocations of their own, wherever the allocator put them: once
/// the values a transaction holds outgrow the processor's caches, walking one takes a miss per
/// container. Measured with `move_gas` (vectors of one-field structs shuffled in memory, against
/// plain arithmetic's 13 ns a unit of gas): a copy of 2 000 ran at 12 ns a unit of gas, of
/// 8 000 (about 1.2 MB held) at 13.5, of 40 000 (6 MB) at 16.5 with a surcharge of its own, of
/// 60 000 (9 MB) at 33.5; comparing two vectors of 40 000 at 6.7, of 60 000 at 10, and of
/// 150 000 (past the 32 MiB L3 cache, and past the quota now) at 68.
pub const WARM_HEAP: u64 = 4 << 20;

/// See [`WARM_HEAP`].
pub const COLD_HEAP: u64 = 8 << 20;

/// The heap a transaction's Move values may hold at once, in the VM's count: 16 MiB, half the
/// processor's 32 MiB L3 cache, so that the two executing threads' values together fit it
/// (past it, each access to a container is a miss: comparing two shuffled vectors of 150 000
/// structs, 34 MB, ran at 68 ns a unit of gas against 10 for 18 MB).
///
/// Gas alone does not bound it: gas grows with the work done, and a few gas can build a value of
/// many bytes (a copy of a vector of empty vectors cost 1 gas per 2 of them, holding about 95
/// bytes each, so a transaction at the 16 777 216 gas cap could hold 1.5 GB; at 4 gas each now,
/// it could still hold about 400 MB). The VM counts the
/// heap every value holds (`HEAP_CONTAINER` bytes a vector or struct, `HEAP_SLOT` an element or
/// field among values, a primitive element its own bytes) as copies, packs, pushes, constants,
/// loaded resources and natives' results create it, and frees it as values are popped,
/// overwritten, compared, unpacked or left in a frame that returns. Past this figure the
/// transaction fails with `MEMORY_LIMIT_EXCEEDED` and pays the gas it used.
///
/// A vector counts by its length, not its capacity: what pops leave allocated is not counted.
/// Gas bounds it: a slot left so took a push and a pop, about 26 gas in a loop, so a transaction
/// at the gas cap can leave about 650 000 slots, at most 31 MB at `HEAP_SLOT` (48 bytes, no
/// less than a slot takes), besides its counted heap; and a vector's capacity may reach twice
/// its length as it grows.
pub const MEMORY_QUOTA: u64 = 16 << 20;

/// The sub-status of the `VM_EXTENSION_ERROR` a transaction fails with when its values hold
/// more than [`MEMORY_QUOTA`].
pub(crate) const MEMORY_QUOTA_SUB_STATUS: u64 = 0xD0E7_0001;

/// A gas meter with a budget, charging the schedule above, and the heap held by the
/// transaction's values, bounded by [`MEMORY_QUOTA`].
#[derive(Debug)]
pub struct DuetGasMeter {
    /// Shared with the natives that pass gas on (a call into the EVM gets what is left).
    remaining: Rc<Cell<u64>>,
    /// The heap the transaction's values hold, as the VM counts it.
    heap: u64,
}

impl DuetGasMeter {
    /// A meter that allows `budget` gas.
    #[must_use]
    pub fn new(budget: u64) -> Self {
        Self { remaining: Rc::new(Cell::new(budget)), heap: 0 }
    }

    /// The gas left.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.remaining.get()
    }

    /// A handle that reads the gas left as it changes.
    pub(crate) fn gauge(&self) -> Rc<Cell<u64>> {
        Rc::clone(&self.remaining)
    }

    /// Uses all the gas left.
    pub(crate) fn exhaust(&mut self) {
        self.remaining.set(0);
    }

    /// Charges `amount`.
    ///
    /// # Errors
    /// `OUT_OF_GAS` if less than `amount` is left (the meter is then empty).
    pub fn charge(&mut self, amount: u64) -> PartialVMResult<()> {
        if let Some(remaining) = self.remaining.get().checked_sub(amount) {
            self.remaining.set(remaining);
            Ok(())
        } else {
            self.remaining.set(0);
            Err(PartialVMError::new(StatusCode::OUT_OF_GAS))
        }
    }

    fn charge_sized(&mut self, base: u64, value: &impl ValueView) -> PartialVMResult<()> {
        let size = u64::from(value.legacy_abstract_memory_size());
        self.charge(base + size / SIZE_UNITS_PER_GAS)
    }

    /// A copy of `value`: 1 gas, and 1 per [`SIZE_UNITS_PER_GAS`] units of its size, twice or
    /// four times that while the transaction holds more than [`WARM_HEAP`] or [`COLD_HEAP`].
    fn charge_copy(&mut self, value: &impl ValueView) -> PartialVMResult<()> {
        let size = u64::from(value.legacy_abstract_memory_size());
        let times = match self.heap {
            heap if heap > COLD_HEAP => 4,
            heap if heap > WARM_HEAP => 2,
            _ => 1,
        };
        self.charge(1 + size * times / SIZE_UNITS_PER_GAS)
    }

    /// A comparison: 1 gas, and 1 per [`SIZE_UNITS_PER_GAS`] units of each side's size (a
    /// container counting 32, see `Value::comparison_size`), twice that while the transaction
    /// holds more than [`COLD_HEAP`].
    fn charge_comparison(
        &mut self,
        lhs: &impl ValueView,
        rhs: &impl ValueView,
    ) -> PartialVMResult<()> {
        let times = if self.heap > COLD_HEAP { 2 } else { 1 };
        let lhs = u64::from(lhs.legacy_abstract_memory_size()) * times;
        let rhs = u64::from(rhs.legacy_abstract_memory_size()) * times;
        self.charge(1 + lhs / SIZE_UNITS_PER_GAS + rhs / SIZE_UNITS_PER_GAS)
    }
}

impl GasMeter for DuetGasMeter {
    fn charge_frame(&mut self, locals: u64) -> PartialVMResult<()> {
        self.charge(locals / LOCALS_PER_GAS)
    }

    fn use_heap(&mut self, bytes: u64) -> PartialVMResult<()> {
        self.heap = self.heap.saturating_add(bytes);
        if self.heap > MEMORY_QUOTA {
            return Err(PartialVMError::new(StatusCode::VM_EXTENSION_ERROR)
                .with_sub_status(MEMORY_QUOTA_SUB_STATUS)
                .with_message(format!(
                    "its values held more than {} MiB at once",
                    MEMORY_QUOTA >> 20
                )));
        }
        Ok(())
    }

    fn release_heap(&mut self, bytes: u64) {
        self.heap = self.heap.saturating_sub(bytes);
    }

    fn charge_simple_instr(&mut self, instruction: SimpleInstruction) -> PartialVMResult<()> {
        let cost = match instruction {
            SimpleInstruction::Mul | SimpleInstruction::Div | SimpleInstruction::Mod => 2,
            _ => 1,
        };
        self.charge(cost)
    }

    fn charge_call(
        &mut self,
        _module_id: &ModuleId,
        _func_name: &str,
        args: impl ExactSizeIterator<Item = impl ValueView>,
    ) -> PartialVMResult<()> {
        self.charge(CALL + args.len() as u64)
    }

    fn charge_call_generic(
        &mut self,
        _module_id: &ModuleId,
        _func_name: &str,
        ty_args: impl ExactSizeIterator<Item = impl TypeView>,
        args: impl ExactSizeIterator<Item = impl ValueView>,
    ) -> PartialVMResult<()> {
        self.charge(CALL + args.len() as u64 + ty_args.len() as u64)
    }

    /// Per 32 bytes, as the VM reports them: it reports a vector of vectors' bytes 128 times
    /// over, since each of them may become a value of its own (an empty vector, which counts 128
    /// when copied), built at every load.
    fn charge_ld_const(&mut self, size: NumBytes) -> PartialVMResult<()> {
        self.charge(2 + u64::from(size) / SIZE_UNITS_PER_GAS)
    }

    fn charge_copy_loc(&mut self, val: impl ValueView) -> PartialVMResult<()> {
        self.charge_copy(&val)
    }

    // Moving a value (out of a local, into one, through a reference, into a vector) moves a
    // pointer: 1 gas whatever its size (it was charged by size, which walked the whole value for
    // each move). Its drop, which walks it, is paid by what created it.
    fn charge_move_loc(&mut self, _val: impl ValueView) -> PartialVMResult<()> {
        self.charge(1)
    }

    fn charge_store_loc(&mut self, _val: impl ValueView) -> PartialVMResult<()> {
        self.charge(1)
    }

    fn charge_pack(
        &mut self,
        _is_generic: bool,
        args: impl ExactSizeIterator<Item = impl ValueView>,
    ) -> PartialVMResult<()> {
        self.charge(2 + args.len() as u64)
    }

    fn charge_unpack(
        &mut self,
        _is_generic: bool,
        args: impl ExactSizeIterator<Item = impl ValueView>,
    ) -> PartialVMResult<()> {
        self.charge(2 + args.len() as u64)
    }

    fn charge_read_ref(&mut self, ref_val: impl ValueView) -> PartialVMResult<()> {
        self.charge_copy(&ref_val)
    }

    fn charge_write_ref(&mut self, _val: impl ValueView) -> PartialVMResult<()> {
        self.charge(1)
    }

    fn charge_eq(&mut self, lhs: impl ValueView, rhs: impl ValueView) -> PartialVMResult<()> {
        self.charge_comparison(&lhs, &rhs)
    }

    fn charge_neq(&mut self, lhs: impl ValueView, rhs: impl ValueView) -> PartialVMResult<()> {
        self.charge_eq(lhs, rhs)
    }

    fn charge_borrow_global(
        &mut self,
        _is_mut: bool,
        _is_generic: bool,
        _ty: impl TypeView,
        _is_success: bool,
    ) -> PartialVMResult<()> {
        self.charge(GLOBAL)
    }

    fn charge_exists(
        &mut self,
        _is_generic: bool,
        _ty: impl TypeView,
        _exists: bool,
    ) -> PartialVMResult<()> {
        self.charge(GLOBAL)
    }

    fn charge_move_from(
        &mut self,
        _is_generic: bool,
        _ty: impl TypeView,
        val: Option<impl ValueView>,
    ) -> PartialVMResult<()> {
        match val {
            Some(val) => self.charge_sized(GLOBAL, &val),
            None => self.charge(GLOBAL),
        }
    }

    fn charge_move_to(
        &mut self,
        _is_generic: bool,
        _ty: impl TypeView,
        val: impl ValueView,
        _is_success: bool,
    ) -> PartialVMResult<()> {
        self.charge_sized(GLOBAL, &val)
    }

    fn charge_vec_pack<'a>(
        &mut self,
        _ty: impl TypeView + 'a,
        args: impl ExactSizeIterator<Item = impl ValueView>,
    ) -> PartialVMResult<()> {
        self.charge(2 + args.len() as u64)
    }

    fn charge_vec_len(&mut self, _ty: impl TypeView) -> PartialVMResult<()> {
        self.charge(2)
    }

    fn charge_vec_borrow(
        &mut self,
        _is_mut: bool,
        _ty: impl TypeView,
        _is_success: bool,
    ) -> PartialVMResult<()> {
        self.charge(2)
    }

    fn charge_vec_push_back(
        &mut self,
        _ty: impl TypeView,
        _val: impl ValueView,
    ) -> PartialVMResult<()> {
        self.charge(2)
    }

    fn charge_vec_pop_back(
        &mut self,
        _ty: impl TypeView,
        _val: Option<impl ValueView>,
    ) -> PartialVMResult<()> {
        self.charge(2)
    }

    fn charge_vec_unpack(
        &mut self,
        _ty: impl TypeView,
        expect_num_elements: NumArgs,
    ) -> PartialVMResult<()> {
        self.charge(2 + u64::from(expect_num_elements))
    }

    fn charge_vec_swap(&mut self, _ty: impl TypeView) -> PartialVMResult<()> {
        self.charge(2)
    }

    fn charge_load_resource(&mut self, loaded: Option<NumBytes>) -> PartialVMResult<()> {
        let bytes = loaded.map_or(0, u64::from);
        self.charge(RESOURCE_LOAD.saturating_add(bytes.saturating_mul(RESOURCE_LOAD_BYTE)))
    }

    fn charge_native_function(&mut self, amount: InternalGas) -> PartialVMResult<()> {
        self.charge(u64::from(amount))
    }

    fn charge_type_nodes(&mut self, nodes: u64) -> PartialVMResult<()> {
        self.charge(nodes / TYPE_NODES_PER_GAS)
    }
}
