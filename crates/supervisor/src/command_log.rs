//! The command log (`--command-log`): every stamped command and every patch switch, one
//! line each, in stamping order, so `chronus render --replay` renders the same session.
//!
//! Lines are buffered and flushed on `/sync` and at shutdown; a failed write is ignored,
//! never fatal to the sound.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use chronus_engine::StampedCommand;
use chronus_protocol::AddressTable;

/// An open command log.
pub struct CommandLog {
    writer: BufWriter<File>,
}

impl CommandLog {
    /// Creates (truncates) the log at `path`.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: &Path) -> anyhow::Result<CommandLog> {
        let file = File::create(path)
            .with_context(|| format!("cannot create command log {}", path.display()))?;
        Ok(CommandLog {
            writer: BufWriter::new(file),
        })
    }

    /// Logs a stamped command, with its address from `table` (the stamped patch's).
    pub fn command(&mut self, table: &AddressTable, stamped: &StampedCommand) {
        let line = chronus_protocol::text::format_log_line(
            table,
            stamped.frame,
            stamped.seq,
            &stamped.command,
        );
        let _ = writeln!(self.writer, "{line}");
    }

    /// Logs a patch switch stamped at `frame` with sequence `seq`, with the patch's text.
    pub fn patch_switch(&mut self, frame: u64, seq: u64, text: &str) {
        let _ = writeln!(
            self.writer,
            "{}",
            chronus_protocol::format_patch_log_line(frame, seq, text)
        );
    }

    /// Writes out what is buffered (before answering `/sync`, and at shutdown).
    pub fn flush(&mut self) {
        let _ = self.writer.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_as_formatted_and_flushed_on_demand() {
        let path = std::env::temp_dir().join(format!("chronus-log-test-{}", std::process::id()));
        let mut log = CommandLog::create(&path).unwrap();
        log.patch_switch(128, 7, "[modules]\n");
        log.flush();
        let written = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let expected = chronus_protocol::format_patch_log_line(128, 7, "[modules]\n");
        assert_eq!(written, format!("{expected}\n"));
    }
}
