//! Recovery after losing both workers at once: the restore point, the commands since it,
//! and poison commands (DESIGN.md invariant 6).
//!
//! The supervisor keeps its own copy of a recent engine snapshot (the restore point: the
//! snapshot's bytes, which hold the patch text, the block it was taken at and the last
//! command in it), refreshed every [`RESTORE_REFRESH`] or every [`REFRESH_COMMANDS`]
//! commands, whichever comes first, and every command stamped since (patch switches with
//! their text). So losing both workers costs a few blocks of silence, never the state of
//! the music, at any command rate: the new pair joins from the copy and every command since
//! is replayed at its own frame, before they may render past it (the output holds their
//! horizon at the restore point until the replay is in their rings). Until the first
//! refresh, the restore point is the patch itself at block 0.
//!
//! Each worker records in its slot the command it is applying. When both died by
//! themselves applying the same command in the same block, that command is the suspect,
//! wherever it waited (in the replay, or among the restore point's waiting commands): it is
//! taken out and its sender told. If the new pair dies on that block again with no command
//! to blame, the restore point itself is poisoned and the restart is from the patch. No
//! I/O here: the supervisor reads and writes the snapshot area and pushes to the queue.

use std::time::{Duration, Instant};

use chronus_dsp::PatchDesc;
use chronus_engine::{Command, Engine, EngineConfig, StampedCommand};
use chronus_protocol::AddressTable;

use crate::transport::ReplyTo;

/// How often the restore point is refreshed at least: bounds the catch-up rendering of a
/// restart.
pub const RESTORE_REFRESH: Duration = Duration::from_secs(2);
/// How many commands stamped since the restore point ask for a fresh one: bounds the
/// replay at any command rate.
pub const REFRESH_COMMANDS: usize = 1000;
/// Two workers dying on the same block within this time died of the same cause.
pub const POISON_WINDOW: Duration = Duration::from_millis(500);
/// A double fault within this time of the last cold restart is one more in a row, and the
/// next restart backs off ([`restart_backoff`]); a pair that plays this long resets it. A
/// pair that cannot live dies within seconds; one that played this long was healthy, and
/// the next double fault is a new accident, restored at once.
pub const HEALTHY_PAIR: Duration = Duration::from_secs(10);
/// First back-off between cold restarts in a row.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off between cold restarts.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long to wait before the cold restart after `in_a_row` double faults in a row (0 for
/// the first: at once): 1, 2, 4 … up to 30 s, forever, so a pair that cannot live does not
/// turn into a restart storm, and one that can is never given up on.
pub fn restart_backoff(in_a_row: u32) -> Duration {
    match in_a_row {
        0 => Duration::ZERO,
        n => RESTART_BACKOFF
            .saturating_mul(1 << (n - 1).min(5))
            .min(RESTART_BACKOFF_MAX),
    }
}

/// The supervisor's copy of an engine snapshot a new pair can join from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePoint {
    /// The snapshot's bytes (the patch text is in them).
    pub snapshot: Vec<u8>,
    /// The block it was taken at: the next block the restored engine renders.
    pub block: u64,
    /// The last command it holds; later ones are replayed.
    pub last_seq: u64,
}

impl RestorePoint {
    /// The restore point of a server that has played nothing yet: `patch` at block 0.
    ///
    /// # Errors
    /// When the patch does not compile.
    pub fn of_patch(patch: &PatchDesc, config: EngineConfig) -> anyhow::Result<RestorePoint> {
        let engine = Engine::new(patch, config, 0)?;
        let mut snapshot = vec![0; engine.snapshot_len()];
        let len = engine.save_snapshot(&mut snapshot);
        snapshot.truncate(len);
        Ok(RestorePoint {
            snapshot,
            block: 0,
            last_seq: 0,
        })
    }

