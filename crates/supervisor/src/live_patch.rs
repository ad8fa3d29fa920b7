//! The patch the server plays, as the supervisor loop follows it through live edits: the
//! address table of the stamped patch (for the command log and poison reports), committed
//! patches waiting for their switch to be stamped, and the file new workers start from.
//!
//! A committed patch takes effect when the output clock stamps its switch; only then do
//! the log's addresses and new workers follow it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chronus_dsp::PatchDesc;
use chronus_engine::{Engine, EngineConfig};
use chronus_protocol::AddressTable;

/// The stamped patch and the committed ones after it.
pub struct LivePatch {
    /// Table of the patch the output is stamping for (follows stamped patch switches).
    table: AddressTable,
    /// Committed patches whose switch has not been stamped yet: version → (text, table).
    committed: BTreeMap<u32, (String, AddressTable)>,
    /// Patch file new workers start from (the latest stamped patch).
    path: Option<PathBuf>,
    /// Private directory for patch files written after live edits.
    work_dir: PathBuf,
}

impl LivePatch {
    /// The patch the server started with: `patch`, whose table is `table`, read from the
    /// file at `path` (if any). New workers start from the supervisor's own copy of it,
    /// written to its private directory, never from `path` again: the file may have been
    /// edited since, and workers must run the patch commands are checked against.
    pub fn new(table: AddressTable, patch: &PatchDesc, path: Option<PathBuf>) -> LivePatch {
        let mut live = LivePatch {
            table,
            committed: BTreeMap::new(),
            path: None,
            work_dir: std::env::temp_dir().join(format!("chronus-{}", std::process::id())),
        };
        // The built-in default patch needs no file; any other (read from a file, or a
        // resumed server's) is kept where new workers read it.
        if path.is_some() || *patch != PatchDesc::default_patch() {
            match live.keep("start", &patch.to_toml_string()) {
                Ok(kept) => live.path = Some(kept),
                Err(e) => {
                    tracing::warn!("cannot keep a copy of the patch for new workers: {e}");
                    live.path = path;
                }
            }
        }
        live
    }

    /// Writes `text` as the patch file `patch-<name>.toml` in the private directory.
    fn keep(&self, name: &str, text: &str) -> std::io::Result<PathBuf> {
        let path = self.work_dir.join(format!("patch-{name}.toml"));
        std::fs::create_dir_all(&self.work_dir)?;
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Compiles `patch` as a worker would, never to render: for its address table, built
    /// from the real module instances.
    ///
    /// # Errors
    /// When the patch does not compile.
    pub fn compile(
        patch: &PatchDesc,
        config: EngineConfig,
        fault_injection: bool,
    ) -> anyhow::Result<AddressTable> {
        let engine = Engine::new(patch, config, 0).context("the patch does not compile")?;
        let compiled = engine.patch();
        let modules: Vec<(String, &'static chronus_dsp::ModuleSpec)> = (0..compiled.node_count()
            as u16)
            .filter_map(|n| Some((compiled.node_id(n)?.to_string(), compiled.node_spec(n)?)))
            .chain(chronus_engine::sequencer::track_nodes(patch))
            .collect();
        let table = AddressTable::new(&modules, fault_injection);
        Ok(table)
    }

    /// The address table of the stamped patch.
    pub fn table(&self) -> &AddressTable {
        &self.table
    }

    /// The patch file new workers start from (`None`: the built-in default patch).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Patch `version` was committed; its switch is queued for stamping.
    pub fn committed(&mut self, version: u32, text: String, table: AddressTable) {
        self.committed.insert(version, (text, table));
    }

    /// Patch `version`'s switch was stamped at `frame`: follow its table, and start new
    /// workers from it from now on. Returns its text, for a replay after a cold restart.
    /// (The command log's writer logs it, in its own thread.)
    pub fn switched(&mut self, version: u32, frame: u64) -> Option<String> {
        let Some((text, table)) = self.committed.remove(&version) else {
            tracing::error!("patch {version} was stamped but its text is unknown");
            return None;
        };
        self.table = table;
        match self.keep(&version.to_string(), &text) {
            Ok(path) => self.path = Some(path),
            Err(e) => tracing::warn!("cannot keep patch {version} for new workers: {e}"),
        }
        tracing::info!("patch {version} takes effect at frame {frame}");
        Some(text)
    }

    /// Removes the patch files written for new workers (at shutdown).
    pub fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}
