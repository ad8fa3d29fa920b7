//! MIDI bytes to the Chronus server's OSC messages.
//!
//! `chronus midi` reads MIDI from ALSA and JACK and plays the server with it; this crate is
//! the part of it that decides what each MIDI byte means, kept pure (no I/O, no threads, no
//! clock) so that it is tested to the byte. A [`Translator`] is fed the bytes of each port
//! as they arrive, with the time they arrived at, and answers with the OSC messages to send
//! (each with that time; the caller adds the latency) and the program changes to act on.
//!
//! What each message becomes (the addresses are the server's, `docs/osc.md`):
//!
//! | MIDI | OSC |
//! | --- | --- |
//! | note on (velocity > 0) | `/note/on [instrument] <note> <velocity> <id>` |
//! | note off, note on with velocity 0 | `/note/off [instrument] <note> <id>` |
//! | pitch bend | `/note/bend [instrument] <id> <semitones>` for each note it bends |
//! | channel pressure | `/note/pressure [instrument] <id> <0..1>` for each note it governs |
//! | polyphonic aftertouch | `/note/pressure [instrument] <id> <0..1>` for that note |
//! | CC74 on an MPE member channel | `/note/timbre [instrument] <id> <0..1>` |
//! | CC64 (sustain pedal) | `/sustain [instrument] 0\|1` when it goes down or up |
//! | CC120 (all sound off) | `/panic` |
//! | CC121 (reset all controllers) | bends and pressures of the channel's notes back to 0 |
//! | CC123 (all notes off) | `/note/off` for each note held on the channel |
//! | CC6, 38, 96..101 (RPN, NRPN) | nothing sent: pitch bend range and the MPE zones |
//! | every other CC | `/midi/cc <channel 1..16> <controller> <value>` |
//! | program change | [`Event::Program`]: the caller loads the n-th library patch |
//!
//! Each sounding instance of a note gets its own id (a counter over 0..16777215, skipping
//! the ids still held), so two instances of one note number, on two channels, are told
//! apart by the server, and the note off, bend and pressure of a note name the id of its
//! note on. That is what MPE needs: on the member channels of a zone each note has a channel
//! of its own, and that channel's bend, pressure and timbre (CC74) are the note's alone;
//! the zone's master channel bends every note of the zone (a member note's bend is its own
//! plus the master's). Zones come from [`Config`] (the command line) and from the MPE
//! Configuration Message a controller sends (RPN 6 on channel 1 or 16).

mod parser;

use parser::{ChannelMessage, Parser};
use rosc::{OscMessage, OscType};

/// The largest note id the server takes (`/note/on`'s id is 0..16777215).
pub const MAX_ID: u32 = 16_777_215;

/// The largest bend the server takes, in semitones (`/note/bend`: -96..96).
const MAX_BEND: f32 = 96.0;

/// An MPE zone as the command line names it: `lower[:N]`, `upper[:N]` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpeZone {
    /// No zone: every channel is an ordinary channel.
    Off,
    /// Master channel 1, member channels 2..=N+1.
    Lower(u8),
    /// Master channel 16, member channels 15 down to 16-N.
    Upper(u8),
}

impl MpeZone {
    /// Parses `lower[:N]`, `upper[:N]` or `off` (N member channels, 1..15, default 15).
    ///
    /// # Errors
    /// Anything else, with a reason that says what is accepted.
    pub fn parse(text: &str) -> Result<MpeZone, String> {
        let (kind, members) = match text.split_once(':') {
            Some((kind, n)) => {
                let n: u8 = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=15).contains(n))
                    .ok_or_else(|| format!("'{text}': the member channel count must be 1..15"))?;
                (kind, n)
            }
            None => (text, 15),
        };
        match kind {
            "lower" => Ok(MpeZone::Lower(members)),
            "upper" => Ok(MpeZone::Upper(members)),
            "off" if !text.contains(':') => Ok(MpeZone::Off),
            _ => Err(format!(
                "'{text}' is not an MPE zone: lower[:N], upper[:N] or off"
            )),
        }
    }
}

/// How a [`Translator`] reads its streams before any controller says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The instrument notes go to (the first argument of `/note/*` and `/sustain`); `None`
    /// is the patch's first instrument.
    pub instrument: Option<String>,
    /// The MPE zone set from the command line (a controller's MPE Configuration Message
    /// changes it for its port).
    pub zone: MpeZone,
    /// Pitch bend range of MPE member channels, in semitones (MPE's default: 48).
    pub member_bend_range: f32,
    /// Pitch bend range of MPE master channels and of ordinary channels, in semitones (2).
    pub bend_range: f32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            instrument: None,
            zone: MpeZone::Off,
            member_bend_range: 48.0,
            bend_range: 2.0,
        }
    }
}

