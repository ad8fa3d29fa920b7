//! A slot: the fixed piece of shared memory between the supervisor (and its
//! output thread) and whichever worker is bound to it.
//!
//! Slots are infrastructure, workers are transient: the supervisor creates a
//! slot once (a sealed memfd), and on every new binding calls
//! [`Slot::rebind`], which zeroes the rings and every per-binding field and
//! bumps the generation (DESIGN.md invariant 4). A worker maps the inherited
//! fd with [`Slot::attach`], which refuses anything whose magic, layout version,
//! geometry or size does not check out.
//!
//! # Memory layout
//!
//! All offsets in bytes from the start of the mapping; every line is 64 bytes.
//! Fields written by different parties sit on different cache lines. "u64" and
//! "u32" name the width of the atomics used for the field; the two widths
//! never touch the same bytes.
//!
//! ```text
//! offset  width  written by   field
//! ------  -----  -----------  ---------------------------------------------
//!      0  u64    supervisor   magic "CHRNSLOT" (little endian)     } line 0:
//!      8  u64    supervisor   layout version (LAYOUT_VERSION)      } constant
//!     16  u64    supervisor   block_frames                         } after
//!     24  u64    supervisor   channels                             } create
//!     32  u64    supervisor   audio_capacity (blocks, 2^k)         }
//!     40  u64    supervisor   command_capacity (records, 2^k)      }
//!     48  u64    supervisor   byte_len of the whole segment        }
//!     64  u64    supervisor   generation (u32 value; set last by rebind)
//!    128  u64    output       horizon: first block no worker may render
//!    136  u32    output       wake word (futex), bumped per horizon
//!    192  u32    worker       sleepers: workers inside the futex wait
//!    256  u64    output       command ring write cursor
//!    320  u64    worker       command ring read cursor
//!    384  u64    worker       audio ring written cursor (max index + 1)
//!    448  u64    output       audio ring read cursor (all < it consumed)
//!    512  u64    worker       worker pid
//!    520  u64    worker       attached generation
//!    528  u64    worker       joined generation
//!    536  u64    worker       rendered: next block the worker will render
//!    544  u64    worker       heartbeat counter
//!    552  u64    worker       rejected-record counter
//!    576  u64    worker       render time of the last block, ns
//!    584  u64    worker/sup.  peak render time since the last take, ns
//!    592  u64    worker       voices sounding after the last block
//!    600  u64    worker       applying: block of the last command applied
//!    608  u64    worker       applying: its sequence number + 1 (0 = none yet)
//!    640  u64    worker       engine counts (WorkerCounts, 6 words): applied,
//!                             late, stale, bad_patches, waiting, voice_steals
//!   1024  u64    output       command ring: command_capacity records of
//!                             8 words (seq, generation | kind << 32, frame,
//!                             payload[5])
//!      A  ...    worker       audio ring, A = 1024 + 64 * command_capacity:
//!                             audio_capacity entries of S bytes,
//!                             S = 64 + round_up(4 * block_frames * channels, 64)
//!                               A + i*S      u64  tag (block index + 1; 0 = none)
//!                               A + i*S + 64 u32  samples, interleaved f32 bits
//! ```
//!
//! Everything read from the segment is treated as untrusted input: cursors
//! are range-checked, entry indices are reduced modulo a power-of-two
//! capacity, and the geometry the header claims is validated on attach.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::audio_ring::{AudioRing, WriteOutcome};
use crate::command_ring::{CommandRing, RECORD_WORDS};
use crate::error::{IpcError, LayoutError};
use crate::futex;
use crate::mapping::SharedMapping;
use crate::CommandRecord;

/// "CHRNSLOT" as a little-endian u64: identifies a slot segment.
pub const SLOT_MAGIC: u64 = u64::from_le_bytes(*b"CHRNSLOT");
/// Version of the layout documented in this file; bump on any change so a
/// supervisor and a worker from different builds refuse each other.
pub const LAYOUT_VERSION: u64 = 2;

/// Largest block, in frames.
pub const MAX_BLOCK_FRAMES: u32 = 4096;
/// Largest number of interleaved channels.
pub const MAX_CHANNELS: u32 = 8;
/// Largest audio ring, in blocks (after rounding up to a power of two).
pub const MAX_AUDIO_BLOCKS: u32 = 1024;
/// Largest command ring, in records (after rounding up to a power of two).
pub const MAX_COMMANDS: u32 = 1 << 16;

const LINE: usize = 64;
const HEADER_BYTES: usize = 1024;

// Header byte offsets (see the table above).
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_BLOCK_FRAMES: usize = 16;
const OFF_CHANNELS: usize = 24;
const OFF_AUDIO_CAP: usize = 32;
const OFF_COMMAND_CAP: usize = 40;
const OFF_BYTE_LEN: usize = 48;
const OFF_GENERATION: usize = 64;
const OFF_HORIZON: usize = 128;
const OFF_WAKE: usize = 136; // u32
const OFF_SLEEPERS: usize = 192; // u32
const OFF_CMD_WRITE: usize = 256;
const OFF_CMD_READ: usize = 320;
const OFF_AUDIO_WRITTEN: usize = 384;
const OFF_AUDIO_READ: usize = 448;
const OFF_PID: usize = 512;
const OFF_ATTACHED: usize = 520;
const OFF_JOINED: usize = 528;
const OFF_RENDERED: usize = 536;
const OFF_HEARTBEAT: usize = 544;
const OFF_REJECTED: usize = 552;
const OFF_RENDER_LAST: usize = 576;
const OFF_RENDER_PEAK: usize = 584;
const OFF_VOICES: usize = 592;
const OFF_APPLYING_BLOCK: usize = 600;
const OFF_APPLYING_SEQ: usize = 608;
const OFF_COUNTS: usize = 640; // WorkerCounts::WORDS u64s

/// The engine's command counts, as the worker publishes them in its slot header after
/// every block, for the supervisor's metrics. The ipc crate knows nothing of the engine:
/// these are plain numbers, each with a single writer (the worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounts {
    /// Commands the engine has applied.
    pub applied: u64,
    /// Of those, commands whose frame had already passed when they arrived.
    pub late: u64,
    /// Commands dropped: addressed to a patch replaced before their frame.
    pub stale: u64,
    /// Patch switches dropped: text missing or not compiling.
    pub bad_patches: u64,
    /// Commands queued for a frame not reached yet.
    pub waiting: u64,
    /// Notes that took a voice from another note (instruments with too few voices).
    pub voice_steals: u64,
    /// Where the tempo clock is at the start of the next block, in thousandths of a beat
    /// since bar 1 ([`WorkerCounts::CLOCK_STOPPED`] when it is stopped): for screens.
    pub clock_millibeats: u64,
    /// The clock's tempo, in thousandths of a beat per minute.
    pub clock_millibpm: u64,
}

