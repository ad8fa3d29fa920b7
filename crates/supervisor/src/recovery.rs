//! Recovery after losing both workers at once: the restore point, the command history
//! since it, and poison commands (DESIGN.md invariant 6).
//!
//! The supervisor keeps a recent snapshot (the restore point, refreshed every
//! [`RESTORE_REFRESH`] and after every join) and every command stamped since, so that a
//! cold restart costs a few blocks of silence, not the state of the music. When both
//! workers crashed by themselves on the same block, the last command applied in that block
//! is the suspect: it is left out of the replay and its sender told. If the new pair dies
//! on that block again, the restore point itself is poisoned and the restart is from the
//! patch. No I/O here: the supervisor reads the snapshot area and pushes to the queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chronus_engine::StampedCommand;
use chronus_protocol::AddressTable;

use crate::transport::ReplyTo;

/// How often the restore point is refreshed: bounds the history replayed and the catch-up
/// rendering.
pub const RESTORE_REFRESH: Duration = Duration::from_secs(2);
/// Two workers dying on the same block within this time died of the same command.
pub const POISON_WINDOW: Duration = Duration::from_millis(500);
/// Most commands kept for a replay after losing both workers (below the engine's
/// pending-command capacity, so a restarted worker can take them all at once).
pub const MAX_HISTORY: usize = 1000;

/// The command that made both workers fail, taken out of the history.
#[derive(Debug, Clone, Copy)]
pub struct Suspect {
    /// The block both workers died on.
    pub block: u64,
    /// The command.
    pub command: StampedCommand,
    /// Who sent it, to be told with `/fail`.
    pub reply_to: Option<ReplyTo>,
}

/// The address a command answers to in `table`, for the log and for its `/fail`
/// (fault-injection commands have no address of their own: `/debug/poison`).
pub fn answer_address(table: &AddressTable, command: &chronus_engine::Command) -> String {
    match table.describe(command) {
        Some((address, _)) => address,
        None if matches!(command, chronus_engine::Command::DebugPoison) => {
            "/debug/poison".to_string()
        }
        None => format!("{command:?}"),
    }
}

/// How to start the new pair of a cold restart.
#[derive(Debug, Clone, PartialEq)]
pub enum Restart {
    /// Both join from snapshot `request`, then these commands are replayed (seq order).
    FromSnapshot {
        /// The snapshot's request id.
        request: u64,
        /// Commands stamped after the snapshot, to replay at their own frames.
        replay: Vec<StampedCommand>,
    },
    /// No usable snapshot: both start afresh from the patch.
    FromPatch,
}

/// The restore point, the history since it and what is known of the last deaths.
#[derive(Debug)]
pub struct Recovery {
    /// Commands stamped since the restore point's snapshot, in seq order.
    history: VecDeque<(StampedCommand, Option<ReplyTo>)>,
    /// The block at which both workers died in the last cold restart, if they died on the
    /// same one: a second loss at that block means the restore point itself is poisoned.
    poisoned_block: Option<u64>,
    /// Per slot: the block its last worker had reached when it crashed by itself, and when.
    last_death: [Option<(u64, Instant)>; 2],
    /// The snapshot a cold restart can start from: (request id, last seq in it).
    restore_point: Option<(u64, u64)>,
    /// A snapshot requested (for a join or a refresh) whose publication we watch for.
    watched_snapshot: Option<u64>,
    /// When the restore point was last refreshed.
    last_refresh: Instant,
}

impl Recovery {
    /// Nothing to restore yet; the first refresh is due [`RESTORE_REFRESH`] after `now`.
    pub fn new(now: Instant) -> Recovery {
        Recovery {
            history: VecDeque::new(),
            poisoned_block: None,
            last_death: [None; 2],
            restore_point: None,
            watched_snapshot: None,
            last_refresh: now,
        }
    }

    /// A command was stamped: keep it for a replay. A history too long to replay waits
    /// for the next snapshot instead.
    pub fn stamped(&mut self, command: StampedCommand, reply_to: Option<ReplyTo>) {
        if self.history.len() < MAX_HISTORY {
            self.history.push_back((command, reply_to));
        } else {
            self.forget();
        }
    }

    /// A patch switch was stamped. Patch text is not kept in the history: start a new
    /// restore point.
    pub fn patch_switched(&mut self) {
        self.forget();
    }

    fn forget(&mut self) {
        self.restore_point = None;
        self.history.clear();
    }

    /// A snapshot was requested (for a join or a refresh): watch for its publication.
    pub fn snapshot_requested(&mut self, request: u64) {
        self.watched_snapshot = Some(request);
    }

    /// The snapshot being watched for, if any.
    pub fn watched(&self) -> Option<u64> {
        self.watched_snapshot
    }

