//! Overload protection: when the workers cannot render the voices in time, fewer voices
//! sound, so the server plays on instead of falling behind for good.
//!
//! A patch whose instruments are asked for more voices than the machine renders in a
//! block period (thousands of held notes on a 4,096-voice instrument) would leave both
//! workers behind the output for good: every block an underrun, and every command
//! (`/panic` too) stamped at a horizon the workers take ever longer to reach. The depth
//! cannot help (it buys time once, not speed).
//!
//! So the output thread watches how long the workers take to render a block (the faster
//! of the pair: a slow worker alone is a fault of that worker, the failover's business,
//! not an overload; a pair still catching up counts too, for a pair restarted from the
//! restore point into an overload would otherwise never catch up) and how many voices
//! sound. When the median render time of the last [`WINDOW`] blocks passes [`HIGH_LOAD`] of the block period (a median: a stall
//! of a few blocks, a snapshot being written, is not an overload), the guard lowers the
//! engine's voice limit to what would bring it to [`TARGET_LOAD`]: a
//! [`Command::VoiceLimit`](chronus_engine::Command::VoiceLimit) stamped like any command,
//! so both workers shed the same voices on the same frame (a steal's fade, no click), the
//! command log holds it and a replay renders the same. It then waits for the workers to
//! render past that frame, and a window of render times with the new limit, before judging
//! again.
//!
//! A cut that shed voices but not load (the time goes to something else: a heavy effect,
//! a fault) was futile: the guard puts the limit back where it was and cuts nothing for
//! [`FUTILE_HOLD_NS`], so a patch overloaded by something other than its voices does not
//! lose them all. That judgement takes the window's fastest render, not its median: other
//! processes taking the cores (a loaded machine) only ever add time, so the fastest block
//! is the best measure of what the voices left cost, and a busy machine does not undo a
//! cut that worked (seen in CI beside six other test files: a cut from 2,400 voices to 395
//! put back, and a minute of overload held). When the load has stayed under [`LOW_LOAD`]
//! for [`CALM_NS`], the limit rises to what the load has room for (at least a quarter
//! more, at most four times),
//! up to the limit a client set with `/voices/limit` (none: the limit is lifted).
//! [`VoiceGuard`] is the pure decision, owned by the output thread: it allocates, locks
//! and panics never.

/// Median render time, as a fraction of the block period, above which voices are shed:
/// a worker busy longer than this misses deadlines at the first scheduling hiccup (two
/// workers and the output share a 2-core machine).
pub const HIGH_LOAD: f64 = 0.8;

/// The load a lowered limit aims at: room for the voices' own variation (a filter's
/// cutoff swept, notes starting) below [`HIGH_LOAD`].
pub const TARGET_LOAD: f64 = 0.55;

/// Below this load for [`CALM_NS`] a limit rises again.
pub const LOW_LOAD: f64 = 0.4;

/// How long the load must stay under [`LOW_LOAD`] before the limit rises.
pub const CALM_NS: u64 = 10_000_000_000;

/// After a futile cut, how long no cut is tried.
pub const FUTILE_HOLD_NS: u64 = 60_000_000_000;

/// The fewest voices per instrument the guard leaves: a patch overloaded with fewer is
/// overloaded by something else, which shedding voices would not mend.
pub const MIN_VOICES: u16 = 4;

/// Render times the median is taken over (blocks): a stall shorter than half of them
/// does not move it.
pub const WINDOW: usize = 32;

/// Blocks the workers render past a limit's frame before their render times count again,
/// so the times measured are those with the new limit.
pub const SETTLE_BLOCKS: u64 = 16;

/// The most voices an instrument has: a limit at or above it is no limit.
const ALL_VOICES: u32 = chronus_dsp::patch::MAX_VOICES as u32;

/// What the guard sees of one block played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSeen {
    /// The block just played.
    pub block: u64,
    /// The block the stamping horizon is at: where a limit stamped now takes effect.
    pub horizon: u64,
    /// The faster rendering worker's render time of its last block, in ns.
    pub render_ns: u64,
    /// The next block the slower rendering worker will render.
    pub rendered: u64,
    /// Voices sounding, over every instrument.
    pub voices: u64,
    /// Now, in ns (any monotonic origin).
    pub now_ns: u64,
}

/// Why the guard changed the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// The workers were too slow: voices shed.
    Overload,
    /// The last cut shed voices but not load: the limit is put back.
    NotTheVoices,
    /// The load stayed low: room for more voices.
    Calm,
}

/// A limit the guard decided to stamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitChange {
    /// The limit stamped ([`Command::VoiceLimit`](chronus_engine::Command::VoiceLimit)'s
    /// `voices`; 0 lifts it).
    pub voices: u16,
    /// The limit before (0: none).
    pub from: u16,
    /// The median load that decided it.
    pub load: f64,
    /// Voices sounding when it was decided.
    pub sounding: u64,
    /// Why.
    pub reason: LimitReason,
}

