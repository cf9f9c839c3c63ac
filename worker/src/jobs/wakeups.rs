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
//!
//! A wake-up can still be spent on a fetch that was already running: apalis polls
//! this strategy only to be woken (`PollWith` ignores its answer), and a fetch that
//! began before a job's commit does not see that job. So after a wake-up that
//! yields no task, a PostgreSQL worker looks again a few times, 25 ms, 100 ms and
//! 400 ms later, until a task comes ([`Wakeups::looking_again`]; SQLite's push
//! watch has its own guard). Under load the jobs of one separate PostgreSQL worker
//! otherwise waited for its 5 s heartbeat now and then.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use apalis::prelude::{PollSnapshot, PollStrategy};
use futures::{Stream, StreamExt, stream::BoxStream};
use tokio::time::{Interval, MissedTickBehavior, Sleep};

/// Items taken from one source in one call at most; past that the task wakes
/// itself to come back (a source that is always ready cannot pin the worker).
const DRAIN_BOUND: usize = 1024;
/// Looks again after a wake-up that yielded no task: this long first, then four
/// times longer each time, [`RECHECKS`] times.
const FIRST_RECHECK: Duration = Duration::from_millis(25);
const RECHECKS: u8 = 3;

pub(super) struct Wakeups {
    sources: Vec<BoxStream<'static, ()>>,
    tick: Interval,
    /// The next look after a wake-up, while no task has come since.
    recheck: Option<Pin<Box<Sleep>>>,
    /// Looks after each wake-up: 0, or [`RECHECKS`] with `looking_again`.
    rechecks: u8,
    rechecks_left: u8,
    next_gap: Duration,
    /// Tasks the worker had taken (`total_ready`) when the last wake-up came.
    ready_at_wake: u64,
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
            recheck: None,
            rechecks: 0,
            rechecks_left: 0,
            next_gap: FIRST_RECHECK,
            ready_at_wake: 0,
        }
    }

    /// After a wake-up that yields no task, looks again [`RECHECKS`] times.
    pub(super) fn looking_again(mut self) -> Self {
        self.rechecks = RECHECKS;
        self
    }

    pub(super) fn on<S: Stream + Send + 'static>(mut self, source: S) -> Self {
        self.sources.push(source.map(|_| ()).boxed());
        self
    }
}

impl PollStrategy for Wakeups {
    fn poll_drive(&mut self, cx: &mut Context<'_>, snapshot: &PollSnapshot) -> Poll<Option<()>> {
        let mut fired = false;
        let mut more = false;
        if let Some(recheck) = &mut self.recheck
            && recheck.as_mut().poll(cx).is_ready()
        {
            self.recheck = None;
            if snapshot.total_ready == self.ready_at_wake {
                fired = true;
            } else {
                // A task came since the wake-up: nothing was lost.
                self.rechecks_left = 0;
            }
        }
        let mut woken = false;
        self.sources.retain_mut(|source| {
            for _ in 0..DRAIN_BOUND {
                match source.poll_next_unpin(cx) {
                    Poll::Ready(Some(())) => woken = true,
                    // An ended source (its connection is gone for good) is dropped;
                    // the interval remains.
                    Poll::Ready(None) => return false,
                    Poll::Pending => return true,
                }
            }
            more = true;
            true
        });
        if woken {
            fired = true;
            self.ready_at_wake = snapshot.total_ready;
            self.rechecks_left = self.rechecks;
            self.next_gap = FIRST_RECHECK;
            self.recheck = None;
        }
        // Ready at most once per period with `Delay`; the second poll registers.
        while self.tick.poll_tick(cx).is_ready() {
            fired = true;
        }
        if fired && self.recheck.is_none() && self.rechecks_left > 0 {
            self.rechecks_left -= 1;
            let mut recheck = Box::pin(tokio::time::sleep(self.next_gap));
            self.next_gap *= 4;
            // Registers this task's waker with the timer.
            if recheck.as_mut().poll(cx).is_pending() {
                self.recheck = Some(recheck);
            }
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

    /// The race apalis leaves open: the wake-up is spent on a fetch that began before
    /// the job's commit, so no task comes. The strategy wakes the worker again,
    /// 25 ms, 100 ms and 400 ms later, and stops once a task has come.
    #[tokio::test(start_paused = true)]
    async fn a_wake_up_that_yields_no_task_is_followed_by_a_few_more_looks() {
        let (tx, rx) = mpsc::channel::<()>(8);
        let mut wakeups = Wakeups::every(Duration::from_secs(3600))
            .looking_again()
            .on(rx);
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let idle = PollSnapshot::default();
        assert_eq!(wakeups.poll_drive(&mut cx, &idle), Poll::Pending);
        tx.clone().try_send(()).unwrap();
        assert_eq!(wakeups.poll_drive(&mut cx, &idle), Poll::Ready(Some(())));

        // No task came (`total_ready` unchanged): each look wakes once, then stops.
        let mut looks = Vec::new();
        let start = tokio::time::Instant::now();
        for _ in 0..40 {
            tokio::time::advance(Duration::from_millis(25)).await;
            if wakeups.poll_drive(&mut cx, &idle).is_ready() {
                looks.push(start.elapsed().as_millis());
            }
        }
        assert_eq!(looks, [25, 125, 525]);

        // A wake-up after which the worker takes a task: no more looks.
        tx.clone().try_send(()).unwrap();
        assert_eq!(wakeups.poll_drive(&mut cx, &idle), Poll::Ready(Some(())));
        let busy = PollSnapshot {
            total_ready: 1,
            ..PollSnapshot::default()
        };
        for _ in 0..40 {
            tokio::time::advance(Duration::from_millis(25)).await;
            assert_eq!(wakeups.poll_drive(&mut cx, &busy), Poll::Pending);
        }
    }
}
