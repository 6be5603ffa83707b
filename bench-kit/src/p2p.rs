//! The Block-STM paper's peer-to-peer matrix, shared by the benchmarks that run it: the command
//! line, the configurations, the timed runs and the printed figures.
//!
//! Options: `--json` (one JSON object per configuration per line), `--runs N`, `--threads N` (1:
//! the parallel executor on one thread, what Block-STM's own work costs without a second core),
//! `--accounts N` and `--txs N` (one row or column of the matrix), `--ceiling` (also two
//! sequential executions at once: what the machine allows), `--only seq|par` (time only one
//! executor, for profiling).
//!
//! Printed per configuration: median tx/s of each executor, the median of the ratios of runs made
//! back to back, the median executions per transaction of the timed parallel runs, and how many
//! of them were handed to the sequential executor under contention (`1/9`) or ran there whole
//! (`seq 9/9`: transactions too cheap for parallel execution). Every output is
//! checked against the sequential one, and a run's time includes dropping its output.

use std::time::Duration;

use duet_block_stm::ExecutionStats;

use crate::{median, paired_ratio, round3, two_at_once, RoundTrip};

/// Accounts in the matrix.
const ACCOUNTS: [u64; 5] = [2, 10, 100, 1000, 10_000];
/// Block sizes in the matrix.
const BLOCK_SIZES: [usize; 2] = [1000, 10_000];
/// Untimed runs first: the first runs of a process pay for page faults and allocator growth
/// that a long-running node pays once.
const WARM_UP_RUNS: usize = 5;

/// Which executor to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Only {
    /// Only the sequential executor.
    Sequential,
    /// Only Block-STM.
    Parallel,
}

/// A p2p benchmark's command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// One JSON object per configuration per line instead of a table.
    pub json: bool,
    /// Also measure two sequential executions at once on two threads.
    pub ceiling: bool,
    /// Only this many accounts (all when `None`).
    pub accounts: Option<u64>,
    /// Only blocks of this size (all when `None`).
    pub txs: Option<usize>,
    /// Timed runs per configuration.
    pub runs: usize,
    /// Block-STM's worker threads.
    pub threads: usize,
    /// Time only one executor.
    pub only: Option<Only>,
}

