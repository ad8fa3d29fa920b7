//! The null sink: plays in real time into nothing, for machines without a sound card.

use super::Sink;

/// Discards every block (the paced loop still keeps real time).
#[derive(Debug, Default)]
pub struct NullSink;

impl Sink for NullSink {
    fn write_block(&mut self, _interleaved: &[f32]) -> anyhow::Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "null sink (paced in real time, no sound)".to_string()
    }
}
