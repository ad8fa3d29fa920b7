//! Safe when exposed: who may talk to the server, how much, and what it may send back,
//! as one policy of pure functions (no sockets, no clocks of their own), so a reader sees
//! every rule here and each is table-tested below.
//!
//! - **Who**: with no `--allow`, every client is served (the server listens on loopback
//!   by default; binding any other address prints [`Exposure::bind_warning`]). With
//!   `--allow CIDR…`, only clients in one of those networks, and loopback, are served;
//!   packets from others are ignored (no answer) and counted, and their TCP connections
//!   closed at once.
//! - **How much**: each client may send [`Exposure::rate_limit`] packets a second, with a
//!   burst of as many ([`RateLimiter`], one [`TokenBucket`] per UDP source address and
//!   one per TCP connection), and no packet larger than [`Exposure::max_packet`] bytes;
//!   packets beyond are dropped and counted. The defaults are far above what a demanding
//!   local client sends (a sequencer at 1,000 changes a second, a test suite blasting
//!   thousands of commands in a burst).
//! - **What goes back**: a UDP client that is neither loopback nor allow-listed
//!   ([`Exposure::is_allowed_peer`]) never gets more reply bytes than its packet had
//!   ([`ReplyBudget`]): UDP source addresses can be forged, and a server that answers a
//!   16-byte `/metrics` with 884 bytes would amplify an attack on whoever's address was
//!   forged. A reply that does not fit becomes one short `/fail` saying to ask over TCP.
//!   (Replies made after the packet was handled, such as a `/fail` at stamping, go to
//!   such a client only if no larger than the smallest request: see
//!   [`Replier::send_deferred`](crate::transport::Replier::send_deferred).)
//! - **Power**: `/quit` and fault injection (`/debug/*`) are taken only from loopback
//!   unless `--allow-remote-quit` ([`Exposure::may_quit_or_inject`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Default of `--rate-limit`: packets a second one client may send (and the burst it may
/// send at once). Twenty times what `chronus bench soak`'s busiest client sends, and more
/// than the OSC handler can decode on a loaded 2-core machine, so no honest client meets
/// it while one flooding client cannot take the whole handler.
pub const DEFAULT_RATE_LIMIT: u32 = 20_000;
/// Default of `--max-packet`: the largest packet taken, in bytes (64 KiB: any UDP
/// datagram; over TCP, a bundle of a few thousand commands).
pub const DEFAULT_MAX_PACKET: usize = 65_536;
/// Largest `--max-packet` allowed: TCP packets beyond 1 MiB are never taken.
pub const MAX_MAX_PACKET: usize = 1 << 20;
/// Smallest `--max-packet` allowed: room for any query and a few parameter changes.
pub const MIN_MAX_PACKET: usize = 64;
/// UDP source addresses the rate limiter tracks; beyond, newcomers share one bucket (a
/// flood forging many source addresses cannot make the table grow without bound).
pub const MAX_TRACKED_CLIENTS: usize = 4096;

/// A network in CIDR notation (`192.168.1.0/24`, `10.1.2.3` for one host, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address, with the host bits cleared.
    network: IpAddr,
    /// How many leading bits must match.
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this network. An IPv4 address seen as IPv6 (`::ffff:a.b.c.d`,
    /// what a dual-stack socket reports) is compared as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    bits & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    bits & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    /// Parses `ADDRESS/PREFIX` or a bare address (one host). Host bits set in the address
    /// are refused rather than cleared: `192.168.1.7/24` is more likely a typo than a
    /// wish for the whole network.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = address.parse().map_err(|_| {
            format!("'{s}' is not a network like 192.168.1.0/24, 10.0.0.7 or fd00::/8")
        })?;
        let most = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => most,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= most)
                .ok_or_else(|| format!("'{s}': the prefix length must be 0 to {most}"))?,
        };
        let cidr = Cidr { network, prefix };
        let cleared = match network {
            IpAddr::V4(ip) => IpAddr::from(mask_v4(u32::from(ip), prefix).to_be_bytes()),
            IpAddr::V6(ip) => IpAddr::from(mask_v6(u128::from(ip), prefix).to_be_bytes()),
        };
        if cleared != network {
            return Err(format!(
                "'{s}' has host bits set: did you mean {cleared}/{prefix}?"
            ));
        }
        Ok(cidr)
    }
}

