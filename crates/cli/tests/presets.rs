//! The presets of `patches/presets/` (issue 12): each rendered by the real binary with
//! `--no-limiter` for 10 s of a short phrase (a few notes and a chord; the kit plays a
//! beat) sounds at a sensible level, clean, and unlike every other preset.
//!
//! Per preset: RMS over the 10 s (both channels) between −30 and −6 dBFS, every sample
//! finite, |mean| of each channel (DC) below −60 dBFS, peak at most 1.0 (no clipping with
//! the master limiter off, chords included). Spectra: each preset's average power
//! spectrum (Hann windows of 8192 frames, mono sum) summed into ten octave bands
//! (centres 31 Hz to 16 kHz), normalised to the preset's total power and taken in dB
//! (floored at −80 dB); two presets' spectra differ by the RMS over the ten bands of the
//! difference of those profiles, and every pair must differ by at least
//! [`DISTINCT_DB`] (loudness plays no part: the profiles are normalised). The kick's and
//! hats' own centroids are checked in `crates/dsp/tests/drums.rs`.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use common::{chronus, read_wav, temp_dir};

const RATE: f64 = 48_000.0;
const SECONDS: f64 = 10.0;
/// Least RMS difference, over the ten octave bands, between two presets' normalised band
/// profiles (dB).
const DISTINCT_DB: f64 = 6.0;
const WINDOW: usize = 8192;
const BANDS: usize = 10;

/// The presets and the instrument each is played by (named after it).
const PRESETS: [&str; 8] = [
    "pad", "bass", "lead", "pluck", "keys", "bell", "drone", "drums",
];

/// `/note/play` lines: (start s, note, velocity, length s).
fn plays(name: &str, notes: &[(f64, u8, u8, f64)]) -> String {
    let mut s = String::new();
    for &(t, n, v, len) in notes {
        writeln!(s, "{t:.3} /note/play {name} {n} {v} {len}").unwrap();
    }
    s
}

/// A chord: the same start, velocity and length for every note.
fn chord(t: f64, notes: &[u8], v: u8, len: f64) -> Vec<(f64, u8, u8, f64)> {
    notes.iter().map(|&n| (t, n, v, len)).collect()
}

/// The phrase each preset is played with: its commands file.
fn phrase(name: &str) -> String {
    let mut notes: Vec<(f64, u8, u8, f64)> = Vec::new();
    match name {
        "pad" => {
            notes.extend(chord(0.0, &[60, 64, 67, 71], 90, 3.5)); // Cmaj7
            notes.extend(chord(4.0, &[57, 60, 64, 67], 90, 3.5)); // Am7
            notes.push((8.0, 72, 80, 1.5));
        }
        "bass" => {
            // Eighths at 120 bpm: a two-bar riff, then a fifth held.
            let riff = [
                36, 36, 48, 36, 39, 36, 43, 46, 36, 36, 48, 36, 41, 43, 39, 34,
            ];
            for bar in 0..2 {
                for (i, &n) in riff.iter().enumerate() {
                    let t = f64::from(bar * 16 + i as u32) * 0.25;
                    notes.push((t, n, if i % 2 == 0 { 110 } else { 85 }, 0.2));
                }
            }
            notes.extend(chord(8.0, &[36, 43], 100, 1.5));
        }
        "lead" => {
            let line = [72, 74, 76, 79, 77, 76, 74, 72, 71, 72, 74, 67];
            for (i, &n) in line.iter().enumerate() {
                notes.push((i as f64 * 0.5, n, 100, 0.48));
            }
            notes.extend(chord(6.5, &[72, 76, 79], 90, 2.0));
        }
        "pluck" => {
            let arp = [
                60, 64, 67, 72, 76, 72, 67, 64, 57, 60, 64, 69, 72, 69, 64, 60,
            ];
            for round in 0..2 {
                for (i, &n) in arp.iter().enumerate() {
                    let t = f64::from(round * 16 + i as u32) * 0.25;
                    notes.push((t, n, if i % 4 == 0 { 110 } else { 90 }, 0.15));
                }
            }
            notes.extend(chord(8.0, &[60, 64, 67, 72], 100, 0.5));
        }
        "keys" => {
            notes.extend(chord(0.0, &[48, 60, 64, 67, 71], 85, 1.8)); // Cmaj7
            notes.extend(chord(2.0, &[45, 57, 60, 64, 67], 80, 1.8)); // Am7
            notes.extend(chord(4.0, &[41, 57, 60, 64, 65], 85, 1.8)); // Fmaj7
            notes.extend(chord(6.0, &[43, 55, 59, 62, 65], 90, 1.8)); // G7
            notes.extend([(8.0, 72, 90, 0.4), (8.5, 71, 80, 0.4), (9.0, 67, 85, 0.8)]);
        }
        "bell" => {
            notes.extend([
                (0.0, 72, 100, 0.5),
                (1.0, 76, 90, 0.5),
                (2.0, 79, 95, 0.5),
                (3.0, 84, 100, 0.5),
            ]);
            notes.extend(chord(5.0, &[72, 76, 79], 90, 0.5));
            notes.push((7.5, 67, 100, 0.5));
        }
        "drone" => {
            notes.push((0.0, 36, 90, 9.0));
            notes.push((3.0, 43, 80, 6.0)); // a fifth joins: the chord
        }
        "drums" => {
            // Five bars at 120 bpm: a sixteenth is 0.125 s.
            for bar in 0..5u32 {
                let at = |step: u32| f64::from(bar * 16 + step) * 0.125;
                for step in [0, 8, 10] {
                    notes.push((at(step), 36, 115, 0.1)); // bd
                }
                for step in [4, 12] {
                    notes.push((at(step), 38, 105, 0.1)); // sn
                }
                for step in (0..16).step_by(2) {
                    if !(bar % 2 == 1 && step == 14) {
                        notes.push((at(step), 42, if step % 4 == 0 { 90 } else { 70 }, 0.05));
                    }
                }
                if bar % 2 == 1 {
                    notes.push((at(14), 46, 85, 0.1)); // oh
                    notes.push((at(12), 39, 90, 0.1)); // cp with the snare
                }
                if bar == 4 {
                    for (step, key) in [(13, 50), (14, 47), (15, 45)] {
                        notes.push((at(step), key, 100, 0.1)); // a tom fill
                    }
                }
            }
        }
        other => panic!("no phrase for {other}"),
    }
    plays(name, &notes)
}

