//! The terminal UI of `top`: a refreshing view of the hottest keys per map.
//!
//! Modelled on bpftop: a terminal manager ([`TerminalGuard`]) that enters raw mode and the
//! alternate screen and restores both in `Drop` (so every exit path — quit, error, panic —
//! leaves a usable terminal), and one render function per pane over a plain ratatui `Buffer`
//! (so [`render_to_string`] draws the same frame without a terminal, for tests). Nothing is
//! redrawn on a tick where neither the snapshot, the keys pressed nor the terminal size changed.
//!
//! Layout, top to bottom: header (target, mode, coverage, overhead, writes, deletes, clears,
//! lost events), maps table (the selected map highlighted), the selected map's hot keys (or, in
//! the `deletes` order, its most deleted keys), its sites and last grows, and a footer with the
//! keys.
use std::io::{IsTerminal, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, HighlightSpacing, Paragraph, Row, StatefulWidget, Table, TableState,
    Widget,
};
use ratatui::Terminal;

use crate::report::symbolize::file_in_dir;
use crate::report::{KeyReport, MapReport, Report};
use crate::sampling::Mode;

/// What the UI is given each refresh: the latest report plus per-map and per-key rates.
#[derive(Debug)]
pub struct Snapshot {
    /// Maps by writes, top_keys, sites, grows, len, mode, coverage.
    pub report: Report,
    /// Writes/s per `report.maps[i]` (estimated).
    pub map_rates: Vec<f64>,
    /// Writes/s per `report.maps[i].top_keys[j]`.
    pub key_rates: Vec<Vec<f64>>,
    /// Ratio of this window's rate to the previous one (1.0 = flat).
    pub key_trends: Vec<Vec<f64>>,
    /// Estimated slowdown of the target.
    pub overhead_percent: f64,
    /// The process of each `report.maps[i]` when following every process of an executable
    /// (`top --binary`); empty for one process.
    pub map_pids: Vec<u32>,
}

/// How the selected map's hot keys are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Most writes first (the report's order).
    #[default]
    Writes,
    /// Highest writes/s first.
    Rate,
    /// Fastest rising first.
    Trend,
    /// Alphabetically by key text.
    Key,
    /// The most deleted keys (the map's `top_deletes`) instead of the hot keys.
    Deletes,
}

impl SortBy {
    /// The next order for the `s` key: writes → rate → trend → key → deletes → writes.
    pub fn next(self) -> SortBy {
        match self {
            SortBy::Writes => SortBy::Rate,
            SortBy::Rate => SortBy::Trend,
            SortBy::Trend => SortBy::Key,
            SortBy::Key => SortBy::Deletes,
            SortBy::Deletes => SortBy::Writes,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SortBy::Writes => "writes",
            SortBy::Rate => "rate",
            SortBy::Trend => "trend",
            SortBy::Key => "key",
            SortBy::Deletes => "deletes",
        }
    }
}

/// What the user chose: the map whose keys are shown, the keys' order, and whether `next` is
/// being called.
#[derive(Debug, Clone, Default)]
pub struct UiState {
    pub selected_map: usize,
    pub sort: SortBy,
    pub paused: bool,
}

/// Trend ratios above this show ↑, below [`TREND_DOWN`] show ↓.
const TREND_UP: f64 = 1.2;
const TREND_DOWN: f64 = 0.8;
/// The shortest refresh honoured (a zero refresh would spin).
const MIN_REFRESH: Duration = Duration::from_millis(10);
/// How often the loop wakes while paused (to notice a terminal restored by a panic elsewhere).
const PAUSED_WAKE: Duration = Duration::from_millis(500);
/// Most grows listed in the bottom pane.
const MAX_GROWS: usize = 32;

/// Runs the UI until the user quits (q or Esc or Ctrl-C). `next` is called every `refresh` to get
/// a new snapshot (None = no change). The terminal is restored on every exit path (Drop guard),
/// including panics and errors.
pub fn run(mut next: impl FnMut() -> Result<Option<Snapshot>>, refresh: Duration) -> Result<()> {
    let refresh = refresh.max(MIN_REFRESH);
    let mut guard = TerminalGuard::new()?;
    let mut state = UiState::default();
    let mut snapshot: Option<Snapshot> = None;
    // The selected map is followed by id: maps change places as their write counts change.
    let mut selected_id: Option<String> = None;
    let mut due = Instant::now();
    let mut dirty = true;
    loop {
        if !state.paused && Instant::now() >= due {
            if let Some(s) = next()? {
                follow_selection(&mut state, selected_id.as_deref(), &s.report);
                selected_id = s.report.maps.get(state.selected_map).map(|m| m.id.clone());
                snapshot = Some(s);
                dirty = true;
            }
            due = Instant::now() + refresh;
        }
        if !TERMINAL_ACTIVE.load(Ordering::SeqCst) {
            bail!("the terminal was restored after a panic in another thread");
        }
        if dirty {
            guard
                .terminal
                .draw(|f| {
                    let area = f.area();
                    draw(f.buffer_mut(), area, snapshot.as_ref(), &state);
                })
                .context("cannot draw the terminal UI")?;
            dirty = false;
        }
        let wait = if state.paused {
            PAUSED_WAKE
        } else {
            due.saturating_duration_since(Instant::now())
        };
        if !event::poll(wait).context("cannot read terminal events")? {
            continue;
        }
        // Handle every event already queued before drawing again (key repeat, paste).
        loop {
            match event::read().context("cannot read terminal events")? {
                Event::Key(key) => {
                    let n_maps = snapshot.as_ref().map_or(0, |s| s.report.maps.len());
                    let was_paused = state.paused;
                    match handle_key(&mut state, key, n_maps) {
                        Action::Quit => return Ok(()),
                        Action::Redraw => dirty = true,
                        Action::None => {}
                    }
                    if let Some(s) = &snapshot {
                        selected_id = s.report.maps.get(state.selected_map).map(|m| m.id.clone());
                    }
                    if was_paused && !state.paused {
                        // Resumed: fetch at once rather than a refresh later.
                        due = Instant::now();
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
            if !event::poll(Duration::ZERO).context("cannot read terminal events")? {
                break;
            }
        }
    }
}

/// Pure rendering of one frame into a ratatui Buffer of the given size, for tests.
pub fn render_to_string(s: &Snapshot, state: &UiState, width: u16, height: u16) -> String {
    let area = Rect::new(0, 0, width, height);
    let mut buf = Buffer::empty(area);
    draw(&mut buf, area, Some(s), state);
    let mut out = String::with_capacity(usize::from(width + 1) * usize::from(height));
    for y in 0..area.height {
        let start = out.len();
        for x in 0..area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.truncate(start + out[start..].trim_end().len());
        out.push('\n');
    }
    out
}

/// What a key press asks of the loop.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    None,
    Redraw,
    Quit,
}

fn handle_key(state: &mut UiState, key: KeyEvent, n_maps: usize) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    let last = n_maps.saturating_sub(1);
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => {
            state.selected_map = state.selected_map.min(last).saturating_sub(1);
            Action::Redraw
        }
        KeyCode::Down | KeyCode::Char('j') => {
            state.selected_map = (state.selected_map + 1).min(last);
            Action::Redraw
        }
        KeyCode::Home => {
            state.selected_map = 0;
            Action::Redraw
        }
        KeyCode::End => {
            state.selected_map = last;
            Action::Redraw
        }
        KeyCode::Char('s') => {
            state.sort = state.sort.next();
            Action::Redraw
        }
        KeyCode::Char('p') => {
            state.paused = !state.paused;
            Action::Redraw
        }
        _ => Action::None,
    }
}

