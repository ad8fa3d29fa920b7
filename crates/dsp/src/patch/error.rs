//! Why a patch could not be parsed or compiled.
//!
//! Every message names the offending module, port or parameter and says what would be
//! valid, so a user can fix `patch.toml` from the message alone.

/// A patch description that cannot become a running [`super::Patch`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The TOML text did not parse into a patch description.
    #[error("patch TOML: {message}")]
    Parse {
        /// The TOML parser's message (with line and column).
        message: String,
    },
    /// Sample rate or block size unusable for rendering.
    #[error("invalid render settings: sample rate {sample_rate} (must be finite and > 0), max block {max_block} (must be >= 1)")]
    InvalidSettings {
        /// Sample rate given.
        sample_rate: f32,
        /// Maximum block length given.
        max_block: usize,
    },
    /// More modules than a u16 node index can address.
    #[error("patch has {count} modules; at most {max} are supported")]
    TooManyModules {
        /// Modules in the description.
        count: usize,
        /// Largest supported count.
        max: usize,
    },
    /// A module id is empty or contains characters that would break `module:port` syntax
    /// or OSC addresses.
    #[error(
        "invalid module id '{id}': ids must be non-empty and use only letters, digits, '_' and '-'"
    )]
    InvalidId {
        /// The rejected id.
        id: String,
    },
    /// Two modules share an id.
    #[error(
        "duplicate module id '{id}' (modules {first} and {second} in the list); ids must be unique"
    )]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// Position of the first module with it.
        first: usize,
        /// Position of the second.
        second: usize,
    },
    /// A module's type is not a registered module type.
    #[error("module '{module}' has unknown type '{type_name}'{}; known types: {known}", suggestion_text(.suggestion))]
    UnknownType {
        /// Module id.
        module: String,
        /// Type name given.
        type_name: String,
        /// Closest known type name, if any is close.
        suggestion: Option<String>,
        /// All known type names, comma separated.
        known: String,
    },
    /// A module type declares more ports than the renderer supports.
    #[error(
        "module type '{type_name}' declares {count} {direction}s; at most {max} are supported"
    )]
    TooManyPorts {
        /// Offending type.
        type_name: String,
        /// "input" or "output".
        direction: &'static str,
        /// Ports declared.
        count: usize,
        /// Supported maximum.
        max: usize,
    },
    /// A parameter name does not exist on the module's type.
    #[error("module '{module}' ({type_name}) has no parameter '{param}'{}; parameters: {valid}", suggestion_text(.suggestion))]
    UnknownParam {
        /// Module id.
        module: String,
        /// Module type.
        type_name: String,
        /// Parameter name given.
        param: String,
        /// Closest valid name, if any is close.
        suggestion: Option<String>,
        /// Valid parameter names, comma separated (or "none").
        valid: String,
    },
    /// A parameter value lies outside its documented range.
    #[error("module '{module}': {param} = {value} is out of range {min}..={max} {unit}")]
    ParamOutOfRange {
        /// Module id.
        module: String,
        /// Parameter name.
        param: String,
        /// Value given.
        value: f32,
        /// Smallest valid value.
        min: f32,
        /// Largest valid value.
        max: f32,
        /// Unit symbol.
        unit: &'static str,
    },
    /// A connection names a module that is not in the patch.
    #[error("connection '{from}' -> '{to}': unknown module '{module}'{}", suggestion_text(.suggestion))]
    UnknownModule {
        /// Connection source as written.
        from: String,
        /// Connection destination as written.
        to: String,
        /// The unknown module id.
        module: String,
        /// Closest existing id, if any is close.
        suggestion: Option<String>,
    },
    /// A connection names a port the module does not have (or uses a bare module name for
    /// a module without ports in that direction).
    #[error("module '{module}' has no {direction} '{port}' ({direction}s: {available})")]
    UnknownPort {
        /// Module id.
        module: String,
        /// "input" or "output".
        direction: &'static str,
        /// Port name given ("" for a bare module name).
        port: String,
        /// The module's ports in that direction, comma separated (or "none").
        available: String,
    },
    /// A connection uses an output as a destination or an input as a source.
    #[error("'{module}:{port}' is an {actual} of '{module}', not an {wanted}; connections go from an output to an input")]
    WrongDirection {
        /// Module id.
        module: String,
        /// Port name.
        port: String,
        /// What the port is ("input" or "output").
        actual: &'static str,
        /// What the connection needs there.
        wanted: &'static str,
    },
    /// An audio-rate output feeds a control-rate input.
    #[error("type mismatch: '{from}' is an audio-rate output and '{to}' a control-rate input; modulate with a control-rate source (lfo, adsr:env, ar:env, constant), or pass the audio through a 'scale' module to use it as control")]
    RateMismatch {
        /// Source as written.
        from: String,
        /// Destination as written.
        to: String,
    },
    /// Two connections feed the same input; mix them with a mixer module instead.
    #[error("input '{module}:{port}' is connected twice (from '{first}' and from '{second}'); an input takes one connection")]
    InputConnectedTwice {
        /// Module id.
        module: String,
        /// Input port name.
        port: String,
        /// First source as written.
        first: String,
        /// Second source as written.
        second: String,
    },
    /// The connections form a cycle; feedback needs an explicit delay module.
    #[error("connections form a cycle: {}; feedback is only possible through a delay module", .modules.join(" -> "))]
    Cycle {
        /// The modules on the cycle in signal order, the first repeated at the end.
        modules: Vec<String>,
    },
    /// The patch does not have exactly one `output` module.
    #[error("a patch needs exactly one module of type 'output', found {found}{}", list_text(.ids))]
    OutputCount {
        /// How many were found.
        found: usize,
        /// Their ids.
        ids: Vec<String>,
    },
    /// An instrument that cannot be built (its voice's sub-graph, its voice count, or
    /// its name).
    #[error("instrument '{name}': {reason}")]
    Instrument {
        /// The instrument's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A sequencer track that cannot be played (its pattern, its instrument, its
    /// length, its name), found by the engine, which plays it.
    #[error("track '{name}': {reason}")]
    Track {
        /// The track's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `[clock]` that cannot run (its tempo or swing out of range).
    #[error("[clock]: {reason}")]
    Clock {
        /// What is wrong with it.
        reason: String,
    },
    /// A `[midi]` controller mapping that cannot work (its key, its parameter, its range).
    #[error("[midi] {key}: {reason}")]
    Midi {
        /// The mapping's key (`cc74`).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An instrument's `arp` that cannot play (a setting out of range).
    #[error("instrument '{instrument}': arp: {reason}")]
    Arp {
        /// The instrument's name.
        instrument: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn suggestion_text(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}

fn list_text(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" ({})", ids.join(", "))
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo
/// (distance at most 2, or a third of the word's length for long words). Ties go to the
/// earlier candidate, so suggestions are deterministic.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (word.chars().count() / 3).max(2);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&word.to_lowercase(), &c.to_lowercase());
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("sinee", "sine"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let types = ["sine", "adsr", "biquad", "gain", "output"];
        assert_eq!(suggest("sinee", types), Some("sine".into()));
        assert_eq!(suggest("Biquad", types), Some("biquad".into()));
        assert_eq!(suggest("reverb", types), None);
    }
}