/// A cut whose effect is still to be judged.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cut {
    /// The limit before it (0: none).
    from: u16,
    load: f64,
    sounding: u64,
}

/// The overload protection's decision: fed each block played, it says when to stamp a
/// new voice limit. Pure and deterministic in its inputs.
#[derive(Debug, Clone)]
pub struct VoiceGuard {
    block_ns: u64,
    /// The last render times (ns), a ring; `filled` of them are valid.
    window: [u64; WINDOW],
    filled: usize,
    next: usize,
    /// The limit the guard set (`None`: the guard has not lowered it).
    limit: Option<u16>,
    /// The limit a client set with `/voices/limit` (`None`: none), the most the guard
    /// raises its own to.
    ceiling: Option<u16>,
    /// Render times count again once the slower worker renders this block.
    settle_until: u64,
    /// Since when the load has been low (ns).
    calm_since: Option<u64>,
    /// The last cut, until its effect is judged.
    cut: Option<Cut>,
    /// No cut before this (ns): the last one was futile.
    no_cut_until: u64,
}

impl VoiceGuard {
    /// A guard for blocks of `block_ns`.
    pub fn new(block_ns: u64) -> VoiceGuard {
        VoiceGuard {
            block_ns: block_ns.max(1),
            window: [0; WINDOW],
            filled: 0,
            next: 0,
            limit: None,
            ceiling: None,
            settle_until: 0,
            calm_since: None,
            cut: None,
            no_cut_until: 0,
        }
    }

    /// The limit in force from the guard's view (`None`: none).
    pub fn limit(&self) -> Option<u16> {
        self.limit.or(self.ceiling)
    }

    /// A client's `/voices/limit` was stamped: it replaces the guard's own, and is the
    /// most the guard raises to from now on.
    pub fn client_set(&mut self, voices: u16) {
        self.ceiling = (voices > 0).then_some(voices);
        self.limit = None;
        self.cut = None;
        self.restart_window();
    }

    /// One block was played: returns a limit to stamp at the horizon, if one is due.
    pub fn block_played(&mut self, seen: BlockSeen) -> Option<LimitChange> {
        if seen.rendered < self.settle_until {
            return None;
        }
        self.window[self.next] = seen.render_ns;
        self.next = (self.next + 1) % WINDOW;
        self.filled = (self.filled + 1).min(WINDOW);
        if self.filled < WINDOW {
            return None;
        }
        let load = self.median_ns() as f64 / self.block_ns as f64;
        if let Some(cut) = self.cut.take() {
            let fastest = self.fastest_ns() as f64 / self.block_ns as f64;
            if let Some(change) = self.judge(cut, fastest, seen) {
                return Some(change);
            }
        }
        if load > HIGH_LOAD {
            self.calm_since = None;
            let in_force = self.limit().map_or(ALL_VOICES, u32::from);
            let sounding = u32::try_from(seen.voices).unwrap_or(u32::MAX);
            let effective = in_force.min(sounding);
            if effective <= u32::from(MIN_VOICES) || seen.now_ns < self.no_cut_until {
                return None; // not the voices' doing
            }
            let aimed = (f64::from(effective) * TARGET_LOAD / load).floor() as u32;
            let voices = aimed.clamp(u32::from(MIN_VOICES), effective - 1) as u16;
            self.cut = Some(Cut {
                from: self.limit().unwrap_or(0),
                load,
                sounding: seen.voices,
            });
            return Some(self.change_to(voices, seen, load, LimitReason::Overload));
        }
        let Some(limit) = self.limit else {
            return None; // nothing of the guard's to lift
        };
        if load >= LOW_LOAD {
            self.calm_since = None;
            return None;
        }
        let since = *self.calm_since.get_or_insert(seen.now_ns);
        if seen.now_ns.saturating_sub(since) < CALM_NS {
            return None;
        }
        // Room for what would bring the load to the target, a quarter more at least and
        // four times at most (the load may not grow with the voices in proportion).
        let room = f64::from(limit) * TARGET_LOAD / load.max(f64::MIN_POSITIVE);
        let raised = (room as u32)
            .max(u32::from(limit) + (u32::from(limit) / 4).max(1))
            .min(u32::from(limit) * 4);
        let top = self.ceiling.map_or(ALL_VOICES, u32::from);
        let voices = if raised >= top {
            self.ceiling.unwrap_or(0) // back to the client's limit, or none
        } else {
            raised as u16
        };
        Some(self.change_to(voices, seen, load, LimitReason::Calm))
    }

