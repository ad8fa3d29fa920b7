//! OSC address patterns (OSC 1.0, "OSC Message Dispatching and Pattern Matching"): one
//! message addressed to `/mod/*/gain` or `/gate/{kick,snare}` acts on every address of the
//! table it matches.
//!
//! The grammar, within one `/`-separated part (nothing matches across a `/`):
//! `?` one character, `*` any run of characters (also none), `[abc]`, `[a-z]` and the
//! negated `[!a-z]` one character of (or not of) a set (inside brackets only `-` and a
//! leading `!` mean something), `{foo,bar}` one of the listed strings; anything else
//! matches itself. The matcher is ours, not rosc's
//! `address::Matcher`: that one lets `[0-9]` match several characters and a negated class
//! run past a `/`. Matching is a memoised walk over (pattern position, text position) per
//! part, each pair decided once in constant time, so a part costs at most the product of
//! the two lengths whatever the pattern (a crafted `*a*a*a*…` cannot make it exponential);
//! each distinct part of the table's addresses (a module id, a parameter name) is matched
//! once per pattern; and a packet's patterns together may cost at most
//! [`PACKET_MATCH_BUDGET`] steps, so no packet holds the server's OSC thread for long.
//!
//! Only the addresses that set something take patterns (`/mod/<id>/<param>` and
//! `/gate/<id>`, and the parameter address `/get` and `/ramp` take as an argument): a
//! question or a server command named by a pattern would be a surprise, not a feature.

use rosc::{OscMessage, OscType};

use crate::signature::clip;
use crate::table::{AddressTable, Target, GET, RAMP};

/// The longest pattern taken (characters): far beyond any address a person types, and it
/// bounds the matcher's work.
pub const MAX_PATTERN_LEN: usize = 128;

/// The matching steps (pattern position × text position pairs) one packet's patterns may
/// take together: a few milliseconds of the OSC thread. Patterns of the kind people send
/// over a patch of hundreds of modules take a few thousand; a packet over the budget is
/// refused with `/fail`.
pub const PACKET_MATCH_BUDGET: u64 = 2_000_000;

/// Whether `address` is a pattern (holds one of OSC's pattern characters) rather than a
/// plain address.
pub fn is_pattern(address: &str) -> bool {
    address.contains(['*', '?', '[', ']', '{', '}'])
}

/// One element of a pattern part.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A character that matches itself.
    Literal(char),
    /// `?`: any one character.
    One,
    /// `*`: any run of characters.
    Any,
    /// `[…]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `{a,b}`: one of the strings.
    Choice(Vec<Vec<char>>),
}

/// A parsed address pattern: one token list per `/`-separated part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<Vec<Token>>,
}

