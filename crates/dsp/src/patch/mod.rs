//! Patches: a description ([`PatchDesc`]) compiled into a runnable graph ([`Patch`]).
//!
//! Compilation does all the checking and all the allocation: ids, types, parameters,
//! ports, single-driver inputs, acyclicity, exactly one output; then a deterministic
//! topological order and one preallocated buffer per output port (all of a patch's in
//! one allocation). Rendering then walks the nodes in that order with no allocation, no
//! locks and no panics, and guards the graph against NaN/inf with a per-module reset.

pub mod controllers;
mod desc;
mod error;
mod instrument;
mod module_state;

pub use desc::{
    ArpDesc, ArpMode, ClockDesc, Connection, InstrumentDesc, ModuleDesc, PatchDesc, TrackDesc,
};
pub use error::PatchError;
pub use instrument::{Expression, FADE_SECONDS, INSTRUMENT_SPEC, MAX_VOICES, VOICE_OUT};

use instrument::Instrument;

use std::collections::{BTreeMap, BTreeSet};

use crate::module::{Module, VoiceLanes, MAX_PORTS, VOICE_LANES};
use crate::modules;
use crate::modules::biquad::BiquadLanes;
use crate::modules::ladder::LadderLanes;
use crate::spec::{ModuleSpec, Rate};
use crate::state::{StateError, StateReader, StateWriter};

/// First four bytes of a patch snapshot ("CHRN" little-endian), so foreign bytes are
/// refused instead of loaded.
pub const STATE_MAGIC: u32 = u32::from_le_bytes(*b"CHRN");
/// Snapshot format version; bump when any module's layout changes.
pub const STATE_VERSION: u32 = 4;
/// Bytes the patch itself writes before the modules: magic, version, fingerprint,
/// non-finite reset counter.
const HEADER_LEN: usize = 4 + 4 + 8 + 8;

// A node's outputs are told apart in `u8` masks (the guard's, `Module::outputs_read`).
const _: () = assert!(MAX_PORTS <= u8::BITS as usize);

/// Where an input port reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Unconnected: the shared zero buffer.
    Zero,
    /// An output buffer of a node earlier in execution order: its node, its port, and
    /// its place in the patch's buffers ([`Patch::buffers`], in `max_block`s).
    Node {
        exec: usize,
        port: usize,
        buffer: usize,
    },
}

/// What renders at a node: a module, or an instrument (all its voices, summed).
enum Unit {
    Module(Box<dyn Module>),
    Instrument(Box<Instrument>),
}

impl Unit {
    fn spec(&self) -> &'static ModuleSpec {
        match self {
            Unit::Module(m) => m.spec(),
            Unit::Instrument(_) => &INSTRUMENT_SPEC,
        }
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        match self {
            Unit::Module(m) => m.process(inputs, outputs),
            Unit::Instrument(i) => {
                if let Some(out) = outputs.first_mut() {
                    i.process(out);
                }
            }
        }
    }

    fn reset(&mut self) {
        match self {
            Unit::Module(m) => m.reset(),
            Unit::Instrument(i) => i.reset(),
        }
    }

    /// Notes or envelopes sounding: an envelope that is not idle counts one, an
    /// instrument counts its sounding voices.
    fn sounding(&self) -> usize {
        match self {
            Unit::Module(m) => usize::from(m.is_sounding()),
            Unit::Instrument(i) => i.voices_sounding(),
        }
    }

    fn save_state(&self, w: &mut StateWriter<'_>) {
        match self {
            Unit::Module(m) => m.save_state(w),
            Unit::Instrument(i) => i.save_state(w),
        }
    }

    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        match self {
            Unit::Module(m) => m.load_state(r),
            Unit::Instrument(i) => i.load_state(r),
        }
    }

    fn state_len(&self) -> usize {
        let mut counter = StateWriter::counter();
        self.save_state(&mut counter);
        counter.position()
    }
}

/// A module of an instrument's voice, addressed as one node (`<instrument>.<id>`): what
/// is set on it is set on every voice.
struct Member {
    /// `<instrument>.<id>`.
    id: String,
    /// Execution position of the instrument's node.
    exec: usize,
    /// The module's node in each voice's patch.
    local: u16,
}

/// One module instance (or instrument) with its wiring and output buffers.
struct Node {
    id: String,
    unit: Unit,
    /// `unit.state_len()`, counted once at compile time (it is constant per instance).
    state_len: usize,
    /// One source per input port.
    inputs: Vec<Source>,
    /// Where each input's samples start in [`Patch::buffers`] (the zeros for an
    /// unconnected one): `inputs` resolved once, so reading an input at every block is
    /// one slice of the buffers.
    reads: [usize; MAX_PORTS],
    /// Place of its first output port's buffer in [`Patch::buffers`] (in `max_block`s);
    /// the others follow.
    first: usize,
    /// Number of output ports.
    outputs: usize,
    /// The outputs the NaN guard scans (bit `i`: output `i`): those another module
    /// reads (a bad value in an output nobody reads reaches nothing), none for a module
    /// that is [`Module::always_finite`].
    guarded: u8,
    /// Whether its module has a [`VoiceLanes`] kernel ([`Module::side_by_side`]), asked
    /// once here rather than for every voice at every block.
    has_lanes: bool,
}

/// A compiled, runnable patch.
///
/// Nodes are addressed by their index in the description's module list (a `u16`, as
/// commands carry it); they run in a topological order fixed at compile time, so the
/// same patch and the same calls always render the same bits.
pub struct Patch {
    sample_rate: f32,
    max_block: usize,
    /// Nodes in execution order.
    nodes: Vec<Node>,
    /// Declaration index -> execution position.
    exec_of: Vec<usize>,
    /// Id -> node index (declaration index; instrument members after every declaration).
    by_id: BTreeMap<String, u16>,
    /// Instrument members, by node index minus `exec_of.len()`.
    members: Vec<Member>,
    /// Execution positions of the nodes that may sound on their own: modules with a
    /// gate ([`Module::is_sounding`]) and instruments; what
    /// [`Patch::voices_sounding`] asks, every voice at every block.
    may_sound: Vec<usize>,
    /// Execution position of the `output` node.
    output_exec: usize,
    /// Whether some module reads the output module's outputs, so it must run; otherwise
    /// `render` skips this pass-through and `process` copies its sources directly.
    output_is_read: bool,
    /// Every block buffer of the patch in one allocation, `max_block` each: first the
    /// zeros unconnected inputs read, then each node's outputs, in execution order (so
    /// a node's inputs all lie before its outputs). One contiguous block per patch,
    /// rather than one allocation per port, keeps a voice's buffers together in the
    /// caches and saves a pointer to chase per port.
    buffers: Vec<f32>,
    /// What the output module's left input reads: a voice's output
    /// ([`Patch::mono_block`]).
    mono: Source,
    nonfinite_resets: u64,
    fingerprint: u64,
    /// Fault injection ([`Patch::panic_in_next_process`]): panic in the next module's
    /// `process`.
    panic_in_process: bool,
}

impl std::fmt::Debug for Patch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patch")
            .field("sample_rate", &self.sample_rate)
            .field("max_block", &self.max_block)
            .field(
                "execution_order",
                &self.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            )
            .field("nonfinite_resets", &self.nonfinite_resets)
            .finish()
    }
}

/// A connection feeding one input, during compilation.
#[derive(Clone, Copy)]
struct Wire<'a> {
    /// Source module (declaration index).
    src: usize,
    /// Source output port.
    port: usize,
    /// The connection's `from` as written, for error messages.
    text: &'a str,
}

/// Per module, per input port: the wire feeding it, if any.
type Wiring<'a> = Vec<Vec<Option<Wire<'a>>>>;

/// A parsed connection endpoint: module declaration index and port index.
struct Endpoint {
    module: usize,
    port: usize,
}