impl WorkerCounts {
    /// Words the counts take in the header.
    const WORDS: usize = 8;

    /// [`WorkerCounts::clock_millibeats`] of a stopped clock.
    pub const CLOCK_STOPPED: u64 = u64::MAX;

    fn to_words(self) -> [u64; WorkerCounts::WORDS] {
        [
            self.applied,
            self.late,
            self.stale,
            self.bad_patches,
            self.waiting,
            self.voice_steals,
            self.clock_millibeats,
            self.clock_millibpm,
        ]
    }

    fn from_words(words: [u64; WorkerCounts::WORDS]) -> WorkerCounts {
        let [applied, late, stale, bad_patches, waiting, voice_steals, clock_millibeats, clock_millibpm] =
            words;
        WorkerCounts {
            applied,
            late,
            stale,
            bad_patches,
            waiting,
            voice_steals,
            clock_millibeats,
            clock_millibpm,
        }
    }
}

/// Per-binding u64 header fields, zeroed by [`Slot::rebind`].
const BINDING_U64: [usize; 25] = [
    OFF_COUNTS,
    OFF_COUNTS + 8,
    OFF_COUNTS + 16,
    OFF_COUNTS + 24,
    OFF_COUNTS + 32,
    OFF_COUNTS + 40,
    OFF_COUNTS + 48,
    OFF_COUNTS + 56,
    OFF_HORIZON,
    OFF_CMD_WRITE,
    OFF_CMD_READ,
    OFF_AUDIO_WRITTEN,
    OFF_AUDIO_READ,
    OFF_PID,
    OFF_ATTACHED,
    OFF_JOINED,
    OFF_RENDERED,
    OFF_HEARTBEAT,
    OFF_REJECTED,
    OFF_RENDER_LAST,
    OFF_RENDER_PEAK,
    OFF_VOICES,
    OFF_APPLYING_BLOCK,
    OFF_APPLYING_SEQ,
    OFF_GENERATION, // stored last anyway, listed for completeness
];
/// Per-binding u32 header fields, zeroed by [`Slot::rebind`].
const BINDING_U32: [usize; 2] = [OFF_WAKE, OFF_SLEEPERS];

/// Geometry of a slot, chosen by the supervisor and written into the header;
/// a worker checks it on attach.
///
/// Why a separate type: both sides must agree on it bit for bit, and it is the
/// one thing a worker verifies before touching a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLayout {
    /// Frames per audio block (1..=4096).
    pub block_frames: u32,
    /// Interleaved channels per frame (1..=8).
    pub channels: u32,
    /// Audio ring entries, in blocks (a power of two, at most 1024).
    pub audio_capacity: u32,
    /// Command ring entries, in records (a power of two, at most 65536).
    pub command_capacity: u32,
}

impl SlotLayout {
    /// Builds a layout, rounding both capacities up to powers of two.
    ///
    /// # Errors
    /// [`LayoutError`] if `block_frames` is not in 1..=4096, `channels` not in
    /// 1..=8, or a capacity is 0 or rounds up past its maximum.
    pub fn new(
        block_frames: u32,
        channels: u32,
        min_audio_blocks: u32,
        min_commands: u32,
    ) -> Result<Self, LayoutError> {
        let round = |n: u32| {
            if n == 0 {
                0
            } else {
                n.checked_next_power_of_two().unwrap_or(0)
            }
        };
        let layout = SlotLayout {
            block_frames,
            channels,
            audio_capacity: round(min_audio_blocks),
            command_capacity: round(min_commands),
        };
        if layout.audio_capacity == 0 && min_audio_blocks != 0 {
            return Err(LayoutError::AudioCapacity(u64::from(min_audio_blocks)));
        }
        if layout.command_capacity == 0 && min_commands != 0 {
            return Err(LayoutError::CommandCapacity(u64::from(min_commands)));
        }
        layout.validate()?;
        Ok(layout)
    }

    /// Checks every field against its bounds (used on create and attach).
    ///
    /// # Errors
    /// The first field out of bounds, as a [`LayoutError`].
    pub fn validate(&self) -> Result<(), LayoutError> {
        if !(1..=MAX_BLOCK_FRAMES).contains(&self.block_frames) {
            return Err(LayoutError::BlockFrames(u64::from(self.block_frames)));
        }
        if !(1..=MAX_CHANNELS).contains(&self.channels) {
            return Err(LayoutError::Channels(u64::from(self.channels)));
        }
        if !self.audio_capacity.is_power_of_two() || self.audio_capacity > MAX_AUDIO_BLOCKS {
            return Err(LayoutError::AudioCapacity(u64::from(self.audio_capacity)));
        }
        if !self.command_capacity.is_power_of_two() || self.command_capacity > MAX_COMMANDS {
            return Err(LayoutError::CommandCapacity(u64::from(
                self.command_capacity,
            )));
        }
        Ok(())
    }

    /// Samples in one block (`block_frames * channels`).
    pub fn block_len(&self) -> usize {
        self.block_frames as usize * self.channels as usize
    }

    /// Total size of a slot segment with this layout, in bytes.
    ///
    /// Why: the supervisor sizes the memfd with it and the worker compares it
    /// with the size of the fd it was given.
    pub fn byte_len(&self) -> usize {
        self.audio_base() + self.audio_capacity as usize * self.audio_stride()
    }

    fn command_base(&self) -> usize {
        HEADER_BYTES
    }

    fn audio_base(&self) -> usize {
        self.command_base() + self.command_capacity as usize * RECORD_WORDS * 8
    }

    fn audio_stride(&self) -> usize {
        LINE + (self.block_len() * 4).div_ceil(LINE) * LINE
    }
}

/// One slot: header, command ring and audio ring in a shared memfd segment.
///
/// `Send + Sync`: the supervisor shares it between its output thread and its
/// watcher; every method takes `&self` and works through atomics. Who may call
/// what is stated per method (producer/consumer roles of the SPSC rings).
pub struct Slot {
    map: SharedMapping,
    layout: SlotLayout,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("fd", &self.map.fd())
            .field("layout", &self.layout)
            .field("generation", &self.generation())
            .finish()
    }
}

