// The page's main module: one WebSocket to the `chronus web` process, and the events on it
// handed to the panels (sliders, keyboard, scopes, workers, sequencer, graph, and with
// `--audio` the listen panel, which takes the binary messages). When the
// server goes the page says "server gone" and keeps its panels; when it is back, a fresh
// `state` rebuilds them from the server's own address table.
import { Sliders } from "/sliders.js";
import { Keyboard } from "/keyboard.js";
import { Scopes } from "/scopes.js";
import { Workers } from "/workers.js";
import { drawGraph } from "/graph.js";
import { Listener } from "/audio.js";

const status = document.getElementById("status");
let socket = null;

/** Sends one OSC message (address, arguments as text or numbers) through the web process. */
function send(address, args = []) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ t: "osc", a: address, v: args }));
  }
}

const sliders = new Sliders(document.getElementById("modules"), send);
const keyboard = new Keyboard(document.getElementById("keyboard"), document.getElementById("instrument"), send);
const scopes = new Scopes(
  document.getElementById("levels"),
  document.getElementById("scope"),
  document.getElementById("spectrum"),
);
const workers = new Workers(document, send);
const listener = new Listener(document.getElementById("listen-section"), (message) => {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
});
const tracks = document.getElementById("tracks");
const clock = document.getElementById("clock");

function showStatus(text, ok) {
  status.textContent = text;
  status.className = ok ? "status ok" : "status gone";
}

function buildTracks(list) {
  tracks.replaceChildren();
  if (list.length === 0) {
    tracks.textContent = "This patch has no sequencer tracks.";
    return;
  }
  for (const track of list) {
    const row = document.createElement("div");
    row.className = "track";
    const label = document.createElement("label");
    label.textContent = track.name + " ";
    const input = document.createElement("input");
    input.value = track.pattern;
    input.setAttribute("aria-label", `/seq/${track.name}/pattern`);
    const steps = document.createElement("div");
    steps.className = "steps";
    const showSteps = () => {
      steps.replaceChildren(...input.value.split(/\s+/).filter(Boolean).map((token) => {
        const span = document.createElement("span");
        span.textContent = token;
        return span;
      }));
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        send(`/seq/${track.name}/pattern`, [input.value]);
        showSteps();
      }
    });
    showSteps();
    label.append(input);
    row.append(label, steps);
    tracks.append(row);
  }
}

function lightStep(sixteenth) {
  for (const steps of tracks.querySelectorAll(".steps")) {
    const spans = steps.children;
    for (let i = 0; i < spans.length; i++) {
      spans[i].classList.toggle("lit", i === (sixteenth - 1) % spans.length);
    }
  }
}

function onEvent(event) {
  switch (event.t) {
    case "state":
      showStatus(`connected to ${event.server}`, true);
      sliders.build(event.modules);
      keyboard.setInstruments(event.instruments);
      workers.setFaultInjection(event.fault_injection);
      buildTracks(event.tracks);
      drawGraph(document.getElementById("graph"), event.patch);
      break;
    case "gone":
      if (event.reason === "connecting") {
        showStatus(`connecting to ${event.server}…`, false);
        break;
      }
      showStatus(`server gone (${event.server}: ${event.reason}); retrying every second`, false);
      workers.serverGone();
      break;
    case "audio":
      listener.available(event.available);
      break;
    case "error":
      // A refused message is the user's to read, not a page error.
      showStatus(`refused: ${event.reason}`, true);
      break;
    case "push":
      switch (event.a) {
        case "params": sliders.changed(event.v[0], event.v[1]); break;
        case "levels": scopes.levels(event.v); break;
        case "scope": scopes.scope(event.v); break;
        case "spectrum": scopes.spectrum(event.v); break;
        case "metrics": workers.metrics(event.v); break;
        case "worker": workers.worker(event.v); break;
        case "failover": workers.failover(event.v); break;
        case "seq":
          clock.textContent = `bar ${event.v[0]}, sixteenth ${event.v[1]}, ${Number(event.v[3]).toFixed(1)} bpm${event.v[4] ? "" : " (stopped)"}`;
          lightStep(event.v[1]);
          break;
        default: break;
      }
      break;
    default: break;
  }
}

function connect() {
  socket = new WebSocket(`ws://${location.host}/ws`);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("open", () => listener.reconnected());
  socket.addEventListener("message", (message) => {
    if (message.data instanceof ArrayBuffer) {
      listener.samples(message.data);
      return;
    }
    onEvent(JSON.parse(message.data));
  });
  socket.addEventListener("close", () => {
    showStatus("web process gone (chronus web stopped?); retrying every second", false);
    setTimeout(connect, 1000);
  });
}

// Drop the token from the address bar: the cookie carries it from here on.
if (location.search.includes("token=")) {
  history.replaceState(null, "", location.pathname);
}
connect();