/// Keeps the selection on the same map (by id) when a new report reorders the maps; else keeps
/// the position, within bounds.
fn follow_selection(state: &mut UiState, selected_id: Option<&str>, report: &Report) {
    if let Some(i) = selected_id.and_then(|id| report.maps.iter().position(|m| m.id == id)) {
        state.selected_map = i;
    } else {
        state.selected_map = state.selected_map.min(report.maps.len().saturating_sub(1));
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering: one function per pane, each over a Buffer.

fn draw(buf: &mut Buffer, area: Rect, snap: Option<&Snapshot>, state: &UiState) {
    let avail = area.height.saturating_sub(2);
    let selected = snap.map_or(0, |s| {
        state
            .selected_map
            .min(s.report.maps.len().saturating_sub(1))
    });
    let (maps_h, bottom_h) = match snap {
        Some(s) => pane_heights(s, selected, avail),
        None => (0, 0),
    };
    let [header, maps, keys, bottom, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(maps_h),
        Constraint::Fill(1),
        Constraint::Length(bottom_h),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_footer(buf, footer, state);
    let Some(s) = snap else {
        draw_header_waiting(buf, header, state);
        Paragraph::new("waiting for the first snapshot…")
            .block(Block::new().borders(Borders::ALL))
            .render(keys, buf);
        return;
    };
    draw_header(buf, header, s, state);
    draw_maps(buf, maps, s, selected);
    draw_keys(buf, keys, s, selected, state.sort);
    if bottom.height > 0 {
        let [sites, grows] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(bottom);
        if let Some(m) = s.report.maps.get(selected) {
            draw_sites(buf, sites, &s.report, m);
            draw_grows(buf, grows, m);
        }
    }
}

/// Heights of the maps pane and the sites/grows pane; the hot keys get the rest. On short
/// terminals the bottom pane goes first, then the maps pane.
fn pane_heights(s: &Snapshot, selected: usize, avail: u16) -> (u16, u16) {
    let want = |rows: usize| u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(3);
    let maps_h = if avail >= 8 {
        want(s.report.maps.len()).min((avail * 3 / 10).max(4))
    } else {
        0
    };
    let bottom_h = match s.report.maps.get(selected) {
        Some(m) if avail >= 16 => {
            let rows = m.sites.len().max(m.growth.len().min(MAX_GROWS)).max(1);
            want(rows).min((avail / 4).max(4))
        }
        _ => 0,
    };
    (maps_h, bottom_h)
}

fn pause_span(state: &UiState) -> Option<Span<'static>> {
    state.paused.then(|| {
        Span::styled(
            " PAUSED ",
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        )
    })
}

fn draw_header_waiting(buf: &mut Buffer, area: Rect, state: &UiState) {
    let mut spans: Vec<Span> = pause_span(state).into_iter().collect();
    spans.push(Span::raw(" ebpf-map-trace top"));
    Line::from(spans).render(area, buf);
}

fn draw_header(buf: &mut Buffer, area: Rect, s: &Snapshot, state: &UiState) {
    let r = &s.report;
    let t = &r.target;
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let binary = t.binary.rsplit('/').next().unwrap_or(&t.binary);
    let impl_name = t.map_impl.to_string();
    let mut spans: Vec<Span> = pause_span(state).into_iter().collect();
    let who = if s.map_pids.is_empty() {
        [Span::raw(" pid "), Span::styled(t.pid.to_string(), bold)]
    } else {
        let mut pids = s.map_pids.clone();
        pids.sort_unstable();
        pids.dedup();
        [
            Span::raw(" "),
            Span::styled(format!("{} processes", pids.len()), bold),
        ]
    };
    spans.extend(who);
    spans.extend([
        Span::raw(" "),
        Span::styled(sanitize(binary), bold),
        Span::raw(format!(
            "  {} {impl_name}  {} mode  coverage {:.1}%{}  overhead ~{:.1}%  {} writes{}  ",
            t.go_version,
            r.mode,
            100.0 * r.coverage,
            r.estimated_by
                .map(|c| format!(" by {}", c.describe()))
                .unwrap_or_default(),
            s.overhead_percent,
            r.writes_observed,
            // Budget mode: the tables show estimates; the header what the windows saw.
            if r.mode == Mode::Budget { " seen" } else { "" }
        )),
    ]);
    if r.deletes_observed + r.clears_observed > 0 {
        spans.push(Span::raw(format!(
            "{} deletes  {} clears  ",
            r.deletes_observed, r.clears_observed
        )));
    }
    let lost_style = if r.lost_events > 0 {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    spans.push(Span::styled(format!("{} lost", r.lost_events), lost_style));
    if r.read_failures > 0 {
        spans.push(Span::raw(format!("  {} unreadable", r.read_failures)));
    }
    Line::from(spans).render(area, buf);
}

fn draw_footer(buf: &mut Buffer, area: Rect, state: &UiState) {
    let key = Style::new().add_modifier(Modifier::BOLD);
    let current = Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
    let mut spans = vec![
        Span::styled("q", key),
        Span::raw(" quit  "),
        Span::styled("↑/↓", key),
        Span::raw(" select map  "),
        Span::styled("s", key),
        Span::raw(" sort ("),
    ];
    for (i, sort) in [
        SortBy::Writes,
        SortBy::Rate,
        SortBy::Trend,
        SortBy::Key,
        SortBy::Deletes,
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            spans.push(Span::raw("/"));
        }
        let style = if sort == state.sort {
            current
        } else {
            Style::new()
        };
        spans.push(Span::styled(sort.name(), style));
    }
    spans.extend([
        Span::raw(")  "),
        Span::styled("p", key),
        Span::raw(" pause  "),
    ]);
    Line::from(spans)
        .style(Style::new().add_modifier(Modifier::DIM))
        .render(area, buf);
}

const HIGHLIGHT_SYMBOL: &str = "▶ ";

fn draw_maps(buf: &mut Buffer, area: Rect, s: &Snapshot, selected: usize) {
    if area.is_empty() {
        return;
    }
    let r = &s.report;
    let total: u64 = r.maps.iter().map(|m| m.writes).sum();
    let block = Block::new()
        .borders(Borders::ALL)
        .title(format!(" maps ({}) ", r.maps.len()));
    let inner = block.inner(area);
    // Narrow terminals keep type, writes/s and share.
    let keep: &[usize] = if inner.width >= 82 {
        &[0, 1, 2, 3, 4, 5, 6, 7]
    } else {
        &[0, 2, 5]
    };
    let widths = pick(
        keep,
        [
            Constraint::Fill(1),
            // With pids: "PID 0x…" (pid up to 7 digits).
            Constraint::Length(if s.map_pids.is_empty() { 16 } else { 24 }),
            Constraint::Length(9),
            Constraint::Length(12),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(6),
        ],
    );
    let type_w = table_widths(inner.width, HIGHLIGHT_SYMBOL, &widths)[0];
    // Only the rows that can be visible are formatted.
    let visible = usize::from(inner.height.saturating_sub(1)).max(1);
    let first = (selected + 1).saturating_sub(visible);
    let rows = r
        .maps
        .iter()
        .enumerate()
        .skip(first)
        .take(visible)
        .map(|(i, m)| {
            let rate = s
                .map_rates
                .get(i)
                .copied()
                .or(m.writes_per_s)
                .unwrap_or(f64::NAN);
            let mut id = if m.instances > 1 {
                format!("group ×{}", m.instances)
            } else {
                m.id.clone()
            };
            if let Some(pid) = s.map_pids.get(i) {
                id = format!("{pid} {id}");
            }
            Row::new(pick(
                keep,
                [
                    Cell::from(fit(&sanitize(&m.type_name), type_w, false)),
                    Cell::from(fit(&id, if s.map_pids.is_empty() { 16 } else { 24 }, false)),
                    right(fmt_rate(rate)),
                    right(display_writes(r, m.writes, m.writes_estimated).to_string()),
                    right(display_writes(r, m.deletes, m.deletes_estimated).to_string()),
                    right(fmt_share(m.writes, total)),
                    right(m.len.map_or_else(|| "-".into(), |l| l.to_string())),
                    right(m.grows.to_string()),
                ],
            ))
        });
    let table = table(
        rows,
        widths,
        pick(
            keep,
            [
                Cell::from("type"),
                Cell::from(if s.map_pids.is_empty() {
                    "id"
                } else {
                    "pid id"
                }),
                right("writes/s".into()),
                right("writes".into()),
                right("deletes".into()),
                right("share".into()),
                right("len".into()),
                right("grows".into()),
            ],
        ),
        block,
    )
    .highlight_spacing(HighlightSpacing::Always)
    .highlight_symbol(HIGHLIGHT_SYMBOL)
    .row_highlight_style(
        Style::new()
            .add_modifier(Modifier::REVERSED)
            .add_modifier(Modifier::BOLD),
    );
    let mut ts = TableState::default()
        .with_selected((!r.maps.is_empty()).then_some(selected.saturating_sub(first)));
    StatefulWidget::render(table, area, buf, &mut ts);
}

fn draw_keys(buf: &mut Buffer, area: Rect, s: &Snapshot, selected: usize, sort: SortBy) {
    if area.is_empty() {
        return;
    }
    let r = &s.report;
    let Some(m) = r.maps.get(selected) else {
        Paragraph::new("no map writes seen yet")
            .block(Block::new().borders(Borders::ALL).title(" hot keys "))
            .render(area, buf);
        return;
    };
    if sort == SortBy::Deletes {
        draw_deleted_keys(buf, area, r, m);
        return;
    }
    let title = Line::from(vec![
        Span::raw(" hot keys of "),
        Span::styled(
            sanitize(&m.type_name),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            " {}  ({} distinct{}{}; by {}) ",
            m.id,
            m.distinct_keys,
            m.goroutines
                .map(|g| format!(", {g} goroutines"))
                .unwrap_or_default(),
            clears_of(r, m),
            sort.name()
        )),
    ]);
    // A short pane spends no rows on borders and title.
    let block = if area.height >= 6 {
        Block::new().borders(Borders::ALL).title(title)
    } else {
        Block::new()
    };
    let inner = block.inner(area);
    let budget = r.mode == Mode::Budget;
    let writes_w = if budget { 18 } else { 12 };
    // Narrow terminals keep key, share and trend; very narrow ones key and share.
    let keep: &[usize] = if inner.width >= 62 + writes_w {
        &[0, 1, 2, 3, 4, 5, 6]
    } else if inner.width >= 30 {
        &[1, 5, 6]
    } else {
        &[1, 5]
    };
    let widths = pick(
        keep,
        [
            Constraint::Length(4),
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(writes_w),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(7),
        ],
    );
    let key_col = usize::from(keep[0] == 0);
    let key_w = table_widths(inner.width, "", &widths)[key_col];
    let rates = s.key_rates.get(selected).map_or(&[][..], Vec::as_slice);
    let trends = s.key_trends.get(selected).map_or(&[][..], Vec::as_slice);
    let rate_of =
        |j: usize, k: &KeyReport| rates.get(j).copied().or(k.writes_per_s).unwrap_or(f64::NAN);
    let trend_of = |j: usize, k: &KeyReport| trends.get(j).copied().or(k.trend).unwrap_or(1.0);
    let order = key_order(m, sort, rate_of, trend_of);
    let visible = usize::from(inner.height.saturating_sub(1));
    let rows = order.into_iter().take(visible).map(|j| {
        let k = &m.top_keys[j];
        let trend = trend_of(j, k);
        let writes = if budget && k.error_bound > 0 {
            format!("{}±{}", k.writes_estimated, k.error_bound)
        } else {
            display_writes(r, k.writes, k.writes_estimated).to_string()
        };
        let trend_style = match trend_arrow(trend) {
            '↑' => Style::new().fg(Color::Red),
            '↓' => Style::new().fg(Color::Green),
            _ => Style::new(),
        };
        Row::new(pick(
            keep,
            [
                right(format!("{}", j + 1)),
                Cell::from(fit(&sanitize(&k.key), key_w, k.truncated)),
                right(fmt_rate(rate_of(j, k))),
                right(writes),
                right(display_writes(r, k.deletes, k.deletes_estimated).to_string()),
                right(fmt_share(k.writes, m.writes)),
                Cell::from(Line::from(fmt_trend(trend)).right_aligned()).style(trend_style),
            ],
        ))
    });
    let table = table(
        rows,
        widths,
        pick(
            keep,
            [
                right("#".into()),
                Cell::from("key"),
                right("writes/s".into()),
                right("writes".into()),
                right("deletes".into()),
                right("share".into()),
                right("trend".into()),
            ],
        ),
        block,
    );
    Widget::render(table, area, buf);
}

/// `, N clears` of a map (estimated in budget mode), when it was cleared.
fn clears_of(r: &Report, m: &MapReport) -> String {
    match display_writes(r, m.clears, m.clears_estimated) {
        0 => String::new(),
        n => format!(", {n} clears"),
    }
}

/// The selected map's most deleted keys (`top_deletes`): deletes (± bound in budget mode),
/// their share of the map's deletes, and the key's writes.
fn draw_deleted_keys(buf: &mut Buffer, area: Rect, r: &Report, m: &MapReport) {
    let title = Line::from(vec![
        Span::raw(" most deleted keys of "),
        Span::styled(
            sanitize(&m.type_name),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            " {}  ({} deletes{}) ",
            m.id,
            display_writes(r, m.deletes, m.deletes_estimated),
            clears_of(r, m)
        )),
    ]);
    let block = if area.height >= 6 {
        Block::new().borders(Borders::ALL).title(title)
    } else {
        Block::new()
    };
    let inner = block.inner(area);
    let budget = r.mode == Mode::Budget;
    let widths = [
        Constraint::Length(4),
        Constraint::Fill(1),
        Constraint::Length(if budget { 18 } else { 12 }),
        Constraint::Length(6),
        Constraint::Length(12),
    ];
    let key_w = table_widths(inner.width, "", &widths)[1];
    let visible = usize::from(inner.height.saturating_sub(1));
    let rows = m
        .top_deletes
        .iter()
        .enumerate()
        .take(visible)
        .map(|(j, k)| {
            let deletes = if budget && k.error_bound > 0 {
                format!("{}±{}", k.deletes_estimated, k.error_bound)
            } else {
                display_writes(r, k.deletes, k.deletes_estimated).to_string()
            };
            Row::new([
                right(format!("{}", j + 1)),
                Cell::from(fit(&sanitize(&k.key), key_w, k.truncated)),
                right(deletes),
                right(fmt_share(k.deletes, m.deletes)),
                right(display_writes(r, k.writes, k.writes_estimated).to_string()),
            ])
        });
    let table = table(
        rows,
        widths,
        [
            right("#".into()),
            Cell::from("key"),
            right("deletes".into()),
            right("share".into()),
            right("writes".into()),
        ],
        block,
    );
    Widget::render(table, area, buf);
}

