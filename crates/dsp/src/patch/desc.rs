//! The patch description: what a `patch.toml` says, before compilation.
//!
//! A [`PatchDesc`] is plain data (modules with ids, types and parameter values; and
//! connections between ports). It is what travels in files and commands; it only becomes
//! something that renders when [`super::Patch::compile`] has checked it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PatchError;

/// A whole patch: modules and the connections between their ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchDesc {
    /// The modules; a module's position here is its node index in commands.
    pub modules: Vec<ModuleDesc>,
    /// Port-to-port connections; unconnected inputs read silence.
    #[serde(default)]
    pub connections: Vec<Connection>,
    /// Polyphonic instruments: sub-graphs rendered once per voice, played with notes.
    /// Each appears in `connections` as a source module with the instrument's name and
    /// one output, `out`, the sum of its voices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instruments: Vec<InstrumentDesc>,
    /// The tempo clock's settings (`[clock]`); without it the clock runs at
    /// [`ClockDesc::default`]. A patch switch to a patch that has one sets the tempo on
    /// the next beat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockDesc>,
    /// Sequencer tracks (`[[tracks]]`): patterns played on instruments in time with the
    /// clock. The engine plays them; this crate only carries them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<TrackDesc>,
    /// Controllers mapped to parameters (`[midi]`, keys `cc0` to `cc127`; see
    /// [`super::controllers`]). The server applies them; the engine never sees them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub midi: BTreeMap<String, super::controllers::CcMapping>,
}

/// The tempo clock of a patch: its tempo and swing. Bars are four beats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockDesc {
    /// Beats per minute (20..=400; kept to thousandths of a beat per minute, so bar lines
    /// are exact frames).
    #[serde(default = "ClockDesc::default_bpm")]
    pub bpm: f64,
    /// Where the off-beat sixteenth falls within its pair, as a fraction of the pair:
    /// 0.5 is straight, 0.66 a triplet feel, up to 0.75 (the swing of drum machines).
    #[serde(default = "ClockDesc::default_swing")]
    pub swing: f64,
}

impl ClockDesc {
    fn default_bpm() -> f64 {
        120.0
    }

    fn default_swing() -> f64 {
        0.5
    }
}

impl Default for ClockDesc {
    /// 120 beats per minute, straight.
    fn default() -> ClockDesc {
        ClockDesc {
            bpm: ClockDesc::default_bpm(),
            swing: ClockDesc::default_swing(),
        }
    }
}

/// A sequencer track: a pattern (see `docs/patterns.md`) played on an instrument, each
/// cycle of the pattern spread over `bars` bars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackDesc {
    /// Unique among the patch's tracks; addressed as `/seq/<name>/…`.
    pub name: String,
    /// The instrument that plays it; the patch's first instrument when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instrument: Option<String>,
    /// The pattern, in the notation of `docs/patterns.md` (`"bd ~ sn ~, hh*8"`).
    pub pattern: String,
    /// Bars one cycle of the pattern lasts (1..=64).
    #[serde(default = "TrackDesc::one_bar")]
    pub bars: u32,
    /// Whether it plays from the start (true when left out).
    #[serde(default = "TrackDesc::plays")]
    pub playing: bool,
}

impl TrackDesc {
    fn one_bar() -> u32 {
        1
    }

    fn plays() -> bool {
        true
    }
}

/// A polyphonic instrument: a voice's sub-graph, instantiated `voices` times.
///
/// Inside it, the module ids are its own (they are addressed as `<instrument>.<id>`:
/// `/mod/keys.filter/cutoff` sets the cutoff of every voice), a `note` module gives each
/// voice its note, and the connection target `out` is the voice's output. Notes are
/// given to voices by the instrument's allocator (`/note/on`), never by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentDesc {
    /// Unique among the patch's module ids and instrument names.
    pub name: String,
    /// How many notes can sound at once (1..=4096); all are allocated when the patch is
    /// compiled, so a note never allocates.
    pub voices: usize,
    /// The modules of one voice.
    pub modules: Vec<ModuleDesc>,
    /// Connections inside one voice; `out` (or `out:out`) is the voice's output.
    #[serde(default)]
    pub connections: Vec<Connection>,
    /// Its arpeggiator's settings (`arp = { mode = "up", … }`); without it the
    /// arpeggiator is off at [`ArpDesc::default`] settings, ready for `/arp/<name>/on 1`.
    /// The engine plays it; this crate only carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp: Option<ArpDesc>,
}

