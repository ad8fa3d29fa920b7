//! The OSC packet path without sockets, threads or workers around it: any bytes pushed
//! through the same decoding, validation, dispatch and stamping the server runs, for the
//! fuzz target (`crates/protocol/fuzz`, target `packet_path`) and for tests.
//!
//! A [`PacketPath`] is the server's [`OscServer`] over the built-in patch (with its notify
//! thread, so `/notify` is handled as served), with the output core behind it stamping what each packet queued (no worker is bound: stamping
//! and its accounting work alike without one), and a UDP socket of its own standing for
//! the client, so replies really go out. The per-packet panic guard is left out: a panic
//! here is a bug the fuzzer must see, not one the guard would answer with `/fail`.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chronus_dsp::PatchDesc;
use chronus_engine::EngineConfig;
use chronus_ipc::{Slot, SlotLayout};
use chronus_protocol::AddressTable;

use crate::depth::DepthSetting;
use crate::exposure::Exposure;
use crate::framing::Framing;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::osc::{ControlRequest, OscServer};
use crate::output::{OutputCore, OutputShared};
use crate::patch_editor::PatchEditor;
use crate::report::Reporter;
use crate::transport::{Incoming, Replier, ReplyTo};

/// Frames per block of the harness (the server's default).
const BLOCK_FRAMES: usize = 64;

/// The server's packet handling, driven one packet at a time.
pub struct PacketPath {
    server: OscServer,
    /// The built-in patch's editor and table, to start each input from.
    fresh_editor: PatchEditor,
    fresh_table: AddressTable,
    core: OutputCore,
    shared: Arc<OutputShared>,
    block: Vec<f32>,
    client: UdpSocket,
    /// Kept so the server's packet channel stays open.
    _packets: SyncSender<Incoming>,
    control: Receiver<ControlRequest>,
}

impl PacketPath {
    /// A packet path over the built-in patch, fault injection off (its `/debug/panic`
    /// would be a panic on purpose).
    ///
    /// # Errors
    /// Shared memory or a loopback UDP socket that cannot be had.
    pub fn new() -> anyhow::Result<PacketPath> {
        static HARNESSES: AtomicUsize = AtomicUsize::new(0);
        let n = HARNESSES.fetch_add(1, Ordering::Relaxed);
        let name = format!("chronus-packet-path-{}-{n}", std::process::id());
        let layout = SlotLayout::new(BLOCK_FRAMES as u32, 2, 64, 1024)?;
        let slots = [
            Arc::new(Slot::create(&format!("{name}-0"), layout)?),
            Arc::new(Slot::create(&format!("{name}-1"), layout)?),
        ];
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(OutputShared::new(
            slots,
            Arc::clone(&metrics),
            BLOCK_FRAMES,
            48_000,
            DepthSetting::Fixed(4),
            1,
        ));
        let core = OutputCore::new(Arc::clone(&shared));
        let desc = PatchDesc::default_patch();
        let editor = PatchEditor::new(
            desc.clone(),
            EngineConfig::new(48_000, BLOCK_FRAMES, 0),
            2 << 20,
        )
        .map_err(anyhow::Error::msg)?;
        let table = chronus_protocol::table_for_patch(&desc, false).map_err(anyhow::Error::msg)?;
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").context("a UDP socket")?);
        let client = UdpSocket::bind("127.0.0.1:0").context("a UDP socket")?;
        client.set_nonblocking(true)?;
        let (packets_tx, packets) = mpsc::sync_channel(1);
        let (control_tx, control) = mpsc::channel();
        let exposure = Arc::new(Exposure::default());
        let replier = Arc::new(Replier::new(
            socket,
            Framing::SizePrefix,
            Arc::clone(&exposure),
            Arc::clone(&metrics),
        ));
        let reporter = Arc::new(Mutex::new(Reporter::new(Arc::clone(&shared))));
        let stop = Arc::new(AtomicBool::new(false));
        let (notify, _notify_thread) =
            Notifier::start(&shared, &replier, Arc::clone(&reporter), &stop)?;
        let fresh_editor = editor.clone();
        let server = OscServer {
            replier,
            packets,
            table: AddressTable::clone(&table),
            editor,
            fault_injection: false,
            exposure,
            reply_budget: crate::exposure::ReplyBudget::unlimited(),
            shared: Arc::clone(&shared),
            reporter,
            notify,
            dump_osc: false,
            stop: Arc::clone(&stop),
            control: control_tx,
            handling: None,
            die: false,
            command_log: None,
            library: crate::library::Library::new(None),
            learning: None,
        };
        Ok(PacketPath {
            fresh_table: table.clone(),
            fresh_editor,
            server,
            core,
            shared,
            block: vec![0.0; BLOCK_FRAMES * 2],
            client,
            _packets: packets_tx,
            control,
        })
    }

