//! The collaborative scheduler of Block-STM (Gelashvili et al., `PPoPP` 2023, algorithms 4 and 5).
//!
//! The scheduler knows only transaction indices and incarnations. Worker threads ask it for the
//! next task; it hands out execution tasks in block order from `execution_index` and validation
//! tasks in block order from `validation_index`, always preferring the lower of the two, and moves
//! either index back when a transaction has to be validated or executed again.
//!
//! Each transaction moves through these states (`incarnation` counts the executions started):
//!
//! ```text
//!                  try_incarnate             finish_execution
//!  ReadyToExecute(i) ───────────► Executing(i) ──────────────► Executed(i)
//!        ▲                          │                            │
//!        │ resume_dependencies /    │ add_dependency             │ try_validation_abort
//!        │ finish_validation        ▼ (reads an ESTIMATE)        ▼ (read set stale)
//!        └──────────────────── Aborting(i) ◄─────────────────────┘
//!                    (incarnation i + 1)
//! ```
//!
//! The block is done when both indices have passed the end of the block, no task is in flight,
//! and neither index moved back in between (`decrease_count` unchanged).
//!
//! Two things keep the counters that every worker shares out of the way. A worker that finishes
//! a task is handed its next one with the same task slot (the count of active tasks is not
//! touched in between). And a transaction whose validation turn the validation index passed
//! while it executed is validated at once by the thread that executed it, when the index stands
//! right after it: then no later transaction's validation has been handed out since the index
//! last moved back, so every later one will be handed out again, after these writes, and the
//! index need not move back.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::reset_slots;
use crate::vm::{Incarnation, TxnIndex};

/// A unit of work handed to a worker thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    /// Execute this incarnation of the transaction.
    Execute(TxnIndex, Incarnation),
    /// Validate the read set of this incarnation of the transaction.
    Validate(TxnIndex, Incarnation),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    ReadyToExecute = 0,
    Executing = 1,
    Executed = 2,
    Aborting = 3,
}

struct TransactionState {
    /// The incarnation and its status, in one word (see [`pack`]): read without a lock, changed
    /// by one atomic operation. Sequentially consistent, as the indices are: a worker that
    /// marks a transaction executed and then reads the validation index, and one that moves the
    /// validation index and then reads the status, cannot both miss the other.
    status: AtomicU64,
    /// Transactions suspended until this one finishes executing.
    dependents: Mutex<Vec<TxnIndex>>,
    /// Whether a transaction ever tried to wait for this one (in this block): most never do,
    /// and then finishing an execution takes no lock for the dependents. Set before the status
    /// is checked, and read after the status is set, both sequentially consistent: a waiter
    /// sees the transaction executed, or the transaction sees the waiter.
    awaited: AtomicBool,
}

/// An incarnation and its status as one word.
fn pack(incarnation: Incarnation, status: Status) -> u64 {
    (u64::from(incarnation) << 2) | status as u64
}

/// The incarnation and status a word holds.
fn unpack(word: u64) -> (Incarnation, Status) {
    let status = match word & 3 {
        0 => Status::ReadyToExecute,
        1 => Status::Executing,
        2 => Status::Executed,
        _ => Status::Aborting,
    };
    // INVARIANT: packed from an incarnation, which fits in 32 bits.
    ((word >> 2) as Incarnation, status)
}

impl TransactionState {
    fn load(&self) -> (Incarnation, Status) {
        unpack(self.status.load(Ordering::SeqCst))
    }

    fn store(&self, incarnation: Incarnation, status: Status) {
        self.status.store(pack(incarnation, status), Ordering::SeqCst);
    }