/// The order an arpeggiator plays the notes held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArpMode {
    /// Lowest to highest, octave after octave.
    Up,
    /// Highest to lowest.
    Down,
    /// Up then down, the top and bottom notes played once per turn.
    UpDown,
    /// A seeded random choice each step: the same in every worker and every replay.
    Random,
}

impl ArpMode {
    /// Every mode, in the order of their codes ([`ArpMode::code`]).
    pub const ALL: [ArpMode; 4] = [ArpMode::Up, ArpMode::Down, ArpMode::UpDown, ArpMode::Random];

    /// The name used in patch files and OSC (`up`, `down`, `updown`, `random`).
    pub fn name(self) -> &'static str {
        match self {
            ArpMode::Up => "up",
            ArpMode::Down => "down",
            ArpMode::UpDown => "updown",
            ArpMode::Random => "random",
        }
    }

    /// The mode called `name`.
    pub fn from_name(name: &str) -> Option<ArpMode> {
        ArpMode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// A small number for command records and snapshots.
    pub fn code(self) -> u8 {
        match self {
            ArpMode::Up => 0,
            ArpMode::Down => 1,
            ArpMode::UpDown => 2,
            ArpMode::Random => 3,
        }
    }

    /// The mode of [`ArpMode::code`] `code`.
    pub fn from_code(code: u64) -> Option<ArpMode> {
        ArpMode::ALL
            .into_iter()
            .find(|m| u64::from(m.code()) == code)
    }
}

/// An instrument's arpeggiator as a patch file declares it: it plays the notes held on
/// the instrument one after another, on the clock's grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArpDesc {
    /// Whether it plays from the start (true when left out: declaring one means using it).
    #[serde(default = "ArpDesc::default_on")]
    pub on: bool,
    /// The order of the notes.
    #[serde(default = "ArpDesc::default_mode")]
    pub mode: ArpMode,
    /// Octaves the held notes are spread over (1..=4).
    #[serde(default = "ArpDesc::default_octaves")]
    pub octaves: u32,
    /// Beats from one step to the next (0.25: sixteenths), in 96ths of a beat.
    #[serde(default = "ArpDesc::default_rate")]
    pub rate: f64,
    /// How long each note sounds, as a fraction of its step (0.05..=1).
    #[serde(default = "ArpDesc::default_gate")]
    pub gate: f64,
}

impl ArpDesc {
    fn default_on() -> bool {
        true
    }

    fn default_mode() -> ArpMode {
        ArpMode::Up
    }

    fn default_octaves() -> u32 {
        1
    }

    fn default_rate() -> f64 {
        0.25
    }

    fn default_gate() -> f64 {
        0.5
    }
}

impl Default for ArpDesc {
    /// On, up, one octave, sixteenths, half-step notes.
    fn default() -> ArpDesc {
        ArpDesc {
            on: ArpDesc::default_on(),
            mode: ArpDesc::default_mode(),
            octaves: ArpDesc::default_octaves(),
            rate: ArpDesc::default_rate(),
            gate: ArpDesc::default_gate(),
        }
    }
}

/// One module instance in a patch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleDesc {
    /// Unique id, used in connections and OSC addresses (`/mod/<id>/<param>`).
    pub id: String,
    /// Module type name (`sine`, `adsr`, …), see `modules::all_specs`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Initial parameter values by name; missing ones take the spec's default.
    /// A BTreeMap so that serialisation order is deterministic.
    #[serde(default)]
    pub params: BTreeMap<String, f32>,
}

