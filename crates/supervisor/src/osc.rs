//! The OSC server: UDP in, validated requests to the output clock, replies out.
//!
//! Every datagram is decoded fully and every argument validated against the address
//! table before anything acts on it (a bundle is all or nothing). Engine commands go to
//! the output clock's lock-free queue to be stamped; questions (`/status`, `/metrics`,
//! `/version`) are answered here at once; bad input is answered with `/fail` and changes
//! nothing. Replies go to the sender's address.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chronus_engine::command::PATCH_CHUNK_BYTES;
use chronus_engine::{Command, PatchChunk};
use chronus_protocol::reply::ParamInfo;
use chronus_protocol::{reply, AddressTable, PatchEdit, Request, When};

use crate::patch_editor::PatchEditor;
use crate::transport::{Incoming, Replier, ReplyTo};

use crate::metrics::{Metrics, MetricsReport};
use crate::output::{Inbound, OutputShared};

/// Requests the OSC thread hands to the supervisor loop (not time-critical).
#[derive(Debug)]
pub enum ControlRequest {
    /// `/quit` from `reply_to`: stop, then answer `/done /quit`.
    Quit {
        /// Who asked.
        reply_to: ReplyTo,
    },
    /// A patch was committed and its switch queued for stamping: the supervisor needs
    /// its text (command log, cold restarts) and table (command log after the switch).
    PatchCommitted {
        /// Version stamped in the switch command.
        version: u32,
        /// TOML text.
        text: String,
        /// Address table of the new patch.
        table: AddressTable,
    },
}

/// What the OSC thread needs to do its job.
pub struct OscServer {
    /// Sends replies over UDP or TCP (shared with the supervisor's deferred replies).
    pub replier: Arc<Replier>,
    /// Packets from the UDP and TCP readers.
    pub packets: Receiver<Incoming>,
    /// The address table of the running patch (replaced on `/patch/commit`).
    pub table: AddressTable,
    /// The draft patch and the parameter values.
    pub editor: PatchEditor,
    /// Whether `/debug/*` exists (kept when the table is rebuilt).
    pub fault_injection: bool,
    /// The output clock's shared state.
    pub shared: Arc<OutputShared>,
    /// Latest report, refreshed by the supervisor loop.
    pub report: Arc<Mutex<MetricsReport>>,
    /// Set when the server is shutting down.
    pub stop: Arc<AtomicBool>,
    /// Requests for the supervisor loop.
    pub control: Sender<ControlRequest>,
}

