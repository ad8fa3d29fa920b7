// The playable keyboard: two octaves of keys for the mouse and touch (pointer events), and
// the computer's keys a w s e d f t g y h u j k (z / x shift the octave), each press a
// `/note/on <instrument> <note> 100` and each release a `/note/off <instrument> <note>`
// on the instrument chosen (the patch's instruments, from the server's table).

const COMPUTER_KEYS = ["a", "w", "s", "e", "d", "f", "t", "g", "y", "h", "u", "j", "k"];
const BLACK = new Set([1, 3, 6, 8, 10]);
const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

export class Keyboard {
  constructor(root, chooser, send) {
    this.root = root;
    this.chooser = chooser;
    this.send = send;
    this.base = 60;
    // What holds each sounding note -> {note, instrument}: a note-off goes to the
    // instrument its note-on went to, whatever is chosen since.
    this.held = new Map();
    this.build();
    document.addEventListener("keydown", (event) => this.key(event, true));
    document.addEventListener("keyup", (event) => this.key(event, false));
    window.addEventListener("blur", () => this.releaseAll());
    // Another instrument chosen: the notes held on the last one end first.
    this.chooser.addEventListener("change", () => this.releaseAll());
  }

  setInstruments(names) {
    const before = this.chooser.value;
    this.chooser.replaceChildren(...names.map((name) => new Option(name, name)));
    if (names.includes(before)) this.chooser.value = before;
    this.chooser.disabled = names.length === 0;
  }

  build() {
    this.root.replaceChildren();
    const lowest = 48;
    let white = 0;
    const width = 28;
    for (let note = lowest; note < lowest + 25; note++) {
      const key = document.createElement("div");
      const isBlack = BLACK.has(note % 12);
      key.className = `key ${isBlack ? "black" : "white"}`;
      key.dataset.note = String(note);
      key.setAttribute("aria-label", `${NAMES[note % 12]}${Math.floor(note / 12) - 1}`);
      if (isBlack) {
        key.style.left = `${white * width - width * 0.3}px`;
        key.style.width = `${width * 0.6}px`;
      } else {
        key.style.left = `${white * width}px`;
        key.style.width = `${width}px`;
        white++;
      }
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = note % 12 === 0 ? key.getAttribute("aria-label") : "";
      key.append(label);
      key.addEventListener("pointerdown", (event) => {
        key.setPointerCapture(event.pointerId);
        this.on(`pointer${event.pointerId}`, note);
      });
      const up = (event) => this.off(`pointer${event.pointerId}`);
      key.addEventListener("pointerup", up);
      key.addEventListener("pointercancel", up);
      this.root.append(key);
    }
    this.root.style.width = `${white * width}px`;
  }

  instrumentArgs() {
    return this.chooser.value ? [this.chooser.value] : [];
  }

  on(holder, note) {
    if (this.held.has(holder)) return;
    const instrument = this.instrumentArgs();
    this.held.set(holder, { note, instrument });
    this.send("/note/on", [...instrument, String(note), "100"]);
    this.light(note, true);
  }

  off(holder) {
    const held = this.held.get(holder);
    if (held === undefined) return;
    this.held.delete(holder);
    this.send("/note/off", [...held.instrument, String(held.note)]);
    this.light(held.note, [...this.held.values()].some((h) => h.note === held.note));
  }

  releaseAll() {
    for (const holder of [...this.held.keys()]) this.off(holder);
  }

  light(note, down) {
    const key = this.root.querySelector(`[data-note="${note}"]`);
    if (key) key.classList.toggle("down", down);
  }

  key(event, down) {
    const letter = event.key.toLowerCase();
    // A key-up always ends the note its key-down started, wherever the focus went since
    // (a note held while the instrument menu was clicked must not ring on).
    if (!down && this.held.has(`key-${letter}`)) {
      this.off(`key-${letter}`);
      return;
    }
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (down && !event.repeat && (letter === "z" || letter === "x")) {
      this.releaseAll();
      this.base = Math.min(108, Math.max(24, this.base + (letter === "z" ? -12 : 12)));
      return;
    }
    const index = COMPUTER_KEYS.indexOf(letter);
    if (index < 0) return;
    event.preventDefault();
    if (down) {
      if (!event.repeat) this.on(`key-${letter}`, this.base + index);
    } else {
      this.off(`key-${letter}`);
    }
  }
}
