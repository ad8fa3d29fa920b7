//! The slot state machine, as pure functions: what a slot becomes on an event, and what
//! the supervisor loop must do about it. No I/O here; the loop carries out the actions.
//!
//! ```text
//!   empty ─▶ starting ─▶ standby ─▶ active ─▶ dead ─▶ (rebound) joining ─▶ standby …
//!                (fresh)       ▲                          │
//!                              └──────────────────────────┘
//! ```

use std::time::Duration;

/// The life cycle of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No worker, not bound.
    Empty,
    /// A fresh worker was spawned and is rendering its first blocks.
    Starting,
    /// A spare was spawned and is restoring a snapshot and catching up.
    Joining,
    /// A joined worker, ready to take over at the next block.
    Standby,
    /// The worker the output reads from.
    Active,
    /// The worker died or was killed; the slot waits to be rebound.
    Dead,
}

impl SlotState {
    /// The name used in logs, metrics and `chronus status`.
    pub fn name(self) -> &'static str {
        match self {
            SlotState::Empty => "empty",
            SlotState::Starting => "starting",
            SlotState::Joining => "joining",
            SlotState::Standby => "standby",
            SlotState::Active => "active",
            SlotState::Dead => "dead",
        }
    }

    /// Every state, at the index [`index`](Self::index) gives it (to publish a state in
    /// an atomic).
    pub const ALL: [SlotState; 6] = [
        SlotState::Empty,
        SlotState::Starting,
        SlotState::Joining,
        SlotState::Standby,
        SlotState::Active,
        SlotState::Dead,
    ];

    /// Its place in [`ALL`](Self::ALL).
    pub fn index(self) -> u8 {
        self as u8
    }

    /// The state at `index` in [`ALL`](Self::ALL) (`Empty` for anything else).
    pub fn from_index(index: u8) -> SlotState {
        SlotState::ALL
            .get(usize::from(index))
            .copied()
            .unwrap_or(SlotState::Empty)
    }
}

/// What happened to a slot, as the supervisor loop found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A fresh worker was spawned for the slot (it renders from a block of the patch).
    SpawnedFresh,
    /// A spare was spawned for the slot (it joins from a snapshot).
    SpawnedSpare,
    /// The worker's process ended (its pidfd said so; it is already reaped).
    Exited,
    /// The worker restored or started and holds the block the output plays next.
    Joined,
    /// The spare did not join within the join timeout.
    JoinTimedOut,
    /// The snapshot a spare needs could not be asked for (the queue was full).
    SnapshotUnqueued,
    /// The output reads this slot now (it switched to it, or started on it).
    MadeActive,
    /// The output switched away from this slot at `block`.
    DroppedByOutput {
        /// First block served from the other slot.
        block: u64,
    },
    /// The slot was active and lacked block `block` when it was due, with no standby.
    ActiveMissed {
        /// The block it lacked.
        block: u64,
    },
    /// The slot was a ready standby and lacked block `block` when it was due.
    StandbyMissed {
        /// The block it lacked.
        block: u64,
    },
    /// The slot's command ring overflowed (its worker stopped draining it) at `block`.
    RingOverflow {
        /// The block the output had reached.
        block: u64,
    },
    /// The slot was a ready standby and its block `block` differed from the active one's.
    Diverged {
        /// The first block found different.
        block: u64,
    },
}

/// What the supervisor loop must do on a transition, in this order, before the slot
/// takes its new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The worker is late: count a crash and a deadline miss, mark the slot dead for the
    /// output, and kill the worker (logging the block it missed).
    KillLate {
        /// The block it missed.
        block: u64,
    },
    /// The standby left the lockstep: count it, mark the slot dead for the output, and
    /// kill the worker (logging the block that differed); a spare joins from the active.
    KillDiverged {
        /// The first block found different.
        block: u64,
    },
    /// The spare did not become ready: kill it, logging why.
    KillSpare(&'static str),
    /// The worker died before it was ever ready: wait longer before the next one, so a
    /// worker that cannot start does not turn into a respawn storm (see [`backoff`]).
    BackOff,
    /// The slot is ready: tell the output, and count the replacement if it was one.
    MarkReady,
    /// The slot is ready or heard: forget earlier back-offs.
    ResetBackOff,
}