    /// The same restore point without waiting command `seq`; `None` if it was not waiting
    /// there or the snapshot cannot be rebuilt.
    fn without_waiting(&self, seq: u64, config: EngineConfig) -> Option<RestorePoint> {
        let mut engine = Engine::from_snapshot(&self.snapshot, config).ok()?;
        if !engine.drop_waiting(seq) {
            return None;
        }
        let mut snapshot = vec![0; engine.snapshot_len()];
        let len = engine.save_snapshot(&mut snapshot);
        snapshot.truncate(len);
        Some(RestorePoint { snapshot, ..*self })
    }
}

/// What a new pair is handed after the restore point, in stamping order.
#[derive(Debug, Clone, PartialEq)]
pub enum Replayed {
    /// A command, at its own seq and frame.
    Command(StampedCommand),
    /// A patch switch, with the patch's text (sent ahead of it, as at its commit).
    Patch {
        /// The switch command as stamped.
        switch: StampedCommand,
        /// The patch's TOML text.
        text: String,
    },
}

impl Replayed {
    /// The command as stamped (the switch, for a patch).
    pub fn stamped(&self) -> &StampedCommand {
        match self {
            Replayed::Command(stamped)
            | Replayed::Patch {
                switch: stamped, ..
            } => stamped,
        }
    }
}

/// A stamped command kept for a replay, and who sent it (to be told, should it poison).
#[derive(Debug, Clone)]
struct Kept {
    replayed: Replayed,
    reply_to: Option<ReplyTo>,
}

/// How a worker died by itself (not killed from outside): a command may have killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash {
    /// The block it was rendering.
    pub block: u64,
    /// The command it was applying in that block, if any (its seq).
    pub applying: Option<u64>,
    /// When it was found dead.
    pub at: Instant,
}

/// The command both workers died of, taken out of the replay or the restore point.
#[derive(Debug, Clone, Copy)]
pub struct Suspect {
    /// The block both workers died on.
    pub block: u64,
    /// Its seq.
    pub seq: u64,
    /// The command, if still known (every command since the restore point's block is).
    pub command: Option<StampedCommand>,
    /// Who sent it, to be told with `/fail`.
    pub reply_to: Option<ReplyTo>,
}

/// The address a command answers to in `table`, for the log and for its `/fail`
/// (fault-injection commands have no address of their own: `/debug/poison`).
pub fn answer_address(table: &AddressTable, command: &Command) -> String {
    match table.describe(command) {
        Some((address, _)) => address,
        None if matches!(command, Command::DebugPoison) => "/debug/poison".to_string(),
        None => format!("{command:?}"),
    }
}

/// How to start the new pair of a cold restart.
#[derive(Debug, Clone, PartialEq)]
pub enum Restart {
    /// Both join from the restore point, then everything stamped after it is replayed
    /// ([`Recovery::replay`]).
    FromRestorePoint(RestorePoint),
    /// The restore point is poisoned: both start afresh from the patch.
    FromPatch,
}

/// The restore point, the commands since it and what is known of the last deaths.
#[derive(Debug)]
pub struct Recovery {
    /// The stream's settings, to rebuild a restore point without a poison command.
    config: EngineConfig,
    /// `None` only once it is known to be poisoned (until the next refresh).
    restore: Option<RestorePoint>,
    /// In seq order: every command after the restore point, and those before it still
    /// waiting in it for their frame (poison suspects, never replayed).
    history: Vec<Kept>,
    /// Commands stamped since the last refresh was asked for.
    since_refresh: usize,
    /// The block both workers died on in the last cold restart with no command to blame:
    /// a second loss at that block means the restore point itself is poisoned.
    poisoned_block: Option<u64>,
    /// Per slot: how its last worker crashed by itself, if it did.
    last_death: [Option<Crash>; 2],
    /// A snapshot requested (for a join or a refresh) whose publication we watch for.
    watched_snapshot: Option<u64>,
    /// When the restore point was last refreshed (or a refresh tried).
    last_refresh: Instant,
    /// A cold restart replayed the history: refresh as soon as the new pair is ready, so
    /// that the next restart does not replay it all again.
    refresh_soon: bool,
}

