//! The address table: every OSC address Chronus answers, with its typed arguments.
//!
//! One table, built from the patch's module instances, is the single source of truth for
//! the server (what it accepts), `chronus send` (how it types command-line arguments), the
//! command files and logs (how commands are written as text) and the README (what is
//! documented). Ranges come straight from each [`ParamSpec`], so the documented range and
//! the enforced range cannot drift apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chronus_dsp::spec::{ModuleSpec, ParamSpec, Unit};
use chronus_engine::command::{Command, NodeIndex};

/// Address of the master gain.
pub const ENGINE_GAIN: &str = "/engine/gain";
/// Address of the built-in test tone.
pub const TEST: &str = "/test";
/// Address of the status query (scsynth's `/status`).
pub const STATUS: &str = "/status";
/// Address of the metrics query.
pub const METRICS: &str = "/metrics";
/// Address of the barrier (scsynth's `/sync`).
pub const SYNC: &str = "/sync";
/// Address of the version query (scsynth's `/version`).
pub const VERSION: &str = "/version";
/// Address that stops the server (scsynth's `/quit`).
pub const QUIT: &str = "/quit";
/// Fault injection: crash a worker.
pub const DEBUG_CRASH: &str = "/debug/crash";
/// Fault injection: hang a worker.
pub const DEBUG_HANG: &str = "/debug/hang";
/// Fault injection: slow a worker down.
pub const DEBUG_SLOW: &str = "/debug/slow";

/// Prefix of parameter addresses: `/mod/<module id>/<param>`.
pub const MOD_PREFIX: &str = "/mod/";
/// Prefix of gate addresses: `/gate/<module id>`.
pub const GATE_PREFIX: &str = "/gate/";

/// What kind of value an argument takes, with the range the server enforces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArgKind {
    /// A finite number (OSC int, long, float or double) in `min..=max`, sent on as `f32`.
    Number {
        /// Unit the number is expressed in (shown in docs and error messages).
        unit: Unit,
        /// Smallest accepted value (inclusive).
        min: f32,
        /// Largest accepted value (inclusive).
        max: f32,
        /// Value a fresh module starts with (documentation only).
        default: f32,
    },
    /// A gate: OSC `T`/`F`, or a number that is exactly 0 or 1.
    Gate,
    /// An integer (any OSC number type with an integral value) in `min..=max`.
    Int {
        /// Smallest accepted value (inclusive).
        min: i64,
        /// Largest accepted value (inclusive).
        max: i64,
    },
}

/// One declared argument of an address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArgSpec {
    /// Name shown in signatures and error messages (`freq`, `id`, `slot`).
    pub name: &'static str,
    /// Type and range of the value.
    pub kind: ArgKind,
    /// Whether the argument may be left out (only trailing arguments are optional).
    pub optional: bool,
}

impl ArgSpec {
    /// Human description of what the argument must be, used in `/fail` reasons:
    /// "a number in Hz", "0 or 1 (or T/F)", "an integer".
    pub fn expectation(&self) -> String {
        match self.kind {
            ArgKind::Number { unit, .. } => match unit_suffix(unit) {
                "" => "a number".to_string(),
                _ => format!("a number in {}", unit.symbol()),
            },
            ArgKind::Gate => "0 or 1 (or T/F)".to_string(),
            ArgKind::Int { .. } => "an integer".to_string(),
        }
    }

    /// Argument with its type and range, as shown in the markdown table:
    /// `freq: Hz 0.01..20000, default 440`.
    pub fn describe(&self) -> String {
        let mut text = match self.kind {
            ArgKind::Number {
                unit,
                min,
                max,
                default,
            } => {
                let unit = match unit.symbol() {
                    "" | "0..1" => String::new(),
                    symbol => format!("{symbol} "),
                };
                format!("{}: {unit}{min}..{max}, default {default}", self.name)
            }
            ArgKind::Gate => format!("{}: 0/1 or T/F", self.name),
            ArgKind::Int { min, max } => {
                if min == i64::from(i32::MIN) && max == i64::from(i32::MAX) {
                    format!("{}: int", self.name)
                } else {
                    format!("{}: int {min}..{max}", self.name)
                }
            }
        };
        if self.optional {
            text.push_str(", optional");
        }
        text
    }
}

