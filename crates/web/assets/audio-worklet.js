// The AudioWorklet that plays the server's `audio` pushes (`chronus web --audio`): chunks
// of interleaved stereo f32 posted by the page (audio.js) queue in a small jitter buffer;
// playback starts once TARGET of it is buffered. On underrun it plays silence and waits to
// be TARGET deep again (a resync); past LIMIT it drops the oldest chunks. It reports what
// it holds (for the latency shown) and its counts to the page a few times a second.
"use strict";

class ChronusPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.target = Math.round(0.08 * sampleRate); // 80 ms before playing (again)
    this.limit = Math.round(0.25 * sampleRate); // beyond 250 ms, drop the oldest
    this.chunks = []; // Float32Array, interleaved stereo
    this.offset = 0; // frames of chunks[0] already played
    this.buffered = 0; // frames queued, not yet played
    this.playing = false;
    this.underruns = 0;
    this.overflows = 0;
    this.played = 0;
    this.lastReport = 0;
    this.port.onmessage = (event) => {
      const samples = event.data;
      this.chunks.push(samples);
      this.buffered += samples.length / 2;
      while (this.buffered > this.limit && this.chunks.length > 1) {
        const dropped = this.chunks.shift();
        this.buffered -= dropped.length / 2 - this.offset;
        this.offset = 0;
        this.overflows += 1;
      }
    };
  }

  process(inputs, outputs) {
    const [left, right] = outputs[0];
    const frames = left.length;
    if (!this.playing && this.buffered >= this.target) {
      this.playing = true;
    }
    let i = 0;
    if (this.playing) {
      while (i < frames && this.chunks.length > 0) {
        const chunk = this.chunks[0];
        const available = chunk.length / 2 - this.offset;
        const n = Math.min(available, frames - i);
        for (let k = 0; k < n; k++) {
          left[i + k] = chunk[2 * (this.offset + k)];
          if (right) right[i + k] = chunk[2 * (this.offset + k) + 1];
        }
        i += n;
        this.offset += n;
        this.buffered -= n;
        if (this.offset * 2 >= chunk.length) {
          this.chunks.shift();
          this.offset = 0;
        }
      }
      this.played += i;
      if (i < frames) {
        // Underrun: silence from here, and wait to be TARGET deep again.
        this.underruns += 1;
        this.playing = false;
      }
    }
    for (; i < frames; i++) {
      left[i] = 0;
      if (right) right[i] = 0;
    }
    if (currentTime - this.lastReport >= 0.1) {
      this.lastReport = currentTime;
      this.port.postMessage({
        buffered: this.buffered,
        playing: this.playing,
        underruns: this.underruns,
        overflows: this.overflows,
        played: this.played,
      });
    }
    return true;
  }
}

registerProcessor("chronus-player", ChronusPlayer);
