//! Draws a [`Model`] with ratatui: one pure function of the model and the frame's size.
//!
//! The layout puts what matters most where an 80×24 terminal has room for it: the header
//! (server, connection, sequencer), the workers and the metrics beside the failover
//! timeline, the level meters, then the scope and the spectrum. A taller terminal gives
//! the timeline, the metrics and the graphs more rows; a wider one, longer meters and
//! more detail per line.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Chart, Dataset, GraphType, Paragraph,
};
use ratatui::Frame;

use super::model::{Link, Meter, Model, FLOOR_DB};

/// The quietest level the meters show, in dBFS (the left end of a meter).
const METER_FLOOR_DB: f32 = -60.0;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, model: &Model) {
    let area = frame.area();
    let rest_height = area.height.saturating_sub(1);
    let top_height = (rest_height * 45 / 100).max(11);
    let [header, top, meters, graphs] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(top_height),
        Constraint::Length(4),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(model)), header);

    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let worker_rows = model.workers.len().max(2) as u16 + 2;
    let [workers, metrics] =
        Layout::vertical([Constraint::Length(worker_rows), Constraint::Min(0)]).areas(left);
    frame.render_widget(
        Paragraph::new(worker_lines(model)).block(Block::bordered().title(
            if matches!(model.link, Link::Lost { .. }) {
                " workers (last known) "
            } else {
                " workers "
            },
        )),
        workers,
    );
    frame.render_widget(
        Paragraph::new(metric_lines(
            model,
            metrics.width.saturating_sub(2) as usize,
        ))
        .block(Block::bordered().title(" metrics ")),
        metrics,
    );
    frame.render_widget(
        Paragraph::new(timeline_lines(
            model,
            right.width.saturating_sub(2) as usize,
        ))
        .block(Block::bordered().title(" failovers (newest first) ")),
        right,
    );

    let meter_width = meters.width.saturating_sub(2) as usize;
    frame.render_widget(
        Paragraph::new(vec![
            meter_line("L", &model.meters[0], model.now, meter_width),
            meter_line("R", &model.meters[1], model.now, meter_width),
        ])
        .block(Block::bordered().title(" levels (dBFS, peak hold) ")),
        meters,
    );

    let [scope, spectrum] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(graphs);
    draw_scope(frame, model, scope);
    draw_spectrum(frame, model, spectrum);
}

/// The top line: the server, whether we are connected, the sequencer, the keys.
fn header_line(model: &Model) -> Line<'static> {
    let (state, color) = match &model.link {
        Link::Connecting => ("connecting…".to_string(), Color::Yellow),
        Link::Connected => ("connected".to_string(), Color::Green),
        Link::Lost { .. } if !model.ever_connected => (
            format!("no server at {} yet: retrying every second", model.server),
            Color::Red,
        ),
        Link::Lost { reason } => (
            format!("connection lost, server gone: retrying every second ({reason})"),
            Color::Red,
        ),
    };
    let mut spans = vec![
        Span::styled("chronus ", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!("{} ", model.server)),
        Span::styled(state, Style::default().fg(color)),
    ];
    if model.link == Link::Connected {
        spans.push(Span::raw(format!("  {}", seq_text(model))));
    }
    spans.push(Span::styled(
        "  q quits",
        Style::default().fg(Color::DarkGray),
    ));
    Line::from(spans)
}

/// `bar 3.05 124 bpm ▶`: the sequencer's position as bar.sixteenth (both from 1).
fn seq_text(model: &Model) -> String {
    match model.seq {
        Some(seq) => format!(
            "bar {}.{:02} {} bpm {}",
            seq.bar,
            seq.sixteenth + 1,
            trim_number(f64::from(seq.bpm)),
            if seq.running { "running" } else { "stopped" }
        ),
        None => "sequencer: -".to_string(),
    }
}

