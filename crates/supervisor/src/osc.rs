//! The OSC server: UDP in, validated requests to the output clock, replies out.
//!
//! Every datagram is decoded fully and every argument validated against the address
//! table before anything acts on it (a bundle is all or nothing). Engine commands go to
//! the output clock's lock-free queue to be stamped; questions (`/status`, `/metrics`,
//! `/version`) are answered here at once; bad input is answered with `/fail` and changes
//! nothing. Replies go to the sender's address.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chronus_protocol::{reply, AddressTable, DebugRequest, Request, When};

use crate::metrics::{Metrics, MetricsReport};
use crate::output::{DebugAction, Inbound, OutputShared};

/// Requests the OSC thread hands to the supervisor loop (not time-critical).
#[derive(Debug)]
pub enum ControlRequest {
    /// `/quit` from `reply_to`: stop, then answer `/done /quit`.
    Quit {
        /// Who asked.
        reply_to: SocketAddr,
    },
}

/// What the OSC thread needs to do its job.
pub struct OscServer {
    /// The bound socket (also used by the supervisor to send deferred replies).
    pub socket: Arc<UdpSocket>,
    /// The address table of the running patch.
    pub table: Arc<AddressTable>,
    /// The output clock's shared state.
    pub shared: Arc<OutputShared>,
    /// Latest report, refreshed by the supervisor loop.
    pub report: Arc<Mutex<MetricsReport>>,
    /// Set when the server is shutting down.
    pub stop: Arc<AtomicBool>,
    /// Requests for the supervisor loop.
    pub control: Sender<ControlRequest>,
    /// Modules in the patch (for `/status`).
    pub module_count: usize,
}

impl OscServer {
    /// Serves until `stop` is set.
    pub fn run(self) {
        let _ = self
            .socket
            .set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = vec![0u8; 65_536];
        while !self.stop.load(Ordering::Acquire) {
            let (len, from) = match self.socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    tracing::warn!("OSC receive failed: {e}");
                    continue;
                }
            };
            self.handle_datagram(buf.get(..len).unwrap_or_default(), from);
        }
    }

    fn handle_datagram(&self, bytes: &[u8], from: SocketAddr) {
        let metrics = &self.shared.metrics;
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
                    let at_frame = match decoded.time {
                        When::Now => None,
                        When::At(time) => Some(self.frame_for(time)),
                    };
                    let item = Inbound::Command {
                        command,
                        received_ns,
                        at_frame,
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
                Request::Debug(debug) => {
                    let (slot, action) = match debug {
                        DebugRequest::Crash { slot } => (slot, DebugAction::Crash),
                        DebugRequest::Hang { slot } => (slot, DebugAction::Hang),
                        DebugRequest::Slow { micros, slot } => (slot, DebugAction::Slow(micros)),
                    };
                    let item = Inbound::Debug {
                        slot: slot.map(usize::from),
                        action,
                    };
                    if self.shared.inbound.push(item).is_err() {
                        self.send(&reply::fail(&decoded.address, "server busy"), from);
                    }
                }
            }
        }
    }

    /// The frame that plays at `time` (an OSC timetag), estimated from the clock now.
    fn frame_for(&self, time: rosc::OscTime) -> u64 {
        let now_frame =
            self.shared.played.load(Ordering::Acquire) * self.shared.block_frames as u64;
        let wanted = SystemTime::from(time);
        let now = SystemTime::now();
        match wanted.duration_since(now) {
            Ok(ahead) => {
                now_frame + (ahead.as_secs_f64() * f64::from(self.shared.sample_rate)) as u64
            }
            Err(_) => 0, // in the past: as soon as possible (counted late by the clock)
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
            modules: self.module_count as i32,
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
        let pairs = self.report.lock().map(|r| r.to_pairs()).unwrap_or_default();
        reply::metrics_reply(&pairs)
    }

    /// Sends an encoded reply; a failed send is logged, never fatal.
    pub fn send(&self, bytes: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(bytes, to) {
            tracing::debug!("reply to {to} failed: {e}");
        }
    }
}