impl Recovery {
    /// Recovery from `initial` ([`RestorePoint::of_patch`]); the first refresh is due
    /// [`RESTORE_REFRESH`] after `now`.
    pub fn new(now: Instant, config: EngineConfig, initial: RestorePoint) -> Recovery {
        Recovery {
            config,
            restore: Some(initial),
            history: Vec::new(),
            since_refresh: 0,
            poisoned_block: None,
            last_death: [None; 2],
            watched_snapshot: None,
            last_refresh: now,
            refresh_soon: false,
        }
    }

    /// A command was stamped: keep it for a replay.
    pub fn stamped(&mut self, command: StampedCommand, reply_to: Option<ReplyTo>) {
        self.keep(Replayed::Command(command), reply_to);
    }

    /// A patch switch was stamped: keep it, with the patch's text, for a replay.
    pub fn stamped_switch(&mut self, switch: StampedCommand, text: String) {
        self.keep(Replayed::Patch { switch, text }, None);
    }

    fn keep(&mut self, replayed: Replayed, reply_to: Option<ReplyTo>) {
        self.history.push(Kept { replayed, reply_to });
        self.since_refresh += 1;
    }

    /// A snapshot was requested (for a join or a refresh): watch for its publication.
    pub fn snapshot_requested(&mut self, request: u64) {
        self.watched_snapshot = Some(request);
    }

    /// The snapshot being watched for, if any.
    pub fn watched(&self) -> Option<u64> {
        self.watched_snapshot
    }

    /// The watched snapshot was published: `snapshot`, taken at `block`, holding every
    /// command through `last_seq`. It is the new restore point, and the history keeps only
    /// what comes after it, and what still waits in it for a later frame.
    pub fn snapshot_published(
        &mut self,
        snapshot: Vec<u8>,
        block: u64,
        last_seq: u64,
        now: Instant,
    ) {
        self.watched_snapshot = None;
        self.last_refresh = now;
        // A pair lived to take it: an earlier loss with no command to blame says nothing
        // about this one.
        self.poisoned_block = None;
        let first_frame = block * self.config.block_frames as u64;
        self.history.retain(|kept| {
            let stamped = kept.replayed.stamped();
            stamped.seq > last_seq
                || matches!(kept.replayed, Replayed::Command(_)) && stamped.frame >= first_frame
        });
        self.restore = Some(RestorePoint {
            snapshot,
            block,
            last_seq,
        });
    }

    /// The watched snapshot is not published yet: give up on it when its worker must have
    /// died before publishing it.
    pub fn snapshot_pending(&mut self, now: Instant) {
        if now.duration_since(self.last_refresh) > RESTORE_REFRESH * 3 {
            self.watched_snapshot = None;
        }
    }

    /// Whether to ask for a fresh snapshot now (the caller checks the pair is ready): one
    /// is not awaited already, and the last is [`RESTORE_REFRESH`] old or
    /// [`REFRESH_COMMANDS`] commands behind.
    pub fn refresh_due(&self, now: Instant) -> bool {
        self.watched_snapshot.is_none()
            && (self.refresh_soon
                || now.duration_since(self.last_refresh) > RESTORE_REFRESH
                || self.since_refresh >= REFRESH_COMMANDS)
    }

    /// A refresh was attempted at `now`: `request` was queued, or `None` if the queue was
    /// full (tried again after the next interval).
    pub fn refresh_requested(&mut self, request: Option<u64>, now: Instant) {
        if request.is_some() {
            self.watched_snapshot = request;
            self.since_refresh = 0;
            self.refresh_soon = false;
        }
        self.last_refresh = now;
    }

    /// The worker of `slot` died: `crash` says how, if it died by itself (not killed
    /// from outside), which may mean a command killed it.
    pub fn worker_died(&mut self, slot: usize, crash: Option<Crash>) {
        if let Some(death) = self.last_death.get_mut(slot) {
            *death = crash;
        }
    }