/// A number without a trailing `.0` when it is whole (`124`, `92.5`).
fn trim_number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn worker_lines(model: &Model) -> Vec<Line<'static>> {
    if model.workers.is_empty() {
        return vec![Line::raw("(no word of the workers yet)")];
    }
    model
        .workers
        .iter()
        .map(|(slot, worker)| {
            let color = match worker.role.as_str() {
                "active" => Color::Green,
                "standby" => Color::Cyan,
                "dead" | "empty" => Color::Red,
                _ => Color::Yellow,
            };
            let pid = if worker.pid == 0 {
                "-".to_string()
            } else {
                worker.pid.to_string()
            };
            let load = worker
                .load_percent
                .map_or("-".to_string(), |l| format!("{l:.1} %"));
            Line::from(vec![
                Span::raw(format!("slot {slot} ")),
                Span::styled(format!("{:<8}", worker.role), Style::default().fg(color)),
                Span::raw(format!(" pid {pid:<7} load {load}")),
            ])
        })
        .collect()
}

/// The metrics that matter, most important first (as many as fit are shown).
fn metric_lines(model: &Model, width: usize) -> Vec<Line<'static>> {
    let count = |name: &str| {
        model
            .metric(name)
            .map_or("?".to_string(), |v| format!("{v:.0}"))
    };
    let ms = |name: &str| {
        model
            .metric(name)
            .map_or("-".to_string(), |v| format!("{v:.2} ms"))
    };
    let percent = |name: &str| {
        model
            .metric(name)
            .map_or("?".to_string(), |v| format!("{v:.1} %"))
    };
    let underruns = model.metric("underruns").unwrap_or(0.0);
    let commands = model
        .commands_per_second
        .map_or("-".to_string(), |c| format!("{c:.1}/s"));
    let spare = match model.metric("spare_ready") {
        Some(v) if v != 0.0 => "spare ready",
        Some(_) => "NO SPARE READY",
        None => "spare ?",
    };
    let mut lines = vec![
        Line::from(vec![
            Span::raw("underruns "),
            Span::styled(
                count("underruns"),
                if underruns > 0.0 {
                    Style::default().fg(Color::Red)
                } else {
                    Style::default()
                },
            ),
            Span::raw(format!("  failovers {}", count("failover_count"))),
        ]),
        Line::raw(format!(
            "latency p50 {} p99 {}",
            ms("command_latency_ms_p50"),
            ms("command_latency_ms_p99")
        )),
        Line::raw(format!(
            "depth {} blocks ({})",
            count("depth_blocks"),
            ms("control_latency_ms")
        )),
        Line::raw(format!(
            "voices {}  commands {commands}",
            count("voices_sounding")
        )),
        Line::raw(format!(
            "load {} avg, {} peak",
            percent("worker_load_percent"),
            percent("worker_load_peak_percent")
        )),
        Line::raw(format!("{spare}; last failover {}", ms("failover_ms_last"))),
        Line::raw(format!(
            "crashes {}, cold restarts {}",
            count("crash_count"),
            count("cold_restarts")
        )),
        Line::raw(format!(
            "lockstep mismatches {}",
            count("lockstep_mismatches")
        )),
        Line::raw(format!(
            "commands rejected {}, dropped {}",
            count("commands_rejected"),
            count("commands_dropped")
        )),
        Line::raw(format!("blocks played {}", count("blocks_played"))),
        Line::raw(format!(
            "pushes malformed {}, notify dropped {}",
            model.malformed,
            count("notify_dropped")
        )),
    ];
    for line in &mut lines {
        truncate_line(line, width);
    }
    lines
}

/// Cuts a line's text to `width` characters (the Paragraph would cut it too; this keeps
/// a cut line from wrapping in tests that read the buffer).
fn truncate_line(line: &mut Line<'static>, width: usize) {
    let mut left = width;
    for span in &mut line.spans {
        let chars = span.content.chars().count();
        if chars > left {
            span.content = span.content.chars().take(left).collect::<String>().into();
        }
        left = left.saturating_sub(chars);
    }
}

/// The failover timeline, newest first: time of day (UTC), the slot now played, the cause,
/// and where there is room, the frame it played from.
fn timeline_lines(model: &Model, width: usize) -> Vec<Line<'static>> {
    if model.failovers.is_empty() {
        return vec![Line::styled(
            "none yet",
            Style::default().fg(Color::DarkGray),
        )];
    }
    model
        .failovers
        .iter()
        .map(|f| {
            let mut text = format!("{} → slot {}  {}", time_of_day(f.unix), f.slot, f.cause);
            let frame = format!("  frame {}", f.frame);
            if text.chars().count() + frame.len() <= width {
                text.push_str(&frame);
            }
            let mut line = Line::from(vec![Span::styled(text, Style::default().fg(Color::Yellow))]);
            truncate_line(&mut line, width);
            line
        })
        .collect()
}

