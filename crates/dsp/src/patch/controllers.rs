//! Controller mappings (`[midi]` in a patch file): which hardware controller moves which
//! parameter, over what range and along what curve.
//!
//! A mapping is part of the patch, like its tracks, so it travels with it everywhere a
//! patch goes (files, `/patch/dump`, the library, the command log, a resumed server), and
//! a learned one (`/midi/learn`) is an edit of the running patch. The DSP never sees a
//! controller: the server turns each controller value into a parameter value with
//! [`CcMapping::value_for`] and stamps that like any `/mod`, so the sound, the replay and
//! a failover know nothing of MIDI.
//!
//! ```toml
//! [midi]
//! cc74 = "filter.cutoff"                 # the parameter's whole range, its natural curve
//! cc1 = { param = "keys.filter.cutoff", min = 300.0, max = 6000.0, curve = "exp", channel = 1 }
//! ```

use serde::{Deserialize, Serialize};

use super::{PatchDesc, PatchError};
use crate::spec::{ParamSpec, Unit};

/// Largest controller value (7-bit MIDI).
pub const CC_MAX: f32 = 127.0;

/// One controller's mapping: `ccN = "module.param"` or the table form with a range, a
/// curve and a channel. (Read by hand, not as an untagged enum: a mistake in the table
/// form then says what is wrong, `unknown variant `log`, expected `lin` or `exp``, not
/// only that nothing matched.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CcMapping {
    /// `"module.param"` (`"instrument.module.param"` for every voice of an instrument):
    /// the parameter's whole range, along its natural curve, from any channel.
    Param(String),
    /// `{ param = "…", min, max, curve, channel }`, each but `param` optional.
    Ranged(RangedCc),
}

impl<'de> Deserialize<'de> for CcMapping {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CcMapping, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = CcMapping;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a parameter as \"module.param\", or a table { param = \"module.param\", min, max, curve = \"lin\" or \"exp\", channel = 1..16 }",
                )
            }

            fn visit_str<E: serde::de::Error>(self, param: &str) -> Result<CcMapping, E> {
                Ok(CcMapping::Param(param.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<CcMapping, A::Error> {
                RangedCc::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(CcMapping::Ranged)
            }
        }
        deserializer.deserialize_any(Either)
    }
}

/// The table form of a mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangedCc {
    /// `"module.param"`, as in the short form.
    pub param: String,
    /// The parameter's value at controller 0 (default: the parameter's minimum); may be
    /// above `max` for a control that works the other way round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f32>,
    /// The value at controller 127 (default: the parameter's maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f32>,
    /// How the value moves between them (default: exponential for frequencies, else
    /// linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<Curve>,
    /// The MIDI channel (1..=16) it listens to; any channel when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u8>,
}

/// How a controller's travel maps onto the parameter's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Curve {
    /// Equal steps of value per step of the controller.
    Lin,
    /// Equal ratios per step (octaves of a cutoff): both ends above 0.
    Exp,
}

impl CcMapping {
    /// The parameter it moves, as written (`"filter.cutoff"`).
    pub fn param(&self) -> &str {
        match self {
            CcMapping::Param(param) => param,
            CcMapping::Ranged(ranged) => &ranged.param,
        }
    }

    /// The channel it listens to (`None`: any).
    pub fn channel(&self) -> Option<u8> {
        match self {
            CcMapping::Param(_) => None,
            CcMapping::Ranged(ranged) => ranged.channel,
        }
    }

    /// The module id and the parameter name it moves: `"keys.filter.cutoff"` is the
    /// parameter `cutoff` of `keys.filter` (every voice's `filter` of instrument `keys`).
    pub fn target(&self) -> Option<(&str, &str)> {
        self.param().rsplit_once('.')
    }

    /// The parameter value for controller value `cc` (0..=127, clamped), given the
    /// parameter's spec; exact at both ends.
    pub fn value_for(&self, spec: &ParamSpec, cc: f32) -> f32 {
        let (min, max, curve) = self.resolved(spec);
        let t = (cc / CC_MAX).clamp(0.0, 1.0);
        let value = match curve {
            _ if t == 0.0 => min,
            _ if t == 1.0 => max,
            Curve::Lin => min + (max - min) * t,
            Curve::Exp => min * (max / min).powf(t),
        };
        spec.clamp(value)
    }