    /// The first window measured after `cut`, by its fastest block's `load`: if it shed
    /// voices but hardly any load (under a quarter of what the voices shed would save),
    /// the voices were not the cost: the limit goes back and no cut is tried for a while.
    fn judge(&mut self, cut: Cut, load: f64, seen: BlockSeen) -> Option<LimitChange> {
        if seen.voices >= cut.sounding || cut.sounding == 0 {
            return None; // nothing shed yet (another instrument held them): no evidence
        }
        let shed = 1.0 - seen.voices as f64 / cut.sounding as f64;
        let expected = cut.load * shed;
        let saved = cut.load - load;
        if saved >= expected / 4.0 {
            return None;
        }
        self.no_cut_until = seen.now_ns.saturating_add(FUTILE_HOLD_NS);
        Some(self.change_to(cut.from, seen, load, LimitReason::NotTheVoices))
    }

    fn median_ns(&self) -> u64 {
        let mut sorted = self.window;
        let (_, median, _) = sorted.select_nth_unstable(WINDOW / 2);
        *median
    }

    fn fastest_ns(&self) -> u64 {
        self.window.iter().copied().min().unwrap_or(0)
    }

    fn restart_window(&mut self) {
        self.filled = 0;
        self.next = 0;
        self.calm_since = None;
    }

    fn change_to(
        &mut self,
        voices: u16,
        seen: BlockSeen,
        load: f64,
        reason: LimitReason,
    ) -> LimitChange {
        let from = self.limit().unwrap_or(0);
        self.limit = match (voices, self.ceiling) {
            (0, _) => None,
            (v, Some(c)) if v == c => None,
            (v, _) => Some(v),
        };
        self.restart_window();
        self.settle_until = seen.horizon + SETTLE_BLOCKS;
        LimitChange {
            voices,
            from,
            load,
            sounding: seen.voices,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_NS: u64 = 1_333_333;

    /// Feeds `blocks` blocks at `load` with `voices` sounding, the workers keeping up
    /// (rendered = horizon); returns the changes decided.
    fn feed(
        guard: &mut VoiceGuard,
        first: u64,
        blocks: u64,
        load: f64,
        voices: u64,
    ) -> Vec<LimitChange> {
        (first..first + blocks)
            .filter_map(|block| {
                guard.block_played(BlockSeen {
                    block,
                    horizon: block + 8,
                    render_ns: (load * BLOCK_NS as f64) as u64,
                    rendered: block + 8,
                    voices,
                    now_ns: block * BLOCK_NS,
                })
            })
            .collect()
    }

    /// Blocks of a calm stretch long enough for a rise (a window, then CALM_NS).
    const CALM_BLOCKS: u64 = CALM_NS / BLOCK_NS + 2 * WINDOW as u64;

    #[test]
    fn an_overload_lowers_the_limit_to_the_target_load_one_cut_at_a_time() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        assert!(feed(&mut guard, 0, 1000, 0.5, 900).is_empty());
        // 3x a block period: once the median of the window is that, the limit falls to
        // what would bring it to TARGET_LOAD; the next cut waits for the workers to
        // render past the first one's frame and for a window of render times after it.
        let changes = feed(&mut guard, 1000, 40, 3.0, 900);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let first = changes[0];
        assert_eq!(first.load, 3.0);
        assert_eq!(first.voices, (900.0 * TARGET_LOAD / 3.0).floor() as u16);
        assert_eq!((first.from, first.sounding), (0, 900));
        assert_eq!(first.reason, LimitReason::Overload);
        assert_eq!(guard.limit(), Some(first.voices));
        // Still overloaded and no voice shed yet (the feed's voices do not fall): lower
        // again, each time below the last, never under MIN_VOICES.
        let later = feed(&mut guard, 1040, 5000, 3.0, 900);
        assert!(later.len() >= 3, "{later:?}");
        assert!(later
            .windows(2)
            .all(|w| w[1].voices < w[0].voices || w[1].voices == MIN_VOICES));
        assert_eq!(guard.limit(), Some(MIN_VOICES));
    }

    #[test]
    fn a_stall_of_a_few_blocks_is_not_an_overload() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        assert!(feed(&mut guard, 0, 100, 0.3, 100).is_empty());
        // A snapshot's worth of slow blocks, twice.
        assert!(feed(&mut guard, 100, 12, 6.0, 100).is_empty());
        assert!(feed(&mut guard, 112, 4, 0.3, 100).is_empty());
        assert!(feed(&mut guard, 116, 3, 6.0, 100).is_empty());
        assert!(feed(&mut guard, 119, 100, 0.3, 100).is_empty());
    }

