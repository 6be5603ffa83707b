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

use std::cell::RefCell;

use revm::context::journal::warm_addresses::WarmAddresses;
use revm::context::journal::JournalInner;
use revm::context::LocalContext;
use revm::context_interface::journaled_state::entry::JournalEntry;
use revm::context_interface::local::LocalContextTr;
use revm::primitives::hardfork::SpecId;

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
