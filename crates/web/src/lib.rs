//! `chronus web`: a browser UI for a running Chronus server.
//!
//! A separate process (the audio server stays free of HTTP) that talks OSC to the server
//! over TCP ([`bridge`]) and serves one page and a WebSocket on loopback ([`guard`]: a
//! per-launch token, Host and Origin checks). The page (plain ES modules and CSS in
//! `assets/`, compiled into the binary: no build step, nothing fetched from the network)
//! shows every module's parameters as sliders built from the server's own address table,
//! a playable keyboard, meters, a scope and a spectrum, the workers and a failover
//! timeline, the sequencer's patterns, the patch as a graph, and (when the server allows
//! fault injection) buttons that crash, hang or slow the active worker.
//!
//! The sound plays from the server's own output. With `--audio` the page can also listen:
//! the server's `audio` pushes (its played samples, tapped off the real-time path by the
//! notify thread) reach the page as binary WebSocket messages, and an `AudioWorklet`
//! (`assets/audio-worklet.js`) plays them from a small jitter buffer.

pub mod bridge;
pub mod guard;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use bridge::Hub;
use guard::{Guard, Proof, RequestFacts, Token};

/// What `chronus web` is asked to do.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The server's OSC address (TCP).
    pub osc: SocketAddr,
    /// Where to serve the page (loopback only; port 0 picks a free one).
    pub http: SocketAddr,
    /// Stream the server's output to the pages that ask (`--audio`).
    pub audio: bool,
}

/// The page's files, compiled in: (path, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../assets/index.html"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "/errors.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/errors.js"),
    ),
    (
        "/sliders.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/sliders.js"),
    ),
    (
        "/keyboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/keyboard.js"),
    ),
    (
        "/scopes.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/scopes.js"),
    ),
    (
        "/workers.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/workers.js"),
    ),
    (
        "/graph.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/graph.js"),
    ),
    (
        "/audio.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/audio.js"),
    ),
    (
        "/audio-worklet.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/audio-worklet.js"),
    ),
];

#[derive(Clone)]
struct AppState {
    guard: Arc<Guard>,
    hub: Arc<Hub>,
}

/// Serves the page until the process is stopped: binds `config.http` (loopback only),
/// prints the URL with its token on stdout (`chronus web: open http://…/?token=…`), and
/// bridges to the server at `config.osc`, following it through restarts.
///
/// # Errors
/// A non-loopback `--http`, an address that cannot be bound, no `/dev/urandom`.
pub fn run(config: WebConfig) -> anyhow::Result<()> {
    guard::check_bind(config.http).map_err(anyhow::Error::msg)?;
    let token = Token::generate()
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom for the token: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve on {}: {e}", config.http))?;
        let bound = listener.local_addr()?;
        let guard = Arc::new(Guard::new(bound, token));
        let (hub, from_pages) = Hub::new(config.osc, config.audio);
        let bridge_hub = hub.clone();
        std::thread::Builder::new()
            .name("osc-bridge".into())
            .spawn(move || bridge::run(config.osc, bridge_hub, from_pages))?;
        println!("chronus web: open {}", guard.url());
        println!(
            "chronus web: playing the server at {} (OSC over TCP); loopback only, the token is required",
            config.osc
        );
        axum::serve(listener, router(guard, hub)).await?;
        Ok(())
    })
}

/// The routes, every one behind the guard.
fn router(guard: Arc<Guard>, hub: Arc<Hub>) -> Router {
    let state = AppState { guard, hub };
    let mut router = Router::new().route("/ws", get(websocket));
    for (path, _, _) in ASSETS {
        router = router.route(path, get(asset));
    }
    router
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page") })
        .layer(middleware::from_fn_with_state(state.clone(), check))
        .with_state(state)
}

/// The guard as middleware: a refused request gets 403 and the reason; a request that
/// brought the token in its query gets the cookie set on its answer.
async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let facts = RequestFacts {
        host: text(header::HOST),
        origin: text(header::ORIGIN),
        query: request.uri().query(),
        cookie: text(header::COOKIE),
    };
    match state.guard.check(facts) {
        Err(refusal) => {
            tracing::warn!("{} {}: {refusal}", request.method(), request.uri().path());
            (StatusCode::FORBIDDEN, refusal.to_string()).into_response()
        }
        Ok(proof) => {
            let mut response = next.run(request).await;
            if proof == Proof::Query {
                if let Ok(value) = HeaderValue::from_str(&state.guard.set_cookie()) {
                    response.headers_mut().insert(header::SET_COOKIE, value);
                }
            }
            response
        }
    }
}

async fn asset(uri: axum::http::Uri) -> Response {
    match ASSETS.iter().find(|(path, _, _)| *path == uri.path()) {
        Some((_, kind, body)) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // Nothing from elsewhere: scripts, styles and connections stay on this origin.
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                ),
            );
            (headers, *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

async fn websocket(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| page(socket, state.hub))
}

/// One page's WebSocket: whether audio is available and the latest state first, then
/// every event (and, once the page asked with `{"t":"listen","on":true}`, every `audio`
/// push as a binary message); the page's other messages go to the bridge.
async fn page(mut socket: WebSocket, hub: Arc<Hub>) {
    let mut events = hub.events.subscribe();
    let mut audio = hub.audio.subscribe();
    let mut listening = false;
    let first = hub.latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let available = serde_json::json!({"t": "audio", "available": hub.audio_enabled});
    for text in [available.to_string(), first.to_string()] {
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            samples = audio.recv(), if listening => match samples {
                Ok(bytes) => {
                    let bytes = axum::body::Bytes::copy_from_slice(&bytes);
                    if socket.send(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                }
                // A slow page loses the oldest pushes: the page sees the jump in frames.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            event = events.recv() => match event {
                Ok(text) => {
                    if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                        return;
                    }
                }
                // A slow page misses some scope frames; it catches up with the next ones.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<serde_json::Value>(text.as_str()) {
                        Ok(value) if value.get("t").and_then(|t| t.as_str()) == Some("listen") => {
                            let on = value.get("on").and_then(|on| on.as_bool()) == Some(true);
                            listening = on && hub.audio_enabled;
                            // Start from fresh sound, not what queued while not listening.
                            audio = audio.resubscribe();
                        }
                        Ok(value) => { let _ = hub.to_server.send(value); }
                        Err(e) => tracing::warn!("a page sent what is not JSON: {e}"),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
}