/// `HH:MM:SS` of a Unix time, in UTC.
pub fn time_of_day(unix: f64) -> String {
    let seconds = unix.max(0.0) as u64 % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// One meter: `L ████████······|····  -12.3 dB hold  -6.0`, from [`METER_FLOOR_DB`] to 0.
fn meter_line(label: &str, meter: &Meter, now: f64, width: usize) -> Line<'static> {
    let hold = meter.hold_db(now);
    let readout = format!(" {:>6.1} dB hold {:>6.1}", meter.peak_db, hold);
    let bar_width = width.saturating_sub(2 + readout.chars().count());
    let cells = |db: f32| -> usize {
        if db <= METER_FLOOR_DB {
            return 0;
        }
        let fraction = ((db - METER_FLOOR_DB) / -METER_FLOOR_DB).clamp(0.0, 1.0);
        (fraction * bar_width as f32).round() as usize
    };
    let lit = cells(meter.peak_db);
    let hold_at = if hold > METER_FLOOR_DB {
        Some(cells(hold).clamp(1, bar_width.max(1)) - 1)
    } else {
        None
    };
    let color = if meter.peak_db > -3.0 {
        Color::Red
    } else if meter.peak_db > -12.0 {
        Color::Yellow
    } else {
        Color::Green
    };
    let mut bar = String::with_capacity(bar_width * 3);
    let mut unlit = String::new();
    for i in 0..bar_width {
        if Some(i) == hold_at && i >= lit {
            unlit.push('|');
        } else if i < lit {
            bar.push('█');
        } else {
            unlit.push('·');
        }
    }
    Line::from(vec![
        Span::raw(format!("{label} ")),
        Span::styled(bar, Style::default().fg(color)),
        Span::styled(unlit, Style::default().fg(Color::DarkGray)),
        Span::raw(readout),
    ])
}

fn draw_scope(frame: &mut Frame, model: &Model, area: Rect) {
    let left: Vec<(f64, f64)> = model
        .scope
        .iter()
        .enumerate()
        .map(|(i, (l, _))| (i as f64, f64::from(*l)))
        .collect();
    let right: Vec<(f64, f64)> = model
        .scope
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (i as f64, f64::from(*r)))
        .collect();
    let length = model.scope.len().max(2) as f64 - 1.0;
    let chart = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Cyan))
            .data(&left),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Magenta))
            .data(&right),
    ])
    .block(Block::bordered().title(" scope L R "))
    .x_axis(Axis::default().bounds([0.0, length]))
    .y_axis(Axis::default().bounds([-1.0, 1.0]));
    frame.render_widget(chart, area);
}

