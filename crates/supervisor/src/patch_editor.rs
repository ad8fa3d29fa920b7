//! Live patch editing over OSC, and the server's view of parameter values.
//!
//! Edits (`/patch/add`, `/patch/remove`, `/patch/connect`, `/patch/disconnect`,
//! `/patch/set`) change a *draft*; the running patch is untouched until `/patch/commit`
//! compiles the draft (any error is a `/fail` naming the module and port, and nothing
//! changes) and hands it to the output clock, which stamps the switch like any command,
//! so both workers swap patches on the same frame, with a short crossfade.
//!
//! The editor also follows every parameter through the commands decoded so far: when
//! each change takes effect (now, or at a bundle's time) and how a `/ramp` moves it, so
//! `/get` and `/params` report the value a parameter has *now* (mid-ramp, the ramped
//! value; before a timed bundle's moment, the value it replaces), and a committed draft
//! keeps what was played (each parameter's last target).
//!
//! It follows the tempo, the swing and which tracks play as well, as the engine does
//! across patch switches, so `/library/save` writes the patch as it sounds now, and
//! `/library/load` switches to a library patch as `/patch/commit` switches to a draft.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chronus_dsp::modules::note;
use chronus_dsp::patch::controllers::{self, CcMapping, RangedCc};
use chronus_dsp::{ClockDesc, ModuleDesc, Patch, PatchDesc, TrackDesc};
use chronus_engine::engine::MAX_PATCH_TEXT;
use chronus_engine::{Command, Engine, EngineConfig};
use chronus_protocol::TrackChange;

/// The running patch, the draft being edited, and the parameter values.
#[derive(Clone)]
pub struct PatchEditor {
    current: PatchDesc,
    draft: Option<PatchDesc>,
    /// Parameters set explicitly in the draft with `/patch/set` (id, param).
    draft_overrides: BTreeSet<(String, String)>,
    version: u32,
    /// Every parameter of the running patch, `[node][param]`: where it is going and when.
    values: Vec<Vec<Track>>,
    /// (module id, type) of the running patch, by node.
    modules: Vec<(String, &'static chronus_dsp::ModuleSpec)>,
    config: EngineConfig,
    snapshot_capacity: usize,
    /// The tempo and swing as last set (`/clock/…`, or by a patch switch).
    clock: ClockDesc,
    /// Whether each track of the running patch plays (`/seq/<track>/start|stop`), by
    /// its place in `[[tracks]]`.
    playing: Vec<bool>,
}

/// A parameter's course: `from` until `start`, then a straight line to `to` at `end` (a
/// jump when they are equal), then `to`.
///
/// One course per parameter: a change replaces it, starting from where the old one is at
/// the change's moment. So when several changes of one parameter wait for the future (two
/// timed bundles), the one accepted last is followed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Track {
    from: f32,
    to: f32,
    start: Instant,
    end: Instant,
}

impl Track {
    fn settled(value: f32) -> Track {
        let now = Instant::now();
        Track {
            from: value,
            to: value,
            start: now,
            end: now,
        }
    }

    /// The value at `t`.
    fn at(&self, t: Instant) -> f32 {
        if t < self.start {
            self.from
        } else if t >= self.end {
            self.to
        } else {
            let done = (t - self.start).as_secs_f64() / (self.end - self.start).as_secs_f64();
            (f64::from(self.from) + (f64::from(self.to) - f64::from(self.from)) * done) as f32
        }
    }
}

/// A patch accepted by `/patch/commit`, ready to be sent to the workers.
#[derive(Debug)]
pub struct CommittedPatch {
    /// Its version (1 is the patch the server started with).
    pub version: u32,
    /// Its TOML text, as the workers will compile it.
    pub text: String,
    /// The module instances, for the new address table.
    pub modules: Vec<(String, &'static chronus_dsp::ModuleSpec)>,
}

impl PatchEditor {
    /// An editor for the patch the server started with.
    ///
    /// # Errors
    /// If `desc` does not compile (the server checked it already).
    pub fn new(
        desc: PatchDesc,
        config: EngineConfig,
        snapshot_capacity: usize,
    ) -> Result<PatchEditor, String> {
        let mut editor = PatchEditor {
            current: desc.clone(),
            draft: None,
            draft_overrides: BTreeSet::new(),
            version: 1,
            values: Vec::new(),
            modules: Vec::new(),
            config,
            snapshot_capacity,
            clock: desc.clock.unwrap_or_default(),
            playing: desc.tracks.iter().map(|t| t.playing).collect(),
        };
        let patch = editor.compile(&desc)?;
        editor.adopt(&patch);
        Ok(editor)
    }