/// What a translated MIDI event asks of the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An OSC message to send to the server.
    Osc(OscMessage),
    /// A program change (0..127): the client loads the n-th (0-based) patch of the server's
    /// `/library/list`, which only it can ask for.
    Program(u8),
}

/// An [`Event`] with the time of the MIDI bytes it came from (the caller's clock and unit,
/// as given to [`Translator::feed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// The input's time, untouched.
    pub time: u64,
    /// What to do.
    pub event: Event,
}

/// A note whose key is held (its note off has not come).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    note: u8,
    id: u32,
}

/// What a channel of one port remembers.
#[derive(Debug, Clone)]
struct Channel {
    /// Pitch bend, -8192..8191 (0 is the centre).
    bend: i32,
    /// Bend range in semitones.
    range: f32,
    /// Channel pressure, 0..1.
    pressure: f32,
    /// CC74, 0..1 (the timbre of a member channel's note).
    timbre: f32,
    /// The selected RPN (MSB, LSB); (127, 127) is none.
    rpn: (u8, u8),
    /// Held notes, oldest first.
    held: Vec<Held>,
}

impl Channel {
    fn new(range: f32) -> Channel {
        Channel {
            bend: 0,
            range,
            pressure: 0.0,
            timbre: 0.0,
            rpn: NO_RPN,
            held: Vec::new(),
        }
    }

    /// The bend in semitones: 8192 steps a range (full down is `-range`, full up one step
    /// short of `range`, as MIDI counts it).
    fn semitones(&self) -> f32 {
        self.bend as f32 / 8192.0 * self.range
    }
}

/// Notes a channel holds at most (a keyboard has 128 keys; more are stuck notes).
const MAX_HELD: usize = 128;

/// The null RPN.
const NO_RPN: (u8, u8) = (127, 127);

/// Which part a channel plays in MPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not in a zone.
    Plain,
    /// The master channel (0 or 15) of a zone with these member channels.
    Master,
    /// A member channel of the zone whose master is this channel.
    Member(u8),
}

/// One input stream: its parser, zones and channels.
#[derive(Debug, Clone)]
struct Port {
    parser: Parser,
    /// Member channels of the lower zone (0: no lower zone).
    lower: u8,
    /// Member channels of the upper zone (0: no upper zone).
    upper: u8,
    channels: Vec<Channel>,
}

impl Port {
    fn new(config: &Config) -> Port {
        let (lower, upper) = match config.zone {
            MpeZone::Off => (0, 0),
            MpeZone::Lower(n) => (n.min(15), 0),
            MpeZone::Upper(n) => (0, n.min(15)),
        };
        let mut port = Port {
            parser: Parser::default(),
            lower,
            upper,
            channels: (0..16).map(|_| Channel::new(config.bend_range)).collect(),
        };
        port.default_ranges(config);
        port
    }

    fn role(&self, channel: u8) -> Role {
        if self.lower > 0 {
            if channel == 0 {
                return Role::Master;
            }
            if channel <= self.lower {
                return Role::Member(0);
            }
        }
        if self.upper > 0 {
            if channel == 15 {
                return Role::Master;
            }
            if channel >= 15 - self.upper {
                return Role::Member(15);
            }
        }
        Role::Plain
    }

    /// The member channels of the zone whose master is `master`.
    fn members(&self, master: u8) -> std::ops::RangeInclusive<u8> {
        match master {
            0 if self.lower > 0 => 1..=self.lower,
            15 if self.upper > 0 => (15 - self.upper)..=14,
            #[allow(clippy::reversed_empty_ranges)]
            _ => 1..=0,
        }
    }

    /// Every channel's bend range back to its role's default (after a zone change).
    fn default_ranges(&mut self, config: &Config) {
        for channel in 0..16u8 {
            let range = match self.role(channel) {
                Role::Member(_) => config.member_bend_range,
                _ => config.bend_range,
            };
            if let Some(c) = self.channels.get_mut(usize::from(channel)) {
                c.range = range;
            }
        }
    }

    fn channel(&self, channel: u8) -> &Channel {
        &self.channels[usize::from(channel & 15)]
    }

    fn channel_mut(&mut self, channel: u8) -> &mut Channel {
        &mut self.channels[usize::from(channel & 15)]
    }

