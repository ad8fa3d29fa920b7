//! The engine: one compiled patch plus the commands waiting for their frame.
//!
//! [`Engine::render_block`] renders block after block. Commands arrive stamped with the
//! absolute frame at which they take effect; the engine splits a block at those frames,
//! so a command lands on exactly the same sample in every process, whatever the block
//! boundaries of the process that received it. Everything that shapes future output is
//! in the engine's snapshot, so a fresh worker restored from it continues bit-identically.

use chronus_dsp::{Patch, PatchDesc, PatchError, Smoother, StateError, StateReader, StateWriter};

use chronus_ipc::CommandRecord;

use crate::command::{Command, Instruction, StampedCommand};

/// How many stamped commands may wait for their frame at once. Fixed so that receiving
/// never allocates and the snapshot has a fixed size.
pub const MAX_PENDING: usize = 1024;

/// Frequency of the `/test` tone.
const TEST_TONE_HZ: f64 = 1000.0;
/// Length of the `/test` tone.
const TEST_TONE_SECONDS: f64 = 0.5;
/// Peak level of the `/test` tone.
const TEST_TONE_LEVEL: f32 = 0.25;
/// Fade in/out of the `/test` tone, so it starts and stops without a click.
const TEST_TONE_FADE_SECONDS: f64 = 0.01;

/// The fixed settings of a stream: the same in every worker of a server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Frames per second.
    pub sample_rate: u32,
    /// Frames per block (what the output asks for at a time).
    pub block_frames: usize,
    /// Seed for everything random in the patch.
    pub seed: u64,
}

/// Why a stamped command could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// More than [`MAX_PENDING`] commands wait for future frames.
    #[error("more than {MAX_PENDING} commands are waiting for their frame")]
    Full,
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot of this engine (wrong size, truncated or garbled).
    #[error("snapshot does not fit this engine: {0}")]
    State(#[from] StateError),
    /// A field of the engine's own part of the snapshot holds an impossible value.
    #[error("snapshot has an invalid {0}")]
    Invalid(&'static str),
    /// The snapshot was taken with another stream configuration.
    #[error(
        "snapshot was taken with another configuration (block {found_block}, rate {found_rate})"
    )]
    Config {
        /// Block size recorded in the snapshot.
        found_block: u64,
        /// Sample rate recorded in the snapshot.
        found_rate: u64,
    },
}

/// Counters an engine keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Commands applied to the patch.
    pub applied: u64,
    /// Commands whose frame had already passed when they arrived (applied at once).
    pub late: u64,
}

/// A patch rendering a stream block by block, applying stamped commands on their frame.
pub struct Engine {
    config: EngineConfig,
    patch: Patch,
    /// Block to render next.
    next_block: u64,
    /// Commands waiting for their frame, sorted by (frame, seq).
    pending: Vec<StampedCommand>,
    /// Highest sequence number received (a joining worker skips ring records at or below it).
    last_seq: u64,
    master_gain: Smoother,
    /// Frames of test tone still to play (0 = silent).
    test_tone_remaining: u64,
    test_tone_phase: f64,
    counters: EngineCounters,
    left: Vec<f32>,
    right: Vec<f32>,
}

impl Engine {
    /// Compiles `desc` into a fresh engine whose next block is `start_block`.
    ///
    /// # Errors
    /// Any [`PatchError`] from compiling the patch (unknown module, cycle, …).
    pub fn new(
        desc: &PatchDesc,
        config: EngineConfig,
        start_block: u64,
    ) -> Result<Engine, PatchError> {
        let patch = Patch::compile(
            desc,
            config.sample_rate as f32,
            config.block_frames,
            config.seed,
        )?;
        let master_gain = Smoother::with_default_ramp(1.0, config.sample_rate as f32);
        Ok(Engine {
            config,
            patch,
            next_block: start_block,
            pending: Vec::with_capacity(MAX_PENDING),
            last_seq: 0,
            master_gain,
            test_tone_remaining: 0,
            test_tone_phase: 0.0,
            counters: EngineCounters::default(),
            left: vec![0.0; config.block_frames],
            right: vec![0.0; config.block_frames],
        })
    }