/// The transition table: the state a slot in `state` takes on `event`, and the actions.
/// Every pair is spelled out (no catch-all), so a new state or event does not compile
/// until its row is written; the unit test checks every pair.
pub fn next(state: SlotState, event: Event) -> (SlotState, Vec<Action>) {
    use Action::{BackOff, KillDiverged, KillLate, KillSpare, MarkReady, ResetBackOff};
    use SlotState::{Active, Dead, Empty, Joining, Standby, Starting};
    let unchanged = (state, Vec::new());
    match event {
        Event::SpawnedFresh => (Starting, vec![]),
        Event::SpawnedSpare => (Joining, vec![]),
        Event::Exited => match state {
            Starting | Joining => (Dead, vec![BackOff]),
            Empty | Standby | Active | Dead => (Dead, vec![]),
        },
        Event::Joined => match state {
            Starting | Joining => (Standby, vec![MarkReady, ResetBackOff]),
            Empty | Standby | Active | Dead => unchanged,
        },
        Event::JoinTimedOut => match state {
            Starting | Joining => (Dead, vec![KillSpare("did not join in time"), BackOff]),
            Empty | Standby | Active | Dead => unchanged,
        },
        Event::SnapshotUnqueued => match state {
            Starting | Joining => (
                Dead,
                vec![KillSpare("snapshot request could not be queued"), BackOff],
            ),
            Empty | Standby | Active | Dead => unchanged,
        },
        // Only a standby is made active: a late notice must not revive a slot whose
        // worker has died since.
        Event::MadeActive => match state {
            Standby => (Active, vec![ResetBackOff]),
            Empty | Starting | Joining | Active | Dead => unchanged,
        },
        Event::DroppedByOutput { block } | Event::RingOverflow { block } => match state {
            Starting | Joining => (Dead, vec![KillLate { block }, BackOff]),
            Empty | Standby | Active => (Dead, vec![KillLate { block }]),
            Dead => unchanged,
        },
        Event::ActiveMissed { block } => match state {
            Active => (Dead, vec![KillLate { block }]),
            Empty | Starting | Joining | Standby | Dead => unchanged,
        },
        Event::StandbyMissed { block } => match state {
            Standby => (Dead, vec![KillLate { block }]),
            Empty | Starting | Joining | Active | Dead => unchanged,
        },
        // Only a standby is compared with the active worker.
        Event::Diverged { block } => match state {
            Standby => (Dead, vec![KillDiverged { block }]),
            Empty | Starting | Joining | Active | Dead => unchanged,
        },
    }
}

/// What to do with a dead slot once it may be rebound, given the other slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// The usual case: a spare joins the lockstep from a snapshot of the active worker.
    JoinActive,
    /// Both workers are lost: restart the pair (from the restore point if there is one).
    RestartBoth,
    /// The other slot is a standby about to be made active, or starting: wait for the
    /// output to settle on it.
    Wait,
}

/// Whether a dead slot gets a spare, the pair a restart, or waits, from the state of the
/// other slot and whether it has a live worker.
pub fn replace_dead(other: SlotState, other_has_worker: bool) -> Replacement {
    match (other, other_has_worker) {
        (SlotState::Active, true) => Replacement::JoinActive,
        (_, false) | (SlotState::Dead | SlotState::Joining | SlotState::Empty, true) => {
            Replacement::RestartBoth
        }
        (SlotState::Standby | SlotState::Starting, true) => Replacement::Wait,
    }
}