fn names(ports: impl IntoIterator<Item = &'static str>) -> String {
    let v: Vec<&str> = ports.into_iter().collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// SplitMix64 step: derives an independent, reproducible seed per node from the patch seed.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, for the structural fingerprint stored in snapshots (stable across runs and
/// machines, unlike std's randomly keyed hasher).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

impl Patch {
    /// Checks `desc` and builds the runnable graph, with every buffer allocated for blocks
    /// of up to `max_block` frames. `seed` is split into one seed per node for modules with
    /// random state. Initial parameter values apply immediately (no glide from defaults).
    ///
    /// # Errors
    /// - [`PatchError::InvalidSettings`]: sample rate not finite and positive, or `max_block` 0;
    /// - [`PatchError::TooManyModules`]: more modules than a `u16` index addresses;
    /// - [`PatchError::InvalidId`], [`PatchError::DuplicateId`]: bad or repeated module ids;
    /// - [`PatchError::UnknownType`]: with a "did you mean" suggestion when one is close;
    /// - [`PatchError::TooManyPorts`]: a type with more than [`MAX_PORTS`] ports;
    /// - [`PatchError::UnknownParam`], [`PatchError::ParamOutOfRange`]: bad initial values;
    /// - [`PatchError::OutputCount`]: not exactly one `output` module;
    /// - [`PatchError::UnknownModule`], [`PatchError::UnknownPort`]: bad connection endpoints;
    /// - [`PatchError::InputConnectedTwice`]: two connections into one input;
    /// - [`PatchError::Cycle`]: the connections loop (the modules on the loop are named).
    pub fn compile(
        desc: &PatchDesc,
        sample_rate: f32,
        max_block: usize,
        seed: u64,
    ) -> Result<Patch, PatchError> {
        if !(sample_rate.is_finite() && sample_rate > 0.0) || max_block == 0 {
            return Err(PatchError::InvalidSettings {
                sample_rate,
                max_block,
            });
        }
        controllers::check(desc)?;
        // Declarations: the modules, then the instruments (each a source in the graph).
        let module_count = desc.modules.len();
        let count = module_count + desc.instruments.len();
        let nodes_addressed = count
            + desc
                .instruments
                .iter()
                .map(|i| i.modules.len())
                .sum::<usize>();
        if nodes_addressed > usize::from(u16::MAX) {
            return Err(PatchError::TooManyModules {
                count: nodes_addressed,
                max: usize::from(u16::MAX),
            });
        }
        let ids: Vec<&str> = desc
            .modules
            .iter()
            .map(|m| m.id.as_str())
            .chain(desc.instruments.iter().map(|i| i.name.as_str()))
            .collect();

        // Ids.
        let mut by_id: BTreeMap<String, u16> = BTreeMap::new();
        for (i, &id) in ids.iter().enumerate() {
            if !valid_id(id) {
                return Err(PatchError::InvalidId { id: id.to_string() });
            }
            // `count <= u16::MAX`, so the index fits.
            let idx = u16::try_from(i).unwrap_or(u16::MAX);
            if let Some(&first) = by_id.get(id) {
                return Err(PatchError::DuplicateId {
                    id: id.to_string(),
                    first: usize::from(first),
                    second: i,
                });
            }
            by_id.insert(id.to_string(), idx);
        }

        // Types and parameters.
        let mut specs: Vec<&'static ModuleSpec> = Vec::with_capacity(count);
        for m in &desc.modules {
            let spec = modules::spec_for(&m.type_name).ok_or_else(|| PatchError::UnknownType {
                module: m.id.clone(),
                type_name: m.type_name.clone(),
                suggestion: error::suggest(
                    &m.type_name,
                    modules::all_specs().iter().map(|s| s.type_name),
                ),
                known: names(modules::all_specs().iter().map(|s| s.type_name)),
            })?;
            for (direction, n) in [("input", spec.inputs.len()), ("output", spec.outputs.len())] {
                if n > MAX_PORTS {
                    return Err(PatchError::TooManyPorts {
                        type_name: spec.type_name.to_string(),
                        direction,
                        count: n,
                        max: MAX_PORTS,
                    });
                }
            }
            for (name, &value) in &m.params {
                let Some(p) = spec.params.iter().find(|p| p.name == name) else {
                    return Err(PatchError::UnknownParam {
                        module: m.id.clone(),
                        type_name: spec.type_name.to_string(),
                        param: name.clone(),
                        suggestion: error::suggest(name, spec.params.iter().map(|p| p.name)),
                        valid: names(spec.params.iter().map(|p| p.name)),
                    });
                };
                if !(p.min..=p.max).contains(&value) {
                    return Err(PatchError::ParamOutOfRange {
                        module: m.id.clone(),
                        param: name.clone(),
                        value,
                        min: p.min,
                        max: p.max,
                        unit: p.unit.symbol(),
                    });
                }
            }
            specs.push(spec);
        }
        specs.extend(desc.instruments.iter().map(|_| &INSTRUMENT_SPEC));

        // Exactly one output.
        let outputs: Vec<usize> = (0..count)
            .filter(|&i| specs[i].type_name == modules::output::SPEC.type_name)
            .collect();
        let [output_decl] = outputs[..] else {
            return Err(PatchError::OutputCount {
                found: outputs.len(),
                ids: outputs
                    .iter()
                    .map(|&i| desc.modules[i].id.clone())
                    .collect(),
            });
        };

        // Connections: inputs[module][port] = (source endpoint, source text).
        let mut inputs: Wiring<'_> = specs.iter().map(|s| vec![None; s.inputs.len()]).collect();
        for c in &desc.connections {
            let endpoint = |text: &str, output: bool| -> Result<Endpoint, PatchError> {
                let (module_id, port) = match text.split_once(':') {
                    Some((m, p)) => (m, Some(p)),
                    None => (text, None),
                };
                let Some(&idx) = by_id.get(module_id) else {
                    return Err(PatchError::UnknownModule {
                        from: c.from.clone(),
                        to: c.to.clone(),
                        module: module_id.to_string(),
                        suggestion: error::suggest(module_id, ids.iter().copied()),
                    });
                };
                let module = usize::from(idx);
                let spec = specs[module];
                let (ports, direction) = if output {
                    (spec.outputs, "output")
                } else {
                    (spec.inputs, "input")
                };
                let found = match port {
                    Some(p) => ports.iter().position(|s| s.name == p),
                    None => (!ports.is_empty()).then_some(0),
                };
                if found.is_none() {
                    // Named a port that exists, in the other direction?
                    let other = if output { spec.inputs } else { spec.outputs };
                    if let Some(p) = port.filter(|p| other.iter().any(|s| s.name == *p)) {
                        return Err(PatchError::WrongDirection {
                            module: module_id.to_string(),
                            port: p.to_string(),
                            actual: if output { "input" } else { "output" },
                            wanted: direction,
                        });
                    }
                }
                found
                    .map(|port| Endpoint { module, port })
                    .ok_or_else(|| PatchError::UnknownPort {
                        module: module_id.to_string(),
                        direction,
                        port: port.unwrap_or("").to_string(),
                        available: names(ports.iter().map(|p| p.name)),
                    })
            };
            let from = endpoint(&c.from, true)?;
            let to = endpoint(&c.to, false)?;
            if specs[from.module].outputs[from.port].rate == Rate::Audio
                && specs[to.module].inputs[to.port].rate == Rate::Control
            {
                return Err(PatchError::RateMismatch {
                    from: c.from.clone(),
                    to: c.to.clone(),
                });
            }
            let slot = &mut inputs[to.module][to.port];
            if let Some(Wire { text: first, .. }) = slot {
                return Err(PatchError::InputConnectedTwice {
                    module: ids[to.module].to_string(),
                    port: specs[to.module].inputs[to.port].name.to_string(),
                    first: first.to_string(),
                    second: c.from.clone(),
                });
            }
            *slot = Some(Wire {
                src: from.module,
                port: from.port,
                text: c.from.as_str(),
            });
        }
        // A mono chain into the output's left plays on both channels.
        if let [Some(left), right @ None, ..] = &mut inputs[output_decl][..] {
            *right = Some(*left);
        }

        // Deterministic topological order: Kahn's algorithm, always taking the ready
        // module declared first.
        let mut successors: Vec<Vec<usize>> = vec![Vec::new(); count];
        let mut in_degree = vec![0usize; count];
        for (dst, ports) in inputs.iter().enumerate() {
            for &Wire { src, .. } in ports.iter().flatten() {
                successors[src].push(dst);
                in_degree[dst] += 1;
            }
        }
        let mut ready: BTreeSet<usize> = (0..count).filter(|&i| in_degree[i] == 0).collect();
        let mut order: Vec<usize> = Vec::with_capacity(count);
        while let Some(v) = ready.pop_first() {
            order.push(v);
            for &s in &successors[v] {
                in_degree[s] -= 1;
                if in_degree[s] == 0 {
                    ready.insert(s);
                }
            }
        }
        if order.len() < count {
            return Err(PatchError::Cycle {
                modules: find_cycle(&in_degree, &inputs)
                    .into_iter()
                    .map(|i| ids[i].to_string())
                    .collect(),
            });
        }
        let mut exec_of = vec![0usize; count];
        for (pos, &decl) in order.iter().enumerate() {
            exec_of[decl] = pos;
        }

        // Build the nodes in execution order.
        let mut fp = Fnv::new();
        fp.bytes(&sample_rate.to_bits().to_le_bytes());
        fp.u64(count as u64);
        let mut nodes = Vec::with_capacity(count);
        for &decl in &order {
            let spec = specs[decl];
            let node_seed = splitmix64(seed ^ splitmix64(decl as u64));
            let mut unit = match desc.modules.get(decl) {
                Some(m) => {
                    let mut module =
                        modules::create(spec.type_name, sample_rate, max_block, node_seed)
                            .ok_or_else(|| PatchError::UnknownType {
                                module: m.id.clone(),
                                type_name: m.type_name.clone(),
                                suggestion: None,
                                known: names(modules::all_specs().iter().map(|s| s.type_name)),
                            })?;
                    for (name, &value) in &m.params {
                        if let Some(i) = spec.param_index(name) {
                            module.set_param(i, value);
                        }
                    }
                    module.allocate_for_params();
                    // Initial values are where the module starts, not something to glide to.
                    module.reset();
                    Unit::Module(module)
                }
                None => {
                    let instrument = &desc.instruments[decl - module_count];
                    Unit::Instrument(Box::new(Instrument::compile(
                        instrument,
                        sample_rate,
                        max_block,
                        node_seed,
                    )?))
                }
            };
            let srcs: Vec<Source> = inputs[decl]
                .iter()
                .map(|s| match *s {
                    Some(Wire { src, port, .. }) => Source::Node {
                        exec: exec_of[src],
                        port,
                        buffer: nodes.get(exec_of[src]).map_or(0, |n: &Node| n.first + port),
                    },
                    None => Source::Zero,
                })
                .collect();
            fp.bytes(spec.type_name.as_bytes());
            fp.bytes(&[0xff]);
            let state_len = unit.state_len();
            // Until every node is built, all of them: narrowed to the read ones below.
            let guarded = if matches!(&unit, Unit::Module(m) if m.always_finite()) {
                0
            } else {
                u8::MAX
            };
            let has_lanes = match &mut unit {
                Unit::Module(m) => m.side_by_side().is_some(),
                Unit::Instrument(_) => false,
            };
            fp.u64(state_len as u64);
            for s in &inputs[decl] {
                match *s {
                    Some(Wire { src, port, .. }) => {
                        fp.u64(src as u64 + 1);
                        fp.u64(port as u64);
                    }
                    None => fp.u64(0),
                }
            }
            let first = nodes.last().map_or(1, |n: &Node| n.first + n.outputs);
            let mut reads = [0; MAX_PORTS];
            for (at, source) in reads.iter_mut().zip(&srcs) {
                if let Source::Node { buffer, .. } = *source {
                    *at = buffer * max_block;
                }
            }
            nodes.push(Node {
                reads,
                id: ids[decl].to_string(),
                first,
                outputs: spec.outputs.len(),
                inputs: srcs,
                unit,
                state_len,
                guarded,
                has_lanes,
            });
        }

        // Instrument members, addressed after every declaration.
        let mut members = Vec::new();
        for (k, instrument) in desc.instruments.iter().enumerate() {
            let exec = exec_of[module_count + k];
            for (local, m) in instrument.modules.iter().enumerate() {
                let id = format!("{}.{}", instrument.name, m.id);
                let index = u16::try_from(count + members.len()).unwrap_or(u16::MAX);
                by_id.insert(id.clone(), index);
                members.push(Member {
                    id,
                    exec,
                    local: local as u16,
                });
            }
        }

        // Which outputs some node reads (the output module's inputs are the patch's
        // output, so they count): the guard scans only those, and each module is told,
        // so one whose outputs are independent may leave the others unwritten.
        let mut read = vec![0u8; nodes.len()];
        for source in nodes.iter().flat_map(|n| &n.inputs) {
            if let Source::Node { exec, port, .. } = *source {
                if let Some(mask) = read.get_mut(exec) {
                    *mask |= 1u8.checked_shl(port as u32).unwrap_or(0);
                }
            }
        }
        for (node, read) in nodes.iter_mut().zip(read) {
            node.guarded &= read;
            if let Unit::Module(m) = &mut node.unit {
                m.outputs_read(read);
            }
        }

        let may_sound = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| match &n.unit {
                Unit::Module(m) => m.spec().has_gate,
                Unit::Instrument(_) => true,
            })
            .map(|(exec, _)| exec)
            .collect();
        let output_exec = exec_of[output_decl];
        let output_is_read = nodes.iter().any(|n: &Node| {
            n.inputs
                .iter()
                .any(|s| matches!(*s, Source::Node { exec, .. } if exec == output_exec))
        });
        let buffer_count = nodes.last().map_or(1, |n| n.first + n.outputs);
        let mono = nodes
            .get(output_exec)
            .and_then(|n| n.inputs.first().copied())
            .unwrap_or(Source::Zero);
        Ok(Patch {
            sample_rate,
            max_block,
            nodes,
            may_sound,
            output_exec,
            output_is_read,
            exec_of,
            by_id,
            members,
            buffers: vec![0.0; buffer_count * max_block],
            mono,
            nonfinite_resets: 0,
            fingerprint: fp.0,
            panic_in_process: false,
        })
    }

    /// Fault injection: makes the next module's `process` panic, as a bug in DSP code
    /// would, so that what a worker does then can be tested. Never called otherwise.
    pub fn panic_in_next_process(&mut self) {
        self.panic_in_process = true;
    }

    /// Sample rate the patch was compiled for.
    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    /// Longest block [`Patch::process`] renders in one pass (longer requests are split).
    pub fn max_block(&self) -> usize {
        self.max_block
    }

    /// Number of node indices: the modules and instruments of the description, then
    /// every instrument's members (`<instrument>.<id>`). Callers walk `0..node_count()`
    /// with [`Patch::node_id`] and [`Patch::node_spec`] to list what can be addressed.
    pub fn node_count(&self) -> usize {
        self.exec_of.len() + self.members.len()
    }

    /// Node index of the module called `id` (or instrument, or `<instrument>.<id>`
    /// member): its position in `desc.modules` (then `desc.instruments`, then the members
    /// in order), stable for the life of the patch and what commands carry as a `u16`.
    pub fn node_index(&self, id: &str) -> Option<u16> {
        self.by_id.get(id).copied()
    }

    /// Id of node `node`, for messages and `/status`.
    pub fn node_id(&self, node: u16) -> Option<&str> {
        match self.node(node) {
            Some(n) => Some(n.id.as_str()),
            None => self.member(node).map(|m| m.id.as_str()),
        }
    }

    /// Spec of node `node`'s type ([`INSTRUMENT_SPEC`] for an instrument), so callers can
    /// resolve parameter names and ranges.
    pub fn node_spec(&self, node: u16) -> Option<&'static ModuleSpec> {
        match self.node(node) {
            Some(n) => Some(n.unit.spec()),
            None => {
                let (instrument, local) = self.member_of(node)?;
                instrument
                    .members()
                    .get(usize::from(local))
                    .map(|(_, spec)| *spec)
            }
        }
    }

    /// Node indices in the order they render (sources before the modules they feed).
    pub fn execution_order(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter_map(|n| self.by_id.get(&n.id).copied())
    }

    /// Names of the instruments with their node indices, in declaration order.
    pub fn instruments(&self) -> impl Iterator<Item = (&str, u16)> + '_ {
        (0..self.exec_of.len() as u16).filter_map(|node| {
            let n = self.node(node)?;
            matches!(n.unit, Unit::Instrument(_)).then_some((n.id.as_str(), node))
        })
    }

    fn node(&self, node: u16) -> Option<&Node> {
        self.exec_of
            .get(usize::from(node))
            .and_then(|&e| self.nodes.get(e))
    }

    fn node_mut(&mut self, node: u16) -> Option<&mut Node> {
        self.exec_of
            .get(usize::from(node))
            .and_then(|&e| self.nodes.get_mut(e))
    }

    fn member(&self, node: u16) -> Option<&Member> {
        let index = usize::from(node).checked_sub(self.exec_of.len())?;
        self.members.get(index)
    }

    /// The instrument a member node belongs to, and its node in each voice.
    fn member_of(&self, node: u16) -> Option<(&Instrument, u16)> {
        let m = self.member(node)?;
        match &self.nodes.get(m.exec)?.unit {
            Unit::Instrument(i) => Some((i, m.local)),
            Unit::Module(_) => None,
        }
    }

    /// The instrument at node `node` (an instrument's own node, not a member's).
    fn instrument_mut(&mut self, node: u16) -> Option<&mut Instrument> {
        match &mut self.node_mut(node)?.unit {
            Unit::Instrument(i) => Some(i),
            Unit::Module(_) => None,
        }
    }

    /// Sets parameter `param` of node `node` (clamped to its range; smoothed parameters
    /// glide); for an instrument member, in every voice. Out-of-range node or parameter
    /// indices are ignored: the render thread never panics on a command.
    pub fn set_param(&mut self, node: u16, param: u16, value: f32) {
        if let Some(n) = self.node_mut(node) {
            if let Unit::Module(m) = &mut n.unit {
                if usize::from(param) < m.spec().params.len() {
                    m.set_param(usize::from(param), value);
                }
            }
            return;
        }
        let Some(&Member { exec, local, .. }) = self.member(node) else {
            return;
        };
        if let Some(Node {
            unit: Unit::Instrument(i),
            ..
        }) = self.nodes.get_mut(exec)
        {
            i.set_param(local, param, value);
        }
    }

    /// Current target of parameter `param` of node `node` (of a member: the same in every
    /// voice), or `None` for bad indices.
    pub fn param(&self, node: u16, param: u16) -> Option<f32> {
        match self.node(node) {
            Some(Node {
                unit: Unit::Module(m),
                ..
            }) => (usize::from(param) < m.spec().params.len()).then(|| m.param(usize::from(param))),
            Some(_) => None,
            None => {
                let (instrument, local) = self.member_of(node)?;
                instrument.param(local, param)
            }
        }
    }

    /// Opens or closes the gate of node `node` (ignored by modules without a gate, by
    /// instrument members, whose gates belong to the notes, and for a bad index).
    pub fn set_gate(&mut self, node: u16, on: bool) {
        if let Some(Node {
            unit: Unit::Module(m),
            ..
        }) = self.node_mut(node)
        {
            m.set_gate(on);
        }
    }

    /// Returns module `node` to its fresh state, parameter targets kept (glides end on
    /// them): how a voice's note module jumps to a new note.
    pub(crate) fn reset_node(&mut self, node: u16) {
        if let Some(n) = self.node_mut(node) {
            n.unit.reset();
        }
    }

    /// Starts note `note` (MIDI number, fractional allowed) at `velocity` (0..=127; 0 is
    /// a note-off) on instrument `node`, tagged `id` (0: none), held until
    /// [`Patch::note_off`] or, if `length` is not 0, for `length` frames. Ignored if
    /// `node` is not an instrument. Allocates nothing.
    pub fn note_on(&mut self, node: u16, note: f32, velocity: f32, id: u32, length: u64) {
        if let Some(i) = self.instrument_mut(node) {
            i.note_on(note, velocity, id, length);
        }
    }

    /// Releases the oldest held instance of `note` (the one tagged `id`, if not 0) on
    /// instrument `node`; with the sustain pedal down it sounds on until the pedal is up.
    pub fn note_off(&mut self, node: u16, note: f32, id: u32) {
        if let Some(i) = self.instrument_mut(node) {
            i.note_off(note, id);
        }
    }

    /// Sets a per-note expression on instrument `node`'s voices playing the note tagged
    /// `target`, or, if no voice has that id, playing note number `target`.
    pub fn note_expression(&mut self, node: u16, target: f32, kind: Expression, value: f32) {
        if let Some(i) = self.instrument_mut(node) {
            i.expression(target, kind, value);
        }
    }

    /// The sustain pedal of instrument `node`.
    pub fn sustain(&mut self, node: u16, on: bool) {
        if let Some(i) = self.instrument_mut(node) {
            i.set_sustain(on);
        }
    }

    /// Every voice of every instrument fades to silence within [`FADE_SECONDS`].
    pub fn panic_notes(&mut self) {
        for n in &mut self.nodes {
            if let Unit::Instrument(i) = &mut n.unit {
                i.panic();
            }
        }
    }

    /// Lets at most `limit` voices of each instrument sound at once (`None`: all it
    /// has); see `Instrument::set_limit`. The engine's voice limit (`/voices/limit`, and
    /// the supervisor's overload protection) is this, applied to the running patch and
    /// to each patch switched to. Returns how many voices it shed. Allocates nothing.
    pub fn set_voice_limit(&mut self, limit: Option<usize>) -> usize {
        let mut shed = 0;
        for n in &mut self.nodes {
            if let Unit::Instrument(i) = &mut n.unit {
                shed += i.set_limit(limit);
            }
        }
        shed
    }

    /// Notes that took a voice from another note, over every instrument (a metric: an
    /// instrument with too few voices for what is played steals often).
    pub fn voice_steals(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| match &n.unit {
                Unit::Instrument(i) => i.steals(),
                Unit::Module(_) => 0,
            })
            .sum()
    }

    /// Renders `left.len()` frames (== `right.len()`, normally 1..=max_block) of the whole
    /// graph into `left` and `right`. Longer requests are rendered in `max_block` pieces
    /// with the same result; if the lengths differ, frames past the shorter are zeroed.
    /// Allocates nothing, locks nothing, never panics.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        let frames = left.len().min(right.len());
        let (left, left_extra) = left.split_at_mut(frames);
        let (right, right_extra) = right.split_at_mut(frames);
        left_extra.fill(0.0);
        right_extra.fill(0.0);
        for (l, r) in left
            .chunks_mut(self.max_block)
            .zip(right.chunks_mut(self.max_block))
        {
            let n = l.len();
            self.render(n);
            // The output module passes its inputs through unchanged, so its sources are
            // copied straight to the caller (one copy instead of two).
            let sources = self.nodes.get(self.output_exec).map(|n| &n.inputs[..]);
            match sources {
                Some(&[sl, sr, ..]) => {
                    copy_into(l, self.source(sl, n));
                    copy_into(r, self.source(sr, n));
                }
                _ => {
                    l.fill(0.0);
                    r.fill(0.0);
                }
            }
        }
    }

    /// Renders `out.len()` (<= max_block) frames of the graph and copies only the
    /// output's left input into `out`: a voice of an instrument, whose output is mono.
    pub(crate) fn process_mono(&mut self, out: &mut [f32]) {
        let n = out.len().min(self.max_block);
        self.render(n);
        self.mono_output(out);
    }

    /// Copies the first `out.len()` frames of the output's left input, as the last
    /// render left them, into `out`.
    pub(crate) fn mono_output(&self, out: &mut [f32]) {
        copy_into(out, self.mono_block(out.len()));
    }

    /// The first `n` (<= max_block) frames of the output's left input, as the last
    /// render left them: a voice's block after [`Patch::render_side_by_side`], read in
    /// place.
    pub(crate) fn mono_block(&self, n: usize) -> &[f32] {
        self.source(self.mono, n.min(self.max_block))
    }

    /// The first `n` samples of what `src` reads: a node's output buffer or the zeros.
    fn source(&self, src: Source, n: usize) -> &[f32] {
        read(&self.buffers, self.max_block, src, n)
    }

    /// Runs every node once for `n` (<= max_block) frames, in execution order; the output
    /// module, a pass-through, only when another module reads it ([`Patch::process`]
    /// copies its sources itself).
    fn render(&mut self, n: usize) {
        for i in 0..self.nodes.len() {
            self.render_node(i, n);
        }
    }

    /// Runs the node at execution position `i` for `n` (<= max_block) frames (the
    /// output module only when it is read), then guards its outputs (as
    /// [`Patch::guard_node`] does, on the slices at hand). Inlined into [`Patch::render`]:
    /// this is every patch's inner loop.
    #[inline(always)]
    fn render_node(&mut self, i: usize, n: usize) {
        if i == self.output_exec && !self.output_is_read {
            return;
        }
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        let mb = self.max_block;
        let n = n.min(mb);
        // Every input lies before the node's own outputs (execution order).
        let at = (node.first * mb).min(self.buffers.len());
        let (done, rest) = self.buffers.split_at_mut(at);
        let (n_in, n_out) = (node.inputs.len(), node.outputs);
        let mut ins: [&[f32]; MAX_PORTS] = [&[]; MAX_PORTS];
        for (slot, &from) in ins.iter_mut().zip(&node.reads).take(n_in) {
            *slot = done.get(from..from + n).unwrap_or(&[]);
        }
        let mut outs: [&mut [f32]; MAX_PORTS] = Default::default();
        for (slot, buf) in outs.iter_mut().zip(rest.chunks_exact_mut(mb)).take(n_out) {
            *slot = buf.get_mut(..n).unwrap_or(&mut []);
        }
        let ins = ins.get(..n_in).unwrap_or(&[]);
        let outs = outs.get_mut(..n_out).unwrap_or(&mut []);
        if self.panic_in_process {
            // Stands for a bug in a module's code, asked for explicitly by a server
            // started with fault injection enabled.
            panic!("fault injection: a panic in module '{}''s process", node.id);
        }
        node.unit.process(ins, outs);

        // NaN guard: a module that produced NaN/inf is reset and its block silenced,
        // so the bad value never reaches another module or the speakers.
        let guarded = node.guarded;
        if guarded != 0
            && outs
                .iter()
                .enumerate()
                .any(|(k, o)| guarded >> k & 1 == 1 && has_nonfinite(o))
        {
            node.unit.reset();
            for o in outs.iter_mut() {
                o.fill(0.0);
            }
            self.nonfinite_resets = self.nonfinite_resets.wrapping_add(1);
        }
    }

    /// The NaN guard of the node at execution position `i`, for the side-by-side path:
    /// if it produced NaN/inf in its first `n` frames, it is reset and its block
    /// silenced, so the bad value never reaches another module or the speakers.
    fn guard_node(&mut self, i: usize, n: usize) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        let mb = self.max_block;
        let guarded = node.guarded;
        let outputs = self
            .buffers
            .get_mut(node.first * mb..(node.first + node.outputs) * mb)
            .unwrap_or(&mut []);
        if guarded != 0
            && outputs
                .chunks(mb)
                .enumerate()
                .any(|(k, o)| guarded >> k & 1 == 1 && has_nonfinite(o.get(..n).unwrap_or(&[])))
        {
            node.unit.reset();
            for o in outputs.chunks_mut(mb) {
                o.get_mut(..n).unwrap_or(&mut []).fill(0.0);
            }
            self.nonfinite_resets = self.nonfinite_resets.wrapping_add(1);
        }
    }

    /// Renders the voice patches `voices` (compiled from one description, so the same
    /// nodes in the same order) for `n` (<= max_block) frames, node by node: side by
    /// side where the node's type has a lane kernel and every voice's instance can use
    /// it now, voice by voice elsewhere. Each patch ends exactly as [`Patch::render`]
    /// would leave it, bit for bit; [`Patch::mono_output`] then reads each voice.
    pub(crate) fn render_side_by_side(voices: &mut [&mut Patch; VOICE_LANES], n: usize) {
        let count = voices.iter().map(|p| p.nodes.len()).min().unwrap_or(0);
        for i in 0..count {
            let has_lanes = voices[0].nodes.get(i).is_some_and(|node| node.has_lanes);
            let done = has_lanes
                && (Self::kernel_side_by_side::<LadderLanes<VOICE_LANES>>(voices, i, n)
                    || Self::kernel_side_by_side::<BiquadLanes>(voices, i, n));
            if !done {
                for p in voices.iter_mut() {
                    p.render_node(i, n);
                }
            }
        }
    }

    /// Node `i` of every voice through one `K` kernel, if it is a `K::Module` ready for
    /// it in all of them (then true); otherwise nothing is done and the result is false.
    /// The kernel reads and writes each voice's own buffers.
    fn kernel_side_by_side<K: VoiceLanes>(
        voices: &mut [&mut Patch; VOICE_LANES],
        i: usize,
        n: usize,
    ) -> bool {
        let parts = voices.each_mut().map(|p| p.lane_parts::<K>(i, n));
        // Four lanes spelled out: a change of VOICE_LANES is a compile error here.
        let [Some(p0), Some(p1), Some(p2), Some(p3)] = parts else {
            return false;
        };
        if ![&p0, &p1, &p2, &p3].iter().all(|p| K::ready(p.0)) {
            return false;
        }
        let mut lanes = K::default();
        for (lane, p) in [&p0, &p1, &p2, &p3].into_iter().enumerate() {
            lanes.load(lane, p.0);
        }
        let (m0, x0, y0) = p0;
        let (m1, x1, y1) = p1;
        let (m2, x2, y2) = p2;
        let (m3, x3, y3) = p3;
        lanes.run([x0, x1, x2, x3], [y0, y1, y2, y3]);
        for (lane, m) in [m0, m1, m2, m3].into_iter().enumerate() {
            lanes.store(lane, m);
        }
        for p in voices.iter_mut() {
            p.guard_node(i, n);
        }
        true
    }

    /// For [`Patch::kernel_side_by_side`]: node `i` as a `K::Module`, the first `n`
    /// frames of its input and of its output buffer; `None` if it is another type (or
    /// fault injection is armed, which the voice-by-voice path performs).
    #[allow(clippy::type_complexity)]
    fn lane_parts<K: VoiceLanes>(
        &mut self,
        i: usize,
        n: usize,
    ) -> Option<(&mut K::Module, &[f32], &mut [f32])> {
        if self.panic_in_process {
            return None;
        }
        let node = self.nodes.get_mut(i)?;
        let mb = self.max_block;
        let at = (node.first * mb).min(self.buffers.len());
        let (done, rest) = self.buffers.split_at_mut(at);
        let input = read(done, mb, *node.inputs.first()?, n);
        if node.outputs == 0 {
            return None;
        }
        let output = rest.get_mut(..n)?;
        let module = match &mut node.unit {
            Unit::Module(m) => m.side_by_side()?.downcast_mut::<K::Module>()?,
            Unit::Instrument(_) => return None,
        };
        Some((module, input, output))
    }

    /// How many voices are sounding: the envelopes of the patch that are not idle, and
    /// every instrument's voices that are not free; the "voices sounding" metric.
    pub fn voices_sounding(&self) -> usize {
        self.may_sound
            .iter()
            .filter_map(|&exec| self.nodes.get(exec))
            .map(|n| n.unit.sounding())
            .sum()
    }

    /// How many times a module produced NaN/inf and was reset (its output for that block
    /// replaced by silence). Part of the snapshot, so lockstepped workers agree on it.
    pub fn nonfinite_resets(&self) -> u64 {
        self.nonfinite_resets
    }

    /// Returns every module to its freshly created state, keeping parameter targets; for
    /// recovering from a bad state without recompiling.
    pub fn reset(&mut self) {
        for n in &mut self.nodes {
            n.unit.reset();
        }
    }

    /// Exact size of a snapshot of this patch: a 24-byte header (magic, version,
    /// structural fingerprint, non-finite counter) plus every module's state. Constant for
    /// the patch, so the snapshot area can be sized at compile time.
    pub fn state_len(&self) -> usize {
        HEADER_LEN + self.nodes.iter().map(|n| n.state_len).sum::<usize>()
    }

    /// Writes a snapshot (modules in declaration order) into `w`; call between blocks.
    /// Allocates nothing.
    pub fn save_state(&self, w: &mut StateWriter<'_>) {
        w.put_u32(STATE_MAGIC);
        w.put_u32(STATE_VERSION);
        w.put_u64(self.fingerprint);
        w.put_u64(self.nonfinite_resets);
        for &e in &self.exec_of {
            if let Some(n) = self.nodes.get(e) {
                n.unit.save_state(w);
            }
        }
    }

    /// Restores a snapshot taken by [`Patch::save_state`] on a patch compiled from the same
    /// description at the same sample rate; rendering then continues bit-identically.
    ///
    /// The header and length are checked before anything changes. If a module then
    /// rejects its bytes, every module is reset (parameter targets kept) and the error
    /// returned, so the patch is never left half-loaded.
    ///
    /// # Errors
    /// [`StateError::BadMagic`], [`StateError::UnsupportedVersion`],
    /// [`StateError::PatchMismatch`] for a snapshot of something else;
    /// [`StateError::Truncated`] for short input; [`StateError::InvalidValue`] for a
    /// corrupt field.
    pub fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let magic = r.get_u32()?;
        if magic != STATE_MAGIC {
            return Err(StateError::BadMagic {
                found: magic,
                expected: STATE_MAGIC,
            });
        }
        let version = r.get_u32()?;
        if version != STATE_VERSION {
            return Err(StateError::UnsupportedVersion {
                found: version,
                supported: STATE_VERSION,
            });
        }
        let found = r.get_u64()?;
        if found != self.fingerprint {
            return Err(StateError::PatchMismatch {
                expected: self.fingerprint,
                found,
            });
        }
        let body = self.state_len() - HEADER_LEN + 8;
        if r.remaining() < body {
            return Err(StateError::Truncated {
                offset: r.position(),
                needed: body,
                remaining: r.remaining(),
            });
        }
        let resets = r.get_u64()?;
        for i in 0..self.exec_of.len() {
            let Some(n) = self.exec_of.get(i).and_then(|&e| self.nodes.get_mut(e)) else {
                continue;
            };
            if let Err(e) = n.unit.load_state(r) {
                self.reset();
                return Err(e);
            }
        }
        self.nonfinite_resets = resets;
        Ok(())
    }
}

