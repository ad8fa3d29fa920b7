//! Recordings (`--record wav:PATH`, and `--output wav:PATH`): every block the output clock
//! plays, written to WAV files that are valid at every instant.
//!
//! The output clock must not touch a file, so it hands each played block to a
//! [`SampleRing`], a preallocated single-producer single-consumer ring a few seconds deep
//! ([`OutputCore::render_next`](crate::output::OutputCore::render_next) pushes; a block that
//! does not fit is counted in `record_blocks_dropped`, never waited for). A [`Recorder`]
//! thread of normal priority drains it into the files with hound and rewrites each header
//! at least every [`FLUSH_INTERVAL`] (hound's `flush`), so after a `kill -9` of the server
//! every tool reads the file up to the last flush. A write error (a full disk) is logged
//! with the path and the OS's reason and counted in `record_write_errors`; that file stops
//! growing (it keeps its valid header), and the sound plays on.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::metrics::Metrics;

/// Longest time between two rewrites of a recording's header (what a `kill -9` may lose).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// How long the recorder sleeps when the ring is empty.
const IDLE_SLEEP: Duration = Duration::from_millis(20);
/// Depth of the ring, in seconds of stereo audio.
pub const RING_SECONDS: u32 = 4;

/// A single-producer single-consumer ring of samples, preallocated. Every shared access
/// is an atomic, so it needs no `unsafe`; the producer (the output clock) never waits.
pub struct SampleRing {
    samples: Box<[AtomicU32]>,
    /// Samples pushed so far (written by the producer only).
    written: AtomicU64,
    /// Samples taken so far (written by the consumer only).
    taken: AtomicU64,
}

impl SampleRing {
    /// A ring holding up to `capacity` samples.
    pub fn new(capacity: usize) -> SampleRing {
        SampleRing {
            samples: (0..capacity.max(1)).map(|_| AtomicU32::new(0)).collect(),
            written: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        }
    }

    /// A ring `RING_SECONDS` deep for stereo audio at `sample_rate`.
    pub fn for_stereo(sample_rate: u32) -> SampleRing {
        SampleRing::new(sample_rate as usize * 2 * RING_SECONDS as usize)
    }

    /// A ring for the notify thread's analysis of the sound (`/notify levels`, …) and for
    /// `/notify audio`: a second of stereo at `sample_rate` (at least 32,768 words), each
    /// block behind a stamp ([`SampleRing::push_stamped`]).
    ///
    /// For `/notify audio` every block must survive until the thread's next tick (10 ms,
    /// later on a loaded machine: it runs at normal priority), or the listener hears a
    /// gap; a second (96,000 samples, 384 KB at 48 kHz) rides out a stalled thread 100
    /// ticks long. Blocks lost anyway are counted in `notify_dropped`.
    pub fn for_monitor(sample_rate: u32) -> SampleRing {
        SampleRing::new((2 * sample_rate as usize).max(32_768))
    }

    /// Samples it holds at most.
    pub fn capacity(&self) -> usize {
        self.samples.len()
    }

    /// Appends `block` whole, or nothing if it does not fit (returns false). Producer only;
    /// allocation-, lock- and wait-free.
    pub fn push(&self, block: &[f32]) -> bool {
        let capacity = self.samples.len() as u64;
        let written = self.written.load(Ordering::Relaxed);
        let taken = self.taken.load(Ordering::Acquire);
        if written - taken + block.len() as u64 > capacity {
            return false;
        }
        for (i, &sample) in block.iter().enumerate() {
            let index = ((written + i as u64) % capacity) as usize;
            if let Some(cell) = self.samples.get(index) {
                cell.store(sample.to_bits(), Ordering::Relaxed);
            }
        }
        self.written
            .store(written + block.len() as u64, Ordering::Release);
        true
    }

    /// Appends `block` whole after a stamp of [`STAMP_WORDS`] words (`frame`'s low and
    /// high halves, then the block's length in samples), or nothing if it does not fit
    /// (returns false): the consumer then knows where on the timeline each block was
    /// played, and sees a block lost to a full ring as a jump. Producer only;
    /// allocation-, lock- and wait-free.
    pub fn push_stamped(&self, frame: u64, block: &[f32]) -> bool {
        let capacity = self.samples.len() as u64;
        let written = self.written.load(Ordering::Relaxed);
        let taken = self.taken.load(Ordering::Acquire);
        let length = (STAMP_WORDS + block.len()) as u64;
        if written - taken + length > capacity {
            return false;
        }
        let stamp = [frame as u32, (frame >> 32) as u32, block.len() as u32];
        let words = stamp.into_iter().chain(block.iter().map(|v| v.to_bits()));
        for (i, word) in words.enumerate() {
            let index = ((written + i as u64) % capacity) as usize;
            if let Some(cell) = self.samples.get(index) {
                cell.store(word, Ordering::Relaxed);
            }
        }
        self.written.store(written + length, Ordering::Release);
        true
    }