/// First back-off after a worker died before becoming ready; doubles each time.
pub const RESPAWN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest back-off.
pub const RESPAWN_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long to wait before the next worker of a slot whose workers died before becoming
/// ready `early_deaths` times in a row (0 for the first such death).
pub fn backoff(early_deaths: u32) -> Duration {
    RESPAWN_BACKOFF
        .saturating_mul(1 << early_deaths.min(6))
        .min(RESPAWN_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{BackOff, KillDiverged, KillLate, KillSpare, MarkReady, ResetBackOff};
    use SlotState::{Active, Dead, Empty, Joining, Standby, Starting};

    const B: u64 = 42;

    /// Every state, by a chain whose match fails to compile when a state is added.
    fn all_states() -> Vec<SlotState> {
        let following = |s: SlotState| match s {
            Empty => Some(Starting),
            Starting => Some(Joining),
            Joining => Some(Standby),
            Standby => Some(Active),
            Active => Some(Dead),
            Dead => None,
        };
        std::iter::successors(Some(Empty), |&s| following(s)).collect()
    }

    /// Every event (with block `B`), by a chain that fails to compile when one is added.
    fn all_events() -> Vec<Event> {
        let following = |e: Event| match e {
            Event::SpawnedFresh => Some(Event::SpawnedSpare),
            Event::SpawnedSpare => Some(Event::Exited),
            Event::Exited => Some(Event::Joined),
            Event::Joined => Some(Event::JoinTimedOut),
            Event::JoinTimedOut => Some(Event::SnapshotUnqueued),
            Event::SnapshotUnqueued => Some(Event::MadeActive),
            Event::MadeActive => Some(Event::DroppedByOutput { block: B }),
            Event::DroppedByOutput { .. } => Some(Event::ActiveMissed { block: B }),
            Event::ActiveMissed { .. } => Some(Event::StandbyMissed { block: B }),
            Event::StandbyMissed { .. } => Some(Event::RingOverflow { block: B }),
            Event::RingOverflow { .. } => Some(Event::Diverged { block: B }),
            Event::Diverged { .. } => None,
        };
        std::iter::successors(Some(Event::SpawnedFresh), |&e| following(e)).collect()
    }

    /// The expected row of each state, one entry per event in [`all_events`] order.
    fn expected_row(state: SlotState) -> Vec<(SlotState, Vec<Action>)> {
        let same = || (state, vec![]);
        let late = || (Dead, vec![KillLate { block: B }]);
        let late_early = || (Dead, vec![KillLate { block: B }, BackOff]);
        let spare = |why| (Dead, vec![KillSpare(why), BackOff]);
        let timeout = "did not join in time";
        let unqueued = "snapshot request could not be queued";
        match state {
            //   spawned fresh,   spawned spare,   exited,  joined, join timed out, snapshot unqueued, made active, dropped, active missed, standby missed, overflow, diverged
            Empty => vec![
                (Starting, vec![]),
                (Joining, vec![]),
                (Dead, vec![]),
                same(),
                same(),
                same(),
                same(),
                late(),
                same(),
                same(),
                late(),
                same(),
            ],
            Starting | Joining => vec![
                (Starting, vec![]),
                (Joining, vec![]),
                (Dead, vec![BackOff]),
                (Standby, vec![MarkReady, ResetBackOff]),
                spare(timeout),
                spare(unqueued),
                same(),
                late_early(),
                same(),
                same(),
                late_early(),
                same(),
            ],
            Standby => vec![
                (Starting, vec![]),
                (Joining, vec![]),
                (Dead, vec![]),
                same(),
                same(),
                same(),
                (Active, vec![ResetBackOff]),
                late(),
                same(),
                late(),
                late(),
                (Dead, vec![KillDiverged { block: B }]),
            ],
            Active => vec![
                (Starting, vec![]),
                (Joining, vec![]),
                (Dead, vec![]),
                same(),
                same(),
                same(),
                same(),
                late(),
                late(),
                same(),
                late(),
                same(),
            ],
            Dead => vec![
                (Starting, vec![]),
                (Joining, vec![]),
                (Dead, vec![]),
                same(),
                same(),
                same(),
                same(),
                same(),
                same(),
                same(),
                same(),
                same(),
            ],
        }
    }

    #[test]
    fn every_state_and_event_pair_has_its_transition() {
        let states = all_states();
        let events = all_events();
        assert_eq!(states.len(), 6);
        let mut pairs = 0;
        for state in states {
            let row = expected_row(state);
            assert_eq!(
                row.len(),
                events.len(),
                "row of {state:?} has a column per event"
            );
            for (event, expected) in events.iter().zip(row) {
                assert_eq!(next(state, *event), expected, "{state:?} on {event:?}");
                pairs += 1;
            }
        }
        assert_eq!(pairs, 6 * events.len());
    }

    #[test]
    fn a_dead_slot_joins_the_active_worker_restarts_the_pair_or_waits() {
        use Replacement::{JoinActive, RestartBoth, Wait};
        for other in all_states() {
            let with_worker = match other {
                Active => JoinActive,
                Empty | Joining | Dead => RestartBoth,
                Starting | Standby => Wait,
            };
            assert_eq!(replace_dead(other, true), with_worker, "{other:?}");
            assert_eq!(
                replace_dead(other, false),
                RestartBoth,
                "{other:?} without worker"
            );
        }
    }

    #[test]
    fn backoff_doubles_from_50_ms_up_to_2_s() {
        let ms: Vec<u128> = (0..9).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(backoff(u32::MAX), RESPAWN_BACKOFF_MAX);
    }
}
