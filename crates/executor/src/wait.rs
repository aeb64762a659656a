//! Waiting, in one place: a condition looked at under a deadline ([`until`]), and a capped
//! exponential backoff under a budget ([`Backoff`]).
//!
//! ```text
//! until(timeout, poll, check, expired)          (looked(): the same, Ok(Err(seen)) at the deadline)
//!   check() ─► Done(v) ───────────────► Ok(v)
//!           ├► Pending(seen) ─► deadline passed? ─► Err(expired(seen))   (what was seen last)
//!           │                 └► sleep poll, look again
//!           └► Err(e) ────────────────► Err(e)                           (a hard failure)
//!
//! Backoff: base, 2·base, 4·base, ... capped at max, until the budget is spent
//! ```
//!
//! Every wait in a step goes through [`until`], so each one has a deadline, reports what it saw
//! last when it gives up, and reads the clock of the runtime (a paused test clock drives it).

use std::{future::Future, time::Duration};

use tokio::time::Instant;

/// What a look at the condition found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check<T, S> {
    /// The condition holds.
    Done(T),
    /// Not yet; what was seen (kept for the error when the deadline passes).
    Pending(S),
}

/// Looks at `check` every `poll` until it is done or `timeout` passes; then `expired` turns
/// what was seen last into the error. The first look is immediate.
///
/// # Errors
/// What `check` returns, or `expired(seen)` at the deadline.
pub async fn until<T, S, E, F, Fut>(
    timeout: Duration,
    poll: Duration,
    check: F,
    expired: impl FnOnce(S) -> E,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T, S>, E>>,
{
    looked(timeout, poll, check).await?.map_err(expired)
}

/// As [`until`], for callers that need to look further (asynchronously) at what was seen last
/// before they fail: `Ok(Ok(v))` when the condition holds, `Ok(Err(seen))` at the deadline.
///
/// # Errors
/// What `check` returns.
pub async fn looked<T, S, E, F, Fut>(
    timeout: Duration,
    poll: Duration,
    mut check: F,
) -> Result<Result<T, S>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T, S>, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await? {
            Check::Done(v) => return Ok(Ok(v)),
            Check::Pending(seen) => {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(Err(seen));
                }
                tokio::time::sleep(poll.min(deadline - now).max(Duration::from_millis(1))).await;
            }
        }
    }
}

/// As [`looked`], over a watch instead of polls: each item the stream yields is judged, until
/// one is done or `deadline` passes (`Some(Err(what was seen last))`, `initial` when nothing
/// came). A watch quiet for `quiet` is reconciled with one `relook` (a LIST: a watch that
/// stalls must not turn into a false timeout) and watched on. `None` when the stream failed
/// or ended, or a relook failed (`None` from it): the caller polls for the time left.
pub async fn watched<I, E: std::fmt::Display, T, S, R, F>(
    mut stream: futures::stream::BoxStream<'static, Result<I, E>>,
    deadline: Instant,
    quiet: Duration,
    initial: S,
    mut judge: impl FnMut(I) -> Check<T, S>,
    mut relook: R,
) -> Option<Result<T, S>>
where
    R: FnMut() -> F,
    F: std::future::Future<Output = Option<I>>,
{
    use futures::StreamExt as _;
    let mut last = initial;
    loop {
        let wake = (Instant::now() + quiet).min(deadline);
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(item)) => match judge(item) {
                    Check::Done(v) => return Some(Ok(v)),
                    Check::Pending(s) => last = s,
                },
                Some(Err(e)) => {
                    tracing::info!(error = %e, "a watch failed; polling instead");
                    return None;
                }
                None => return None,
            },
            () = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Some(Err(last));
                }
                tracing::debug!("a watch was quiet for {quiet:?}; looking once");
                match relook().await {
                    Some(item) => match judge(item) {
                        Check::Done(v) => return Some(Ok(v)),
                        Check::Pending(s) => last = s,
                    },
                    None => return None,
                }
            }
        }
    }
}

/// A capped exponential backoff under a budget.
#[derive(Clone, Debug)]
pub struct Backoff {
    delay: Duration,
    max: Duration,
    deadline: Instant,
}

