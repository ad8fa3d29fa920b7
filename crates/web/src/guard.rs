//! Who may use the page: the checks every HTTP request and WebSocket passes first.
//!
//! The page can play notes, change every parameter and (with fault injection) crash the
//! workers, so it must not be drivable by anyone but the person who launched it, and in
//! particular not by another web page they visit. Three checks, all pure functions here
//! so each has a table-driven test:
//! - **Loopback only**: `chronus web` refuses to bind a non-loopback address at all
//!   ([`check_bind`]); to use it from another machine, tunnel the port (`ssh -L`).
//! - **Host** must be the bound `ip:port` or `localhost:port`: a DNS-rebinding page
//!   (`evil.example` resolved to 127.0.0.1) sends its own name as Host and is refused.
//! - **Origin**, when the browser sends one (always on a WebSocket and on cross-site
//!   requests), must be `http://` + one of those hosts.
//! - **Token**: a per-launch random token ([`Token::generate`], 128 bits from
//!   `/dev/urandom`), printed in the URL as Jupyter does; required on every request, in the
//!   `token` query parameter or in the cookie the first tokened page load sets
//!   (`HttpOnly; SameSite=Strict`, named after the port so two launches do not clash).
//!
//! A refused request gets 403 and the reason as plain text ([`Refusal`]'s `Display`).

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;

/// The per-launch secret that every request must carry.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// 16 random bytes from the kernel (`/dev/urandom`), as 32 hex digits.
    ///
    /// # Errors
    /// `/dev/urandom` cannot be read (then there is no safe token: refuse to start).
    pub fn generate() -> std::io::Result<Token> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Token(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// A fixed token, for tests.
    pub fn from_text(text: &str) -> Token {
        Token(text.to_string())
    }

    /// The token as it appears in the URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is, so the token cannot
    /// be guessed a digit at a time by timing.
    fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Why a request was refused (the body of the 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No Host header, or one that is not the bound address nor `localhost:port`.
    Host(String),
    /// An Origin header that is not this page's own.
    Origin(String),
    /// No token, or a wrong one.
    Token,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Host(host) => write!(
                f,
                "refused: Host '{host}' is not this server's loopback address (DNS rebinding?)"
            ),
            Refusal::Origin(origin) => {
                write!(f, "refused: Origin '{origin}' is not this page's own")
            }
            Refusal::Token => write!(
                f,
                "refused: missing or wrong token: open the URL `chronus web` printed (it has ?token=...)"
            ),
        }
    }
}

/// How a request proved it has the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// In the `token` query parameter: the answer sets the cookie.
    Query,
    /// In the cookie.
    Cookie,
}

/// The headers and query of one request that the checks read.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The Host header.
    pub host: Option<&'a str>,
    /// The Origin header.
    pub origin: Option<&'a str>,
    /// The URL's query string (without `?`).
    pub query: Option<&'a str>,
    /// The Cookie header.
    pub cookie: Option<&'a str>,
}

/// The checks of one launch: its bound address and its token.
#[derive(Clone)]
pub struct Guard {
    bound: SocketAddr,
    token: Token,
}

impl Guard {
    /// The guard of a server bound at `bound` (a loopback address: [`check_bind`]).
    pub fn new(bound: SocketAddr, token: Token) -> Guard {
        Guard { bound, token }
    }

    /// The token.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The name of the cookie that carries the token (per port: two launches on two ports
    /// each keep their own).
    pub fn cookie_name(&self) -> String {
        format!("chronus_web_{}", self.bound.port())
    }

    /// The `Set-Cookie` value for an answer to a tokened request.
    pub fn set_cookie(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name(),
            self.token.as_str()
        )
    }

    /// The URL to print: `http://<bound>/?token=<token>`.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.bound, self.token.as_str())
    }

    /// The Host values this server answers to: `ip:port` as bound (IPv6 in brackets) and
    /// `localhost:port`.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        host == self.bound.to_string() || host == format!("localhost:{}", self.bound.port())
    }

    /// Checks one request: Host, then Origin, then the token.
    ///
    /// # Errors
    /// The first check that fails, as a [`Refusal`].
    pub fn check(&self, facts: RequestFacts<'_>) -> Result<Proof, Refusal> {
        let host = facts.host.unwrap_or("");
        if !self.host_allowed(host) {
            return Err(Refusal::Host(host.to_string()));
        }
        if let Some(origin) = facts.origin {
            let own = origin
                .strip_prefix("http://")
                .is_some_and(|rest| self.host_allowed(rest));
            if !own {
                return Err(Refusal::Origin(origin.to_string()));
            }
        }
        let in_query = facts.query.and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "token")
                .map(|(_, v)| v)
        });
        if in_query.is_some_and(|t| self.token.matches(t)) {
            return Ok(Proof::Query);
        }
        let name = self.cookie_name();
        let in_cookie = facts
            .cookie
            .into_iter()
            .flat_map(|c| c.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then_some(v)
            });
        if in_cookie.is_some_and(|t| self.token.matches(t)) {
            return Ok(Proof::Cookie);
        }
        Err(Refusal::Token)
    }
}