    /// (value at 0, value at 127, curve), the defaults filled in from `spec`.
    fn resolved(&self, spec: &ParamSpec) -> (f32, f32, Curve) {
        let (min, max, curve) = match self {
            CcMapping::Param(_) => (None, None, None),
            CcMapping::Ranged(r) => (r.min, r.max, r.curve),
        };
        let min = min.unwrap_or(spec.min);
        let max = max.unwrap_or(spec.max);
        let natural = if spec.unit == Unit::Hertz && min > 0.0 && max > 0.0 {
            Curve::Exp
        } else {
            Curve::Lin
        };
        (min, max, curve.unwrap_or(natural))
    }

    /// Checks the mapping against `spec`, the parameter it moves.
    fn check(&self, spec: &ParamSpec) -> Result<(), String> {
        if !spec.live {
            return Err(format!(
                "'{}' is fixed when the patch compiles; a controller cannot move it",
                self.param()
            ));
        }
        if let Some(channel) = self.channel() {
            if !(1..=16).contains(&channel) {
                return Err(format!("channel {channel}: MIDI channels are 1 to 16"));
            }
        }
        let (min, max, curve) = self.resolved(spec);
        for (end, value) in [("min", min), ("max", max)] {
            if !(value.is_finite() && spec.min <= value && value <= spec.max) {
                return Err(format!(
                    "{end} = {value} is outside {}'s range {}..{}",
                    spec.name, spec.min, spec.max
                ));
            }
        }
        if curve == Curve::Exp && !(min > 0.0 && max > 0.0) {
            return Err("an exp curve needs both ends above 0".to_string());
        }
        Ok(())
    }
}

/// The controller number of a `[midi]` key: `"cc74"` is 74.
pub fn controller_of(key: &str) -> Option<u8> {
    let number = key.strip_prefix("cc")?;
    // One spelling per controller: `cc7`, never `cc07` (two keys for one controller, the
    // second dead).
    if number.is_empty()
        || number.len() > 3
        || (number.len() > 1 && number.starts_with('0'))
        || !number.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    number.parse().ok().filter(|&n: &u8| n <= 127)
}

/// The spec of parameter `param` of module `id` in `desc` (`"keys.filter"`: the module
/// `filter` of instrument `keys`).
pub fn param_spec(desc: &PatchDesc, id: &str, param: &str) -> Option<&'static ParamSpec> {
    let module = match id.split_once('.') {
        None => desc.modules.iter().find(|m| m.id == id)?,
        Some((instrument, member)) => desc
            .instruments
            .iter()
            .find(|i| i.name == instrument)?
            .modules
            .iter()
            .find(|m| m.id == member)?,
    };
    let spec = crate::modules::spec_for(&module.type_name)?;
    spec.params.iter().find(|p| p.name == param)
}

