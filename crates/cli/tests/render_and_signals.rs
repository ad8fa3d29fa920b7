//! End to end: offline rendering from a commands file is deterministic and does what the
//! file says; SIGTERM finalises the WAV; `--output device` fails clearly without a device.

mod common;

use std::time::Duration;

use common::{chronus, dominant_frequency, read_wav, signal, temp_dir, Server};
use rosc::OscType;

#[test]
fn render_follows_the_commands_file_and_is_deterministic() {
    let dir = temp_dir("render");
    let commands = dir.join("song.txt");
    std::fs::write(
        &commands,
        "# a tiny song\n0.0 /gate/adsr 1\n0.0 /mod/filter/cutoff 5000\n1.0 /mod/sine/freq 880 # an octave up\n",
    )
    .unwrap();
    let render = |name: &str| {
        let out = dir.join(name);
        let status = chronus()
            .args(["render", "--seconds", "2", "--commands"])
            .arg(&commands)
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        read_wav(&out)
    };
    let (left, a) = render("a.wav");
    let (_, b) = render("b.wav");
    assert_eq!(a.len(), 2 * 96_000);
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "renders differ"
    );
    assert!((dominant_frequency(&left[24_000..33_600], 48_000.0) - 440.0).abs() <= 2.0);
    assert!((dominant_frequency(&left[72_000..81_600], 48_000.0) - 880.0).abs() <= 2.0);

    // A bad line is a clear error naming the line, and a non-zero exit.
    std::fs::write(&commands, "0 /gate/adsr 1\n0.5 /mod/sine/freq 99999\n").unwrap();
    let bad = chronus()
        .args(["render", "--seconds", "1", "--commands"])
        .arg(&commands)
        .arg("-o")
        .arg(dir.join("c.wav"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("out of range"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn example_patches_render_and_sound() {
    let dir = temp_dir("examples");
    // A gate for the patches played by their envelope `env`, notes for the instruments.
    let gate = dir.join("gate.txt");
    std::fs::write(&gate, "0 /gate/env 1\n1 /gate/env 0\n").unwrap();
    let notes = dir.join("notes.txt");
    std::fs::write(
        &notes,
        "0 /note/on 60 100\n0 /note/on 67 100\n1 /note/off 60\n1 /note/off 67\n",
    )
    .unwrap();
    let patches = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../patches");
    let mut count = 0;
    for entry in std::fs::read_dir(&patches).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let out = dir.join("out.wav");
        let text = std::fs::read_to_string(&path).unwrap();
        let commands = if text.contains("[[instruments]]") {
            &notes
        } else {
            &gate
        };
        let status = chronus()
            .args(["render", "--seconds", "1.5", "--patch"])
            .arg(&path)
            .arg("--commands")
            .arg(commands)
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "{}", path.display());
        let (left, all) = read_wav(&out);
        assert!(
            all.iter().all(|x| x.is_finite() && x.abs() <= 1.0),
            "{}",
            path.display()
        );
        assert!(
            left.iter().any(|x| x.abs() > 0.01),
            "{} is silent",
            path.display()
        );
        count += 1;
    }
    assert!(count >= 2, "example patches found: {count}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_finalises_the_wav() {
    let dir = temp_dir("sigterm");
    let wav = dir.join("out.wav");
    let mut server = Server::start(&["--output", &format!("wav:{}", wav.display())]);
    server.send("/gate/adsr", vec![OscType::Int(1)]);
    server.sync(1);
    std::thread::sleep(Duration::from_millis(500));
    signal(server.child.id(), "TERM");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let (left, _) = read_wav(&wav);
    assert!(
        left.len() > 24_000,
        "half a second or more was written: {}",
        left.len()
    );
    assert!(left.iter().any(|x| x.abs() > 0.05), "and it sounds");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn device_output_without_a_device_fails_clearly() {
    let has_jack = std::fs::read_dir("/dev/shm").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("jack"))
    });
    let has_card = std::fs::read_to_string("/proc/asound/cards").is_ok_and(|c| {
        c.lines()
            .any(|l| l.trim_start().starts_with(|ch: char| ch.is_ascii_digit()))
    });
    if has_jack || has_card {
        eprintln!("this machine has an audio device; nothing to check");
        return;
    }
    let output = chronus()
        .args(["serve", "--osc", "127.0.0.1:0", "--output", "device"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no sound card") || stderr.contains("JACK"),
        "{stderr}"
    );
}

#[test]
fn reference_docs_match_the_binary() {
    // docs/modules.md and docs/osc.md are generated by `chronus modules` and
    // `chronus send --list`; regenerate them when a module or an address changes.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (file, args) in [
        ("docs/modules.md", vec!["modules"]),
        ("docs/osc.md", vec!["send", "--list"]),
    ] {
        let output = chronus().args(&args).output().unwrap();
        assert!(output.status.success());
        let on_disk = std::fs::read_to_string(root.join(file)).unwrap();
        if file == "docs/osc.md" {
            let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
            assert!(
                readme.contains(&on_disk),
                "README's OSC address table is out of date"
            );
        }
        let generated = String::from_utf8(output.stdout).unwrap();
        assert!(
            on_disk == generated,
            "{file} is out of date: run `chronus {}` > {file}",
            args.join(" ")
        );
    }
}

#[test]
fn readme_names_every_module_type_once() {
    // The README's list of module types by category is prose, so it is checked here: a new
    // module type fails this test until the README names it (and a removed one, until the
    // README forgets it). It states no count, which could go stale.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = chronus().arg("modules").output().unwrap();
    assert!(output.status.success());
    let modules = String::from_utf8(output.stdout).unwrap();
    let registered: Vec<&str> = modules
        .lines()
        .filter_map(|l| l.strip_prefix("### `")?.strip_suffix('`'))
        .collect();
    assert!(registered.len() > 20, "{registered:?}");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let list = readme
        .split("<!-- module types: begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- module types: end -->").next())
        .expect("README has the module types list between its markers");
    let mut named: Vec<&str> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    named.sort_unstable();
    let mut expected = registered.clone();
    expected.sort_unstable();
    assert_eq!(named, expected, "README's module types list is out of date");
}

#[test]
fn render_refuses_a_sample_rate_serve_refuses() {
    // `--sample-rate 1` used to panic inside a filter's coefficient clamp; it is now
    // refused with the same range `serve` accepts, before anything is rendered.
    let dir = temp_dir("rate");
    for rate in ["1", "7999", "192001"] {
        let output = chronus()
            .args(["render", "--seconds", "0.1", "--sample-rate", rate, "-o"])
            .arg(dir.join("x.wav"))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "rate {rate}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("8000..=192000"), "{stderr}");
        assert!(!dir.join("x.wav").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
