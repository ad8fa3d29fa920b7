//! No two files of a crate import each other, directly or through others.
//!
//! A file that names `crate::a::b` depends on the file that defines module `a::b` (or the
//! closest enclosing module file). Files that depend on each other cannot be understood,
//! tested or moved one at a time, so the workspace keeps the graph of every crate's files
//! acyclic; this test reads every `crate::` path of every source file and fails on a cycle,
//! naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file relative to `src`: `lib.rs` → [], `a/mod.rs` → [a], `a/b.rs` → [a, b].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// The text of a file without `//` comments (doc comments name paths too) and without the
/// contents of string literals.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut previous = '\0';
        for c in line.chars() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                    code.push('"');
                }
                previous = c;
                continue;
            }
            if c == '/' && previous == '/' {
                code.pop();
                break;
            }
            if c == '"' {
                in_string = true;
            }
            code.push(c);
            previous = c;
        }
        code.push('\n');
    }
    code
}

/// Every module path named after `crate::` in `code`, with `{…}` groups expanded:
/// `crate::a::{b::X, c}` gives `a::b::X` and `a::c`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // `my_crate::…` or `other::crate::…`: not this crate's root
        }
        expand(rest, Vec::new(), &mut paths);
    }
    paths
}

/// Reads one path (possibly a `{…}` group) at the start of `text`, below `prefix`.
fn expand(text: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(&group[start..i], prefix.clone(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&group[start..i], prefix.clone(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let word_end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let word = &text[..word_end];
    let mut path = prefix;
    if !word.is_empty() && word != "self" {
        path.push(word.to_string());
    }
    match text[word_end..].strip_prefix("::") {
        Some(more) if !word.is_empty() => expand(more, path, out),
        _ => out.push(path),
    }
}

/// Index (in `modules`) of the file defining the longest module prefix of `path`.
fn file_of(modules: &[Vec<String>], path: &[String]) -> Option<usize> {
    (0..=path.len())
        .rev()
        .find_map(|len| modules.iter().position(|m| m.as_slice() == &path[..len]))
}

/// A cycle in the graph, as a list of nodes, if there is one.
fn find_cycle(edges: &BTreeMap<usize, BTreeSet<usize>>, count: usize) -> Option<Vec<usize>> {
    // 0 = not visited, 1 = on the current path, 2 = done.
    fn visit(
        node: usize,
        edges: &BTreeMap<usize, BTreeSet<usize>>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[node] = 1;
        stack.push(node);
        for &next in edges.get(&node).into_iter().flatten() {
            if state[next] == 1 {
                let from = stack.iter().position(|&n| n == next).unwrap();
                let mut cycle = stack[from..].to_vec();
                cycle.push(next);
                return Some(cycle);
            }
            if state[next] == 0 {
                if let Some(cycle) = visit(next, edges, state, stack) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        state[node] = 2;
        None
    }
    let mut state = vec![0u8; count];
    (0..count).find_map(|node| {
        if state[node] == 0 {
            visit(node, edges, &mut state, &mut Vec::new())
        } else {
            None
        }
    })
}

/// The cycles among the files of the crate whose sources are in `src`, as text.
fn cycles_in(src: &Path) -> Option<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: Vec<Vec<String>> = files.iter().map(|f| module_path(src, f)).collect();
    let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (from, file) in files.iter().enumerate() {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for path in crate_paths(&code) {
            if let Some(to) = file_of(&modules, &path) {
                if to != from {
                    edges.entry(from).or_default().insert(to);
                }
            }
        }
    }
    let cycle = find_cycle(&edges, files.len())?;
    let names: Vec<String> = cycle
        .iter()
        .map(|&i| files[i].strip_prefix(src).unwrap().display().to_string())
        .collect();
    Some(format!("{}: {}", src.display(), names.join(" -> ")))
}

#[test]
fn the_checker_reads_grouped_paths_and_skips_comments() {
    let code = code_of(
        "use crate::a::{b::X, c};\n// crate::d\nlet s = \"crate::e\";\nuse crate::{f, g::{h, i}};\nfoo::crate::j;\ncrate::k::l(1);\n",
    );
    let paths: Vec<String> = crate_paths(&code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        ["a::b::X", "a::c", "f", "g::h", "g::i", "k::l"].map(String::from)
    );
    let modules = vec![vec![], vec!["a".to_string()], vec!["a".into(), "b".into()]];
    let path = |p: &str| p.split("::").map(String::from).collect::<Vec<_>>();
    assert_eq!(file_of(&modules, &path("a::b::X")), Some(2));
    assert_eq!(file_of(&modules, &path("a::c")), Some(1));
    assert_eq!(file_of(&modules, &path("f")), Some(0));
    let mut edges = BTreeMap::new();
    edges.insert(0, BTreeSet::from([1]));
    edges.insert(1, BTreeSet::from([2]));
    assert_eq!(find_cycle(&edges, 3), None);
    edges.insert(2, BTreeSet::from([1]));
    assert_eq!(find_cycle(&edges, 3), Some(vec![1, 2, 1]));
}

#[test]
fn no_two_files_of_a_crate_depend_on_each_other() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&crates)
        .unwrap()
        .map(|entry| entry.unwrap().path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 6, "found only {dirs:?}");
    let cycles: Vec<String> = dirs.iter().filter_map(|src| cycles_in(src)).collect();
    assert!(
        cycles.is_empty(),
        "files that depend on each other (through `crate::` paths):\n{}",
        cycles.join("\n")
    );
}