/// Checks every mapping of `desc`: keys `cc0` to `cc127`, each moving a live parameter of
/// the patch within its range.
///
/// # Errors
/// [`PatchError::Midi`] naming the key and what is wrong.
pub fn check(desc: &PatchDesc) -> Result<(), PatchError> {
    for (key, mapping) in &desc.midi {
        let invalid = |reason: String| PatchError::Midi {
            key: key.clone(),
            reason,
        };
        if controller_of(key).is_none() {
            return Err(invalid(
                "keys are cc0 to cc127 (the controller number)".to_string(),
            ));
        }
        let Some((id, param)) = mapping.target() else {
            return Err(invalid(format!(
                "'{}': name a parameter as \"module.param\" (\"instrument.module.param\" for every voice)",
                mapping.param()
            )));
        };
        let spec = param_spec(desc, id, param)
            .ok_or_else(|| invalid(format!("no parameter '{param}' of a module '{id}'")))?;
        mapping.check(spec).map_err(invalid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cutoff() -> &'static ParamSpec {
        param_spec(&PatchDesc::default_patch(), "filter", "cutoff").unwrap()
    }

    #[test]
    fn a_mapping_of_the_wrong_shape_says_what_is_wrong() {
        let base = PatchDesc::default_patch().to_toml_string();
        for (mapping, says) in [
            (
                "cc7 = { param = \"filter.cutoff\", curve = \"log\" }",
                "unknown variant `log`, expected `lin` or `exp`",
            ),
            (
                "cc7 = { param = \"filter.cutoff\", channel = \"1\" }",
                "invalid type: string \"1\", expected u8",
            ),
            (
                "cc7 = { param = \"filter.cutoff\", colour = 1 }",
                "unknown field `colour`",
            ),
            ("cc7 = 5", "a parameter as \"module.param\", or a table"),
        ] {
            let text = format!("{base}\n[midi]\n{mapping}\n");
            let e = PatchDesc::from_toml_str(&text).unwrap_err().to_string();
            assert!(e.contains(says), "{mapping}: {e}");
        }
    }

    #[test]
    fn controller_keys() {
        assert_eq!(controller_of("cc0"), Some(0));
        assert_eq!(controller_of("cc74"), Some(74));
        assert_eq!(controller_of("cc127"), Some(127));
        for bad in [
            "cc128", "cc", "cc-1", "cc+1", "cc0074", "CC74", "cc7a", "74",
        ] {
            assert_eq!(controller_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_frequency_sweeps_in_octaves_and_both_ends_are_exact() {
        let m = CcMapping::Ranged(RangedCc {
            param: "filter.cutoff".into(),
            min: Some(100.0),
            max: Some(6_400.0),
            curve: None,
            channel: None,
        });
        let spec = cutoff();
        assert_eq!(m.value_for(spec, 0.0), 100.0);
        assert_eq!(m.value_for(spec, 127.0), 6_400.0);
        // Halfway is the geometric middle: three octaves up.
        let mid = m.value_for(spec, 63.5);
        assert!((mid - 800.0).abs() < 0.1, "{mid}");
        assert_eq!(m.value_for(spec, 500.0), 6_400.0, "clamped");
        let lin = CcMapping::Ranged(RangedCc {
            curve: Some(Curve::Lin),
            ..match m {
                CcMapping::Ranged(r) => r,
                CcMapping::Param(_) => unreachable!(),
            }
        });
        assert!((lin.value_for(spec, 63.5) - 3_250.0).abs() < 0.1);
    }

    #[test]
    fn the_short_form_spans_the_whole_range() {
        let m = CcMapping::Param("filter.cutoff".into());
        let spec = cutoff();
        assert_eq!(m.value_for(spec, 0.0), spec.min);
        assert_eq!(m.value_for(spec, 127.0), spec.max);
        assert_eq!(m.target(), Some(("filter", "cutoff")));
    }

    #[test]
    fn mappings_read_back_and_bad_ones_are_named() {
        let base = PatchDesc::default_patch().to_toml_string();
        let good = format!(
            "{base}\n[midi]\ncc74 = \"filter.cutoff\"\ncc1 = {{ param = \"keys.filter.cutoff\", min = 300.0, max = 6000.0, curve = \"exp\", channel = 2 }}\n"
        );
        let desc = PatchDesc::from_toml_str(&good).unwrap();
        assert_eq!(desc.midi.len(), 2);
        check(&desc).unwrap();
        let again = PatchDesc::from_toml_str(&desc.to_toml_string()).unwrap();
        assert_eq!(again, desc);
        for (mapping, why) in [
            ("cc200 = \"filter.cutoff\"", "keys are cc0 to cc127"),
            ("cc7 = \"cutoff\"", "name a parameter"),
            (
                "cc7 = \"filtre.cutoff\"",
                "no parameter 'cutoff' of a module 'filtre'",
            ),
            ("cc7 = \"filter.cutof\"", "no parameter 'cutof'"),
            (
                "cc7 = { param = \"filter.cutoff\", min = -5.0 }",
                "min = -5 is outside cutoff's range",
            ),
            ("cc07 = \"filter.cutoff\"", "keys are cc0 to cc127"),
            (
                "cc7 = { param = \"filter.cutoff\", channel = 17 }",
                "channel 17",
            ),
            (
                "cc7 = { param = \"sine.gain\", curve = \"exp\" }",
                "an exp curve needs both ends above 0",
            ),
        ] {
            let text = format!("{base}\n[midi]\n{mapping}\n");
            let desc = PatchDesc::from_toml_str(&text).unwrap();
            let e = check(&desc).unwrap_err().to_string();
            assert!(e.contains(why), "{mapping}: {e}");
            assert!(e.starts_with("[midi] cc"), "{e}");
        }
    }
}
