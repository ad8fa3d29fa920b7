//! The patch library: patches saved by name in a directory, plus presets built into the
//! binary, so a musician can load `demo` or `bass` without knowing where a file lives.
//!
//! A saved patch is `<dir>/<name>.toml`, where `<dir>` is `--library DIR`, else
//! `$XDG_DATA_HOME/chronus/patches`, else `~/.local/share/chronus/patches`. A saved patch
//! shadows a preset of the same name. Names are checked by
//! [`chronus_protocol::check_library_name`] (letters, digits, `_` and `-`), so a name is
//! always one plain file in the directory. Files are small and read or written whole, on
//! the OSC thread (as a patch is compiled there); never on the audio path.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use chronus_protocol::check_library_name;

/// The presets built into the binary: (name, TOML text), sorted by name.
pub const PRESETS: &[(&str, &str)] = &[
    ("bass", include_str!("../../../patches/presets/bass.toml")),
    ("bell", include_str!("../../../patches/presets/bell.toml")),
    ("demo", include_str!("../../../patches/demo.toml")),
    ("drone", include_str!("../../../patches/presets/drone.toml")),
    ("drums", include_str!("../../../patches/presets/drums.toml")),
    ("keys", include_str!("../../../patches/presets/keys.toml")),
    ("lead", include_str!("../../../patches/presets/lead.toml")),
    ("pad", include_str!("../../../patches/presets/pad.toml")),
    ("pluck", include_str!("../../../patches/presets/pluck.toml")),
];

/// Largest library file read, in bytes: far beyond any real patch (the demo is 4 KB), and
/// small enough that reading it never holds the OSC thread up.
pub const MAX_LIBRARY_FILE_BYTES: u64 = 256 * 1024;

/// Where a patch of the library comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A file in the library directory.
    Saved,
    /// Built into the binary.
    Preset,
}

impl Kind {
    /// How `/library/list.reply` names it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Saved => "saved",
            Kind::Preset => "preset",
        }
    }
}

/// The library: its directory (if one could be found) and the presets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    dir: Option<PathBuf>,
}

/// The default library directory: `$XDG_DATA_HOME/chronus/patches` when `XDG_DATA_HOME`
/// is an absolute path (the XDG spec says to ignore a relative one), else
/// `$HOME/.local/share/chronus/patches`; `None` without either.
pub fn default_dir(xdg_data_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let xdg = xdg_data_home
        .map(PathBuf::from)
        .filter(|path| path.is_absolute());
    let data = xdg.or_else(|| {
        home.map(PathBuf::from)
            .filter(|path| !path.as_os_str().is_empty())
            .map(|home| home.join(".local/share"))
    })?;
    Some(data.join("chronus").join("patches"))
}

/// What a `--patch` argument names: a file (it has a `/` or ends in `.toml`), or else a
/// patch of the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchArg<'a> {
    /// A patch file.
    File(&'a Path),
    /// A library name (saved or preset).
    Name(&'a str),
}

impl PatchArg<'_> {
    /// Reads `arg` as a file or a library name (a name that is not valid UTF-8 is read as
    /// a file, which then says it does not exist).
    pub fn of(arg: &OsStr) -> PatchArg<'_> {
        match arg.to_str() {
            Some(text) if !text.contains('/') && !text.ends_with(".toml") => PatchArg::Name(text),
            _ => PatchArg::File(Path::new(arg)),
        }
    }
}

impl Library {
    /// The library in `dir` (`None`: presets only; saving is refused with the reason).
    pub fn new(dir: Option<PathBuf>) -> Library {
        Library { dir }
    }

    /// The library in `dir` (`--library DIR`) if given, else in [`default_dir`] of this
    /// process's environment.
    pub fn from_env(dir: Option<PathBuf>) -> Library {
        Library::new(
            dir.or_else(|| {
                default_dir(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
            }),
        )
    }

    /// Its directory, if it has one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(format!("{name}.toml")))
    }