fn draw_sites(buf: &mut Buffer, area: Rect, r: &Report, m: &MapReport) {
    if area.is_empty() {
        return;
    }
    let block = Block::new()
        .borders(Borders::ALL)
        .title(format!(" sites ({}) ", m.sites.len()));
    let inner = block.inner(area);
    // The deletes column only for a map that has deletes or clears (the site text needs room).
    let keep: &[usize] = if m.deletes + m.clears > 0 {
        &[0, 1, 2, 3]
    } else {
        &[0, 1, 3]
    };
    let widths = pick(
        keep,
        [
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Length(11),
            Constraint::Fill(1),
        ],
    );
    let site_w = *table_widths(inner.width, "", &widths).last().unwrap_or(&0);
    let visible = usize::from(inner.height.saturating_sub(1));
    let rows = m.sites.iter().take(visible).map(|site| {
        let text = format!(
            "{}  {}:{}",
            sanitize(&site.function),
            file_in_dir(&site.file),
            site.line
        );
        // Clears are few: they join the deletes column (`+N clr`). Estimates in budget mode,
        // as the writes.
        let deletes = display_writes(r, site.deletes, site.deletes_estimated);
        let removals = match site.clears {
            0 => deletes.to_string(),
            c => format!(
                "{deletes}+{}clr",
                display_writes(r, c, site.clears_estimated)
            ),
        };
        Row::new(pick(
            keep,
            [
                right(display_writes(r, site.writes, site.writes_estimated).to_string()),
                right(fmt_share(site.writes, m.writes)),
                right(removals),
                Cell::from(fit(&text, site_w, false)),
            ],
        ))
    });
    let table = table(
        rows,
        widths,
        pick(
            keep,
            [
                right("writes".into()),
                right("share".into()),
                right("deletes".into()),
                "site".into(),
            ],
        ),
        block,
    );
    Widget::render(table, area, buf);
}

