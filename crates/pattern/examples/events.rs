//! Prints the table of each pattern given on the command line (a quick look while
//! writing patterns): `cargo run -p chronus-pattern --example events -- "bd ~ sn ~"`.

fn main() {
    for text in std::env::args().skip(1) {
        match chronus_pattern::parse(&text).and_then(|p| p.events()) {
            Ok(events) => print!("{text}\n{events}\n"),
            Err(e) => println!("{}\n", e.pointing_into(&text)),
        }
    }
}
