//! The depth: how many blocks ahead of the block being played the workers may render,
//! which is the control latency (a command is stamped `depth` blocks ahead). `--depth
//! auto` (the default) adapts it to the machine; `--depth N` holds it.
//!
//! What is measured is each block's *slack*: how long before the output read it both
//! serving workers had written it (the ring notes when each block was written). The
//! margin kept is one more render of a block (the workers' last render time: a heavy
//! patch's render time is what varies most) plus a margin for wake-ups: half a block or
//! [`SCHEDULING_MARGIN_NS`], whichever is more, doubled after every miss and every raise
//! that comes within a minute of a lowering (up to [`MAX_MARGIN_NS`]), and halved after
//! each calm stretch, so a machine that stalls now and then earns itself a deeper margin
//! and a quiet one a shallower. A depth at which no worker had a block in time (an
//! underrun) is not gone back to for ten minutes ([`MISS_MEMORY_NS`]).
//! A block with less slack than that is a miss about to happen, so the depth rises as soon
//! as one comes (never only after an underrun), by one block each time, then waits for
//! the raise to show before judging again. When a long stretch of blocks had slack to
//! spare — all but one in a thousand had enough that one block less would still leave the
//! margin — the depth falls by one.
//!
//! The depth never falls below what the sink's period needs: a sink that takes `p` blocks
//! at a time (a JACK period, the paced sink's burst) reads `p` blocks whose horizon was
//! published a period earlier, so a depth under `p` would read blocks the workers were not
//! yet allowed to render. The period is measured too (from the sink's hand-overs), and a
//! fixed `--depth` below it is raised with a log line.
//!
//! A change is seamless and deterministic: the horizon only moves forward (a lower depth
//! waits for the played block to catch up), and the frames commands are stamped with are
//! in the command log, so a replay renders the same whatever the depth did.
//! [`DepthControl`] is the pure decision, owned by the output thread; it allocates,
//! locks and panics never.

/// The deepest `--depth auto` goes (blocks): past this a machine too slow for the patch
/// would only gain latency. The rings are sized for it.
pub const MAX_AUTO_DEPTH: u64 = 64;

/// The slack kept beyond one more render of a block: a block read with less than this
/// plus the render time raises the depth, a miss is close. A real-time worker wakes in
/// tens of microseconds; this leaves room for a loaded machine's worse.
pub const SCHEDULING_MARGIN_NS: u64 = 500_000;

/// A raise this soon after a lowering means the lowering was one block too many: the
/// margin doubles, as after a miss, so the depth does not swing back and forth.
pub const REGRET_NS: u64 = 60_000_000_000;

/// The most the wake-up margin grows to after misses.
pub const MAX_MARGIN_NS: u64 = 8_000_000;

/// The margin kept above the raise threshold before a lower depth is tried: after one
/// block less, the slack must still exceed the threshold by this.
pub const LOWER_MARGIN_NS: u64 = 250_000;

/// Of the blocks of a calm stretch, at most one in this many may lack the slack to lower
/// the depth (a lone wake-up spike does not hold the depth up forever; a real shortage
/// raises it again at once).
pub const TIGHT_ONE_IN: u64 = 1_000;

/// How long every block must have had slack to spare before the depth falls by one.
pub const CALM_NS: u64 = 10_000_000_000;

/// How long a depth that underran is not gone back to: a machine that stalled once
/// (a virtual CPU taken away for a period) is likely to stall again, and calm stretches of
/// seconds between its stalls say nothing about the next one.
pub const MISS_MEMORY_NS: u64 = 600_000_000_000;

/// How the depth is set: adapted (`auto`) or held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthSetting {
    /// Adapted to the measured slack, from just above the sink's period.
    Auto,
    /// Held at this many blocks (raised only to what the sink's period needs).
    Fixed(u64),
}

impl DepthSetting {
    /// The depth to start at, for a sink that takes `period_blocks` blocks at a time.
    pub fn initial(self, period_blocks: u64) -> u64 {
        match self {
            DepthSetting::Auto => period_blocks.max(1) + 1,
            DepthSetting::Fixed(depth) => depth.max(period_blocks).max(1),
        }
    }

    /// The most blocks the depth can reach (the rings are sized for it).
    pub fn ceiling(self) -> u64 {
        match self {
            DepthSetting::Auto => MAX_AUTO_DEPTH,
            DepthSetting::Fixed(depth) => depth.max(1),
        }
    }
}