fn draw_grows(buf: &mut Buffer, area: Rect, m: &MapReport) {
    if area.is_empty() {
        return;
    }
    let block = Block::new()
        .borders(Borders::ALL)
        .title(format!(" grows ({}), last first ", m.grows));
    let inner = block.inner(area);
    let w = usize::from(inner.width);
    let lines: Vec<Line> = if m.growth.is_empty() {
        vec![Line::from(fit("none seen", w, false))]
    } else {
        m.growth
            .iter()
            .rev()
            .take(usize::from(inner.height).min(MAX_GROWS))
            .map(|g| {
                let text = format!(
                    "{} {}→{} {} at len {} ({:.1} µs)  {} {}:{}  key {}",
                    g.growth.kind,
                    g.growth.old_capacity,
                    g.growth.new_capacity,
                    g.growth.unit,
                    g.growth.len,
                    g.growth.duration_ns as f64 / 1000.0,
                    sanitize(&g.function),
                    file_in_dir(&g.file),
                    g.line,
                    sanitize(&g.growth.key),
                );
                Line::from(fit(&text, w, false))
            })
            .collect()
    };
    Paragraph::new(lines).block(block).render(area, buf);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A table of `rows` in `block` under a bold `header`, its columns laid from the left (as
/// `table_widths` computes them).
fn table<'a>(
    rows: impl IntoIterator<Item = Row<'a>>,
    widths: impl IntoIterator<Item = Constraint>,
    header: impl IntoIterator<Item = Cell<'a>>,
    block: Block<'a>,
) -> Table<'a> {
    Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(block)
        .flex(Flex::Start)
}

