//! Polling a workflow's future again at once when it wakes itself while being polled.
//!
//! A step that yields once so that its siblings get polled first (a store gathering the writes
//! of parallel branches into one transaction does that) wakes its own task and returns
//! `Pending`. Through the scheduler, that costs a trip into its idle-task machinery (a system
//! call or two) for every step. [`PollAgain`] notices a wake-up that arrives while the future
//! is being polled and polls it again right away; wake-ups at any other time go to the task's
//! waker as usual.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Polls in a row at most, before leaving the thread to other tasks.
const MAX_POLLS: usize = 16;

/// Not being polled: a wake-up goes to the task's waker.
const IDLE: u8 = 0;
/// Being polled.
const POLLING: u8 = 1;
/// Being polled, and woken meanwhile: poll again.
const WOKEN: u8 = 2;

struct Signal {
    state: AtomicU8,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            // The poller sees it when its poll returns.
            Ok(_) | Err(WOKEN) => {}
            Err(_) => {
                if let Some(w) = self.task.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    w.wake_by_ref();
                }
            }
        }
    }
}

/// A future polled again at once when it wakes itself during a poll.
pub(crate) struct PollAgain<F> {
    inner: F,
    signal: Arc<Signal>,
    waker: Waker,
}

impl<F> PollAgain<F> {
    pub(crate) fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            state: AtomicU8::new(IDLE),
            task: Mutex::new(None),
        });
        PollAgain {
            inner,
            waker: Waker::from(signal.clone()),
            signal,
        }
    }
}

impl<F: Future + Unpin> Future for PollAgain<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        {
            let mut task = this.signal.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_POLLS {
            this.signal.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(out) = Pin::new(&mut this.inner).poll(&mut inner_cx) {
                this.signal.state.store(IDLE, Ordering::Release);
                return Poll::Ready(out);
            }
            if this
                .signal
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
            // Woken while polled: again.
        }
        this.signal.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Wakes itself `n` times, then is ready; counts its polls.
    struct SelfWaking {
        left: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for SelfWaking {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.left == 0 {
                return Poll::Ready(());
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_future_that_wakes_itself_is_polled_again_at_once() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = PollAgain::new(SelfWaking {
            left: 3,
            polls: polls.clone(),
        });
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_busy_future_leaves_the_thread_after_a_while() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = PollAgain::new(SelfWaking {
            left: 100,
            polls: polls.clone(),
        });
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), MAX_POLLS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wake_ups_from_elsewhere_reach_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let handle = tokio::spawn(PollAgain::new(rx));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        tx.send(7).unwrap();
        assert_eq!(handle.await.unwrap(), Ok(7));
    }
}