    /// The stream settings.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// The compiled patch (for queries such as voices sounding).
    pub fn patch(&self) -> &Patch {
        &self.patch
    }

    /// The block [`render_block`](Self::render_block) renders next.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Highest sequence number received so far.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applied/late command counters.
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// Queues a stamped command until its frame. Never allocates.
    ///
    /// # Errors
    /// [`ReceiveError::Full`] when [`MAX_PENDING`] commands are already waiting.
    pub fn receive(&mut self, command: StampedCommand) -> Result<(), ReceiveError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(ReceiveError::Full);
        }
        // Keep (frame, seq) order: equal frames apply in the order they were stamped.
        let at = self
            .pending
            .partition_point(|p| (p.frame, p.seq) <= (command.frame, command.seq));
        self.pending.insert(at, command);
        self.last_seq = self.last_seq.max(command.seq);
        Ok(())
    }

    /// Renders the next block into `out` (interleaved stereo, `2 * block_frames` samples)
    /// and advances. Allocates nothing, locks nothing.
    pub fn render_block(&mut self, out: &mut [f32]) {
        let frames = self.config.block_frames;
        let block_start = self.next_block * frames as u64;
        let block_end = block_start + frames as u64;
        let mut cursor = 0usize;
        while cursor < frames {
            // Apply every command due at or before this frame.
            let now = block_start + cursor as u64;
            while let Some(first) = self.pending.first().copied() {
                if first.frame > now {
                    break;
                }
                self.pending.remove(0);
                if first.frame < block_start {
                    self.counters.late += 1;
                }
                self.apply(first.command);
            }
            // Render up to the next command's frame or the block's end.
            let segment_end = match self.pending.first() {
                Some(next) if next.frame < block_end => (next.frame - block_start) as usize,
                _ => frames,
            };
            let (left, right) = (
                &mut self.left[cursor..segment_end],
                &mut self.right[cursor..segment_end],
            );
            self.patch.process(left, right);
            cursor = segment_end;
        }
        self.finish_block(out);
        self.next_block += 1;
    }

    /// Applies master gain and the test tone, and interleaves into `out`.
    fn finish_block(&mut self, out: &mut [f32]) {
        let sample_rate = f64::from(self.config.sample_rate);
        let tone_len = (TEST_TONE_SECONDS * sample_rate) as u64;
        let fade_len = (TEST_TONE_FADE_SECONDS * sample_rate) as u64;
        let step = TEST_TONE_HZ / sample_rate;
        for ((frame, left), right) in out.chunks_exact_mut(2).zip(&self.left).zip(&self.right) {
            let gain = self.master_gain.next();
            let mut tone = 0.0f32;
            if self.test_tone_remaining > 0 {
                let played = tone_len - self.test_tone_remaining;
                let envelope = played.min(self.test_tone_remaining).min(fade_len) as f32
                    / fade_len.max(1) as f32;
                tone = TEST_TONE_LEVEL
                    * envelope
                    * (self.test_tone_phase * std::f64::consts::TAU).sin() as f32;
                self.test_tone_phase = (self.test_tone_phase + step).fract();
                self.test_tone_remaining -= 1;
            }
            frame[0] = (left + tone) * gain;
            frame[1] = (right + tone) * gain;
        }
    }

    fn apply(&mut self, command: Command) {
        self.counters.applied += 1;
        match command {
            Command::SetParam { node, param, value } => self.patch.set_param(node, param, value),
            Command::Gate { node, on } => self.patch.set_gate(node, on),
            Command::EngineGain(gain) => self.master_gain.set_target(gain.clamp(0.0, 1.0)),
            Command::TestTone => {
                self.test_tone_remaining =
                    (TEST_TONE_SECONDS * f64::from(self.config.sample_rate)) as u64;
                self.test_tone_phase = 0.0;
            }
        }
    }

    /// Exact size of a snapshot of this engine, in bytes (fixed once the patch is compiled).
    pub fn snapshot_len(&self) -> usize {
        // config check (3), next_block, last_seq, counters (2), tone (2), pending count
        10 * 8 + MAX_PENDING * PENDING_RECORD_LEN + Smoother::STATE_LEN + self.patch.state_len()
    }

    /// Writes the engine state at the current block boundary into `buf` (at least
    /// [`snapshot_len`](Self::snapshot_len) bytes) and returns the bytes written. Allocates nothing.
    pub fn save_snapshot(&self, buf: &mut [u8]) -> usize {
        let len = self.snapshot_len();
        let Some(target) = buf.get_mut(..len) else {
            return 0;
        };
        let mut w = StateWriter::new(target);
        w.put_u64(self.config.block_frames as u64);
        w.put_u64(u64::from(self.config.sample_rate));
        w.put_u64(self.config.seed);
        w.put_u64(self.next_block);
        w.put_u64(self.last_seq);
        w.put_u64(self.counters.applied);
        w.put_u64(self.counters.late);
        w.put_u64(self.test_tone_remaining);
        w.put_f64(self.test_tone_phase);
        w.put_u64(self.pending.len() as u64);
        for i in 0..MAX_PENDING {
            match self.pending.get(i) {
                Some(p) => {
                    let record = p.to_record(0);
                    w.put_u64(record.seq);
                    w.put_u64(u64::from(record.kind));
                    w.put_u64(record.frame);
                    for word in record.payload {
                        w.put_u64(word);
                    }
                }
                None => {
                    for _ in 0..PENDING_RECORD_LEN / 8 {
                        w.put_u64(0);
                    }
                }
            }
        }
        self.master_gain.save_state(&mut w);
        self.patch.save_state(&mut w);
        len
    }

    /// Restores the state saved by [`save_snapshot`](Self::save_snapshot) of an engine with
    /// the same patch and configuration. On error the engine is left as it was.
    ///
    /// # Errors
    /// [`SnapshotError`] when the bytes do not describe this engine.
    pub fn load_snapshot(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        // Keep what we have, so a bad snapshot leaves the engine as it was.
        let mut backup = vec![0u8; self.snapshot_len()];
        self.save_snapshot(&mut backup);
        let result = self.read_snapshot(bytes);
        if result.is_err() {
            self.read_snapshot(&backup)
                .expect("an engine's own snapshot always restores");
        }
        result
    }

    fn read_snapshot(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let mut r = StateReader::new(bytes);
        let (block, rate, seed) = (r.get_u64()?, r.get_u64()?, r.get_u64()?);
        if block != self.config.block_frames as u64
            || rate != u64::from(self.config.sample_rate)
            || seed != self.config.seed
        {
            return Err(SnapshotError::Config {
                found_block: block,
                found_rate: rate,
            });
        }
        self.next_block = r.get_u64()?;
        self.last_seq = r.get_u64()?;
        self.counters.applied = r.get_u64()?;
        self.counters.late = r.get_u64()?;
        self.test_tone_remaining = r.get_u64()?;
        self.test_tone_phase = r.get_f64()?;
        let count = r.get_u64()?;
        if count > MAX_PENDING as u64 {
            return Err(SnapshotError::Invalid("pending command count"));
        }
        self.pending.clear();
        for i in 0..MAX_PENDING as u64 {
            let mut record = CommandRecord {
                seq: r.get_u64()?,
                generation: 0,
                kind: u32::try_from(r.get_u64()?)
                    .map_err(|_| SnapshotError::Invalid("command kind"))?,
                frame: r.get_u64()?,
                payload: [0; 5],
            };
            for word in &mut record.payload {
                *word = r.get_u64()?;
            }
            if i < count {
                match Instruction::from_record(&record) {
                    Ok(Instruction::Stamped(stamped)) => self.pending.push(stamped),
                    _ => return Err(SnapshotError::Invalid("pending command")),
                }
            }
        }
        self.master_gain.load_state(&mut r)?;
        self.patch.load_state(&mut r)?;
        Ok(())
    }
}