/// Whether `ip` is this machine's loopback (`127.0.0.0/8`, `::1`, or an IPv4 loopback
/// address seen as IPv6).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The exposure settings of a running server (`--allow`, `--allow-remote-quit`,
/// `--rate-limit`, `--max-packet`) and the decisions made from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// Networks whose clients are served besides loopback; empty: everyone is served.
    pub allow: Vec<Cidr>,
    /// Whether `/quit` and `/debug/*` are taken from clients other than loopback.
    pub allow_remote_quit: bool,
    /// Packets a second (and burst) one client may send; 0: no limit.
    pub rate_limit: u32,
    /// Largest packet taken, in bytes.
    pub max_packet: usize,
}

impl Default for Exposure {
    fn default() -> Exposure {
        Exposure {
            allow: Vec::new(),
            allow_remote_quit: false,
            rate_limit: DEFAULT_RATE_LIMIT,
            max_packet: DEFAULT_MAX_PACKET,
        }
    }
}

impl Exposure {
    /// Whether packets from `ip` are served at all: everyone's when no `--allow` was
    /// given, else only loopback's and the allow-listed networks'.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.is_allowed_peer(ip)
    }

    /// Whether `ip` is trusted with more over UDP than it sent: loopback, or a network
    /// named by `--allow`. Replies larger than their request, and pushes to UDP
    /// subscribers, go only to such peers (over TCP a source address cannot be forged,
    /// so TCP clients need no such trust).
    pub fn is_allowed_peer(&self, ip: IpAddr) -> bool {
        is_loopback(ip) || self.allow.iter().any(|net| net.contains(ip))
    }

    /// Whether a push (`/notify`) may go to a UDP subscriber at `addr`: only to an allowed
    /// peer ([`is_allowed_peer`](Self::is_allowed_peer)), since a push is a reply to no
    /// request at all and a forged subscription would aim it at someone else. (TCP
    /// subscribers need no such check.)
    pub fn may_push_udp(&self, addr: SocketAddr) -> bool {
        self.is_allowed_peer(addr.ip())
    }

    /// Whether `/quit` and fault injection (`/debug/*`) are taken from `ip`: from
    /// loopback always, from others only with `--allow-remote-quit`.
    pub fn may_quit_or_inject(&self, ip: IpAddr) -> bool {
        self.allow_remote_quit || is_loopback(ip)
    }

    /// What to tell the operator when serving on `addr`, if anything: a server bound
    /// beyond loopback with no `--allow` can be played, edited and read by anyone who
    /// reaches it.
    pub fn bind_warning(&self, addr: SocketAddr) -> Option<String> {
        if is_loopback(addr.ip()) || !self.allow.is_empty() {
            return None;
        }
        Some(format!(
            "OSC on {addr} is open to every client that can reach it: anyone may play, edit the patch and read the metrics{}. Restrict clients with --allow CIDR (e.g. --allow 192.168.1.0/24), or serve on 127.0.0.1",
            if self.allow_remote_quit {
                ", and with --allow-remote-quit also stop the server and inject faults"
            } else {
                " (/quit and /debug/* stay loopback-only)"
            }
        ))
    }

    /// The reply budget for a packet of `request_len` bytes from `from` (`None`: over
    /// TCP, where replies are not limited).
    pub fn reply_budget(&self, from: Option<IpAddr>, request_len: usize) -> ReplyBudget {
        match from {
            Some(ip) if !self.is_allowed_peer(ip) => ReplyBudget {
                left: Some(request_len),
                refusal_sent: false,
            },
            _ => ReplyBudget::unlimited(),
        }
    }
}

/// What may go back for one packet: for a UDP client that is not an allowed peer, at most
/// as many reply bytes as the packet had (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyBudget {
    /// Bytes still allowed; `None`: no limit.
    left: Option<usize>,
    /// Whether the one `/fail` saying to use TCP went out already.
    refusal_sent: bool,
}

/// What to do with one reply under a [`ReplyBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyDecision {
    /// Send it.
    Send,
    /// Do not send it; send instead one short `/fail` saying to ask over TCP (counted).
    Refuse,
    /// Send nothing (counted): this packet's client already got its `/fail`.
    Drop,
}

