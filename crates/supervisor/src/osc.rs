//! The OSC server: UDP in, validated requests to the output clock, replies out.
//!
//! Every datagram is decoded fully and every argument validated against the address
//! table before anything acts on it (a bundle is all or nothing). Engine commands go to
//! the output clock's lock-free queue to be stamped; questions (`/status`, `/metrics`,
//! `/version`) are answered here at once; bad input is answered with `/fail` and changes
//! nothing. Replies go to the sender's address, without waiting (see
//! [`Replier`](crate::transport::Replier)); to a UDP client that is neither loopback nor
//! allow-listed, never more bytes than its packet had; and `/quit` and `/debug/*` are
//! taken only from loopback unless `--allow-remote-quit` (see
//! [`exposure`](crate::exposure)). A panic while handling a packet is caught with that
//! packet: it is answered with `/fail`, counted, and the next packet is handled.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chronus_engine::command::PATCH_CHUNK_BYTES;
use chronus_engine::{Command, PatchChunk, SwitchAt};
use chronus_protocol::reply::ParamInfo;
use chronus_protocol::table::midi::{MIDI_FORGET, MIDI_LEARN};
use chronus_protocol::table::PanicThread;
use chronus_protocol::table::MOD_PREFIX;
use chronus_protocol::{
    reply, AddressTable, Decoded, Fail, LibraryRequest, MidiRequest, PatchEdit, Request,
    TrackChange, When,
};

use crate::exposure::{Exposure, ReplyBudget, ReplyDecision};
use crate::library::Library;
use crate::patch_editor::{CommittedPatch, PatchEditor};
use crate::transport::{Incoming, Replier, ReplyTo};

use crate::log_limit::{self, escaped};
use crate::metrics::Metrics;
use crate::notify::{NotifyEvent, NotifySender};
use crate::output::{Inbound, OutputShared};
use crate::report::Reporter;

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
    /// `/debug/panic 2|3`: make the recorder's or the command log writer's thread panic,
    /// then answer `reply_to`.
    DebugPanic {
        /// Which thread ([`PanicThread::Recorder`] or [`PanicThread::CommandLog`]).
        thread: PanicThread,
        /// Who asked.
        reply_to: ReplyTo,
    },
    /// `/debug/spare_dies <point>`: the next spare the supervisor spawns dies at `point`.
    SpareDies {
        /// Where.
        point: chronus_engine::JoinPoint,
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
    /// Who may do what, and what may go back over UDP.
    pub exposure: Arc<Exposure>,
    /// What may still be sent for the packet being handled (set for each packet).
    pub reply_budget: ReplyBudget,
    /// The output clock's shared state.
    pub shared: Arc<OutputShared>,
    /// Builds `/metrics` and `/status` answers here, off the real-time loops (shared with
    /// the notify thread's `metrics` pushes).
    pub reporter: Arc<Mutex<Reporter>>,
    /// Subscriptions and parameter changes for the notify thread.
    pub notify: NotifySender,
    /// `/dumpOSC 1`: log every incoming message.
    pub dump_osc: bool,
    /// Set when the server is shutting down.
    pub stop: Arc<AtomicBool>,
    /// Requests for the supervisor loop.
    pub control: Sender<ControlRequest>,
    /// The address of the message being handled, for the `/fail` of a panic.
    pub handling: Option<String>,
    /// `/debug/panic 1` asked this thread to die (outside the per-packet guard).
    pub die: bool,
    /// Committed patches for the command log's writer (`None`: no `--command-log`).
    pub command_log: Option<crate::command_log::PatchSender>,
    /// Patches saved by name and the presets (`/library/…`).
    pub library: Library,
    /// A `/midi/learn` waiting for a controller to move: the parameter's address and who
    /// asked.
    pub learning: Option<(String, ReplyTo)>,
}

