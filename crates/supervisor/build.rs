//! Build script: records the git branch and commit this server is built from, for
//! `/version.reply` (empty when not built from a git checkout, e.g. from a tarball).

use std::process::Command;

/// `git <args>` in this crate's directory, trimmed; empty if git or the checkout is missing.
fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"]);
    println!("cargo:rustc-env=CHRONUS_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=CHRONUS_GIT_BRANCH={branch}");
    // Built again when HEAD moves: a checkout (HEAD) or a commit (the branch's ref).
    for path in ["HEAD", "packed-refs", &format!("refs/heads/{branch}")] {
        let file = git(&["rev-parse", "--git-path", path]);
        if !file.is_empty() && std::path::Path::new(&file).exists() {
            println!("cargo:rerun-if-changed={file}");
        }
    }
}