    /// The watched snapshot was published, holding every command through `last_seq`: it
    /// is the new restore point, and older commands need no replay.
    pub fn snapshot_published(&mut self, last_seq: u64, now: Instant) {
        if let Some(request) = self.watched_snapshot.take() {
            self.restore_point = Some((request, last_seq));
            self.history.retain(|(c, _)| c.seq > last_seq);
            self.last_refresh = now;
        }
    }

    /// The watched snapshot is not published yet: give up on it when its worker must have
    /// died before publishing it.
    pub fn snapshot_pending(&mut self, now: Instant) {
        if now.duration_since(self.last_refresh) > RESTORE_REFRESH * 3 {
            self.watched_snapshot = None;
        }
    }

    /// Whether to ask for a fresh snapshot now (the caller checks the pair is ready).
    pub fn refresh_due(&self, now: Instant) -> bool {
        self.watched_snapshot.is_none() && now.duration_since(self.last_refresh) > RESTORE_REFRESH
    }

    /// A refresh was attempted at `now`: `request` was queued, or `None` if the queue was
    /// full (tried again after the next interval).
    pub fn refresh_requested(&mut self, request: Option<u64>, now: Instant) {
        if request.is_some() {
            self.watched_snapshot = request;
        }
        self.last_refresh = now;
    }

    /// The worker of `slot` died: `crashed` is the block it had reached and when, if it
    /// died by itself (not killed from outside), which may mean a command killed it.
    pub fn worker_died(&mut self, slot: usize, crashed: Option<(u64, Instant)>) {
        if let Some(death) = self.last_death.get_mut(slot) {
            *death = crashed;
        }
    }

    /// Both workers are lost: finds the poison command, if both crashed by themselves on
    /// the same block (within [`POISON_WINDOW`]), and takes it out of the history. A second
    /// loss on the same block drops the restore point (it holds the poison's effects).
    pub fn take_suspect(&mut self, block_frames: u64) -> Option<Suspect> {
        let same_block = match self.last_death {
            [Some((a, at_a)), Some((b, at_b))]
                if a == b && at_a.max(at_b).duration_since(at_a.min(at_b)) < POISON_WINDOW =>
            {
                Some(a)
            }
            _ => None,
        };
        if same_block.is_some() && same_block == self.poisoned_block {
            let rendered = self.last_death.map(|d| d.map(|(block, _)| block));
            tracing::error!("both workers died again on block {rendered:?}: the restore point itself is poisoned");
            self.restore_point = None;
        }
        self.poisoned_block = same_block;
        let block = same_block?;
        let in_block =
            |frame: u64| frame >= block * block_frames && frame < (block + 1) * block_frames;
        let index = self.history.iter().rposition(|(c, _)| in_block(c.frame))?;
        let (command, reply_to) = self.history.remove(index)?;
        Some(Suspect {
            block,
            command,
            reply_to,
        })
    }

    /// Commands kept for a replay.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// How to restart the pair: from the restore point if `snapshot_present` still finds
    /// it and the queue has `room` for the whole history, else from the patch.
    pub fn restart(&self, snapshot_present: impl FnOnce(u64) -> bool, room: usize) -> Restart {
        let Some((request, last_seq)) = self.restore_point else {
            return Restart::FromPatch;
        };
        if !snapshot_present(request) || self.history.len() >= room {
            return Restart::FromPatch;
        }
        Restart::FromSnapshot {
            request,
            replay: self
                .history
                .iter()
                .filter(|(c, _)| c.seq > last_seq)
                .map(|(c, _)| *c)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronus_engine::Command;

    const FRAMES: u64 = 64;

    fn command(seq: u64, frame: u64) -> StampedCommand {
        StampedCommand {
            seq,
            frame,
            command: Command::EngineGain(0.5),
        }
    }

    fn client(port: u16) -> Option<ReplyTo> {
        Some(ReplyTo::Udp(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            port,
        ))))
    }

    fn seqs(restart: &Restart) -> Vec<u64> {
        match restart {
            Restart::FromSnapshot { replay, .. } => replay.iter().map(|c| c.seq).collect(),
            Restart::FromPatch => panic!("expected a restart from the snapshot"),
        }
    }

    /// A recovery holding snapshot 7 (through seq 2) and commands 1..=5 at frames 64 apart.
    fn with_restore_point(now: Instant) -> Recovery {
        let mut r = Recovery::new(now);
        for seq in 1..=5 {
            r.stamped(command(seq, seq * FRAMES), client(9000 + seq as u16));
        }
        r.snapshot_requested(7);
        r.snapshot_published(2, now);
        r
    }

    #[test]
    fn a_published_snapshot_becomes_the_restore_point_and_trims_the_history() {
        let now = Instant::now();
        let r = with_restore_point(now);
        assert_eq!(r.watched(), None);
        assert_eq!(r.history_len(), 3);
        let restart = r.restart(|request| request == 7, 100);
        assert!(matches!(restart, Restart::FromSnapshot { request: 7, .. }));
        assert_eq!(seqs(&restart), [3, 4, 5]);
    }