    /// The channels whose notes a bend or pressure on `channel` reaches: itself, and on a
    /// master channel its zone's members too.
    fn governed(&self, channel: u8) -> Vec<u8> {
        let mut channels = vec![channel];
        if self.role(channel) == Role::Master {
            channels.extend(self.members(channel));
        }
        channels
    }

    /// A note's bend on `channel`: the channel's, plus its master's on a member channel.
    fn bend_of(&self, channel: u8) -> f32 {
        let own = self.channel(channel).semitones();
        let total = match self.role(channel) {
            Role::Member(master) => own + self.channel(master).semitones(),
            _ => own,
        };
        total.clamp(-MAX_BEND, MAX_BEND)
    }
}

/// Turns the MIDI byte streams of any number of ports into the server's OSC messages.
///
/// One translator serves every port of a client, so that note ids are unique across them;
/// each port keeps its own parser, MPE zones and channel state (two keyboards both on
/// channel 1 do not bend each other's notes).
#[derive(Debug, Clone)]
pub struct Translator {
    config: Config,
    ports: Vec<Port>,
    /// The next note id to try.
    next_id: u32,
    /// The sustain pedal as last sent (`None`: not sent yet).
    sustain: Option<bool>,
}

impl Translator {
    /// A translator that reads its ports as `config` says.
    pub fn new(config: Config) -> Translator {
        Translator {
            config,
            ports: Vec::new(),
            next_id: 1,
            sustain: None,
        }
    }

    /// Reads `bytes` from `port` (any number, from 0: the caller's numbering), which
    /// arrived at `time`, and appends what they mean to `out`, each with `time`.
    ///
    /// A message may be split across calls (the rest of it comes in the next call for the
    /// same port); bytes that mean nothing here are skipped. Never fails and never panics.
    pub fn feed(&mut self, port: usize, bytes: &[u8], time: u64, out: &mut Vec<Timed>) {
        while self.ports.len() <= port {
            self.ports.push(Port::new(&self.config));
        }
        let mut events = Vec::new();
        for &byte in bytes {
            let message = self.ports[port].parser.push(byte);
            if let Some(message) = message {
                self.translate(port, message, &mut events);
            }
        }
        out.extend(events.into_iter().map(|event| Timed { time, event }));
    }

    /// Releases everything this client holds, as it stops: a note off for each note held
    /// (on every port and channel, each with its id) and the sustain pedal up if it is
    /// down, appended to `out` at `time`. Without it, notes held when the client stops
    /// (Ctrl-C, the JACK server gone) would sound on in the server for good.
    pub fn release_all(&mut self, time: u64, out: &mut Vec<Timed>) {
        let mut events = Vec::new();
        let held: Vec<(usize, u8, u8)> = self
            .ports
            .iter()
            .enumerate()
            .flat_map(|(port, p)| {
                p.channels.iter().enumerate().flat_map(move |(channel, c)| {
                    c.held.iter().map(move |h| (port, channel as u8, h.note))
                })
            })
            .collect();
        for (port, channel, note) in held {
            self.note_off(port, channel, note, &mut events);
        }
        if self.sustain == Some(true) {
            self.sustain = Some(false);
            let mut args = vec![OscType::Int(0)];
            events.push(self.note_message("/sustain", &mut args));
        }
        out.extend(events.into_iter().map(|event| Timed { time, event }));
    }

    /// The MPE zones of `port` now, as (lower, upper) member channel counts (0: none).
    pub fn zones(&self, port: usize) -> (u8, u8) {
        match self.ports.get(port) {
            Some(p) => (p.lower, p.upper),
            None => match self.config.zone {
                MpeZone::Off => (0, 0),
                MpeZone::Lower(n) => (n, 0),
                MpeZone::Upper(n) => (0, n),
            },
        }
    }

    /// The bend range of `channel` (0..15) on `port` now, in semitones.
    pub fn bend_range(&self, port: usize, channel: u8) -> f32 {
        match self.ports.get(port) {
            Some(p) => p.channel(channel).range,
            None => Port::new(&self.config).channel(channel).range,
        }
    }