impl Slot {
    /// Supervisor side: creates a new zeroed, sealed memfd segment named
    /// `name` (e.g. `"chronus-slot-0"`) and writes the header (magic, layout
    /// version, layout, size). Generation starts at 0.
    ///
    /// # Errors
    /// [`IpcError::BadLayout`] if `layout` is out of bounds;
    /// [`IpcError::Create`] if the memfd cannot be created, sized, sealed or
    /// mapped (e.g. `name` contains a NUL byte, or memory is exhausted).
    pub fn create(name: &str, layout: SlotLayout) -> Result<Slot, IpcError> {
        layout.validate()?;
        let map =
            SharedMapping::create(name, layout.byte_len()).map_err(|source| IpcError::Create {
                name: name.to_owned(),
                source,
            })?;
        let slot = Slot { map, layout };
        slot.u64_at(OFF_VERSION)
            .store(LAYOUT_VERSION, Ordering::Relaxed);
        slot.u64_at(OFF_BLOCK_FRAMES)
            .store(u64::from(layout.block_frames), Ordering::Relaxed);
        slot.u64_at(OFF_CHANNELS)
            .store(u64::from(layout.channels), Ordering::Relaxed);
        slot.u64_at(OFF_AUDIO_CAP)
            .store(u64::from(layout.audio_capacity), Ordering::Relaxed);
        slot.u64_at(OFF_COMMAND_CAP)
            .store(u64::from(layout.command_capacity), Ordering::Relaxed);
        slot.u64_at(OFF_BYTE_LEN)
            .store(layout.byte_len() as u64, Ordering::Relaxed);
        slot.u64_at(OFF_MAGIC).store(SLOT_MAGIC, Ordering::Release);
        Ok(slot)
    }

