//! The filters clients install and poll: `eth_newFilter`, `eth_newBlockFilter`,
//! `eth_getFilterChanges`, `eth_getFilterLogs`, `eth_uninstallFilter`.
//!
//! A filter remembers the first position it has not reported yet: a block number, or the
//! number of an accepted transaction in the [`Feed`] of them. A poll reports the positions from
//! there up to the last one there is and moves past them, so each is reported once. A filter
//! starts after the last position at its installation, as in geth.
//!
//! Limits, so that a client cannot grow the node's memory: a filter not polled for five minutes
//! (geth's timeout) is dropped, and at most [`MAX_FILTERS`] exist at a time; past that,
//! installing one fails with "too many filters" until some expire or are uninstalled.
//! Identifiers are 128-bit and unpredictable (a hash of a random per-process secret, from the
//! system's random source, and a counter), so one client cannot poll or uninstall another's
//! filter by guessing. One client can still hold all the filters by polling them: the node
//! serves its own machine (127.0.0.1).

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::{keccak256, B256, U256};
use parking_lot::Mutex;

/// The most filters installed at a time.
pub const MAX_FILTERS: usize = 4_096;

/// How long a filter lives without being polled.
pub const FILTER_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Why a filter could not be installed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// [`MAX_FILTERS`] are installed and none has expired.
    #[error(
        "too many filters: at most {MAX_FILTERS} at a time; uninstall some or let them expire"
    )]
    TooMany,
}

/// Installed filters, each with what it selects (`C`).
pub struct Filters<C> {
    lifetime: Duration,
    secret: B256,
    installed: AtomicU64,
    by_id: Mutex<HashMap<U256, Filter<C>>>,
}

struct Filter<C> {
    criteria: C,
    /// The first position not reported yet.
    next: u64,
    polled: Instant,
    /// Whether a poll ([`Filters::poll`]) is under way.
    scanning: bool,
}

