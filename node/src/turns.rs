//! Turns to run code for a query: a thread waits for one, so that at most a few queries execute
//! at once however many requests arrive.
//!
//! `eth_call`, `eth_estimateGas` and Move views are free, and one can hold a lot of memory for
//! its gas (a Move call loading resources of nested empty vectors holds about 0.5 GB at the
//! block gas limit). The RPC server answers up to `rpc::MAX_ANSWERING` (64) requests at once;
//! without turns, that many such calls could hold about 32 GB. With two turns per core, they hold at most a few GB, and the
//! cores are kept as busy as more would keep them.

use parking_lot::{Condvar, Mutex};

/// A number of turns, taken and given back by threads.
#[derive(Debug)]
pub(crate) struct Turns {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A turn, given back when dropped.
#[derive(Debug)]
pub(crate) struct Turn<'a>(&'a Turns);

impl Turns {
    /// `count` turns.
    #[must_use]
    pub(crate) fn new(count: std::num::NonZeroUsize) -> Self {
        Self { free: Mutex::new(count.get()), freed: Condvar::new() }
    }

    /// A turn, once one is free (the calling thread waits).
    pub(crate) fn take(&self) -> Turn<'_> {
        let mut free = self.free.lock();
        while *free == 0 {
            self.freed.wait(&mut free);
        }
        *free -= 1;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.free.lock() += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::Turns;

    #[test]
    fn no_more_than_the_turns_run_at_once_and_every_taker_runs() {
        let turns = Turns::new(std::num::NonZeroUsize::new(2).expect("two"));
        let (running, most, done) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let _turn = turns.take();
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 8);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