    /// Handles `bytes` as a datagram from the harness's client, stamps what it queued,
    /// and drains the replies and notices it caused.
    pub fn handle(&mut self, bytes: &[u8]) {
        self.handle_from(bytes, std::net::Ipv4Addr::LOCALHOST.into());
    }

    /// As [`handle`](Self::handle), judged as if sent from `peer` (what `/quit` and fault
    /// injection are refused by; replies still go to the harness's own loopback socket).
    pub fn handle_from(&mut self, bytes: &[u8], peer: std::net::IpAddr) {
        let client = self.client.local_addr().expect("a bound socket");
        let from = ReplyTo::Udp(client);
        self.server.reply_budget = self
            .server
            .exposure
            .reply_budget(Some(client.ip()), bytes.len());
        self.server.handle_datagram(bytes, from, peer);
        self.core.render_next(&mut self.block);
        while self.control.try_recv().is_ok() {}
        while self.shared.notices.pop().is_some() {}
        let mut reply = [0u8; 65_536];
        while self.client.recv(&mut reply).is_ok() {}
    }

    /// Back to the built-in patch, no draft, every parameter at its start (cheap: a fuzz
    /// input starts here, so what an input does depends on it alone, and a crash found
    /// replays from its input).
    pub fn reset_patch(&mut self) {
        self.server.editor = self.fresh_editor.clone();
        self.server.table = self.fresh_table.clone();
    }

    /// The stop flag the harness's notify thread ends at.
    fn stop(&self) {
        self.server.stop.store(true, Ordering::Release);
    }

    /// The counters, for the accounting every packet must keep.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// (received, accepted + rejected): the two sides of the accounting identity every
    /// packet must keep equal.
    pub fn accounting(&self) -> (u64, u64) {
        let m = &self.shared.metrics;
        let received = m.commands_received.load(Ordering::Relaxed);
        let accepted = m.commands_accepted.load(Ordering::Relaxed);
        (received, accepted + crate::osc::commands_rejected(m))
    }
}

impl Drop for PacketPath {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(addr: &str, args: Vec<rosc::OscType>) -> Vec<u8> {
        rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
            addr: addr.to_string(),
            args,
        }))
        .unwrap()
    }

    #[test]
    fn every_packet_is_accounted_for() {
        let mut path = PacketPath::new().unwrap();
        let packets = [
            encode("/mod/sine/freq", vec![rosc::OscType::Float(330.0)]),
            encode("/mod/*/gain", vec![rosc::OscType::Float(0.5)]),
            encode("/mod/sine/freq", vec![rosc::OscType::Float(1e9)]),
            encode("/status", vec![]),
            encode("/patch/add", vec!["lfo".into(), "sine".into()]),
            encode("/patch/commit", vec![]),
            b"not osc".to_vec(),
            Vec::new(),
        ];
        for packet in &packets {
            path.handle(packet);
        }
        path.handle_from(&encode("/quit", vec![]), [192, 0, 2, 7].into());
        assert_eq!(
            path.accounting(),
            (13, 13),
            "a pattern counts once per match (/mod/*/gain: sine, gain, keys.osc, keys.vca)"
        );
        // A bundle refused whole (timed a century ahead): its pattern counts once.
        let far = rosc::OscPacket::Bundle(rosc::OscBundle {
            timetag: rosc::OscTime::from((u32::MAX, 0)),
            content: vec![rosc::OscPacket::Message(rosc::OscMessage {
                addr: "/mod/*/gain".into(),
                args: vec![rosc::OscType::Float(0.5)],
            })],
        });
        path.handle(&rosc::encoder::encode(&far).unwrap());
        assert_eq!(path.accounting(), (14, 14), "a refused pattern counts once");
        let m = path.metrics();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(load(&m.commands_rejected_undecodable), 2);
        assert_eq!(
            load(&m.commands_rejected_invalid),
            2,
            "30000 Hz, and the far bundle"
        );
        assert_eq!(
            load(&m.commands_rejected_not_permitted),
            1,
            "/quit from afar"
        );
    }
}
