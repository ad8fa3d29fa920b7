//! The WAV sink: 32-bit float stereo, written as played, finalised on shutdown.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Sink;

/// Writes every played block to a WAV file.
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
}

impl WavSink {
    /// Creates (truncates) `path`.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: &Path, sample_rate: u32) -> anyhow::Result<WavSink> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let writer = hound::WavWriter::create(path, spec)
            .with_context(|| format!("cannot create WAV file {}", path.display()))?;
        Ok(WavSink {
            path: path.to_path_buf(),
            writer: Some(writer),
        })
    }
}

impl Sink for WavSink {
    fn write_block(&mut self, interleaved: &[f32]) -> anyhow::Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            for &sample in interleaved {
                writer
                    .write_sample(sample)
                    .with_context(|| format!("writing {}", self.path.display()))?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(writer) = self.writer.take() {
            writer
                .finalize()
                .with_context(|| format!("finalising {}", self.path.display()))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("WAV file {} (32-bit float, stereo)", self.path.display())
    }
}