impl<C: Clone> Filters<C> {
    /// No filters; each lives `lifetime` after its last poll.
    #[must_use]
    pub fn new(lifetime: Duration) -> Self {
        let mut seed = [0u8; 32].to_vec();
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut source| std::io::Read::read_exact(&mut source, &mut seed));
        if random.is_err() {
            // No random source: the start time and the process, less unpredictable.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos());
            seed.extend_from_slice(&now.to_be_bytes());
            seed.extend_from_slice(&std::process::id().to_be_bytes());
        }
        Self {
            lifetime,
            secret: keccak256(seed),
            installed: AtomicU64::new(0),
            by_id: Mutex::new(HashMap::new()),
        }
    }

    /// Installs a filter that reports positions from `first` on; returns its identifier.
    ///
    /// # Errors
    /// [`FilterError::TooMany`] when [`MAX_FILTERS`] are installed and none has expired.
    pub fn install(&self, criteria: C, first: u64, now: Instant) -> Result<U256, FilterError> {
        let count = self.installed.fetch_add(1, Ordering::Relaxed);
        let mut seed = self.secret.to_vec();
        seed.extend_from_slice(&count.to_be_bytes());
        let id = U256::from_be_slice(&keccak256(seed)[..16]);
        let mut filters = self.by_id.lock();
        if filters.len() >= MAX_FILTERS {
            filters.retain(|_, filter| now.duration_since(filter.polled) < self.lifetime);
            if filters.len() >= MAX_FILTERS {
                return Err(FilterError::TooMany);
            }
        }
        filters.insert(id, Filter { criteria, next: first, polled: now, scanning: false });
        Ok(id)
    }

    /// Reports what came since the filter's last poll: `scan` (run without holding the filters'
    /// lock) gets the filter's criteria and the first `most` positions it has not reported among
    /// those there are for its criteria (`available`: up to the head's number for blocks; the
    /// feed's oldest to latest for accepted transactions, so that a reader whose positions fell
    /// off goes on from the oldest), and returns its answer and the last position it covered:
    /// the filter moves past that one only, and an error moves it past none. When nothing came
    /// since, or while another poll of the filter is under way (so that no position is reported
    /// twice or skipped), the answer is `nothing` for the criteria. `None`: no such filter
    /// (never installed, uninstalled or expired).
    pub fn poll<R, E>(
        &self,
        id: U256,
        most: u64,
        now: Instant,
        available: impl FnOnce(&C) -> RangeInclusive<u64>,
        scan: impl FnOnce(&C, RangeInclusive<u64>) -> Result<(R, u64), E>,
        nothing: impl FnOnce(&C) -> R,
    ) -> Option<Result<R, E>> {
        let (criteria, range) = {
            let mut filters = self.by_id.lock();
            let filter = self.live(&mut filters, id, now)?;
            if filter.scanning {
                return Some(Ok(nothing(&filter.criteria)));
            }
            let available = available(&filter.criteria);
            let first = filter.next.max(*available.start());
            let last = (*available.end()).min(first.saturating_add(most.max(1) - 1));
            if first > last {
                return Some(Ok(nothing(&filter.criteria)));
            }
            filter.scanning = true;
            (filter.criteria.clone(), first..=last)
        };
        // Whatever happens in the scan, even a panic, the filter is free again afterwards.
        let mut done = Scanned { filters: self, id, next: None };
        let answer = scan(&criteria, range.clone()).map(|(answer, covered)| {
            done.next = Some(covered.clamp(*range.start(), *range.end()) + 1);
            answer
        });
        drop(done);
        Some(answer)
    }

    /// The filter's criteria, without moving it past any block. `None`: no such filter.
    pub fn criteria(&self, id: U256, now: Instant) -> Option<C> {
        let mut filters = self.by_id.lock();
        self.live(&mut filters, id, now).map(|filter| filter.criteria.clone())
    }

    /// Removes the filters not polled for their lifetime.
    pub fn remove_expired(&self, now: Instant) {
        self.by_id.lock().retain(|_, filter| now.duration_since(filter.polled) < self.lifetime);
    }

    /// Removes the filter; returns whether it existed.
    pub fn uninstall(&self, id: U256) -> bool {
        self.by_id.lock().remove(&id).is_some()
    }

    /// The filter, if it exists and has not expired (an expired one is removed); it counts as
    /// polled now.
    fn live<'a>(
        &self,
        filters: &'a mut HashMap<U256, Filter<C>>,
        id: U256,
        now: Instant,
    ) -> Option<&'a mut Filter<C>> {
        let expired = now.duration_since(filters.get(&id)?.polled) >= self.lifetime;
        if expired {
            filters.remove(&id);
            return None;
        }
        let filter = filters.get_mut(&id)?;
        filter.polled = now;
        Some(filter)
    }
}

/// Ends a [`Filters::poll`]: frees the filter and moves it to `next`, if it still exists.
struct Scanned<'a, C> {
    filters: &'a Filters<C>,
    id: U256,
    next: Option<u64>,
}

impl<C> Drop for Scanned<'_, C> {
    fn drop(&mut self) {
        if let Some(filter) = self.filters.by_id.lock().get_mut(&self.id) {
            filter.scanning = false;
            if let Some(next) = self.next {
                filter.next = filter.next.max(next);
            }
        }
    }
}

/// The latest items of a stream (the transactions the node accepted), numbered from 1 in the
/// order they came; the oldest fall off past `capacity`, so a reader that falls far behind
/// misses some.
pub struct Feed<T> {
    capacity: usize,
    state: Mutex<(u64, std::collections::VecDeque<T>)>,
}

