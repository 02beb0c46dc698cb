//! The node runtime's monotonic clock, the time input of the Raft core's leases.
//!
//! It reads `CLOCK_BOOTTIME`: monotonic like `CLOCK_MONOTONIC` (so `Instant`), but it also
//! counts the time the machine was suspended, so a leader on a laptop or a virtual machine
//! that was frozen wakes with its lease expired rather than seemingly fresh. A stopped
//! process (SIGSTOP) sees the time pass too; that is what makes its lease lapse.

use crate::raft::Micros;

/// Microseconds since boot.
pub fn monotonic_us() -> Micros {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes to it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_BOOTTIME is available on Linux");
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_goes_forward_with_real_time() {
        let a = super::monotonic_us();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = super::monotonic_us();
        assert!(b >= a + 20_000, "{a} then {b}");
        assert!(b < a + 5_000_000, "{a} then {b}");
    }
}