impl Pattern {
    /// Parses an OSC address pattern.
    ///
    /// # Errors
    /// A reason for a pattern that does not start with `/`, is longer than
    /// [`MAX_PATTERN_LEN`], has an unclosed `[` or `{`, a stray `]` or `}`, an empty class,
    /// a reversed range (`[z-a]`), or a pattern character inside `{…}`.
    pub fn parse(pattern: &str) -> Result<Pattern, String> {
        if pattern.chars().count() > MAX_PATTERN_LEN {
            return Err(format!(
                "the pattern is longer than {MAX_PATTERN_LEN} characters"
            ));
        }
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err("a pattern starts with '/'".to_string());
        };
        let parts = rest
            .split('/')
            .map(parse_part)
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Pattern { parts })
    }

    /// Whether `address` (a plain address) matches the whole pattern.
    pub fn matches(&self, address: &str) -> bool {
        let mut budget = u64::MAX;
        self.matches_within(address, &mut PartCache::new(), &mut budget) == Some(true)
    }

    /// Whether `address` matches, reusing the verdicts on parts in `cache` and charging
    /// the steps of new ones to `budget`; `None` when the budget runs out.
    fn matches_within<'a>(
        &self,
        address: &'a str,
        cache: &mut PartCache<'a>,
        budget: &mut u64,
    ) -> Option<bool> {
        let Some(rest) = address.strip_prefix('/') else {
            return Some(false);
        };
        if rest.split('/').count() != self.parts.len() {
            return Some(false);
        }
        for (i, (tokens, text)) in self.parts.iter().zip(rest.split('/')).enumerate() {
            let verdict = match cache.get(&(i, text)) {
                Some(&known) => known,
                None => {
                    let text_chars: Vec<char> = text.chars().collect();
                    let steps = (tokens.len() as u64 + 1) * (text_chars.len() as u64 + 1);
                    *budget = budget.checked_sub(steps)?;
                    let verdict = PartMatch::new(tokens, &text_chars).at(0, 0);
                    cache.insert((i, text), verdict);
                    verdict
                }
            };
            if !verdict {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// Verdicts on (part index, text) already matched against one pattern.
type PartCache<'a> = std::collections::HashMap<(usize, &'a str), bool>;

fn parse_part(part: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = part.chars().peekable();
    while let Some(c) = chars.next() {
        let token = match c {
            '?' => Token::One,
            // Runs of `*` are one `*`.
            '*' if tokens.last() == Some(&Token::Any) => continue,
            '*' => Token::Any,
            '[' => {
                let negated = chars.next_if_eq(&'!').is_some();
                let mut ranges = Vec::new();
                loop {
                    match chars.next() {
                        None => return Err("'[' is not closed".to_string()),
                        Some(']') => break,
                        Some(low) => {
                            // `a-z` is a range; a `-` last in the class is itself.
                            if chars.next_if_eq(&'-').is_none() {
                                ranges.push((low, low));
                                continue;
                            }
                            let Some(high) = chars.next_if(|&c| c != ']') else {
                                ranges.extend([(low, low), ('-', '-')]);
                                continue;
                            };
                            if high < low {
                                return Err(format!("the range '{low}-{high}' is reversed"));
                            }
                            ranges.push((low, high));
                        }
                    }
                }
                if ranges.is_empty() {
                    return Err("'[]' holds no character".to_string());
                }
                Token::Class { negated, ranges }
            }
            '{' => {
                let mut choices = vec![Vec::new()];
                loop {
                    match chars.next() {
                        None => return Err("'{' is not closed".to_string()),
                        Some('}') => break,
                        Some(',') => choices.push(Vec::new()),
                        Some(c) if is_pattern_char(c) => {
                            return Err(format!("'{c}' inside '{{…}}'"));
                        }
                        Some(c) => choices.last_mut().expect("never empty").push(c),
                    }
                }
                Token::Choice(choices)
            }
            ']' | '}' => return Err(format!("'{c}' without its opening bracket")),
            c => Token::Literal(c),
        };
        tokens.push(token);
    }
    Ok(tokens)
}

fn is_pattern_char(c: char) -> bool {
    matches!(c, '*' | '?' | '[' | ']' | '{' | '}')
}

/// One part matched against one text: memoised, so each (token, position) pair is
/// decided once.
struct PartMatch<'a> {
    tokens: &'a [Token],
    text: &'a [char],
    /// `None` undecided; indexed `token * (text.len() + 1) + position`.
    memo: Vec<Option<bool>>,
}

impl<'a> PartMatch<'a> {
    fn new(tokens: &'a [Token], text: &'a [char]) -> PartMatch<'a> {
        PartMatch {
            tokens,
            text,
            memo: vec![None; (tokens.len() + 1) * (text.len() + 1)],
        }
    }

    /// Whether tokens from `t` on match the text from `p` on, to its end.
    fn at(&mut self, t: usize, p: usize) -> bool {
        let key = t * (self.text.len() + 1) + p;
        if let Some(known) = self.memo[key] {
            return known;
        }
        let rest = &self.text[p..];
        let matched = match self.tokens.get(t) {
            None => rest.is_empty(),
            Some(Token::Literal(c)) => rest.first() == Some(c) && self.at(t + 1, p + 1),
            Some(Token::One) => !rest.is_empty() && self.at(t + 1, p + 1),
            // `*` matches nothing more, or one more character and is still `*`.
            Some(Token::Any) => self.at(t + 1, p) || (!rest.is_empty() && self.at(t, p + 1)),
            Some(Token::Class { negated, ranges }) => {
                let inside = |c: &char| ranges.iter().any(|&(low, high)| (low..=high).contains(c));
                rest.first().is_some_and(|c| inside(c) != *negated) && self.at(t + 1, p + 1)
            }
            Some(Token::Choice(choices)) => {
                let fits: Vec<usize> = choices
                    .iter()
                    .filter(|choice| rest.starts_with(choice))
                    .map(Vec::len)
                    .collect();
                fits.into_iter().any(|len| self.at(t + 1, p + len))
            }
        };
        self.memo[key] = Some(matched);
        matched
    }
}