    /// Moves every word pushed so far into `out` (cleared first), as the bits they were
    /// pushed with: for a ring filled by [`push_stamped`](Self::push_stamped), read with
    /// [`stamped_blocks`]. Consumer only.
    pub fn take_words_into(&self, out: &mut Vec<u32>) {
        self.take_as(out, |word| word);
    }

    /// Moves every sample pushed so far into `out` (cleared first). Consumer only.
    pub fn take_into(&self, out: &mut Vec<f32>) {
        self.take_as(out, f32::from_bits);
    }

    /// Moves every word pushed so far into `out` (cleared first), each as `from_bits`
    /// makes it. Consumer only.
    fn take_as<T>(&self, out: &mut Vec<T>, from_bits: impl Fn(u32) -> T) {
        out.clear();
        let capacity = self.samples.len() as u64;
        let taken = self.taken.load(Ordering::Relaxed);
        let written = self.written.load(Ordering::Acquire);
        for position in taken..written {
            let index = (position % capacity) as usize;
            if let Some(cell) = self.samples.get(index) {
                out.push(from_bits(cell.load(Ordering::Relaxed)));
            }
        }
        self.taken.store(written, Ordering::Release);
    }
}

/// Words of the stamp [`SampleRing::push_stamped`] puts before each block.
pub const STAMP_WORDS: usize = 3;

/// The blocks in `words` (taken from a ring filled by [`SampleRing::push_stamped`]): each
/// block's first frame and its samples (as their bits). A truncated last block (never
/// made by `push_stamped`) ends the list.
pub fn stamped_blocks(words: &[u32]) -> impl Iterator<Item = (u64, &[u32])> + '_ {
    let mut rest = words;
    std::iter::from_fn(move || {
        let (stamp, after) = rest.split_at_checked(STAMP_WORDS)?;
        let frame = u64::from(stamp[0]) | (u64::from(stamp[1]) << 32);
        let (block, after) = after.split_at_checked(stamp[2] as usize)?;
        rest = after;
        Some((frame, block))
    })
}

/// A file that refuses every write and seek after its first error, so that nothing
/// (hound finalising on drop, the buffer flushing on drop) touches a recording after it
/// failed: it keeps the header of its last successful flush, which matches its data.
struct StopAfterError {
    file: File,
    failed: bool,
}

impl StopAfterError {
    fn check<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if self.failed {
            return Err(std::io::Error::other(
                "this recording stopped after an error",
            ));
        }
        self.failed = result.is_err();
        result
    }
}

impl Write for StopAfterError {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let result = if self.failed {
            Ok(0)
        } else {
            self.file.write(bytes)
        };
        self.check(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = if self.failed {
            Ok(())
        } else {
            self.file.flush()
        };
        self.check(result)
    }
}

impl Read for StopAfterError {
    fn read(&mut self, bytes: &mut [u8]) -> std::io::Result<usize> {
        let result = if self.failed {
            Ok(0)
        } else {
            self.file.read(bytes)
        };
        self.check(result)
    }
}

impl Seek for StopAfterError {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let result = if self.failed {
            Ok(0)
        } else {
            self.file.seek(to)
        };
        self.check(result)
    }
}

/// A write buffer over the file that also reads (hound reads the header of a file it
/// appends to): it empties the buffer before a read or a seek.
struct Buffered {
    file: StopAfterError,
    buffer: Vec<u8>,
}

impl Buffered {
    /// About one flush interval of audio: data mostly reaches the file with the header.
    const CAPACITY: usize = 256 * 1024;

    fn new(file: StopAfterError) -> Buffered {
        Buffered {
            file,
            buffer: Vec::with_capacity(Buffered::CAPACITY),
        }
    }

    fn empty(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let result = self.file.write_all(&self.buffer);
            self.buffer.clear();
            result?;
        }
        Ok(())
    }
}

impl Write for Buffered {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + bytes.len() > Buffered::CAPACITY {
            self.empty()?;
        }
        if bytes.len() >= Buffered::CAPACITY {
            return self.file.write(bytes);
        }
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.empty()?;
        self.file.flush()
    }
}

