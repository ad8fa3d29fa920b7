//! Real-time scheduling for the threads that make sound.
//!
//! Where the process may (root, or an `rtprio` limit), the output thread and each worker's
//! render thread run under `SCHED_FIFO` with their memory locked, so page faults and
//! ordinary processes cannot delay a block. Where it may not, they run normally: that is
//! reported once, and the depth setting is what absorbs the scheduling noise.
//!
//! A crate of its own because both the worker (engine) and the supervisor (output thread,
//! loop) use it, and neither should depend on the other for it.

use thread_priority::{
    set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy, ThreadPriority,
    ThreadPriorityValue, ThreadSchedulePolicy,
};

/// Priority of the output thread (above the workers: it is the clock).
pub const OUTPUT_PRIORITY: u8 = 80;
/// Priority of a worker's render thread.
pub const WORKER_PRIORITY: u8 = 70;
/// Priority of the supervisor's loop (death detection; below the audio threads).
pub const SUPERVISOR_PRIORITY: u8 = 60;

/// Stack of the threads the supervisor starts: small, because real-time mode locks all
/// memory.
pub const THREAD_STACK: usize = 256 * 1024;

thread_local! {
    /// Whether this thread was marked by [`mark_realtime_thread`].
    static REALTIME_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as one of the real-time loops (the output clock, the
/// supervisor loop), whatever its scheduling turned out to be: work that must never run
/// there (reading `/proc`, building reports) checks [`is_realtime_thread`] and refuses.
/// Allocates nothing.
pub fn mark_realtime_thread() {
    REALTIME_THREAD.with(|mark| mark.set(true));
}

/// Whether the calling thread was marked by [`mark_realtime_thread`].
pub fn is_realtime_thread() -> bool {
    REALTIME_THREAD.with(std::cell::Cell::get)
}

/// How a thread ended up scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheduling {
    /// `SCHED_FIFO` at this priority, memory locked (or not, with the reason).
    Realtime {
        /// The FIFO priority.
        priority: u8,
        /// `None` if `mlockall` succeeded, else why it did not.
        mlock_error: Option<String>,
    },
    /// Normal scheduling, with the reason real-time was refused.
    Normal(String),
}

/// Asks for `SCHED_FIFO` at `priority` for the calling thread and locks the process's
/// memory. Never fails: the result says what was obtained.
pub fn make_current_thread_realtime(priority: u8) -> Scheduling {
    let value = match ThreadPriorityValue::try_from(priority) {
        Ok(v) => v,
        Err(e) => return Scheduling::Normal(format!("priority {priority}: {e}")),
    };
    let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        policy,
    ) {
        return Scheduling::Normal(format!(
            "SCHED_FIFO refused ({e:?}); running with normal scheduling"
        ));
    }
    // ONFAULT: lock pages as they are touched, not the whole binary up front (less
    // memory, and a killed worker is torn down faster).
    let flags = rustix::mm::MlockAllFlags::CURRENT
        | rustix::mm::MlockAllFlags::FUTURE
        | rustix::mm::MlockAllFlags::ONFAULT;
    let mlock_error = rustix::mm::mlockall(flags).err().map(|e| e.to_string());
    Scheduling::Realtime {
        priority,
        mlock_error,
    }
}

/// Logs what [`make_current_thread_realtime`] obtained, once, for `who`.
pub fn log_scheduling(who: &str, scheduling: &Scheduling) {
    match scheduling {
        Scheduling::Realtime {
            priority,
            mlock_error: None,
        } => tracing::info!("{who}: SCHED_FIFO priority {priority}, memory locked"),
        Scheduling::Realtime {
            priority,
            mlock_error: Some(e),
        } => tracing::info!("{who}: SCHED_FIFO priority {priority}; memory not locked ({e})"),
        Scheduling::Normal(why) => tracing::info!("{who}: {why}"),
    }
}