impl Options {
    /// The process's command line, with `runs` timed runs unless it says otherwise. `extra` is
    /// offered every flag that is not a common one, with the remaining arguments (to take a
    /// value from); what it does not know it ignores (`cargo bench` passes `--bench`).
    ///
    /// # Panics
    /// If a flag's value is missing or not a number (or, for `--only`, not `seq` or `par`).
    #[must_use]
    pub fn from_args(
        runs: usize,
        mut extra: impl FnMut(&str, &mut dyn Iterator<Item = String>),
    ) -> Self {
        let mut options = Self {
            json: false,
            ceiling: false,
            accounts: None,
            txs: None,
            runs,
            threads: 2,
            only: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = |flag: &str| -> u64 {
                args.next()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("{flag} N"))
            };
            match arg.as_str() {
                "--json" => options.json = true,
                "--ceiling" => options.ceiling = true,
                "--accounts" => options.accounts = Some(number("--accounts")),
                "--txs" => options.txs = Some(number("--txs") as usize),
                "--runs" => options.runs = number("--runs") as usize,
                "--threads" => options.threads = number("--threads") as usize,
                "--only" => {
                    options.only = match args.next().as_deref() {
                        Some("seq") => Some(Only::Sequential),
                        Some("par") => Some(Only::Parallel),
                        _ => panic!("--only seq|par"),
                    }
                }
                flag => extra(flag, &mut args),
            }
        }
        options
    }

    /// The configurations to run, as (block size, accounts), in the order they are printed.
    #[must_use]
    pub fn configurations(&self) -> Vec<(usize, u64)> {
        BLOCK_SIZES
            .iter()
            .filter(|size| self.txs.is_none_or(|only| only == **size))
            .flat_map(|&size| {
                ACCOUNTS
                    .iter()
                    .filter(|count| self.accounts.is_none_or(|only| only == **count))
                    .map(move |&accounts| (size, accounts))
            })
            .collect()
    }

    /// Prints the title and the table's header, unless the output is JSON.
    pub fn print_header(&self, title: &str) {
        if self.json {
            return;
        }
        let threads = crate::threads_text(self.threads);
        println!("{title}, {threads}, median of {} runs", self.runs);
        println!(
            "{:>8} {:>7} {:>12} {:>12} {:>7} {:>9} {:>11} {:>13}",
            "accounts",
            "txs",
            "seq tx/s",
            "par tx/s",
            "ratio",
            "execs/tx",
            "handed over",
            "round trip ns"
        );
        if self.ceiling {
            println!(
                "(last column: two sequential runs at once on two threads, the machine's ceiling)"
            );
        }
    }

    /// Times `sequential` and `parallel` (each executes the block of `block_size` transactions
    /// once and returns its output; `parallel` also how its run went) after the warm-up runs, in
    /// pairs, and the ceiling if asked. Every output, warm-up runs' included, goes to `check`
    /// (against the expected one: a run's path through the executor depends on timing) with the
    /// clock stopped; a run's time is its execution and the dropping of its output.
    pub fn measure<O>(
        &self,
        block_size: usize,
        sequential: impl Fn() -> O + Sync,
        parallel: impl Fn() -> (O, ExecutionStats),
        check: impl Fn(&O),
    ) -> Figures {
        let (time_sequential, time_parallel) =
            (self.only != Some(Only::Parallel), self.only != Some(Only::Sequential));
        let executors = Executors {
            sequential: time_sequential.then_some(&sequential),
            parallel: time_parallel.then_some(&parallel),
            check: &check,
        };
        // The warm-up runs, untimed.
        let _ = executors.timed_runs(WARM_UP_RUNS);
        let ((sequential_times, parallel_times, parallel_runs), round_trip) =
            RoundTrip::around(|| executors.timed_runs(self.runs));
        let ceiling_tps = self
            .ceiling
            .then(|| 2.0 * block_size as f64 / two_at_once(self.runs, &sequential).as_secs_f64());
        Figures {
            ratio: paired_ratio(&sequential_times, &parallel_times),
            sequential_tps: block_size as f64 / median(sequential_times).as_secs_f64(),
            parallel_tps: block_size as f64 / median(parallel_times).as_secs_f64(),
            ceiling_tps,
            round_trip,
            runs: RunsSummary::of(&parallel_runs, block_size),
        }
    }
}

/// The executors [`Options::measure`] times (each only if it is timed), and the check of their
/// outputs.
struct Executors<'a, S, P, C> {
    sequential: Option<&'a S>,
    parallel: Option<&'a P>,
    check: &'a C,
}

impl<O, S: Fn() -> O, P: Fn() -> (O, ExecutionStats), C: Fn(&O)> Executors<'_, S, P, C> {
    /// `runs` timed runs, in pairs: each run's time, and how each parallel run went.
    fn timed_runs(&self, runs: usize) -> (Vec<Duration>, Vec<Duration>, Vec<ExecutionStats>) {
        let mut sequential_times = Vec::with_capacity(runs);
        let mut parallel_times = Vec::with_capacity(runs);
        let mut parallel_runs = Vec::with_capacity(runs);
        for _ in 0..runs {
            let sequential = self.sequential.map(|run| crate::time_checked(run, self.check).0);
            sequential_times.push(sequential.unwrap_or(Duration::ZERO));
            if let Some(run) = self.parallel {
                let (time, stats) = crate::time_checked(run, |(output, stats)| {
                    (self.check)(output);
                    *stats
                });
                parallel_times.push(time);
                parallel_runs.push(stats);
            } else {
                parallel_times.push(Duration::ZERO);
            }
        }
        (sequential_times, parallel_times, parallel_runs)
    }
}

/// How the timed parallel runs went.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunsSummary {
    /// The median of the runs' executions per transaction (1.0: nothing ran twice).
    pub executions_per_txn: f64,
    /// How many runs handed the block to the sequential executor under contention.
    pub handed_over: usize,
    /// How many runs ran the whole block on the sequential path (transactions too cheap for
    /// parallel execution to pay, or one thread): not Block-STM's figures.
    pub sequential: usize,
}