impl std::str::FromStr for DepthSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "auto" {
            return Ok(DepthSetting::Auto);
        }
        match text.parse::<u64>() {
            Ok(depth @ 1..=256) => Ok(DepthSetting::Fixed(depth)),
            _ => Err(format!(
                "'{text}' is not a depth: give 'auto' or a number of blocks from 1 to 256"
            )),
        }
    }
}

impl std::fmt::Display for DepthSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DepthSetting::Auto => f.write_str("auto"),
            DepthSetting::Fixed(depth) => write!(f, "{depth}"),
        }
    }
}

/// Why the depth changed (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthReason {
    /// A block was read with this little slack (ns).
    LowSlack(u64),
    /// A block was missed (an underrun, or a failover for a late worker).
    Missed,
    /// The sink takes this many blocks at a time.
    Period(u64),
    /// The blocks of the last stretch had slack to spare.
    Calm,
}

/// A change of depth to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthChange {
    /// The depth before.
    pub from: u64,
    /// The depth now.
    pub to: u64,
    /// Why.
    pub reason: DepthReason,
}

/// The output thread's depth decisions.
#[derive(Debug, Clone)]
pub struct DepthControl {
    adaptive: bool,
    depth: u64,
    ceiling: u64,
    /// The blocks the sink takes at a time (the least depth that works).
    floor: u64,
    /// The most the rings hold.
    most: u64,
    block_ns: u64,
    /// Blocks to read before the last raise shows in the slack measured.
    settle_blocks: u64,
    /// Blocks read since the depth was last lowered (a raise soon after is a regret).
    blocks_since_lowered: u64,
    /// The wake-up margin now, and the least it goes back to.
    margin_ns: u64,
    base_margin_ns: u64,
    /// Blocks of the calm stretch, and those without the slack to lower the depth.
    calm_blocks: u64,
    tight_blocks: u64,
    /// The deepest depth that underran within [`MISS_MEMORY_NS`] (0: none), and
    /// the blocks read since.
    missed_at_depth: u64,
    blocks_since_missed: u64,
}

impl DepthControl {
    /// Decisions for `setting`, starting for a sink that takes `period_blocks` at a
    /// time, with blocks of `block_ns`, never deeper than `most` blocks (what the rings
    /// hold).
    pub fn new(
        setting: DepthSetting,
        period_blocks: u64,
        block_ns: u64,
        most: u64,
    ) -> DepthControl {
        let most = most.max(1);
        let floor = period_blocks.clamp(1, most);
        let depth = setting.initial(floor).min(most);
        let base_margin_ns = SCHEDULING_MARGIN_NS.max(block_ns / 2);
        DepthControl {
            blocks_since_lowered: u64::MAX,
            margin_ns: base_margin_ns,
            base_margin_ns,
            adaptive: setting == DepthSetting::Auto,
            depth,
            ceiling: setting.ceiling().max(depth).min(most),
            most,
            floor,
            block_ns: block_ns.max(1),
            settle_blocks: depth,
            calm_blocks: 0,
            tight_blocks: 0,
            missed_at_depth: 0,
            blocks_since_missed: 0,
        }
    }

    /// The depth now, in blocks.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// The least depth the sink's period allows.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The sink took `blocks` blocks in one period: the depth is raised to that at once
    /// if below it (also a fixed one: below it, blocks would be read before they may be
    /// rendered).
    pub fn period_seen(&mut self, blocks: u64) -> Option<DepthChange> {
        let blocks = blocks.clamp(1, self.most);
        if blocks <= self.floor {
            // A shorter period (a JACK server back with another): the floor follows it
            // down, and calm stretches bring the depth after it.
            self.floor = blocks;
            return None;
        }
        self.floor = blocks;
        // As at the start: one block above the period when adapting, the period if held.
        let needed = if self.adaptive { blocks + 1 } else { blocks }.min(self.most);
        self.ceiling = self.ceiling.max(needed);
        (self.depth < needed).then(|| self.set(needed, DepthReason::Period(blocks)))
    }