fn draw_spectrum(frame: &mut Frame, model: &Model, area: Rect) {
    let spectrum = &model.spectrum;
    let title = if spectrum.bands_db.is_empty() {
        " spectrum ".to_string()
    } else {
        format!(
            " spectrum {}–{} Hz ",
            spectrum.low_hz.round(),
            spectrum.high_hz.round()
        )
    };
    let inner = area.width.saturating_sub(2);
    let bands = spectrum.bands_db.len().max(1) as u16;
    let bar_width = (inner / bands).max(1);
    let bars: Vec<Bar> = spectrum
        .bands_db
        .iter()
        .map(|db| {
            Bar::default()
                .value(((db - FLOOR_DB).max(0.0)).round() as u64)
                .text_value(String::new())
        })
        .collect();
    let chart = BarChart::default()
        .block(Block::bordered().title(title))
        .data(BarGroup::default().bars(&bars))
        .bar_width(bar_width)
        .bar_gap(0)
        .bar_style(Style::default().fg(Color::Green))
        .max((-FLOOR_DB) as u64);
    frame.render_widget(chart, area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::model::Stamp;
    use chronus_protocol::MetricValue;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use rosc::{OscMessage, OscType};

    fn push(addr: &str, args: Vec<OscType>) -> OscMessage {
        OscMessage {
            addr: addr.into(),
            args,
        }
    }

    /// A model as a jam leaves it: two workers, one failover, metrics twice (for the
    /// rate), levels, a spectrum with one loud band, a square-ish scope, the sequencer.
    fn jam() -> Model {
        let at = |mono: f64| Stamp {
            mono,
            unix: 1_764_565_200.0 + mono, // 05:00:00 UTC
        };
        let mut model = Model::new("127.0.0.1:5005");
        model.connected();
        model.apply_metrics(
            &[
                ("slot.0.role".into(), MetricValue::Text("active".into())),
                ("slot.0.pid".into(), MetricValue::Number(4121.0)),
                ("slot.1.role".into(), MetricValue::Text("standby".into())),
                ("slot.1.pid".into(), MetricValue::Number(4122.0)),
                ("commands_received".into(), MetricValue::Number(100.0)),
            ],
            at(0.0),
        );
        model.apply(
            &push(
                "/chronus/failover",
                vec![
                    OscType::Int(1),
                    OscType::Long(480_000),
                    OscType::String("worker died".into()),
                ],
            ),
            at(8.0),
        );
        let pairs: Vec<(&str, f64)> = vec![
            ("underruns", 0.0),
            ("failover_count", 1.0),
            ("failover_ms_last", 0.25),
            ("command_latency_ms_p50", 3.5),
            ("command_latency_ms_p99", 4.25),
            ("depth_blocks", 24.0),
            ("control_latency_ms", 32.0),
            ("voices_sounding", 4.0),
            ("commands_received", 150.0),
            ("worker_load_percent", 3.2),
            ("worker_load_peak_percent", 9.8),
            ("slot.0.load_percent", 3.1),
            ("slot.1.load_percent", 3.3),
            ("spare_ready", 1.0),
            ("crash_count", 1.0),
            ("cold_restarts", 0.0),
            ("lockstep_mismatches", 0.0),
            ("commands_rejected", 2.0),
            ("commands_dropped", 0.0),
            ("blocks_played", 7500.0),
            ("notify_dropped", 0.0),
        ];
        model.apply(
            &push(
                "/chronus/metrics",
                pairs
                    .iter()
                    .flat_map(|(n, v)| [OscType::String((*n).into()), OscType::Double(*v)])
                    .collect(),
            ),
            at(10.0),
        );
        model.apply(
            &push(
                "/chronus/levels",
                vec![
                    OscType::Float(0.5),
                    OscType::Float(0.25),
                    OscType::Float(0.1),
                    OscType::Float(0.05),
                ],
            ),
            at(10.0),
        );
        let mut spectrum = vec![OscType::Float(20.0), OscType::Float(20_000.0)];
        spectrum
            .extend((0..32).map(|i| OscType::Float(if i == 8 { -10.0 } else { -90.0 + i as f32 })));
        model.apply(&push("/chronus/spectrum", spectrum), at(10.0));
        let mut scope = vec![OscType::Int(8)];
        scope.extend((0..256).flat_map(|i| {
            let v = if (i / 32) % 2 == 0 { 0.5 } else { -0.5 };
            [OscType::Float(v), OscType::Float(v / 2.0)]
        }));
        model.apply(&push("/chronus/scope", scope), at(10.0));
        model.apply(
            &push(
                "/chronus/seq",
                vec![
                    OscType::Int(5),
                    OscType::Int(2),
                    OscType::Float(16.5),
                    OscType::Float(124.0),
                    OscType::Int(1),
                ],
            ),
            at(10.0),
        );
        model
    }

    fn render(model: &Model, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, model)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    /// The whole screen at 80×24, the least it is made for: everything important fits.
    #[test]
    fn a_jam_at_80x24_shows_workers_failovers_metrics_meters_scope_and_spectrum() {
        let expected = [
            "chronus 127.0.0.1:5005 connected  bar 5.03 124 bpm running  q quits             ",
            "┌ workers ─────────────────────────────┐┌ failovers (newest first) ────────────┐",
            "│slot 0 active   pid 4121    load 3.1 %││05:00:08 → slot 1  worker died        │",
            "│slot 1 standby  pid 4122    load 3.3 %││                                      │",
            "└──────────────────────────────────────┘│                                      │",
            "┌ metrics ─────────────────────────────┐│                                      │",
            "│underruns 0  failovers 1              ││                                      │",
            "│latency p50 3.50 ms p99 4.25 ms       ││                                      │",
            "│depth 24 blocks (32.00 ms)            ││                                      │",
            "│voices 4  commands 5.0/s              ││                                      │",
            "│load 3.2 % avg, 9.8 % peak            ││                                      │",
            "└──────────────────────────────────────┘└──────────────────────────────────────┘",
            "┌ levels (dBFS, peak hold) ────────────────────────────────────────────────────┐",
            "│L █████████████████████████████████████████████████·····   -6.0 dB hold   -6.0│",
            "│R ████████████████████████████████████··················  -20.0 dB hold  -20.0│",
            "└──────────────────────────────────────────────────────────────────────────────┘",
            "┌ scope L R ───────────────────────────┐┌ spectrum 20–20000 Hz ────────────────┐",
            "│                                      ││        ▂                             │",
            "│⠒⠒⠒⠒⢲    ⡖⠒⠒⠒⢲    ⢰⠒⠒⠒⠒⡆    ⡖⠒⠒⠒⢲     ││        █                             │",
            "│⠉⠉⠉⠉⢹    ⡏⠉⠉⠉⢹    ⢸⠉⠉⠉⠉⡇    ⡏⠉⠉⠉⢹     ││        █                             │",
            "│    ⠸⠤⠤⠤⠤⠇    ⠧⠤⠤⠤⠼    ⠸⠤⠤⠤⠤⠇   ⠸⠤⠤⠤⠤⠤││        █                             │",
            "│    ⠘⠒⠒⠒⠒⠃    ⠓⠒⠒⠒⠚    ⠘⠒⠒⠒⠒⠃   ⠘⠒⠒⠒⠒⠒││        █        ▁▁▂▂▃▃▄▄▅▅▆▆▇██      │",
            "│                                      ││  ▁▁▂▂▃▃█▄▅▅▆▆▇█████████████████      │",
            "└──────────────────────────────────────┘└──────────────────────────────────────┘",
        ];
        assert_eq!(render(&jam(), 80, 24), expected);
    }

    /// At 120×40 the same model shows more: every metric line, the failover's frame,
    /// longer meters, taller graphs.
    #[test]
    fn a_jam_at_120x40_shows_more() {
        let expected = [
            "chronus 127.0.0.1:5005 connected  bar 5.03 124 bpm running  q quits                                                     ",
            "┌ workers ─────────────────────────────────────────────────┐┌ failovers (newest first) ────────────────────────────────┐",
            "│slot 0 active   pid 4121    load 3.1 %                    ││05:00:08 → slot 1  worker died  frame 480000              │",
            "│slot 1 standby  pid 4122    load 3.3 %                    ││                                                          │",
            "└──────────────────────────────────────────────────────────┘│                                                          │",
            "┌ metrics ─────────────────────────────────────────────────┐│                                                          │",
            "│underruns 0  failovers 1                                  ││                                                          │",
            "│latency p50 3.50 ms p99 4.25 ms                           ││                                                          │",
            "│depth 24 blocks (32.00 ms)                                ││                                                          │",
            "│voices 4  commands 5.0/s                                  ││                                                          │",
            "│load 3.2 % avg, 9.8 % peak                                ││                                                          │",
            "│spare ready; last failover 0.25 ms                        ││                                                          │",
            "│crashes 1, cold restarts 0                                ││                                                          │",
            "│lockstep mismatches 0                                     ││                                                          │",
            "│commands rejected 2, dropped 0                            ││                                                          │",
            "│blocks played 7500                                        ││                                                          │",
            "│pushes malformed 0, notify dropped 0                      ││                                                          │",
            "└──────────────────────────────────────────────────────────┘└──────────────────────────────────────────────────────────┘",
            "┌ levels (dBFS, peak hold) ────────────────────────────────────────────────────────────────────────────────────────────┐",
            "│L █████████████████████████████████████████████████████████████████████████████████████·········   -6.0 dB hold   -6.0│",
            "│R ███████████████████████████████████████████████████████████████·······························  -20.0 dB hold  -20.0│",
            "└──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────┘",
            "┌ scope L R ───────────────────────────────────────────────┐┌ spectrum 20–20000 Hz ────────────────────────────────────┐",
            "│                                                          ││                                                          │",
            "│                                                          ││        ▁                                                 │",
            "│                                                          ││        █                                                 │",
            "│⣀⣀⣀⣀⣀⣀⣀       ⣀⣀⣀⣀⣀⣀⣀⡀      ⢀⣀⣀⣀⣀⣀⣀⣀       ⣀⣀⣀⣀⣀⣀⣀⡀       ││        █                                                 │",
            "│      ⢸       ⡇      ⡇      ⢸      ⢸       ⡇      ⡇       ││        █                                                 │",
            "│⣀⣀⣀⣀⣀⣀⣀       ⣀⣀⣀⣀⣀⣀⣀⡀      ⢀⣀⣀⣀⣀⣀⣀⣀       ⣀⣀⣀⣀⣀⣀⣀⡀       ││        █                                                 │",
            "│      ⢸       ⡇      ⡇      ⢸      ⢸       ⡇      ⡇       ││        █                                                 │",
            "│      ⢸       ⡇      ⡇      ⢸      ⢸       ⡇      ⡇       ││        █                                                 │",
            "│       ⡇      ⡇      ⢸      ⢸       ⡇      ⡇      ⢸       ││        █                                                 │",
            "│       ⣇⣀⣀⣀⣀⣀⣀⡇      ⢸⣀⣀⣀⣀⣀⣀⣸       ⣇⣀⣀⣀⣀⣀⣀⡇      ⢸⣀⣀⣀⣀⣀⣀⣀││        █                                                 │",
            "│       ⡇      ⡇      ⢸      ⢸       ⡇      ⡇      ⢸       ││        █                    ▁▂▄                          │",
            "│       ⣇⣀⣀⣀⣀⣀⣀⡇      ⢸⣀⣀⣀⣀⣀⣀⣸       ⣇⣀⣀⣀⣀⣀⣀⡇      ⢸⣀⣀⣀⣀⣀⣀⣀││        █               ▂▃▄▆▇███                          │",
            "│                                                          ││        █         ▁▃▄▅▇█████████                          │",
            "│                                                          ││        █   ▁▂▃▅▆███████████████                          │",
            "│                                                          ││       ▁█▄▆▇████████████████████                          │",
            "│                                                          ││ ▁▂▄▅▇██████████████████████████                          │",
            "└──────────────────────────────────────────────────────────┘└──────────────────────────────────────────────────────────┘",
        ];
        assert_eq!(render(&jam(), 120, 40), expected);
    }

    /// A lost server is said on the top line; the rest of the screen stays (the timeline
    /// is history) and the live views go quiet. The same model drawn at another size and
    /// back draws the same: the model knows nothing of sizes.
    #[test]
    fn a_lost_server_is_said_on_the_top_line() {
        let mut model = jam();
        model.lost("no connection to 127.0.0.1:5005: Connection refused");
        let small = render(&model, 80, 24);
        assert_eq!(
            small[0],
            "chronus 127.0.0.1:5005 connection lost, server gone: retrying every second (no c"
        );
        assert!(
            small[1].starts_with("┌ workers (last known) ─"),
            "{small:?}"
        );
        assert!(
            small[2].contains("05:00:08 → slot 1  worker died"),
            "{small:?}"
        );
        assert!(small[13].contains("-90.0 dB hold  -90.0"), "{small:?}");
        let _ = render(&model, 120, 40);
        assert_eq!(render(&model, 80, 24), small);
    }

    /// Under 80×24 nothing fits well, but nothing panics either (a terminal may be shrunk
    /// while the screen runs).
    #[test]
    fn a_tiny_terminal_draws_without_panicking() {
        for (width, height) in [(1, 1), (10, 3), (40, 12), (79, 23), (300, 100)] {
            let lines = render(&jam(), width, height);
            assert_eq!(lines.len(), usize::from(height));
        }
    }
}