impl OscServer {
    /// Serves until `stop` is set: handles every packet the transports deliver, in order.
    pub fn run(mut self) {
        while !self.stop.load(Ordering::Acquire) {
            match self.packets.recv_timeout(crate::transport::POLL) {
                Ok(packet) => self.handle_guarded(&packet),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.die {
                panic!("/debug/panic 1: the OSC thread dies, as a bug outside packet handling would make it");
            }
            log_limit::summarise_past_seconds();
        }
    }

    /// Handles one packet; a panic inside is caught here, so a packet that trips a bug
    /// costs its own answer, never the thread: the message being handled gets `/fail`,
    /// the panic is counted in `handler_panics` and logged, and the server goes on.
    fn handle_guarded(&mut self, packet: &Incoming) {
        self.handling = None;
        let udp_peer = match packet.from {
            ReplyTo::Udp(addr) => Some(addr.ip()),
            ReplyTo::Tcp(_) => None,
        };
        self.reply_budget = self.exposure.reply_budget(udp_peer, packet.bytes.len());
        let unaccounted_before = unaccounted(&self.shared.metrics);
        let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.handle_datagram(&packet.bytes, packet.from, packet.peer);
        }));
        let Err(panic) = handled else {
            return;
        };
        Metrics::bump(&self.shared.metrics.handler_panics);
        // The message that panicked and the rest of its packet were received but neither
        // accepted nor rejected: they are rejected now, so the accounting stays exact.
        let lost = unaccounted(&self.shared.metrics).saturating_sub(unaccounted_before);
        self.shared
            .metrics
            .commands_rejected_panic
            .fetch_add(lost, Ordering::Relaxed);
        let what = log_limit::panic_message(&*panic);
        if log_limit::PANICS.allow() {
            tracing::error!(
                "OSC: handling a packet from {} panicked ({}); answered /fail, serving on",
                packet.from,
                escaped(what)
            );
        }
        if let Some(address) = self.handling.take() {
            let reason = "the server failed while handling this message (a bug; logged and counted); the rest of its packet was dropped";
            self.send(&reply::fail(&address, reason), packet.from);
        }
    }

    pub(crate) fn handle_datagram(&mut self, bytes: &[u8], from: ReplyTo, peer: std::net::IpAddr) {
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        let received_ns = self.shared.now_ns();
        if self.dump_osc && log_limit::DUMP_OSC.allow() {
            tracing::info!("dumpOSC: {from}: {}", escaped(&dump_text(bytes)));
        }
        // Command accounting (see `commands_received` in metrics.rs): every message counts
        // as received here, then exactly once as accepted or rejected below.
        let results = match chronus_protocol::decode_packet(&self.table, bytes) {
            Ok(results) => results,
            Err(error) => {
                Metrics::bump(&metrics.commands_received);
                Metrics::bump(&metrics.commands_rejected_undecodable);
                if log_limit::UNDECODABLE.allow() {
                    tracing::warn!(
                        "undecodable packet ({} bytes) from {from}: {}",
                        bytes.len(),
                        escaped(&error.to_string())
                    );
                }
                // A bundle is recognisable however deep it goes: say why nothing of it
                // was taken (other bytes that are not OSC have no address to answer).
                if error == chronus_protocol::PacketError::TooDeep {
                    self.send(
                        &reply::fail("#bundle", &format!("{error}: nothing in it was applied")),
                        from,
                    );
                }
                return;
            }
        };
        // A bundle is all or nothing: if it cannot be taken whole, refuse every message
        // in it rather than apply half, once per message as sent (a pattern's matches are
        // one message).
        if let Some((refusal, reason)) = self.whole_packet_refusal(&results, peer) {
            let sent = addresses_as_sent(&results);
            metrics
                .commands_received
                .fetch_add(sent.len() as u64, Ordering::Relaxed);
            for address in sent {
                Metrics::bump(refusal.counter(metrics));
                if refusal == Refusal::NotPermitted && log_limit::REFUSED.allow() {
                    tracing::warn!("refused {} from {peer}: {reason}", escaped(address));
                }
                self.handling = Some(address.to_string());
                self.send(&reply::fail(address, &reason), from);
            }
            return;
        }
        metrics
            .commands_received
            .fetch_add(results.len() as u64, Ordering::Relaxed);
        for result in results {
            let decoded = match result {
                Ok(decoded) => decoded,
                Err(fail) => {
                    Metrics::bump(&metrics.commands_rejected_invalid);
                    self.handling = Some(fail.address.clone());
                    if log_limit::REFUSED.allow() {
                        tracing::info!(
                            "refused {} from {from}: {}",
                            escaped(&fail.address),
                            escaped(&fail.reason)
                        );
                    }
                    self.send(&reply::fail(&fail.address, &fail.reason), from);
                    continue;
                }
            };
            self.handling = Some(decoded.address.clone());
            match decoded.request {
                Request::Engine(command) => {
                    self.queue_command(command, decoded.time, received_ns, &decoded.address, from);
                }
                Request::Midi(MidiRequest::Learn { address }) => {
                    // Accepted now, applied by the engine as the switch that maps it (or
                    // answered with `/fail` when it cannot map or is replaced).
                    Metrics::bump(&metrics.commands_accepted);
                    tracing::info!("learning: the next controller moved maps to {address}");
                    if let Some((earlier, learner)) = self.learning.replace((address, from)) {
                        Metrics::bump(&metrics.commands_answered);
                        let why = format!("{earlier}: replaced by a later /midi/learn");
                        self.send(&reply::fail(MIDI_LEARN, &why), learner);
                    }
                }
                Request::Midi(MidiRequest::Forget { controller }) => {
                    let forgotten = self
                        .room_for(self.editor.dump().len())
                        .and_then(|()| self.editor.unmap_controller(controller))
                        .map(|committed| {
                            tracing::info!(
                                "controller {controller} mapped to nothing (patch {})",
                                committed.version
                            );
                            self.send_patch(committed, SwitchAt::TracksAtBeat);
                            reply::done(MIDI_FORGET)
                        });
                    // Applied by the engine, as the switch without the mapping.
                    self.answer_edit(forgotten, true, MIDI_FORGET, from);
                }
                Request::Midi(MidiRequest::Cc {
                    channel,
                    controller,
                    value,
                }) => {
                    let time = decoded.time;
                    self.controller_moved(channel, controller, value, time, received_ns, from);
                }
                Request::Sync(id) => {
                    // Applied when the output clock reaches it (`commands_applied.answered`).
                    if self
                        .shared
                        .inbound
                        .push(Inbound::Sync { id, reply_to: from })
                        .is_ok()
                    {
                        Metrics::bump(&metrics.commands_accepted);
                    } else {
                        Metrics::bump(&metrics.commands_rejected_busy);
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
                    answered(metrics);
                    let value = self
                        .editor
                        .value_at(node, param, Instant::now())
                        .unwrap_or(0.0);
                    self.send(&reply::get_reply(&address, value), from);
                }
                Request::Params { id, node } => {
                    answered(metrics);
                    let spec = self.editor.modules().get(usize::from(node)).map(|m| m.1);
                    let params: Vec<ParamInfo> = spec
                        .map(|spec| {
                            spec.params
                                .iter()
                                .enumerate()
                                .map(|(i, p)| {
                                    ParamInfo::from_spec(
                                        p,
                                        self.editor
                                            .value_at(node, i as u16, Instant::now())
                                            .unwrap_or(p.default),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    self.send(&reply::params_reply(&id, &params), from);
                }
                // A track edit carries the whole running patch; timed for later, it would
                // undo the edits sent after it once it lands: refused, with the reason.
                Request::Patch(PatchEdit::Track { .. }) if matches!(decoded.time, When::At(_)) => {
                    Metrics::bump(&metrics.commands_rejected_patch_edit);
                    let reason = "a track edit is not timed: it lands on the next bar line (or beat) after it arrives; send it outside a timed bundle";
                    self.send(&reply::fail(&decoded.address, reason), from);
                }
                Request::Patch(edit) => self.edit_patch(edit, &decoded.address, from),
                Request::Library(request) => self.library_request(request, &decoded.address, from),
                Request::Status => {
                    answered(metrics);
                    let reply = self.status_reply();
                    self.send(&reply, from);
                }
                Request::Metrics => {
                    // Counted before the reply is built, so the reply includes itself.
                    answered(metrics);
                    let reply = self.metrics_reply();
                    self.send(&reply, from);
                }
                Request::Version => {
                    answered(metrics);
                    // The git branch and commit this server was built from (build.rs).
                    let version = chronus_protocol::VersionReply {
                        branch: env!("CHRONUS_GIT_BRANCH").to_string(),
                        commit: env!("CHRONUS_GIT_COMMIT").to_string(),
                        ..chronus_protocol::VersionReply::this_build()
                    };
                    self.send(&reply::version_reply(&version), from);
                }
                Request::Table => {
                    answered(metrics);
                    self.send(&reply::table_reply(&self.table), from);
                }
                Request::Notify(_) if matches!(from, ReplyTo::Udp(addr) if !self.exposure.may_push_udp(addr)) =>
                {
                    // Refused here, under this packet's reply budget: the notify thread's
                    // answers are not held to the request's size.
                    Metrics::bump(&metrics.commands_rejected_not_permitted);
                    self.send(
                        &reply::fail(
                            &decoded.address,
                            "use TCP (UDP pushes go to loopback and --allow'ed clients only)",
                        ),
                        from,
                    );
                }
                Request::Notify(subscription) => {
                    let event = match subscription {
                        Some(subscription) => NotifyEvent::Subscribe { from, subscription },
                        None => NotifyEvent::Unsubscribe { from },
                    };
                    // Answered by the notify thread, once the table changed.
                    if self.notify.send(event) {
                        answered(metrics);
                    } else {
                        Metrics::bump(&metrics.commands_rejected_busy);
                        self.send(
                            &reply::fail(&decoded.address, "server busy: try again"),
                            from,
                        );
                    }
                }
                Request::DumpOsc(on) => {
                    answered(metrics);
                    self.dump_osc = on;
                    tracing::info!(
                        "dumpOSC {} (asked by {from})",
                        if on {
                            "on: logging every incoming message"
                        } else {
                            "off"
                        }
                    );
                    self.send(&reply::done(&decoded.address), from);
                }
                Request::Quit => {
                    answered(metrics);
                    self.stop.store(true, Ordering::Release);
                    let _ = self.control.send(ControlRequest::Quit { reply_to: from });
                    self.shared.wake.signal();
                }
                Request::DebugPanic { thread } => match thread {
                    PanicThread::Handler => {
                        panic!("/debug/panic: a panic injected while handling a packet");
                    }
                    PanicThread::Osc => {
                        answered(metrics);
                        self.die = true;
                    }
                    PanicThread::Notify => {
                        answered(metrics);
                        let event = NotifyEvent::DebugPanic { reply_to: from };
                        if !self.notify.send(event) {
                            self.send(&reply::fail(&decoded.address, "server busy"), from);
                        }
                    }
                    PanicThread::Recorder | PanicThread::CommandLog => {
                        // The supervisor owns those threads: it answers.
                        answered(metrics);
                        let request = ControlRequest::DebugPanic {
                            thread,
                            reply_to: from,
                        };
                        let _ = self.control.send(request);
                        self.shared.wake.signal();
                    }
                },
                Request::SpareDies { point } => {
                    answered(metrics);
                    let _ = self.control.send(ControlRequest::SpareDies { point });
                    self.shared.wake.signal();
                    self.send(&reply::done(&decoded.address), from);
                }
                Request::Fault { fault, slot } => {
                    let item = Inbound::Fault {
                        fault,
                        slot: slot.map(usize::from),
                    };
                    // Applied when the output clock hands it to the worker.
                    if self.shared.inbound.push(item).is_ok() {
                        Metrics::bump(&metrics.commands_accepted);
                    } else {
                        Metrics::bump(&metrics.commands_rejected_busy);
                        self.send(&reply::fail(&decoded.address, "server busy"), from);
                    }
                }
            }
        }
    }

    /// Why a packet must be refused as a whole, if it must: it holds `/quit` or
    /// `/debug/*` from a `peer` not permitted to send them, the queue cannot take all its
    /// commands, or it is timed more than [`MAX_AHEAD`] ahead (surely a client's wrong
    /// clock or epoch, and a frame too far to compute safely).
    fn whole_packet_refusal(
        &self,
        results: &[Result<Decoded, Fail>],
        peer: std::net::IpAddr,
    ) -> Option<(Refusal, String)> {
        let privileged = results.iter().flatten().any(|decoded| {
            matches!(
                decoded.request,
                Request::Quit
                    | Request::Fault { .. }
                    | Request::DebugPanic { .. }
                    | Request::SpareDies { .. }
                    | Request::DumpOsc(_)
            )
        });
        if privileged && !self.exposure.may_quit_or_inject(peer) {
            return Some((
                Refusal::NotPermitted,
                "/quit, /dumpOSC and /debug/* are taken only from loopback (the server's --allow-remote-quit takes them from any allowed client); nothing applied".to_string(),
            ));
        }
        let wanted = results.iter().filter(|r| r.is_ok()).count();
        let room = self.shared.inbound.capacity() - self.shared.inbound.len();
        if wanted > room {
            return Some((
                Refusal::Busy,
                "server busy: too many commands waiting; nothing applied".to_string(),
            ));
        }
        let now = SystemTime::now();
        results.iter().flatten().find_map(|decoded| match decoded.time {
            When::At(time) => ahead_of(time, now)
                .filter(|&ahead| ahead > MAX_AHEAD)
                .map(|ahead| {
                    (Refusal::Invalid, format!(
                        "the bundle is timed {:.1} s ahead; at most {} s ahead is taken (is the client's clock or epoch right?); nothing applied",
                        ahead.as_secs_f64(),
                        MAX_AHEAD.as_secs()
                    ))
                }),
            When::Now => None,
        })
    }

    /// Applies a `/patch/…` edit and answers `/done` or `/fail`. A commit is applied by
    /// the engine (its patch switch); every other edit when it is answered.
    fn edit_patch(&mut self, edit: PatchEdit, address: &str, from: ReplyTo) {
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        let applied_by_engine = matches!(edit, PatchEdit::Commit | PatchEdit::Track { .. });
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
                answered(metrics);
                self.send(&reply::patch_dump_reply(&self.editor.dump()), from);
                return;
            }
            PatchEdit::Commit => self.commit_patch(),
            PatchEdit::Track { track, change, at } => self.edit_track(&track, &change, at),
        };
        let answer = result.map(|()| reply::done(address));
        self.answer_edit(answer, applied_by_engine, address, from);
    }

    /// Answers a request the OSC thread carried out on the patch (an edit, a library
    /// request, a MIDI mapping): `answer`, counted accepted (and answered, unless the
    /// engine applies it as the patch switch it queued), or `/fail` with the reason,
    /// counted a refused edit and logged.
    fn answer_edit(
        &mut self,
        answer: Result<Vec<u8>, String>,
        applied_by_engine: bool,
        address: &str,
        from: ReplyTo,
    ) {
        let metrics = &self.shared.metrics;
        match answer {
            Ok(answer) => {
                Metrics::bump(&metrics.commands_accepted);
                if !applied_by_engine {
                    Metrics::bump(&metrics.commands_answered);
                }
                self.send(&answer, from);
            }
            Err(reason) => {
                Metrics::bump(&metrics.commands_rejected_patch_edit);
                if log_limit::REFUSED.allow() {
                    tracing::info!(
                        "refused {} from {from}: {}",
                        escaped(address),
                        escaped(&reason)
                    );
                }
                self.send(&reply::fail(address, &reason), from);
            }
        }
    }

    /// Compiles the draft and queues its text and the switch for the output clock, all
    /// or nothing; from now on messages are decoded against the new patch's table.
    fn commit_patch(&mut self) -> Result<(), String> {
        self.room_for(self.editor.dump().len())?;
        let committed = self.editor.commit()?;
        self.send_patch(committed, SwitchAt::Now);
        Ok(())
    }

    /// A live edit of a track: the running patch with the track changed, sent as a
    /// tracks switch (the engines apply it on the next bar line or beat; the sound plays
    /// on), the same way as a commit otherwise.
    fn edit_track(
        &mut self,
        track: &str,
        change: &TrackChange,
        at: SwitchAt,
    ) -> Result<(), String> {
        // The text grows by the change at most (quoted, twice its length).
        let grows = match change {
            TrackChange::Pattern(text) | TrackChange::Instrument(text) => 2 * text.len(),
            TrackChange::Bars(_) => 4,
        };
        self.room_for(self.editor.dump().len() + grows)?;
        let committed = self.editor.edit_track(track, change)?;
        tracing::info!(
            "track {track} edited ({}): patch {}",
            match at {
                SwitchAt::TracksAtBeat => "on the next beat",
                _ => "on the next bar line",
            },
            committed.version
        );
        self.send_patch(committed, at);
        Ok(())
    }

    /// Queues an engine command for stamping (at the frame of `time`, when timed) and
    /// follows it in the editor, or answers `/fail` when the queue is full.
    fn queue_command(
        &mut self,
        command: Command,
        time: When,
        received_ns: u64,
        address: &str,
        from: ReplyTo,
    ) {
        let (at_frame, at) = match time {
            When::Now => (None, Instant::now()),
            When::At(time) => {
                let (frame, ahead) = self.frame_for(time);
                (Some(frame), Instant::now() + ahead)
            }
        };
        self.editor.observe(&command, at);
        let item = Inbound::Command {
            command,
            received_ns,
            at_frame,
            reply_to: Some(from),
        };
        let metrics = &self.shared.metrics;
        if self.shared.inbound.push(item).is_ok() {
            Metrics::bump(&metrics.commands_accepted);
            self.report_param_change(&command);
        } else {
            Metrics::bump(&metrics.commands_rejected_busy);
            self.send(
                &reply::fail(address, "server busy: too many commands waiting"),
                from,
            );
        }
    }

    /// `/midi/cc`: maps the controller first if a `/midi/learn` waits, then sets the
    /// parameter the running patch maps it to (if any) as its `/mod` would, at `time`.
    fn controller_moved(
        &mut self,
        channel: u8,
        controller: u8,
        value: f32,
        time: When,
        received_ns: u64,
        from: ReplyTo,
    ) {
        if let Some((address, learner)) = self.learning.take() {
            self.learn(&address, channel, controller, learner);
        }
        let target = self
            .editor
            .midi_mapping(channel, controller)
            .and_then(|mapping| {
                let (id, param) = mapping.target()?;
                let address = format!("{MOD_PREFIX}{id}/{param}");
                let (node, index) = self.table.param_at(&address)?;
                let spec = self.editor.modules().get(usize::from(node))?.1;
                let value = mapping.value_for(spec.params.get(usize::from(index))?, value);
                Some((address, node, index, value))
            });
        match target {
            Some((address, node, param, value)) => {
                let command = Command::SetParam { node, param, value };
                self.queue_command(command, time, received_ns, &address, from);
            }
            // A controller mapped to nothing changes nothing.
            None => answered(&self.shared.metrics),
        }
    }

    /// Maps controller `controller` of `channel` to the parameter at `address` (a
    /// `/mod/<id>/<param>`) in the running patch, sent as a switch that changes neither
    /// sound nor tracks (it lands with any track edit waiting), and answers the learner.
    fn learn(&mut self, address: &str, channel: u8, controller: u8, learner: ReplyTo) {
        let param = address
            .strip_prefix(MOD_PREFIX)
            .and_then(|rest| rest.rsplit_once('/'))
            .map(|(id, param)| format!("{id}.{param}"))
            .unwrap_or_default();
        let mapped = self
            .room_for(self.editor.dump().len() + param.len() + 64)
            .and_then(|()| self.editor.map_controller(channel, controller, &param));
        match mapped {
            Ok(committed) => {
                tracing::info!(
                    "learned: controller {controller} of channel {channel} moves {address} (patch {})",
                    committed.version
                );
                self.send_patch(committed, SwitchAt::TracksAtBeat);
                self.send(&reply::learned(address, channel, controller), learner);
            }
            Err(reason) => {
                Metrics::bump(&self.shared.metrics.commands_answered);
                self.send(&reply::fail(MIDI_LEARN, &reason), learner);
            }
        }
    }

    /// Whether the queue to the output clock has room for a patch text of `len` bytes in
    /// chunks and its switch.
    fn room_for(&self, len: usize) -> Result<(), String> {
        let chunks_needed = len.div_ceil(PATCH_CHUNK_BYTES) + 1;
        let room = self.shared.inbound.capacity() - self.shared.inbound.len();
        if chunks_needed > room {
            return Err("server busy: too many commands waiting; try again".to_string());
        }
        Ok(())
    }

    /// Answers a `/library/…` request, `/done` (a load, when its switch is queued) or the
    /// list, or `/fail` with the reason, the running patch playing on. A load is applied
    /// by the engine, as a commit is; a save and a list when answered.
    fn library_request(&mut self, request: LibraryRequest, address: &str, from: ReplyTo) {
        let applied_by_engine = matches!(request, LibraryRequest::Load(_));
        let result = match request {
            LibraryRequest::List => self.library.list().map(|patches| {
                let listed: Vec<(String, &str)> = patches
                    .into_iter()
                    .map(|(name, kind)| (name, kind.name()))
                    .collect();
                reply::library_list_reply(&listed)
            }),
            LibraryRequest::Save(name) => {
                let text = saved_patch_text(&self.editor.running(), &name);
                self.library.save(&name, &text).map(|path| {
                    tracing::info!("patch saved as '{name}' in {}", path.display());
                    reply::done(address)
                })
            }
            LibraryRequest::Load(name) => {
                self.load_from_library(&name).map(|()| reply::done(address))
            }
        };
        self.answer_edit(result, applied_by_engine, address, from);
    }

    /// Switches to patch `name` of the library the way a commit switches to a draft:
    /// all or nothing, the same switch in lockstep, logged as the patch's text.
    fn load_from_library(&mut self, name: &str) -> Result<(), String> {
        let (text, kind) = self.library.read(name)?;
        let desc = chronus_dsp::PatchDesc::from_toml_str(&text)
            .map_err(|e| format!("{} patch '{name}': {e}", kind.name()))?;
        self.room_for(desc.to_toml_string().len())?;
        let committed = self
            .editor
            .load(desc)
            .map_err(|e| format!("{} patch '{name}': {e}", kind.name()))?;
        tracing::info!(
            "loading {} patch '{name}' as patch {}",
            kind.name(),
            committed.version
        );
        self.send_patch(committed, SwitchAt::Now);
        Ok(())
    }

    /// Queues the text of `committed` and its switch for the output clock (room was
    /// checked): from now on messages are decoded against its table.
    fn send_patch(&mut self, committed: CommittedPatch, at: SwitchAt) {
        let table = AddressTable::new(&committed.modules, self.fault_injection);
        let _ = self.control.send(ControlRequest::PatchCommitted {
            version: committed.version,
            text: committed.text.clone(),
            table: AddressTable::new(&committed.modules, self.fault_injection),
        });
        // Before the switch is queued: the log's writer has the text when it meets it.
        if let Some(log) = &self.command_log {
            let _ = log.send(crate::command_log::CommittedPatch {
                version: committed.version,
                text: committed.text.clone(),
                table: AddressTable::new(&committed.modules, self.fault_injection),
            });
        }
        self.shared.wake.signal();
        for chunk in PatchChunk::split(committed.version, committed.text.as_bytes()) {
            // Room was checked above and only this thread pushes commands.
            let _ = self.shared.inbound.push(Inbound::PatchChunk(chunk));
        }
        let switch = Inbound::Command {
            command: Command::SwitchPatch {
                version: committed.version,
                len: committed.text.len() as u32,
                at,
            },
            received_ns: self.shared.now_ns(),
            at_frame: None,
            reply_to: None,
        };
        let _ = self.shared.inbound.push(switch);
        self.table = table;
        tracing::info!(
            "patch {} committed ({} modules)",
            committed.version,
            committed.modules.len()
        );
    }

    /// The frame the output hands over at `time` (an OSC timetag): the clock model's line
    /// at that moment, so bundles timed 100 ms apart land 4,800 frames apart whenever they
    /// were sent. Before the output's first period, an estimate from the blocks played.
    /// Packets timed beyond [`MAX_AHEAD`] were refused before; the bound is kept here too,
    /// so the frame stays far from overflowing whatever the timetag. Also how far ahead
    /// `time` is (zero if it has passed), for the editor's view of parameters.
    fn frame_for(&self, time: rosc::OscTime) -> (u64, Duration) {
        let (system, monotonic_ns) = self.clock_pair();
        let Some(ahead) = ahead_of(time, system) else {
            // In the past: as soon as possible (counted late by the clock).
            return (0, Duration::ZERO);
        };
        let ahead = ahead.min(MAX_AHEAD);
        let frame = match self.shared.clock.mapping() {
            Some(line) => line.frame_at(monotonic_ns as f64 + ahead.as_nanos() as f64),
            None => {
                let played = self.shared.played.load(Ordering::Acquire);
                let ahead_frames = ahead.as_secs_f64() * f64::from(self.shared.sample_rate);
                played * self.shared.block_frames as u64 + ahead_frames as u64
            }
        };
        (frame, ahead)
    }

    /// The system clock (which timetags name) and the monotonic clock (which the clock
    /// model's line is drawn in) read at one moment: each pair is bracketed by two
    /// monotonic reads and read again, up to a few times, while the bracket is wider than
    /// [`CLOCK_PAIR_NS`]. A thread preempted between the two reads (a loaded machine, the
    /// real-time workers taking both cores) would otherwise misplace a timetag by as long
    /// as it waited: 62 µs are 3 frames.
    fn clock_pair(&self) -> (SystemTime, u64) {
        let mut best: Option<(u64, SystemTime, u64)> = None;
        for _ in 0..CLOCK_PAIR_TRIES {
            let before = self.shared.now_ns();
            let system = SystemTime::now();
            let after = self.shared.now_ns();
            let width = after.saturating_sub(before);
            if best.is_none_or(|(narrowest, ..)| width < narrowest) {
                best = Some((width, system, before + width / 2));
            }
            if width <= CLOCK_PAIR_NS {
                break;
            }
        }
        best.map_or_else(
            || (SystemTime::now(), self.shared.now_ns()),
            |(_, system, monotonic)| (system, monotonic),
        )
    }

    /// Tells the notify thread about an accepted parameter change (`params` topic), when
    /// someone subscribes to it: a set of `/mod/…` or `/engine/gain`, or a `/ramp`.
    fn report_param_change(&self, command: &Command) {
        if !self
            .notify
            .wanted()
            .contains(chronus_protocol::Topic::Params)
        {
            return;
        }
        let (address, value, seconds) = match *command {
            Command::SetParam { node, param, value } => {
                (self.table.param_address(node, param), value, None)
            }
            Command::Ramp {
                node,
                param,
                target,
                seconds,
            } => (self.table.param_address(node, param), target, Some(seconds)),
            Command::EngineGain(gain) => (Some(chronus_protocol::table::ENGINE_GAIN), gain, None),
            _ => return,
        };
        if let Some(address) = address {
            self.notify.send(NotifyEvent::Param {
                address: address.to_string(),
                value,
                seconds,
            });
        }
    }

    fn report(&self) -> crate::metrics::MetricsReport {
        self.reporter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .build()
    }

    fn status_reply(&mut self) -> Vec<u8> {
        let report = self.report();
        let (avg, peak, voices) = (
            report.worker_load_percent,
            report.worker_load_peak_percent,
            report.voices_sounding,
        );
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

    fn metrics_reply(&mut self) -> Vec<u8> {
        reply::metrics_reply(&self.report().to_pairs())
    }

    /// Sends an encoded reply; a failed send is logged, never fatal. Over UDP, within the
    /// packet's [`ReplyBudget`]: a reply that does not fit becomes one short `/fail`
    /// naming the message being answered and saying to ask over TCP (counted in
    /// `replies_refused_amplification`, as is every reply left out after it).
    pub fn send(&mut self, bytes: &[u8], to: ReplyTo) {
        let decision = match to {
            ReplyTo::Udp(_) => self.reply_budget.decide(bytes.len()),
            ReplyTo::Tcp(_) => ReplyDecision::Send,
        };
        match decision {
            ReplyDecision::Send => self.replier.send(bytes, to),
            ReplyDecision::Refuse => {
                Metrics::bump(&self.shared.metrics.replies_refused_amplification);
                if log_limit::REFUSED.allow() {
                    tracing::info!(
                        "a {}-byte reply to {to} not sent: larger than its request and the client is not allowed (--allow); told to use TCP",
                        bytes.len()
                    );
                }
                let address = self.handling.as_deref().unwrap_or("#bundle");
                self.replier
                    .send(&reply::fail(address, crate::exposure::USE_TCP), to);
            }
            ReplyDecision::Drop => {
                Metrics::bump(&self.shared.metrics.replies_refused_amplification);
            }
        }
    }
}

/// A packet as `/dumpOSC` logs it: each message's address and arguments, strings quoted,
/// a bundle's messages separated by `; ` (the caller escapes it).
fn dump_text(bytes: &[u8]) -> String {
    fn message(packet: &rosc::OscPacket, out: &mut Vec<String>) {
        match packet {
            rosc::OscPacket::Message(msg) => {
                let mut text = msg.addr.clone();
                for arg in &msg.args {
                    let shown = match arg {
                        // Quoted as is: the log line escapes the whole text once.
                        rosc::OscType::String(s) => format!("\"{s}\""),
                        rosc::OscType::Int(v) => v.to_string(),
                        rosc::OscType::Long(v) => v.to_string(),
                        rosc::OscType::Float(v) => v.to_string(),
                        rosc::OscType::Double(v) => v.to_string(),
                        rosc::OscType::Bool(v) => v.to_string(),
                        other => format!("{other:?}"),
                    };
                    text.push(' ');
                    text.push_str(&shown);
                }
                out.push(text);
            }
            rosc::OscPacket::Bundle(bundle) => {
                for inner in &bundle.content {
                    message(inner, out);
                }
            }
        }
    }
    match chronus_protocol::parse_packet(bytes) {
        Ok(packet) => {
            let mut messages = Vec::new();
            message(&packet, &mut messages);
            messages.join("; ")
        }
        Err(error) => format!("({} bytes: {error})", bytes.len()),
    }
}

/// The TOML of a patch saved as `name`: a line saying what it is, then the patch.
fn saved_patch_text(patch: &chronus_dsp::PatchDesc, name: &str) -> String {
    format!(
        "# Patch '{name}', saved by /library/save: the patch as it played, with its parameters, tempo and tracks.\n{}",
        patch.to_toml_string()
    )
}

/// Commands received but not yet accepted or rejected. Only this thread moves these
/// counters, so between packets it is constant.
fn unaccounted(metrics: &Metrics) -> u64 {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    load(&metrics.commands_received)
        .saturating_sub(load(&metrics.commands_accepted) + commands_rejected(metrics))
}

/// The address of each message of a packet as its client sent it, in order: the matches
/// of one address pattern (adjacent, sharing their message's position) are its pattern,
/// once.
fn addresses_as_sent(results: &[Result<Decoded, Fail>]) -> Vec<&str> {
    let mut sent = Vec::with_capacity(results.len());
    let mut last_message = None;
    for result in results {
        match result {
            Ok(decoded) if last_message == Some(decoded.message) => {}
            Ok(decoded) => {
                last_message = Some(decoded.message);
                sent.push(decoded.pattern.as_deref().unwrap_or(&decoded.address));
            }
            Err(fail) => {
                last_message = None;
                sent.push(fail.address.as_str());
            }
        }
    }
    sent
}

/// Commands rejected so far, every reason summed (`commands_rejected` in `/metrics`).
pub(crate) fn commands_rejected(metrics: &Metrics) -> u64 {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    [
        &metrics.commands_rejected_undecodable,
        &metrics.commands_rejected_invalid,
        &metrics.commands_rejected_busy,
        &metrics.commands_rejected_patch_edit,
        &metrics.commands_rejected_panic,
        &metrics.commands_rejected_not_permitted,
    ]
    .into_iter()
    .map(load)
    .sum::<u64>()
}

/// Why a packet is refused whole (from `whole_packet_refusal`), which says where each of
/// its messages is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `/quit` or `/debug/*` from a client not permitted to send them.
    NotPermitted,
    /// No room in the queue.
    Busy,
    /// Timed too far ahead.
    Invalid,
}

impl Refusal {
    fn counter(self, metrics: &Metrics) -> &std::sync::atomic::AtomicU64 {
        match self {
            Refusal::NotPermitted => &metrics.commands_rejected_not_permitted,
            Refusal::Busy => &metrics.commands_rejected_busy,
            Refusal::Invalid => &metrics.commands_rejected_invalid,
        }
    }
}

/// Counts a command the OSC thread accepted and applied by answering it.
fn answered(metrics: &Metrics) {
    Metrics::bump(&metrics.commands_accepted);
    Metrics::bump(&metrics.commands_answered);
}

/// Seconds from the NTP era (1900), which OSC timetags count from, to the Unix epoch
/// (1970); RFC 5905.
const NTP_TO_UNIX_SECONDS: u64 = 2_208_988_800;

/// How far ahead a bundle may be timed: further is refused with `/fail`.
pub const MAX_AHEAD: Duration = Duration::from_secs(60);

/// Widest bracket accepted around a reading of the system clock (see `clock_pair`).
const CLOCK_PAIR_NS: u64 = 4_000;
/// Readings tried for a narrow bracket before the narrowest is taken.
const CLOCK_PAIR_TRIES: usize = 16;

/// How far `time` (an OSC timetag) lies ahead of `now`, or `None` if it has passed. Plain
/// arithmetic on durations since 1900, so any 64-bit timetag works: rosc's conversion to
/// `SystemTime` panics before 1970, and a client that writes Unix seconds into the timetag
/// (a common bug) or sends `(0, 2)` must get a late command, not a dead OSC thread.
fn ahead_of(time: rosc::OscTime, now: SystemTime) -> Option<Duration> {
    // The fraction is in units of 2^-32 s; below 10^9 ns, so `Duration::new` cannot carry.
    let nanos = (u64::from(time.fractional) * 1_000_000_000) >> 32;
    let wanted = Duration::new(u64::from(time.seconds), nanos as u32);
    let since_unix = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_since_ntp = since_unix.saturating_add(Duration::from_secs(NTP_TO_UNIX_SECONDS));
    wanted
        .checked_sub(now_since_ntp)
        .filter(|ahead| !ahead.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(seconds: u32, fractional: u32) -> rosc::OscTime {
        rosc::OscTime {
            seconds,
            fractional,
        }
    }

    /// A fixed "now": 2026-01-01T00:00:00Z.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn now_as_tag() -> u32 {
        (1_767_225_600 + NTP_TO_UNIX_SECONDS) as u32
    }

    #[test]
    fn timetags_before_1970_or_past_are_late_not_a_panic() {
        for seconds in [0, 1, 2, 1_700_000_000, (NTP_TO_UNIX_SECONDS - 1) as u32] {
            for fractional in [0, 1, u32::MAX] {
                assert_eq!(ahead_of(tag(seconds, fractional), now()), None);
            }
        }
        assert_eq!(ahead_of(tag(now_as_tag(), 0), now()), None);
        assert_eq!(ahead_of(tag(now_as_tag() - 1, u32::MAX), now()), None);
    }

    #[test]
    fn timetags_ahead_are_measured_exactly() {
        assert_eq!(
            ahead_of(tag(now_as_tag() + 2, 1 << 31), now()),
            Some(Duration::from_millis(2_500))
        );
        let last = ahead_of(tag(u32::MAX, u32::MAX), now()).unwrap();
        assert!(last > MAX_AHEAD, "{last:?}");
        // A clock before 1970 (a broken machine) still gives an answer.
        assert!(ahead_of(tag(u32::MAX, 0), UNIX_EPOCH - Duration::from_secs(5)).is_some());
    }

    proptest! {
        #[test]
        fn any_timetag_at_any_time_converts_without_panicking(
            bits in any::<u64>(),
            now_secs in any::<u32>(),
        ) {
            let time = rosc::OscTime::from(((bits >> 32) as u32, bits as u32));
            let now = UNIX_EPOCH + Duration::from_secs(u64::from(now_secs));
            if let Some(ahead) = ahead_of(time, now) {
                prop_assert!(ahead <= Duration::from_secs(u64::from(u32::MAX) + 1));
            }
        }
    }
}
