//! Spinning briefly before a request worker goes to sleep, while the server is busy.
//!
//! A tokio worker with nothing to run parks in `epoll_wait`. The next request must then wake
//! it: the client's `send` pays for the wake-up inside the kernel (an inter-processor
//! interrupt; on a virtual machine an exit to the hypervisor), and the worker pays for
//! coming back. Under a steady stream of small requests that happens for nearly every
//! request, and on a loopback benchmark the client is the one that runs out of CPU first.
//!
//! So, when the worker's previous sleep was short (the server is busy), it spins for a
//! bounded time before parking. Whatever arrives during the spin is found by `epoll_wait`
//! without sleeping. When the previous sleep was long (the server is idle), it parks at
//! once. The CPU this costs is at most `spin` per park, and only in busy periods.
//!
//! Measured on two shared cores (2026-11-24, `redis-benchmark -t get -c 50 -P 16`, one
//! worker): the worker slept 7,200 times per million pipelined GETs against Redis's 1,900,
//! and the client spent 10% more CPU per request against us with the same syscalls. A 20 µs
//! spin took kvstore from 1.63M to 2.01M requests/s (Redis: 1.95M in the same run). The
//! decision is [`SpinPolicy::spin_for`]; [`install`] wires it into the runtime.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A sleep shorter than this means the worker is busy, and its next park spins first.
pub const BUSY_SLEEP_MAX: Duration = Duration::from_millis(1);

/// When a worker spins before parking, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpinPolicy {
    /// Longest spin before each park; zero turns spinning off.
    pub spin: Duration,
    /// A previous sleep shorter than this counts as busy.
    pub busy_sleep_max: Duration,
}

impl SpinPolicy {
    pub fn new(spin: Duration) -> SpinPolicy {
        SpinPolicy {
            spin,
            busy_sleep_max: BUSY_SLEEP_MAX,
        }
    }

    /// How long to spin before parking, given how long the previous sleep lasted (`None`
    /// for a worker's first park).
    pub fn spin_for(&self, last_sleep: Option<Duration>) -> Duration {
        match last_sleep {
            Some(slept) if slept < self.busy_sleep_max => self.spin,
            _ => Duration::ZERO,
        }
    }
}

thread_local! {
    /// When this worker last parked, and how long its last sleep lasted.
    static PARKED_AT: Cell<Option<Instant>> = const { Cell::new(None) };
    static LAST_SLEEP: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Installs the policy's park and unpark hooks on a runtime builder. A zero spin installs
/// nothing.
pub fn install(builder: &mut tokio::runtime::Builder, policy: SpinPolicy) {
    if policy.spin.is_zero() {
        return;
    }
    builder.on_thread_park(move || {
        let spin = policy.spin_for(LAST_SLEEP.get());
        if !spin.is_zero() {
            let started = Instant::now();
            while started.elapsed() < spin {
                std::hint::spin_loop();
            }
        }
        PARKED_AT.set(Some(Instant::now()));
    });
    builder.on_thread_unpark(|| {
        LAST_SLEEP.set(PARKED_AT.take().map(|at| at.elapsed()));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_only_after_a_short_sleep() {
        let policy = SpinPolicy::new(Duration::from_micros(20));
        assert_eq!(policy.spin_for(None), Duration::ZERO, "first park");
        assert_eq!(
            policy.spin_for(Some(Duration::from_micros(5))),
            Duration::from_micros(20)
        );
        assert_eq!(
            policy.spin_for(Some(BUSY_SLEEP_MAX)),
            Duration::ZERO,
            "a sleep of the threshold or longer is idle"
        );
        assert_eq!(
            SpinPolicy::new(Duration::ZERO).spin_for(Some(Duration::ZERO)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_runtime_with_the_hooks_runs_tasks_across_parks() {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(1).enable_all();
        install(&mut builder, SpinPolicy::new(Duration::from_micros(50)));
        let runtime = builder.build().unwrap();
        let total = runtime.block_on(async {
            let mut total = 0u64;
            for i in 0..100u64 {
                // Each spawn and await lets the worker park in between.
                total += tokio::spawn(async move { i }).await.unwrap();
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            total
        });
        assert_eq!(total, (0..100).sum::<u64>());
    }
}