/// Unit written after a value in messages ("30000 Hz"); empty for unitless and 0..1 values.
pub(crate) fn unit_suffix(unit: Unit) -> &'static str {
    match unit {
        Unit::Hertz => " Hz",
        Unit::Milliseconds => " ms",
        Unit::Seconds => " s",
        Unit::Decibels => " dB",
        Unit::Linear | Unit::Q | Unit::Number => "",
    }
}

/// What the server does when a message to an address has been validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Set parameter `param` of module instance `node` (engine command, lockstep).
    SetParam {
        /// Module instance (position in the patch).
        node: NodeIndex,
        /// Parameter index in the module's spec.
        param: u16,
    },
    /// Open or close the gate of module instance `node` (engine command, lockstep).
    Gate {
        /// Module instance (position in the patch).
        node: NodeIndex,
    },
    /// Set the master gain (engine command).
    EngineGain,
    /// Play the short built-in test tone (engine command).
    TestTone,
    /// Answer `/status.reply`.
    Status,
    /// Answer `/metrics.reply`.
    Metrics,
    /// Answer `/synced <id>` once everything sent before has been stamped.
    Sync,
    /// Answer `/version.reply`.
    Version,
    /// Stop the server, answering `/done /quit`.
    Quit,
    /// Fault injection: crash a worker.
    DebugCrash,
    /// Fault injection: hang a worker.
    DebugHang,
    /// Fault injection: slow a worker.
    DebugSlow,
}

/// One address with its signature, its reply and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The exact OSC address (no pattern matching: scsynth does none either).
    pub address: String,
    /// Declared arguments, in order; optional ones come last.
    pub args: Vec<ArgSpec>,
    /// What the server answers on success (errors are always `/fail <address> <reason>`).
    pub reply: &'static str,
    /// One line for users: what the address does.
    pub doc: String,
    /// What the server does with a validated message.
    pub action: Action,
}

impl Entry {
    /// Number of arguments that must be present.
    pub fn required_args(&self) -> usize {
        self.args.iter().filter(|a| !a.optional).count()
    }

