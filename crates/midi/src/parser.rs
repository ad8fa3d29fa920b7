//! The byte level of one MIDI stream: bytes in, complete channel messages out.
//!
//! A MIDI stream is not framed: a message is a status byte and its data bytes, the status
//! may be left out when it repeats (running status), real-time bytes (clock, start, stop,
//! active sensing, reset: 0xF8..0xFF) may fall anywhere, even between a message's data
//! bytes, and a SysEx (0xF0 … 0xF7) may be any length and arrive in pieces. The parser keeps
//! what it needs between calls so that a message split across two reads is still one
//! message, and it never fails: what it cannot use (SysEx, system common messages, data
//! bytes with no status before them) it skips.

/// A complete channel voice message (note off/on, polyphonic aftertouch, control change,
/// program change, channel pressure, pitch bend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelMessage {
    /// The status's high nibble: 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0 or 0xE0.
    pub kind: u8,
    /// The channel, 0..15 (MIDI's 1..16).
    pub channel: u8,
    /// The data bytes (the second is 0 for the one-byte messages).
    pub data: [u8; 2],
}

/// The parsing state of one stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct Parser {
    /// The status the next data bytes belong to (running status for channel messages; a
    /// system common status until its data bytes are skipped).
    status: Option<u8>,
    /// Data bytes of the message being read.
    data: [u8; 2],
    /// How many of `data` are read.
    len: usize,
    /// Inside a SysEx: data bytes are skipped until a status byte ends it.
    in_sysex: bool,
}

/// Data bytes a status takes.
fn data_bytes(status: u8) -> usize {
    match status {
        0xC0..=0xDF => 1,
        0x80..=0xEF => 2,
        // MTC quarter frame, song select.
        0xF1 | 0xF3 => 1,
        // Song position pointer.
        0xF2 => 2,
        // Tune request, undefined F4/F5: nothing.
        _ => 0,
    }
}

impl Parser {
    /// Takes one byte; returns the channel message it completes, if any.
    pub(crate) fn push(&mut self, byte: u8) -> Option<ChannelMessage> {
        match byte {
            // Real-time: ignored where it stands, the message around it goes on.
            0xF8..=0xFF => None,
            0xF0 => {
                self.in_sysex = true;
                self.status = None;
                self.len = 0;
                None
            }
            0xF7 => {
                self.in_sysex = false;
                self.status = None;
                self.len = 0;
                None
            }
            0x80..=0xF6 => {
                // Any status ends a SysEx (a lost F7) and cancels running status.
                self.in_sysex = false;
                self.len = 0;
                if data_bytes(byte) == 0 && byte >= 0xF0 {
                    self.status = None;
                } else {
                    self.status = Some(byte);
                }
                None
            }
            _ => {
                if self.in_sysex {
                    return None;
                }
                // A data byte with no status before it is dropped.
                let status = self.status?;
                let needed = data_bytes(status);
                if let Some(slot) = self.data.get_mut(self.len) {
                    *slot = byte;
                }
                self.len += 1;
                if self.len < needed {
                    return None;
                }
                self.len = 0;
                if status >= 0xF0 {
                    // System common: skipped, and running status does not apply to it.
                    self.status = None;
                    return None;
                }
                let data = if needed == 1 {
                    [self.data[0], 0]
                } else {
                    self.data
                };
                Some(ChannelMessage {
                    kind: status & 0xF0,
                    channel: status & 0x0F,
                    data,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(parser: &mut Parser, bytes: &[u8]) -> Vec<ChannelMessage> {
        bytes.iter().filter_map(|&b| parser.push(b)).collect()
    }

    fn msg(kind: u8, channel: u8, d0: u8, d1: u8) -> ChannelMessage {
        ChannelMessage {
            kind,
            channel,
            data: [d0, d1],
        }
    }

    #[test]
    fn running_status_repeats_the_last_channel_status() {
        let mut p = Parser::default();
        assert_eq!(
            parse(&mut p, &[0x91, 60, 100, 64, 90, 60, 0]),
            vec![
                msg(0x90, 1, 60, 100),
                msg(0x90, 1, 64, 90),
                msg(0x90, 1, 60, 0)
            ]
        );
        // One-byte messages run too.
        assert_eq!(
            parse(&mut p, &[0xD2, 10, 20]),
            vec![msg(0xD0, 2, 10, 0), msg(0xD0, 2, 20, 0)]
        );
    }

    #[test]
    fn real_time_bytes_inside_a_message_do_not_break_it() {
        let mut p = Parser::default();
        assert_eq!(
            parse(
                &mut p,
                &[0xF8, 0x90, 0xFA, 60, 0xF8, 0xFE, 100, 0xFF, 62, 0xFC, 1]
            ),
            vec![msg(0x90, 0, 60, 100), msg(0x90, 0, 62, 1)]
        );
    }

    #[test]
    fn sysex_split_across_calls_is_skipped_and_data_after_it_needs_a_status() {
        let mut p = Parser::default();
        assert_eq!(
            parse(&mut p, &[0x90, 60, 100, 0xF0, 0x7E, 1, 2]),
            vec![msg(0x90, 0, 60, 100)]
        );
        // Still inside the SysEx: these are not notes.
        assert_eq!(parse(&mut p, &[60, 100, 3, 4]), vec![]);
        assert_eq!(parse(&mut p, &[5, 0xF7]), vec![]);
        // The SysEx cancelled running status: data bytes alone are dropped.
        assert_eq!(parse(&mut p, &[60, 100]), vec![]);
        assert_eq!(parse(&mut p, &[0x80, 60, 0]), vec![msg(0x80, 0, 60, 0)]);
    }

    #[test]
    fn a_status_byte_ends_a_sysex_whose_f7_was_lost() {
        let mut p = Parser::default();
        assert_eq!(
            parse(&mut p, &[0xF0, 1, 2, 0x92, 61, 70]),
            vec![msg(0x90, 2, 61, 70)]
        );
    }

    #[test]
    fn system_common_messages_are_skipped_with_their_data() {
        let mut p = Parser::default();
        // Song position (2 data bytes), song select (1), MTC quarter frame (1), tune request (0).
        assert_eq!(
            parse(
                &mut p,
                &[0x90, 60, 100, 0xF2, 1, 2, 3, 0xF3, 4, 0xF1, 5, 0xF6, 60, 100]
            ),
            vec![msg(0x90, 0, 60, 100)]
        );
    }

    #[test]
    fn data_bytes_without_a_status_are_dropped() {
        let mut p = Parser::default();
        assert_eq!(parse(&mut p, &[60, 100, 0x7F]), vec![]);
        assert_eq!(parse(&mut p, &[0xB0, 7, 100]), vec![msg(0xB0, 0, 7, 100)]);
    }

    #[test]
    fn a_new_status_mid_message_drops_the_unfinished_one() {
        let mut p = Parser::default();
        assert_eq!(
            parse(&mut p, &[0x90, 60, 0xE0, 0, 64]),
            vec![msg(0xE0, 0, 0, 64)]
        );
    }
}
