//! How OSC packets are cut out of a TCP stream, and how replies are framed: OSC 1.0's size
//! prefix (the default, as scsynth and liblo do) or OSC 1.1's SLIP (`--tcp-framing slip`,
//! RFC 1055 with the double END OSC 1.1 recommends). Pure codecs; the transport reads and
//! writes the bytes.

/// SLIP's frame delimiter.
pub const END: u8 = 0xC0;
/// SLIP's escape byte.
pub const ESC: u8 = 0xDB;
/// After [`ESC`]: an escaped [`END`].
pub const ESC_END: u8 = 0xDC;
/// After [`ESC`]: an escaped [`ESC`].
pub const ESC_ESC: u8 = 0xDD;

/// A TCP framing (`--tcp-framing`); replies are framed the way requests are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// OSC 1.0: each packet preceded by its size, a big-endian 32-bit integer.
    #[default]
    SizePrefix,
    /// OSC 1.1: each packet SLIP-encoded between two END bytes.
    Slip,
}

impl std::str::FromStr for Framing {
    type Err = String;

    fn from_str(s: &str) -> Result<Framing, String> {
        match s {
            "size" | "size-prefix" | "osc1.0" => Ok(Framing::SizePrefix),
            "slip" | "osc1.1" => Ok(Framing::Slip),
            _ => Err(format!(
                "unknown TCP framing '{s}': use size (OSC 1.0, the default) or slip (OSC 1.1)"
            )),
        }
    }
}

impl std::fmt::Display for Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Framing::SizePrefix => "size",
            Framing::Slip => "slip",
        })
    }
}

impl Framing {
    /// `packet` framed for the stream, in one buffer (so a writer sends it in one write).
    pub fn encode(self, packet: &[u8]) -> Vec<u8> {
        match self {
            Framing::SizePrefix => {
                let mut framed = Vec::with_capacity(4 + packet.len());
                framed.extend_from_slice(&(packet.len() as u32).to_be_bytes());
                framed.extend_from_slice(packet);
                framed
            }
            Framing::Slip => slip_encode(packet),
        }
    }
}

/// `packet` SLIP-encoded between two ENDs: END and ESC inside escaped.
pub fn slip_encode(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + packet.len() / 32 + 2);
    out.push(END);
    for &byte in packet {
        match byte {
            END => out.extend_from_slice(&[ESC, ESC_END]),
            ESC => out.extend_from_slice(&[ESC, ESC_ESC]),
            other => out.push(other),
        }
    }
    out.push(END);
    out
}

/// What a [`SlipDecoder`] made of one byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlipEvent {
    /// A complete packet.
    Packet(Vec<u8>),
    /// A packet grew beyond the limit: it is dropped (its bytes up to the next END are
    /// skipped) and reported once.
    TooLarge,
}

/// Cuts SLIP-framed packets out of a byte stream, one byte at a time. Empty frames
/// (double END, as OSC 1.1 sends, or END at the start) are skipped; an ESC followed by
/// anything but ESC_END or ESC_ESC keeps that byte (RFC 1055's choice; the OSC decoder
/// then judges the packet). A packet never holds more than `max` bytes in memory.
#[derive(Debug)]
pub struct SlipDecoder {
    packet: Vec<u8>,
    escaped: bool,
    /// Skipping the rest of a packet that was too large.
    skipping: bool,
    max: usize,
}

impl SlipDecoder {
    /// A decoder taking packets of at most `max` bytes (decoded).
    pub fn new(max: usize) -> SlipDecoder {
        SlipDecoder {
            packet: Vec::new(),
            escaped: false,
            skipping: false,
            max,
        }
    }