    /// The argument list as users write it: `<freq>`, `<micros> [slot]`, or empty.
    pub fn signature(&self) -> String {
        self.args
            .iter()
            .map(|a| {
                if a.optional {
                    format!("[{}]", a.name)
                } else {
                    format!("<{}>", a.name)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether the action is an engine command (allowed in command files and logs).
    pub fn is_engine_command(&self) -> bool {
        matches!(
            self.action,
            Action::SetParam { .. } | Action::Gate { .. } | Action::EngineGain | Action::TestTone
        )
    }
}

/// Every address the server answers, in deterministic (sorted) order.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressTable {
    entries: BTreeMap<String, Entry>,
    /// `param_addresses[node][param]`: inverse map used by [`AddressTable::describe`].
    param_addresses: Vec<Vec<String>>,
    /// `gate_addresses[node]`: gate address of each module, if it has a gate.
    gate_addresses: Vec<Option<String>>,
}

/// The slot argument of the debug addresses: which worker to hit (default: the active one).
const SLOT_ARG: ArgSpec = ArgSpec {
    name: "slot",
    kind: ArgKind::Int { min: 0, max: 1 },
    optional: true,
};

impl AddressTable {
    /// Builds the table for a patch.
    ///
    /// `modules` are the patch's module instances in node-index order: (instance id, spec).
    /// Every parameter of every module gets `/mod/<id>/<param>` with one number argument
    /// taken from its [`ParamSpec`]; modules with a gate get `/gate/<id>`. The fixed
    /// addresses (`/engine/gain`, `/test`, `/status`, `/metrics`, `/sync`, `/version`,
    /// `/quit`) are always present; `/debug/crash`, `/debug/hang` and `/debug/slow` only
    /// when `fault_injection` is set (the server's explicit flag).
    ///
    /// Node indices are `u16`: instances beyond index 65535 (no real patch has them) get
    /// no addresses.
    pub fn new(modules: &[(String, &'static ModuleSpec)], fault_injection: bool) -> AddressTable {
        let mut table = AddressTable {
            entries: BTreeMap::new(),
            param_addresses: Vec::with_capacity(modules.len()),
            gate_addresses: Vec::with_capacity(modules.len()),
        };
        for (index, (id, spec)) in modules.iter().enumerate() {
            let Ok(node) = NodeIndex::try_from(index) else {
                break;
            };
            let mut params = Vec::with_capacity(spec.params.len());
            for (param_index, param) in spec.params.iter().enumerate() {
                let Ok(param_index) = u16::try_from(param_index) else {
                    break;
                };
                let address = format!("{MOD_PREFIX}{id}/{}", param.name);
                table.insert(param_entry(
                    address.clone(),
                    id,
                    spec,
                    param,
                    node,
                    param_index,
                ));
                params.push(address);
            }
            table.param_addresses.push(params);
            if spec.has_gate {
                let address = format!("{GATE_PREFIX}{id}");
                table.insert(Entry {
                    address: address.clone(),
                    args: vec![ArgSpec {
                        name: "on",
                        kind: ArgKind::Gate,
                        optional: false,
                    }],
                    reply: "none",
                    doc: format!(
                        "Opens (1) or closes (0) the gate of {} `{id}` (note on / note off).",
                        spec.type_name
                    ),
                    action: Action::Gate { node },
                });
                table.gate_addresses.push(Some(address));
            } else {
                table.gate_addresses.push(None);
            }
        }
        table.insert_fixed(fault_injection);
        table
    }

    fn insert(&mut self, entry: Entry) {
        self.entries.insert(entry.address.clone(), entry);
    }

    fn insert_fixed(&mut self, fault_injection: bool) {
        let fixed = |address: &str, args: Vec<ArgSpec>, reply, doc: &str, action| Entry {
            address: address.to_string(),
            args,
            reply,
            doc: doc.to_string(),
            action,
        };
        self.insert(fixed(
            ENGINE_GAIN,
            vec![ArgSpec {
                name: "gain",
                kind: ArgKind::Number {
                    unit: Unit::Linear,
                    min: 0.0,
                    max: 1.0,
                    default: 1.0,
                },
                optional: false,
            }],
            "none",
            "Sets the master gain after the patch (smoothed).",
            Action::EngineGain,
        ));
        self.insert(fixed(
            TEST,
            vec![],
            "none",
            "Plays a short built-in test tone, mixed after the patch.",
            Action::TestTone,
        ));
        self.insert(fixed(
            STATUS,
            vec![],
            "/status.reply ,iiiiiffdd: 1, modules, voices sounding, groups (1), patches loaded, avg load %, peak load %, nominal rate, actual rate",
            "Reports the server's state in scsynth's /status.reply layout.",
            Action::Status,
        ));
        self.insert(fixed(
            METRICS,
            vec![],
            "/metrics.reply name value name value …",
            "Reports every metric as name (string) / value (double) pairs.",
            Action::Metrics,
        ));
        self.insert(fixed(
            SYNC,
            vec![ArgSpec {
                name: "id",
                kind: ArgKind::Int {
                    min: i64::from(i32::MIN),
                    max: i64::from(i32::MAX),
                },
                optional: false,
            }],
            "/synced <id>",
            "Answers once everything sent before it has been stamped (a barrier, as in scsynth).",
            Action::Sync,
        ));
        self.insert(fixed(
            VERSION,
            vec![],
            "/version.reply program major minor patch branch commit",
            "Reports the program name and version, in scsynth's /version.reply layout.",
            Action::Version,
        ));
        self.insert(fixed(
            QUIT,
            vec![],
            "/done /quit",
            "Stops the server: fades out, stops the workers, exits.",
            Action::Quit,
        ));
        if fault_injection {
            self.insert(fixed(
                DEBUG_CRASH,
                vec![SLOT_ARG],
                "none",
                "Fault injection: makes the worker in `slot` (default: the active one) abort.",
                Action::DebugCrash,
            ));
            self.insert(fixed(
                DEBUG_HANG,
                vec![SLOT_ARG],
                "none",
                "Fault injection: makes the worker in `slot` (default: the active one) stop making progress.",
                Action::DebugHang,
            ));
            self.insert(fixed(
                DEBUG_SLOW,
                vec![
                    ArgSpec {
                        name: "micros",
                        kind: ArgKind::Int {
                            min: 0,
                            max: 1_000_000,
                        },
                        optional: false,
                    },
                    SLOT_ARG,
                ],
                "none",
                "Fault injection: adds `micros` of busy delay to every block of the worker in `slot` (default: the active one).",
                Action::DebugSlow,
            ));
        }
    }

    /// The entry for an exact address, if the server answers it.
    pub fn lookup(&self, address: &str) -> Option<&Entry> {
        self.entries.get(address)
    }

    /// Every entry, sorted by address.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of addresses in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty (never true: the fixed addresses are always there).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The closest known address to a mistyped one, for "did you mean …?" hints.
    ///
    /// Uses edit distance and only suggests when the distance is small compared with the
    /// address (at most a third of its length, at least 2); very long inputs get no hint.
    pub fn suggest(&self, address: &str) -> Option<&str> {
        let longest = self.entries.keys().map(String::len).max().unwrap_or(0);
        if address.len() > 2 * longest + 8 {
            return None;
        }
        let limit = (address.chars().count() / 3).max(2);
        self.entries
            .keys()
            .map(|known| (edit_distance(address, known), known))
            .filter(|(distance, _)| *distance <= limit)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, known)| known.as_str())
    }

    /// Markdown table (address | arguments | reply | what it does) for the README and
    /// `chronus send --list`. Errors are always answered with `/fail <address> <reason>`.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| address | arguments (unit, range, default) | reply | what it does |\n| --- | --- | --- | --- |\n",
        );
        for entry in self.entries() {
            let args = if entry.args.is_empty() {
                "none".to_string()
            } else {
                entry
                    .args
                    .iter()
                    .map(ArgSpec::describe)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                entry.address,
                escape_cell(&args),
                escape_cell(entry.reply),
                escape_cell(&entry.doc)
            );
        }
        out
    }

    /// Address and arguments that express `command` (the inverse of decoding), used to
    /// write command logs and to show commands to users. `None` if the command names a
    /// node or parameter this table does not have.
    pub fn describe(&self, command: &Command) -> Option<(String, Vec<f64>)> {
        match *command {
            Command::SetParam { node, param, value } => {
                let address = self
                    .param_addresses
                    .get(usize::from(node))?
                    .get(usize::from(param))?;
                Some((address.clone(), vec![f64::from(value)]))
            }
            Command::Gate { node, on } => {
                let address = self.gate_addresses.get(usize::from(node))?.as_ref()?;
                Some((address.clone(), vec![if on { 1.0 } else { 0.0 }]))
            }
            Command::EngineGain(gain) => Some((ENGINE_GAIN.to_string(), vec![f64::from(gain)])),
            Command::TestTone => Some((TEST.to_string(), vec![])),
        }
    }
}

fn param_entry(
    address: String,
    id: &str,
    spec: &ModuleSpec,
    param: &ParamSpec,
    node: NodeIndex,
    param_index: u16,
) -> Entry {
    Entry {
        address,
        args: vec![ArgSpec {
            name: param.name,
            kind: ArgKind::Number {
                unit: param.unit,
                min: param.min,
                max: param.max,
                default: param.default,
            },
            optional: false,
        }],
        reply: "none",
        doc: format!("{} `{id}`: {}", spec.type_name, param.doc),
        action: Action::SetParam {
            node,
            param: param_index,
        },
    }
}

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Levenshtein distance over chars (small inputs only: callers bound the length).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chronus_dsp::spec::{PortSpec, Rate};

