//! What one EVM execution hands on to the next on the same thread.
//!
//! revm's journal (with the precompile addresses it keeps warm) and its memory buffer hold no
//! state of a transaction once the transaction has finished, but building them (the warm
//! precompile set above all) costs a large part of a plain ETH transfer's execution: revm keeps
//! them for a whole block when it runs one transaction after another. Duet builds an EVM per
//! transaction (each reads through its own Block-STM view), so each thread keeps the parts of its
//! last finished EVM here and the next EVM it builds starts from them.
//!
//! The kept journal is clean (no account, log, journal entry or transient slot, at depth 0), as
//! revm leaves it after any outcome (it discards a rejected transaction's journal), and its
//! buffers are cut back to a few hundred kilobytes when a transaction made them larger: a thread
//! must not hold that memory for good, least of all the node's RPC threads, where anyone can run
//! calls. Whether the kept precompile addresses are the
//! ones the next EVM needs is checked by the hard fork and the presence of the Move call
//! precompile, which decide them.
//!
//! The call frames are not kept: each holds a 32 KiB stack, a deep call chain would leave
//! hundreds of them, and reusing them saved under 1 % of an ERC-20 transfer's instructions.
//!
//! Each thread also keeps what would otherwise be shared by every thread and written by each on
//! every transaction: a copy of the chain configuration whose gas table ([`GasParams`], behind an
//! `Arc`) is its own ([`thread_cfg`]), and analyzed bytecode by code hash ([`kept_code`],
//! [`keep_code`]). Cloning and dropping an `Arc` another core also clones writes its reference
//! count's cache line on both cores, and a lock read-locked by both does the same: on this
//! machine's two cores, shared, they held an ERC-20 block's parallel/sequential ratio at
//! 1.15–1.17 when the cores are far apart (a 400 ns round trip; 1.27–1.33 with a copy each) and
//! cost a few percent when they are close.

use std::cell::RefCell;
use std::sync::Arc;

use duet_types::B256;
use revm::context::journal::warm_addresses::WarmAddresses;
use revm::context::journal::JournalInner;
use revm::context::{CfgEnv, LocalContext};
use revm::context_interface::cfg::GasParams;
use revm::context_interface::journaled_state::entry::JournalEntry;
use revm::context_interface::local::LocalContextTr;
use revm::primitives::hardfork::SpecId;
use revm::primitives::map::B256Map;
use revm::state::Bytecode;

/// The precompile addresses a kept journal has warm: decided by the hard fork and by whether the
/// Move call precompile is among them.
pub(crate) type WarmKey = (SpecId, bool);

/// The reusable parts of one EVM.
pub(crate) struct Scratch {
    pub(crate) journal: JournalInner<JournalEntry>,
    pub(crate) local: LocalContext,
}

/// The most journal entries (about 40 bytes each) and transient slots a kept journal has room
/// for, and the most bytes of memory buffer kept.
const KEPT_JOURNAL_ENTRIES: usize = 8192;
const KEPT_TRANSIENT_SLOTS: usize = 1024;
const KEPT_MEMORY_BYTES: usize = 256 * 1024;

thread_local! {
    /// The parts of the thread's last finished EVM. One EVM runs at a time on a thread (a Move
    /// transaction's EVM cannot call Move, and Move called from the EVM builds no EVM); a nested
    /// one would build its own parts.
    static KEPT_PARTS: RefCell<Option<(WarmKey, Scratch)>> = const { RefCell::new(None) };
}

impl Scratch {
    /// Parts for an EVM whose precompile addresses are decided by `key`: the kept ones if the
    /// thread has them (their warm addresses dropped if `key` differs), new ones otherwise.
    pub(crate) fn take(key: WarmKey) -> Self {
        match KEPT_PARTS.with_borrow_mut(Option::take) {
            Some((kept_key, mut scratch)) => {
                if kept_key != key {
                    // revm warms the right ones when it finds none.
                    scratch.journal.warm_addresses = WarmAddresses::default();
                }
                scratch
            }
            None => Self { journal: JournalInner::new(), local: LocalContext::default() },
        }
    }

    /// Keeps the parts of a finished EVM for the thread's next one, their buffers cut back to a
    /// few hundred kilobytes.
    pub(crate) fn keep(mut self, key: WarmKey) {
        let journal = &mut self.journal;
        // revm finalizes the journal after every outcome (and `from_move` after its calls).
        debug_assert!(
            journal.state.is_empty()
                && journal.journal.is_empty()
                && journal.logs.is_empty()
                && journal.transient_storage.is_empty()
                && journal.selfdestructed_addresses.is_empty()
                && journal.depth == 0,
            "a finished EVM leaves its journal clean"
        );
        journal.journal.shrink_to(KEPT_JOURNAL_ENTRIES);
        journal.transient_storage.shrink_to(KEPT_TRANSIENT_SLOTS);
        journal.selfdestructed_addresses.shrink_to(KEPT_TRANSIENT_SLOTS);
        self.local.clear();
        self.local.shared_memory_buffer.borrow_mut().shrink_to(KEPT_MEMORY_BYTES);
        KEPT_PARTS.with_borrow_mut(|kept| *kept = Some((key, self)));
    }
}