    /// Moves from `from` to `to` if the state is `from`; returns whether it did.
    fn change(&self, from: (Incarnation, Status), to: (Incarnation, Status)) -> bool {
        self.status
            .compare_exchange(
                pack(from.0, from.1),
                pack(to.0, to.1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }
}

/// The scheduler of one block run.
pub(crate) struct Scheduler {
    block_size: usize,
    execution_index: CachePadded<AtomicUsize>,
    validation_index: CachePadded<AtomicUsize>,
    decrease_count: CachePadded<AtomicUsize>,
    active_tasks: CachePadded<AtomicUsize>,
    done: CachePadded<AtomicBool>,
    transactions: Vec<CachePadded<TransactionState>>,
}

impl Scheduler {
    pub(crate) fn new(block_size: usize) -> Self {
        let mut scheduler = Self {
            block_size,
            execution_index: CachePadded::new(AtomicUsize::new(0)),
            validation_index: CachePadded::new(AtomicUsize::new(0)),
            decrease_count: CachePadded::new(AtomicUsize::new(0)),
            active_tasks: CachePadded::new(AtomicUsize::new(0)),
            done: CachePadded::new(AtomicBool::new(false)),
            transactions: Vec::new(),
        };
        scheduler.reset(block_size);
        scheduler
    }

    /// Prepares the scheduler for a new block, keeping what was allocated.
    pub(crate) fn reset(&mut self, block_size: usize) {
        self.block_size = block_size;
        for counter in [
            &mut self.execution_index,
            &mut self.validation_index,
            &mut self.decrease_count,
            &mut self.active_tasks,
        ] {
            *counter.get_mut() = 0;
        }
        *self.done.get_mut() = false;
        reset_slots(
            &mut self.transactions,
            (block_size, block_size),
            || {
                CachePadded::new(TransactionState {
                    status: AtomicU64::new(pack(0, Status::ReadyToExecute)),
                    dependents: Mutex::new(Vec::new()),
                    awaited: AtomicBool::new(false),
                })
            },
            |state| {
                *state.status.get_mut() = pack(0, Status::ReadyToExecute);
                state.dependents.get_mut().clear();
                *state.awaited.get_mut() = false;
            },
        );
    }

    /// Whether every transaction has been executed and validated.
    pub(crate) fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Whether the transaction's latest incarnation has finished executing (and is not aborted).
    pub(crate) fn is_executed(&self, txn_index: TxnIndex) -> bool {
        self.transactions[txn_index].load().1 == Status::Executed
    }

    /// The next task for a worker, or `None` if there is none right now.
    pub(crate) fn next_task(&self) -> Option<Task> {
        self.next_task_from(false)
    }

    /// The next task for a worker that holds a task slot (it just finished a task): the slot
    /// passes to the new task, or is released if there is none. Saves the shared counter of
    /// active tasks two updates per task.
    fn next_task_holding_slot(&self) -> Option<Task> {
        self.next_task_from(true)
    }

    fn next_task_from(&self, holding_slot: bool) -> Option<Task> {
        if self.validation_index.load(Ordering::SeqCst)
            < self.execution_index.load(Ordering::SeqCst)
        {
            self.next_version_to_validate(holding_slot)
                .map(|(index, incarnation)| Task::Validate(index, incarnation))
        } else {
            self.next_version_to_execute(holding_slot)
                .map(|(index, incarnation)| Task::Execute(index, incarnation))
        }
    }

    /// Suspends `txn_index` until `blocking` finishes executing. Returns `false` if `blocking`
    /// already has, in which case the caller re-executes `txn_index` at once.
    pub(crate) fn add_dependency(&self, txn_index: TxnIndex, blocking: TxnIndex) -> bool {
        let blocking_state = &self.transactions[blocking];
        let mut dependents = blocking_state.dependents.lock();
        blocking_state.awaited.store(true, Ordering::SeqCst);
        if blocking_state.load().1 == Status::Executed {
            return false;
        }
        {
            // Only the executing worker changes an Executing transaction's state.
            let state = &self.transactions[txn_index];
            let (incarnation, status) = state.load();
            debug_assert_eq!(status, Status::Executing);
            state.store(incarnation, Status::Aborting);
        }
        dependents.push(txn_index);
        drop(dependents);
        self.active_tasks.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// Records that an incarnation finished executing; returns the caller's next task (the
    /// validation of this incarnation when it should run right away).
    pub(crate) fn finish_execution(
        &self,
        txn_index: TxnIndex,
        incarnation: Incarnation,
        wrote_new_location: bool,
    ) -> Option<Task> {
        let state = &self.transactions[txn_index];
        debug_assert_eq!(state.load(), (incarnation, Status::Executing));
        state.store(incarnation, Status::Executed);
        if state.awaited.load(Ordering::SeqCst) {
            let dependents = std::mem::take(&mut *state.dependents.lock());
            self.resume_dependencies(&dependents);
        }
        if wrote_new_location {
            // The new keys were published in the multi-version memory's table with
            // compare-and-swaps that are not `SeqCst`. This fence puts them before the load
            // below in the one order of `SeqCst` operations, so a validation handed out after
            // that load (a `SeqCst` read-modify-write of the index, then `SeqCst` loads of the
            // table) finds them, by the memory model and not only by x86's or ARM's. (Writes to
            // keys already in the table, or in the overflow map, are ordered through their
            // locks, acquire and release: there the guarantee is x86's and ARMv8's, whose atomic
            // read-modify-writes order later acquire loads.)
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        let validation_index = self.validation_index.load(Ordering::SeqCst);
        if validation_index > txn_index {
            if wrote_new_location && validation_index > txn_index + 1 {
                // Transactions after this one may have been validated without its new writes:
                // revalidate them all, starting with this one.
                self.decrease_validation_index(txn_index);
            } else {
                // Only this transaction's own turn was passed over while it executed (the usual
                // case when threads execute neighbouring transactions): no later validation was
                // handed out since the index last moved back, so every later one will be, after
                // these writes. Validate this one here, on the thread that has its reads in
                // cache, without moving the shared index back.
                return Some(Task::Validate(txn_index, incarnation));
            }
        }
        self.next_task_holding_slot()
    }

    /// Marks a validated incarnation as aborted, if it is still the latest executed one. Only one
    /// failed validation of an incarnation wins.
    pub(crate) fn try_validation_abort(
        &self,
        txn_index: TxnIndex,
        incarnation: Incarnation,
    ) -> bool {
        self.transactions[txn_index]
            .change((incarnation, Status::Executed), (incarnation, Status::Aborting))
    }

    /// Records the end of a validation task; returns the caller's next task (after an abort,
    /// the re-execution when it should run right away).
    pub(crate) fn finish_validation(&self, txn_index: TxnIndex, aborted: bool) -> Option<Task> {
        if aborted {
            self.set_ready_status(txn_index);
            self.decrease_validation_index(txn_index + 1);
            if self.execution_index.load(Ordering::SeqCst) > txn_index {
                if let Some((index, incarnation)) = self.try_incarnate(txn_index) {
                    return Some(Task::Execute(index, incarnation));
                }
                // try_incarnate already released this task's slot.
                return None;
            }
        }
        self.next_task_holding_slot()
    }

    fn decrease_execution_index(&self, target: TxnIndex) {
        self.execution_index.fetch_min(target, Ordering::SeqCst);
        self.decrease_count.fetch_add(1, Ordering::SeqCst);
    }

    fn decrease_validation_index(&self, target: TxnIndex) {
        self.validation_index.fetch_min(target, Ordering::SeqCst);
        self.decrease_count.fetch_add(1, Ordering::SeqCst);
    }

    fn check_done(&self) {
        let observed_count = self.decrease_count.load(Ordering::SeqCst);
        let execution_index = self.execution_index.load(Ordering::SeqCst);
        let validation_index = self.validation_index.load(Ordering::SeqCst);
        if execution_index.min(validation_index) >= self.block_size
            && self.active_tasks.load(Ordering::SeqCst) == 0
            && observed_count == self.decrease_count.load(Ordering::SeqCst)
        {
            self.done.store(true, Ordering::Release);
        }
    }

    /// Starts the next incarnation of `txn_index` if it is ready; otherwise releases the task slot
    /// the caller holds.
    fn try_incarnate(&self, txn_index: TxnIndex) -> Option<(TxnIndex, Incarnation)> {
        if txn_index < self.block_size {
            let state = &self.transactions[txn_index];
            let (incarnation, status) = state.load();
            if status == Status::ReadyToExecute
                && state
                    .change((incarnation, Status::ReadyToExecute), (incarnation, Status::Executing))
            {
                return Some((txn_index, incarnation));
            }
        }
        self.active_tasks.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// Takes a task slot, unless the caller holds one already.
    fn take_slot(&self, holding_slot: bool) {
        if !holding_slot {
            self.active_tasks.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// There is no task: releases the slot the caller holds, if any, and checks for the end.
    fn no_task(&self, holding_slot: bool) -> Option<(TxnIndex, Incarnation)> {
        if holding_slot {
            self.active_tasks.fetch_sub(1, Ordering::SeqCst);
        }
        self.check_done();
        None
    }

    fn next_version_to_execute(&self, holding_slot: bool) -> Option<(TxnIndex, Incarnation)> {
        if self.execution_index.load(Ordering::SeqCst) >= self.block_size {
            return self.no_task(holding_slot);
        }
        self.take_slot(holding_slot);
        let txn_index = self.execution_index.fetch_add(1, Ordering::SeqCst);
        self.try_incarnate(txn_index)
    }

    fn next_version_to_validate(&self, holding_slot: bool) -> Option<(TxnIndex, Incarnation)> {
        if self.validation_index.load(Ordering::SeqCst) >= self.block_size {
            return self.no_task(holding_slot);
        }
        self.take_slot(holding_slot);
        let txn_index = self.validation_index.fetch_add(1, Ordering::SeqCst);
        if txn_index < self.block_size {
            let (incarnation, status) = self.transactions[txn_index].load();
            if status == Status::Executed {
                return Some((txn_index, incarnation));
            }
        }
        self.active_tasks.fetch_sub(1, Ordering::SeqCst);
        None
    }

    fn set_ready_status(&self, txn_index: TxnIndex) {
        // Only the worker that aborted the transaction, or resumes it, changes its state now.
        let state = &self.transactions[txn_index];
        let (incarnation, status) = state.load();
        debug_assert_eq!(status, Status::Aborting);
        state.store(incarnation + 1, Status::ReadyToExecute);
    }

    fn resume_dependencies(&self, dependents: &[TxnIndex]) {
        for &dependent in dependents {
            self.set_ready_status(dependent);
        }
        if let Some(&lowest) = dependents.iter().min() {
            self.decrease_execution_index(lowest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a scheduler alone (no VM), executing and validating everything in one thread.
    fn drain(scheduler: &Scheduler) -> Vec<Task> {
        let mut tasks = Vec::new();
        let mut task = None;
        while !scheduler.done() {
            task = match task.or_else(|| scheduler.next_task()) {
                Some(Task::Execute(index, incarnation)) => {
                    tasks.push(Task::Execute(index, incarnation));
                    scheduler.finish_execution(index, incarnation, false)
                }
                Some(Task::Validate(index, incarnation)) => {
                    tasks.push(Task::Validate(index, incarnation));
                    scheduler.finish_validation(index, false)
                }
                None => None,
            };
        }
        tasks
    }

    #[test]
    fn empty_block_is_done_at_once() {
        let scheduler = Scheduler::new(0);
        assert_eq!(scheduler.next_task(), None);
        assert!(scheduler.done());
    }

    #[test]
    fn every_transaction_is_executed_then_validated_once_without_conflicts() {
        let scheduler = Scheduler::new(3);
        let tasks = drain(&scheduler);
        assert_eq!(
            tasks,
            vec![
                Task::Execute(0, 0),
                Task::Validate(0, 0),
                Task::Execute(1, 0),
                Task::Validate(1, 0),
                Task::Execute(2, 0),
                Task::Validate(2, 0),
            ]
        );
        assert!((0..3).all(|index| scheduler.is_executed(index)));
    }

    #[test]
    fn failed_validation_reexecutes_with_the_next_incarnation_and_revalidates_it() {
        let scheduler = Scheduler::new(2);
        assert_eq!(scheduler.next_task(), Some(Task::Execute(0, 0)));
        // Finishing a task hands over the next one.
        assert_eq!(scheduler.finish_execution(0, 0, false), Some(Task::Validate(0, 0)));
        assert_eq!(scheduler.finish_validation(0, false), Some(Task::Execute(1, 0)));
        assert_eq!(scheduler.finish_execution(1, 0, false), Some(Task::Validate(1, 0)));
        // The validation finds a stale read.
        assert!(scheduler.try_validation_abort(1, 0));
        assert!(!scheduler.try_validation_abort(1, 0), "only one abort of an incarnation wins");
        assert_eq!(scheduler.finish_validation(1, true), Some(Task::Execute(1, 1)));
        assert!(!scheduler.done());
        // The validation index moved back, so the new incarnation is validated right away.
        assert_eq!(scheduler.finish_execution(1, 1, false), Some(Task::Validate(1, 1)));
        assert_eq!(scheduler.finish_validation(1, false), None);
        assert_eq!(scheduler.next_task(), None);
        assert!(scheduler.done());
    }

    #[test]
    fn a_suspended_transaction_resumes_when_its_dependency_finishes() {
        let scheduler = Scheduler::new(2);
        assert_eq!(scheduler.next_task(), Some(Task::Execute(0, 0)));
        assert_eq!(scheduler.next_task(), None, "0 is still executing: nothing to validate");
        assert_eq!(scheduler.next_task(), Some(Task::Execute(1, 0)));
        // Transaction 1 reads a value transaction 0 has not written yet.
        assert!(scheduler.add_dependency(1, 0));
        assert_eq!(scheduler.next_task(), None);
        assert_eq!(scheduler.next_task(), None, "nothing to do while 1 waits for 0");
        assert!(!scheduler.done());
        assert_eq!(scheduler.finish_execution(0, 0, true), Some(Task::Validate(0, 0)));
        // Transaction 1 is ready again with its next incarnation.
        assert_eq!(scheduler.finish_validation(0, false), Some(Task::Execute(1, 1)));
        assert_eq!(scheduler.finish_execution(1, 1, false), Some(Task::Validate(1, 1)));
        assert_eq!(scheduler.finish_validation(1, false), None);
        assert!(scheduler.done());
    }

    #[test]
    fn dependency_on_an_executed_transaction_is_refused() {
        let scheduler = Scheduler::new(2);
        assert_eq!(scheduler.next_task(), Some(Task::Execute(0, 0)));
        assert_eq!(scheduler.next_task(), None);
        assert_eq!(scheduler.next_task(), Some(Task::Execute(1, 0)));
        assert_eq!(scheduler.finish_execution(0, 0, false), Some(Task::Validate(0, 0)));
        assert!(!scheduler.add_dependency(1, 0), "0 already executed: re-execute 1 at once");
    }

    #[test]
    fn a_new_write_location_revalidates_every_later_transaction() {
        let scheduler = Scheduler::new(3);
        assert_eq!(scheduler.next_task(), Some(Task::Execute(0, 0)));
        assert_eq!(scheduler.next_task(), None);
        assert_eq!(scheduler.next_task(), Some(Task::Execute(1, 0)));
        assert_eq!(scheduler.next_task(), None);
        assert_eq!(scheduler.next_task(), Some(Task::Execute(2, 0)));
        // 2 finishes first, and its worker goes on to validate it.
        assert_eq!(scheduler.finish_execution(2, 0, false), Some(Task::Validate(2, 0)));
        assert_eq!(scheduler.finish_validation(2, false), None);
        assert_eq!(scheduler.finish_execution(1, 0, false), Some(Task::Validate(1, 0)));
        assert_eq!(scheduler.finish_execution(0, 0, false), Some(Task::Validate(0, 0)));
        // 0's reads went stale; its re-execution writes a key the first incarnation did not.
        assert!(scheduler.try_validation_abort(0, 0));
        assert_eq!(scheduler.finish_validation(0, true), Some(Task::Execute(0, 1)));
        // Only 0's own turn was passed: it is validated at once.
        assert_eq!(scheduler.finish_execution(0, 1, true), Some(Task::Validate(0, 1)));
        // 1 and 2 were validated before 0's new writes: they are validated again.
        assert_eq!(scheduler.finish_validation(0, false), Some(Task::Validate(1, 0)));
        assert_eq!(scheduler.finish_validation(1, false), Some(Task::Validate(2, 0)));
        // The first validation of 1, still running until now, ends with nothing left to do.
        assert_eq!(scheduler.finish_validation(1, false), None);
        assert!(!scheduler.done(), "the validation of 2 is still running");
        assert_eq!(scheduler.finish_validation(2, false), None);
        assert!(scheduler.done());
    }
}