    const OUT: &[PortSpec] = &[PortSpec {
        name: "out",
        rate: Rate::Audio,
    }];

    /// A sine-like module for tests (the real module specs are another crate's business).
    pub(crate) static SINE: ModuleSpec = ModuleSpec {
        type_name: "sine",
        doc: "sine oscillator",
        inputs: &[],
        outputs: OUT,
        params: &[
            ParamSpec {
                name: "freq",
                unit: Unit::Hertz,
                min: 0.01,
                max: 20000.0,
                default: 440.0,
                doc: "frequency",
            },
            ParamSpec {
                name: "amp",
                unit: Unit::Linear,
                min: 0.0,
                max: 1.0,
                default: 0.5,
                doc: "output level",
            },
        ],
        has_gate: false,
    };

    /// An envelope-like module with a gate.
    pub(crate) static ENV: ModuleSpec = ModuleSpec {
        type_name: "adsr",
        doc: "envelope",
        inputs: &[],
        outputs: OUT,
        params: &[
            ParamSpec {
                name: "attack",
                unit: Unit::Milliseconds,
                min: 0.0,
                max: 10000.0,
                default: 10.0,
                doc: "attack time",
            },
            ParamSpec {
                name: "level",
                unit: Unit::Decibels,
                min: -60.0,
                max: 0.0,
                default: -6.0,
                doc: "sustain level | in dB",
            },
        ],
        has_gate: true,
    };

