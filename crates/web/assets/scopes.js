// The output's pictures on canvases: level meters (the `levels` push: peak and RMS of each
// channel, linear), the scope (`scope`: a step, then 256 frames L R) and the spectrum
// (`spectrum`: the lowest and highest band's frequencies, then 32 band levels in dBFS).

function clear(canvas) {
  const g = canvas.getContext("2d");
  g.fillStyle = "#0c0d10";
  g.fillRect(0, 0, canvas.width, canvas.height);
  return g;
}

export class Scopes {
  constructor(levels, scope, spectrum) {
    this.canvases = { levels, scope, spectrum };
    for (const canvas of Object.values(this.canvases)) clear(canvas);
  }

  levels(v) {
    const canvas = this.canvases.levels;
    const g = clear(canvas);
    const h = canvas.height;
    const toY = (level) => {
      const db = 20 * Math.log10(Math.max(level, 1e-6));
      return h * Math.min(1, Math.max(0, -db / 60));
    };
    [[v[0], v[1]], [v[2], v[3]]].forEach(([peak, rms], i) => {
      const x = 10 + i * 35;
      g.fillStyle = "#4fb3ff";
      const y = toY(Number(rms) || 0);
      g.fillRect(x, y, 25, h - y);
      g.fillStyle = (Number(peak) || 0) >= 1 ? "#ff6b5f" : "#e6e6e6";
      g.fillRect(x, toY(Number(peak) || 0), 25, 2);
    });
  }

  scope(v) {
    const canvas = this.canvases.scope;
    const g = clear(canvas);
    const frames = (v.length - 1) / 2;
    if (frames < 2) return;
    const mid = canvas.height / 2;
    for (const [channel, color] of [[0, "#5fd38a"], [1, "#4fb3ff"]]) {
      g.strokeStyle = color;
      g.beginPath();
      for (let i = 0; i < frames; i++) {
        const x = (i / (frames - 1)) * canvas.width;
        const y = mid - (Number(v[1 + 2 * i + channel]) || 0) * mid * 0.95;
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      }
      g.stroke();
    }
  }

  spectrum(v) {
    const canvas = this.canvases.spectrum;
    const g = clear(canvas);
    const bands = v.slice(2);
    const w = canvas.width / Math.max(1, bands.length);
    g.fillStyle = "#4fb3ff";
    bands.forEach((db, i) => {
      const level = Math.min(1, Math.max(0, ((Number(db) || -120) + 90) / 90));
      const bar = level * canvas.height;
      g.fillRect(i * w + 1, canvas.height - bar, w - 2, bar);
    });
    g.fillStyle = "#8a9099";
    g.font = "10px sans-serif";
    g.fillText(`${Math.round(Number(v[0]) || 0)} Hz`, 2, 10);
    const high = `${Math.round(Number(v[1]) || 0)} Hz`;
    g.fillText(high, canvas.width - g.measureText(high).width - 2, 10);
  }
}
