//! Engine commands: the only way anything outside a worker changes what it renders.
//!
//! A [`Command`] is decoded from OSC (or a command file) by the protocol crate, stamped
//! with the absolute frame at which it takes effect by the output clock, and shipped to
//! every worker as a fixed-size [`CommandRecord`]. Both workers apply the same records at
//! the same frames, which is what keeps them in lockstep.

use chronus_ipc::CommandRecord;

/// Index of a module instance in a compiled patch (its position in the patch description).
pub type NodeIndex = u16;

/// Something that changes the sound, applied at an exact frame in every worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    /// Set parameter `param` of module `node` to `value` (already range-checked; the DSP clamps too).
    SetParam {
        /// Module instance.
        node: NodeIndex,
        /// Parameter index within the module's spec.
        param: u16,
        /// New target value, in the parameter's documented unit.
        value: f32,
    },
    /// Open or close the gate of module `node` (envelopes).
    Gate {
        /// Module instance.
        node: NodeIndex,
        /// `true` opens the gate (note on), `false` closes it (note off).
        on: bool,
    },
    /// Set the engine's master gain (0..1), smoothed.
    EngineGain(f32),
    /// Play the built-in short test tone, mixed after the patch.
    TestTone,
}

/// Record kinds. Lockstep kinds go to every worker; control kinds address one worker.
mod kind {
    pub const SET_PARAM: u32 = 1;
    pub const GATE: u32 = 2;
    pub const ENGINE_GAIN: u32 = 3;
    pub const TEST_TONE: u32 = 4;
    pub const SNAPSHOT: u32 = 100;
    pub const DEBUG_CRASH: u32 = 101;
    pub const DEBUG_HANG: u32 = 102;
    pub const DEBUG_SLOW: u32 = 103;
}

/// Requests addressed to a single worker rather than to the lockstep stream.
///
/// They travel in the same ring (so they are ordered with the commands around them) but
/// never change the audio: a worker that acts on one renders exactly what it would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Write a snapshot of the engine state as it is at the start of block `block`
    /// into the snapshot area, tagged with `request`.
    Snapshot {
        /// Identifies the request, so a joining worker knows the snapshot is the one it waits for.
        request: u64,
        /// Block boundary at which the snapshot is taken.
        block: u64,
    },
    /// Fault injection: abort the worker process before rendering `block`.
    DebugCrash {
        /// Block at which to crash.
        block: u64,
    },
    /// Fault injection: stop making progress (sleep forever) before rendering `block`.
    DebugHang {
        /// Block at which to hang.
        block: u64,
    },
    /// Fault injection: add `micros` of busy delay to every block from `block` on.
    DebugSlow {
        /// First slowed block.
        block: u64,
        /// Extra time per block, in microseconds.
        micros: u32,
    },
}

/// What a worker finds in its command ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Instruction {
    /// A lockstep command taking effect at absolute `frame`.
    Stamped(StampedCommand),
    /// A request for this worker alone.
    Control(Control),
}

/// A command with the absolute frame at which it takes effect and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StampedCommand {
    /// Global sequence number, assigned by the output clock; strictly increasing.
    pub seq: u64,
    /// Absolute frame (sample index since the stream started) at which it takes effect.
    pub frame: u64,
    /// The command itself.
    pub command: Command,
}

/// Why a record from shared memory was not accepted. Workers count and skip these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record's kind is not one this build knows.
    #[error("unknown command record kind {0}")]
    UnknownKind(u32),
    /// A field held a value no encoder produces (e.g. a non-finite float).
    #[error("malformed command record of kind {0}")]
    Malformed(u32),
}

impl StampedCommand {
    /// Encodes into a ring record for slot `generation`.
    pub fn to_record(&self, generation: u32) -> CommandRecord {
        let mut payload = [0u64; 5];
        let kind = match self.command {
            Command::SetParam { node, param, value } => {
                payload[0] = u64::from(node);
                payload[1] = u64::from(param);
                payload[2] = u64::from(value.to_bits());
                kind::SET_PARAM
            }
            Command::Gate { node, on } => {
                payload[0] = u64::from(node);
                payload[1] = u64::from(on);
                kind::GATE
            }
            Command::EngineGain(gain) => {
                payload[0] = u64::from(gain.to_bits());
                kind::ENGINE_GAIN
            }
            Command::TestTone => kind::TEST_TONE,
        };
        CommandRecord {
            seq: self.seq,
            generation,
            kind,
            frame: self.frame,
            payload,
        }
    }
}