    /// Both workers are lost. If both crashed by themselves on the same block (within
    /// [`POISON_WINDOW`]) applying the same command, that command is the suspect: taken
    /// out of the replay or the restore point. With no command to blame, a second loss on
    /// the same block poisons the restore point itself (the restart is from the patch).
    pub fn take_suspect(&mut self) -> Option<Suspect> {
        let [Some(a), Some(b)] = self.last_death else {
            return None;
        };
        self.last_death = [None; 2];
        if a.block != b.block || a.at.max(b.at).duration_since(a.at.min(b.at)) >= POISON_WINDOW {
            return None;
        }
        let block = a.block;
        let seq = match (a.applying, b.applying) {
            (Some(x), Some(y)) if x == y => x,
            _ => {
                if self.poisoned_block == Some(block) {
                    tracing::error!("both workers died again on block {block} with no command to blame: the restore point itself is poisoned");
                    self.restore = None;
                }
                self.poisoned_block = Some(block);
                return None;
            }
        };
        let index = self
            .history
            .iter()
            .position(|kept| kept.replayed.stamped().seq == seq);
        let kept = index.map(|i| self.history.remove(i));
        if let Some(point) = &self.restore {
            if seq <= point.last_seq {
                // It waited in the restore point: rebuild it without.
                self.restore = point.without_waiting(seq, self.config);
            }
        }
        Some(Suspect {
            block,
            seq,
            command: kept.as_ref().map(|k| *k.replayed.stamped()),
            reply_to: kept.and_then(|k| k.reply_to),
        })
    }

    /// The restore point (`None` once poisoned, until the next refresh).
    pub fn restore_point(&self) -> Option<&RestorePoint> {
        self.restore.as_ref()
    }

    /// Commands kept for a replay or as suspects.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// How to restart the pair: from the restore point, or from the patch if the restore
    /// point is poisoned.
    pub fn restart(&self) -> Restart {
        match &self.restore {
            Some(point) => Restart::FromRestorePoint(point.clone()),
            None => Restart::FromPatch,
        }
    }

    /// What a pair restarted from a restore point holding commands through `last_seq` must
    /// be replayed: every command after it stamped before `first_live` (the first one
    /// stamped into the new pair's rings), in seq order.
    pub fn replay(&self, last_seq: u64, first_live: u64) -> Vec<Replayed> {
        self.history
            .iter()
            .filter(|kept| (last_seq + 1..first_live).contains(&kept.replayed.stamped().seq))
            .map(|kept| kept.replayed.clone())
            .collect()
    }

    /// Both workers were lost and a new pair is starting: a snapshot asked of the old pair
    /// will never come, and a fresh restore point is wanted as soon as the new one is ready.
    pub fn restarted(&mut self) {
        self.watched_snapshot = None;
        self.refresh_soon = true;
    }

