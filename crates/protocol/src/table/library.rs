//! The patch library's addresses: `/library/load <name>`, `/library/save <name>` and
//! `/library/list`, and the one rule for a library name.
//!
//! They are questions the server answers, not engine commands: a load becomes a patch
//! switch (stamped, logged as the patch text it switches to, and applied in lockstep like
//! `/patch/commit`), a save writes a file, a list reads a directory. A name is checked
//! here, when the message is decoded, so a bad one is refused before anything is read.

use super::{Fixed, Request};
use crate::signature::{ArgKind, ArgSpec};

/// Address that switches to a patch of the library: `/library/load <name>`.
pub const LIBRARY_LOAD: &str = "/library/load";
/// Address that saves the running patch in the library: `/library/save <name>`.
pub const LIBRARY_SAVE: &str = "/library/save";
/// Address that lists the library: `/library/list`.
pub const LIBRARY_LIST: &str = "/library/list";

/// Longest library name, in bytes: room for any descriptive name, short enough for a file
/// name on every file system.
pub const MAX_LIBRARY_NAME_BYTES: usize = 64;

/// What a client asks of the patch library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibraryRequest {
    /// `/library/load <name>`: switch to the saved patch or preset `name`.
    Load(String),
    /// `/library/save <name>`: write the running patch, as it plays now, as `name`.
    Save(String),
    /// `/library/list`: answer `/library/list.reply` with every name.
    List,
}

/// Checks a library name: 1 to [`MAX_LIBRARY_NAME_BYTES`] of `A-Z a-z 0-9 _ -`. So a name
/// is always one plain file name in the library directory: no path separator, no `..`, no
/// hidden file, nothing a shell or a file system treats specially.
///
/// # Errors
/// The reason, naming the first character not allowed.
pub fn check_library_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a library name may not be empty (letters, digits, _ and - only)".into());
    }
    if name.len() > MAX_LIBRARY_NAME_BYTES {
        return Err(format!(
            "a library name has at most {MAX_LIBRARY_NAME_BYTES} characters, got {}",
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(bad) => Err(format!(
            "'{}' is not a library name: {bad:?} is not allowed (letters, digits, _ and - only)",
            name.escape_default()
        )),
        None => Ok(()),
    }
}

/// The name argument: its length is checked with the other arguments, its characters by
/// the build ([`check_library_name`]).
const NAME: ArgSpec = ArgSpec {
    name: "name",
    kind: ArgKind::Text {
        max_len: MAX_LIBRARY_NAME_BYTES,
    },
    optional: false,
};

/// The library's addresses, in the order they are documented.
pub(crate) static FIXED: &[Fixed] = &[
    Fixed {
        address: LIBRARY_LOAD,
        args: &[NAME],
        reply: "/done /library/load",
        doc: "Switches to patch `name` (letters, digits, _ and -) of the library (a saved patch, else a preset), crossfaded and in lockstep like /patch/commit; the command log records the patch text. An unknown name or a patch that does not compile gets /fail and the running patch plays on.",
        engine: false,
        fault_injection: false,
        build: |call| {
            let name = call.text(0)?;
            check_library_name(&name)?;
            Ok(Request::Library(LibraryRequest::Load(name)))
        },
    },
    Fixed {
        address: LIBRARY_SAVE,
        args: &[NAME],
        reply: "/done /library/save",
        doc: "Saves the running patch as `name` in the library directory: its parameters as set live, instruments, tracks (patterns as edited live, playing or not), tempo and swing, as TOML (written whole, then renamed into place). A saved patch shadows a preset of the same name.",
        engine: false,
        fault_injection: false,
        build: |call| {
            let name = call.text(0)?;
            check_library_name(&name)?;
            Ok(Request::Library(LibraryRequest::Save(name)))
        },
    },
    Fixed {
        address: LIBRARY_LIST,
        args: &[],
        reply: "/library/list.reply then per patch: name, kind (saved or preset)",
        doc: "Lists the library: saved patches first, then the presets built into the server, each name once, sorted.",
        engine: false,
        fault_injection: false,
        build: |_| Ok(Request::Library(LibraryRequest::List)),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names_are_letters_digits_underscore_and_dash() {
        for good in ["demo", "my-patch_2", "A", "x".repeat(64).as_str()] {
            assert_eq!(check_library_name(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("../etc/passwd", "'.'"),
            ("a/b", "'/'"),
            (".hidden", "'.'"),
            ("demo.toml", "'.'"),
            ("two words", "' '"),
            ("ümlaut", "'ü'"),
            ("nul\0", "'\\0'"),
            (&"x".repeat(65), "at most 64"),
        ] {
            let reason = check_library_name(bad).unwrap_err();
            assert!(reason.contains(says), "{bad:?}: {reason}");
        }
    }
}