    /// The table used by most tests: `sine` (node 0) and `env` (node 1), fault injection on.
    pub(crate) fn table() -> AddressTable {
        AddressTable::new(
            &[("sine".to_string(), &SINE), ("env".to_string(), &ENV)],
            true,
        )
    }

    #[test]
    fn builds_param_gate_and_fixed_addresses() {
        let t = table();
        let freq = t.lookup("/mod/sine/freq").unwrap();
        assert_eq!(freq.action, Action::SetParam { node: 0, param: 0 });
        assert_eq!(freq.signature(), "<freq>");
        assert_eq!(
            t.lookup("/mod/env/level").unwrap().action,
            Action::SetParam { node: 1, param: 1 }
        );
        assert_eq!(
            t.lookup("/gate/env").unwrap().action,
            Action::Gate { node: 1 }
        );
        assert!(t.lookup("/gate/sine").is_none());
        for address in [
            ENGINE_GAIN,
            TEST,
            STATUS,
            METRICS,
            SYNC,
            VERSION,
            QUIT,
            DEBUG_CRASH,
            DEBUG_HANG,
            DEBUG_SLOW,
        ] {
            assert!(t.lookup(address).is_some(), "{address}");
        }
        assert_eq!(t.lookup(DEBUG_SLOW).unwrap().signature(), "<micros> [slot]");
        assert_eq!(t.lookup(DEBUG_SLOW).unwrap().required_args(), 1);
    }

    #[test]
    fn debug_addresses_need_fault_injection() {
        let t = AddressTable::new(&[("sine".to_string(), &SINE)], false);
        assert!(t.lookup(DEBUG_CRASH).is_none());
        assert!(t.lookup(DEBUG_HANG).is_none());
        assert!(t.lookup(DEBUG_SLOW).is_none());
        assert!(t.lookup(STATUS).is_some());
    }

    #[test]
    fn entries_are_sorted() {
        let t = table();
        let addresses: Vec<_> = t.entries().map(|e| e.address.clone()).collect();
        let mut sorted = addresses.clone();
        sorted.sort();
        assert_eq!(addresses, sorted);
        assert_eq!(addresses.len(), t.len());
        assert!(!t.is_empty());
    }

    #[test]
    fn markdown_lists_every_address() {
        let t = table();
        let md = t.to_markdown();
        for entry in t.entries() {
            assert!(
                md.contains(&format!("`{}`", entry.address)),
                "{}",
                entry.address
            );
        }
        assert!(md.contains("freq: Hz 0.01..20000, default 440"));
        assert!(md.contains("slot: int 0..1, optional"));
        assert!(md.contains("sustain level \\| in dB"));
        // One header, one separator, one row per entry.
        assert_eq!(md.lines().count(), t.len() + 2);
    }

    #[test]
    fn describe_inverts_the_table() {
        let t = table();
        assert_eq!(
            t.describe(&Command::SetParam {
                node: 0,
                param: 0,
                value: 440.0
            }),
            Some(("/mod/sine/freq".to_string(), vec![440.0]))
        );
        assert_eq!(
            t.describe(&Command::Gate { node: 1, on: true }),
            Some(("/gate/env".to_string(), vec![1.0]))
        );
        assert_eq!(
            t.describe(&Command::EngineGain(0.5)),
            Some(("/engine/gain".to_string(), vec![0.5]))
        );
        assert_eq!(
            t.describe(&Command::TestTone),
            Some(("/test".to_string(), vec![]))
        );
        assert_eq!(t.describe(&Command::Gate { node: 0, on: true }), None);
        assert_eq!(
            t.describe(&Command::SetParam {
                node: 9,
                param: 0,
                value: 1.0
            }),
            None
        );
    }

    #[test]
    fn suggestions_use_edit_distance() {
        let t = table();
        assert_eq!(t.suggest("/mod/sine/freqq"), Some("/mod/sine/freq"));
        assert_eq!(t.suggest("/mod/sinee/freq"), Some("/mod/sine/freq"));
        assert_eq!(t.suggest("/stauts"), Some("/status"));
        assert_eq!(t.suggest("/completely/unrelated/thing"), None);
        assert_eq!(t.suggest(&"x".repeat(10_000)), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