    /// One block was read `slack_ns` after both serving workers had written it; they
    /// take `render_ns` to render a block.
    pub fn block_read(&mut self, slack_ns: u64, render_ns: u64) -> Option<DepthChange> {
        if !self.adaptive {
            return None;
        }
        self.blocks_since_missed = self.blocks_since_missed.saturating_add(1);
        if self.blocks_since_missed.saturating_mul(self.block_ns) >= MISS_MEMORY_NS {
            self.missed_at_depth = 0;
        }
        if self.settle_blocks > 0 {
            self.settle_blocks -= 1;
            return None;
        }
        self.blocks_since_lowered = self.blocks_since_lowered.saturating_add(1);
        let raise_below = render_ns.saturating_add(self.margin_ns);
        if slack_ns < raise_below {
            if self.blocks_since_lowered.saturating_mul(self.block_ns) < REGRET_NS {
                // The last lowering was one block too many: keep a wider margin.
                self.margin_ns = (self.margin_ns * 2).min(MAX_MARGIN_NS);
            }
            return self.raise(DepthReason::LowSlack(slack_ns));
        }
        self.calm_blocks += 1;
        let one_block_less = slack_ns.saturating_sub(self.block_ns);
        if one_block_less < raise_below + LOWER_MARGIN_NS {
            self.tight_blocks += 1;
        }
        if self.calm_blocks * self.block_ns < CALM_NS {
            return None;
        }
        let lower = self.tight_blocks <= self.calm_blocks / TIGHT_ONE_IN;
        self.calm_blocks = 0;
        self.tight_blocks = 0;
        if self.margin_ns > self.base_margin_ns {
            // A calm stretch since the last miss: trust the machine a little more first.
            self.margin_ns = (self.margin_ns / 2).max(self.base_margin_ns);
            return None;
        }
        if lower && self.depth > self.floor && self.depth - 1 > self.missed_at_depth {
            let to = self.depth - 1;
            self.blocks_since_lowered = 0;
            return Some(self.set(to, DepthReason::Calm));
        }
        None
    }

    /// A block was missed by a worker (the other served it, or nobody did): the margin
    /// doubles, and an adaptive depth rises at once.
    pub fn missed(&mut self) -> Option<DepthChange> {
        if !self.adaptive || self.settle_blocks > 0 {
            return None;
        }
        self.margin_ns = (self.margin_ns * 2).min(MAX_MARGIN_NS);
        self.raise(DepthReason::Missed)
    }

    /// No worker had a block at its deadline (an underrun): as [`Self::missed`], and the
    /// depth that underran is not gone back to for [`MISS_MEMORY_NS`]. (A miss another
    /// worker covered is heard by no one; the calm stretches judge those.)
    pub fn underran(&mut self) -> Option<DepthChange> {
        if self.adaptive {
            self.missed_at_depth = self.missed_at_depth.max(self.depth);
            self.blocks_since_missed = 0;
        }
        self.missed()
    }

    /// The wake-up margin kept now, in ns.
    pub fn margin_ns(&self) -> u64 {
        self.margin_ns
    }

    fn raise(&mut self, reason: DepthReason) -> Option<DepthChange> {
        (self.depth < self.ceiling).then(|| self.set(self.depth + 1, reason))
    }