/// The first `n` samples of what `src` reads in `buffers` (a patch's buffers, or the
/// part before a node's outputs; `max_block` each): a node's output or the zeros;
/// empty if it lies beyond them (never, for a compiled patch).
#[inline(always)]
fn read(buffers: &[f32], max_block: usize, src: Source, n: usize) -> &[f32] {
    let at = match src {
        Source::Zero => 0,
        Source::Node { buffer, .. } => buffer * max_block,
    };
    buffers.get(at..at + n).unwrap_or(&[])
}

/// True if any sample of `block` is NaN or infinite.
///
/// Branch-free, so the compiler vectorises it (the guard runs on every output of every
/// module, every block): a float is non-finite exactly when its exponent bits are all
/// ones, and adding one exponent step to the masked exponent carries into bit 31 for
/// that pattern only. OR-ing those bits over the block catches a single bad sample.
#[inline]
fn has_nonfinite(block: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    const EXPONENT_STEP: u32 = 0x0080_0000;
    let carries = block.iter().fold(0u32, |acc, &x| {
        acc | (x.to_bits() & EXPONENT).wrapping_add(EXPONENT_STEP)
    });
    carries & 0x8000_0000 != 0
}

/// Copies `src` into `dst` as far as both reach (they are the same length in practice);
/// unlike `copy_from_slice` it cannot panic.
#[inline]
fn copy_into(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s;
    }
}

