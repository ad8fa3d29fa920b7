#!/usr/bin/env python3
"""Writes the same-output corpus: for every module type in docs/modules.md, a small patch
that makes it sound (fed by a source where it has inputs, heard through a VCA where its
output is a control signal, followed by an envelope where it has no gate of its own) and a
commands file that opens a gate, sets every parameter away from its default, changes one
again, ramps one, and closes the gate; and, for every patch in patches/, a commands file
that gates its envelopes. Run it again after adding a module type; commit what it writes.
"""
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = pathlib.Path(__file__).resolve().parent / "corpus"


def module_types():
    text = "\n" + (ROOT / "docs" / "modules.md").read_text()
    for section in text.split("\n### `")[1:]:
        name = section.split("`", 1)[0]
        def ports(kind):
            m = re.search(rf"^- {kind}: (.*)$", section, re.M)
            return re.findall(r"`(\w+)` \((\w+)\)", m.group(1)) if m else []
        params = []
        for row in re.findall(r"^\| `(\w+)` \| ([^|]*) \| ([^|]*) \| ([^|]*) \|", section, re.M):
            pname, unit, rng, default = (s.strip() for s in row)
            lo, hi = (float(x) for x in re.match(r"(-?[\d.]+)\.\.(-?[\d.]+)", rng).groups())
            params.append((pname, unit, lo, hi, float(default)))
        yield name, ports("inputs"), ports("outputs"), "- gate:" in section, params


def away(unit, lo, hi, default):
    """A value inside the range, clearly not the default."""
    if unit in ("ms", "s"):
        value = default * 0.5 + (hi - lo) * 0.01
    elif hi - default >= default - lo:
        value = default + 0.3 * (hi - default)
    else:
        value = default - 0.3 * (default - lo)
    return round(min(hi, max(lo, value)), 4)


def fmt(x):
    return repr(float(x))


def write_module_case(name, inputs, outputs, gated, params):
    modules = [("src", "saw", {"freq": 110.0, "gain": 0.5}),
               ("src2", "noise", {}),
               ("ctl", "lfo", {"freq": 5.0})]
    connections = []
    values = {p[0]: away(*p[1:]) for p in params}
    modules.append(("dut", name, values))
    audio_sources = ["src:out", "src2:out"]
    for i, (port, kind) in enumerate(inputs):
        if name == "output":
            break
        source = "ctl:out" if kind == "control" else audio_sources[min(i, 1) if name in ("crossfade", "ringmod") else 0]
        connections.append((source, f"dut:{port}"))
    audio_out = [p for p, k in outputs if k == "audio"]
    if name == "output":
        # The module under test is the output itself, after an envelope.
        modules.append(("env", "adsr", {"attack": 5.0, "release": 200.0}))
        connections += [("src:out", "env:in"), ("env:out", "dut:left"), ("src2:out", "dut:right")]
        return render_patch(modules, connections), [
            "0.05 /gate/env 1", "0.45 /ramp /mod/src/gain 0.3 0.5", "0.6 /mod/src/freq 220", "1.0 /gate/env 0"]
    if not audio_out:
        modules.append(("vca", "vca", {}))
        connections += [("src:out", "vca:in"), ("dut:out", "vca:cv")]
        audio_out = ["vca:out"]
    else:
        audio_out = [f"dut:{p}" for p in audio_out[:2]]
    if gated:
        heard = audio_out
    else:
        modules.append(("env", "adsr", {"attack": 5.0, "release": 200.0}))
        connections.append((audio_out[0], "env:in"))
        heard = ["env:out"]
    modules.append(("out", "output", {}))
    connections.append((heard[0], "out:left"))
    if len(heard) > 1:
        connections.append((heard[1], "out:right"))
    gate = "dut" if gated else "env"
    commands = [f"0.05 /gate/{gate} 1"]
    if params:
        first = params[0]
        middle = round((values[first[0]] + first[4]) / 2, 4)
        commands.append(f"0.3 /mod/dut/{first[0]} {middle}")
        last = params[-1]
        commands.append(f"0.5 /ramp /mod/dut/{last[0]} {fmt(last[4])} 0.4")
    commands.append("0.45 /ramp /mod/src/gain 0.3 0.5")
    commands.append("0.6 /mod/src/freq 220")
    commands.append(f"1.0 /gate/{gate} 0")
    return render_patch(modules, connections), commands


def render_patch(modules, connections):
    lines = []
    for mid, mtype, params in modules:
        lines += ["[[modules]]", f'id = "{mid}"', f'type = "{mtype}"']
        if params:
            lines.append("params = { " + ", ".join(f"{k} = {fmt(v)}" for k, v in params.items()) + " }")
        lines.append("")
    for a, b in connections:
        lines += ["[[connections]]", f'from = "{a}"', f'to = "{b}"', ""]
    return "\n".join(lines)


def main():
    (OUT / "modules").mkdir(parents=True, exist_ok=True)
    (OUT / "patches").mkdir(parents=True, exist_ok=True)
    for name, inputs, outputs, gated, params in module_types():
        patch, commands = write_module_case(name, inputs, outputs, gated, params)
        (OUT / "modules" / f"{name}.toml").write_text(patch)
        commands.sort(key=lambda line: float(line.split()[0]))
        (OUT / "modules" / f"{name}.txt").write_text("\n".join(commands) + "\n")
    for patch in sorted((ROOT / "patches").glob("*.toml")):
        desc = tomllib.loads(patch.read_text())
        gates = [m["id"] for m in desc.get("modules", []) if m["type"] in ("adsr", "ar")]
        lines = [f"0.05 /gate/{g} 1" for g in gates] + [f"1.0 /gate/{g} 0" for g in gates]
        (OUT / "patches" / f"{patch.stem}.txt").write_text("\n".join(lines) + "\n")
    default = ["0.05 /gate/adsr 1", "0.3 /mod/sine/freq 330", "0.5 /ramp /mod/filter/cutoff 600 0.4", "1.0 /gate/adsr 0"]
    (OUT / "patches" / "default.txt").write_text("\n".join(default) + "\n")


main()