    fn translate(&mut self, port: usize, message: ChannelMessage, out: &mut Vec<Event>) {
        let ChannelMessage {
            kind,
            channel,
            data: [d0, d1],
        } = message;
        match kind {
            0x90 if d1 > 0 => self.note_on(port, channel, d0, d1, out),
            0x80 | 0x90 => self.note_off(port, channel, d0, out),
            0xA0 => {
                let p = &self.ports[port];
                let value = f32::from(d1) / 127.0;
                let ids: Vec<u32> = p
                    .channel(channel)
                    .held
                    .iter()
                    .filter(|h| h.note == d0)
                    .map(|h| h.id)
                    .collect();
                for id in ids {
                    out.push(self.note_value("/note/pressure", id, value));
                }
            }
            0xB0 => self.control_change(port, channel, d0, d1, out),
            0xC0 => out.push(Event::Program(d0)),
            0xD0 => {
                let value = f32::from(d0) / 127.0;
                let p = &mut self.ports[port];
                p.channel_mut(channel).pressure = value;
                self.send_pressures(port, channel, out);
            }
            0xE0 => {
                let raw = i32::from(d0) | (i32::from(d1) << 7);
                self.ports[port].channel_mut(channel).bend = raw - 8192;
                self.send_bends(port, channel, out);
            }
            _ => {}
        }
    }

    fn note_on(&mut self, port: usize, channel: u8, note: u8, velocity: u8, out: &mut Vec<Event>) {
        // A stream of note ons with no offs must not grow without bound: past
        // MAX_HELD on a channel the oldest is released.
        if self.ports[port].channel(channel).held.len() >= MAX_HELD {
            let Held { note, id } = self.ports[port].channel_mut(channel).held.remove(0);
            let mut args = vec![OscType::Int(i32::from(note)), OscType::Int(id as i32)];
            out.push(self.note_message("/note/off", &mut args));
        }
        let id = self.take_id();
        self.ports[port]
            .channel_mut(channel)
            .held
            .push(Held { note, id });
        let mut args = vec![
            OscType::Int(i32::from(note)),
            OscType::Int(i32::from(velocity)),
            OscType::Int(id as i32),
        ];
        out.push(self.note_message("/note/on", &mut args));
        // The channel's state before the note (an MPE controller sends it just before)
        // is the note's from its start.
        let p = &self.ports[port];
        let bend = p.bend_of(channel);
        let pressure = p.channel(channel).pressure;
        let timbre = match p.role(channel) {
            Role::Member(_) => p.channel(channel).timbre,
            _ => 0.0,
        };
        if bend != 0.0 {
            out.push(self.note_value("/note/bend", id, bend));
        }
        if pressure != 0.0 {
            out.push(self.note_value("/note/pressure", id, pressure));
        }
        if timbre != 0.0 {
            out.push(self.note_value("/note/timbre", id, timbre));
        }
    }

    fn note_off(&mut self, port: usize, channel: u8, note: u8, out: &mut Vec<Event>) {
        let held = &mut self.ports[port].channel_mut(channel).held;
        let mut args = vec![OscType::Int(i32::from(note))];
        if let Some(at) = held.iter().position(|h| h.note == note) {
            let Held { id, .. } = held.remove(at);
            args.push(OscType::Int(id as i32));
        }
        // An off with no on seen (the key went down before we started): the server
        // releases the oldest held instance of the note.
        out.push(self.note_message("/note/off", &mut args));
    }

    fn control_change(
        &mut self,
        port: usize,
        channel: u8,
        controller: u8,
        value: u8,
        out: &mut Vec<Event>,
    ) {
        let p = &mut self.ports[port];
        match controller {
            // RPN select (LSB, MSB).
            100 => p.channel_mut(channel).rpn.1 = value,
            101 => p.channel_mut(channel).rpn.0 = value,
            // NRPN select: the RPN is no longer selected; data increment/decrement.
            96..=99 => {
                if controller >= 98 {
                    p.channel_mut(channel).rpn = NO_RPN;
                }
            }
            6 => self.data_entry(port, channel, value, true),
            38 => self.data_entry(port, channel, value, false),
            64 => {
                let down = value >= 64;
                if self.sustain != Some(down) {
                    self.sustain = Some(down);
                    let mut args = vec![OscType::Int(i32::from(down))];
                    out.push(self.note_message("/sustain", &mut args));
                }
            }
            74 if matches!(p.role(channel), Role::Member(_)) => {
                let value = f32::from(value) / 127.0;
                p.channel_mut(channel).timbre = value;
                let ids: Vec<u32> = p.channel(channel).held.iter().map(|h| h.id).collect();
                for id in ids {
                    out.push(self.note_value("/note/timbre", id, value));
                }
            }
            120 => {
                for port in &mut self.ports {
                    for c in &mut port.channels {
                        c.held.clear();
                    }
                }
                self.sustain = Some(false);
                out.push(Event::Osc(OscMessage {
                    addr: "/panic".into(),
                    args: vec![],
                }));
            }
            121 => {
                let c = p.channel_mut(channel);
                c.bend = 0;
                c.pressure = 0.0;
                c.timbre = 0.0;
                c.rpn = NO_RPN;
                self.send_bends(port, channel, out);
                self.send_pressures(port, channel, out);
            }
            123 => {
                for ch in p.governed(channel) {
                    let held = std::mem::take(&mut self.ports[port].channel_mut(ch).held);
                    for Held { note, id } in held {
                        let mut args = vec![OscType::Int(i32::from(note)), OscType::Int(id as i32)];
                        out.push(self.note_message("/note/off", &mut args));
                    }
                }
            }
            _ => out.push(Event::Osc(OscMessage {
                addr: "/midi/cc".into(),
                args: vec![
                    OscType::Int(i32::from(channel) + 1),
                    OscType::Int(i32::from(controller)),
                    OscType::Int(i32::from(value)),
                ],
            })),
        }
    }