impl ReplyBudget {
    /// No limit (TCP, loopback and allow-listed clients).
    pub fn unlimited() -> ReplyBudget {
        ReplyBudget {
            left: None,
            refusal_sent: false,
        }
    }

    /// Decides about a reply of `len` bytes and takes it from the budget. So the bytes
    /// sent for one packet are at most its own size plus one short `/fail`.
    pub fn decide(&mut self, len: usize) -> ReplyDecision {
        match self.left {
            None => ReplyDecision::Send,
            Some(left) if len <= left => {
                self.left = Some(left - len);
                ReplyDecision::Send
            }
            Some(_) if !self.refusal_sent => {
                self.refusal_sent = true;
                ReplyDecision::Refuse
            }
            Some(_) => ReplyDecision::Drop,
        }
    }
}

/// The reason of the `/fail` that replaces a reply too large for UDP (kept short: it must
/// not become the amplifier it prevents).
pub const USE_TCP: &str = "reply larger than the request: ask over TCP";

/// A token bucket on an injected clock (ns): `rate` tokens a second up to `burst`, one
/// taken per packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ns`: a new client may send a burst at once.
    pub fn full(burst: u32, now_ns: u64) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            last_ns: now_ns,
        }
    }

    /// Takes one token if there is one, refilling for the time since the last call
    /// first; false: over the limit. A clock that goes back refills nothing.
    pub fn take(&mut self, rate: u32, burst: u32, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        self.tokens = (self.tokens + elapsed as f64 * f64::from(rate) / 1e9).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full at `now_ns` (its client has been quiet long
    /// enough that forgetting it changes nothing).
    fn is_full_at(&self, rate: u32, burst: u32, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.tokens + elapsed as f64 * f64::from(rate) / 1e9 >= f64::from(burst)
    }
}

/// Per-client rate limits for one transport: one bucket per key (a UDP source address,
/// or a TCP connection's one key), at most [`MAX_TRACKED_CLIENTS`] of them; owned by one
/// reader thread, so no lock.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: u32,
    buckets: HashMap<K, TokenBucket>,
    /// Shared by newcomers while the table is full of active clients.
    overflow: TokenBucket,
}

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    /// A limiter of `rate` packets a second per client (burst as many); 0: no limit.
    pub fn new(rate: u32, now_ns: u64) -> RateLimiter<K> {
        RateLimiter {
            rate,
            buckets: HashMap::new(),
            overflow: TokenBucket::full(rate, now_ns),
        }
    }

    /// Whether one more packet from `client` at `now_ns` is within its limit.
    pub fn allow(&mut self, client: K, now_ns: u64) -> bool {
        let (rate, burst) = (self.rate, self.rate);
        if rate == 0 {
            return true;
        }
        if !self.buckets.contains_key(&client) && self.buckets.len() >= MAX_TRACKED_CLIENTS {
            // Forget the clients a full bucket would treat exactly as new ones.
            self.buckets
                .retain(|_, bucket| !bucket.is_full_at(rate, burst, now_ns));
            if self.buckets.len() >= MAX_TRACKED_CLIENTS {
                return self.overflow.take(rate, burst, now_ns);
            }
        }
        self.buckets
            .entry(client)
            .or_insert_with(|| TokenBucket::full(burst, now_ns))
            .take(rate, burst, now_ns)
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        let table: &[(&str, &str, bool)] = &[
            ("192.168.1.0/24", "192.168.1.7", true),
            ("192.168.1.0/24", "192.168.2.7", false),
            ("192.168.1.0/24", "::ffff:192.168.1.7", true),
            ("10.0.0.7", "10.0.0.7", true),
            ("10.0.0.7", "10.0.0.8", false),
            ("10.0.0.7/32", "10.0.0.7", true),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("172.16.0.0/12", "172.31.255.255", true),
            ("172.16.0.0/12", "172.32.0.0", false),
            ("fd00::/8", "fd12:3456::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "10.0.0.1", false),
            ("2001:db8::1", "2001:db8::1", true),
            ("2001:db8::/127", "2001:db8::1", true),
            ("2001:db8::/128", "2001:db8::1", false),
        ];
        for &(net, addr, expected) in table {
            let cidr: Cidr = net.parse().unwrap_or_else(|e| panic!("{net}: {e}"));
            assert_eq!(cidr.contains(ip(addr)), expected, "{net} contains {addr}");
        }
    }

    #[test]
    fn bad_cidrs_are_refused_with_a_reason() {
        let table: &[(&str, &str)] = &[
            ("", "not a network"),
            ("192.168.1/24", "not a network"),
            ("192.168.1.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.0/x", "0 to 32"),
            ("10.0.0.0/-1", "0 to 32"),
            ("192.168.1.7/24", "did you mean 192.168.1.0/24"),
            ("fd00::1/8", "did you mean fd00::/8"),
            ("localhost", "not a network"),
        ];
        for &(text, reason) in table {
            let error = text.parse::<Cidr>().unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
        assert_eq!(
            "192.168.1.0/24".parse::<Cidr>().unwrap().to_string(),
            "192.168.1.0/24"
        );
    }

    #[test]
    fn who_is_served_trusted_and_may_quit() {
        let open = Exposure::default();
        let listed = Exposure {
            allow: vec!["192.0.2.0/24".parse().unwrap()],
            ..Exposure::default()
        };
        let remote_quit = Exposure {
            allow_remote_quit: true,
            ..listed.clone()
        };
        // (policy, peer, admits, is_allowed_peer, may_quit_or_inject)
        let table: &[(&Exposure, &str, bool, bool, bool)] = &[
            (&open, "127.0.0.1", true, true, true),
            (&open, "127.8.9.10", true, true, true),
            (&open, "::1", true, true, true),
            (&open, "::ffff:127.0.0.1", true, true, true),
            (&open, "192.0.2.2", true, false, false),
            (&open, "203.0.113.1", true, false, false),
            (&listed, "127.0.0.1", true, true, true),
            (&listed, "192.0.2.2", true, true, false),
            (&listed, "203.0.113.1", false, false, false),
            (&remote_quit, "192.0.2.2", true, true, true),
            (&remote_quit, "203.0.113.1", false, false, true),
        ];
        for &(policy, peer, admits, allowed, quit) in table {
            let peer = ip(peer);
            assert_eq!(policy.admits(peer), admits, "{policy:?} admits {peer}");
            assert_eq!(policy.is_allowed_peer(peer), allowed, "{policy:?} {peer}");
            assert_eq!(policy.may_quit_or_inject(peer), quit, "{policy:?} {peer}");
            let udp = SocketAddr::new(peer, 57_120);
            assert_eq!(policy.may_push_udp(udp), allowed, "{policy:?} {udp}");
        }
    }

    #[test]
    fn binding_beyond_loopback_without_an_allow_list_warns() {
        let listed = Exposure {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..Exposure::default()
        };
        let table: &[(&Exposure, &str, bool)] = &[
            (&Exposure::default(), "127.0.0.1:5005", false),
            (&Exposure::default(), "[::1]:5005", false),
            (&Exposure::default(), "0.0.0.0:5005", true),
            (&Exposure::default(), "[::]:5005", true),
            (&Exposure::default(), "192.0.2.2:5005", true),
            (&listed, "0.0.0.0:5005", false),
        ];
        for &(policy, addr, warns) in table {
            let warning = policy.bind_warning(addr.parse().unwrap());
            assert_eq!(warning.is_some(), warns, "{addr}: {warning:?}");
            if let Some(text) = warning {
                assert!(text.contains("--allow"), "{text}");
            }
        }
    }

    #[test]
    fn replies_to_untrusted_udp_clients_never_outgrow_the_request() {
        let policy = Exposure::default();
        // TCP and trusted peers: anything goes.
        for from in [None, Some(ip("127.0.0.1"))] {
            let mut budget = policy.reply_budget(from, 16);
            assert_eq!(budget.decide(884), ReplyDecision::Send);
            assert_eq!(budget.decide(884), ReplyDecision::Send);
        }
        // (request bytes, replies' sizes, decisions)
        let table: &[(usize, &[usize], &[ReplyDecision])] = &[
            (16, &[16], &[ReplyDecision::Send]),
            (16, &[884], &[ReplyDecision::Refuse]),
            (
                16,
                &[884, 884, 12],
                &[
                    ReplyDecision::Refuse,
                    ReplyDecision::Drop,
                    ReplyDecision::Send,
                ],
            ),
            (
                40,
                &[20, 20, 1],
                &[
                    ReplyDecision::Send,
                    ReplyDecision::Send,
                    ReplyDecision::Refuse,
                ],
            ),
            (
                40,
                &[30, 20, 10, 5],
                &[
                    ReplyDecision::Send,
                    ReplyDecision::Refuse,
                    ReplyDecision::Send,
                    ReplyDecision::Drop,
                ],
            ),
        ];
        for &(request, replies, decisions) in table {
            let mut budget = policy.reply_budget(Some(ip("198.51.100.7")), request);
            let made: Vec<ReplyDecision> = replies.iter().map(|&r| budget.decide(r)).collect();
            assert_eq!(made, decisions, "request {request}, replies {replies:?}");
        }
        // An allow-listed peer is trusted.
        let listed = Exposure {
            allow: vec!["198.51.100.0/24".parse().unwrap()],
            ..Exposure::default()
        };
        assert_eq!(
            listed
                .reply_budget(Some(ip("198.51.100.7")), 16)
                .decide(884),
            ReplyDecision::Send
        );
    }

    #[test]
    fn a_token_bucket_allows_its_rate_and_burst() {
        const S: u64 = 1_000_000_000;
        // (rate, burst, [(time ns, packets sent then)], packets allowed in each step)
        /// (time ns, packets sent then)
        type Steps<'a> = &'a [(u64, u32)];
        let table: &[(u32, u32, Steps, &[u32])] = &[
            // A full bucket takes a burst, then nothing until time refills it.
            (
                10,
                10,
                &[(0, 15), (0, 1), (S / 10, 3), (S, 20)],
                &[10, 0, 1, 9],
            ),
            // A steady client under the rate is never limited.
            (
                100,
                100,
                &[(0, 50), (S, 50), (2 * S, 99), (3 * S, 100)],
                &[50, 50, 99, 100],
            ),
            // A clock going back refills nothing and breaks nothing.
            (10, 10, &[(S, 10), (0, 5), (S, 1)], &[10, 0, 0]),
            // Refill stops at the burst however long the client was quiet.
            (10, 5, &[(0, 5), (1000 * S, 10)], &[5, 5]),
        ];
        for &(rate, burst, steps, allowed) in table {
            let mut bucket = TokenBucket::full(burst, 0);
            let got: Vec<u32> = steps
                .iter()
                .map(|&(now, sent)| {
                    (0..sent).filter(|_| bucket.take(rate, burst, now)).count() as u32
                })
                .collect();
            assert_eq!(got, allowed, "rate {rate}, burst {burst}, steps {steps:?}");
        }
    }

    #[test]
    fn the_rate_limiter_keeps_clients_apart_and_its_table_bounded() {
        let mut limiter = RateLimiter::new(3, 0);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let allowed = |limiter: &mut RateLimiter<IpAddr>, who, n| {
            (0..n).filter(|_| limiter.allow(who, 0)).count()
        };
        assert_eq!(allowed(&mut limiter, a, 5), 3);
        assert_eq!(
            allowed(&mut limiter, b, 5),
            3,
            "another client has its own bucket"
        );
        // Off.
        let mut off = RateLimiter::new(0, 0);
        assert_eq!(allowed(&mut off, a, 100_000), 100_000);
        assert_eq!(off.tracked(), 0);
        // A flood forging addresses fills the table, then shares the overflow bucket;
        // once they go quiet, their entries are forgotten for newcomers.
        let mut limiter = RateLimiter::new(1, 0);
        for i in 0..MAX_TRACKED_CLIENTS as u32 {
            assert!(limiter.allow(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), 0));
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED_CLIENTS);
        assert!(limiter.allow(a, 0), "the overflow bucket's one token");
        assert!(!limiter.allow(b, 0), "the overflow bucket is shared");
        assert!(
            limiter.allow(b, 2_000_000_000),
            "a second later, the quiet are forgotten"
        );
        assert!(limiter.tracked() <= 2);
    }
}