/// Finds one cycle among the modules Kahn's algorithm could not order (`in_degree > 0`),
/// walking backwards from the first such module through its first unordered source.
/// Returns the modules in signal order with the first repeated at the end.
fn find_cycle(in_degree: &[usize], inputs: &Wiring<'_>) -> Vec<usize> {
    let stuck = |i: usize| in_degree.get(i).is_some_and(|&d| d > 0);
    let Some(start) = (0..in_degree.len()).find(|&i| stuck(i)) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut v = start;
    loop {
        // Every stuck module has at least one stuck source; take the first declared.
        let Some(u) = inputs
            .get(v)
            .into_iter()
            .flatten()
            .flatten()
            .map(|w| w.src)
            .filter(|&s| stuck(s))
            .min()
        else {
            return path;
        };
        if let Some(pos) = path.iter().position(|&p| p == u) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            // Start at the module declared first, so the message is stable and readable.
            if let Some(first) = cycle
                .iter()
                .enumerate()
                .min_by_key(|&(_, &m)| m)
                .map(|(i, _)| i)
            {
                cycle.rotate_left(first);
            }
            if let Some(&first) = cycle.first() {
                cycle.push(first);
            }
            return cycle;
        }
        path.push(u);
        v = u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f32 = 48_000.0;

    fn compile(desc: &PatchDesc) -> Patch {
        Patch::compile(desc, SR, 64, 7).unwrap()
    }

    fn compile_err(desc: &PatchDesc) -> String {
        Patch::compile(desc, SR, 64, 7).unwrap_err().to_string()
    }

    fn render(p: &mut Patch, frames: usize, block: usize) -> (Vec<f32>, Vec<f32>) {
        let mut l = vec![0.0; frames];
        let mut r = vec![0.0; frames];
        for (lc, rc) in l.chunks_mut(block).zip(r.chunks_mut(block)) {
            p.process(lc, rc);
        }
        (l, r)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn playing_default() -> Patch {
        let mut p = compile(&PatchDesc::default_patch());
        p.set_gate(p.node_index("adsr").unwrap(), true);
        p
    }

    #[test]
    fn default_patch_compiles_in_chain_order_and_plays_on_both_channels() {
        let mut p = playing_default();
        // 6 modules, the instrument `keys`, its 5 members.
        assert_eq!(p.node_count(), 12);
        assert_eq!(p.node_index("filter"), Some(2));
        assert_eq!(p.node_id(2), Some("filter"));
        assert_eq!(p.node_spec(2).unwrap().type_name, "biquad");
        assert_eq!(p.node_index("keys"), Some(6));
        assert_eq!(p.node_spec(6).unwrap().type_name, "instrument");
        assert_eq!(p.node_index("keys.filter"), Some(9));
        assert_eq!(p.node_spec(9).unwrap().type_name, "ladder");
        assert_eq!(p.node_id(11), Some("keys.vca"));
        assert_eq!(p.node_id(12), None);
        assert_eq!(
            p.instruments().collect::<Vec<_>>(),
            vec![("keys", 6)],
            "instruments are listed with their nodes"
        );
        assert_eq!(
            p.execution_order().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 6, 5, 4]
        );
        let (l, r) = render(&mut p, 4800, 64);
        assert_eq!(bits(&l), bits(&r), "mono chain on both channels");
        let peak = l.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak > 0.1 && peak <= 0.5, "{peak}");
        assert_eq!(p.voices_sounding(), 1);
        assert_eq!(p.nonfinite_resets(), 0);
    }

    #[test]
    fn patch_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Patch>();
    }

    #[test]
    fn silent_until_gate() {
        let mut p = compile(&PatchDesc::default_patch());
        let (l, r) = render(&mut p, 1024, 64);
        assert!(l.iter().chain(&r).all(|&x| x == 0.0));
        assert_eq!(p.voices_sounding(), 0);
    }

    #[test]
    fn execution_order_follows_signal_not_declaration() {
        let desc = PatchDesc {
            modules: vec![
                ModuleDesc::new("out", "output"),
                ModuleDesc::new("g", "gain"),
                ModuleDesc::new("s2", "sine"),
                ModuleDesc::new("s1", "sine"),
            ],
            connections: vec![
                Connection::new("g", "out:left"),
                Connection::new("s1", "g"),
                Connection::new("s2", "out:right"),
            ],
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        };
        let p = compile(&desc);
        // Ready set ordered by declaration index: s2 (2) before s1 (3), then g, then out.
        assert_eq!(p.execution_order().collect::<Vec<_>>(), vec![2, 3, 1, 0]);
        assert_eq!(p.node_index("out"), Some(0));
    }

    #[test]
    fn stereo_when_right_is_connected() {
        let desc = PatchDesc {
            modules: vec![
                ModuleDesc::new("a", "sine").with_param("freq", 300.0),
                ModuleDesc::new("b", "sine").with_param("freq", 500.0),
                ModuleDesc::new("out", "output"),
            ],
            connections: vec![
                Connection::new("a", "out:left"),
                Connection::new("b", "out:right"),
            ],
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        };
        let mut p = compile(&desc);
        let (l, r) = render(&mut p, 256, 64);
        assert_ne!(bits(&l), bits(&r));
        // Only right connected: left stays silent (no guessing).
        let desc = PatchDesc {
            modules: vec![
                ModuleDesc::new("a", "sine"),
                ModuleDesc::new("out", "output"),
            ],
            connections: vec![Connection::new("a", "out:right")],
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        };
        let (l, r) = render(&mut compile(&desc), 256, 64);
        assert!(l.iter().all(|&x| x == 0.0));
        assert!(r.iter().any(|&x| x != 0.0));
    }

    #[test]
    fn initial_params_apply_without_glide() {
        let mut desc = PatchDesc::default_patch();
        desc.modules[0].params.insert("freq".into(), 1000.0);
        let p = compile(&desc);
        assert_eq!(p.param(0, 0), Some(1000.0));
        assert_eq!(p.param(0, 2), None);
        assert_eq!(p.param(99, 0), None);
        // Same result as setting the parameter and letting the glide finish long ago:
        // the first block already runs at 1 kHz (phase increments are constant).
        let desc2 = PatchDesc {
            modules: vec![
                ModuleDesc::new("s", "sine").with_param("freq", 1000.0),
                ModuleDesc::new("out", "output"),
            ],
            connections: vec![Connection::new("s", "out")],
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        };
        let (l, _) = render(&mut compile(&desc2), 48, 48);
        // 1 kHz at 48 kHz: period 48 samples, so sample 12 is the positive peak.
        assert!((l[12] - 0.5).abs() < 1e-4, "{}", l[12]);
    }

    #[test]
    fn set_param_gate_ignore_bad_indices() {
        let mut p = playing_default();
        p.set_param(999, 0, 1.0);
        p.set_param(0, 999, 1.0);
        p.set_gate(999, true);
        p.set_param(3, 0, 5.0);
        assert_eq!(p.param(3, 0), Some(1.0), "clamped");
        p.set_param(3, 0, f32::NAN);
        assert_eq!(p.param(3, 0), Some(0.8), "NaN -> default");
        let _ = render(&mut p, 128, 64);
    }

    #[test]
    fn determinism_same_calls_same_bits() {
        let run = || {
            let mut p = playing_default();
            let mut out = Vec::new();
            for i in 0..50u16 {
                if i == 10 {
                    p.set_param(0, 0, 880.0);
                    p.set_param(2, 0, 300.0);
                }
                if i == 30 {
                    p.set_gate(1, false);
                }
                let (l, r) = render(&mut p, 64, 64);
                out.extend(bits(&l));
                out.extend(bits(&r));
            }
            out
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn sub_block_split_is_bit_identical() {
        let mut a = playing_default();
        let mut b = playing_default();
        for _ in 0..5 {
            let (la, ra) = render(&mut a, 64, 64);
            let mut lb = vec![0.0; 64];
            let mut rb = vec![0.0; 64];
            b.process(&mut lb[..20], &mut rb[..20]);
            b.process(&mut lb[20..], &mut rb[20..]);
            assert_eq!(bits(&la), bits(&lb));
            assert_eq!(bits(&ra), bits(&rb));
            a.set_param(2, 0, 500.0);
            b.set_param(2, 0, 500.0);
        }
        // Longer than max_block is split internally with the same result.
        let (la, _) = render(&mut a, 1000, 64);
        let (lb, _) = render(&mut b, 1000, 1000);
        assert_eq!(bits(&la), bits(&lb));
    }

    #[test]
    fn mismatched_lengths_do_not_panic() {
        let mut p = playing_default();
        let mut l = vec![1.0; 10];
        let mut r = vec![1.0; 4];
        p.process(&mut l, &mut r);
        assert!(l[4..].iter().all(|&x| x == 0.0));
        p.process(&mut [], &mut []);
    }

    fn snapshot(p: &Patch) -> Vec<u8> {
        let mut buf = vec![0u8; p.state_len()];
        let mut w = StateWriter::new(&mut buf);
        p.save_state(&mut w);
        assert_eq!(w.finish(), Ok(p.state_len()));
        buf
    }

    #[test]
    fn snapshot_round_trip_continues_bit_identically() {
        let mut a = playing_default();
        a.set_param(2, 0, 400.0);
        let _ = render(&mut a, 300, 64);
        let buf = snapshot(&a);
        let mut b = compile(&PatchDesc::default_patch());
        b.load_state(&mut StateReader::new(&buf)).unwrap();
        assert_eq!(b.param(2, 0), Some(400.0));
        assert_eq!(b.voices_sounding(), 1);
        let (la, _) = render(&mut a, 5000, 64);
        let (lb, _) = render(&mut b, 5000, 64);
        assert_eq!(bits(&la), bits(&lb));
    }

    #[test]
    fn snapshot_errors() {
        let a = playing_default();
        let buf = snapshot(&a);
        let mut b = compile(&PatchDesc::default_patch());
        // Truncated: refused before anything changes.
        let err = b
            .load_state(&mut StateReader::new(&buf[..buf.len() - 1]))
            .unwrap_err();
        assert!(matches!(err, StateError::Truncated { .. }), "{err}");
        assert_eq!(b.voices_sounding(), 0);
        // Foreign bytes.
        let mut bad = buf.clone();
        bad[0] ^= 0xff;
        let err = b.load_state(&mut StateReader::new(&bad)).unwrap_err();
        assert!(matches!(err, StateError::BadMagic { .. }));
        // Another patch's snapshot.
        let mut other_desc = PatchDesc::default_patch();
        other_desc.connections.pop();
        other_desc
            .connections
            .push(Connection::new("filter", "out:left"));
        let mut other = compile(&other_desc);
        let err = other.load_state(&mut StateReader::new(&buf)).unwrap_err();
        assert!(matches!(err, StateError::PatchMismatch { .. }), "{err}");
        // Other sample rate.
        let mut other = Patch::compile(&PatchDesc::default_patch(), 44_100.0, 64, 7).unwrap();
        assert!(other.load_state(&mut StateReader::new(&buf)).is_err());
        // A corrupt field resets the patch rather than leaving it half-loaded.
        let mut corrupt = buf.clone();
        // adsr stage byte: header, sine (40), adsr parameters: attack, decay (8), sustain
        // smoother (16), release, curve (8).
        corrupt[HEADER_LEN + 40 + 8 + 16 + 8] = 42;
        let err = b.load_state(&mut StateReader::new(&corrupt)).unwrap_err();
        assert!(matches!(err, StateError::InvalidValue { .. }), "{err}");
        assert_eq!(b.voices_sounding(), 0);
    }

    #[test]
    fn nonfinite_scan_finds_any_single_bad_sample() {
        let bad = [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        let good = [
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            -1.5,
        ];
        for len in [1usize, 3, 8, 63, 64] {
            let mut block = vec![0.25f32; len];
            assert!(!has_nonfinite(&block));
            for at in 0..len {
                for &g in &good {
                    block[at] = g;
                    assert!(!has_nonfinite(&block), "{g} at {at}/{len}");
                }
                for &b in &bad {
                    block[at] = b;
                    assert!(has_nonfinite(&block), "{b} at {at}/{len}");
                }
                block[at] = 0.25;
            }
        }
        assert!(!has_nonfinite(&[]));
    }

    #[test]
    fn a_module_reading_the_output_still_gets_its_signal() {
        let desc = PatchDesc {
            modules: vec![
                ModuleDesc::new("s", "sine"),
                ModuleDesc::new("out", "output"),
                ModuleDesc::new("g", "gain").with_param("gain", 1.0),
            ],
            connections: vec![
                Connection::new("s", "out:left"),
                Connection::new("out:left", "g"),
            ],
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        };
        let mut p = compile(&desc);
        let (l, _) = render(&mut p, 64, 64);
        let g = p.exec_of[2];
        let gain_out = Source::Node {
            exec: g,
            port: 0,
            buffer: p.nodes[g].first,
        };
        assert_eq!(bits(&l), bits(p.source(gain_out, 64)));
    }

    /// Where node `id`'s state starts in a snapshot: after the header, the nodes in
    /// declaration order.
    fn state_at(p: &Patch, id: &str) -> usize {
        let decl = usize::from(p.node_index(id).unwrap());
        HEADER_LEN
            + p.exec_of[..decl]
                .iter()
                .map(|&e| p.nodes[e].state_len)
                .sum::<usize>()
    }

    /// Snapshot offset of biquad `id`'s memory y[n-1]: its state ends with the four
    /// memories (x1, x2, y1, y2, f64 each), then a u32, a bool and a u32.
    fn biquad_y1_at(p: &Patch, id: &str) -> usize {
        let exec = p.exec_of[usize::from(p.node_index(id).unwrap())];
        state_at(p, id) + p.nodes[exec].state_len - (4 + 1 + 4) - 2 * 8
    }

    #[test]
    fn nonfinite_output_resets_module_and_silences_block() {
        // sine -> filter -> out, so the silenced block is visible at the output.
        let desc = PatchDesc {
            modules: vec![
                ModuleDesc::new("s", "sine"),
                ModuleDesc::new("f", "biquad"),
                ModuleDesc::new("out", "output"),
            ],
            connections: vec![Connection::new("s", "f"), Connection::new("f", "out")],
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        };
        let mut p = compile(&desc);
        let _ = render(&mut p, 640, 64);
        let mut buf = snapshot(&p);
        // Poison the filter's memory: it answers NaN from its first sample on.
        let at = biquad_y1_at(&p, "f");
        buf[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
        p.load_state(&mut StateReader::new(&buf)).unwrap();
        let (l, r) = render(&mut p, 64, 64);
        assert!(l.iter().chain(&r).all(|&x| x == 0.0));
        assert_eq!(p.nonfinite_resets(), 1);
        // The filter was reset (its memories silent) and plays again; the counter is in
        // the snapshot.
        let (l, _) = render(&mut p, 64, 64);
        assert!(l.iter().all(|x| x.is_finite()) && l.iter().any(|&x| x != 0.0));
        assert_eq!(p.nonfinite_resets(), 1);
        let buf = snapshot(&p);
        let mut q = compile(&desc);
        q.load_state(&mut StateReader::new(&buf)).unwrap();
        assert_eq!(q.nonfinite_resets(), 1);
    }

    #[test]
    fn nonfinite_in_the_middle_of_the_chain_never_reaches_the_output() {
        let mut p = playing_default();
        let _ = render(&mut p, 640, 64);
        let mut buf = snapshot(&p);
        let at = biquad_y1_at(&p, "filter");
        buf[at..at + 8].copy_from_slice(&f64::INFINITY.to_le_bytes());
        p.load_state(&mut StateReader::new(&buf)).unwrap();
        let (l, r) = render(&mut p, 6400, 64);
        assert!(l.iter().chain(&r).all(|x| x.is_finite()));
        assert_eq!(p.nonfinite_resets(), 1);
    }

    #[test]
    fn a_snapshot_whose_glide_leaves_its_range_is_refused() {
        // The sine's gain smoother comes first after the header (freq, 16 bytes, then
        // gain: current, target, step, samples left).
        let mut p = playing_default();
        let _ = render(&mut p, 640, 64);
        let gain = state_at(&p, "sine") + crate::smoother::Smoother::STATE_LEN;
        for (field, bad) in [(0, f32::NAN), (0, f32::INFINITY), (4, 1e30), (8, 1e30)] {
            let mut buf = snapshot(&p);
            buf[gain + field..gain + field + 4].copy_from_slice(&bad.to_le_bytes());
            if field == 8 {
                // A step that carries the gain far out over the samples left.
                buf[gain + 12..gain + 16].copy_from_slice(&1000u32.to_le_bytes());
            }
            let err = p.load_state(&mut StateReader::new(&buf)).unwrap_err();
            assert!(
                matches!(
                    err,
                    StateError::InvalidValue {
                        what: "parameter glide",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        // A ramp mid-way, saved as it is, loads.
        p.set_param(p.node_index("sine").unwrap(), 1, 0.9);
        let _ = render(&mut p, 64, 64);
        let buf = snapshot(&p);
        p.load_state(&mut StateReader::new(&buf)).unwrap();
    }

    // ---- compile errors ----

    fn chain(types: &[(&str, &str)], conns: &[(&str, &str)]) -> PatchDesc {
        PatchDesc {
            modules: types.iter().map(|(id, t)| ModuleDesc::new(id, t)).collect(),
            connections: conns.iter().map(|(f, t)| Connection::new(f, t)).collect(),
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        }
    }

    #[test]
    fn error_unknown_type_suggests() {
        let msg = compile_err(&chain(&[("osc", "sinee"), ("out", "output")], &[]));
        assert!(msg.contains("module 'osc'"), "{msg}");
        assert!(msg.contains("unknown type 'sinee'"), "{msg}");
        assert!(msg.contains("did you mean 'sine'?"), "{msg}");
        let msg = compile_err(&chain(&[("x", "theremin"), ("out", "output")], &[]));
        assert!(!msg.contains("did you mean"), "{msg}");
        assert!(
            msg.contains("known types: sine, adsr, biquad, gain, output"),
            "{msg}"
        );
    }

    #[test]
    fn error_duplicate_and_invalid_ids() {
        let msg = compile_err(&chain(
            &[("a", "sine"), ("a", "gain"), ("out", "output")],
            &[],
        ));
        assert!(msg.contains("duplicate module id 'a'"), "{msg}");
        let msg = compile_err(&chain(&[("a:b", "sine"), ("out", "output")], &[]));
        assert!(msg.contains("invalid module id 'a:b'"), "{msg}");
        let msg = compile_err(&chain(&[("", "sine"), ("out", "output")], &[]));
        assert!(msg.contains("invalid module id ''"), "{msg}");
    }

    #[test]
    fn error_unknown_param_lists_valid_ones() {
        let mut d = PatchDesc::default_patch();
        d.modules[2].params.insert("cutof".into(), 100.0);
        let msg = compile_err(&d);
        assert!(msg.contains("module 'filter' (biquad)"), "{msg}");
        assert!(msg.contains("no parameter 'cutof'"), "{msg}");
        assert!(msg.contains("did you mean 'cutoff'?"), "{msg}");
        assert!(msg.contains("parameters: cutoff, q"), "{msg}");
        let mut d = PatchDesc::default_patch();
        d.modules[4].params.insert("gain".into(), 1.0);
        let msg = compile_err(&d);
        assert!(msg.contains("parameters: none"), "{msg}");
    }

    #[test]
    fn error_param_out_of_range_gives_range() {
        for bad in [25_000.0, -1.0, f32::NAN] {
            let mut d = PatchDesc::default_patch();
            d.modules[0].params.insert("freq".into(), bad);
            let msg = compile_err(&d);
            assert!(msg.contains("module 'sine': freq ="), "{msg}");
            assert!(msg.contains("out of range 0..=20000 Hz"), "{msg}");
        }
    }

    #[test]
    fn error_unknown_port_lists_ports() {
        let mut d = PatchDesc::default_patch();
        d.connections[2] = Connection::new("filter:out", "gain:foo");
        let msg = compile_err(&d);
        assert_eq!(msg, "module 'gain' has no input 'foo' (inputs: in)");
        let mut d = PatchDesc::default_patch();
        d.connections[0] = Connection::new("sine:sig", "adsr:in");
        let msg = compile_err(&d);
        assert_eq!(msg, "module 'sine' has no output 'sig' (outputs: out)");
        // Bare name of a module without inputs.
        let mut d = PatchDesc::default_patch();
        d.modules.push(ModuleDesc::new("noise", "noise"));
        d.connections.push(Connection::new("gain", "noise"));
        let msg = compile_err(&d);
        assert!(msg.contains("module 'noise' has no input"), "{msg}");
        assert!(msg.contains("(inputs: none)"), "{msg}");
    }

    #[test]
    fn error_unknown_module_in_connection() {
        let mut d = PatchDesc::default_patch();
        d.connections[1] = Connection::new("adsr:out", "filtr:in");
        let msg = compile_err(&d);
        assert!(msg.contains("unknown module 'filtr'"), "{msg}");
        assert!(msg.contains("did you mean 'filter'?"), "{msg}");
    }

    #[test]
    fn error_input_connected_twice() {
        let mut d = PatchDesc::default_patch();
        d.connections.push(Connection::new("sine", "gain:in"));
        let msg = compile_err(&d);
        assert!(msg.contains("input 'gain:in' is connected twice"), "{msg}");
        assert!(
            msg.contains("'filter:out'") && msg.contains("'sine'"),
            "{msg}"
        );
    }

    #[test]
    fn error_cycle_names_the_loop() {
        let d = chain(
            &[
                ("src", "sine"),
                ("a", "gain"),
                ("b", "biquad"),
                ("c", "gain"),
                ("out", "output"),
            ],
            &[("a", "b"), ("b", "c"), ("c", "a"), ("c", "out")],
        );
        let err = Patch::compile(&d, SR, 64, 0).unwrap_err();
        assert_eq!(
            err,
            PatchError::Cycle {
                modules: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            }
        );
        assert!(err.to_string().contains("a -> b -> c -> a"), "{err}");
        assert!(err.to_string().contains("delay"), "{err}");
        // A module feeding itself.
        let d = chain(
            &[("g", "gain"), ("out", "output")],
            &[("g:out", "g:in"), ("g", "out")],
        );
        let msg = compile_err(&d);
        assert!(msg.contains("g -> g"), "{msg}");
    }

    #[test]
    fn error_output_count() {
        let msg = compile_err(&chain(&[("s", "sine")], &[]));
        assert!(
            msg.contains("exactly one module of type 'output', found 0"),
            "{msg}"
        );
        let msg = compile_err(&chain(&[("o1", "output"), ("o2", "output")], &[]));
        assert!(msg.contains("found 2 (o1, o2)"), "{msg}");
    }

    #[test]
    fn error_invalid_settings() {
        let d = PatchDesc::default_patch();
        for (sr, mb) in [(0.0, 64), (f32::NAN, 64), (-1.0, 64), (48_000.0, 0)] {
            assert!(matches!(
                Patch::compile(&d, sr, mb, 0),
                Err(PatchError::InvalidSettings { .. })
            ));
        }
    }

    #[test]
    fn toml_patch_compiles() {
        let text = PatchDesc::default_patch().to_toml_string();
        let d = PatchDesc::from_toml_str(&text).unwrap();
        let mut a = compile(&d);
        let mut b = compile(&PatchDesc::default_patch());
        a.set_gate(1, true);
        b.set_gate(1, true);
        assert_eq!(
            bits(&render(&mut a, 256, 64).0),
            bits(&render(&mut b, 256, 64).0)
        );
    }

    #[test]
    fn error_port_direction_mismatch_says_which_way() {
        let mut d = PatchDesc::default_patch();
        d.connections[0] = Connection::new("adsr:in", "sine:out");
        let e = Patch::compile(&d, SR, 64, 7).unwrap_err().to_string();
        assert!(
            e.contains("'adsr:in' is an input of 'adsr', not an output"),
            "{e}"
        );
    }

    /// The default patch's seed voice alone, as the default patch was before it had
    /// an instrument.
    fn seed_voice() -> PatchDesc {
        let mut d = PatchDesc::default_patch();
        d.modules.truncate(5);
        d.instruments.clear();
        d.connections.truncate(3);
        d.connections.push(Connection::new("gain:out", "out:left"));
        d
    }

    #[test]
    fn the_seed_voice_sounds_as_it_did_alone() {
        let mut full = playing_default();
        let mut alone = compile(&seed_voice());
        alone.set_gate(alone.node_index("adsr").unwrap(), true);
        let (l, r) = render(&mut full, 48_000, 64);
        let (al, ar) = render(&mut alone, 48_000, 64);
        assert!(l.iter().zip(&al).all(|(a, b)| a == b));
        assert!(r.iter().zip(&ar).all(|(a, b)| a == b));
        assert!(al.iter().any(|&x| x != 0.0));
    }

    #[test]
    fn error_audio_into_a_control_input_is_a_type_mismatch() {
        let mut d = seed_voice();
        d.modules.insert(4, ModuleDesc::new("amp", "vca"));
        d.connections[3] = Connection::new("gain:out", "amp:in");
        d.connections.push(Connection::new("sine:out", "amp:cv"));
        d.connections.push(Connection::new("amp:out", "out:left"));
        let e = Patch::compile(&d, SR, 64, 7).unwrap_err().to_string();
        assert!(
            e.contains("type mismatch") && e.contains("'sine:out'") && e.contains("'amp:cv'"),
            "{e}"
        );
        // Through a scale module the same modulation is explicit, and compiles.
        d.modules.insert(5, ModuleDesc::new("to_cv", "scale"));
        let last = d.connections.len() - 2;
        d.connections[last] = Connection::new("sine:out", "to_cv:in");
        d.connections.push(Connection::new("to_cv:out", "amp:cv"));
        Patch::compile(&d, SR, 64, 7).unwrap();
    }

    #[test]
    fn sixty_short_delays_cost_what_their_lines_hold() {
        // A chain of 60 delays of at most 250 ms: 48 KB of line each, where the default
        // (2 s) line is 384 KB.
        let chain = |max_time: Option<f32>| {
            let mut d = PatchDesc {
                modules: vec![ModuleDesc::new("src", "sine")],
                connections: Vec::new(),
                instruments: Vec::new(),
                clock: None,
                tracks: Vec::new(),
                midi: Default::default(),
            };
            let mut last = "src".to_string();
            for i in 0..60 {
                let id = format!("d{i}");
                let mut m = ModuleDesc::new(&id, "delay");
                m.params.insert("time".into(), 200.0);
                if let Some(max) = max_time {
                    m.params.insert("max_time".into(), max);
                }
                d.modules.push(m);
                d.connections
                    .push(Connection::new(&format!("{last}:out"), &format!("{id}:in")));
                last = id;
            }
            d.modules.push(ModuleDesc::new("out", "output"));
            d.connections
                .push(Connection::new(&format!("{last}:out"), "out:left"));
            Patch::compile(&d, SR, 64, 7).unwrap().state_len()
        };
        let (short, default) = (chain(Some(250.0)), chain(None));
        assert!(short < 60 * 50_000, "{short}");
        assert!(default > 60 * 384_000, "{default}");
    }
}