    /// The TOML text of patch `name`: the saved file if there is one, else the preset.
    ///
    /// # Errors
    /// A name that is not valid; a file that cannot be read or is larger than
    /// [`MAX_LIBRARY_FILE_BYTES`]; no such patch (the reason lists the names there are).
    pub fn read(&self, name: &str) -> Result<(String, Kind), String> {
        check_library_name(name)?;
        if let Some(path) = self.file(name) {
            match std::fs::metadata(&path) {
                Ok(meta) if meta.len() > MAX_LIBRARY_FILE_BYTES => {
                    return Err(format!(
                        "{} is {} bytes; a library patch has at most {MAX_LIBRARY_FILE_BYTES}",
                        path.display(),
                        meta.len()
                    ))
                }
                Ok(_) => {
                    return std::fs::read_to_string(&path)
                        .map(|text| (text, Kind::Saved))
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        }
        match PRESETS.iter().find(|(preset, _)| *preset == name) {
            Some((_, text)) => Ok(((*text).to_string(), Kind::Preset)),
            None => Err(self.unknown(name)),
        }
    }

    /// The reason for an unknown name: what there is instead.
    fn unknown(&self, name: &str) -> String {
        let listed = self.list().unwrap_or_default();
        let of = |kind: Kind| {
            let names: Vec<&str> = listed
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(n, _)| n.as_str())
                .collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        let saved = match &self.dir {
            Some(dir) => format!("saved in {}: {}", dir.display(), of(Kind::Saved)),
            None => "no library directory".to_string(),
        };
        format!(
            "no patch '{name}' in the library ({saved}; presets: {})",
            of(Kind::Preset)
        )
    }

    /// Writes `text` as patch `name`, atomically: into a temporary file in the directory
    /// (created if needed), then renamed over `<name>.toml`, so the file is whole at every
    /// instant: the old patch or the new one, never half of either. Returns its path.
    ///
    /// # Errors
    /// A name that is not valid, no library directory, or the file system's error.
    pub fn save(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        check_library_name(name)?;
        let Some(path) = self.file(name) else {
            return Err("no library directory: set HOME or XDG_DATA_HOME, or start the server with --library DIR".to_string());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the library directory {}: {e}", dir.display()))?;
        // Starts with a dot and has two: never listed, never taken for a patch.
        let temporary = dir.join(format!(".{name}.toml.{}.tmp", std::process::id()));
        let written =
            std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(format!("cannot save {}: {e}", path.display()));
        }
        Ok(path)
    }

    /// Every patch of the library, each name once: the saved ones (sorted), then the
    /// presets no saved patch shadows (sorted).
    ///
    /// # Errors
    /// A library directory that exists but cannot be read (a missing one holds nothing).
    pub fn list(&self) -> Result<Vec<(String, Kind)>, String> {
        let mut saved: Vec<String> = Vec::new();
        if let Some(dir) = &self.dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    for entry in entries.flatten() {
                        let file_name = entry.file_name();
                        let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(".toml"))
                        else {
                            continue;
                        };
                        let is_file = entry.file_type().is_ok_and(|t| !t.is_dir());
                        if is_file && check_library_name(name).is_ok() {
                            saved.push(name.to_string());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
            }
        }
        saved.sort();
        let presets = PRESETS
            .iter()
            .map(|(name, _)| (*name).to_string())
            .filter(|name| saved.binary_search(name).is_err());
        Ok(saved
            .iter()
            .cloned()
            .map(|name| (name, Kind::Saved))
            .chain(presets.map(|name| (name, Kind::Preset)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(text: &str) -> Option<OsString> {
        Some(OsString::from(text))
    }

    fn temp_library(test: &str) -> Library {
        let dir =
            std::env::temp_dir().join(format!("chronus-library-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Library::new(Some(dir.join("patches")))
    }

    #[test]
    fn the_library_directory_follows_xdg_then_home() {
        let patches = |p: &str| Some(PathBuf::from(p));
        for (xdg, home, expected) in [
            (os("/data"), os("/home/u"), patches("/data/chronus/patches")),
            (
                None,
                os("/home/u"),
                patches("/home/u/.local/share/chronus/patches"),
            ),
            // Empty or relative XDG_DATA_HOME is ignored, as the spec says.
            (
                os(""),
                os("/home/u"),
                patches("/home/u/.local/share/chronus/patches"),
            ),
            (
                os("rel"),
                os("/home/u"),
                patches("/home/u/.local/share/chronus/patches"),
            ),
            (os("/data"), None, patches("/data/chronus/patches")),
            (None, None, None),
            (None, os(""), None),
        ] {
            assert_eq!(
                default_dir(xdg.clone(), home.clone()),
                expected,
                "{xdg:?} {home:?}"
            );
        }
        let chosen = PathBuf::from("/my/library");
        assert_eq!(
            Library::from_env(Some(chosen.clone())).dir(),
            Some(chosen.as_path())
        );
    }

    #[test]
    fn a_patch_argument_is_a_file_when_it_has_a_slash_or_ends_in_toml() {
        for (arg, expected) in [
            ("demo", PatchArg::Name("demo")),
            ("my-patch_2", PatchArg::Name("my-patch_2")),
            ("demo.toml", PatchArg::File(Path::new("demo.toml"))),
            (
                "patches/groove",
                PatchArg::File(Path::new("patches/groove")),
            ),
            ("./demo", PatchArg::File(Path::new("./demo"))),
            ("/abs/x.toml", PatchArg::File(Path::new("/abs/x.toml"))),
        ] {
            assert_eq!(PatchArg::of(OsStr::new(arg)), expected, "{arg}");
        }
    }

    #[test]
    fn presets_are_there_sorted_and_compile() {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for wanted in [
            "demo", "pad", "bass", "lead", "pluck", "keys", "bell", "drone", "drums",
        ] {
            assert!(names.contains(&wanted), "{wanted}");
        }
        for (name, text) in PRESETS {
            let desc = chronus_dsp::PatchDesc::from_toml_str(text).unwrap();
            chronus_dsp::Patch::compile(&desc, 48_000.0, 64, 0)
                .unwrap_or_else(|e| panic!("preset {name}: {e}"));
        }
    }

    #[test]
    fn save_read_list_and_shadowing() {
        let library = temp_library("round-trip");
        // Nothing saved (no directory yet): presets only.
        let listed = library.list().unwrap();
        assert_eq!(listed.len(), PRESETS.len());
        assert!(listed.iter().all(|(_, kind)| *kind == Kind::Preset));
        assert_eq!(library.read("pad").unwrap().1, Kind::Preset);

        let path = library.save("mine", "[[modules]]\n").unwrap();
        assert_eq!(path, library.dir().unwrap().join("mine.toml"));
        assert_eq!(
            library.read("mine").unwrap(),
            ("[[modules]]\n".to_string(), Kind::Saved)
        );
        // Saved again: replaced whole, no temporary file left.
        library.save("mine", "# two\n").unwrap();
        assert_eq!(library.read("mine").unwrap().0, "# two\n");
        let files: Vec<_> = std::fs::read_dir(library.dir().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![OsString::from("mine.toml")]);

        // A saved patch shadows the preset of its name, listed once, as saved.
        library.save("pad", "# my pad\n").unwrap();
        assert_eq!(
            library.read("pad").unwrap(),
            ("# my pad\n".to_string(), Kind::Saved)
        );
        // Files that are not patches are not listed.
        std::fs::write(library.dir().unwrap().join("notes.txt"), "x").unwrap();
        std::fs::write(library.dir().unwrap().join("bad name.toml"), "x").unwrap();
        let listed = library.list().unwrap();
        assert_eq!(listed[0], ("mine".to_string(), Kind::Saved));
        assert_eq!(listed[1], ("pad".to_string(), Kind::Saved));
        assert_eq!(listed.len(), PRESETS.len() + 1);
        assert_eq!(
            listed.iter().filter(|(n, _)| n == "pad").count(),
            1,
            "{listed:?}"
        );
        assert!(listed[2..].iter().all(|(_, kind)| *kind == Kind::Preset));

        // Unknown and bad names say why, and what there is.
        let unknown = library.read("nope").unwrap_err();
        assert!(unknown.contains("no patch 'nope'"), "{unknown}");
        assert!(unknown.contains("mine, pad"), "{unknown}");
        assert!(unknown.contains("presets: bass, bell, demo"), "{unknown}");
        assert!(library.read("../mine").unwrap_err().contains("not allowed"));
        assert!(library
            .save("a/b", "x")
            .unwrap_err()
            .contains("not allowed"));
        let _ = std::fs::remove_dir_all(library.dir().unwrap().parent().unwrap());
    }

    #[test]
    fn without_a_directory_presets_load_and_saving_says_why() {
        let library = Library::new(None);
        assert_eq!(library.read("demo").unwrap().1, Kind::Preset);
        assert!(library.save("x", "y").unwrap_err().contains("--library"));
        assert!(library
            .read("x")
            .unwrap_err()
            .contains("no library directory"));
    }
}