impl Control {
    /// Encodes into a ring record for slot `generation`, with sequence number `seq`.
    pub fn to_record(&self, seq: u64, generation: u32) -> CommandRecord {
        let mut payload = [0u64; 5];
        let (kind, frame) = match *self {
            Control::Snapshot { request, block } => {
                payload[0] = request;
                (kind::SNAPSHOT, block)
            }
            Control::DebugCrash { block } => (kind::DEBUG_CRASH, block),
            Control::DebugHang { block } => (kind::DEBUG_HANG, block),
            Control::DebugSlow { block, micros } => {
                payload[0] = u64::from(micros);
                (kind::DEBUG_SLOW, block)
            }
        };
        CommandRecord {
            seq,
            generation,
            kind,
            frame,
            payload,
        }
    }
}

impl Instruction {
    /// Decodes a record read from shared memory, checking every field: the bytes come
    /// from another process and are trusted no further than their bounds.
    pub fn from_record(record: &CommandRecord) -> Result<Instruction, RecordError> {
        let p = &record.payload;
        let small = |v: u64| u16::try_from(v).map_err(|_| RecordError::Malformed(record.kind));
        let float = |v: u64| {
            let f = u32::try_from(v)
                .map(f32::from_bits)
                .map_err(|_| RecordError::Malformed(record.kind))?;
            if f.is_finite() {
                Ok(f)
            } else {
                Err(RecordError::Malformed(record.kind))
            }
        };
        let stamped = |command| {
            Ok(Instruction::Stamped(StampedCommand {
                seq: record.seq,
                frame: record.frame,
                command,
            }))
        };
        match record.kind {
            kind::SET_PARAM => stamped(Command::SetParam {
                node: small(p[0])?,
                param: small(p[1])?,
                value: float(p[2])?,
            }),
            kind::GATE => stamped(Command::Gate {
                node: small(p[0])?,
                on: match p[1] {
                    0 => false,
                    1 => true,
                    _ => return Err(RecordError::Malformed(record.kind)),
                },
            }),
            kind::ENGINE_GAIN => stamped(Command::EngineGain(float(p[0])?)),
            kind::TEST_TONE => stamped(Command::TestTone),
            kind::SNAPSHOT => Ok(Instruction::Control(Control::Snapshot {
                request: p[0],
                block: record.frame,
            })),
            kind::DEBUG_CRASH => Ok(Instruction::Control(Control::DebugCrash {
                block: record.frame,
            })),
            kind::DEBUG_HANG => Ok(Instruction::Control(Control::DebugHang {
                block: record.frame,
            })),
            kind::DEBUG_SLOW => Ok(Instruction::Control(Control::DebugSlow {
                block: record.frame,
                micros: u32::try_from(p[0]).map_err(|_| RecordError::Malformed(record.kind))?,
            })),
            other => Err(RecordError::UnknownKind(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_records() {
        let commands = [
            Command::SetParam {
                node: 3,
                param: 1,
                value: 1234.5,
            },
            Command::Gate { node: 1, on: true },
            Command::Gate { node: 1, on: false },
            Command::EngineGain(0.25),
            Command::TestTone,
        ];
        for (i, command) in commands.into_iter().enumerate() {
            let stamped = StampedCommand {
                seq: i as u64 + 10,
                frame: 4096 + i as u64,
                command,
            };
            let record = stamped.to_record(7);
            assert_eq!(record.generation, 7);
            assert_eq!(
                Instruction::from_record(&record),
                Ok(Instruction::Stamped(stamped))
            );
        }
    }

    #[test]
    fn controls_round_trip_through_records() {
        let controls = [
            Control::Snapshot {
                request: 9,
                block: 100,
            },
            Control::DebugCrash { block: 5 },
            Control::DebugHang { block: 6 },
            Control::DebugSlow {
                block: 7,
                micros: 900,
            },
        ];
        for control in controls {
            let record = control.to_record(1, 2);
            assert_eq!(
                Instruction::from_record(&record),
                Ok(Instruction::Control(control))
            );
        }
    }

    #[test]
    fn garbage_records_are_refused() {
        let mut record = StampedCommand {
            seq: 1,
            frame: 0,
            command: Command::EngineGain(0.5),
        }
        .to_record(1);
        record.payload[0] = u64::from(f32::NAN.to_bits());
        assert!(Instruction::from_record(&record).is_err());
        record.kind = 9999;
        assert_eq!(
            Instruction::from_record(&record),
            Err(RecordError::UnknownKind(9999))
        );
        let mut gate = StampedCommand {
            seq: 1,
            frame: 0,
            command: Command::Gate { node: 0, on: true },
        }
        .to_record(1);
        gate.payload[1] = 2;
        assert!(Instruction::from_record(&gate).is_err());
    }
}
