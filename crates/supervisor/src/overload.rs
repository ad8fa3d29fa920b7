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
//! of the serving pair: a slow worker alone is a fault of that worker, the failover's
//! business, not an overload) and how many voices sound. When the render time, smoothed
//! over about [`SMOOTHING_BLOCKS`] blocks, passes [`HIGH_LOAD`] of the block period, the
//! guard lowers the engine's voice limit to what would bring it to [`TARGET_LOAD`]: a
//! [`Command::VoiceLimit`](chronus_engine::Command::VoiceLimit) stamped like any command,
//! so both workers shed the same voices on the same frame (a steal's fade, no click), the
//! command log holds it and a replay renders the same. It then waits for the workers to
//! render past that frame before judging again. When the load has stayed under
//! [`LOW_LOAD`] for [`CALM_NS`], the limit rises by a quarter, up to the limit a client
//! set with `/voices/limit` (none: the limit is lifted). [`VoiceGuard`] is the pure
//! decision, owned by the output thread: it allocates, locks and panics never.

/// Smoothed render time, as a fraction of the block period, above which voices are shed:
/// a worker busy longer than this misses deadlines at the first scheduling hiccup (two
/// workers and the output share a 2-core machine).
pub const HIGH_LOAD: f64 = 0.8;

/// The load a lowered limit aims at: room for the voices' own variation (a filter's
/// cutoff swept, notes starting) below [`HIGH_LOAD`].
pub const TARGET_LOAD: f64 = 0.55;

/// Below this load for [`CALM_NS`] a limit rises again: the rise (a quarter) keeps it
/// under [`HIGH_LOAD`] even if every new voice is taken.
pub const LOW_LOAD: f64 = 0.4;

/// How long the load must stay under [`LOW_LOAD`] before the limit rises.
pub const CALM_NS: u64 = 10_000_000_000;

/// The fewest voices per instrument the guard leaves: a patch overloaded with fewer is
/// overloaded by something else, which shedding voices would not mend.
pub const MIN_VOICES: u16 = 4;

/// Blocks the render time is smoothed over (an exponential average): one slow block is
/// a wake-up, not an overload.
pub const SMOOTHING_BLOCKS: f64 = 16.0;

/// Blocks the workers render past a limit's frame before the load is judged again, so
/// the render times measured are those with the new limit.
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
    /// The faster serving worker's render time of its last block, in ns.
    pub render_ns: u64,
    /// The next block the slower serving worker will render.
    pub rendered: u64,
    /// Voices sounding, over every instrument.
    pub voices: u64,
    /// Now, in ns (any monotonic origin).
    pub now_ns: u64,
}

/// A limit the guard decided to stamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitChange {
    /// The limit stamped ([`Command::VoiceLimit`](chronus_engine::Command::VoiceLimit)'s
    /// `voices`; 0 lifts it).
    pub voices: u16,
    /// The limit before (0: none).
    pub from: u16,
    /// The smoothed load that decided it.
    pub load: f64,
    /// Voices sounding when it was decided.
    pub sounding: u64,
}

/// The overload protection's decision: fed each block played, it says when to stamp a
/// new voice limit. Pure and deterministic in its inputs.
#[derive(Debug, Clone)]
pub struct VoiceGuard {
    block_ns: u64,
    /// The smoothed load; `None` until the first render time after a change.
    load: Option<f64>,
    /// Render times in `load` since it was last started: it is judged only after
    /// [`SMOOTHING_BLOCKS`] of them, so no lone block decides.
    samples: u32,
    /// The limit the guard set (`None`: the guard has not lowered it).
    limit: Option<u16>,
    /// The limit a client set with `/voices/limit` (`None`: none), the most the guard
    /// raises its own to.
    ceiling: Option<u16>,
    /// Judge again once the slower worker renders this block.
    settle_until: u64,
    /// Since when the load has been low (ns).
    calm_since: Option<u64>,
}