impl Backoff {
    /// Starts at `base`, doubles up to `max`, and gives up once `budget` has passed.
    pub fn new(base: Duration, max: Duration, budget: Duration) -> Self {
        Self {
            delay: base,
            max,
            deadline: Instant::now() + budget,
        }
    }

    /// The pause before the next try, or `None` once the budget is spent.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let d = self.delay;
        self.delay = (self.delay * 2).min(self.max);
        Some(d)
    }

    /// Calls `f` until it succeeds, its error is not `retriable`, or the budget is spent.
    ///
    /// # Errors
    /// The last error.
    pub async fn retry<T, E, F, Fut>(
        mut self,
        mut f: F,
        retriable: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if retriable(&e) => match self.next_delay() {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_watch_is_judged_item_by_item_a_quiet_one_is_relooked_and_a_failed_one_hands_over() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let quiet = Duration::from_secs(5);
        let judge = |n: u32| {
            if n >= 2 {
                Check::Done(n)
            } else {
                Check::Pending(n)
            }
        };
        let never = || async { None::<u32> };
        // Done on the second item.
        let items = futures::stream::iter([Ok::<u32, String>(1), Ok(2)]).boxed();
        assert_eq!(
            watched(items, deadline, quiet, 0, judge, never).await,
            Some(Ok(2))
        );
        // A stream that ends, or fails, hands over.
        let ended = futures::stream::iter([Ok::<u32, String>(1)]).boxed();
        assert_eq!(watched(ended, deadline, quiet, 0, judge, never).await, None);
        let failed = futures::stream::iter([Err::<u32, String>("410".into())]).boxed();
        assert_eq!(
            watched(failed, deadline, quiet, 0, judge, never).await,
            None
        );
        // A stalled watch is looked at once per `quiet` (a LIST), and watched on: done when a
        // look says so, without a poll every second.
        let t = Instant::now();
        let mut looks = 0;
        let stalled = futures::stream::pending::<Result<u32, String>>().boxed();
        let relook = || {
            looks += 1;
            let n = looks;
            async move { Some(n) }
        };
        assert_eq!(
            watched(stalled, deadline, quiet, 0, judge, relook).await,
            Some(Ok(2))
        );
        assert_eq!(t.elapsed(), quiet * 2);
        assert_eq!(looks, 2);
        // A look that fails hands over to polls.
        let t = Instant::now();
        let stalled = futures::stream::pending::<Result<u32, String>>().boxed();
        assert_eq!(
            watched(stalled, deadline, quiet, 0, judge, never).await,
            None
        );
        assert_eq!(t.elapsed(), quiet);
        // At the deadline, what was seen last.
        let near = Instant::now() + Duration::from_secs(2);
        let one = futures::stream::iter([Ok::<u32, String>(1)])
            .chain(futures::stream::pending())
            .boxed();
        assert_eq!(
            watched(one, near, quiet, 0, judge, never).await,
            Some(Err(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn until_reports_what_it_saw_last_at_the_deadline() {
        let mut n = 0;
        let r: Result<(), String> = until(
            Duration::from_secs(10),
            Duration::from_secs(3),
            || {
                n += 1;
                let seen = n;
                async move { Ok(Check::Pending(seen)) }
            },
            |seen| format!("saw {seen}"),
        )
        .await;
        // Looks at 0, 3, 6, 9 and 10 s.
        assert_eq!(r, Err("saw 5".to_owned()));
        let r: Result<u32, String> = until(
            Duration::from_secs(10),
            Duration::from_secs(1),
            || async { Ok(Check::<u32, ()>::Done(7)) },
            |()| "never".to_owned(),
        )
        .await;
        assert_eq!(r, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_its_cap_and_stops_at_the_budget() {
        let mut b = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(4),
            Duration::from_secs(10),
        );
        let mut delays = Vec::new();
        while let Some(d) = b.next_delay() {
            delays.push(d.as_secs());
            tokio::time::sleep(d).await;
        }
        assert_eq!(delays, [1, 2, 4, 4]);
        let mut calls = 0;
        let r: Result<(), &str> = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .retry(
            || {
                calls += 1;
                async { Err("permanent") }
            },
            |_| false,
        )
        .await;
        assert_eq!((r, calls), (Err("permanent"), 1));
    }
}