    /// CC6 (`msb`) or CC38 for the selected RPN: 0 is the pitch bend range (semitones,
    /// cents), 6 on channel 1 or 16 the MPE Configuration Message.
    fn data_entry(&mut self, port: usize, channel: u8, value: u8, msb: bool) {
        let config = &self.config;
        let p = &mut self.ports[port];
        match p.channel(channel).rpn {
            (0, 0) => {
                let old = p.channel(channel).range;
                let range = if msb {
                    f32::from(value) + old.fract()
                } else {
                    old.trunc() + f32::from(value.min(99)) / 100.0
                };
                // MPE: a range sent on any member channel is the whole zone's.
                let channels: Vec<u8> = match p.role(channel) {
                    Role::Member(master) => p.members(master).collect(),
                    _ => vec![channel],
                };
                for ch in channels {
                    p.channel_mut(ch).range = range;
                }
            }
            (0, 6) if msb && (channel == 0 || channel == 15) => {
                let members = value.min(15);
                if channel == 0 {
                    p.lower = members;
                    // The zones may not overlap: the newer one wins.
                    if u16::from(p.lower) + u16::from(p.upper) > 14 {
                        p.upper = 14u8.saturating_sub(p.lower);
                    }
                } else {
                    p.upper = members;
                    if u16::from(p.lower) + u16::from(p.upper) > 14 {
                        p.lower = 14u8.saturating_sub(p.upper);
                    }
                }
                p.default_ranges(config);
            }
            _ => {}
        }
    }

    /// Sends the bend of every note held on the channels `channel` governs.
    fn send_bends(&mut self, port: usize, channel: u8, out: &mut Vec<Event>) {
        let p = &self.ports[port];
        let mut bends = Vec::new();
        for ch in p.governed(channel) {
            let bend = p.bend_of(ch);
            bends.extend(p.channel(ch).held.iter().map(|h| (h.id, bend)));
        }
        for (id, bend) in bends {
            out.push(self.note_value("/note/bend", id, bend));
        }
    }

    /// Sends `channel`'s pressure to every note held on the channels it governs.
    fn send_pressures(&mut self, port: usize, channel: u8, out: &mut Vec<Event>) {
        let p = &self.ports[port];
        let value = p.channel(channel).pressure;
        let ids: Vec<u32> = p
            .governed(channel)
            .into_iter()
            .flat_map(|ch| p.channel(ch).held.iter().map(|h| h.id))
            .collect();
        for id in ids {
            out.push(self.note_value("/note/pressure", id, value));
        }
    }

    /// A fresh id: the counter's next value not held by any note, over 1..=MAX_ID (0 is
    /// the server's "no id": an off with id 0 releases any instance of its note).
    fn take_id(&mut self) -> u32 {
        loop {
            let id = self.next_id.max(1);
            self.next_id = if id >= MAX_ID { 1 } else { id + 1 };
            let in_use = self
                .ports
                .iter()
                .flat_map(|p| &p.channels)
                .any(|c| c.held.iter().any(|h| h.id == id));
            if !in_use {
                return id;
            }
        }
    }

    /// `address [instrument] args…`.
    fn note_message(&self, address: &str, args: &mut Vec<OscType>) -> Event {
        let mut all = Vec::with_capacity(args.len() + 1);
        if let Some(instrument) = &self.config.instrument {
            all.push(OscType::String(instrument.clone()));
        }
        all.append(args);
        Event::Osc(OscMessage {
            addr: address.into(),
            args: all,
        })
    }

    /// `address [instrument] <id> <value>`.
    fn note_value(&self, address: &str, id: u32, value: f32) -> Event {
        self.note_message(
            address,
            &mut vec![OscType::Int(id as i32), OscType::Float(value)],
        )
    }
}

#[cfg(test)]
mod tests;