/// The addresses of `table` that `pattern` matches among those `wanted` selects, in the
/// table's order, charging the matching steps to `budget`.
///
/// # Errors
/// The reason, when the packet's budget runs out.
fn matching<'t>(
    table: &'t AddressTable,
    pattern: &Pattern,
    wanted: impl Fn(&Target) -> bool,
    budget: &mut u64,
) -> Result<Vec<&'t str>, String> {
    let mut cache = PartCache::new();
    let mut matches = Vec::new();
    for entry in table.entries().filter(|entry| wanted(&entry.target)) {
        match pattern.matches_within(&entry.address, &mut cache, budget) {
            Some(true) => matches.push(entry.address.as_str()),
            Some(false) => {}
            None => {
                return Err(format!(
                    "the packet's patterns need more than {PACKET_MATCH_BUDGET} matching steps against this patch; send fewer or simpler patterns"
                ))
            }
        }
    }
    Ok(matches)
}

/// The messages a message with a pattern stands for, one per match: its address is a
/// pattern of `/mod/…` or `/gate/…` addresses, or it is `/get` or `/ramp` with a pattern of
/// parameter addresses as its first argument. `None`: the message holds no pattern.
///
/// # Errors
/// The reason (for a `/fail` to the message as sent, after its address) when the pattern
/// does not parse, is used where patterns are not taken, matches nothing, or the packet's
/// matching budget runs out.
pub(crate) fn expand(
    table: &AddressTable,
    msg: &OscMessage,
    budget: &mut u64,
) -> Result<Option<Vec<OscMessage>>, String> {
    if is_pattern(&msg.addr) {
        let pattern = Pattern::parse(&msg.addr)
            .map_err(|why| format!("not a valid address pattern: {why}"))?;
        let matches = matching(
            table,
            &pattern,
            |target| matches!(target, Target::Param { .. } | Target::Gate { .. }),
            budget,
        )?;
        if matches.is_empty() {
            return Err(
                "the pattern matches no address (patterns are taken for /mod/<id>/<param> and /gate/<id> addresses; `chronus send --list` shows them)".to_string(),
            );
        }
        return Ok(Some(
            matches
                .into_iter()
                .map(|addr| OscMessage {
                    addr: addr.to_string(),
                    args: msg.args.clone(),
                })
                .collect(),
        ));
    }
    let argument_pattern = match msg.args.first() {
        Some(OscType::String(first)) if is_pattern(first) => first,
        _ => return Ok(None),
    };
    if msg.addr != GET && msg.addr != RAMP {
        return Ok(None); // a text argument, checked as such
    }
    let pattern = Pattern::parse(argument_pattern)
        .map_err(|why| format!("argument 1 is not a valid address pattern: {why}"))?;
    let matches = matching(
        table,
        &pattern,
        |target| matches!(target, Target::Param { .. }),
        budget,
    )?;
    if matches.is_empty() {
        return Err(format!(
            "the pattern {} matches no parameter address",
            clip(argument_pattern)
        ));
    }
    Ok(Some(
        matches
            .into_iter()
            .map(|param| {
                let mut args = msg.args.clone();
                args[0] = OscType::String(param.to_string());
                OscMessage {
                    addr: msg.addr.clone(),
                    args,
                }
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matches(pattern: &str, address: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(address)
    }

    #[test]
    fn the_osc_pattern_grammar() {
        let cases = [
            ("/mod/sine/freq", "/mod/sine/freq", true),
            ("/mod/*/freq", "/mod/sine/freq", true),
            ("/mod/*/freq", "/mod/sine/gain", false),
            ("/mod/*", "/mod/sine/freq", false), // `*` stops at '/'
            ("/mod/*/*", "/mod/sine/freq", true),
            ("/mod/s*e/freq", "/mod/sine/freq", true),
            ("/mod/s*e/freq", "/mod/saw/freq", false),
            ("/mod/*e*/freq", "/mod/sine/freq", true),
            ("/mod/**/freq", "/mod/x/freq", true),
            ("/mod/*/freq", "/mod//freq", true), // `*` matches nothing too
            ("/mod/sin?/freq", "/mod/sine/freq", true),
            ("/mod/sin?/freq", "/mod/sin/freq", false),
            ("/mod/osc[0-9]/freq", "/mod/osc1/freq", true),
            ("/mod/osc[0-9]/freq", "/mod/osc12/freq", false), // one character only
            ("/mod/osc[0-9]*/freq", "/mod/osc12/freq", true),
            ("/mod/osc[!0-9]/freq", "/mod/oscA/freq", true),
            ("/mod/osc[!0-9]/freq", "/mod/osc1/freq", false),
            ("/mod/osc[!x]", "/mod/osc/", false), // a class never matches '/'
            ("/mod/[ab-]/x", "/mod/-/x", true),
            ("/mod/[a-]/x", "/mod/-/x", true),
            ("/gate/{kick,snare}", "/gate/snare", true),
            ("/gate/{kick,snare}", "/gate/hat", false),
            ("/gate/{k,ki}ck", "/gate/kick", true), // the longer choice when the shorter fails
            ("/gate/x{,y}", "/gate/x", true),
            ("/gate/x{}", "/gate/x", true),
            // Inside brackets only `-` and a leading `!` mean something (OSC 1.0).
            ("/mod/[*s]ine", "/mod/sine", true),
            ("/mod/[*s]ine", "/mod/*ine", true),
            ("/mod/[?]", "/mod/x", false),
        ];
        for (pattern, address, expected) in cases {
            assert_eq!(matches(pattern, address), expected, "{pattern} {address}");
        }
    }

    #[test]
    fn broken_patterns_say_why() {
        for (pattern, why) in [
            ("mod/*", "starts with '/'"),
            ("/mod/[ab", "'[' is not closed"),
            ("/mod/{a,b", "'{' is not closed"),
            ("/mod/a]", "without its opening"),
            ("/mod/[]", "holds no character"),
            ("/mod/[z-a]", "reversed"),
            ("/mod/{a*,b}", "inside"),
        ] {
            let error = Pattern::parse(pattern).unwrap_err();
            assert!(error.contains(why), "{pattern}: {error}");
        }
        assert!(Pattern::parse(&format!("/{}", "*".repeat(300))).is_err());
    }

    #[test]
    fn a_crafted_pattern_costs_little() {
        let pattern = format!("/{}b", "*a".repeat(60));
        let text = format!("/{}", "a".repeat(150));
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &text));
        // Memoised: 121 tokens × 151 positions, not 2^60 ways.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// A reference matcher: the pattern turned into a regular expression by hand for the
    /// simple grammar the property test draws from.
    fn reference(pattern: &str, address: &str) -> bool {
        fn go(p: &[char], t: &[char]) -> bool {
            match p.first() {
                None => t.is_empty(),
                Some('*') => (0..=t.len())
                    .take_while(|&n| !t[..n].contains(&'/'))
                    .any(|n| go(&p[1..], &t[n..])),
                Some('?') => t.first().is_some_and(|&c| c != '/') && go(&p[1..], &t[1..]),
                Some(&c) => t.first() == Some(&c) && go(&p[1..], &t[1..]),
            }
        }
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = address.chars().collect();
        go(&p, &t)
    }

    proptest! {
        #[test]
        fn stars_and_question_marks_match_as_the_reference_does(
            pattern in "/[ab*?]{0,6}(/[ab*?]{0,4})?",
            address in "/[ab]{0,6}(/[ab]{0,4})?",
        ) {
            prop_assert_eq!(matches(&pattern, &address), reference(&pattern, &address));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(pattern in "\\PC{0,40}") {
            if let Ok(parsed) = Pattern::parse(&pattern) {
                parsed.matches("/mod/sine/freq");
            }
        }
    }
}
