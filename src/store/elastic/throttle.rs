//! How many `_bulk` requests may be in flight at once, adapted to how busy the server says it is:
//! at most the configured concurrency, halved each time the server answers 429 (too many requests,
//! its write queue is full), and raised again by one after a run of answers without a 429
//! (additive increase, multiplicative decrease, as TCP does).
//!
//! What it is not for: waiting before a retry (`connection` backs off with jitter) or deciding what
//! is retried (`bulk`). Every `_bulk` of one store passes through its one [`Throttle`], whichever
//! task sends it.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// Successful requests, per unit of the current limit, before the limit grows by one.
const GROW_AFTER: usize = 4;

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    successes: usize,
}

/// The gate every `_bulk` request passes.
#[derive(Debug)]
pub(super) struct Throttle {
    max: usize,
    state: Mutex<State>,
    freed: Notify,
}

/// One request's place; gives it back when dropped.
pub(super) struct Permit<'a>(&'a Throttle);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
        self.0.freed.notify_waiters();
    }
}

impl Throttle {
    /// A gate for at most `max` (≥ 1) requests at once, starting wide open.
    pub(super) fn new(max: usize) -> Throttle {
        let max = max.max(1);
        Throttle {
            max,
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                successes: 0,
            }),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a place under the current limit.
    pub(super) async fn acquire(&self) -> Permit<'_> {
        loop {
            let freed = self.freed.notified();
            {
                let mut s = self.lock();
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return Permit(self);
                }
            }
            freed.await;
        }
    }

    /// The server answered 429: halve the limit (never below 1).
    pub(super) fn busy(&self) {
        let mut s = self.lock();
        s.limit = (s.limit / 2).max(1);
        s.successes = 0;
    }

    /// A request went through without a 429: after enough of them, allow one more at once.
    pub(super) fn ok(&self) {
        let mut s = self.lock();
        s.successes += 1;
        if s.limit < self.max && s.successes >= GROW_AFTER * s.limit {
            s.limit += 1;
            s.successes = 0;
            drop(s);
            self.freed.notify_waiters();
        }
    }

    /// The current limit.
    #[cfg(test)]
    pub(super) fn limit(&self) -> usize {
        self.lock().limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_busy_and_grows_back_one_at_a_time() {
        let t = Throttle::new(4);
        assert_eq!(t.limit(), 4);
        t.busy();
        assert_eq!(t.limit(), 2);
        t.busy();
        t.busy();
        assert_eq!(t.limit(), 1, "never below one");
        for _ in 0..GROW_AFTER {
            t.ok();
        }
        assert_eq!(t.limit(), 2);
        for _ in 0..100 {
            t.ok();
        }
        assert_eq!(t.limit(), 4, "never above the maximum");
    }

    #[tokio::test]
    async fn no_more_in_flight_than_the_limit() {
        let t = Throttle::new(2);
        let a = t.acquire().await;
        let _b = t.acquire().await;
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), t.acquire()).await;
        assert!(third.is_err(), "a third waits");
        drop(a);
        let third = tokio::time::timeout(std::time::Duration::from_secs(5), t.acquire()).await;
        assert!(third.is_ok(), "and gets in once one is done");
    }
}