/// One connection: `from` an output to `to` an input.
///
/// Endpoints are written `"module:port"`, or just `"module"` for the module's first
/// output (in `from`) or first input (in `to`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// Source: an output port.
    pub from: String,
    /// Destination: an input port.
    pub to: String,
}

impl ModuleDesc {
    /// A module with default parameters; a convenience for building patches in code.
    pub fn new(id: &str, type_name: &str) -> Self {
        ModuleDesc {
            id: id.to_string(),
            type_name: type_name.to_string(),
            params: BTreeMap::new(),
        }
    }

    /// Sets an initial parameter value (builder style).
    pub fn with_param(mut self, name: &str, value: f32) -> Self {
        self.params.insert(name.to_string(), value);
        self
    }
}

impl Connection {
    /// A connection from `from` to `to` (each `"module"` or `"module:port"`).
    pub fn new(from: &str, to: &str) -> Self {
        Connection {
            from: from.to_string(),
            to: to.to_string(),
        }
    }
}

impl InstrumentDesc {
    /// The default patch's instrument: 16 voices of note -> saw -> ladder -> adsr -> vca
    /// (ids "note", "osc", "filter", "env", "vca"), velocity on the VCA's cv: a classic
    /// subtractive polysynth, `/note/on 60 100` away from sound.
    pub fn keys() -> InstrumentDesc {
        InstrumentDesc {
            name: "keys".to_string(),
            voices: 16,
            modules: vec![
                ModuleDesc::new("note", "note"),
                ModuleDesc::new("osc", "saw")
                    .with_param("freq", 0.0)
                    .with_param("gain", 0.3),
                ModuleDesc::new("filter", "ladder")
                    .with_param("cutoff", 2_500.0)
                    .with_param("resonance", 0.2),
                ModuleDesc::new("env", "adsr")
                    .with_param("attack", 5.0)
                    .with_param("decay", 300.0)
                    .with_param("sustain", 0.6)
                    .with_param("release", 250.0),
                ModuleDesc::new("vca", "vca"),
            ],
            connections: vec![
                Connection::new("note:freq", "osc:fm"),
                Connection::new("osc:out", "filter:in"),
                Connection::new("filter:out", "env:in"),
                Connection::new("env:out", "vca:in"),
                Connection::new("note:velocity", "vca:cv"),
                Connection::new("vca:out", "out"),
            ],
            arp: None,
        }
    }
}

impl PatchDesc {
    /// The patch played when no patch is given: the prototype's seed voice, sine -> adsr ->
    /// filter (biquad) -> gain (ids "sine", "adsr", "filter", "gain"), played with
    /// `/gate/adsr`, and the instrument `keys` ([`InstrumentDesc::keys`]), played with
    /// `/note/on`, mixed by `mix` into `out` (output). With no note playing the mix adds
    /// exact zeros, so the seed voice sounds as it did alone.
    pub fn default_patch() -> PatchDesc {
        PatchDesc {
            modules: vec![
                ModuleDesc::new("sine", "sine"),
                ModuleDesc::new("adsr", "adsr"),
                ModuleDesc::new("filter", "biquad"),
                ModuleDesc::new("gain", "gain"),
                ModuleDesc::new("out", "output"),
                ModuleDesc::new("mix", "mixer").with_param("level2", 0.5),
            ],
            connections: vec![
                Connection::new("sine:out", "adsr:in"),
                Connection::new("adsr:out", "filter:in"),
                Connection::new("filter:out", "gain:in"),
                Connection::new("gain:out", "mix:in1"),
                Connection::new("keys:out", "mix:in2"),
                Connection::new("mix:out", "out:left"),
            ],
            instruments: vec![InstrumentDesc::keys()],
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        }
    }