impl Drop for Buffered {
    /// hound finalises a dropped writer's header without a flush: what is buffered (the
    /// header's data length among it) must still reach the file.
    fn drop(&mut self) {
        let _ = self.empty();
    }
}

impl Read for Buffered {
    fn read(&mut self, bytes: &mut [u8]) -> std::io::Result<usize> {
        self.empty()?;
        self.file.read(bytes)
    }
}

impl Seek for Buffered {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.empty()?;
        self.file.seek(to)
    }
}

/// What hound writes into.
type WavWriter = hound::WavWriter<Buffered>;

/// One WAV file being recorded.
struct Recording {
    path: PathBuf,
    /// `None` once writing failed: the file keeps what its last flush made valid.
    writer: Option<WavWriter>,
    /// What went wrong, once something did.
    failure: Option<String>,
}

impl Recording {
    fn create(path: &Path, sample_rate: u32) -> anyhow::Result<Recording> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot create WAV file {}", path.display()))?;
        // Locked before it is emptied: a server still running keeps its file.
        crate::record_lock::lock_record_file(&file, path)?;
        if file.metadata()?.is_file() {
            file.set_len(0)?;
        }
        let file = StopAfterError {
            file,
            failed: false,
        };
        // Writes the header into the buffer only; the recorder's first flush writes it.
        let writer = hound::WavWriter::new(Buffered::new(file), spec)
            .with_context(|| format!("cannot write WAV file {}", path.display()))?;
        Ok(Recording {
            path: path.to_path_buf(),
            writer: Some(writer),
            failure: None,
        })
    }

    /// Goes on with the recording at `path` (a resumed server's): its samples up to its
    /// header's length are kept, anything written after its last header (the dead server's
    /// last moments) is cut, and silence pads it to `frame`, so that its sample index stays
    /// the stream's frame. A missing or empty file is created.
    fn append(path: &Path, sample_rate: u32, frame: u64) -> anyhow::Result<Recording> {
        if std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
            return Recording::create(path, sample_rate);
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open WAV file {} to append", path.display()))?;
        crate::record_lock::lock_record_file(&file, path)?;
        let spec = hound::WavReader::new(std::io::BufReader::new(&file))
            .with_context(|| format!("{} is not a WAV file to append to", path.display()))?
            .spec();
        if spec.channels != 2
            || spec.sample_rate != sample_rate
            || spec.sample_format != hound::SampleFormat::Float
            || spec.bits_per_sample != 32
        {
            anyhow::bail!(
                "{} is not a 32-bit float stereo {sample_rate} Hz recording: it cannot be appended to",
                path.display()
            );
        }
        // Where the header says the data ends: hound's appending writer stands there.
        file.seek(SeekFrom::Start(0))?;
        let appending = hound::WavWriter::new_append(&mut file)
            .with_context(|| format!("{} is not a WAV file to append to", path.display()))?;
        // Not finalised: that would rewrite the header it just read (and it owns nothing).
        std::mem::forget(appending);
        let end = file.stream_position()?;
        file.set_len(end)?;
        file.seek(SeekFrom::Start(0))?;
        let file = StopAfterError {
            file,
            failed: false,
        };
        let mut writer = hound::WavWriter::new_append(Buffered::new(file))
            .with_context(|| format!("cannot append to WAV file {}", path.display()))?;
        let kept = u64::from(writer.duration());
        for _ in kept..frame {
            writer.write_sample(0.0f32)?;
            writer.write_sample(0.0f32)?;
        }
        writer.flush()?;
        tracing::info!(
            "appending to WAV file {} after its {kept} frames and {} frames of silence",
            path.display(),
            frame.saturating_sub(kept)
        );
        Ok(Recording {
            path: path.to_path_buf(),
            writer: Some(writer),
            failure: None,
        })
    }

    /// Runs `step` on the writer; on an error, reports it once and stops this recording.
    fn with_writer(
        &mut self,
        metrics: &Metrics,
        what: &str,
        step: impl FnOnce(&mut WavWriter) -> hound::Result<()>,
    ) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        if let Err(error) = step(writer) {
            let failure = format!(
                "recording {}: {what} failed: {}",
                self.path.display(),
                describe(&error)
            );
            Metrics::bump(&metrics.record_write_errors);
            tracing::error!(
                "{failure}; this file stops here (valid up to its last flush); the sound plays on"
            );
            self.failure = Some(failure);
            // Its file refuses everything from now on, so dropping it changes nothing.
            self.writer = None;
        }
    }
}