    /// Numbers the patches committed from now on above `version` (a resumed server's
    /// engines may hold patches numbered up to it).
    pub fn number_after(&mut self, version: u32) {
        self.version = self.version.max(version);
    }

    fn compile(&self, desc: &PatchDesc) -> Result<Patch, String> {
        Patch::compile(
            desc,
            self.config.sample_rate as f32,
            self.config.block_frames,
            self.config.seed,
        )
        .map_err(|e| e.to_string())
    }

    /// Follows the clock and the tracks through a switch from the running patch to
    /// `next`, as the engine's sequencer does (`Sequencer::take_over`): only a `[clock]`
    /// that differs from the running patch's sets the tempo and swing; a track keeps
    /// playing or not as its namesake did, and a new one starts as `next` says.
    fn follow_switch(&mut self, next: &PatchDesc) {
        if let Some(clock) = next.clock {
            if next.clock != self.current.clock {
                self.clock = clock;
            }
        }
        self.playing = next
            .tracks
            .iter()
            .map(|track| {
                let before = self
                    .current
                    .tracks
                    .iter()
                    .position(|t| t.name == track.name);
                before
                    .and_then(|i| self.playing.get(i).copied())
                    .unwrap_or(track.playing)
            })
            .collect();
    }

    fn adopt(&mut self, patch: &Patch) {
        self.modules = module_list(patch);
        self.values = (0..patch.node_count() as u16)
            .map(|n| {
                let count = patch.node_spec(n).map_or(0, |s| s.params.len()) as u16;
                (0..count)
                    .map(|p| Track::settled(patch.param(n, p).unwrap_or(0.0)))
                    .collect()
            })
            .collect();
    }

    /// Takes the parameter values of `patch` (a restored engine's: a resumed server goes
    /// on with what its predecessor played) for the modules it shares with the running
    /// patch (same id, same type).
    pub fn follow(&mut self, patch: &Patch) {
        for (node, (id, spec)) in self.modules.iter().enumerate() {
            let Some(there) = patch.node_index(id) else {
                continue;
            };
            if patch.node_spec(there).map(|s| s.type_name) != Some(spec.type_name) {
                continue;
            }
            for (param, track) in self.values[node].iter_mut().enumerate() {
                if let Some(value) = patch.param(there, param as u16) {
                    *track = Track::settled(value);
                }
            }
        }
    }