    /// The pair restarted from the patch: nothing before it can be replayed on it.
    pub fn restarted_from_patch(&mut self) {
        self.history.clear();
        self.since_refresh = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAMES: u64 = 64;

    fn config() -> EngineConfig {
        EngineConfig::new(48_000, FRAMES as usize, 1)
    }

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

    /// The seqs replayed after a restart from the restore point, with nothing stamped
    /// for the new pair yet.
    fn seqs(r: &Recovery) -> Vec<u64> {
        match r.restart() {
            Restart::FromRestorePoint(point) => r
                .replay(point.last_seq, u64::MAX)
                .iter()
                .map(|r| r.stamped().seq)
                .collect(),
            Restart::FromPatch => panic!("expected a restart from the restore point"),
        }
    }

    fn start(now: Instant) -> Recovery {
        let initial = RestorePoint::of_patch(&PatchDesc::default_patch(), config()).unwrap();
        Recovery::new(now, config(), initial)
    }

    /// A recovery whose restore point (block 2) holds seq 1 and 2; commands 1..=5 at
    /// blocks 1..=5.
    fn with_restore_point(now: Instant) -> Recovery {
        let mut r = start(now);
        for seq in 1..=5 {
            r.stamped(command(seq, seq * FRAMES), client(9000 + seq as u16));
        }
        r.snapshot_requested(7);
        r.snapshot_published(vec![7; 16], 2, 2, now);
        r
    }

    fn crash(block: u64, applying: Option<u64>, at: Instant) -> Option<Crash> {
        Some(Crash {
            block,
            applying,
            at,
        })
    }

    #[test]
    fn repeated_double_faults_back_off_from_1_s_doubling_up_to_30_s() {
        let s: Vec<u64> = (0..8).map(|n| restart_backoff(n).as_secs()).collect();
        assert_eq!(s, [0, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(restart_backoff(u32::MAX), RESTART_BACKOFF_MAX);
    }

    #[test]
    fn before_any_refresh_the_restore_point_is_the_patch_at_block_0_with_everything_since() {
        let now = Instant::now();
        let mut r = start(now);
        for seq in 1..=3 {
            r.stamped(command(seq, seq * FRAMES), None);
        }
        let Restart::FromRestorePoint(point) = r.restart() else {
            panic!("a restore point from the start")
        };
        assert_eq!((point.block, point.last_seq), (0, 0));
        assert!(!point.snapshot.is_empty());
        assert_eq!(seqs(&r), [1, 2, 3]);
        assert_eq!(r.replay(0, 3).len(), 2, "seq 3 reached the new pair live");
    }

    #[test]
    fn a_published_snapshot_becomes_the_restore_point_and_trims_the_history() {
        let now = Instant::now();
        let r = with_restore_point(now);
        assert_eq!(r.watched(), None);
        // Seq 2 (frame in block 2) still waits in the snapshot: kept, never replayed.
        assert_eq!(r.history_len(), 4);
        let Restart::FromRestorePoint(point) = r.restart() else {
            panic!()
        };
        assert_eq!(point.snapshot, vec![7; 16]);
        assert_eq!(seqs(&r), [3, 4, 5]);
    }

    #[test]
    fn the_history_is_never_dropped_and_a_refresh_is_due_by_command_count() {
        let now = Instant::now();
        let mut r = with_restore_point(now);
        assert!(!r.refresh_due(now));
        for seq in 6..6 + REFRESH_COMMANDS as u64 {
            r.stamped(command(seq, seq * FRAMES), None);
        }
        assert!(r.refresh_due(now), "due by count, long before the time");
        assert_eq!(seqs(&r).len(), 3 + REFRESH_COMMANDS);
        r.refresh_requested(Some(8), now);
        assert!(!r.refresh_due(now));
    }

    #[test]
    fn a_patch_switch_is_replayed_with_its_text() {
        let now = Instant::now();
        let mut r = with_restore_point(now);
        let switch = StampedCommand {
            seq: 6,
            frame: 6 * FRAMES,
            command: Command::SwitchPatch {
                version: 2,
                len: 4,
                at: chronus_engine::SwitchAt::Now,
            },
        };
        r.stamped_switch(switch, "text".to_string());
        r.stamped(command(7, 7 * FRAMES), None);
        let replay = r.replay(2, u64::MAX);
        assert_eq!(
            replay[3],
            Replayed::Patch {
                switch,
                text: "text".to_string()
            }
        );
        assert_eq!(replay.len(), 5);
    }

    #[test]
    fn refreshes_are_spaced_and_an_unpublished_snapshot_is_given_up() {
        let start_at = Instant::now();
        let mut r = start(start_at);
        assert!(!r.refresh_due(start_at));
        let due = start_at + RESTORE_REFRESH + Duration::from_millis(1);
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
    fn both_dying_applying_one_command_makes_it_the_suspect() {
        let now = Instant::now();
        let mut r = with_restore_point(now);
        r.stamped(command(6, 4 * FRAMES + 10), None);
        r.stamped(command(7, 4 * FRAMES + 20), client(7777));
        r.stamped(command(8, 4 * FRAMES + 30), None);
        // Both died applying seq 7, not the last command of the block (8).
        r.worker_died(0, crash(4, Some(7), now));
        r.worker_died(1, crash(4, Some(7), now + Duration::from_millis(100)));
        let suspect = r.take_suspect().expect("a suspect");
        assert_eq!((suspect.block, suspect.seq), (4, 7));
        assert_eq!(suspect.reply_to, client(7777));
        assert_eq!(suspect.command.map(|c| c.seq), Some(7));
        assert_eq!(seqs(&r), [3, 4, 5, 6, 8]);
    }

    #[test]
    fn a_suspect_waiting_in_the_restore_point_is_taken_out_of_it() {
        let now = Instant::now();
        let initial = RestorePoint::of_patch(&PatchDesc::default_patch(), config()).unwrap();
        // A real snapshot holding seq 1, timed for block 9.
        let mut engine = Engine::from_snapshot(&initial.snapshot, config()).unwrap();
        engine.receive(command(1, 9 * FRAMES)).unwrap();
        let mut bytes = vec![0; engine.snapshot_len()];
        let len = engine.save_snapshot(&mut bytes);
        bytes.truncate(len);
        let mut r = Recovery::new(now, config(), initial);
        r.stamped(command(1, 9 * FRAMES), client(5555));
        r.snapshot_requested(1);
        r.snapshot_published(bytes.clone(), 0, 1, now);
        assert_eq!(r.history_len(), 1, "kept as a suspect, not to replay");
        r.worker_died(0, crash(9, Some(1), now));
        r.worker_died(1, crash(9, Some(1), now));
        let suspect = r.take_suspect().expect("a suspect");
        assert_eq!(suspect.reply_to, client(5555));
        let Restart::FromRestorePoint(point) = r.restart() else {
            panic!()
        };
        assert!(r.replay(point.last_seq, u64::MAX).is_empty());
        let restored = Engine::from_snapshot(&point.snapshot, config()).unwrap();
        assert_eq!(
            restored.commands_waiting(),
            0,
            "the poison is out of the snapshot"
        );
        assert_eq!(point.block, 0);
    }

    #[test]
    fn no_suspect_unless_both_crashed_by_themselves_applying_one_command_close_in_time() {
        let now = Instant::now();
        let cases = [
            (crash(4, Some(3), now), crash(5, Some(3), now)),
            (crash(4, Some(3), now), None),
            (None, None),
            (crash(4, Some(3), now), crash(4, Some(4), now)),
            (crash(4, Some(3), now), crash(4, None, now)),
            (
                crash(4, Some(3), now),
                crash(4, Some(3), now + POISON_WINDOW),
            ),
        ];
        for (a, b) in cases {
            let mut r = with_restore_point(now);
            r.worker_died(0, a);
            r.worker_died(1, b);
            assert!(r.take_suspect().is_none(), "{a:?} {b:?}");
            assert_eq!(r.history_len(), 4);
            assert_ne!(r.restart(), Restart::FromPatch);
        }
    }

    #[test]
    fn dying_again_on_the_same_block_with_no_command_to_blame_poisons_the_restore_point() {
        let now = Instant::now();
        let mut r = with_restore_point(now);
        r.worker_died(0, crash(40, None, now));
        r.worker_died(1, crash(40, None, now));
        assert!(r.take_suspect().is_none());
        assert_ne!(r.restart(), Restart::FromPatch);
        // The new pair dies on the same block: the snapshot itself carries the poison.
        r.worker_died(0, crash(40, None, now));
        r.worker_died(1, crash(40, None, now));
        assert!(r.take_suspect().is_none());
        assert_eq!(r.restart(), Restart::FromPatch);
        r.restarted_from_patch();
        assert_eq!(r.history_len(), 0);
    }
}