    /// Parses a patch from TOML: `[[modules]]` tables with `id`, `type` and an optional
    /// `params` table, and `[[connections]]` tables with `from` and `to`. Only the syntax
    /// is checked here; [`super::Patch::compile`] checks the meaning.
    ///
    /// # Errors
    /// [`PatchError::Parse`] with the parser's message (line and column) for malformed
    /// TOML, missing keys, unknown keys or wrongly typed values.
    pub fn from_toml_str(s: &str) -> Result<PatchDesc, PatchError> {
        toml::from_str(s).map_err(|e| PatchError::Parse {
            message: e.to_string(),
        })
    }

    /// Whether `other` makes the same sound: the same modules with the same settings, the
    /// same connections and instruments; only the clock and the tracks may differ. A live
    /// edit of a track switches just the tracks of such a patch, and the sound plays on.
    pub fn same_sound(&self, other: &PatchDesc) -> bool {
        self.modules == other.modules
            && self.connections == other.connections
            && self.instruments == other.instruments
    }

    /// Writes the patch as TOML that [`PatchDesc::from_toml_str`] reads back to an equal
    /// description (used to save the running patch).
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self)
            .expect("PatchDesc holds only strings, floats, arrays and string-keyed tables, which TOML always represents")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_patches_compile() {
        for text in [
            include_str!("../../../../patches/bass.toml"),
            include_str!("../../../../patches/pad.toml"),
            include_str!("../../../../patches/poly.toml"),
            include_str!("../../../../patches/presets/pad.toml"),
            include_str!("../../../../patches/presets/bass.toml"),
            include_str!("../../../../patches/presets/lead.toml"),
            include_str!("../../../../patches/presets/pluck.toml"),
            include_str!("../../../../patches/presets/keys.toml"),
            include_str!("../../../../patches/presets/bell.toml"),
            include_str!("../../../../patches/presets/drone.toml"),
            include_str!("../../../../patches/presets/drums.toml"),
        ] {
            let desc = PatchDesc::from_toml_str(text).unwrap();
            crate::Patch::compile(&desc, 48_000.0, 64, 1).unwrap();
            assert_eq!(
                PatchDesc::from_toml_str(&desc.to_toml_string()).unwrap(),
                desc
            );
        }
        let poly = PatchDesc::from_toml_str(include_str!("../../../../patches/poly.toml")).unwrap();
        assert_eq!(poly.instruments[0].voices, 32);
    }

    #[test]
    fn default_patch_toml_round_trip() {
        let d = PatchDesc::default_patch();
        let text = d.to_toml_string();
        assert!(text.contains("[[modules]]") && text.contains("[[connections]]"));
        assert_eq!(PatchDesc::from_toml_str(&text).unwrap(), d);
    }

    #[test]
    fn params_round_trip_and_integers_accepted() {
        let text = r#"
            [[modules]]
            id = "osc"
            type = "sine"
            params = { freq = 220, gain = 0.25 }

            [[modules]]
            id = "out"
            type = "output"

            [[connections]]
            from = "osc"
            to = "out:left"
        "#;
        let d = PatchDesc::from_toml_str(text).unwrap();
        assert_eq!(d.modules[0].params["freq"], 220.0);
        assert_eq!(d.modules[0].params["gain"], 0.25);
        assert_eq!(d.connections, vec![Connection::new("osc", "out:left")]);
        assert_eq!(PatchDesc::from_toml_str(&d.to_toml_string()).unwrap(), d);
    }

    #[test]
    fn parse_errors_are_reported_with_location() {
        let err = PatchDesc::from_toml_str("[[modules]]\nid = \"a\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("type"), "{msg}");
        let err =
            PatchDesc::from_toml_str("[[modules]]\nid = \"a\"\ntype = \"sine\"\nparms = {}\n")
                .unwrap_err();
        assert!(err.to_string().contains("parms"), "{err}");
        let err = PatchDesc::from_toml_str("modules = [\n").unwrap_err();
        assert!(matches!(err, PatchError::Parse { .. }));
    }
}