/// Refuses to serve on anything but a loopback address: the page drives the synth and its
/// fault injection, so it is for this machine only (tunnel the port to reach it from
/// elsewhere).
///
/// # Errors
/// The reason, naming the address.
pub fn check_bind(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "--http {addr}: chronus web serves on loopback only (127.0.0.1 or [::1]); \
             to reach it from another machine, tunnel the port (ssh -L 8080:127.0.0.1:8080 host)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(
            "127.0.0.1:8080".parse().unwrap(),
            Token::from_text("abc123"),
        )
    }

    fn facts<'a>(
        host: Option<&'a str>,
        origin: Option<&'a str>,
        query: Option<&'a str>,
        cookie: Option<&'a str>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            host,
            origin,
            query,
            cookie,
        }
    }

    #[test]
    fn host_must_be_the_bound_address_or_localhost() {
        let g = guard();
        let q = Some("token=abc123");
        for (host, ok) in [
            (Some("127.0.0.1:8080"), true),
            (Some("localhost:8080"), true),
            (Some("LOCALHOST:8080"), true),
            (Some("127.0.0.1:8081"), false),
            (Some("localhost"), false),
            (Some("evil.example:8080"), false),
            (Some("127.0.0.1"), false),
            (Some(""), false),
            (None, false),
        ] {
            let result = g.check(facts(host, None, q, None));
            assert_eq!(result.is_ok(), ok, "{host:?}: {result:?}");
            if !ok {
                assert!(matches!(result, Err(Refusal::Host(_))));
            }
        }
    }

    #[test]
    fn ipv6_host_is_in_brackets() {
        let g = Guard::new("[::1]:9000".parse().unwrap(), Token::from_text("t"));
        assert!(g
            .check(facts(Some("[::1]:9000"), None, Some("token=t"), None))
            .is_ok());
        assert!(g
            .check(facts(Some("::1:9000"), None, Some("token=t"), None))
            .is_err());
    }

    #[test]
    fn origin_when_present_must_be_our_own() {
        let g = guard();
        let h = Some("127.0.0.1:8080");
        let q = Some("token=abc123");
        for (origin, ok) in [
            (None, true),
            (Some("http://127.0.0.1:8080"), true),
            (Some("http://localhost:8080"), true),
            (Some("http://evil.example"), false),
            (Some("http://127.0.0.1:8081"), false),
            (Some("https://127.0.0.1:8080"), false),
            (Some("null"), false),
            (Some("http://127.0.0.1:8080.evil.example"), false),
        ] {
            let result = g.check(facts(h, origin, q, None));
            assert_eq!(result.is_ok(), ok, "{origin:?}: {result:?}");
            if !ok {
                assert!(matches!(result, Err(Refusal::Origin(_))));
            }
        }
    }

    #[test]
    fn token_from_query_or_cookie() {
        let g = guard();
        let h = Some("127.0.0.1:8080");
        assert_eq!(
            g.check(facts(h, None, Some("token=abc123"), None)),
            Ok(Proof::Query)
        );
        assert_eq!(
            g.check(facts(h, None, Some("x=1&token=abc123"), None)),
            Ok(Proof::Query)
        );
        assert_eq!(
            g.check(facts(h, None, None, Some("a=b; chronus_web_8080=abc123"))),
            Ok(Proof::Cookie)
        );
        for (query, cookie) in [
            (None, None),
            (Some("token=abc12"), None),
            (Some("token=abc1234"), None),
            (Some("token="), None),
            (Some("tok=abc123"), None),
            (None, Some("chronus_web_8081=abc123")),
            (None, Some("chronus_web_8080=wrong")),
        ] {
            assert_eq!(
                g.check(facts(h, None, query, cookie)),
                Err(Refusal::Token),
                "{query:?} {cookie:?}"
            );
        }
    }

    #[test]
    fn generated_tokens_are_long_and_differ() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn binds_loopback_only() {
        assert!(check_bind("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(check_bind("127.0.0.2:8080".parse().unwrap()).is_ok());
        assert!(check_bind("[::1]:8080".parse().unwrap()).is_ok());
        let refused = check_bind("0.0.0.0:8080".parse().unwrap()).unwrap_err();
        assert!(refused.contains("loopback only"), "{refused}");
        assert!(check_bind("192.168.1.2:8080".parse().unwrap()).is_err());
    }

    #[test]
    fn refusals_say_why() {
        assert!(Refusal::Token.to_string().contains("token"));
        assert!(Refusal::Host("x:1".into()).to_string().contains("'x:1'"));
        assert!(Refusal::Origin("http://e".into())
            .to_string()
            .contains("http://e"));
    }
}