    /// The running patch's module instances (id, spec), in node order.
    pub fn modules(&self) -> &[(String, &'static chronus_dsp::ModuleSpec)] {
        &self.modules
    }

    /// Follows a command decoded from a client, taking effect at `at` (now, or a bundle's
    /// time), so `/get` answers what it sets when it sets it.
    pub fn observe(&mut self, command: &Command, at: Instant) {
        let (node, param, value, glide) = match *command {
            Command::SetParam { node, param, value } => (node, param, value, 0.0),
            Command::Ramp {
                node,
                param,
                target,
                seconds,
            } => (node, param, target, seconds),
            // To thousandths, as the engine keeps them (and a saved file shows them).
            Command::ClockTempo { bpm } => {
                self.clock.bpm = thousandths(bpm);
                return;
            }
            Command::ClockSwing { swing } => {
                self.clock.swing = thousandths(swing);
                return;
            }
            Command::TrackRun { track, on } => {
                if let Some(playing) = self.playing.get_mut(usize::from(track)) {
                    *playing = on;
                }
                return;
            }
            _ => return,
        };
        let spec = self.modules.get(usize::from(node)).map(|m| m.1);
        if let (Some(track), Some(spec)) = (
            self.values
                .get_mut(usize::from(node))
                .and_then(|v| v.get_mut(usize::from(param))),
            spec,
        ) {
            let to = spec
                .params
                .get(usize::from(param))
                .map_or(value, |p| p.clamp(value));
            let glide = Duration::try_from_secs_f32(glide).unwrap_or_default();
            *track = Track {
                from: track.at(at),
                to,
                start: at,
                end: at + glide,
            };
        }
    }

    /// Where a parameter is going: the last value set (a ramp's target), which a
    /// committed draft keeps.
    pub fn value(&self, node: u16, param: u16) -> Option<f32> {
        self.track(node, param).map(|t| t.to)
    }

    /// The value a parameter has at `now`: mid-ramp, the ramped value; before a timed
    /// change's moment, the value it replaces.
    pub fn value_at(&self, node: u16, param: u16, now: Instant) -> Option<f32> {
        self.track(node, param).map(|t| t.at(now))
    }

    fn track(&self, node: u16, param: u16) -> Option<&Track> {
        self.values.get(usize::from(node))?.get(usize::from(param))
    }

    fn draft_mut(&mut self) -> &mut PatchDesc {
        self.draft.get_or_insert_with(|| self.current.clone())
    }

    /// `/patch/add <id> <type>`.
    ///
    /// # Errors
    /// A duplicate id or an unknown type (with a suggestion).
    pub fn add(&mut self, id: &str, type_name: &str) -> Result<(), String> {
        if chronus_dsp::spec_for(type_name).is_none() {
            let known: Vec<&str> = chronus_dsp::all_specs()
                .iter()
                .map(|s| s.type_name)
                .collect();
            return Err(format!(
                "unknown module type '{type_name}' (types: {})",
                known.join(", ")
            ));
        }
        let draft = self.draft_mut();
        if has_node(draft, id) {
            return Err(format!("a module '{id}' already exists"));
        }
        draft.modules.push(ModuleDesc::new(id, type_name));
        Ok(())
    }

    /// `/patch/remove <id>`: removes the module (or instrument) and every connection to
    /// or from it.
    ///
    /// # Errors
    /// An unknown id.
    pub fn remove(&mut self, id: &str) -> Result<(), String> {
        let draft = self.draft_mut();
        let before = draft.modules.len() + draft.instruments.len();
        draft.modules.retain(|m| m.id != id);
        draft.instruments.retain(|i| i.name != id);
        if draft.modules.len() + draft.instruments.len() == before {
            return Err(format!("no module '{id}' in the patch"));
        }
        let module_of = |end: &str| end.split(':').next().unwrap_or("").to_string();
        draft
            .connections
            .retain(|c| module_of(&c.from) != id && module_of(&c.to) != id);
        Ok(())
    }

    /// `/patch/connect <from> <to>` (ports are checked by `/patch/commit`).
    ///
    /// # Errors
    /// A module that is not in the draft, or a connection that already exists.
    pub fn connect(&mut self, from: &str, to: &str) -> Result<(), String> {
        let draft = self.draft_mut();
        for end in [from, to] {
            let module = end.split(':').next().unwrap_or("");
            if !has_node(draft, module) {
                return Err(format!("no module '{module}' in the patch"));
            }
        }
        if draft
            .connections
            .iter()
            .any(|c| c.from == from && c.to == to)
        {
            return Err(format!("{from} is already connected to {to}"));
        }
        draft
            .connections
            .push(chronus_dsp::Connection::new(from, to));
        Ok(())
    }

    /// `/patch/disconnect <from> <to>` (`gain` and `gain:out` name the same output).
    ///
    /// # Errors
    /// A connection that does not exist.
    pub fn disconnect(&mut self, from: &str, to: &str) -> Result<(), String> {
        let draft = self.draft_mut();
        let wanted = (full_end(draft, from, true), full_end(draft, to, false));
        let ends: Vec<(String, String)> = draft
            .connections
            .iter()
            .map(|c| {
                (
                    full_end(draft, &c.from, true),
                    full_end(draft, &c.to, false),
                )
            })
            .collect();
        let before = draft.connections.len();
        let mut index = 0;
        draft.connections.retain(|_| {
            let keep = ends[index] != wanted;
            index += 1;
            keep
        });
        if draft.connections.len() == before {
            return Err(format!("{from} is not connected to {to}"));
        }
        Ok(())
    }

    /// `/patch/set <id> <param> <value>` in the draft (the range is checked on commit);
    /// `<instrument>.<id>` sets a module of every voice of an instrument.
    ///
    /// # Errors
    /// An unknown module or parameter.
    pub fn set(&mut self, id: &str, param: &str, value: f32) -> Result<(), String> {
        let draft = self.draft_mut();
        let module = match id.split_once('.') {
            None => draft.modules.iter_mut().find(|m| m.id == id),
            Some((instrument, member)) => draft
                .instruments
                .iter_mut()
                .find(|i| i.name == instrument)
                .and_then(|i| i.modules.iter_mut().find(|m| m.id == member)),
        };
        let Some(module) = module else {
            return Err(format!("no module '{id}' in the patch"));
        };
        let spec = chronus_dsp::spec_for(&module.type_name)
            .ok_or_else(|| format!("module '{id}' has an unknown type"))?;
        if spec.param_index(param).is_none() {
            let names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
            return Err(format!(
                "module '{id}' ({}) has no parameter '{param}' (parameters: {})",
                spec.type_name,
                names.join(", ")
            ));
        }
        module.params.insert(param.to_string(), value);
        self.draft_overrides
            .insert((id.to_string(), param.to_string()));
        Ok(())
    }

    /// `/patch/revert`: drops the draft.
    pub fn revert(&mut self) {
        self.draft = None;
        self.draft_overrides.clear();
    }

    /// `/patch/dump`: the draft if there is one, else the running patch, as TOML.
    pub fn dump(&self) -> String {
        self.draft
            .as_ref()
            .unwrap_or(&self.current)
            .to_toml_string()
    }

    /// `/patch/commit`: compiles the draft with the current parameter values folded in.
    /// On success the draft becomes the running patch (as far as the OSC side is
    /// concerned: the workers switch at the stamped frame).
    ///
    /// # Errors
    /// No draft, a patch that does not compile (the reason names module and port), or a
    /// patch whose state would not fit the snapshot area.
    pub fn commit(&mut self) -> Result<CommittedPatch, String> {
        let Some(mut draft) = self.draft.clone() else {
            return Err(
                "nothing to commit: edit the patch first (/patch/add, /patch/connect, …)"
                    .to_string(),
            );
        };
        self.fold_played_values(&mut draft);
        self.switch_to(draft)
    }

    /// `/library/load`: `desc` (a patch of the library) becomes the running patch, its
    /// own parameter values as written; a draft being edited is dropped. The tempo and
    /// the tracks follow as the engine's switch makes them: a `[clock]` that differs
    /// from the running patch's sets the tempo, and tracks of the same name keep playing
    /// or not.
    ///
    /// # Errors
    /// As [`commit`](Self::commit): a patch that does not compile or would not fit the
    /// snapshot area.
    pub fn load(&mut self, desc: PatchDesc) -> Result<CommittedPatch, String> {
        self.switch_to(desc)
    }

    /// `/library/save`: the running patch as it sounds now: every parameter at its
    /// current value (the draft's edits are not in it), the tracks as edited live, the
    /// tempo and swing as set, and each track playing or not.
    pub fn running(&self) -> PatchDesc {
        let mut desc = self.current.clone();
        self.fold_played_values(&mut desc);
        desc.clock = Some(self.clock);
        for (track, playing) in desc.tracks.iter_mut().zip(&self.playing) {
            track.playing = *playing;
        }
        desc
    }

    /// The tempo and swing as last set, for a saved patch.
    pub fn clock(&self) -> ClockDesc {
        self.clock
    }

    /// Keeps what was played: parameters of `desc` not set in the draft take their current
    /// values, the instruments' members' too (`<instrument>.<id>`), but for a voice's own
    /// note.
    fn fold_played_values(&self, desc: &mut PatchDesc) {
        let mut members: Vec<(String, &mut ModuleDesc)> = Vec::new();
        for instrument in &mut desc.instruments {
            for module in &mut instrument.modules {
                members.push((format!("{}.{}", instrument.name, module.id), module));
            }
        }
        let top = desc.modules.iter_mut().map(|m| (m.id.clone(), m));
        for (id, module) in top.chain(members) {
            let Some(node) = self.modules.iter().position(|(known, _)| *known == id) else {
                continue;
            };
            let spec = self.modules[node].1;
            if spec.type_name != module.type_name {
                continue;
            }
            let per_note = id.contains('.') && spec.type_name == note::SPEC.type_name;
            for (index, param) in spec.params.iter().enumerate() {
                if (per_note && note::PER_NOTE.contains(&index))
                    || self
                        .draft_overrides
                        .contains(&(id.clone(), param.name.to_string()))
                {
                    continue;
                }
                if let Some(value) = self.value(node as u16, index as u16) {
                    module.params.insert(param.name.to_string(), value);
                }
            }
        }
    }

    /// Compiles `draft` and makes it the running patch (the switch the workers make
    /// at the stamped frame), or says why not and changes nothing.
    fn switch_to(&mut self, draft: PatchDesc) -> Result<CommittedPatch, String> {
        let patch = self.compile(&draft)?;
        self.check_fits(&draft)?;
        self.version += 1;
        self.adopt(&patch);
        self.follow_switch(&draft);
        self.current = draft;
        self.revert();
        Ok(CommittedPatch {
            version: self.version,
            text: self.current.to_toml_string(),
            modules: self
                .modules
                .iter()
                .cloned()
                .chain(chronus_engine::sequencer::track_nodes(&self.current))
                .collect(),
        })
    }
}

impl PatchEditor {
    /// A live edit of track `track` (`/seq/<track>/pattern`, `…/instrument`,
    /// `…/length`): the running patch with that track changed, ready to be sent as a
    /// tracks switch. The change itself was checked when the message was decoded (the
    /// pattern parses, the instrument exists, the length is in range), so nothing is
    /// compiled here: an edit costs the OSC thread the patch's text, not its sound. A
    /// draft being edited gets the same change, so committing it later keeps it.
    ///
    /// # Errors
    /// No such track, or the patch's text grows beyond what a switch carries.
    pub fn edit_track(
        &mut self,
        track: &str,
        change: &TrackChange,
    ) -> Result<CommittedPatch, String> {
        let mut edited = self.current.clone();
        let Some(desc) = edited.tracks.iter_mut().find(|t| t.name == track) else {
            return Err(format!("no track '{track}' in the running patch"));
        };
        apply_track_change(desc, change);
        let committed = self.adopt_edit(edited)?;
        if let Some(draft) = &mut self.draft {
            if let Some(desc) = draft.tracks.iter_mut().find(|t| t.name == track) {
                apply_track_change(desc, change);
            }
        }
        Ok(committed)
    }