    #[test]
    fn no_restore_point_a_vanished_snapshot_or_no_room_restart_from_the_patch() {
        let now = Instant::now();
        let mut r = Recovery::new(now);
        r.stamped(command(1, 0), None);
        assert_eq!(r.restart(|_| true, 100), Restart::FromPatch);
        let r = with_restore_point(now);
        assert_eq!(r.restart(|_| false, 100), Restart::FromPatch);
        assert_eq!(r.restart(|_| true, 3), Restart::FromPatch);
        assert_ne!(r.restart(|_| true, 4), Restart::FromPatch);
    }

    #[test]
    fn a_patch_switch_or_a_history_too_long_forgets_the_restore_point() {
        let now = Instant::now();
        let mut r = with_restore_point(now);
        r.patch_switched();
        assert_eq!(r.history_len(), 0);
        assert_eq!(r.restart(|_| true, 100), Restart::FromPatch);

        let mut r = with_restore_point(now);
        let mut seq = 6;
        while r.history_len() < MAX_HISTORY {
            r.stamped(command(seq, seq * FRAMES), None);
            seq += 1;
        }
        assert_ne!(r.restart(|_| true, usize::MAX), Restart::FromPatch);
        r.stamped(command(9999, 0), None);
        assert_eq!(r.history_len(), 0);
        assert_eq!(r.restart(|_| true, usize::MAX), Restart::FromPatch);
    }

    #[test]
    fn refreshes_are_spaced_and_an_unpublished_snapshot_is_given_up() {
        let start = Instant::now();
        let mut r = Recovery::new(start);
        assert!(!r.refresh_due(start));
        let due = start + RESTORE_REFRESH + Duration::from_millis(1);
        assert!(r.refresh_due(due));
        r.refresh_requested(Some(3), due);
        assert_eq!(r.watched(), Some(3));
        assert!(!r.refresh_due(due + RESTORE_REFRESH * 2));
        r.snapshot_pending(due + RESTORE_REFRESH);
        assert_eq!(r.watched(), Some(3));
        r.snapshot_pending(due + RESTORE_REFRESH * 3 + Duration::from_millis(1));
        assert_eq!(r.watched(), None);
        // A full queue: nothing watched, and the next try waits a whole interval.
        let later = due + RESTORE_REFRESH * 4;
        r.refresh_requested(None, later);
        assert_eq!(r.watched(), None);
        assert!(!r.refresh_due(later + RESTORE_REFRESH / 2));
    }

    #[test]
    fn both_crashing_on_one_block_makes_its_last_command_the_suspect() {
        let now = Instant::now();
        let mut r = with_restore_point(now);
        // Another command in block 4, stamped before the suspect.
        r.stamped(command(6, 4 * FRAMES + 10), None);
        r.stamped(command(7, 4 * FRAMES + 20), client(7777));
        r.stamped(command(8, 5 * FRAMES + 1), None);
        r.worker_died(0, Some((4, now)));
        r.worker_died(1, Some((4, now + Duration::from_millis(100))));
        let suspect = r.take_suspect(FRAMES).expect("a suspect");
        assert_eq!(suspect.block, 4);
        assert_eq!(suspect.command.seq, 7);
        assert_eq!(suspect.reply_to, client(7777));
        assert_eq!(seqs(&r.restart(|_| true, 100)), [3, 4, 5, 6, 8]);
    }

    #[test]
    fn no_suspect_unless_both_crashed_by_themselves_on_one_block_close_in_time() {
        let now = Instant::now();
        let cases = [
            (Some((4, now)), Some((5, now))),
            (Some((4, now)), None),
            (None, None),
            (Some((4, now)), Some((4, now + POISON_WINDOW))),
        ];
        for (a, b) in cases {
            let mut r = with_restore_point(now);
            r.worker_died(0, a);
            r.worker_died(1, b);
            assert!(r.take_suspect(FRAMES).is_none(), "{a:?} {b:?}");
            assert_eq!(r.history_len(), 3);
        }
        // Same block, but no command was applied in it.
        let mut r = with_restore_point(now);
        r.worker_died(0, Some((40, now)));
        r.worker_died(1, Some((40, now)));
        assert!(r.take_suspect(FRAMES).is_none());
        assert_ne!(r.restart(|_| true, 100), Restart::FromPatch);
    }

    #[test]
    fn dying_again_on_the_poisoned_block_drops_the_restore_point() {
        let now = Instant::now();
        let mut r = with_restore_point(now);
        r.worker_died(0, Some((4, now)));
        r.worker_died(1, Some((4, now)));
        assert!(r.take_suspect(FRAMES).is_some());
        assert_ne!(r.restart(|_| true, 100), Restart::FromPatch);
        // The new pair dies on the same block: the snapshot itself carries the poison.
        assert!(r.take_suspect(FRAMES).is_none());
        assert_eq!(r.restart(|_| true, 100), Restart::FromPatch);
    }
}
