//! `chronus modules`: every module type with its ports and parameters, as Markdown.
//!
//! Printed from the same specs the patch compiler and the OSC address table use, so the
//! documentation cannot drift from what the server enforces.

use std::fmt::Write as _;
use std::process::ExitCode;

use chronus_dsp::spec::{Rate, Unit};

/// Prints the module reference.
pub fn run() -> anyhow::Result<ExitCode> {
    print!("{}", reference());
    Ok(ExitCode::SUCCESS)
}

/// The module reference as Markdown.
pub fn reference() -> String {
    let mut out = String::new();
    for spec in chronus_dsp::all_specs() {
        let _ = writeln!(out, "### `{}`\n\n{}\n", spec.type_name, spec.doc);
        let ports = |ports: &[chronus_dsp::PortSpec]| {
            if ports.is_empty() {
                "none".to_string()
            } else {
                ports
                    .iter()
                    .map(|p| {
                        let rate = match p.rate {
                            Rate::Audio => "audio",
                            Rate::Control => "control",
                        };
                        format!("`{}` ({rate})", p.name)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(out, "- inputs: {}", ports(spec.inputs));
        let _ = writeln!(out, "- outputs: {}", ports(spec.outputs));
        if spec.has_gate {
            let _ = writeln!(out, "- gate: `/gate/<id> 1|0`");
        }
        if !spec.params.is_empty() {
            let _ = writeln!(out, "\n| parameter | unit | range | default | what it does |\n| --- | --- | --- | --- | --- |");
            for p in spec.params {
                let unit = match p.unit {
                    Unit::Linear => "",
                    other => other.symbol(),
                };
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {}..{} | {} | {} |",
                    p.name,
                    unit,
                    p.min,
                    p.max,
                    p.default,
                    p.doc.replace('|', "\\|")
                );
            }
        }
        out.push('\n');
    }
    out
}
