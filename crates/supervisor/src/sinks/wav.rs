//! The WAV sink: 32-bit float stereo, written as played, finalised on shutdown.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;

use super::{paced, Playing, Sink};
use crate::output::OutputCore;

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

    /// Appends one block of interleaved stereo samples.
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

    /// Flushes and finalises the header.
    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(writer) = self.writer.take() {
            writer
                .finalize()
                .with_context(|| format!("finalising {}", self.path.display()))?;
        }
        Ok(())
    }
}

impl Sink for WavSink {
    fn describe(&self) -> String {
        format!("WAV file {} (32-bit float, stereo)", self.path.display())
    }

    fn start(
        self: Box<Self>,
        core: OutputCore,
        stop: Arc<AtomicBool>,
        realtime: bool,
    ) -> anyhow::Result<Playing> {
        let mut wav = *self;
        paced::spawn(&wav.describe(), realtime, move || {
            let played = paced::run_paced(core, &stop, |block| wav.write_block(block));
            // Finalised even after a write error, so the file holds what was written.
            let finished = wav.finish();
            played.and(finished)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn the_wav_sink_plays_through_the_sink_trait_and_is_finalised_when_stopped() {
        let path =
            std::env::temp_dir().join(format!("chronus-wav-test-{}.wav", std::process::id()));
        let shared = crate::sinks::paced::tests::idle_shared();
        let sink: Box<dyn Sink> = Box::new(WavSink::create(&path, 48_000).unwrap());
        assert!(sink.describe().starts_with("WAV file"));
        let stop = Arc::new(AtomicBool::new(false));
        let core = OutputCore::new(Arc::clone(&shared));
        let playing = sink.start(core, Arc::clone(&stop), false).unwrap();
        while shared.played.load(Ordering::Acquire) < 5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!playing.ended());
        stop.store(true, Ordering::Release);
        playing.stop().unwrap();
        let reader = hound::WavReader::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(reader.spec().channels, 2);
        assert!(reader.len() >= 5 * 128);
        assert_eq!(
            reader.len() as u64,
            shared.played.load(Ordering::Acquire) * 128
        );
    }
}
