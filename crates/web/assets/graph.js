// The patch as a graph: its modules and instruments as boxes in columns by their distance
// from the sources, and its connections as lines (SVG), read from the `/patch/dump` TOML.
// The reader knows the few shapes `/patch/dump` writes ([[modules]] id/type,
// [[connections]] from/to, [[instruments]] name), not TOML at large.

const SVG = "http://www.w3.org/2000/svg";

export function parsePatch(text) {
  const nodes = [];
  const edges = [];
  let section = "";
  let current = null;
  for (const raw of String(text || "").split("\n")) {
    const line = raw.trim();
    const header = /^\[\[?([^\]]+)\]\]?$/.exec(line);
    if (header) {
      section = header[1].trim();
      current = {};
      if (section === "modules") nodes.push(current);
      else if (section === "connections") edges.push(current);
      else if (section === "instruments") { current.type = "instrument"; nodes.push(current); }
      else current = null;
      continue;
    }
    const pair = /^(\w+)\s*=\s*"([^"]*)"/.exec(line);
    if (pair && current) current[pair[1]] = pair[2];
  }
  for (const node of nodes) if (node.name && !node.id) node.id = node.name;
  return {
    nodes: nodes.filter((n) => n.id),
    edges: edges.filter((e) => e.from && e.to).map((e) => ({ from: e.from.split(":")[0], to: e.to.split(":")[0] })),
  };
}

export function drawGraph(root, text) {
  const { nodes, edges } = parsePatch(text);
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  for (let round = 0; round < nodes.length; round++) {
    for (const e of edges) {
      if (depth.has(e.from) && depth.has(e.to) && depth.get(e.to) < depth.get(e.from) + 1) {
        depth.set(e.to, Math.min(nodes.length, depth.get(e.from) + 1));
      }
    }
  }
  const columns = new Map();
  const place = new Map();
  const [w, h, gapX, gapY] = [110, 34, 40, 16];
  for (const n of nodes) {
    const d = depth.get(n.id);
    const row = columns.get(d) || 0;
    columns.set(d, row + 1);
    place.set(n.id, { x: 10 + d * (w + gapX), y: 10 + row * (h + gapY) });
  }
  const width = 20 + (Math.max(0, ...columns.keys()) + 1) * (w + gapX);
  const height = 20 + Math.max(1, ...columns.values()) * (h + gapY);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `patch graph: ${nodes.length} modules, ${edges.length} connections`);
  for (const e of edges) {
    const a = place.get(e.from), b = place.get(e.to);
    if (!a || !b) continue;
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", a.x + w); line.setAttribute("y1", a.y + h / 2);
    line.setAttribute("x2", b.x); line.setAttribute("y2", b.y + h / 2);
    svg.append(line);
  }
  for (const n of nodes) {
    const p = place.get(n.id);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", p.x); rect.setAttribute("y", p.y);
    rect.setAttribute("width", w); rect.setAttribute("height", h); rect.setAttribute("rx", 4);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", p.x + 6); label.setAttribute("y", p.y + 21);
    label.textContent = `${n.id} (${n.type || "?"})`;
    svg.append(rect, label);
  }
  root.replaceChildren(svg);
}
