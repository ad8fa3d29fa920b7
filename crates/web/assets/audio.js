// "Listen" (`chronus web --audio`): plays the server's output in the page. The web process
// forwards each `/chronus/audio` push as a binary WebSocket message (first frame: u64
// little-endian, then interleaved stereo f32 little-endian); this module counts them,
// notes gaps (a first frame that does not follow the last push's end), and hands the
// samples to an AudioWorklet (audio-worklet.js) that plays them from a jitter buffer.
//
// The latency shown is what this page adds after a sample reaches it: the audio buffered
// in the worklet plus the AudioContext's own `baseLatency` and `outputLatency` (what the
// browser and the device hold). The server's side (its depth, the network) comes before.

/** Sample rate of the AudioContext (the server's default rate). */
const RATE = 48000;

export class Listener {
  /** `section`: the listen panel; `send(json)`: a text message to the web process. */
  constructor(section, send) {
    this.section = section;
    this.send = send;
    this.button = section.querySelector("#listen");
    this.stats = section.querySelector("#listen-stats");
    this.context = null;
    this.node = null;
    this.expected = null; // the frame the next push should start at
    this.frames = 0; // frames received
    this.pushes = 0;
    this.gaps = 0;
    this.report = null; // the worklet's last report
    this.button.addEventListener("click", () => this.toggle());
    setInterval(() => this.show(), 250);
  }

  /** Whether the web process streams audio (its `audio` event): shows or hides the panel. */
  available(yes) {
    this.section.hidden = !yes;
  }

  async toggle() {
    if (this.context) {
      this.send({ t: "listen", on: false });
      const context = this.context;
      this.context = null;
      this.node = null;
      this.button.textContent = "listen";
      this.button.setAttribute("aria-pressed", "false");
      await context.close();
      return;
    }
    const context = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
    this.context = context;
    let node;
    try {
      await context.audioWorklet.addModule("/audio-worklet.js");
      node = new AudioWorkletNode(context, "chronus-player", {
        numberOfInputs: 0,
        outputChannelCount: [2],
      });
      node.port.onmessage = (event) => { this.report = event.data; };
      node.connect(context.destination);
      await context.resume();
    } catch (error) {
      // A browser without AudioWorklet, or no audio device: said on the panel.
      this.context = null;
      context.close();
      this.stats.textContent = `cannot play audio here: ${error}`;
      return;
    }
    this.node = node;
    this.expected = null;
    this.button.textContent = "stop listening";
    this.button.setAttribute("aria-pressed", "true");
    this.send({ t: "listen", on: true });
  }

  /** After a reconnection: ask again for the stream if listening. */
  reconnected() {
    if (this.context) this.send({ t: "listen", on: true });
  }

  /** One binary message from the web process. */
  samples(buffer) {
    if (!this.node || buffer.byteLength < 8) return;
    const frame = Number(new DataView(buffer).getBigUint64(0, true));
    const samples = new Float32Array(buffer.slice(8));
    const frames = samples.length / 2;
    if (this.expected !== null && frame !== this.expected) this.gaps += 1;
    this.expected = frame + frames;
    this.frames += frames;
    this.pushes += 1;
    this.node.port.postMessage(samples, [samples.buffer]);
  }

  /** The counters and the latency, a few times a second. */
  show() {
    if (this.section.hidden || !this.context) return;
    const parts = [`received ${this.frames} frames`, `gaps ${this.gaps}`];
    const context = this.context;
    if (context && this.report) {
      const buffered = (1000 * this.report.buffered) / context.sampleRate;
      const device = 1000 * ((context.baseLatency || 0) + (context.outputLatency || 0));
      parts.push(
        `latency ${(buffered + device).toFixed(0)} ms (buffer ${buffered.toFixed(0)} + browser ${device.toFixed(0)})`,
        `underruns ${this.report.underruns}`,
        `dropped ${this.report.overflows}`,
      );
    }
    this.stats.textContent = parts.join(", ");
    this.stats.dataset.frames = String(this.frames);
    this.stats.dataset.gaps = String(this.gaps);
    if (context && this.report) {
      const buffered = (1000 * this.report.buffered) / context.sampleRate;
      const device = 1000 * ((context.baseLatency || 0) + (context.outputLatency || 0));
      this.stats.dataset.latencyMs = (buffered + device).toFixed(1);
    }
  }
}
