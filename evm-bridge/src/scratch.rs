//! What one EVM execution hands on to the next on the same thread.
//!
//! revm's journal (with the precompile addresses it keeps warm), its call frames (each with a
//! 32 KiB stack) and its memory buffer hold no state of a transaction once the transaction has
//! finished, but building them costs more than a plain ETH transfer's execution: revm keeps them
//! for a whole block when it runs one transaction after another. Duet builds an EVM per
//! transaction (each reads through its own Block-STM view), so each thread keeps the parts of its
//! finished EVMs here and the next EVM it builds starts from them.
//!
//! Only parts left clean are kept: a journal with no account, log, journal entry or transient
//! slot, at depth 0, as revm's own end of a transaction leaves it. An EVM that stopped on an
//! error is dropped instead. Whether the kept precompile addresses are the ones the next EVM
//! needs is checked by the hard fork and the presence of the Move call precompile, which decide
//! them.

use std::cell::RefCell;

use revm::context::journal::warm_addresses::WarmAddresses;
use revm::context::journal::JournalInner;
use revm::context::LocalContext;
use revm::context_interface::journaled_state::entry::JournalEntry;
use revm::context_interface::local::{FrameStack, LocalContextTr};
use revm::handler::EthFrame;
use revm::interpreter::interpreter::EthInterpreter;
use revm::primitives::hardfork::SpecId;

/// The precompile addresses a kept journal has warm: decided by the hard fork and by whether the
/// Move call precompile is among them.
pub(crate) type WarmKey = (SpecId, bool);

/// The reusable parts of one EVM.
pub(crate) struct Scratch {
    pub(crate) journal: JournalInner<JournalEntry>,
    pub(crate) local: LocalContext,
    pub(crate) frames: FrameStack<EthFrame<EthInterpreter>>,
}

/// How many EVMs' parts a thread keeps: an EVM transaction and the Move code it calls, or a
/// Move transaction's EVM, are the most that run at once on one thread.
const KEPT: usize = 2;

thread_local! {
    static KEPT_PARTS: RefCell<Vec<(WarmKey, Scratch)>> = const { RefCell::new(Vec::new()) };
}

impl Scratch {
    /// Parts for an EVM whose precompile addresses are decided by `key`: kept ones if the thread
    /// has any (their warm addresses dropped if `key` differs), new ones otherwise.
    pub(crate) fn take(key: WarmKey) -> Self {
        match KEPT_PARTS.with_borrow_mut(Vec::pop) {
            Some((kept_key, mut scratch)) => {
                if kept_key != key {
                    // revm warms the right ones when it finds none.
                    scratch.journal.warm_addresses = WarmAddresses::default();
                }
                scratch
            }
            None => Self {
                journal: JournalInner::new(),
                local: LocalContext::default(),
                frames: FrameStack::new(),
            },
        }
    }

    /// Keeps the parts of a finished EVM for the thread's next one, if they are clean.
    pub(crate) fn keep(mut self, key: WarmKey) {
        let journal = &self.journal;
        let clean = journal.state.is_empty()
            && journal.journal.is_empty()
            && journal.logs.is_empty()
            && journal.transient_storage.is_empty()
            && journal.selfdestructed_addresses.is_empty()
            && journal.depth == 0;
        if !clean {
            return;
        }
        self.local.clear();
        self.frames.clear();
        KEPT_PARTS.with_borrow_mut(|kept| {
            if kept.len() < KEPT {
                kept.push((key, self));
            }
        });
    }
}
