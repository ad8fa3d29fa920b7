// The parameter sliders, built from the server's own address table (`/params` of each
// module): one accessible slider per `/mod/<id>/<param>` (role="slider", aria-valuenow,
// aria-valuemin, aria-valuemax, aria-label = the address), moved by mouse, touch or arrow
// keys (Shift: ten times the step; PageUp/PageDown too; Home/End: the ends). Frequencies
// move evenly in pitch. A change made elsewhere (the `params` push) moves the slider.

/** Even in pitch for frequency ranges from above 0, else linear. */
function scaleOf(param) {
  if (param.unit === "Hz" && param.min > 0) {
    const lo = Math.log(param.min), hi = Math.log(param.max);
    return {
      toValue: (p) => Math.exp(lo + p * (hi - lo)),
      toPos: (v) => (Math.log(Math.max(v, param.min)) - lo) / (hi - lo),
    };
  }
  const span = param.max - param.min || 1;
  return { toValue: (p) => param.min + p * span, toPos: (v) => (v - param.min) / span };
}

/** Rounds to what a person reads and what the server will log: 4 significant digits. */
function tidy(value) {
  return Number(value.toPrecision(4));
}

export class Sliders {
  constructor(root, send) {
    this.root = root;
    this.send = send;
    this.byAddress = new Map();
  }

  build(modules) {
    this.root.replaceChildren();
    this.byAddress.clear();
    for (const module of modules) {
      if (module.params.length === 0) continue;
      const box = document.createElement("fieldset");
      box.className = "module";
      const legend = document.createElement("legend");
      legend.textContent = `${module.id} (${module.type})`;
      box.append(legend);
      for (const param of module.params) box.append(this.slider(param));
      this.root.append(box);
    }
  }

  slider(param) {
    const row = document.createElement("div");
    row.className = "param";
    const name = document.createElement("span");
    name.textContent = param.name;
    const track = document.createElement("div");
    track.className = "slider";
    track.tabIndex = 0;
    track.setAttribute("role", "slider");
    track.setAttribute("aria-label", param.address);
    track.setAttribute("aria-valuemin", String(param.min));
    track.setAttribute("aria-valuemax", String(param.max));
    const fill = document.createElement("div");
    fill.className = "fill";
    track.append(fill);
    const shown = document.createElement("span");
    shown.className = "value";
    row.append(name, track, shown);

    const scale = scaleOf(param);
    const entry = { param, track, fill, shown, scale, value: param.current, touched: 0, timer: null, pending: null };
    this.byAddress.set(param.address, entry);
    this.show(entry, tidy(param.current));

    const setFromUser = (value) => {
      value = tidy(Math.min(param.max, Math.max(param.min, value)));
      if (value === entry.value) return;
      this.show(entry, value);
      entry.touched = performance.now();
      this.sendSoon(entry, value);
    };
    const stepBy = (fraction) => {
      const pos = Math.min(1, Math.max(0, scale.toPos(entry.value) + fraction));
      setFromUser(scale.toValue(pos));
    };
    track.addEventListener("keydown", (event) => {
      const big = event.shiftKey ? 10 : 1;
      const moves = {
        ArrowRight: 0.01 * big, ArrowUp: 0.01 * big, ArrowLeft: -0.01 * big, ArrowDown: -0.01 * big,
        PageUp: 0.1, PageDown: -0.1,
      };
      if (event.key in moves) stepBy(moves[event.key]);
      else if (event.key === "Home") setFromUser(param.min);
      else if (event.key === "End") setFromUser(param.max);
      else return;
      event.preventDefault();
    });
    const fromPointer = (event) => {
      const rect = track.getBoundingClientRect();
      const pos = Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
      setFromUser(scale.toValue(pos));
    };
    track.addEventListener("pointerdown", (event) => {
      track.setPointerCapture(event.pointerId);
      track.focus();
      fromPointer(event);
    });
    track.addEventListener("pointermove", (event) => {
      if (track.hasPointerCapture(event.pointerId)) fromPointer(event);
    });
    return row;
  }

  show(entry, value) {
    entry.value = value;
    const pos = Math.min(1, Math.max(0, entry.scale.toPos(value)));
    entry.fill.style.width = `${(pos * 100).toFixed(2)}%`;
    entry.track.setAttribute("aria-valuenow", String(value));
    // Plain ranges ("0..1") need no unit after the number.
    const unit = entry.param.unit.includes("..") ? "" : entry.param.unit;
    const text = `${value} ${unit}`.trim();
    entry.track.setAttribute("aria-valuetext", text);
    entry.shown.textContent = text;
  }

  /** At most one message per slider every 30 ms while dragging; the last value always goes. */
  sendSoon(entry, value) {
    entry.pending = value;
    if (entry.timer !== null) return;
    this.send(entry.param.address, [String(value)]);
    entry.pending = null;
    entry.timer = setTimeout(() => {
      entry.timer = null;
      if (entry.pending !== null) this.sendSoon(entry, entry.pending);
    }, 30);
  }

  /** A `params` push: the parameter changed (by this page or anyone else). */
  changed(address, value) {
    const entry = this.byAddress.get(address);
    if (!entry || typeof value !== "number") return;
    // The echoes of a drag in progress would pull the slider back: the user's hand wins.
    if (performance.now() - entry.touched < 500) return;
    this.show(entry, tidy(value));
  }

  /** Every slider's label, for tests and tools. */
  labels() {
    return [...this.byAddress.keys()];
  }
}