/// The widths a `Table` (flex Start, spacing 1) gives its columns inside `width` columns.
fn table_widths(width: u16, highlight: &str, constraints: &[Constraint]) -> Vec<usize> {
    let sel = u16::try_from(Span::raw(highlight).width()).unwrap_or(u16::MAX);
    let [_, cols] = Layout::horizontal([Constraint::Length(sel), Constraint::Fill(0)])
        .areas(Rect::new(0, 0, width, 1));
    Layout::horizontal(constraints.iter().copied())
        .flex(Flex::Start)
        .spacing(1)
        .split(cols)
        .iter()
        .map(|r| usize::from(r.width))
        .collect()
}

/// The columns `keep` (ascending indices) of a full row.
fn pick<T, const N: usize>(keep: &[usize], all: [T; N]) -> Vec<T> {
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, c)| c)
        .collect()
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).right_aligned())
}

/// The count shown: the estimate in budget mode, what was seen otherwise.
fn display_writes(r: &Report, observed: u64, estimated: u64) -> u64 {
    if r.mode == Mode::Budget {
        estimated
    } else {
        observed
    }
}

/// The order of a map's top keys (indices into `top_keys`) for a sort.
fn key_order(
    m: &MapReport,
    sort: SortBy,
    rate_of: impl Fn(usize, &KeyReport) -> f64,
    trend_of: impl Fn(usize, &KeyReport) -> f64,
) -> Vec<usize> {
    let keys = &m.top_keys;
    let mut order: Vec<usize> = (0..keys.len()).collect();
    // Unknown (NaN) rates and trends sort last; ties keep the order by writes.
    let desc = |a: f64, b: f64| {
        let a = if a.is_nan() { f64::NEG_INFINITY } else { a };
        let b = if b.is_nan() { f64::NEG_INFINITY } else { b };
        b.total_cmp(&a)
    };
    match sort {
        SortBy::Writes => order.sort_by(|&a, &b| keys[b].writes.cmp(&keys[a].writes)),
        SortBy::Rate => order.sort_by(|&a, &b| desc(rate_of(a, &keys[a]), rate_of(b, &keys[b]))),
        SortBy::Trend => order.sort_by(|&a, &b| desc(trend_of(a, &keys[a]), trend_of(b, &keys[b]))),
        SortBy::Key => order.sort_by(|&a, &b| keys[a].key.cmp(&keys[b].key)),
        // Shown from `top_deletes` instead (see draw_deleted_keys).
        SortBy::Deletes => {}
    }
    order
}

fn trend_arrow(t: f64) -> char {
    if t > TREND_UP {
        '↑'
    } else if t < TREND_DOWN {
        '↓'
    } else {
        '→'
    }
}

fn fmt_trend(t: f64) -> String {
    let a = trend_arrow(t);
    if t.is_nan() {
        format!("{a}    -")
    } else if t == f64::INFINITY {
        format!("{a}  new")
    } else if t < 10.0 {
        format!("{a} {t:.2}")
    } else if t < 1000.0 {
        format!("{a} {t:.0}")
    } else {
        format!("{a} >999")
    }
}

/// A rate compactly: 950.0, 12.3k, 4.56M.
fn fmt_rate(r: f64) -> String {
    if !r.is_finite() || r < 0.0 {
        "-".into()
    } else if r < 1e3 {
        format!("{r:.1}")
    } else if r < 1e6 {
        format!("{:.1}k", r / 1e3)
    } else if r < 1e9 {
        format!("{:.2}M", r / 1e6)
    } else {
        format!("{:.2}G", r / 1e9)
    }
}

fn fmt_share(n: u64, total: u64) -> String {
    if total == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / total as f64)
    }
}