impl<T: Clone> Feed<T> {
    /// An empty feed keeping the last `capacity` items (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { capacity, state: Mutex::new((0, std::collections::VecDeque::new())) }
    }

    /// Adds an item; it gets the next number.
    pub fn push(&self, item: T) {
        let mut state = self.state.lock();
        state.0 += 1;
        if state.1.len() == self.capacity {
            state.1.pop_front();
        }
        state.1.push_back(item);
    }

    /// The number of the latest item (0 before the first).
    #[must_use]
    pub fn last(&self) -> u64 {
        self.state.lock().0
    }

    /// The numbers of the items the feed holds (the oldest kept to the latest).
    #[must_use]
    pub fn held(&self) -> RangeInclusive<u64> {
        let state = self.state.lock();
        (state.0 + 1 - state.1.len() as u64)..=state.0
    }

    /// The items numbered `numbers` that the feed still holds, in order.
    #[must_use]
    pub fn get(&self, numbers: RangeInclusive<u64>) -> Vec<T> {
        let state = self.state.lock();
        let (last, items) = (state.0, &state.1);
        let oldest = last + 1 - items.len() as u64;
        let (first, end) = ((*numbers.start()).max(oldest), (*numbers.end()).min(last));
        (first..=end).map(|number| items[(number - oldest) as usize].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A poll that reports every position it is given: the filter's criteria and the positions.
    fn poll_all<C: Clone>(
        filters: &Filters<C>,
        id: U256,
        most: u64,
        now: Instant,
        available: impl FnOnce(&C) -> RangeInclusive<u64>,
    ) -> Option<(C, RangeInclusive<u64>)> {
        filters
            .poll(
                id,
                most,
                now,
                available,
                |criteria, positions| {
                    Ok::<_, ()>(((criteria.clone(), positions.clone()), *positions.end()))
                },
                |criteria| (criteria.clone(), RangeInclusive::new(1, 0)),
            )
            .map(|polled| polled.unwrap())
    }

    #[test]
    fn a_poll_reports_each_new_block_once() {
        let filters = Filters::new(FILTER_LIFETIME);
        let now = Instant::now();
        let id = filters.install("logs", 8, now).unwrap();
        let (criteria, blocks) = poll_all(&filters, id, 100, now, |_| 0..=7).unwrap();
        assert_eq!(criteria, "logs");
        assert!(blocks.is_empty(), "no block yet: {blocks:?}");
        assert!(poll_all(&filters, id, 100, now, |_| 0..=7).unwrap().1.is_empty());
        assert_eq!(poll_all(&filters, id, 100, now, |_| 0..=10), Some(("logs", 8..=10)));
        assert!(
            poll_all(&filters, id, 100, now, |_| 0..=10).unwrap().1.is_empty(),
            "reported once"
        );
        assert_eq!(poll_all(&filters, id, 100, now, |_| 0..=11), Some(("logs", 11..=11)));
        assert_eq!(filters.criteria(id, now), Some("logs"));
        // Far behind: `most` blocks at a time, in order, none skipped.
        assert_eq!(poll_all(&filters, id, 10, now, |_| 0..=40), Some(("logs", 12..=21)));
        assert_eq!(poll_all(&filters, id, 10, now, |_| 0..=40), Some(("logs", 22..=31)));
        assert_eq!(poll_all(&filters, id, 10, now, |_| 0..=40), Some(("logs", 32..=40)));
        assert!(poll_all(&filters, id, 10, now, |_| 0..=40).unwrap().1.is_empty());
        assert_eq!(poll_all(&filters, id, 10, now, |_| 0..=41), Some(("logs", 41..=41)));
        // Positions that fell off (a feed's oldest items) are skipped, not reported as empty.
        assert_eq!(poll_all(&filters, id, 10, now, |_| 100..=150), Some(("logs", 100..=109)));
    }

    #[test]
    fn a_poll_that_stops_early_reports_the_rest_next_time_and_one_under_way_blocks_others() {
        let filters = Filters::new(FILTER_LIFETIME);
        let now = Instant::now();
        let id = filters.install("logs", 1, now).unwrap();
        let poll = |scan: &dyn Fn(RangeInclusive<u64>) -> Result<(Vec<u64>, u64), ()>| {
            filters.poll(id, 100, now, |_| 0..=50, |_, range| scan(range), |_| Vec::new()).unwrap()
        };
        // The scan stops after block 20 (as a log search does once it has found enough).
        let first = poll(&|range| Ok((vec![*range.start(), 20], 20)));
        assert_eq!(first, Ok(vec![1, 20]));
        // An error reports nothing and moves the filter past nothing.
        assert_eq!(poll(&|_| Err(())), Err(()));
        // The rest, from 21 on.
        assert_eq!(
            poll(&|range| Ok((vec![*range.start(), *range.end()], *range.end()))),
            Ok(vec![21, 50])
        );
        assert_eq!(poll(&|range| Ok((vec![*range.start()], *range.end()))), Ok(vec![]), "none new");
        // A poll under way: another of the same filter reports nothing, and takes nothing.
        let inner = filters.poll(
            id,
            100,
            now,
            |_| 0..=60,
            |_, range| {
                let during = filters.poll(
                    id,
                    100,
                    now,
                    |_| 0..=60,
                    |_, _| Ok::<_, ()>((vec![0], 60)),
                    |_| Vec::new(),
                );
                assert_eq!(during, Some(Ok(vec![])));
                Ok::<_, ()>((vec![*range.start()], *range.end()))
            },
            |_| Vec::new(),
        );
        assert_eq!(inner, Some(Ok(vec![51])));
        // A scan that panics frees the filter, which reports from where it was.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            filters.poll(
                id,
                100,
                now,
                |_| 0..=70,
                |_, _| -> Result<(Vec<u64>, u64), ()> { panic!("scan") },
                |_| Vec::new(),
            )
        }));
        assert!(panicked.is_err());
        assert_eq!(poll_at(&filters, id, now, 70), Some(Ok(vec![61])));
    }

    fn poll_at(
        filters: &Filters<&str>,
        id: U256,
        now: Instant,
        head: u64,
    ) -> Option<Result<Vec<u64>, ()>> {
        filters.poll(
            id,
            100,
            now,
            |_| 0..=head,
            |_, range| Ok((vec![*range.start()], *range.end())),
            |_| Vec::new(),
        )
    }

    #[test]
    fn identifiers_differ_and_uninstalled_or_unknown_filters_are_gone() {
        let filters = Filters::new(FILTER_LIFETIME);
        let now = Instant::now();
        let first = filters.install(1, 0, now).unwrap();
        let second = filters.install(2, 0, now).unwrap();
        assert_ne!(first, second);
        assert!(first > U256::from(u64::MAX), "128 bits, not a counter");
        assert!(filters.uninstall(first));
        assert!(!filters.uninstall(first));
        assert_eq!(poll_all(&filters, first, 100, now, |_| 0..=1), None);
        assert_eq!(poll_all(&filters, U256::from(1), 100, now, |_| 0..=1), None);
        assert_eq!(filters.criteria(second, now), Some(2));
    }

    #[test]
    fn an_unpolled_filter_expires_and_a_polled_one_lives_on() {
        let lifetime = Duration::from_secs(60);
        let filters = Filters::new(lifetime);
        let start = Instant::now();
        let idle = filters.install("idle", 0, start).unwrap();
        let busy = filters.install("busy", 0, start).unwrap();
        let later = start + Duration::from_secs(40);
        assert!(poll_all(&filters, busy, 100, later, |_| 0..=1).is_some());
        let expiry = start + lifetime;
        assert_eq!(
            poll_all(&filters, idle, 100, expiry, |_| 0..=1),
            None,
            "not polled for its lifetime"
        );
        assert!(poll_all(&filters, busy, 100, expiry, |_| 0..=1).is_some(), "polled 20 s ago");
        assert!(!filters.uninstall(idle), "an expired filter is removed");
    }

    #[test]
    fn a_feed_numbers_its_items_and_keeps_the_latest() {
        let feed = Feed::new(3);
        assert_eq!(feed.last(), 0);
        assert!(feed.get(1..=feed.last()).is_empty(), "nothing yet");
        for item in ["a", "b", "c", "d"] {
            feed.push(item);
        }
        assert_eq!(feed.last(), 4);
        assert_eq!(feed.held(), 2..=4);
        assert_eq!(feed.get(1..=4), ["b", "c", "d"], "the first fell off");
        assert_eq!(feed.get(3..=3), ["c"]);
        assert_eq!(feed.get(4..=9), ["d"]);
        assert!(feed.get(5..=9).is_empty());
    }

    #[test]
    fn at_most_max_filters_exist_until_some_expire() {
        let lifetime = Duration::from_secs(60);
        let filters = Filters::new(lifetime);
        let start = Instant::now();
        let ids: Vec<U256> =
            (0..MAX_FILTERS).map(|_| filters.install((), 1, start).unwrap()).collect();
        assert_eq!(filters.install((), 0, start), Err(FilterError::TooMany));
        assert!(filters.uninstall(ids[0]));
        assert!(filters.install((), 0, start).is_ok(), "room again after an uninstall");
        assert_eq!(filters.install((), 0, start), Err(FilterError::TooMany));
        // Once they expire, installing clears them.
        let later = start + lifetime;
        assert!(filters.install((), 0, later).is_ok());
        assert_eq!(filters.by_id.lock().len(), 1);
    }
}
