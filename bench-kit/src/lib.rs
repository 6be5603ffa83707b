//! What Duet's benchmarks share: a deterministic generator for their blocks, medians, the paired
//! ratio of sequential and parallel runs, the machine's ceiling (two runs at once), the cores'
//! round trip ([`RoundTrip`]), JSON rounding ([`round3`]), and the Block-STM paper's
//! peer-to-peer matrix with its runs' summary ([`p2p`]).
//!
//! Benchmark and test code only; no crate of the node depends on it.

pub mod p2p;

use std::time::{Duration, Instant};

/// A deterministic pseudo-random generator (splitmix64), so blocks are the same on every run.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The parallel executor's configuration with `threads` worker threads, as every benchmark runs
/// it: the defaults, and with one thread the parallel executor on that thread, so that `--threads
/// 1` measures what Block-STM's own work costs apart from what a second core costs.
///
/// # Panics
/// If `threads` is 0.
#[must_use]
pub fn executor_config(threads: usize) -> duet_block_stm::ExecutorConfig {
    let threads = std::num::NonZeroUsize::new(threads).expect("--threads must be at least 1");
    duet_block_stm::ExecutorConfig {
        parallel_on_one_thread: true,
        ..duet_block_stm::ExecutorConfig::with_threads(threads)
    }
}

/// How a benchmark's header names its parallel executor's threads: "2 worker threads", or "1
/// worker thread (the parallel executor on it)".
#[must_use]
pub fn threads_text(threads: usize) -> String {
    if threads == 1 {
        "1 worker thread (the parallel executor on it)".to_owned()
    } else {
        format!("{threads} worker threads")
    }
}

/// The median of `samples`.
///
/// # Panics
/// If `samples` is empty.
#[must_use]
pub fn median<T: Ord + Copy>(mut samples: Vec<T>) -> T {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// The median of each run's own ratio `baseline / measured`: runs measured back to back share the
/// machine's momentary speed, which a noisy machine changes from second to second.
///
/// # Panics
/// If there are no runs.
#[must_use]
pub fn paired_ratio(baseline: &[Duration], measured: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = baseline
        .iter()
        .zip(measured)
        .map(|(baseline, measured)| baseline.as_secs_f64() / measured.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// The time `run` takes and dropping its output, which goes to `check` (against the expected
/// output) between the two, with the clock stopped; and what `check` returns.
pub fn time_checked<O, R>(run: impl FnOnce() -> O, check: impl FnOnce(&O) -> R) -> (Duration, R) {
    let start = Instant::now();
    let output = std::hint::black_box(run());
    let executed = start.elapsed();
    let checked = check(&output);
    let start = Instant::now();
    drop(output);
    (executed + start.elapsed(), checked)
}

/// A check for [`time_checked`]: the output is `Ok(expected)`.
///
/// # Panics
/// The check panics if it is not.
pub fn same_as<T: PartialEq, E>(expected: &T) -> impl Fn(&Result<T, E>) + '_ {
    move |output| {
        assert!(output.as_ref().ok() == Some(expected), "an output differs from the expected one");
    }
}

/// The median time of `runs` rounds of `run` executed twice at once, on two threads: what the
/// machine allows two independent executions.
pub fn two_at_once<R>(runs: usize, run: impl Fn() -> R + Sync) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::thread::scope(|scope| {
                    scope.spawn(|| {
                        std::hint::black_box(run());
                    });
                    std::hint::black_box(run());
                });
                start.elapsed()
            })
            .collect(),
    )
}

/// The median time, over a few rounds, for a cache line to go from one thread to another and
/// back (two threads passing a counter to each other), in nanoseconds.
///
/// On this machine's two virtual cores it is either about 50 ns or about 400 ns, changing from
/// one minute to the next as the host moves them; what Block-STM's workers share (the
/// scheduler's indices, the multi-version memory) costs that much more at 400 ns, while two
/// independent runs ([`two_at_once`]) do not notice. Benchmarks print it beside their figures so
/// that figures taken in either state are told apart.
/// `NaN` on a machine with one core, where the two spinning threads would wait on each other's
/// time slices.
#[must_use]
pub fn core_round_trip_ns() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    const PASSES: u64 = 20_000;
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return f64::NAN;
    }
    let samples = (0..5)
        .map(|_| {
            let counter = AtomicU64::new(0);
            let start = Instant::now();
            let pass = |parity: u64| {
                for round in 0..PASSES {
                    let mine = 2 * round + parity;
                    while counter.load(Ordering::Acquire) != mine {
                        std::hint::spin_loop();
                    }
                    counter.store(mine + 1, Ordering::Release);
                }
            };
            std::thread::scope(|scope| {
                scope.spawn(|| pass(1));
                pass(0);
            });
            start.elapsed()
        })
        .collect();
    median(samples).as_secs_f64() * 1e9 / PASSES as f64
}

/// The cores' round trip ([`core_round_trip_ns`]) measured before and after a configuration's
/// timed runs; printed `before/after`, and as `[before, after]` in JSON.
#[derive(Clone, Copy, Debug)]
pub struct RoundTrip {
    /// Before the timed runs, in nanoseconds.
    pub before_ns: f64,
    /// After them.
    pub after_ns: f64,
}

impl RoundTrip {
    /// Runs `timed` between two measurements.
    pub fn around<R>(timed: impl FnOnce() -> R) -> (R, Self) {
        let before_ns = core_round_trip_ns();
        let result = timed();
        (result, Self { before_ns, after_ns: core_round_trip_ns() })
    }

    /// `[before, after]`, in whole nanoseconds.
    #[must_use]
    pub fn json(self) -> serde_json::Value {
        serde_json::json!([self.before_ns.round(), self.after_ns.round()])
    }
}

impl std::fmt::Display for RoundTrip {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.pad(&format!("{:.0}/{:.0}", self.before_ns, self.after_ns))
    }
}

/// `value` rounded to three decimals, as the benchmarks print ratios in JSON.
#[must_use]
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