    /// The mapping of controller `controller` of MIDI channel `channel` in the running
    /// patch's `[midi]`, if it has one for that channel.
    pub fn midi_mapping(&self, channel: u8, controller: u8) -> Option<&CcMapping> {
        let mapping = self.current.midi.get(&format!("cc{controller}"))?;
        match mapping.channel() {
            Some(only) if only != channel => None,
            _ => Some(mapping),
        }
    }

    /// A learned mapping (`/midi/learn`): the running patch with controller `controller`
    /// of `channel` mapped to `param` (`"module.param"`) over its whole range, replacing
    /// that controller's mapping, ready to be sent as a switch that changes neither the
    /// sound nor the tracks. A draft being edited gets it too.
    ///
    /// # Errors
    /// A parameter no controller may move, or a text too long for a switch.
    pub fn map_controller(
        &mut self,
        channel: u8,
        controller: u8,
        param: &str,
    ) -> Result<CommittedPatch, String> {
        let key = format!("cc{controller}");
        let mapping = CcMapping::Ranged(RangedCc {
            param: param.to_string(),
            min: None,
            max: None,
            curve: None,
            channel: Some(channel),
        });
        let mut edited = self.current.clone();
        edited.midi.insert(key.clone(), mapping.clone());
        controllers::check(&edited).map_err(|e| e.to_string())?;
        let committed = self.adopt_edit(edited)?;
        if let Some(draft) = &mut self.draft {
            draft.midi.insert(key, mapping);
        }
        Ok(committed)
    }