impl VoiceGuard {
    /// A guard for blocks of `block_ns`.
    pub fn new(block_ns: u64) -> VoiceGuard {
        VoiceGuard {
            block_ns: block_ns.max(1),
            load: None,
            samples: 0,
            limit: None,
            ceiling: None,
            settle_until: 0,
            calm_since: None,
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
        self.load = None;
        self.samples = 0;
        self.calm_since = None;
    }

    /// One block was played: returns a limit to stamp at the horizon, if one is due.
    pub fn block_played(&mut self, seen: BlockSeen) -> Option<LimitChange> {
        if seen.rendered < self.settle_until {
            return None;
        }
        let sample = seen.render_ns as f64 / self.block_ns as f64;
        let load = match self.load {
            Some(load) => load + (sample - load) / SMOOTHING_BLOCKS,
            None => sample,
        };
        self.load = Some(load);
        self.samples = self.samples.saturating_add(1);
        if f64::from(self.samples) < SMOOTHING_BLOCKS {
            return None;
        }
        let in_force = self.limit().map_or(ALL_VOICES, u32::from);
        let sounding = u32::try_from(seen.voices).unwrap_or(u32::MAX);
        if load > HIGH_LOAD {
            self.calm_since = None;
            let effective = in_force.min(sounding);
            if effective <= u32::from(MIN_VOICES) {
                return None; // not the voices' doing
            }
            let aimed = (f64::from(effective) * TARGET_LOAD / load).floor() as u32;
            let voices = aimed.clamp(u32::from(MIN_VOICES), effective - 1) as u16;
            return Some(self.change_to(voices, seen, load));
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
        let raised = u32::from(limit) + (u32::from(limit) / 4).max(1);
        let top = self.ceiling.map_or(ALL_VOICES, u32::from);
        let voices = if raised >= top {
            // Back to the client's limit, or none.
            self.ceiling.unwrap_or(0)
        } else {
            raised as u16
        };
        Some(self.change_to(voices, seen, load))
    }

    fn change_to(&mut self, voices: u16, seen: BlockSeen, load: f64) -> LimitChange {
        let from = self.limit().unwrap_or(0);
        self.limit = match (voices, self.ceiling) {
            (0, _) => None,
            (v, Some(c)) if v == c => None,
            (v, _) => Some(v),
        };
        self.load = None;
        self.samples = 0;
        self.calm_since = None;
        self.settle_until = seen.horizon + SETTLE_BLOCKS;
        LimitChange {
            voices,
            from,
            load,
            sounding: seen.voices,
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

    #[test]
    fn an_overload_lowers_the_limit_toward_the_target_load_one_cut_at_a_time() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        assert!(feed(&mut guard, 0, 1000, 0.5, 900).is_empty());
        // 3x a block period: the smoothed load crosses HIGH_LOAD within a few blocks and
        // the limit falls to what would bring that to TARGET_LOAD; the next cut waits
        // for the workers to render past the first one's frame.
        let changes = feed(&mut guard, 1000, 30, 3.0, 900);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let first = changes[0];
        assert!(first.load > HIGH_LOAD && first.load < 1.2, "{first:?}");
        let aimed = 900.0 * TARGET_LOAD / first.load;
        assert_eq!(first.voices, aimed.floor() as u16, "{first:?}");
        assert_eq!((first.from, first.sounding), (0, 900));
        assert_eq!(guard.limit(), Some(first.voices));
        // Still overloaded (the feed's render time does not fall): lower again, each
        // time below the last, never under MIN_VOICES.
        let later = feed(&mut guard, 1030, 5000, 3.0, 900);
        assert!(later.len() >= 3, "{later:?}");
        assert!(later
            .windows(2)
            .all(|w| w[1].voices < w[0].voices || w[1].voices == MIN_VOICES));
        assert_eq!(guard.limit(), Some(MIN_VOICES));
    }

    #[test]
    fn a_single_slow_block_is_not_an_overload() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        assert!(feed(&mut guard, 0, 100, 0.3, 100).is_empty());
        // Two stalls of 4 ms, three blocks apart.
        assert!(feed(&mut guard, 100, 1, 3.0, 100).is_empty());
        assert!(feed(&mut guard, 101, 2, 0.3, 100).is_empty());
        assert!(feed(&mut guard, 103, 1, 3.0, 100).is_empty());
        assert!(feed(&mut guard, 101, 100, 0.3, 100).is_empty());
    }

    #[test]
    fn workers_behind_are_not_judged_until_they_render_past_the_limit() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        let cut = feed(&mut guard, 0, 16, 6.0, 2000);
        assert_eq!(cut.len(), 1);
        // The limit's frame is block 15 + 8; judged again once the slower worker has
        // rendered SETTLE_BLOCKS past it, and SMOOTHING_BLOCKS render times after that.
        let settled = (15 + 8 + SETTLE_BLOCKS) * 8;
        let seen = |block: u64| BlockSeen {
            block,
            horizon: block + 8,
            render_ns: 6 * BLOCK_NS,
            rendered: block / 8,
            voices: 2000,
            now_ns: block * BLOCK_NS,
        };
        for block in 16..settled + 15 {
            assert_eq!(guard.block_played(seen(block)), None, "block {block}");
        }
        // Still overloaded with the new limit: lower again.
        let again = guard
            .block_played(seen(settled + 15))
            .expect("a second cut");
        assert!(again.voices < cut[0].voices);
    }

    #[test]
    fn an_overload_with_few_voices_is_left_alone() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        assert!(feed(&mut guard, 0, 100, 2.0, u64::from(MIN_VOICES)).is_empty());
    }

    #[test]
    fn a_calm_stretch_raises_the_limit_by_a_quarter_until_it_is_lifted() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        let cut = feed(&mut guard, 0, 20, 3.0, 2000);
        let mut limit = cut[0].voices;
        let calm_blocks = CALM_NS / BLOCK_NS + 2 * SMOOTHING_BLOCKS as u64;
        let mut block = 100;
        let mut rises = 0;
        while limit != 0 {
            let changes = feed(&mut guard, block, calm_blocks, 0.2, 10);
            block += calm_blocks + 100;
            assert_eq!(changes.len(), 1, "{changes:?}");
            let next = changes[0].voices;
            assert!(next == 0 || next > limit, "{limit} -> {next}");
            limit = next;
            rises += 1;
        }
        assert!(rises > 5, "{rises}");
        assert_eq!(guard.limit(), None);
        assert!(feed(&mut guard, block, calm_blocks, 0.2, 10).is_empty());
    }

    #[test]
    fn a_clients_limit_is_the_most_the_guard_raises_to() {
        let mut guard = VoiceGuard::new(BLOCK_NS);
        guard.client_set(100);
        assert_eq!(guard.limit(), Some(100));
        let cut = feed(&mut guard, 0, 20, 3.0, 100);
        assert_eq!(cut.len(), 1);
        assert!(cut[0].voices < 100);
        let calm_blocks = CALM_NS / BLOCK_NS + 2 * SMOOTHING_BLOCKS as u64;
        let mut block = 100;
        loop {
            let changes = feed(&mut guard, block, calm_blocks, 0.2, 10);
            block += calm_blocks + 100;
            if changes[0].voices == 100 {
                break;
            }
            assert!(changes[0].voices < 100);
        }
        assert_eq!(guard.limit(), Some(100));
        assert!(feed(&mut guard, block, calm_blocks, 0.2, 10).is_empty());
    }
}
