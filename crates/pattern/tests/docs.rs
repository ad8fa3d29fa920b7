//! Every example in `docs/patterns.md` is evaluated and its table checked, so the page
//! never shows what the code does not do. `CHRONUS_BLESS=1` rewrites the tables.

use std::path::PathBuf;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/patterns.md")
}

/// The page with every ```events block after a ```pattern block replaced by that
/// pattern's table, and the number of examples.
fn with_tables(page: &str) -> (String, usize) {
    let mut out = String::new();
    let mut lines = page.lines();
    let mut last_pattern: Option<String> = None;
    let mut examples = 0;
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        if line == "```pattern" {
            let text = lines.next().expect("a pattern line");
            out.push_str(text);
            out.push('\n');
            last_pattern = Some(text.to_string());
        } else if line == "```events" {
            let pattern = last_pattern
                .take()
                .expect("an events block follows a pattern block");
            for skipped in lines.by_ref() {
                if skipped == "```" {
                    break;
                }
            }
            let events = chronus_pattern::parse(&pattern)
                .and_then(|p| p.events())
                .unwrap_or_else(|e| panic!("{}", e.pointing_into(&pattern)));
            out.push_str(&events.to_string());
            out.push_str("```\n");
            examples += 1;
        }
    }
    (out, examples)
}

#[test]
fn every_example_has_its_table() {
    let path = doc_path();
    let page = std::fs::read_to_string(&path).expect("docs/patterns.md");
    let (expected, examples) = with_tables(&page);
    assert!(examples >= 10, "only {examples} examples");
    if std::env::var_os("CHRONUS_BLESS").is_some() {
        std::fs::write(&path, &expected).expect("write docs/patterns.md");
        return;
    }
    assert!(
        page == expected,
        "docs/patterns.md's tables are out of date: run `CHRONUS_BLESS=1 cargo test -p chronus-pattern --test docs`"
    );
}
