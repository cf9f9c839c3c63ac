//! When a queue worker fetches: on any of its wake-up sources (PostgreSQL's insert
//! notifications, pushes from this process, a poll interval), as one apalis poll
//! strategy that drains every source on each call.
//!
//! apalis' own combination (`Strategy::new().stream(..).interval(..)`) returns at
//! the first source that is ready, and a source that answered `Ready` has not
//! registered a waker for its next item: when the fetch that followed came back
//! empty (the other worker had locked the rows), the worker slept until something
//! else polled it. Under load with two PostgreSQL workers, whole waves of queued
//! jobs waited 2.6–4.7 s for the next heartbeat (docs/benchmarks.md, 2026-11-30,
//! fourth sitting). Draining each source until it is `Pending` leaves every one of
//! them with this task's waker, so no wake-up is lost; many notifications become one
//! fetch, which takes a whole batch anyway (and the next fetch follows on its own
//! while rows remain).

use std::{
    task::{Context, Poll},
    time::Duration,
};

use apalis::prelude::{PollSnapshot, PollStrategy};
use futures::{Stream, StreamExt, stream::BoxStream};
use tokio::time::{Interval, MissedTickBehavior};

/// Items taken from one source in one call at most; past that the task wakes
/// itself to come back (a source that is always ready cannot pin the worker).
const DRAIN_BOUND: usize = 1024;

pub(super) struct Wakeups {
    sources: Vec<BoxStream<'static, ()>>,
    tick: Interval,
}

impl Wakeups {
    /// Wakes on `every` tick and on any item of the sources added with [`Self::on`].
    pub(super) fn every(period: Duration) -> Self {
        // The worker fetches when it starts anyway: the first tick is a period away.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            sources: Vec::new(),
            tick,
        }
    }

    pub(super) fn on<S: Stream + Send + 'static>(mut self, source: S) -> Self {
        self.sources.push(source.map(|_| ()).boxed());
        self
    }
}

impl PollStrategy for Wakeups {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut fired = false;
        let mut more = false;
        self.sources.retain_mut(|source| {
            for _ in 0..DRAIN_BOUND {
                match source.poll_next_unpin(cx) {
                    Poll::Ready(Some(())) => fired = true,
                    // An ended source (its connection is gone for good) is dropped;
                    // the interval remains.
                    Poll::Ready(None) => return false,
                    Poll::Pending => return true,
                }
            }
            more = true;
            true
        });
        // Ready at most once per period with `Delay`; the second poll registers.
        while self.tick.poll_tick(cx).is_ready() {
            fired = true;
        }
        if more {
            cx.waker().wake_by_ref();
        }
        if fired {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Context, Poll, Wake, Waker},
        time::Duration,
    };

    use apalis::prelude::{PollSnapshot, PollStrategy};
    use futures::channel::mpsc;

    use super::Wakeups;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The case apalis' combination lost: a call that found a source ready still
    /// leaves that source with the waker, so an item sent afterwards, with nobody
    /// polling, wakes the worker.
    #[tokio::test]
    async fn a_source_that_was_ready_still_wakes_for_its_next_item() {
        let (first, first_rx) = mpsc::channel::<()>(8);
        let (second, second_rx) = mpsc::channel::<()>(8);
        let mut wakeups = Wakeups::every(Duration::from_secs(3600))
            .on(first_rx)
            .on(second_rx);
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let snapshot = PollSnapshot::default();
        assert_eq!(wakeups.poll_drive(&mut cx, &snapshot), Poll::Pending);

        // Both sources ready at once: one call takes everything they have.
        for tx in [&first, &second] {
            tx.clone().try_send(()).unwrap();
            tx.clone().try_send(()).unwrap();
        }
        assert_eq!(
            wakeups.poll_drive(&mut cx, &snapshot),
            Poll::Ready(Some(()))
        );
        let woken = counter.0.load(Ordering::SeqCst);

        // Nobody polls; the first source gets an item: the waker hears of it.
        first.clone().try_send(()).unwrap();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            woken + 1,
            "the source that was ready kept the waker"
        );
        assert_eq!(
            wakeups.poll_drive(&mut cx, &snapshot),
            Poll::Ready(Some(()))
        );
        assert_eq!(wakeups.poll_drive(&mut cx, &snapshot), Poll::Pending);
    }
}
