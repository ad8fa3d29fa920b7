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

impl PatchDesc {
    /// sine -> adsr -> filter (biquad) -> gain -> out (output), with ids "sine", "adsr",
    /// "filter", "gain", "out": the prototype's chain, played when no patch is given.
    pub fn default_patch() -> PatchDesc {
        PatchDesc {
            modules: vec![
                ModuleDesc::new("sine", "sine"),
                ModuleDesc::new("adsr", "adsr"),
                ModuleDesc::new("filter", "biquad"),
                ModuleDesc::new("gain", "gain"),
                ModuleDesc::new("out", "output"),
            ],
            connections: vec![
                Connection::new("sine:out", "adsr:in"),
                Connection::new("adsr:out", "filter:in"),
                Connection::new("filter:out", "gain:in"),
                Connection::new("gain:out", "out:left"),
            ],
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