    /// The running patch without controller `controller`'s mapping (`/midi/forget`),
    /// ready to be sent as a switch that changes neither the sound nor the tracks; a
    /// draft loses it too.
    ///
    /// # Errors
    /// The controller has no mapping.
    pub fn unmap_controller(&mut self, controller: u8) -> Result<CommittedPatch, String> {
        let key = format!("cc{controller}");
        let mut edited = self.current.clone();
        if edited.midi.remove(&key).is_none() {
            return Err(format!("controller {controller} is mapped to nothing"));
        }
        let committed = self.adopt_edit(edited)?;
        if let Some(draft) = &mut self.draft {
            draft.midi.remove(&key);
        }
        Ok(committed)
    }

    /// Makes `edited` (the running patch with a change that needs no compiling) the
    /// running patch, under a new version.
    fn adopt_edit(&mut self, edited: PatchDesc) -> Result<CommittedPatch, String> {
        let text = edited.to_toml_string();
        if text.len() > MAX_PATCH_TEXT {
            return Err(format!(
                "the patch's text would grow to {} bytes, beyond the {MAX_PATCH_TEXT} a patch switch carries",
                text.len()
            ));
        }
        self.version += 1;
        self.current = edited;
        Ok(CommittedPatch {
            version: self.version,
            text,
            modules: self
                .modules
                .iter()
                .cloned()
                .chain(chronus_engine::sequencer::track_nodes(&self.current))
                .collect(),
        })
    }