/// Average power spectrum (bins 0..=WINDOW/2) of `mono` over Hann windows, no overlap.
fn power_spectrum(mono: &[f32]) -> Vec<f64> {
    let mut power = vec![0.0; WINDOW / 2 + 1];
    let hann: Vec<f64> = (0..WINDOW)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / WINDOW as f64).cos())
        .collect();
    let fft = rustfft::FftPlanner::<f64>::new().plan_fft_forward(WINDOW);
    for chunk in mono.chunks_exact(WINDOW) {
        let mut bins: Vec<rustfft::num_complex::Complex<f64>> = chunk
            .iter()
            .zip(&hann)
            .map(|(x, w)| rustfft::num_complex::Complex::new(f64::from(*x) * w, 0.0))
            .collect();
        fft.process(&mut bins);
        for (p, bin) in power.iter_mut().zip(&bins) {
            *p += bin.norm_sqr();
        }
    }
    power
}

fn bin_hz(k: usize) -> f64 {
    k as f64 * RATE / WINDOW as f64
}

/// Octave band `b` (centre 31.25 · 2^b Hz) of a bin, if it is in one.
fn band_of(k: usize) -> Option<usize> {
    let f = bin_hz(k);
    let lower = 31.25 / std::f64::consts::SQRT_2;
    if f < lower {
        return None;
    }
    let b = (f / lower).log2().floor() as usize;
    (b < BANDS).then_some(b)
}

/// What is measured of one render.
struct Measure {
    name: &'static str,
    rms_db: f64,
    peak: f64,
    dc_db: f64,
    centroid: f64,
    /// Power per octave band relative to the total, dB (floored at −80).
    bands: [f64; BANDS],
}

fn db(x: f64) -> f64 {
    20.0 * x.max(1e-12).log10()
}

fn measure(name: &'static str, all: &[f32]) -> Measure {
    assert!(
        all.iter().all(|x| x.is_finite()),
        "{name}: a NaN or infinite sample"
    );
    let n = all.len() as f64;
    let rms = (all.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / n).sqrt();
    let peak = all.iter().fold(0.0f64, |m, x| m.max(f64::from(x.abs())));
    let mean = |ch: usize| {
        all.iter()
            .skip(ch)
            .step_by(2)
            .map(|x| f64::from(*x))
            .sum::<f64>()
            / (n / 2.0)
    };
    let dc = mean(0).abs().max(mean(1).abs());
    let mono: Vec<f32> = all.chunks(2).map(|f| 0.5 * (f[0] + f[1])).collect();
    let power = power_spectrum(&mono);
    let total: f64 = power.iter().skip(1).sum();
    let centroid = power
        .iter()
        .enumerate()
        .skip(1)
        .map(|(k, p)| bin_hz(k) * p)
        .sum::<f64>()
        / total;
    let mut bands = [0.0; BANDS];
    for (k, p) in power.iter().enumerate() {
        if let Some(b) = band_of(k) {
            bands[b] += p;
        }
    }
    let bands = bands.map(|p| (10.0 * (p / total).max(1e-12).log10()).max(-80.0));
    Measure {
        name,
        rms_db: db(rms),
        peak,
        dc_db: db(dc),
        centroid,
        bands,
    }
}