    /// Worker side: maps an inherited slot fd and validates it: magic, layout
    /// version, every layout field within bounds, and the file size equal to
    /// the size the layout implies.
    ///
    /// # Errors
    /// [`IpcError::Map`] if the fd cannot be mapped (not a file, size not a
    /// multiple of 8 or larger than the largest valid slot, ...); [`IpcError::TooSmall`] if it cannot even hold a
    /// header; [`IpcError::BadMagic`], [`IpcError::BadVersion`],
    /// [`IpcError::BadLayout`] or [`IpcError::SizeMismatch`] if the header
    /// does not describe this very segment.
    pub fn attach(fd: OwnedFd) -> Result<Slot, IpcError> {
        let largest = SlotLayout {
            block_frames: MAX_BLOCK_FRAMES,
            channels: MAX_CHANNELS,
            audio_capacity: MAX_AUDIO_BLOCKS,
            command_capacity: MAX_COMMANDS,
        };
        let map = SharedMapping::open(fd, largest.byte_len())
            .map_err(|source| IpcError::Map { source })?;
        if map.len() < HEADER_BYTES {
            return Err(IpcError::TooSmall {
                what: "slot",
                actual: map.len(),
                needed: HEADER_BYTES,
            });
        }
        let words = map.words();
        let read = |off: usize| words[off / 8].load(Ordering::Acquire);
        let magic = read(OFF_MAGIC);
        if magic != SLOT_MAGIC {
            return Err(IpcError::BadMagic {
                what: "slot",
                found: magic,
                expected: SLOT_MAGIC,
            });
        }
        let version = read(OFF_VERSION);
        if version != LAYOUT_VERSION {
            return Err(IpcError::BadVersion {
                what: "slot",
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let field = |off: usize, err: fn(u64) -> LayoutError| {
            let v = read(off);
            u32::try_from(v).map_err(|_| err(v))
        };
        let layout = SlotLayout {
            block_frames: field(OFF_BLOCK_FRAMES, LayoutError::BlockFrames)?,
            channels: field(OFF_CHANNELS, LayoutError::Channels)?,
            audio_capacity: field(OFF_AUDIO_CAP, LayoutError::AudioCapacity)?,
            command_capacity: field(OFF_COMMAND_CAP, LayoutError::CommandCapacity)?,
        };
        layout.validate()?;
        let claimed = read(OFF_BYTE_LEN);
        let expected = layout.byte_len();
        if claimed != expected as u64 || map.len() != expected {
            return Err(IpcError::SizeMismatch {
                what: "slot",
                expected: expected as u64,
                claimed,
                actual: map.len() as u64,
            });
        }
        Ok(Slot { map, layout })
    }

    /// The memfd of the segment, to hand to a worker (the supervisor decides
    /// how: the fd is `CLOEXEC`, so it must be duplicated without the flag in
    /// the child).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// The geometry of this slot.
    pub fn layout(&self) -> SlotLayout {
        self.layout
    }

    // ----- field access ---------------------------------------------------

    fn u64_at(&self, byte_off: usize) -> &AtomicU64 {
        // Header offsets are constants < HEADER_BYTES <= len (checked on
        // create/attach), so this index is always in bounds.
        &self.map.words()[byte_off / 8]
    }

    fn u32_at(&self, byte_off: usize) -> &AtomicU32 {
        &self.map.words32()[byte_off / 4]
    }

    fn command_ring(&self) -> CommandRing<'_> {
        let start = self.layout.command_base() / 8;
        let len = self.layout.command_capacity as usize * RECORD_WORDS;
        CommandRing {
            records: self.map.words().get(start..start + len).unwrap_or(&[]),
            write: self.u64_at(OFF_CMD_WRITE),
            read: self.u64_at(OFF_CMD_READ),
            mask: u64::from(self.layout.command_capacity) - 1,
        }
    }

    fn audio_ring(&self) -> AudioRing<'_> {
        let base = self.layout.audio_base();
        let stride = self.layout.audio_stride();
        AudioRing {
            tags: self.map.words().get(base / 8..).unwrap_or(&[]),
            tag_stride: stride / 8,
            samples: self.map.words32().get((base + LINE) / 4..).unwrap_or(&[]),
            sample_stride: stride / 4,
            block_len: self.layout.block_len(),
            mask: u64::from(self.layout.audio_capacity) - 1,
            written: self.u64_at(OFF_AUDIO_WRITTEN),
            read: self.u64_at(OFF_AUDIO_READ),
        }
    }

    // ----- binding ----------------------------------------------------------

    /// Supervisor: zeroes both rings and every per-binding header field, then
    /// stores `generation` (Release, last). DESIGN.md invariant 4: a fresh
    /// worker never sees a record or block from an earlier binding.
    ///
    /// The caller guarantees that no worker is attached to the slot (the old
    /// one is dead and reaped) and that the output thread does not touch the
    /// slot until this returns; the stores are atomic, so a violation yields
    /// garbage values, never undefined behaviour.
    pub fn rebind(&self, generation: u32) {
        let words = self.map.words();
        for off in BINDING_U64 {
            self.u64_at(off).store(0, Ordering::Relaxed);
        }
        for off in BINDING_U32 {
            self.u32_at(off).store(0, Ordering::Relaxed);
        }
        let start = self.layout.command_base() / 8;
        let len = self.layout.command_capacity as usize * RECORD_WORDS;
        for w in words.get(start..start + len).unwrap_or(&[]) {
            w.store(0, Ordering::Relaxed);
        }
        let ring = self.audio_ring();
        for i in 0..self.layout.audio_capacity as usize {
            // The tag and the time beside it (when the block was written).
            for word in ring.tags.iter().skip(i * ring.tag_stride).take(2) {
                word.store(0, Ordering::Relaxed);
            }
            let s = i * ring.sample_stride;
            for w in ring.samples.get(s..s + ring.block_len).unwrap_or(&[]) {
                w.store(0, Ordering::Relaxed);
            }
        }
        self.u64_at(OFF_GENERATION)
            .store(u64::from(generation), Ordering::Release);
    }

    /// The generation of the current binding (0 until the first rebind).
    pub fn generation(&self) -> u32 {
        self.u64_at(OFF_GENERATION).load(Ordering::Acquire) as u32
    }

    // ----- command ring: producer = output thread, consumer = worker ------

    /// Producer (the supervisor's output thread): appends a record. Returns
    /// false if the ring is full; never blocks, allocates or panics.
    pub fn push_command(&self, record: &CommandRecord) -> bool {
        self.command_ring().push(record)
    }

    /// Consumer (the worker): takes the oldest record, if any. The record is
    /// bytes from another process: the caller checks its generation and
    /// sequence number before acting on it.
    pub fn pop_command(&self) -> Option<CommandRecord> {
        self.command_ring().pop()
    }

    /// Records pushed and not yet popped (either side; clamped to capacity).
    pub fn commands_pending(&self) -> u64 {
        self.command_ring().pending()
    }

    // ----- audio ring: producer = worker, consumer = output thread --------

    /// Worker: stores block `index` (interleaved samples, exactly
    /// `block_frames * channels` of them). Writes only if the output's read
    /// cursor `<= index < read cursor + audio_capacity`; the samples go in
    /// (Relaxed), then the entry's tag (Release), then the written cursor.
    ///
    /// Returns [`WriteOutcome::Written`], [`WriteOutcome::Stale`] (the output
    /// has moved past `index`), [`WriteOutcome::Full`] (the entry still holds
    /// an unconsumed block) or [`WriteOutcome::BadLength`].
    pub fn write_block(&self, index: u64, samples: &[f32]) -> WriteOutcome {
        self.audio_ring().write(index, samples)
    }

    /// Output: fills `out` with block `index` and returns true iff the entry
    /// carries block `index` both before and after the copy (a torn or
    /// overwritten entry reads as unavailable; `out` is then unspecified).
    /// Consumes nothing: see [`Slot::release_through`].
    pub fn read_block(&self, index: u64, out: &mut [f32]) -> bool {
        self.audio_ring().read(index, out)
    }

    /// Output: when the worker wrote block `index` ([`crate::monotonic_ns`], a clock every
    /// process shares), if it is in the ring: the deadline minus this is the block's slack.
    pub fn block_done_ns(&self, index: u64) -> Option<u64> {
        self.audio_ring().done_ns(index)
    }

    /// Output: is block `index` in the ring right now?
    pub fn has_block(&self, index: u64) -> bool {
        self.audio_ring().has(index)
    }

    /// Output: compares block `index` with `samples` bit for bit (the lockstep
    /// check between two slots). `None` if the block is not available (or the
    /// lengths differ).
    pub fn block_equals(&self, index: u64, samples: &[f32]) -> Option<bool> {
        self.audio_ring().equals(index, samples)
    }

    /// Output: publishes that every block `< next_wanted` is consumed, which
    /// frees ring space for the worker. Monotonic (a smaller value is a
    /// no-op). The output calls it on the standby slot too, or its worker
    /// will find its ring full.
    pub fn release_through(&self, next_wanted: u64) {
        self.audio_ring().release_through(next_wanted);
    }

    /// The output's read cursor: every block below it is consumed.
    pub fn read_cursor(&self) -> u64 {
        self.audio_ring().read_cursor()
    }

    /// One past the highest block index the worker has written (a progress
    /// hint; the tags are the truth).
    pub fn written(&self) -> u64 {
        self.audio_ring().written()
    }

    // ----- clock --------------------------------------------------------------

    /// Output: publishes `horizon` (the first block no worker may render yet),
    /// bumps the wake word and wakes every waiting worker. The wake syscall is
    /// skipped when no worker sleeps.
    pub fn publish_horizon(&self, horizon: u64) {
        self.u64_at(OFF_HORIZON).store(horizon, Ordering::SeqCst);
        let wake = self.u32_at(OFF_WAKE);
        wake.fetch_add(1, Ordering::SeqCst);
        if self.u32_at(OFF_SLEEPERS).load(Ordering::SeqCst) != 0 {
            futex::wake_all(wake);
        }
    }

    /// The published horizon.
    pub fn horizon(&self) -> u64 {
        self.u64_at(OFF_HORIZON).load(Ordering::Acquire)
    }

    /// Worker: returns as soon as the horizon is greater than `block`
    /// (returning it), or once `timeout` has elapsed (returning the current
    /// horizon, which is then `<= block`). Sleeps on the wake word with a
    /// futex: the word is read before the horizon is checked and the wait is
    /// on that old value, so a publish in between is never lost.
    pub fn wait_for_horizon(&self, block: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now().checked_add(timeout);
        let horizon = self.u64_at(OFF_HORIZON);
        let wake = self.u32_at(OFF_WAKE);
        let sleepers = self.u32_at(OFF_SLEEPERS);
        loop {
            let h = horizon.load(Ordering::Acquire);
            if h > block {
                return h;
            }
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return h,
                },
                None => None,
            };
            // Announce ourselves, then re-read word and horizon (all SeqCst,
            // pairing with publish_horizon): either the publisher sees us and
            // wakes, or we see its new word/horizon and do not sleep.
            sleepers.fetch_add(1, Ordering::SeqCst);
            let seen = wake.load(Ordering::SeqCst);
            let h = horizon.load(Ordering::SeqCst);
            if h <= block {
                futex::wait(wake, seen, remaining);
            }
            sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    // ----- worker status ----------------------------------------------------

    /// Worker: records its pid.
    pub fn set_worker_pid(&self, pid: u32) {
        self.u64_at(OFF_PID)
            .store(u64::from(pid), Ordering::Release);
    }

    /// The pid the worker recorded (0 if none). Informational: the supervisor
    /// trusts its own pidfd, not this.
    pub fn worker_pid(&self) -> u32 {
        self.u64_at(OFF_PID).load(Ordering::Acquire) as u32
    }

    /// Worker: marks itself attached for `generation` (the supervisor ignores
    /// status from an older generation).
    pub fn mark_attached(&self, generation: u32) {
        self.u64_at(OFF_ATTACHED)
            .store(u64::from(generation), Ordering::Release);
    }

    /// The generation the worker last marked itself attached for.
    pub fn attached_generation(&self) -> u32 {
        self.u64_at(OFF_ATTACHED).load(Ordering::Acquire) as u32
    }

    /// Worker: `next_block` is the next block it will render (so every block
    /// below it is rendered). Also the progress signal for hang detection.
    pub fn set_rendered(&self, next_block: u64) {
        self.u64_at(OFF_RENDERED)
            .store(next_block, Ordering::Release);
    }

    /// The worker's rendered cursor.
    pub fn rendered(&self) -> u64 {
        self.u64_at(OFF_RENDERED).load(Ordering::Acquire)
    }

    /// Worker: it has caught up with the stream for `generation` and is a
    /// ready spare (DESIGN.md invariant 5).
    pub fn mark_joined(&self, generation: u32) {
        self.u64_at(OFF_JOINED)
            .store(u64::from(generation), Ordering::Release);
    }

    /// The generation the worker last marked itself joined for.
    pub fn joined_generation(&self) -> u32 {
        self.u64_at(OFF_JOINED).load(Ordering::Acquire) as u32
    }

    /// Worker: one heartbeat (once per block or per wait).
    pub fn beat(&self) {
        self.u64_at(OFF_HEARTBEAT).fetch_add(1, Ordering::Release);
    }

    /// The heartbeat counter; a value that stops moving means a hung worker.
    pub fn heartbeat(&self) -> u64 {
        self.u64_at(OFF_HEARTBEAT).load(Ordering::Acquire)
    }

    /// Worker: render time of the block just rendered, in ns.
    pub fn record_render_ns(&self, ns: u64) {
        self.u64_at(OFF_RENDER_LAST).store(ns, Ordering::Relaxed);
        self.u64_at(OFF_RENDER_PEAK)
            .fetch_max(ns, Ordering::Relaxed);
    }

    /// Output: render time of the block the worker rendered last, in ns (without
    /// resetting anything: the depth's margin follows it).
    pub fn last_render_ns(&self) -> u64 {
        self.u64_at(OFF_RENDER_LAST).load(Ordering::Relaxed)
    }

    /// Supervisor: (render time of the last block, peak since the previous
    /// take), in ns; resets the peak. For the worker load metric.
    pub fn take_render_stats(&self) -> (u64, u64) {
        let last = self.u64_at(OFF_RENDER_LAST).load(Ordering::Relaxed);
        let peak = self.u64_at(OFF_RENDER_PEAK).swap(0, Ordering::Relaxed);
        (last, peak)
    }

    /// Worker: how many voices (envelopes) sound after the block just rendered.
    pub fn set_voices(&self, voices: u64) {
        self.u64_at(OFF_VOICES).store(voices, Ordering::Relaxed);
    }

    /// Voices sounding in this slot's worker, for `/status`.
    pub fn voices(&self) -> u64 {
        self.u64_at(OFF_VOICES).load(Ordering::Relaxed)
    }

    /// Worker: says it is about to apply command `seq` while rendering `block`, so that if
    /// applying it kills the worker, the supervisor knows which command did (a poison
    /// command is the last one both workers applied). Two plain stores, no wait.
    pub fn set_applying(&self, block: u64, seq: u64) {
        self.u64_at(OFF_APPLYING_SEQ).store(0, Ordering::Relaxed);
        self.u64_at(OFF_APPLYING_BLOCK)
            .store(block, Ordering::Relaxed);
        self.u64_at(OFF_APPLYING_SEQ)
            .store(seq.wrapping_add(1), Ordering::Release);
    }

    /// The last command the worker began to apply, as (block, seq), if any. Read after the
    /// worker is dead, so the two words are not torn (a worker killed between them left
    /// the seq at "none").
    pub fn applying(&self) -> Option<(u64, u64)> {
        let seq = self.u64_at(OFF_APPLYING_SEQ).load(Ordering::Acquire);
        let block = self.u64_at(OFF_APPLYING_BLOCK).load(Ordering::Relaxed);
        seq.checked_sub(1).map(|seq| (block, seq))
    }

    /// Worker: counts one rejected record (stale generation or garbage).
    pub fn count_rejected(&self) {
        self.u64_at(OFF_REJECTED).fetch_add(1, Ordering::Relaxed);
    }

    /// Records the worker has rejected in this binding.
    pub fn rejected(&self) -> u64 {
        self.u64_at(OFF_REJECTED).load(Ordering::Relaxed)
    }

    /// Worker: publishes its engine's command counts (after every block and every
    /// drain of the command ring). Plain stores: allocates nothing, never waits.
    pub fn publish_counts(&self, counts: &WorkerCounts) {
        for (i, word) in counts.to_words().into_iter().enumerate() {
            self.u64_at(OFF_COUNTS + 8 * i)
                .store(word, Ordering::Release);
        }
    }

    /// The engine counts the worker last published (zero until it first does). Each
    /// number is exact; the five are read one after another, not as one snapshot.
    pub fn counts(&self) -> WorkerCounts {
        let mut words = [0u64; WorkerCounts::WORDS];
        for (i, word) in words.iter_mut().enumerate() {
            *word = self.u64_at(OFF_COUNTS + 8 * i).load(Ordering::Acquire);
        }
        WorkerCounts::from_words(words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn layout() -> SlotLayout {
        SlotLayout::new(16, 2, 4, 8).unwrap()
    }

    fn slot() -> Slot {
        Slot::create("chronus-test-slot", layout()).unwrap()
    }

    fn rec(i: u64, generation: u32) -> CommandRecord {
        CommandRecord {
            seq: i,
            generation,
            kind: (i % 7) as u32,
            frame: i * 3,
            payload: [
                i ^ 0x55,
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                !i,
                i << 7,
                i + 1,
            ],
        }
    }

    fn block(i: u64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|k| ((i.wrapping_mul(31) + k as u64) % 65_521) as f32 * 1e-3 - 0.5)
            .collect()
    }

    #[test]
    fn layout_rounds_and_bounds() {
        let l = SlotLayout::new(64, 2, 5, 100).unwrap();
        assert_eq!(l.audio_capacity, 8);
        assert_eq!(l.command_capacity, 128);
        assert_eq!(l.block_len(), 128);
        assert_eq!(l.audio_stride(), 64 + 512);
        assert_eq!(l.byte_len(), 1024 + 128 * 64 + 8 * 576);
        assert!(SlotLayout::new(0, 2, 4, 4).is_err());
        assert!(SlotLayout::new(4097, 2, 4, 4).is_err());
        assert!(SlotLayout::new(64, 0, 4, 4).is_err());
        assert!(SlotLayout::new(64, 9, 4, 4).is_err());
        assert!(SlotLayout::new(64, 2, 0, 4).is_err());
        assert!(SlotLayout::new(64, 2, 1025, 4).is_err());
        assert!(SlotLayout::new(64, 2, 4, 0).is_err());
        assert!(SlotLayout::new(64, 2, 4, u32::MAX).is_err());
        assert!(SlotLayout::new(4096, 8, 1024, 1 << 16).is_ok());
        assert!(SlotLayout::new(1, 1, 1, 1).is_ok());
        let bad = SlotLayout {
            audio_capacity: 3,
            ..l
        };
        assert!(Slot::create("chronus-test-bad", bad).is_err());
    }

    #[test]
    fn header_fields_do_not_overlap() {
        let mut offs: Vec<(usize, usize)> = BINDING_U64.iter().map(|&o| (o, 8)).collect();
        offs.extend(BINDING_U32.iter().map(|&o| (o, 4)));
        offs.extend(
            [OFF_MAGIC, OFF_VERSION, OFF_BLOCK_FRAMES, OFF_CHANNELS]
                .iter()
                .chain(&[OFF_AUDIO_CAP, OFF_COMMAND_CAP, OFF_BYTE_LEN])
                .map(|&o| (o, 8)),
        );
        offs.sort();
        for w in offs.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{w:?}");
        }
        assert!(offs.last().unwrap().0 + 8 <= HEADER_BYTES);
        // Cursors written by different parties are on different lines.
        let lines = [OFF_HORIZON, OFF_SLEEPERS, OFF_CMD_WRITE, OFF_CMD_READ]
            .iter()
            .chain(&[OFF_AUDIO_WRITTEN, OFF_AUDIO_READ, OFF_PID, OFF_RENDER_PEAK])
            .map(|o| o / LINE)
            .collect::<Vec<_>>();
        let mut dedup = lines.clone();
        dedup.dedup();
        assert_eq!(lines, dedup);
    }

    #[test]
    fn a_block_carries_when_it_was_written() {
        let slot =
            Slot::create("chronus-test-done", SlotLayout::new(64, 2, 8, 64).unwrap()).unwrap();
        slot.rebind(1);
        assert_eq!(slot.block_done_ns(0), None);
        let before = crate::monotonic_ns();
        assert_eq!(slot.write_block(0, &[0.5; 128]), WriteOutcome::Written);
        let done = slot.block_done_ns(0).unwrap();
        assert!(before <= done && done <= crate::monotonic_ns());
        assert_eq!(
            slot.block_done_ns(1),
            None,
            "a block not written has no time"
        );
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Slot>();
        check::<crate::SnapshotArea>();
    }

    #[test]
    fn command_ring_through_slot() {
        let s = slot();
        assert_eq!(s.pop_command(), None);
        for i in 0..8 {
            assert!(s.push_command(&rec(i, 1)));
        }
        assert!(!s.push_command(&rec(8, 1)));
        assert_eq!(s.commands_pending(), 8);
        for i in 0..8 {
            assert_eq!(s.pop_command(), Some(rec(i, 1)));
        }
        assert_eq!(s.pop_command(), None);
    }

    #[test]
    fn audio_ring_through_slot() {
        let s = slot();
        let n = s.layout().block_len();
        let mut out = vec![0.0; n];
        assert!(!s.has_block(0));
        assert_eq!(s.write_block(0, &block(0, n)), WriteOutcome::Written);
        assert_eq!(s.write_block(1, &block(1, n - 1)), WriteOutcome::BadLength);
        assert!(s.read_block(0, &mut out));
        assert_eq!(out, block(0, n));
        assert_eq!(s.block_equals(0, &block(0, n)), Some(true));
        assert_eq!(s.block_equals(0, &block(1, n)), Some(false));
        assert_eq!(s.write_block(4, &block(4, n)), WriteOutcome::Full);
        s.release_through(1);
        assert_eq!(s.read_cursor(), 1);
        assert_eq!(s.write_block(0, &block(0, n)), WriteOutcome::Stale);
        assert_eq!(s.write_block(4, &block(4, n)), WriteOutcome::Written);
        assert!(!s.has_block(0), "entry 0 now holds block 4");
        assert!(s.read_block(4, &mut out));
        assert_eq!(out, block(4, n));
        assert_eq!(s.written(), 5);
        // Wraparound over many laps.
        for i in 5..10_000u64 {
            s.release_through(i - 3);
            assert_eq!(s.write_block(i, &block(i, n)), WriteOutcome::Written);
            assert!(s.read_block(i, &mut out));
            assert_eq!(out, block(i, n));
            if i >= 8 {
                assert!(s.has_block(i - 3) && !s.has_block(i - 4));
            }
        }
    }

    #[test]
    fn status_fields() {
        let s = slot();
        s.rebind(3);
        assert_eq!(s.generation(), 3);
        s.set_worker_pid(1234);
        s.mark_attached(3);
        s.set_rendered(77);
        s.mark_joined(3);
        s.beat();
        s.beat();
        s.record_render_ns(500);
        s.record_render_ns(900);
        s.record_render_ns(300);
        s.count_rejected();
        assert_eq!(s.worker_pid(), 1234);
        assert_eq!(s.attached_generation(), 3);
        assert_eq!(s.rendered(), 77);
        assert_eq!(s.joined_generation(), 3);
        assert_eq!(s.heartbeat(), 2);
        assert_eq!(s.take_render_stats(), (300, 900));
        assert_eq!(s.take_render_stats(), (300, 0));
        assert_eq!(s.rejected(), 1);
        s.publish_horizon(42);
        assert_eq!(s.horizon(), 42);
    }

    #[test]
    fn attach_sees_the_same_memory() {
        let s = slot();
        s.rebind(9);
        let fd = rustix::io::dup(s.fd()).unwrap();
        let w = Slot::attach(fd).unwrap();
        assert_eq!(w.layout(), s.layout());
        assert_eq!(w.generation(), 9);
        assert!(s.push_command(&rec(1, 9)));
        assert_eq!(w.pop_command(), Some(rec(1, 9)));
        let n = w.layout().block_len();
        assert_eq!(w.write_block(0, &block(0, n)), WriteOutcome::Written);
        assert_eq!(s.block_equals(0, &block(0, n)), Some(true));
    }

    /// Writes `value` at `byte_off` through a second mapping of a fresh slot's
    /// fd and tries to attach to it.
    fn attach_with_patched_word(byte_off: usize, value: u64) -> Result<Slot, IpcError> {
        let s = slot();
        s.map.words()[byte_off / 8].store(value, Ordering::Relaxed);
        Slot::attach(rustix::io::dup(s.fd()).unwrap())
    }

    #[test]
    fn attach_refuses_bad_headers() {
        assert!(matches!(
            attach_with_patched_word(OFF_MAGIC, 0x1234),
            Err(IpcError::BadMagic { .. })
        ));
        assert!(matches!(
            attach_with_patched_word(OFF_VERSION, LAYOUT_VERSION + 1),
            Err(IpcError::BadVersion { .. })
        ));
        for (off, v) in [
            (OFF_BLOCK_FRAMES, 0),
            (OFF_BLOCK_FRAMES, 1 << 40),
            (OFF_CHANNELS, 9),
            (OFF_AUDIO_CAP, 3),
            (OFF_AUDIO_CAP, 1 << 20),
            (OFF_COMMAND_CAP, 0),
            (OFF_COMMAND_CAP, u64::MAX),
        ] {
            assert!(
                matches!(
                    attach_with_patched_word(off, v),
                    Err(IpcError::BadLayout(_))
                ),
                "offset {off} value {v}"
            );
        }
        // A valid but different layout: size no longer matches.
        assert!(matches!(
            attach_with_patched_word(OFF_BLOCK_FRAMES, 32),
            Err(IpcError::SizeMismatch { .. })
        ));
        assert!(matches!(
            attach_with_patched_word(OFF_BYTE_LEN, 4096),
            Err(IpcError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn attach_refuses_wrong_sizes() {
        use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
        // Empty and tiny files.
        for len in [0u64, 8, 512, 12_345, 1 << 31] {
            let fd = memfd_create("chronus-test-small", MemfdFlags::CLOEXEC).unwrap();
            ftruncate(&fd, len).unwrap();
            assert!(Slot::attach(fd).is_err(), "len {len}");
        }
        // A copy of a valid header in a file one page too long.
        let s = slot();
        let fd = memfd_create("chronus-test-long", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&fd, (s.layout().byte_len() + 4096) as u64).unwrap();
        let bigger = SharedMapping::open(rustix::io::dup(&fd).unwrap(), usize::MAX).unwrap();
        for (dst, src) in bigger.words()[..HEADER_BYTES / 8]
            .iter()
            .zip(&s.map.words()[..HEADER_BYTES / 8])
        {
            dst.store(src.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        assert!(matches!(
            Slot::attach(fd),
            Err(IpcError::SizeMismatch { .. })
        ));
        // Not a regular file at all.
        let (r, _w) = rustix::pipe::pipe().unwrap();
        assert!(Slot::attach(r).is_err());
    }

    #[test]
    fn rebind_leaves_nothing_stale() {
        let s = slot();
        s.rebind(1);
        let n = s.layout().block_len();
        // Advance cursors, then fill both rings.
        for i in 0..21u64 {
            assert!(s.push_command(&rec(i, 1)));
            assert!(s.pop_command().is_some());
            assert_eq!(s.write_block(i, &block(i, n)), WriteOutcome::Written);
            s.release_through(i + 1);
        }
        for i in 21..29u64 {
            assert!(s.push_command(&rec(i, 1)));
        }
        for i in 21..25u64 {
            assert_eq!(s.write_block(i, &block(i, n)), WriteOutcome::Written);
        }
        s.publish_horizon(30);
        s.set_rendered(25);
        s.mark_joined(1);
        s.beat();
        s.count_rejected();
        s.record_render_ns(10);
        let counts = WorkerCounts {
            applied: 7,
            late: 1,
            stale: 2,
            bad_patches: 4,
            waiting: 5,
            voice_steals: 6,
            clock_millibeats: 12_345,
            clock_millibpm: 120_000,
        };
        s.publish_counts(&counts);
        assert_eq!(s.counts(), counts);
        assert_eq!(s.applying(), None);
        s.set_applying(24, 0);
        assert_eq!(s.applying(), Some((24, 0)));
        s.set_applying(25, 77);
        assert_eq!(s.applying(), Some((25, 77)));

        s.rebind(2);
        assert_eq!(s.counts(), WorkerCounts::default());
        assert_eq!(s.applying(), None);
        assert_eq!(s.generation(), 2);
        assert_eq!(s.pop_command(), None);
        assert_eq!(s.commands_pending(), 0);
        let mut out = vec![0.0; n];
        for i in 0..64 {
            assert!(!s.has_block(i) && !s.read_block(i, &mut out), "block {i}");
        }
        assert_eq!(
            (s.read_cursor(), s.written(), s.horizon(), s.rendered()),
            (0, 0, 0, 0)
        );
        assert_eq!(
            (s.joined_generation(), s.heartbeat(), s.rejected()),
            (0, 0, 0)
        );
        assert_eq!(s.take_render_stats(), (0, 0));
        // Every byte of both rings is zero again.
        let ring_words = &s.map.words()[HEADER_BYTES / 8..];
        assert!(ring_words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn reuse_loop_never_shows_an_older_generation() {
        let s = slot();
        let n = s.layout().block_len();
        let mut out = vec![0.0; n];
        for g in 1..=1000u32 {
            s.rebind(g);
            assert_eq!(s.generation(), g);
            // A fresh "worker" drains whatever it sees: only this generation.
            let pushes = u64::from(g % 11);
            for i in 0..pushes.min(8) {
                assert!(s.push_command(&rec(i, g)));
            }
            let mut seen = 0;
            while let Some(r) = s.pop_command() {
                assert_eq!(r.generation, g, "stale record after rebind({g})");
                assert_eq!(r, rec(seen, g));
                seen += 1;
            }
            assert_eq!(seen, pushes.min(8));
            // Blocks from the previous binding are gone before we write ours.
            for i in 0..8 {
                assert!(!s.read_block(i, &mut out), "stale block {i} in gen {g}");
            }
            for i in 0..u64::from(g % 5) {
                assert_eq!(
                    s.write_block(i, &block(i + u64::from(g), n)),
                    WriteOutcome::Written
                );
            }
            // Leave some records unconsumed for the next rebind to wipe.
            for i in 0..u64::from(g % 3) {
                assert!(s.push_command(&rec(100 + i, g)));
            }
        }
    }

    #[test]
    fn spsc_stress_commands_and_blocks_across_threads() {
        const RECORDS: u64 = 200_000;
        const BLOCKS: u64 = 20_000;
        let s = Arc::new(
            Slot::create(
                "chronus-test-stress",
                SlotLayout::new(32, 2, 8, 64).unwrap(),
            )
            .unwrap(),
        );
        s.rebind(5);
        let n = s.layout().block_len();
        let done = Arc::new(AtomicBool::new(false));

        // Command producer (the "output thread").
        let p = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut i = 0;
                while i < RECORDS {
                    if s.push_command(&rec(i, 5)) {
                        i += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        // Block producer (the "worker"): writes blocks, retries on Full.
        let w = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut i = 0;
                while i < BLOCKS {
                    match s.write_block(i, &block(i, n)) {
                        WriteOutcome::Written => i += 1,
                        WriteOutcome::Full => std::thread::yield_now(),
                        other => panic!("unexpected {other:?} for block {i}"),
                    }
                }
            })
        };
        // Block consumer (the "output"): reads each block in order.
        let o = {
            let s = Arc::clone(&s);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut out = vec![0.0; n];
                let mut i = 0;
                while i < BLOCKS {
                    if s.read_block(i, &mut out) {
                        assert_eq!(out, block(i, n), "torn block {i}");
                        assert_eq!(s.block_equals(i, &block(i, n)), Some(true));
                        i += 1;
                        s.release_through(i);
                    } else {
                        std::thread::yield_now();
                    }
                }
                done.store(true, Ordering::Release);
            })
        };
        // Command consumer (this thread, the "worker").
        let mut next = 0;
        while next < RECORDS {
            match s.pop_command() {
                Some(r) => {
                    assert_eq!(r, rec(next, 5), "record {next} torn or out of order");
                    next += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        p.join().unwrap();
        w.join().unwrap();
        o.join().unwrap();
        assert!(done.load(Ordering::Acquire));
        assert_eq!(s.pop_command(), None);
    }

    #[test]
    fn overwritten_entries_are_never_read_torn() {
        // A writer that frees the ring itself (as a buggy peer could) keeps
        // overwriting the two entries while a reader copies them: every copy
        // the reader accepts must be exactly the block it asked for.
        const BLOCKS: u64 = 20_000;
        let s = Arc::new(
            Slot::create("chronus-test-tear", SlotLayout::new(256, 2, 2, 2).unwrap()).unwrap(),
        );
        let n = s.layout().block_len();
        let done = Arc::new(AtomicBool::new(false));
        // The writer starts when the reader does, so that they overlap.
        let start = Arc::new(std::sync::Barrier::new(2));
        let writer = {
            let s = Arc::clone(&s);
            let done = Arc::clone(&done);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for i in 0..BLOCKS {
                    s.release_through(i.saturating_sub(1));
                    assert_eq!(s.write_block(i, &block(i, n)), WriteOutcome::Written);
                }
                done.store(true, Ordering::Release);
            })
        };
        let mut out = vec![0.0; n];
        let (mut accepted, mut refused) = (0u64, 0u64);
        start.wait();
        while !done.load(Ordering::Acquire) {
            let newest = s.written().saturating_sub(1);
            for idx in newest.saturating_sub(2)..=newest + 1 {
                if s.read_block(idx, &mut out) {
                    assert_eq!(out, block(idx, n), "torn copy of block {idx} accepted");
                    accepted += 1;
                } else {
                    refused += 1;
                }
                if let Some(eq) = s.block_equals(idx, &block(idx, n)) {
                    assert!(eq, "torn comparison of block {idx} accepted");
                }
            }
        }
        writer.join().unwrap();
        eprintln!("tear test: {accepted} accepted, {refused} refused while writing");
        // The last block stays in the ring, whole: a reader that accepted nothing would
        // make this test prove nothing.
        assert!(
            s.read_block(BLOCKS - 1, &mut out),
            "the last block is readable"
        );
        assert_eq!(out, block(BLOCKS - 1, n));
        assert!(
            accepted + refused > 0,
            "the reader never ran beside the writer"
        );
    }

    #[test]
    fn wait_for_horizon_times_out_and_wakes() {
        let s = Arc::new(slot());
        s.rebind(1);
        s.publish_horizon(10);
        // Already past: immediate.
        assert_eq!(s.wait_for_horizon(9, Duration::from_secs(10)), 10);
        // Not reached: times out after about the timeout.
        let t = Instant::now();
        assert_eq!(s.wait_for_horizon(10, Duration::from_millis(50)), 10);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(45) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(s.wait_for_horizon(10, Duration::ZERO), 10);
        // Woken by a publish from another thread, long before the timeout.
        for round in 0..50u64 {
            let target = 10 + round;
            let waiter = {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let t = Instant::now();
                    (
                        s.wait_for_horizon(target, Duration::from_secs(20)),
                        t.elapsed(),
                    )
                })
            };
            if round % 2 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            s.publish_horizon(target + 1);
            let (h, took) = waiter.join().unwrap();
            assert_eq!(h, target + 1);
            assert!(took < Duration::from_secs(5), "round {round}: {took:?}");
        }
    }

    proptest! {
        #[test]
        fn slot_rings_match_models(
            ops in proptest::collection::vec((0u8..5, 0u64..30), 0..200),
        ) {
            let s = slot();
            let n = s.layout().block_len();
            let cap = u64::from(s.layout().audio_capacity);
            let mut cmds = VecDeque::new();
            let mut next = 0u64;
            let mut held: [Option<u64>; 4] = [None; 4];
            let mut read = 0u64;
            for (op, idx) in ops {
                match op {
                    0 => {
                        let ok = s.push_command(&rec(next, 1));
                        prop_assert_eq!(ok, cmds.len() < 8);
                        if ok { cmds.push_back(rec(next, 1)); }
                        next += 1;
                    }
                    1 => prop_assert_eq!(s.pop_command(), cmds.pop_front()),
                    2 => {
                        let expect = if idx < read { WriteOutcome::Stale }
                            else if idx - read >= cap { WriteOutcome::Full }
                            else { held[(idx % cap) as usize] = Some(idx); WriteOutcome::Written };
                        prop_assert_eq!(s.write_block(idx, &block(idx, n)), expect);
                    }
                    3 => {
                        let present = held[(idx % cap) as usize] == Some(idx);
                        let mut out = vec![0.0; n];
                        prop_assert_eq!(s.read_block(idx, &mut out), present);
                        prop_assert_eq!(s.has_block(idx), present);
                        if present { prop_assert_eq!(out, block(idx, n)); }
                    }
                    _ => { read = read.max(idx); s.release_through(idx); }
                }
            }
        }
    }
}
