//! One server per record file: the recordings, the command log and the state file are
//! locked while a server writes them, so a second server (a resumed one above all) never
//! writes into the files of one still running.

/// Takes the exclusive lock of a record file (a regular one) (`flock`, released when the server ends,
/// however it ends), so that a second server, a resumed one above all, never writes into
/// the files of one still running.
///
/// # Errors
/// When another process holds it.
pub fn lock_record_file(file: &std::fs::File, path: &std::path::Path) -> anyhow::Result<()> {
    use rustix::fs::{flock, FlockOperation};
    // A device such as /dev/null or /dev/full may take several records.
    if file.metadata().is_ok_and(|m| !m.is_file()) {
        return Ok(());
    }
    flock(file, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        anyhow::anyhow!(
            "{} is in use by another process (a chronus server still running?): {e}",
            path.display()
        )
    })
}
