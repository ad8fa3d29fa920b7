// The workers and their failovers: a row per slot with its role and pid (the `metrics`
// push at 2 Hz: slot.N.role, slot.N.pid, slot.N.load_percent; the `worker` push at once
// on a change), the failover timeline (the `failover` push: slot, frame, cause; newest
// first), and, when the server allows fault injection, buttons that crash, hang or slow
// the active worker.

export class Workers {
  constructor(doc, send) {
    this.body = doc.querySelector("#workers tbody");
    this.timeline = doc.getElementById("failovers");
    this.summary = doc.getElementById("failover-summary");
    this.faults = doc.getElementById("faults");
    this.slots = new Map();
    doc.getElementById("kill").addEventListener("click", () => send("/debug/crash"));
    doc.getElementById("hang").addEventListener("click", () => send("/debug/hang"));
    doc.getElementById("slow").addEventListener("click", () => send("/debug/slow", ["20000"]));
  }

  setFaultInjection(on) {
    this.faults.hidden = !on;
  }

  serverGone() {
    this.faults.hidden = true;
    this.entry("the server is gone");
  }

  slot(n) {
    if (!this.slots.has(n)) this.slots.set(n, { role: "?", pid: 0, load: null });
    return this.slots.get(n);
  }

  metrics(v) {
    const m = new Map();
    for (let i = 0; i + 1 < v.length; i += 2) m.set(v[i], v[i + 1]);
    for (const [name, value] of m) {
      const match = /^slot\.(\d+)\.(role|pid|load_percent)$/.exec(name);
      if (!match) continue;
      const slot = this.slot(Number(match[1]));
      if (match[2] === "role") slot.role = String(value);
      else if (match[2] === "pid") slot.pid = value;
      else slot.load = Number(value);
    }
    if (m.has("failover_count")) {
      const last = m.get("failover_ms_last");
      this.summary.textContent = `failovers: ${m.get("failover_count")}` +
        (typeof last === "number" ? `, last took ${last.toFixed(2)} ms` : "");
    }
    this.render();
  }

  worker(v) {
    const slot = this.slot(Number(v[0]));
    slot.role = String(v[1]);
    slot.pid = v[2];
    this.render();
  }

  failover(v) {
    this.entry(`failover to slot ${v[0]} at frame ${v[1]}: ${v[2]}`);
  }

  entry(text) {
    const item = document.createElement("li");
    item.className = "failover";
    item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    this.timeline.prepend(item);
  }

  render() {
    this.body.replaceChildren(...[...this.slots.entries()].sort((a, b) => a[0] - b[0]).map(([n, s]) => {
      const row = document.createElement("tr");
      const cells = [String(n), s.role, String(s.pid), s.load === null ? "" : `${s.load.toFixed(0)} %`];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      row.children[1].className = `role-${s.role}`;
      return row;
    }));
  }
}