    /// Takes the next byte of the stream.
    pub fn push(&mut self, byte: u8) -> Option<SlipEvent> {
        if byte == END {
            self.escaped = false;
            if std::mem::take(&mut self.skipping) || self.packet.is_empty() {
                self.packet.clear();
                return None;
            }
            return Some(SlipEvent::Packet(std::mem::take(&mut self.packet)));
        }
        if self.skipping {
            return None;
        }
        let decoded = if std::mem::take(&mut self.escaped) {
            match byte {
                ESC_END => END,
                ESC_ESC => ESC,
                other => other,
            }
        } else if byte == ESC {
            self.escaped = true;
            return None;
        } else {
            byte
        };
        if self.packet.len() >= self.max {
            self.packet = Vec::new();
            self.skipping = true;
            return Some(SlipEvent::TooLarge);
        }
        self.packet.push(decoded);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(stream: &[u8], max: usize) -> Vec<SlipEvent> {
        let mut decoder = SlipDecoder::new(max);
        stream.iter().filter_map(|&b| decoder.push(b)).collect()
    }

    fn packet(bytes: &[u8]) -> SlipEvent {
        SlipEvent::Packet(bytes.to_vec())
    }

    #[test]
    fn slip_escapes_end_and_esc() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", &[END, END]),
            (b"/s", &[END, b'/', b's', END]),
            (&[END], &[END, ESC, ESC_END, END]),
            (&[ESC], &[END, ESC, ESC_ESC, END]),
            (
                &[1, END, ESC, 2],
                &[END, 1, ESC, ESC_END, ESC, ESC_ESC, 2, END],
            ),
            (&[ESC_END, ESC_ESC], &[END, ESC_END, ESC_ESC, END]),
        ];
        for &(plain, framed) in table {
            assert_eq!(slip_encode(plain), framed, "{plain:?}");
            assert_eq!(Framing::Slip.encode(plain), framed);
        }
        assert_eq!(
            Framing::SizePrefix.encode(b"/abc"),
            [0, 0, 0, 4, b'/', b'a', b'b', b'c']
        );
    }

    #[test]
    fn slip_streams_decode_to_their_packets() {
        let table: &[(&[u8], &[SlipEvent])] = &[
            // Single END framing (RFC 1055) and double END (OSC 1.1) alike.
            (
                &[b'a', END, b'b', END],
                &[SlipEvent::Packet(vec![b'a']), SlipEvent::Packet(vec![b'b'])],
            ),
            (
                &[END, b'a', END, END, b'b', END],
                &[SlipEvent::Packet(vec![b'a']), SlipEvent::Packet(vec![b'b'])],
            ),
            (&[END, END, END], &[]),
            (
                &[END, ESC, ESC_END, ESC, ESC_ESC, END],
                &[SlipEvent::Packet(vec![END, ESC])],
            ),
            // An ESC before another byte keeps the byte.
            (&[ESC, b'x', END], &[SlipEvent::Packet(vec![b'x'])]),
            // An ESC right before END is dropped with the escape state.
            (
                &[b'a', ESC, END, b'b', END],
                &[SlipEvent::Packet(vec![b'a']), SlipEvent::Packet(vec![b'b'])],
            ),
            // A packet without its END is not delivered.
            (&[END, b'a', b'b'], &[]),
            // Too large (max 4): reported once, skipped to its END, the next one taken.
            (
                &[END, 1, 2, 3, 4, 5, 6, 7, END, 9, END],
                &[SlipEvent::TooLarge, SlipEvent::Packet(vec![9])],
            ),
            (&[1, 2, 3, 4, END], &[SlipEvent::Packet(vec![1, 2, 3, 4])]),
        ];
        for &(stream, events) in table {
            assert_eq!(decode_all(stream, 4), events, "{stream:?}");
        }
        assert_eq!(decode_all(&[b'a', END], 4), [packet(b"a")]);
    }

    #[test]
    fn framings_parse_from_their_names() {
        for (name, framing) in [
            ("size", Framing::SizePrefix),
            ("slip", Framing::Slip),
            ("osc1.1", Framing::Slip),
        ] {
            assert_eq!(name.parse::<Framing>(), Ok(framing));
        }
        assert!("slap".parse::<Framing>().unwrap_err().contains("use size"));
        assert_eq!(Framing::default(), Framing::SizePrefix);
    }

    proptest! {
        #[test]
        fn any_packets_survive_a_slip_round_trip(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..8)
        ) {
            let stream: Vec<u8> = packets.iter().flat_map(|p| slip_encode(p)).collect();
            let expected: Vec<SlipEvent> = packets.iter().map(|p| SlipEvent::Packet(p.clone())).collect();
            prop_assert_eq!(decode_all(&stream, 64), expected);
        }

        #[test]
        fn any_bytes_decode_without_panicking_or_outgrowing_the_limit(
            stream in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            for event in decode_all(&stream, 16) {
                if let SlipEvent::Packet(p) = event {
                    prop_assert!(!p.is_empty() && p.len() <= 16);
                }
            }
        }
    }
}