impl OscServer {
    /// Serves until `stop` is set: handles every packet the transports deliver, in order.
    pub fn run(mut self) {
        while !self.stop.load(Ordering::Acquire) {
            match self.packets.recv_timeout(Duration::from_millis(50)) {
                Ok(packet) => self.handle_datagram(&packet.bytes, packet.from),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle_datagram(&mut self, bytes: &[u8], from: ReplyTo) {
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        let received_ns = self.shared.now_ns();
        let results = match chronus_protocol::decode_packet(&self.table, bytes) {
            Ok(results) => results,
            Err(error) => {
                Metrics::bump(&metrics.undecodable_packets);
                tracing::warn!(
                    "undecodable packet ({} bytes) from {from}: {error}",
                    bytes.len()
                );
                return;
            }
        };
        // A bundle is all or nothing: if the queue cannot take every command in it, refuse
        // every one rather than apply half.
        let wanted = results.iter().filter(|r| r.is_ok()).count();
        let room = self.shared.inbound.capacity() - self.shared.inbound.len();
        if wanted > room {
            for result in &results {
                let address = match result {
                    Ok(decoded) => decoded.address.as_str(),
                    Err(fail) => fail.address.as_str(),
                };
                Metrics::bump(&metrics.commands_rejected);
                self.send(
                    &reply::fail(
                        address,
                        "server busy: too many commands waiting; nothing applied",
                    ),
                    from,
                );
            }
            return;
        }
        for result in results {
            let decoded = match result {
                Ok(decoded) => decoded,
                Err(fail) => {
                    Metrics::bump(&metrics.commands_rejected);
                    tracing::info!("refused {} from {from}: {}", fail.address, fail.reason);
                    self.send(&reply::fail(&fail.address, &fail.reason), from);
                    continue;
                }
            };
            match decoded.request {
                Request::Engine(command) => {
                    self.editor.observe(&command);
                    let at_frame = match decoded.time {
                        When::Now => None,
                        When::At(time) => Some(self.frame_for(time)),
                    };
                    let item = Inbound::Command {
                        command,
                        received_ns,
                        at_frame,
                        reply_to: Some(from),
                    };
                    if self.shared.inbound.push(item).is_ok() {
                        Metrics::bump(&metrics.commands_received);
                    } else {
                        Metrics::bump(&metrics.commands_rejected);
                        self.send(
                            &reply::fail(
                                &decoded.address,
                                "server busy: too many commands waiting",
                            ),
                            from,
                        );
                    }
                }
                Request::Sync(id) => {
                    if self
                        .shared
                        .inbound
                        .push(Inbound::Sync { id, reply_to: from })
                        .is_err()
                    {
                        self.send(
                            &reply::fail("/sync", "server busy: too many commands waiting"),
                            from,
                        );
                    }
                }
                Request::Get {
                    address,
                    node,
                    param,
                } => {
                    let value = self.editor.value(node, param).unwrap_or(0.0);
                    self.send(&reply::get_reply(&address, value), from);
                }
                Request::Params { id, node } => {
                    let spec = self.editor.modules().get(usize::from(node)).map(|m| m.1);
                    let params: Vec<ParamInfo> = spec
                        .map(|spec| {
                            spec.params
                                .iter()
                                .enumerate()
                                .map(|(i, p)| {
                                    ParamInfo::from_spec(
                                        p,
                                        self.editor.value(node, i as u16).unwrap_or(p.default),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    self.send(&reply::params_reply(&id, &params), from);
                }
                Request::Patch(edit) => self.edit_patch(edit, &decoded.address, from),
                Request::Status => self.send(&self.status_reply(), from),
                Request::Metrics => self.send(&self.metrics_reply(), from),
                Request::Version => self.send(
                    &reply::version_reply(&chronus_protocol::VersionReply::this_build()),
                    from,
                ),
                Request::Quit => {
                    self.stop.store(true, Ordering::Release);
                    let _ = self.control.send(ControlRequest::Quit { reply_to: from });
                }
                Request::Fault { fault, slot } => {
                    let item = Inbound::Fault {
                        fault,
                        slot: slot.map(usize::from),
                    };
                    if self.shared.inbound.push(item).is_err() {
                        self.send(&reply::fail(&decoded.address, "server busy"), from);
                    }
                }
            }
        }
    }

    /// Applies a `/patch/…` edit and answers `/done` or `/fail`.
    fn edit_patch(&mut self, edit: PatchEdit, address: &str, from: ReplyTo) {
        let result = match edit {
            PatchEdit::Add { id, type_name } => self.editor.add(&id, &type_name),
            PatchEdit::Remove { id } => self.editor.remove(&id),
            PatchEdit::Connect { from, to } => self.editor.connect(&from, &to),
            PatchEdit::Disconnect { from, to } => self.editor.disconnect(&from, &to),
            PatchEdit::Set { id, param, value } => self.editor.set(&id, &param, value),
            PatchEdit::Revert => {
                self.editor.revert();
                Ok(())
            }
            PatchEdit::Dump => {
                self.send(&reply::patch_dump_reply(&self.editor.dump()), from);
                return;
            }
            PatchEdit::Commit => self.commit_patch(),
        };
        match result {
            Ok(()) => self.send(&reply::done(address), from),
            Err(reason) => {
                Metrics::bump(&self.shared.metrics.commands_rejected);
                tracing::info!("refused {address} from {from}: {reason}");
                self.send(&reply::fail(address, &reason), from);
            }
        }
    }

    /// Compiles the draft and queues its text and the switch for the output clock, all
    /// or nothing; from now on messages are decoded against the new patch's table.
    fn commit_patch(&mut self) -> Result<(), String> {
        let chunks_needed = self.editor.dump().len().div_ceil(PATCH_CHUNK_BYTES) + 1;
        let room = self.shared.inbound.capacity() - self.shared.inbound.len();
        if chunks_needed > room {
            return Err("server busy: too many commands waiting; try again".to_string());
        }
        let committed = self.editor.commit()?;
        let table = AddressTable::new(&committed.modules, self.fault_injection);
        let _ = self.control.send(ControlRequest::PatchCommitted {
            version: committed.version,
            text: committed.text.clone(),
            table: AddressTable::new(&committed.modules, self.fault_injection),
        });
        for chunk in PatchChunk::split(committed.version, committed.text.as_bytes()) {
            // Room was checked above and only this thread pushes commands.
            let _ = self.shared.inbound.push(Inbound::PatchChunk(chunk));
        }
        let switch = Inbound::Command {
            command: Command::SwitchPatch {
                version: committed.version,
                len: committed.text.len() as u32,
            },
            received_ns: self.shared.now_ns(),
            at_frame: None,
            reply_to: None,
        };
        let _ = self.shared.inbound.push(switch);
        Metrics::bump(&self.shared.metrics.commands_received);
        self.table = table;
        tracing::info!(
            "patch {} committed ({} modules)",
            committed.version,
            committed.modules.len()
        );
        Ok(())
    }

    /// The frame that plays at `time` (an OSC timetag), estimated from the clock now.
    fn frame_for(&self, time: rosc::OscTime) -> u64 {
        let now_frame =
            self.shared.played.load(Ordering::Acquire) * self.shared.block_frames as u64;
        match system_time_of(time).and_then(|wanted| wanted.duration_since(SystemTime::now()).ok())
        {
            Some(ahead) => {
                now_frame + (ahead.as_secs_f64() * f64::from(self.shared.sample_rate)) as u64
            }
            None => 0, // in the past: as soon as possible (counted late by the clock)
        }
    }

    fn status_reply(&self) -> Vec<u8> {
        let report = self.report.lock().map(|r| r.clone()).ok();
        let (avg, peak, voices) = report
            .map(|r| {
                (
                    r.worker_load_percent,
                    r.worker_load_peak_percent,
                    r.voices_sounding,
                )
            })
            .unwrap_or((0.0, 0.0, 0));
        reply::status_reply(&reply::StatusReply {
            modules: self.editor.modules().len() as i32,
            voices: voices as i32,
            groups: 1,
            patches: 1,
            avg_load: avg as f32,
            peak_load: peak as f32,
            nominal_sample_rate: f64::from(self.shared.sample_rate),
            actual_sample_rate: f64::from(self.shared.sample_rate),
        })
    }

    fn metrics_reply(&self) -> Vec<u8> {
        let pairs = self
            .report
            .lock()
            .map(|view| {
                let latency = self.shared.control_latency_ms();
                MetricsReport::live(&self.shared.metrics, latency, &view).to_pairs()
            })
            .unwrap_or_default();
        reply::metrics_reply(&pairs)
    }

    /// Sends an encoded reply; a failed send is logged, never fatal.
    pub fn send(&self, bytes: &[u8], to: ReplyTo) {
        self.replier.send(bytes, to);
    }
}

/// Seconds from the NTP era (1900), which OSC timetags count from, to the Unix epoch
/// (1970); RFC 5905.
const NTP_TO_UNIX_SECONDS: u32 = 2_208_988_800;

/// `time` as a `SystemTime`, or `None` if it lies before 1970. rosc's own conversion
/// panics there, and a client that writes Unix seconds into the timetag (a common bug) or
/// sends `(0, 2)` must get a late command, not a dead OSC thread and a deaf server.
fn system_time_of(time: rosc::OscTime) -> Option<SystemTime> {
    (time.seconds >= NTP_TO_UNIX_SECONDS).then(|| SystemTime::from(time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn timetags_before_1970_are_in_the_past_not_a_panic() {
        for seconds in [0, 1, 2, 1_700_000_000, NTP_TO_UNIX_SECONDS - 1] {
            for fractional in [0, 1, u32::MAX] {
                let time = rosc::OscTime {
                    seconds,
                    fractional,
                };
                assert_eq!(system_time_of(time), None, "{time:?}");
            }
        }
        let epoch = rosc::OscTime {
            seconds: NTP_TO_UNIX_SECONDS,
            fractional: 0,
        };
        assert_eq!(system_time_of(epoch), Some(UNIX_EPOCH));
        let last = rosc::OscTime {
            seconds: u32::MAX,
            fractional: u32::MAX,
        };
        assert!(system_time_of(last).is_some_and(|t| t > UNIX_EPOCH));
    }
}