fn render(dir: &Path, name: &'static str) -> Measure {
    let patch = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../patches/presets")
        .join(format!("{name}.toml"));
    let commands = dir.join(format!("{name}.txt"));
    std::fs::write(&commands, phrase(name)).unwrap();
    let wav = dir.join(format!("{name}.wav"));
    let output = chronus()
        .args(["render", "--no-limiter", "--seconds", "10", "--patch"])
        .arg(&patch)
        .arg("--commands")
        .arg(&commands)
        .arg("-o")
        .arg(&wav)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, all) = read_wav(&wav);
    assert_eq!(all.len(), 2 * (SECONDS * RATE) as usize);
    measure(name, &all)
}

#[test]
fn every_preset_sounds_clean_at_a_sane_level_and_unlike_the_others() {
    let dir = temp_dir("presets");
    let measures: Vec<Measure> = PRESETS.iter().map(|name| render(&dir, name)).collect();

    eprintln!("preset   RMS dBFS   peak    DC dBFS   centroid Hz   octave bands 31 Hz..16 kHz (dB of total)");
    for m in &measures {
        let bands: Vec<String> = m.bands.iter().map(|b| format!("{b:5.0}")).collect();
        eprintln!(
            "{:<8} {:8.2} {:7.3} {:9.1} {:12.0}   {}",
            m.name,
            m.rms_db,
            m.peak,
            m.dc_db,
            m.centroid,
            bands.join("")
        );
    }
    let mut failures = Vec::new();
    for m in &measures {
        if !(-30.0..=-6.0).contains(&m.rms_db) {
            failures.push(format!("{}: RMS {:.1} dBFS", m.name, m.rms_db));
        }
        if m.peak > 1.0 {
            failures.push(format!("{}: peak {:.3}", m.name, m.peak));
        }
        if m.dc_db >= -60.0 {
            failures.push(format!("{}: DC {:.1} dBFS", m.name, m.dc_db));
        }
    }
    eprintln!("spectral distance (RMS over octave bands of the normalised profiles, dB):");
    for (i, a) in measures.iter().enumerate() {
        let mut row = format!("{:<8}", a.name);
        for b in &measures[..i] {
            let d = (a
                .bands
                .iter()
                .zip(&b.bands)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                / BANDS as f64)
                .sqrt();
            write!(row, " {d:6.1}").unwrap();
            if d < DISTINCT_DB {
                failures.push(format!(
                    "{} and {}: spectra {d:.1} dB apart",
                    a.name, b.name
                ));
            }
        }
        eprintln!("{row}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Spectral centroid (Hz) of `mono[from..from + WINDOW]` (0.17 s).
fn centroid_at(mono: &[f32], from: usize) -> f64 {
    let power = power_spectrum(&mono[from..from + WINDOW]);
    let total: f64 = power.iter().skip(1).sum();
    power
        .iter()
        .enumerate()
        .skip(1)
        .map(|(k, p)| bin_hz(k) * p)
        .sum::<f64>()
        / total
}

#[test]
fn the_bell_strikes_bright_and_mellows_as_its_index_fades() {
    // The bell's modulation index has an envelope of its own: a struck note starts bright
    // (many inharmonic sidebands) and settles towards the carrier's pure tone, so its
    // spectral centroid falls over the note (its first 0.17 s against 2.5 s later) by more
    // than half. The keys' index fades too, but the change is subtler (the tine is short
    // and the 1:1 body's sidebands are harmonics): printed, not asserted.
    let dir = temp_dir("presets-fm");
    for name in ["bell", "keys"] {
        let patch = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../patches/presets")
            .join(format!("{name}.toml"));
        let commands = dir.join(format!("{name}.txt"));
        std::fs::write(&commands, format!("0 /note/on {name} 72 110\n")).unwrap();
        let wav = dir.join(format!("{name}.wav"));
        let status = chronus()
            .args(["render", "--no-limiter", "--seconds", "3.5", "--patch"])
            .arg(&patch)
            .arg("--commands")
            .arg(&commands)
            .arg("-o")
            .arg(&wav)
            .status()
            .unwrap();
        assert!(status.success());
        let (_, all) = read_wav(&wav);
        let mono: Vec<f32> = all.chunks(2).map(|f| 0.5 * (f[0] + f[1])).collect();
        let (strike, later) = (centroid_at(&mono, 0), centroid_at(&mono, 120_000));
        eprintln!("{name}: centroid {strike:.0} Hz at the strike, {later:.0} Hz 2.5 s later");
        assert!(
            name != "bell" || strike > 2.0 * later,
            "{name}: centroid {strike:.0} Hz at the strike, {later:.0} Hz later"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