thread_local! {
    /// The configuration the thread last ran with (sharing its gas table with the EVM's), and
    /// the thread's copy of it (with a gas table of its own).
    static KEPT_CFG: RefCell<Option<(CfgEnv, CfgEnv)>> = const { RefCell::new(None) };

    /// Analyzed bytecode by code hash, each analyzed on this thread (see [`keep_code`]).
    static KEPT_CODE: RefCell<KeptCode> = RefCell::new(KeptCode::default());
}

/// `cfg` for an EVM on this thread: a copy whose gas table belongs to the thread. Made again only
/// when the configuration differs from the last one. revm gives every configuration of a hard
/// fork the same process-wide gas table, so the comparison of the tables is a pointer check; an
/// equal configuration with a table of its own (an overridden one) is kept, so that the
/// comparisons after it are pointer checks too.
pub(crate) fn thread_cfg(cfg: &CfgEnv) -> CfgEnv {
    KEPT_CFG.with_borrow_mut(|kept| match kept {
        Some((last, own)) if last == cfg => {
            if !std::ptr::eq(last.gas_params.table(), cfg.gas_params.table()) {
                *last = cfg.clone();
            }
            own.clone()
        }
        _ => {
            let mut own = cfg.clone();
            own.gas_params = GasParams::new(Arc::new(*cfg.gas_params.table()));
            *kept = Some((cfg.clone(), own.clone()));
            own
        }
    })
}

/// The thread's analyzed bytecode, by code hash. Code is addressed by its hash, so an entry is
/// never stale, whichever execution (or chain) put it there.
#[derive(Default)]
struct KeptCode {
    code: B256Map<Bytecode>,
    /// About the bytes the kept code takes.
    bytes: usize,
}

/// The most bytes of analyzed code a thread keeps (a thread that has seen more starts again):
/// room for about seventy contracts of the largest size (24 KiB), while the node's RPC threads,
/// which run calls anyone can make, hold about this much at most each.
const KEPT_CODE_BYTES: usize = 2 << 20;

/// The analyzed code with `code_hash`, if this thread has it.
pub(crate) fn kept_code(code_hash: B256) -> Option<Bytecode> {
    KEPT_CODE.with_borrow(|kept| kept.code.get(&code_hash).cloned())
}

/// Keeps `code`, which has `code_hash` and was analyzed on this thread, for the thread's next
/// executions: analyzing code (its jump table) on every call would cost more than an ERC-20
/// transfer.
pub(crate) fn keep_code(code_hash: B256, code: &Bytecode) {
    // The code, its jump table (a bit a byte) and about a hundred bytes of entry, padding and
    // reference counts.
    let size = code.len() + code.len() / 8 + 128;
    if size > KEPT_CODE_BYTES {
        return;
    }
    KEPT_CODE.with_borrow_mut(|kept| {
        if kept.bytes + size > KEPT_CODE_BYTES {
            kept.code.clear();
            kept.bytes = 0;
        }
        if kept.code.insert(code_hash, code.clone()).is_none() {
            kept.bytes += size;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{keep_code, kept_code, thread_cfg, Arc, GasParams};
    use revm::context::CfgEnv;
    use revm::context_interface::cfg::GasId;
    use revm::primitives::hardfork::SpecId;
    use revm::state::Bytecode;

    #[test]
    fn a_thread_cfg_equals_the_cfg_and_follows_its_changes() {
        let mut cfg = CfgEnv::new_with_spec(SpecId::PRAGUE);
        cfg.chain_id = 7;
        let own = thread_cfg(&cfg);
        assert!(own == cfg, "the copy is the same configuration");
        assert!(
            !std::ptr::eq(own.gas_params.table(), cfg.gas_params.table()),
            "with a gas table of the thread's own"
        );
        cfg.chain_id = 8;
        cfg.disable_nonce_check = true;
        assert!(thread_cfg(&cfg) == cfg, "a changed configuration is copied again");
        let other = CfgEnv::new_with_spec(SpecId::CANCUN);
        assert!(thread_cfg(&other) == other);
        assert_eq!(thread_cfg(&other).spec, SpecId::CANCUN);
        // The same configuration with a gas table of its own.
        let mut again = CfgEnv::new_with_spec(SpecId::CANCUN);
        again.gas_params = GasParams::new(Arc::new(*other.gas_params.table()));
        assert!(thread_cfg(&again) == again);
        let id = GasId::memory_linear_cost();
        let cost = again.gas_params.get(id) + 1;
        again.gas_params.override_gas([(id, cost)]);
        assert_eq!(thread_cfg(&again).gas_params.get(id), cost, "a changed gas table is copied");
    }

    #[test]
    fn kept_code_is_found_by_hash_only_on_its_thread() {
        let code = Bytecode::new_raw(vec![0x60, 0x01, 0x60, 0x00, 0x55, 0x00].into());
        let hash = code.hash_slow();
        assert!(kept_code(hash).is_none());
        keep_code(hash, &code);
        assert_eq!(kept_code(hash).map(|kept| kept.original_bytes()), Some(code.original_bytes()));
        std::thread::spawn(move || assert!(kept_code(hash).is_none())).join().expect("no panic");
    }
}