/// Bytes one pending command takes in a snapshot: seq, kind, frame and five payload words.
const PENDING_RECORD_LEN: usize = 8 * 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EngineConfig {
        EngineConfig {
            sample_rate: 48_000,
            block_frames: 64,
            seed: 7,
        }
    }

    fn engine() -> Engine {
        Engine::new(&PatchDesc::default_patch(), config(), 0).expect("default patch compiles")
    }

    fn gate_on(seq: u64, frame: u64) -> StampedCommand {
        StampedCommand {
            seq,
            frame,
            command: Command::Gate { node: 1, on: true },
        }
    }

    fn render(engine: &mut Engine, blocks: usize) -> Vec<f32> {
        let mut all = Vec::new();
        let mut block = vec![0.0; 128];
        for _ in 0..blocks {
            engine.render_block(&mut block);
            all.extend_from_slice(&block);
        }
        all
    }

    #[test]
    fn gate_opens_sound_on_its_exact_frame() {
        let mut engine = engine();
        engine.receive(gate_on(1, 100)).unwrap();
        let out = render(&mut engine, 4);
        let first_sound = out
            .chunks(2)
            .position(|f| f[0] != 0.0)
            .expect("sound after gate");
        assert!(
            first_sound >= 100,
            "sound before the stamped frame: {first_sound}"
        );
        assert!(first_sound <= 101);
    }

    #[test]
    fn same_commands_give_identical_audio_whatever_arrives_when() {
        let commands = [
            gate_on(1, 10),
            StampedCommand {
                seq: 2,
                frame: 500,
                command: Command::SetParam {
                    node: 0,
                    param: 0,
                    value: 660.0,
                },
            },
            StampedCommand {
                seq: 3,
                frame: 700,
                command: Command::EngineGain(0.5),
            },
        ];
        let mut early = engine();
        for c in commands {
            early.receive(c).unwrap();
        }
        let a = render(&mut early, 20);

        let mut late = engine();
        late.receive(commands[0]).unwrap();
        let mut b = render(&mut late, 5); // up to frame 320
        late.receive(commands[2]).unwrap();
        late.receive(commands[1]).unwrap();
        b.extend(render(&mut late, 15));
        assert_eq!(a, b);
    }

    #[test]
    fn snapshot_restore_continues_bit_identically() {
        let mut straight = engine();
        straight.receive(gate_on(1, 0)).unwrap();
        straight
            .receive(StampedCommand {
                seq: 2,
                frame: 64 * 12 + 5,
                command: Command::TestTone,
            })
            .unwrap();
        let _ = render(&mut straight, 10);
        let mut snapshot = vec![0u8; straight.snapshot_len()];
        assert_eq!(straight.save_snapshot(&mut snapshot), snapshot.len());
        let expected = render(&mut straight, 30);

        let mut fresh = engine();
        fresh.load_snapshot(&snapshot).unwrap();
        assert_eq!(fresh.next_block(), 10);
        assert_eq!(fresh.last_seq(), 2);
        assert_eq!(render(&mut fresh, 30), expected);
    }

    #[test]
    fn garbled_snapshot_is_refused_and_engine_untouched() {
        let mut engine = engine();
        let before = render(&mut engine, 1);
        assert!(engine.load_snapshot(&[1, 2, 3]).is_err());
        assert_eq!(engine.next_block(), 1);
        assert_eq!(before.len(), 128);
    }

    #[test]
    fn late_commands_apply_at_once_and_are_counted() {
        let mut engine = engine();
        let _ = render(&mut engine, 3);
        engine.receive(gate_on(1, 10)).unwrap();
        let _ = render(&mut engine, 1);
        assert_eq!(engine.counters().late, 1);
        assert_eq!(engine.counters().applied, 1);
    }

    #[test]
    fn pending_queue_is_bounded() {
        let mut engine = engine();
        for i in 0..MAX_PENDING as u64 {
            engine.receive(gate_on(i + 1, 1_000_000 + i)).unwrap();
        }
        assert_eq!(engine.receive(gate_on(99_999, 5)), Err(ReceiveError::Full));
    }
}