/// hound's error, with the OS's reason when there is one.
fn describe(error: &hound::Error) -> String {
    match error {
        hound::Error::IoError(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// The recorder thread and its stop flag.
pub struct Recorder {
    finish: Arc<AtomicBool>,
    /// Fault injection (`/debug/panic 2`): the thread panics at its next pass.
    injected_panic: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Recorder {
    /// Creates (truncates) every file of `paths`, or with `append_at` (a resumed server's
    /// first frame) appends to each (see `Recording::append`), and starts the thread that
    /// drains `ring` (which the output clock fills with stereo audio at `sample_rate`)
    /// into them.
    ///
    /// # Errors
    /// When a file cannot be created, or the thread cannot start.
    pub fn start(
        paths: &[PathBuf],
        ring: Arc<SampleRing>,
        sample_rate: u32,
        metrics: Arc<Metrics>,
        append_at: Option<u64>,
    ) -> anyhow::Result<Recorder> {
        let mut recordings = paths
            .iter()
            .map(|path| match append_at {
                Some(frame) => Recording::append(path, sample_rate, frame),
                None => Recording::create(path, sample_rate),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for recording in &recordings {
            tracing::info!(
                "recording to WAV file {} (32-bit float, stereo; header rewritten every {} ms)",
                recording.path.display(),
                FLUSH_INTERVAL.as_millis()
            );
        }
        let finish = Arc::new(AtomicBool::new(false));
        let injected_panic = Arc::new(AtomicBool::new(false));
        let (stop, panic) = (Arc::clone(&finish), Arc::clone(&injected_panic));
        let thread = std::thread::Builder::new()
            .name("chronus-recorder".into())
            .spawn(move || record(&ring, &metrics, &mut recordings, &stop, &panic))
            .context("cannot start the recorder thread")?;
        Ok(Recorder {
            finish,
            injected_panic,
            thread,
        })
    }

    /// Whether the thread has ended (before [`finish`](Self::finish), only a panic ends it).
    pub fn ended(&self) -> bool {
        self.thread.is_finished()
    }

    /// Fault injection (`/debug/panic 2`): makes the thread panic at its next pass, as a
    /// bug would, to show that the supervisor notices.
    pub fn inject_panic(&self) {
        self.injected_panic.store(true, Ordering::Release);
    }

    /// Writes what is still queued (call it once the output has stopped, so the last
    /// blocks, the fade-out included, are in), finalises every file and ends the thread.
    ///
    /// # Errors
    /// When a recording failed at any time (each failure was also logged when it happened).
    pub fn finish(self) -> anyhow::Result<()> {
        self.finish.store(true, Ordering::Release);
        let failures = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the recorder thread panicked"))?;
        if !failures.is_empty() {
            anyhow::bail!("{}", failures.join("; "));
        }
        Ok(())
    }
}

/// The recorder thread: drain, write, flush at least every [`FLUSH_INTERVAL`]; at the end,
/// drain once more and finalise. Returns what failed.
fn record(
    ring: &SampleRing,
    metrics: &Metrics,
    recordings: &mut [Recording],
    finish: &AtomicBool,
    injected_panic: &AtomicBool,
) -> Vec<String> {
    let mut samples = Vec::with_capacity(ring.samples.len() / RING_SECONDS as usize);
    // The first pass flushes: a valid (empty) file at once, or an early error.
    let mut last_flush: Option<Instant> = None;
    loop {
        // Read the flag first: everything pushed before it was set is taken below.
        let finishing = finish.load(Ordering::Acquire);
        if injected_panic.load(Ordering::Acquire) {
            panic!("/debug/panic 2: the recorder thread dies, as a bug would make it");
        }
        ring.take_into(&mut samples);
        for recording in recordings.iter_mut() {
            recording.with_writer(metrics, "writing", |writer| {
                samples
                    .iter()
                    .try_for_each(|&sample| writer.write_sample(sample))
            });
        }
        if finishing {
            break;
        }
        if last_flush.is_none_or(|at| at.elapsed() >= FLUSH_INTERVAL) {
            for recording in recordings.iter_mut() {
                recording.with_writer(metrics, "flushing", hound::WavWriter::flush);
            }
            last_flush = Some(Instant::now());
        }
        if samples.is_empty() {
            std::thread::sleep(IDLE_SLEEP);
        }
    }
    for recording in recordings.iter_mut() {
        recording.with_writer(metrics, "finalising", |writer| writer.flush());
    }
    recordings
        .iter_mut()
        .filter_map(|recording| recording.failure.take())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No real-time thread involved: the stamps come back with their blocks, bit for bit,
    /// and a block that does not fit is refused whole.
    #[test]
    fn stamped_blocks_come_back_with_their_frames() {
        let ring = SampleRing::new(2 * (STAMP_WORDS + 4));
        let nan = f32::from_bits(0x7fc0_1234);
        assert!(ring.push_stamped(5 << 32 | 64, &[0.5, -0.5, nan, 1.0]));
        assert!(ring.push_stamped(7, &[0.25, 0.125, 0.0, -0.0]));
        assert!(!ring.push_stamped(9, &[1.0]));
        let mut words = Vec::new();
        ring.take_words_into(&mut words);
        let blocks: Vec<(u64, Vec<u32>)> = stamped_blocks(&words)
            .map(|(frame, block)| (frame, block.to_vec()))
            .collect();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].0, 5 << 32 | 64);
        assert_eq!(blocks[0].1[2], 0x7fc0_1234);
        assert_eq!(blocks[1].0, 7);
        assert_eq!(blocks[1].1[3], (-0.0f32).to_bits());
        // Room again once taken.
        assert!(ring.push_stamped(9, &[1.0]));
    }

    /// A recorder of stereo at 48 kHz into `path`, with its ring and its metrics.
    fn record_to(path: &Path) -> (Recorder, Arc<SampleRing>, Arc<Metrics>) {
        let ring = Arc::new(SampleRing::for_stereo(48_000));
        let metrics = Arc::new(Metrics::default());
        let recorder = Recorder::start(
            &[path.to_path_buf()],
            Arc::clone(&ring),
            48_000,
            Arc::clone(&metrics),
            None,
        )
        .unwrap();
        (recorder, ring, metrics)
    }

    #[test]
    fn the_ring_keeps_order_refuses_what_does_not_fit_and_wraps() {
        let ring = SampleRing::new(10);
        let mut out = Vec::new();
        assert!(ring.push(&[1.0, 2.0, 3.0, 4.0]));
        assert!(ring.push(&[5.0, 6.0, 7.0, 8.0]));
        assert!(!ring.push(&[9.0, 10.0, 11.0, 12.0]), "12 > 10 samples");
        ring.take_into(&mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert!(ring.push(&[9.0, 10.0, 11.0, 12.0]), "wraps around");
        assert!(ring.push(&[-0.0, f32::MIN_POSITIVE]));
        ring.take_into(&mut out);
        assert_eq!(out, [9.0, 10.0, 11.0, 12.0, -0.0, f32::MIN_POSITIVE]);
        assert!(out[4].is_sign_negative(), "bits kept");
        ring.take_into(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_recording_is_readable_while_it_is_written_and_complete_when_finished() {
        let dir = std::env::temp_dir().join(format!("chronus-rec-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.wav");
        let (recorder, ring, _) = record_to(&path);
        let block: Vec<f32> = (0..128).map(|i| i as f32 / 128.0).collect();
        for _ in 0..100 {
            assert!(ring.push(&block));
        }
        // Without finishing: the header is rewritten within a flush interval or two.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let frames = hound::WavReader::open(&path).map_or(0, |r| r.duration());
            if frames == 100 * 64 {
                break;
            }
            assert!(Instant::now() < deadline, "only {frames} frames readable");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(ring.push(&block));
        recorder.finish().unwrap();
        let mut reader = hound::WavReader::open(&path).unwrap();
        let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(samples.len(), 101 * 128);
        assert_eq!(&samples[..128], &block[..]);
    }

    #[test]
    fn a_full_disk_is_reported_with_the_path_and_the_reason() {
        let path = PathBuf::from("/dev/full");
        if !path.exists() {
            return;
        }
        let (recorder, ring, metrics) = record_to(&path);
        // The producer never notices: blocks keep being taken.
        for _ in 0..10 {
            assert!(ring.push(&[0.5; 128]));
            std::thread::sleep(FLUSH_INTERVAL / 4);
        }
        let error = recorder.finish().unwrap_err().to_string();
        assert!(error.contains("/dev/full"), "{error}");
        assert!(error.contains("No space left on device"), "{error}");
        assert_eq!(metrics.record_write_errors.load(Ordering::Relaxed), 1);
    }
}