/// Control characters (a key may hold any bytes) shown escaped, as the terminal would drop or
/// obey them.
fn sanitize(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` cut to `width` terminal columns; a cut (or already truncated, `marked`) text ends in `…`.
fn fit(s: &str, width: usize, marked: bool) -> String {
    if width == 0 {
        return String::new();
    }
    let full = Span::raw(s).width();
    if !marked && full <= width {
        return s.to_string();
    }
    if marked && full < width {
        return format!("{s}…");
    }
    let mut out = String::with_capacity(s.len().min(width * 4) + 3);
    let mut used = 0;
    let mut tmp = [0u8; 4];
    for c in s.chars() {
        let w = Span::raw(&*c.encode_utf8(&mut tmp)).width();
        if used + w > width - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

// ---------------------------------------------------------------------------------------------
// The terminal manager.

/// Whether the terminal is in raw mode on the alternate screen; restoring clears it, so restoring
/// twice (panic hook, then Drop) does nothing the second time.
static TERMINAL_ACTIVE: AtomicBool = AtomicBool::new(false);

type PanicHook = Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Raw mode + alternate screen + hidden cursor for its lifetime. A panic hook restores the
/// terminal before the panic message is printed (so it is readable, and so a panic in another
/// thread that ends the process does not leave the terminal raw); `Drop` restores it on every
/// other exit path and puts the previous panic hook back.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    previous_hook: PanicHook,
}

impl TerminalGuard {
    fn new() -> Result<TerminalGuard> {
        if !std::io::stdout().is_terminal() {
            bail!("`top` needs a terminal on stdout (use `run --json FILE` for a report instead)");
        }
        if TERMINAL_ACTIVE.swap(true, Ordering::SeqCst) {
            bail!("the terminal UI is already running");
        }
        let previous_hook: PanicHook = Arc::from(std::panic::take_hook());
        let chained = previous_hook.clone();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            chained(info);
        }));
        // From here on `Drop` undoes whatever part of the setup succeeded.
        let mut guard_parts = PartialGuard {
            previous_hook: Some(previous_hook),
        };
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .context("cannot switch to the alternate screen")?;
        let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))
            .context("cannot set up the terminal")?;
        term.clear().context("cannot clear the terminal")?;
        Ok(TerminalGuard {
            terminal: term,
            previous_hook: guard_parts.previous_hook.take().expect("set above"),
        })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        put_back_hook(&self.previous_hook);
    }
}

/// Undoes a half-done `TerminalGuard::new` on its error paths.
struct PartialGuard {
    previous_hook: Option<PanicHook>,
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        if let Some(hook) = self.previous_hook.take() {
            restore_terminal();
            put_back_hook(&hook);
        }
    }
}

fn put_back_hook(hook: &PanicHook) {
    // Changing the hook while panicking would abort; ours stays then, and is harmless.
    if !std::thread::panicking() {
        let hook = hook.clone();
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| hook(info)));
    }
}

fn restore_terminal() {
    if TERMINAL_ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::internals::{Growth, GrowthKind, GrowthUnit};
    use crate::gobin::MapImpl;
    use crate::report::{DeleteReport, GrowthReport, SiteReport, Target, SCHEMA};

    fn key(text: &str, writes: u64) -> KeyReport {
        KeyReport {
            key: text.into(),
            writes,
            writes_estimated: writes,
            error_bound: 0,
            deletes: 0,
            deletes_estimated: 0,
            truncated: false,
            writes_per_s: None,
            trend: None,
        }
    }

    fn map(id: &str, type_name: &str, keys: Vec<KeyReport>) -> MapReport {
        let writes = keys.iter().map(|k| k.writes).sum();
        MapReport {
            id: id.into(),
            type_name: type_name.into(),
            key_type: "string".into(),
            instances: 1,
            writes,
            writes_estimated: writes,
            deletes: 0,
            deletes_estimated: 0,
            clears: 0,
            clears_estimated: 0,
            error_bound: 0,
            distinct_keys: keys.len(),
            untracked_key_writes: 0,
            goroutines: Some(3),
            len: Some(keys.len() as u64),
            grows: 1,
            capacity: Some(16),
            load: Some(0.5),
            memory_bytes: Some(4096),
            overflow_buckets: Some(0),
            growing: Some(false),
            growth: vec![GrowthReport {
                growth: Growth {
                    kind: GrowthKind::Grow,
                    unit: GrowthUnit::Buckets,
                    old_capacity: 8,
                    new_capacity: 16,
                    len: 52,
                    key: "session-53".into(),
                    goid: 7,
                    site: 0x48f00c,
                    duration_ns: 2500,
                    start_ns: 0,
                },
                function: "main.(*Cache).Set".into(),
                file: "/home/dev/server/cache.go".into(),
                line: 42,
            }],
            writes_per_s: None,
            sites: vec![SiteReport {
                function: "main.(*Cache).Set".into(),
                file: "/home/dev/server/cache.go".into(),
                line: 42,
                pc: "0x48f00c".into(),
                writes,
                deletes: 0,
                clears: 0,
                writes_estimated: writes,
                deletes_estimated: 0,
                clears_estimated: 0,
            }],
            top_keys: keys,
            top_deletes: Vec::new(),
            key_rates: Vec::new(),
        }
    }

    fn snapshot() -> Snapshot {
        let sessions = map(
            "0xc000104000",
            "map[string]*main.Session",
            vec![
                key("user:42", 6000),
                key("user:7", 3000),
                key("admin", 1000),
            ],
        );
        let counters = map(
            "0xc000220000",
            "map[int]uint64",
            vec![key("1001", 900), key("1002", 100)],
        );
        let maps = vec![sessions, counters];
        let writes_observed = maps.iter().map(|m| m.writes).sum();
        Snapshot {
            report: Report {
                schema: SCHEMA,
                target: Target {
                    pid: 4242,
                    binary: "/srv/bin/server".into(),
                    go_version: "go1.24.11".into(),
                    map_impl: MapImpl::Swiss,
                },
                mode: Mode::Exact,
                duration_s: 10.0,
                coverage: 1.0,
                estimated_by: None,
                writes_observed,
                deletes_observed: 0,
                clears_observed: 0,
                lost_events: 0,
                lost_growths: 0,
                read_failures: 0,
                stack_check_reentries: 0,
                grouping: String::new(),
                completeness: Default::default(),
                ended: None,
                maps,
                pids: None,
                aggregation: None,
            },
            map_rates: vec![1100.0, 100.0],
            key_rates: vec![vec![600.0, 300.0, 2000.0], vec![90.0, 10.0]],
            key_trends: vec![vec![1.0, 0.5, 3.0], vec![1.0, 1.0]],
            overhead_percent: 2.5,
            map_pids: Vec::new(),
        }
    }

    fn screen(s: &Snapshot, state: &UiState) -> String {
        render_to_string(s, state, 120, 40)
    }

    /// The screen line holding `needle`.
    fn line_with<'a>(screen: &'a str, needle: &str) -> &'a str {
        screen
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{screen}"))
    }

    #[test]
    fn fleet_snapshot_shows_each_maps_pid_and_the_process_count() {
        let mut s = snapshot();
        s.map_pids = vec![101, 202];
        let out = screen(&s, &UiState::default());
        assert!(out.contains("2 processes"), "{out}");
        assert!(!out.contains("pid 4242"), "{out}");
        assert!(
            line_with(&out, "map[int]uint64").contains("202 0xc000220000"),
            "{out}"
        );
    }

    #[test]
    fn hot_key_appears_with_its_share() {
        let out = screen(&snapshot(), &UiState::default());
        let l = line_with(&out, "user:42");
        assert!(l.contains("60.0%"), "{l}");
        assert!(l.contains("6000"), "{l}");
        assert!(l.contains("600.0"), "{l}");
        // The header, the map table and the footer.
        assert!(out.contains("pid 4242"), "{out}");
        assert!(out.contains("server"), "{out}");
        assert!(out.contains("coverage 100.0%"), "{out}");
        assert!(out.contains("overhead ~2.5%"), "{out}");
        assert!(line_with(&out, "map[int]uint64").contains("9.1%"));
        assert!(
            out.contains("q quit  ↑/↓ select map  s sort (writes/rate/trend/key/deletes)  p pause")
        );
        // Sites and grows of the selected map.
        assert!(line_with(&out, "main.(*Cache).Set  server/cache.go:42").contains("100.0%"));
        assert!(out.contains("grow 8→16 buckets at len 52"), "{out}");
    }

    #[test]
    fn selecting_the_second_map_shows_its_keys() {
        let s = snapshot();
        let first = screen(&s, &UiState::default());
        assert!(!first.contains("1001"), "{first}");
        let mut state = UiState::default();
        let down = KeyEvent::new(KeyCode::Down, KeyModifiers::NONE);
        assert_eq!(handle_key(&mut state, down, 2), Action::Redraw);
        assert_eq!(state.selected_map, 1);
        // Down at the last map stays there; Up goes back.
        handle_key(&mut state, down, 2);
        assert_eq!(state.selected_map, 1);
        let out = screen(&s, &state);
        assert!(line_with(&out, "1001").contains("90.0%"), "{out}");
        assert!(!out.contains("user:42"), "{out}");
        assert!(line_with(&out, "hot keys of").contains("map[int]uint64"));
        assert!(line_with(&out, "▶").contains("map[int]uint64"));
        handle_key(&mut state, KeyEvent::from(KeyCode::Char('k')), 2);
        assert_eq!(state.selected_map, 0);
    }

    #[test]
    fn sorting_by_key_orders_alphabetically() {
        let s = snapshot();
        let mut state = UiState::default();
        let pos = |out: &str, k: &str| out.find(k).unwrap_or_else(|| panic!("{k}: {out}"));
        let out = screen(&s, &state);
        assert!(pos(&out, "user:42") < pos(&out, "user:7"));
        assert!(pos(&out, "user:7") < pos(&out, "admin"));
        let sort = KeyEvent::from(KeyCode::Char('s'));
        handle_key(&mut state, sort, 2);
        assert_eq!(state.sort, SortBy::Rate);
        let out = screen(&s, &state);
        assert!(pos(&out, "admin") < pos(&out, "user:42"));
        handle_key(&mut state, sort, 2);
        assert_eq!(state.sort, SortBy::Trend);
        handle_key(&mut state, sort, 2);
        assert_eq!(state.sort, SortBy::Key);
        let out = screen(&s, &state);
        assert!(pos(&out, "admin") < pos(&out, "user:42"), "{out}");
        assert!(pos(&out, "user:42") < pos(&out, "user:7"), "{out}");
        // The rank stays the rank by writes.
        assert!(line_with(&out, "admin")
            .trim_start_matches('│')
            .trim_start()
            .starts_with('3'));
        handle_key(&mut state, sort, 2);
        assert_eq!(state.sort, SortBy::Deletes);
        handle_key(&mut state, sort, 2);
        assert_eq!(state.sort, SortBy::Writes);
    }

    #[test]
    fn deletes_show_next_to_writes_and_in_their_own_order() {
        let mut s = snapshot();
        let m = &mut s.report.maps[0];
        m.top_keys[1].deletes = 2500;
        m.deletes = 2900;
        m.clears = 3;
        m.sites[0].deletes = 2900;
        m.sites[0].deletes_estimated = 2900;
        m.sites[0].clears = 3;
        m.sites[0].clears_estimated = 3;
        m.top_deletes = vec![
            DeleteReport {
                key: "user:7".into(),
                deletes: 2500,
                deletes_estimated: 2500,
                error_bound: 0,
                writes: 3000,
                writes_estimated: 3000,
                truncated: false,
            },
            DeleteReport {
                key: "gone:1".into(),
                deletes: 400,
                deletes_estimated: 400,
                error_bound: 0,
                writes: 0,
                writes_estimated: 0,
                truncated: false,
            },
        ];
        s.report.deletes_observed = 2900;
        s.report.clears_observed = 3;
        let out = screen(&s, &UiState::default());
        assert!(
            has_words(line_with(&out, "user:7"), &["3000", "2500"]),
            "{out}"
        );
        assert!(
            has_words(line_with(&out, "map[string]*main.Session"), &["2900"]),
            "{out}"
        );
        assert!(out.contains("2900 deletes  3 clears"), "{out}");
        assert!(
            has_words(line_with(&out, "main.(*Cache).Set"), &["2900+3clr"]),
            "{out}"
        );
        assert!(
            !out.contains("gone:1"),
            "a key never written is no hot key: {out}"
        );
        let state = UiState {
            sort: SortBy::Deletes,
            ..UiState::default()
        };
        let out = screen(&s, &state);
        assert!(line_with(&out, "most deleted keys of").contains("2900 deletes, 3 clears"));
        assert!(
            has_words(line_with(&out, "gone:1"), &["2", "400", "13.8%", "0"]),
            "{out}"
        );
        let pos = |k: &str| out.find(k).unwrap_or_else(|| panic!("{k}: {out}"));
        assert!(pos("user:7") < pos("gone:1"), "{out}");
        assert!(!out.contains("admin"), "{out}");

        // Budget mode: a site's deletes and clears are estimates, as its writes are.
        s.report.mode = Mode::Budget;
        let site = &mut s.report.maps[0].sites[0];
        (
            site.writes_estimated,
            site.deletes_estimated,
            site.clears_estimated,
        ) = (58000, 29000, 30);
        let out = screen(&s, &UiState::default());
        assert!(
            has_words(
                line_with(&out, "main.(*Cache).Set"),
                &["58000", "29000+30clr"]
            ),
            "{out}"
        );
    }

    /// Whether `line` has each of `words` as a whole word (cells are separated by spaces).
    fn has_words(line: &str, words: &[&str]) -> bool {
        let cells: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '│')
            .collect();
        words.iter().all(|w| cells.contains(w))
    }

    #[test]
    fn trend_arrows() {
        let out = screen(&snapshot(), &UiState::default());
        assert!(line_with(&out, "admin").contains("↑ 3.00"));
        assert!(line_with(&out, "user:7").contains("↓ 0.50"));
        assert!(line_with(&out, "user:42").contains("→ 1.00"));
        assert_eq!(trend_arrow(f64::NAN), '→');
        assert_eq!(trend_arrow(f64::INFINITY), '↑');
    }

    #[test]
    fn paused_shows_paused() {
        let s = snapshot();
        assert!(!screen(&s, &UiState::default()).contains("PAUSED"));
        let mut state = UiState::default();
        handle_key(&mut state, KeyEvent::from(KeyCode::Char('p')), 2);
        assert!(state.paused);
        assert!(screen(&s, &state)
            .lines()
            .next()
            .unwrap()
            .contains("PAUSED"));
        // Visible even where the header is cut.
        assert!(render_to_string(&s, &state, 20, 5).contains("PAUSED"));
    }

    #[test]
    fn long_key_is_cut_with_ellipsis() {
        let mut s = snapshot();
        let long = format!("tenant/{}/end", "x".repeat(300));
        s.report.maps[0].top_keys[1].key = long.clone();
        s.report.maps[0].top_keys[2].key = "capture-limit".into();
        s.report.maps[0].top_keys[2].truncated = true;
        let out = screen(&s, &UiState::default());
        let l = line_with(&out, "tenant/xxx");
        assert!(l.contains("x…"), "{l}");
        assert!(!l.contains("/end"), "{l}");
        assert!(l.contains("50.0%") || l.contains("30.0%"), "{l}");
        // A key the probe already cut is marked even when it fits.
        assert!(out.contains("capture-limit…"), "{out}");
        // Wide characters are cut by columns, not bytes.
        assert_eq!(fit("日本語テキスト", 6, false), "日本…");
        assert_eq!(fit("abc", 3, false), "abc");
        assert_eq!(fit("abcd", 3, false), "ab…");
        assert_eq!(fit("abc", 3, true), "ab…");
        assert_eq!(fit("abc", 0, true), "");
    }

    #[test]
    fn control_characters_in_keys_are_escaped() {
        let mut s = snapshot();
        s.report.maps[0].top_keys[0].key = "a\nb\u{1b}[2J".into();
        let out = screen(&s, &UiState::default());
        assert!(out.contains(r"a\nb\u{1b}[2J"), "{out}");
    }

    #[test]
    fn tiny_and_odd_sizes_do_not_panic() {
        let s = snapshot();
        let mut empty = snapshot();
        empty.report.maps.clear();
        empty.map_rates.clear();
        empty.key_rates.clear();
        empty.key_trends.clear();
        // Rates missing or shorter than the maps and keys.
        let mut short = snapshot();
        short.map_rates.clear();
        short.key_rates = vec![vec![1.0]];
        short.key_trends.clear();
        short.report.mode = Mode::Budget;
        short.report.coverage = 0.25;
        let states = [
            UiState::default(),
            UiState {
                selected_map: 99,
                sort: SortBy::Trend,
                paused: true,
            },
        ];
        for snap in [&s, &empty, &short] {
            for st in &states {
                for w in [0, 1, 2, 3, 5, 8, 13, 20, 27, 30, 40, 55, 71, 80, 200] {
                    for h in [0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 18, 24, 60] {
                        let out = render_to_string(snap, st, w, h);
                        assert_eq!(out.lines().count(), usize::from(h));
                    }
                }
            }
        }
        assert!(render_to_string(&empty, &states[0], 80, 24).contains("no map writes seen yet"));
        // Small terminals still show the hottest key and its share.
        for (w, h) in [(20, 5), (40, 8), (60, 12)] {
            let out = render_to_string(&s, &states[0], w, h);
            assert!(
                line_with(&out, "user:42").contains("60.0%"),
                "{w}x{h}:\n{out}"
            );
        }
        let budget = render_to_string(&short, &states[0], 120, 40);
        assert!(budget.contains("budget mode  coverage 25.0%"), "{budget}");
    }

    #[test]
    fn selection_follows_the_map_when_maps_reorder() {
        let mut s = snapshot();
        let mut state = UiState {
            selected_map: 1,
            ..Default::default()
        };
        s.report.maps.swap(0, 1);
        follow_selection(&mut state, Some("0xc000220000"), &s.report);
        assert_eq!(state.selected_map, 0);
        s.report.maps.truncate(1);
        state.selected_map = 5;
        follow_selection(&mut state, Some("gone"), &s.report);
        assert_eq!(state.selected_map, 0);
    }

    #[test]
    fn quit_keys() {
        let mut st = UiState::default();
        for k in [
            KeyEvent::from(KeyCode::Char('q')),
            KeyEvent::from(KeyCode::Esc),
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
        ] {
            assert_eq!(handle_key(&mut st, k, 0), Action::Quit);
        }
        assert_eq!(
            handle_key(&mut st, KeyEvent::from(KeyCode::Char('c')), 0),
            Action::None
        );
        // With no maps, moving does not underflow.
        handle_key(&mut st, KeyEvent::from(KeyCode::Up), 0);
        handle_key(&mut st, KeyEvent::from(KeyCode::Down), 0);
        assert_eq!(st.selected_map, 0);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_rate(950.0), "950.0");
        assert_eq!(fmt_rate(12_345.0), "12.3k");
        assert_eq!(fmt_rate(4_560_000.0), "4.56M");
        assert_eq!(fmt_rate(f64::NAN), "-");
        assert_eq!(fmt_share(1, 0), "-");
    }
}
