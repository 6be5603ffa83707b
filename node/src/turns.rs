//! Turns to run code for a query, so that at most a few queries execute at once however many
//! requests arrive.
//!
//! `eth_call`, `eth_estimateGas` and Move views are free, and one holds memory for its gas (a
//! Move call up to its memory quota, 16 MiB of values, besides what the VMs keep around them; a
//! trace up to its bound). The RPC server answers up to `rpc::MAX_ANSWERING` (64) requests at
//! once; without turns, that many such calls could hold 64 times as much. With two turns per
//! core, the cores are kept as busy as more would keep them, and no more is held.
//!
//! A request waits for its turn before it takes one of the server's answering turns and a
//! thread (asynchronously): requests that wait for a call turn hold neither, so
//! a flood of calls does not hold up the node's other answers. Turns are handed out in the
//! order they were asked for.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// A number of turns, taken and given back.
#[derive(Debug)]
pub(crate) struct Turns(Arc<tokio::sync::Semaphore>);

/// A turn, given back when dropped.
#[derive(Debug)]
pub struct Turn(
    #[expect(dead_code, reason = "held for its drop")] tokio::sync::OwnedSemaphorePermit,
);

impl Turns {
    /// `count` turns.
    #[must_use]
    pub(crate) fn new(count: std::num::NonZeroUsize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(count.get())))
    }

    /// A turn, once one is free (the task waits, holding no thread).
    ///
    /// # Panics
    /// Never: the turns are never closed.
    pub(crate) async fn take(&self) -> Turn {
        let permit = Arc::clone(&self.0).acquire_owned().await;
        // INVARIANT: the semaphore is never closed.
        Turn(permit.expect("turns are never closed"))
    }

    /// [`take`](Self::take) for a caller off the async threads (never on one: it would block
    /// a worker of the runtime): the calling thread waits.
    #[must_use]
    pub(crate) fn take_blocking(&self) -> Turn {
        // Outside the task budget: a thread of the runtime's blocking pool may have used it up,
        // and a future over budget waits for its task to yield, which this one never does.
        block_on(tokio::task::unconstrained(self.take()))
    }
}

/// Runs `future` to its end on the calling thread, which sleeps while it waits.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::Turns;

    /// Ends the test process with a failure if not dropped within 60 s: a test whose runtime's
    /// threads are all blocked cannot time out by itself. (Dropped, it disconnects its
    /// channel, which ends the watching thread.)
    pub(crate) struct Watchdog(
        #[expect(dead_code, reason = "held for its drop")] std::sync::mpsc::Sender<()>,
    );

    impl Watchdog {
        pub(crate) fn new(failure: &'static str) -> Self {
            let (done, watched) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    watched.recv_timeout(Duration::from_secs(60))
                {
                    eprintln!("watchdog: {failure}");
                    std::process::exit(1);
                }
            });
            Self(done)
        }
    }

    #[test]
    fn no_more_than_the_turns_run_at_once_and_every_taker_runs() {
        let turns = Turns::new(std::num::NonZeroUsize::new(2).expect("two"));
        let (running, most, done) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let _turn = turns.take_blocking();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_waiting_for_a_turn_holds_no_thread_and_gets_the_next_free_one() {
        let turns = std::sync::Arc::new(Turns::new(std::num::NonZeroUsize::new(1).expect("one")));
        let held = turns.take().await;
        // More waiting tasks than the runtime has threads. Each gives its turn back as soon as
        // it has it: the tasks ask in no set order, and one that kept its turn until awaited
        // here would leave a task awaited before it waiting for ever.
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let turns = std::sync::Arc::clone(&turns);
                tokio::spawn(async move { drop(turns.take().await) })
            })
            .collect();
        // Waiting, they leave the runtime's threads free for other work.
        let _watchdog = Watchdog::new("tasks waiting for a turn blocked the runtime's threads");
        assert_eq!(tokio::spawn(async { 7 }).await.unwrap(), 7);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(waiting.iter().all(|task| !task.is_finished()), "a second turn was handed out");
        drop(held);
        for task in waiting {
            task.await.unwrap();
        }
    }
}