    fn set(&mut self, to: u64, reason: DepthReason) -> DepthChange {
        let change = DepthChange {
            from: self.depth,
            to,
            reason,
        };
        self.depth = to;
        // A raise shows in blocks rendered after it: the next `to` blocks were allowed
        // before. Judge again after them, and start a fresh calm stretch.
        self.settle_blocks = to;
        self.calm_blocks = 0;
        self.tight_blocks = 0;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_NS: u64 = 1_333_333;

    fn settle(control: &mut DepthControl, slack_ns: u64) {
        for _ in 0..control.depth() {
            assert_eq!(control.block_read(slack_ns, 0), None);
        }
    }

    #[test]
    fn auto_starts_one_block_above_the_period() {
        assert_eq!(
            DepthControl::new(DepthSetting::Auto, 1, BLOCK_NS, 100).depth(),
            2
        );
        assert_eq!(
            DepthControl::new(DepthSetting::Auto, 4, BLOCK_NS, 100).depth(),
            5
        );
        assert_eq!(
            DepthControl::new(DepthSetting::Fixed(8), 4, BLOCK_NS, 100).depth(),
            8
        );
        assert_eq!(
            DepthControl::new(DepthSetting::Fixed(2), 4, BLOCK_NS, 100).depth(),
            4
        );
    }

    #[test]
    fn little_slack_raises_before_a_miss_and_waits_for_the_raise_to_show() {
        let mut control = DepthControl::new(DepthSetting::Auto, 1, BLOCK_NS, 100);
        settle(&mut control, 2_000_000);
        let change = control.block_read(400_000, 0).unwrap();
        assert_eq!((change.from, change.to), (2, 3));
        assert_eq!(change.reason, DepthReason::LowSlack(400_000));
        // The blocks already allowed before the raise do not raise it again.
        for _ in 0..3 {
            assert_eq!(control.block_read(100_000, 0), None);
        }
        assert_eq!(control.block_read(100_000, 0).unwrap().to, 4);
    }

    #[test]
    fn a_long_calm_lowers_one_block_at_a_time_never_below_the_period() {
        let mut control = DepthControl::new(DepthSetting::Auto, 2, BLOCK_NS, 100);
        assert_eq!(control.depth(), 3);
        settle(&mut control, 5_000_000);
        let calm_blocks = CALM_NS.div_ceil(BLOCK_NS);
        let mut changes = Vec::new();
        for _ in 0..calm_blocks * 3 {
            changes.extend(control.block_read(5_000_000, 0));
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!((changes[0].from, changes[0].to), (3, 2));
        assert_eq!(control.depth(), 2, "not below the period");
    }

    #[test]
    fn slack_only_just_enough_does_not_lower() {
        let mut control = DepthControl::new(DepthSetting::Auto, 1, BLOCK_NS, 100);
        settle(&mut control, 0);
        // One block less would leave less than the raise threshold and its margin.
        let slack = BLOCK_NS + BLOCK_NS / 2 + LOWER_MARGIN_NS - 1;
        for _ in 0..CALM_NS.div_ceil(BLOCK_NS) * 2 {
            assert_eq!(control.block_read(slack, 0), None);
        }
        assert_eq!(control.depth(), 2);
    }

    #[test]
    fn the_margin_grows_with_the_render_time() {
        let mut control = DepthControl::new(DepthSetting::Auto, 1, BLOCK_NS, 100);
        settle(&mut control, 5_000_000);
        // 1.5 ms of slack is plenty for a light patch, not for one that takes 1.1 ms.
        assert_eq!(control.margin_ns(), BLOCK_NS / 2);
        assert_eq!(control.block_read(1_500_000, 50_000), None);
        let change = control.block_read(1_500_000, 1_100_000).unwrap();
        assert_eq!(change.to, 3);
    }

    #[test]
    fn a_lone_spike_in_a_calm_stretch_does_not_hold_the_depth_up() {
        let mut control = DepthControl::new(DepthSetting::Auto, 1, BLOCK_NS, 100);
        assert_eq!(control.depth(), 2);
        settle(&mut control, 5_000_000);
        let calm_blocks = CALM_NS.div_ceil(BLOCK_NS);
        let mut changes = Vec::new();
        for i in 0..calm_blocks {
            // One block in 2,000 with just enough slack to stay, not to lower.
            let slack = if i % 2_000 == 7 { 1_500_000 } else { 5_000_000 };
            changes.extend(control.block_read(slack, 0));
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].reason, DepthReason::Calm);
        assert_eq!(control.depth(), 1);
    }

    #[test]
    fn a_miss_doubles_the_margin_and_calm_stretches_halve_it_before_the_depth_falls() {
        let mut control = DepthControl::new(DepthSetting::Auto, 1, BLOCK_NS, 100);
        settle(&mut control, 5_000_000);
        let base = control.margin_ns();
        assert_eq!(control.missed().unwrap().to, 3);
        assert_eq!(control.margin_ns(), 2 * base);
        settle(&mut control, 5_000_000);
        let calm_blocks = CALM_NS.div_ceil(BLOCK_NS);
        let mut changes = Vec::new();
        for _ in 0..calm_blocks {
            changes.extend(control.block_read(5_000_000, 0));
        }
        assert!(
            changes.is_empty(),
            "lowered before the margin came back: {changes:?}"
        );
        assert_eq!(control.margin_ns(), base);
        for _ in 0..calm_blocks {
            changes.extend(control.block_read(5_000_000, 0));
        }
        assert_eq!(
            changes.len(),
            1,
            "a covered miss is not remembered: {changes:?}"
        );
        assert_eq!(control.depth(), 2);
    }

    #[test]
    fn a_depth_that_underran_is_not_gone_back_to_for_ten_minutes() {
        let mut control = DepthControl::new(DepthSetting::Auto, 8, BLOCK_NS, 100);
        let calm_blocks = CALM_NS.div_ceil(BLOCK_NS);
        settle(&mut control, 50_000_000);
        for _ in 0..calm_blocks {
            control.block_read(50_000_000, 0);
        }
        assert_eq!(control.depth(), 8, "calm lowers to the period");
        settle(&mut control, 50_000_000);
        assert_eq!(control.underran().unwrap().to, 9);
        settle(&mut control, 50_000_000);
        let memory_blocks = MISS_MEMORY_NS.div_ceil(BLOCK_NS);
        let mut changes = Vec::new();
        for _ in 0..memory_blocks - 2 * calm_blocks {
            changes.extend(control.block_read(50_000_000, 0));
        }
        assert!(
            changes.is_empty(),
            "went back to the depth that missed: {changes:?}"
        );
        for _ in 0..3 * calm_blocks {
            changes.extend(control.block_read(50_000_000, 0));
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(control.depth(), 8);
    }

    #[test]
    fn a_fixed_depth_holds_but_is_raised_to_the_period() {
        let mut control = DepthControl::new(DepthSetting::Fixed(1), 1, BLOCK_NS, 100);
        settle(&mut control, 0);
        assert_eq!(control.block_read(0, 0), None);
        assert_eq!(control.missed(), None);
        let change = control.period_seen(4).unwrap();
        assert_eq!((change.from, change.to), (1, 4));
        assert_eq!(change.reason, DepthReason::Period(4));
        assert_eq!(control.period_seen(4), None);
        assert_eq!(control.period_seen(2), None);
    }

    #[test]
    fn a_miss_raises_and_the_ceiling_holds() {
        let mut control = DepthControl::new(DepthSetting::Auto, 1, BLOCK_NS, 100);
        settle(&mut control, 0);
        let mut depth = control.depth();
        while depth < MAX_AUTO_DEPTH {
            let change = control.missed().unwrap();
            assert_eq!(change.to, depth + 1);
            depth = change.to;
            settle(&mut control, SCHEDULING_MARGIN_NS);
        }
        assert_eq!(control.missed(), None);
        assert_eq!(control.block_read(0, 0), None);
    }

    #[test]
    fn the_depth_stays_within_what_the_rings_hold() {
        let control = DepthControl::new(DepthSetting::Auto, 200, BLOCK_NS, 68);
        assert_eq!((control.floor(), control.depth()), (68, 68));
        let mut control = DepthControl::new(DepthSetting::Fixed(100), 1, BLOCK_NS, 68);
        assert_eq!(control.depth(), 68);
        assert_eq!(control.period_seen(500), None);
    }

    #[test]
    fn the_floor_follows_the_period_both_ways() {
        let mut control = DepthControl::new(DepthSetting::Auto, 1, BLOCK_NS, 100);
        let change = control.period_seen(16).unwrap();
        assert_eq!((change.to, control.floor()), (17, 16));
        assert_eq!(control.period_seen(1), None);
        assert_eq!(control.floor(), 1);
        settle(&mut control, 50_000_000);
        let calm_blocks = CALM_NS.div_ceil(BLOCK_NS);
        for _ in 0..calm_blocks {
            control.block_read(50_000_000, 0);
        }
        assert_eq!(
            control.depth(),
            16,
            "calm brings the depth down after the floor"
        );
    }

    #[test]
    fn a_raise_soon_after_a_lowering_widens_the_margin() {
        let mut control = DepthControl::new(DepthSetting::Auto, 1, BLOCK_NS, 100);
        settle(&mut control, 5_000_000);
        let base = control.margin_ns();
        let calm_blocks = CALM_NS.div_ceil(BLOCK_NS);
        for _ in 0..calm_blocks {
            control.block_read(5_000_000, 0);
        }
        assert_eq!(control.depth(), 1);
        settle(&mut control, 5_000_000);
        assert_eq!(control.block_read(100_000, 0).unwrap().to, 2);
        assert_eq!(control.margin_ns(), 2 * base);
    }

    #[test]
    fn settings_parse_and_print() {
        assert_eq!("auto".parse(), Ok(DepthSetting::Auto));
        assert_eq!("8".parse(), Ok(DepthSetting::Fixed(8)));
        assert!("0".parse::<DepthSetting>().is_err());
        assert!("257".parse::<DepthSetting>().is_err());
        assert!("fast"
            .parse::<DepthSetting>()
            .unwrap_err()
            .contains("'fast'"));
        assert_eq!(DepthSetting::Auto.to_string(), "auto");
        assert_eq!(DepthSetting::Fixed(3).to_string(), "3");
    }
}