impl RunsSummary {
    /// The handed-over column: `-`, or how many of `runs` were handed over, and `seq N/runs`
    /// for those that ran sequentially whole.
    #[must_use]
    pub fn handed_over_text(&self, runs: usize) -> String {
        match (self.handed_over, self.sequential) {
            (0, 0) => "-".to_owned(),
            (handed, 0) => format!("{handed}/{runs}"),
            (0, whole) => format!("seq {whole}/{runs}"),
            (handed, whole) => format!("{handed}/{runs} seq {whole}"),
        }
    }

    /// The summary of `runs` of a block of `block_size` transactions.
    #[must_use]
    pub fn of(runs: &[ExecutionStats], block_size: usize) -> Self {
        // Sequential whole: too cheap for parallel execution, or every execution the sequential
        // executor's, from the first transaction (a hand-over at the first still ran some in
        // parallel before it).
        let whole = |run: &ExecutionStats| {
            run.cheap
                || run.sequential_from == Some(0) && run.executions == run.sequential_transactions
        };
        let executions: Vec<usize> = runs.iter().map(|run| run.executions).collect();
        Self {
            executions_per_txn: if executions.is_empty() {
                0.0
            } else {
                crate::median(executions) as f64 / block_size as f64
            },
            handed_over: runs
                .iter()
                .filter(|run| run.sequential_from.is_some() && !whole(run))
                .count(),
            sequential: runs.iter().filter(|run| whole(run)).count(),
        }
    }
}

/// What [`Options::measure`] found.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    /// Median sequential tx/s.
    pub sequential_tps: f64,
    /// Median parallel tx/s.
    pub parallel_tps: f64,
    /// Median of the per-run ratios sequential time / parallel time.
    pub ratio: f64,
    /// Two sequential executions at once, in tx/s, if measured.
    pub ceiling_tps: Option<f64>,
    /// The cores' round trip before and after the timed runs.
    pub round_trip: RoundTrip,
    /// How the timed parallel runs went.
    pub runs: RunsSummary,
}

impl Figures {
    /// Prints one configuration: a table row, or with `--json` one JSON object made of
    /// `fields` (the workload's own: its name, its parameters) and the common figures.
    ///
    /// # Panics
    /// If `fields` is not a JSON object.
    pub fn print(
        &self,
        options: &Options,
        (block_size, accounts): (usize, u64),
        fields: serde_json::Value,
    ) {
        let RunsSummary { executions_per_txn: executions, handed_over, sequential } = self.runs;
        if options.json {
            let serde_json::Value::Object(mut object) = fields else {
                panic!("the workload's fields are a JSON object")
            };
            object.extend([
                ("accounts".to_owned(), accounts.into()),
                ("txs".to_owned(), block_size.into()),
                ("threads".to_owned(), options.threads.into()),
                ("runs".to_owned(), options.runs.into()),
                ("seq_tps".to_owned(), self.sequential_tps.round().into()),
                ("par_tps".to_owned(), self.parallel_tps.round().into()),
                ("ratio".to_owned(), round3(self.ratio).into()),
                ("executions_per_txn".to_owned(), round3(executions).into()),
                ("handed_over_runs".to_owned(), handed_over.into()),
                ("sequential_runs".to_owned(), sequential.into()),
                ("ceiling_tps".to_owned(), self.ceiling_tps.map(f64::round).into()),
                ("round_trip_ns".to_owned(), self.round_trip.json()),
            ]);
            println!("{}", serde_json::Value::Object(object));
        } else {
            let Self { sequential_tps, parallel_tps, ratio, round_trip, .. } = *self;
            let fallback = self.runs.handed_over_text(options.runs);
            let ceiling = self.ceiling_tps.map_or(String::new(), |tps| format!(" {tps:>12.0}"));
            println!(
                "{accounts:>8} {block_size:>7} {sequential_tps:>12.0} {parallel_tps:>12.0} {ratio:>7.2} {executions:>9.2} {fallback:>11} {round_trip:>13}{ceiling}"
            );
        }
    }
}