    /// Whether `desc` compiles (its tracks too) and an engine playing it fits the
    /// snapshot area that lets a spare join.
    fn check_fits(&self, desc: &PatchDesc) -> Result<(), String> {
        let engine = Engine::new(desc, self.config, 0).map_err(|e| e.to_string())?;
        let needed = engine.snapshot_len();
        if needed > self.snapshot_capacity {
            return Err(format!(
                "the patch's state ({needed} bytes) would not fit the snapshot area ({} bytes) that lets a spare join; use fewer or smaller modules",
                self.snapshot_capacity
            ));
        }
        Ok(())
    }
}

/// Changes a track as a live edit asks.
fn apply_track_change(track: &mut TrackDesc, change: &TrackChange) {
    match change {
        TrackChange::Pattern(pattern) => track.pattern.clone_from(pattern),
        TrackChange::Instrument(name) => track.instrument = Some(name.clone()),
        TrackChange::Bars(bars) => track.bars = *bars,
    }
}

/// A number as the engine keeps a tempo or a swing: to thousandths.
fn thousandths(value: f32) -> f64 {
    (f64::from(value) * 1000.0).round() / 1000.0
}

/// `module:port` for a connection end, filling in the module's first output (or input)
/// when only the module is named, as the patch compiler does.
/// Whether the patch has a module or an instrument called `id` (one namespace).
fn has_node(desc: &PatchDesc, id: &str) -> bool {
    desc.modules.iter().any(|m| m.id == id) || desc.instruments.iter().any(|i| i.name == id)
}

fn full_end(desc: &PatchDesc, end: &str, output: bool) -> String {
    if end.contains(':') {
        return end.to_string();
    }
    let instrument = desc
        .instruments
        .iter()
        .any(|i| i.name == end)
        .then_some(&chronus_dsp::INSTRUMENT_SPEC);
    let port = desc
        .modules
        .iter()
        .find(|m| m.id == end)
        .and_then(|m| chronus_dsp::spec_for(&m.type_name))
        .or(instrument)
        .and_then(|s| {
            if output {
                s.outputs.first()
            } else {
                s.inputs.first()
            }
        })
        .map(|p| p.name);
    match port {
        Some(port) => format!("{end}:{port}"),
        None => end.to_string(),
    }
}

/// (id, spec) of every module instance of a compiled patch, in node order.
pub fn module_list(patch: &Patch) -> Vec<(String, &'static chronus_dsp::ModuleSpec)> {
    (0..patch.node_count() as u16)
        .filter_map(|n| Some((patch.node_id(n)?.to_string(), patch.node_spec(n)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor() -> PatchEditor {
        PatchEditor::new(
            PatchDesc::default_patch(),
            EngineConfig::new(48_000, 64, 0),
            1 << 24,
        )
        .unwrap()
    }

    #[test]
    fn a_valid_edit_commits_and_keeps_played_values() {
        let mut e = editor();
        e.observe(
            &Command::SetParam {
                node: 0,
                param: 0,
                value: 330.0,
            },
            Instant::now(),
        );
        e.add("gain2", "gain").unwrap();
        e.disconnect("gain", "mix").unwrap();
        e.connect("gain", "gain2").unwrap();
        e.connect("gain2", "mix:in1").unwrap();
        e.set("gain2", "gain", 0.5).unwrap();
        let committed = e.commit().unwrap();
        assert_eq!(committed.version, 2);
        assert!(committed.text.contains("gain2"));
        assert_eq!(
            e.value(0, 0),
            Some(330.0),
            "the played frequency survives the commit"
        );
        let desc = PatchDesc::from_toml_str(&committed.text).unwrap();
        assert_eq!(desc.modules[0].params["freq"], 330.0);
    }

    #[test]
    fn get_reports_the_value_now_mid_ramp_and_before_a_timed_change() {
        let mut e = editor();
        let t0 = Instant::now();
        let cutoff = |e: &PatchEditor, at: Duration| e.value_at(2, 0, t0 + at).unwrap();
        let before = cutoff(&e, Duration::ZERO);
        // A ramp from the current value to 400 Hz over 2 s.
        e.observe(
            &Command::Ramp {
                node: 2,
                param: 0,
                target: 400.0,
                seconds: 2.0,
            },
            t0,
        );
        assert_eq!(cutoff(&e, Duration::ZERO), before);
        let halfway = cutoff(&e, Duration::from_secs(1));
        assert!((halfway - (before + 400.0) / 2.0).abs() < 1.0, "{halfway}");
        assert_eq!(cutoff(&e, Duration::from_secs(3)), 400.0);
        assert_eq!(e.value(2, 0), Some(400.0), "the target, for a commit");
        // A bundle timed 5 s ahead: the old value until then.
        e.observe(
            &Command::SetParam {
                node: 2,
                param: 0,
                value: 900.0,
            },
            t0 + Duration::from_secs(5),
        );
        assert_eq!(cutoff(&e, Duration::from_secs(4)), 400.0);
        assert_eq!(cutoff(&e, Duration::from_secs(5)), 900.0);
        // A ramp started mid-ramp starts where the first one is.
        e.observe(
            &Command::Ramp {
                node: 2,
                param: 0,
                target: 100.0,
                seconds: 1.0,
            },
            t0 + Duration::from_millis(5_500),
        );
        assert_eq!(cutoff(&e, Duration::from_millis(5_500)), 900.0);
        assert_eq!(cutoff(&e, Duration::from_secs(7)), 100.0);
    }

    #[test]
    fn a_commit_keeps_what_was_played_on_instruments_and_a_resume_follows_the_engine() {
        let mut e = editor();
        let table = chronus_protocol::table_for_patch(&PatchDesc::default_patch(), false).unwrap();
        let (cutoff, param) = table.param_at("/mod/keys.filter/cutoff").unwrap();
        e.observe(
            &Command::SetParam {
                node: cutoff,
                param,
                value: 700.0,
            },
            Instant::now(),
        );
        e.add("x", "gain").unwrap();
        let committed = e.commit().unwrap();
        let desc = PatchDesc::from_toml_str(&committed.text).unwrap();
        let filter = &desc.instruments[0].modules[2];
        assert_eq!(
            (filter.id.as_str(), filter.params["cutoff"]),
            ("filter", 700.0)
        );
        // The new patch numbers its nodes anew (x comes before the instrument).
        let moved = e
            .modules()
            .iter()
            .position(|(id, _)| id == "keys.filter")
            .unwrap() as u16;
        assert_ne!(moved, cutoff);
        assert_eq!(e.value(moved, param), Some(700.0), "/get after the commit");
        assert!(
            !desc.instruments[0].modules[0].params.contains_key("pitch"),
            "a voice's note is not folded in"
        );

        // A restored engine's values are followed.
        let mut fresh = editor();
        let mut played = Patch::compile(&PatchDesc::default_patch(), 48_000.0, 64, 0).unwrap();
        played.set_param(2, 0, 1234.0);
        fresh.follow(&played);
        assert_eq!(fresh.value(2, 0), Some(1234.0));
    }

    #[test]
    fn the_running_patch_keeps_live_values_tempo_and_tracks_and_a_load_follows_the_switch() {
        let groove =
            PatchDesc::from_toml_str(include_str!("../../../patches/groove.toml")).unwrap();
        let mut e =
            PatchEditor::new(groove.clone(), EngineConfig::new(48_000, 64, 0), 1 << 26).unwrap();
        let table = chronus_protocol::table_for_patch(&groove, false).unwrap();
        let (node, param) = table.param_at("/mod/bass.filter/cutoff").unwrap();
        let now = Instant::now();
        e.observe(
            &Command::SetParam {
                node,
                param,
                value: 900.0,
            },
            now,
        );
        e.observe(&Command::ClockTempo { bpm: 132.5 }, now);
        e.observe(&Command::ClockSwing { swing: 0.6 }, now);
        e.observe(
            &Command::TrackRun {
                track: 2,
                on: false,
            },
            now,
        );
        let saved = e.running();
        assert_eq!(saved.instruments[1].modules[2].params["cutoff"], 900.0);
        assert_eq!(
            saved.clock,
            Some(ClockDesc {
                bpm: 132.5,
                swing: 0.6
            })
        );
        let playing: Vec<bool> = saved.tracks.iter().map(|t| t.playing).collect();
        assert_eq!(playing, [true, true, false]);
        // What is saved reads back equal.
        let text = saved.to_toml_string();
        assert_eq!(PatchDesc::from_toml_str(&text).unwrap(), saved);

        // Loading a patch with another [clock] takes its tempo; its own values, not the
        // played ones; the track of the same name stays stopped.
        let mut other = groove.clone();
        other.clock = Some(ClockDesc {
            bpm: 90.0,
            swing: 0.5,
        });
        let loaded = e.load(other).unwrap();
        assert_eq!(loaded.version, 2);
        let desc = PatchDesc::from_toml_str(&loaded.text).unwrap();
        assert_eq!(desc.instruments[1].modules[2].params["cutoff"], 500.0);
        let after = e.running();
        assert_eq!(
            after.clock,
            Some(ClockDesc {
                bpm: 90.0,
                swing: 0.5
            })
        );
        assert!(!after.tracks[2].playing);
        assert_eq!(after.instruments[1].modules[2].params["cutoff"], 500.0);
        // The same [clock] again keeps a tempo set live, as the engine does.
        e.observe(&Command::ClockTempo { bpm: 100.0 }, now);
        e.load(after.clone()).unwrap();
        assert_eq!(e.clock().bpm, 100.0);
        // A patch that does not compile is refused and nothing changes.
        let mut broken = after;
        broken
            .connections
            .push(chronus_dsp::Connection::new("nope", "out"));
        assert!(e.load(broken).is_err());
        assert_eq!(e.running().tracks.len(), 3);
    }

    #[test]
    fn instruments_are_rewired_live() {
        let mut e = editor();
        e.disconnect("keys", "mix:in2").unwrap();
        e.connect("keys:out", "mix:in3").unwrap();
        assert!(e
            .add("keys", "gain")
            .unwrap_err()
            .contains("already exists"));
        let committed = e.commit().unwrap();
        assert!(committed.text.contains("mix:in3"), "{}", committed.text);
        e.remove("keys").unwrap();
        let committed = e.commit().unwrap();
        assert!(!committed.text.contains("keys"), "{}", committed.text);
    }

    #[test]
    fn a_member_of_an_instrument_is_set_for_every_voice() {
        let mut e = editor();
        e.set("keys.filter", "cutoff", 1234.0).unwrap();
        assert!(e
            .set("keys.nope", "cutoff", 1.0)
            .unwrap_err()
            .contains("no module 'keys.nope'"));
        assert!(e
            .set("nope.filter", "cutoff", 1.0)
            .unwrap_err()
            .contains("no module 'nope.filter'"));
        let committed = e.commit().unwrap();
        let desc = PatchDesc::from_toml_str(&committed.text).unwrap();
        let filter = desc.instruments[0]
            .modules
            .iter()
            .find(|m| m.id == "filter")
            .unwrap();
        assert_eq!(filter.params["cutoff"], 1234.0);
    }

    #[test]
    fn bad_edits_are_refused_and_change_nothing() {
        let mut e = editor();
        assert!(e
            .add("sine", "sine")
            .unwrap_err()
            .contains("already exists"));
        assert!(e
            .add("x", "sinee")
            .unwrap_err()
            .contains("unknown module type"));
        assert!(e.remove("nope").is_err());
        assert!(e.connect("nope", "out").is_err());
        assert!(e.disconnect("sine", "out").is_err());
        assert!(e.set("sine", "nope", 1.0).unwrap_err().contains("freq"));
        let before = e.dump();
        // A cycle is refused on commit, and the running patch stays.
        e.connect("gain", "sine").ok();
        e.add("g2", "gain").unwrap();
        e.connect("gain", "g2").unwrap();
        e.connect("g2", "adsr").unwrap();
        let err = e.commit().unwrap_err();
        assert!(
            err.contains("cycle") || err.contains("connected twice") || err.contains("input"),
            "{err}"
        );
        e.revert();
        assert_eq!(e.dump(), before);
        assert!(e.commit().is_err(), "nothing to commit");
    }
}
