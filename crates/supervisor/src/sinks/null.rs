//! The null sink: plays in real time into nothing, for machines without a sound card.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{paced, Playing, Sink};
use crate::output::OutputCore;

/// Discards every block (the paced loop still keeps real time).
#[derive(Debug, Default)]
pub struct NullSink {
    /// Blocks played per wake-up (see [`paced::period_blocks`]).
    pub period_blocks: usize,
}

impl Sink for NullSink {
    fn describe(&self) -> String {
        format!(
            "null sink (paced in real time, no sound; {} block{} per period)",
            self.period_blocks,
            if self.period_blocks == 1 { "" } else { "s" }
        )
    }

    fn start(
        self: Box<Self>,
        core: OutputCore,
        stop: Arc<AtomicBool>,
        realtime: bool,
    ) -> anyhow::Result<Playing> {
        paced::spawn(&self.describe(), realtime, move || {
            paced::run_paced(core, self.period_blocks, &stop, |_| {});
            Ok(())
        })
    }
}