    #[test]
    fn workers_behind_are_not_judged_until_they_render_past_the_limit() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        let cut = feed(&mut guard, 0, WINDOW as u64, 6.0, 2000);
        assert_eq!(cut.len(), 1);
        // The limit's frame is the horizon then (block 31 + 8); render times count once
        // the slower worker is SETTLE_BLOCKS past it, and a window of them is needed.
        let settled = (WINDOW as u64 - 1 + 8 + SETTLE_BLOCKS) * 8;
        let seen = |block: u64| BlockSeen {
            block,
            horizon: block + 8,
            render_ns: 6 * BLOCK_NS,
            rendered: block / 8,
            voices: 2000,
            now_ns: block * BLOCK_NS,
        };
        let again_at = settled + WINDOW as u64 - 1;
        for block in WINDOW as u64..again_at {
            assert_eq!(guard.block_played(seen(block)), None, "block {block}");
        }
        // Still overloaded with the new limit: lower again.
        let again = guard.block_played(seen(again_at)).expect("a second cut");
        assert!(again.voices < cut[0].voices);
    }

    #[test]
    fn an_overload_with_few_voices_is_left_alone() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        assert!(feed(&mut guard, 0, 100, 2.0, u64::from(MIN_VOICES)).is_empty());
    }

    #[test]
    fn a_cut_that_sheds_voices_but_not_load_is_undone_and_not_tried_again_for_a_while() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        let cut = feed(&mut guard, 0, 40, 1.0, 900);
        assert_eq!(cut.len(), 1, "{cut:?}");
        let limit = u64::from(cut[0].voices);
        // The voices went, the load stayed: something else costs the time.
        let back = feed(&mut guard, 40, 100, 1.0, limit);
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(
            (back[0].voices, back[0].reason),
            (0, LimitReason::NotTheVoices)
        );
        assert_eq!(guard.limit(), None);
        let hold = FUTILE_HOLD_NS / BLOCK_NS;
        assert!(feed(&mut guard, 140, hold - 100, 1.0, 900).is_empty());
        // After the hold, a real overload is cut again.
        assert_eq!(feed(&mut guard, 140 + hold, 40, 1.0, 900).len(), 1);
    }

    #[test]
    fn a_cut_that_sheds_load_with_its_voices_stays() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        let cut = feed(&mut guard, 0, 40, 1.0, 900);
        let limit = u64::from(cut[0].voices);
        assert!(feed(&mut guard, 40, 2000, 0.55, limit).is_empty());
        assert_eq!(guard.limit(), Some(cut[0].voices));
    }

    #[test]
    fn a_cut_that_worked_stands_on_a_machine_busy_with_other_work() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        let cut = feed(&mut guard, 0, 40, 2.0, 2400);
        assert_eq!(cut.len(), 1, "{cut:?}");
        let limit = u64::from(cut[0].voices);
        // With the voices gone the workers render in 0.45 of a period, but other processes
        // take the cores: most blocks take 2.0 (the median), a few run undisturbed.
        let mut block = 40;
        let mut changes = Vec::new();
        for _ in 0..20 {
            changes.extend(feed(&mut guard, block, 28, 2.0, limit));
            changes.extend(feed(&mut guard, block + 28, 4, 0.45, limit));
            block += 32;
        }
        assert!(
            changes
                .iter()
                .all(|c| c.reason != LimitReason::NotTheVoices),
            "{changes:?}"
        );
        assert!(guard.limit().is_some_and(|l| u64::from(l) <= limit));
    }

    #[test]
    fn a_calm_stretch_raises_the_limit_to_the_room_there_is_until_it_is_lifted() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        let cut = feed(&mut guard, 0, 40, 3.0, 2000);
        let mut limit = cut[0].voices;
        let mut block = 100;
        let mut rises = 0;
        while limit != 0 {
            let changes = feed(&mut guard, block, CALM_BLOCKS, 0.2, 10);
            block += CALM_BLOCKS + 100;
            assert_eq!(changes.len(), 1, "{changes:?}");
            let next = changes[0].voices;
            assert_eq!(changes[0].reason, LimitReason::Calm);
            assert!(next == 0 || next > limit, "{limit} -> {next}");
            limit = next;
            rises += 1;
        }
        assert!((2..=6).contains(&rises), "{rises}");
        assert_eq!(guard.limit(), None);
        assert!(feed(&mut guard, block, CALM_BLOCKS, 0.2, 10).is_empty());
    }

    #[test]
    fn a_clients_limit_is_the_most_the_guard_raises_to() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        guard.client_set(100);
        assert_eq!(guard.limit(), Some(100));
        let cut = feed(&mut guard, 0, 40, 3.0, 100);
        assert_eq!(cut.len(), 1);
        assert!(cut[0].voices < 100);
        let mut block = 100;
        loop {
            let changes = feed(&mut guard, block, CALM_BLOCKS, 0.2, 10);
            block += CALM_BLOCKS + 100;
            if changes[0].voices == 100 {
                break;
            }
            assert!(changes[0].voices < 100);
        }
        assert_eq!(guard.limit(), Some(100));
        assert!(feed(&mut guard, block, CALM_BLOCKS, 0.2, 10).is_empty());
    }
}
