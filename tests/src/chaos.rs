//! The suite under chaos: a fault schedule drawn from one seed, the timeline that records
//! each fault and every probe's answer around it, and the report made from them (a text table
//! and an SVG plot a person can read at a glance).
//!
//! Nothing here starts a process: `tests/tests/suite_chaos.rs` owns the suite and inflicts
//! each [`Step`]; this module decides *what* happens *when* (pure, so a seed always gives the
//! same schedule) and turns what the probes saw into figures. A case study's own chaos test
//! can use it the same way: draw a schedule, record [`Sample`]s, print the [`Report`].

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The schedule's generator: the store's own seeded SplitMix64 (`kvstore::raft::Rng`, which
/// replays the Raft simulator), with the draws a schedule needs. The same seed, the same
/// schedule.
#[derive(Debug, Clone)]
pub struct Rng(kvstore::raft::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(kvstore::raft::Rng::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A duration in `[lo, hi]`, in whole milliseconds.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// One kind of fault the suite is put through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL a store node; restart it on its data after the hold.
    KillStoreNode,
    /// SIGSTOP the node that leads the most partitions; SIGCONT after the hold.
    PauseStoreLeader,
    /// Cut every link between a store node and its founding peers, both ways; heal after.
    IsolateStoreNode,
    /// A new store node joins; the placement moves replicas and leaders onto it.
    JoinStoreNode,
    /// Drain a store node (every replica and leader moves off it), then undrain it (they move
    /// back as the placement rebalances).
    MovePartitions,
    /// SIGKILL one dictionary replica; restart it after the hold.
    KillDictionaryReplica,
    /// SIGKILL one crawl worker process (the crawl replaces it; its leases expire).
    KillCrawlWorker,
    /// SIGKILL the log agent; restart it after the hold.
    KillLogAgent,
    /// SIGKILL one log aggregator node; restart it after the hold.
    KillAggregator,
}

impl Fault {
    /// Every fault, in a fixed order.
    pub const ALL: [Fault; 9] = [
        Fault::KillStoreNode,
        Fault::PauseStoreLeader,
        Fault::IsolateStoreNode,
        Fault::JoinStoreNode,
        Fault::MovePartitions,
        Fault::KillDictionaryReplica,
        Fault::KillCrawlWorker,
        Fault::KillLogAgent,
        Fault::KillAggregator,
    ];

    /// Its abbreviation, for the plot of a long run.
    pub fn short(self) -> &'static str {
        match self {
            Fault::KillStoreNode => "KS",
            Fault::PauseStoreLeader => "SS",
            Fault::IsolateStoreNode => "PS",
            Fault::JoinStoreNode => "JS",
            Fault::MovePartitions => "DS",
            Fault::KillDictionaryReplica => "KD",
            Fault::KillCrawlWorker => "KW",
            Fault::KillLogAgent => "KA",
            Fault::KillAggregator => "KL",
        }
    }

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillStoreNode => "kill store node",
            Fault::PauseStoreLeader => "SIGSTOP store leader",
            Fault::IsolateStoreNode => "partition store node",
            Fault::JoinStoreNode => "store node joins",
            Fault::MovePartitions => "drain+undrain node",
            Fault::KillDictionaryReplica => "kill dictionary replica",
            Fault::KillCrawlWorker => "kill crawl worker",
            Fault::KillLogAgent => "kill log agent",
            Fault::KillAggregator => "kill log aggregator",
        }
    }
}

/// One step of a schedule: at `at` (from the schedule's start) inflict `fault` on the target
/// `pick` selects (`pick % candidates`), and heal it `hold` later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
    pub hold: Duration,
    pub pick: u64,
}

/// The bounds a schedule is drawn within.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleLimits {
    /// How long a fault is held, at least and at most.
    pub hold: (Duration, Duration),
    /// The quiet time between one fault's heal and the next fault, at least and at most.
    pub gap: (Duration, Duration),
}

impl Default for ScheduleLimits {
    fn default() -> ScheduleLimits {
        ScheduleLimits {
            hold: (Duration::from_secs(2), Duration::from_secs(5)),
            gap: (Duration::from_secs(5), Duration::from_secs(9)),
        }
    }
}

/// Draws a schedule from `seed` that lasts about `total` (never less than one round).
///
/// A round is every fault once, in a seeded order, with seeded holds, gaps and targets;
/// rounds follow each other until `total` is used up. A node joins once only (in the first
/// round); partitions are moved only after it joined, so a drain has somewhere to move them;
/// and the first round kills a crawl worker in its first half, while a crawl of any size is
/// still running.
pub fn schedule(seed: u64, total: Duration, limits: ScheduleLimits) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut steps = Vec::new();
    let mut t = rng.between(limits.gap.0, limits.gap.1);
    let mut round = 0;
    while round == 0 || t < total {
        let mut faults: Vec<Fault> = Fault::ALL
            .into_iter()
            .filter(|f| round == 0 || *f != Fault::JoinStoreNode)
            .collect();
        rng.shuffle(&mut faults);
        if round == 0 {
            let pos = |faults: &[Fault], f: Fault| faults.iter().position(|&g| g == f).unwrap();
            let (join, moves) = (
                pos(&faults, Fault::JoinStoreNode),
                pos(&faults, Fault::MovePartitions),
            );
            if moves < join {
                faults.swap(join, moves);
            }
            let crawl = pos(&faults, Fault::KillCrawlWorker);
            let half = faults.len() / 2;
            if crawl >= half {
                let to = rng.below(half as u64) as usize;
                // Keep the join before the moves: swap with a step that is neither.
                let to = if matches!(faults[to], Fault::JoinStoreNode | Fault::MovePartitions) {
                    (0..half)
                        .find(|&i| {
                            !matches!(faults[i], Fault::JoinStoreNode | Fault::MovePartitions)
                        })
                        .unwrap_or(to)
                } else {
                    to
                };
                faults.swap(crawl, to);
            }
        }
        for fault in faults {
            if round > 0 && t >= total {
                break;
            }
            let hold = rng.between(limits.hold.0, limits.hold.1);
            steps.push(Step {
                at: t,
                fault,
                hold,
                pick: rng.next_u64(),
            });
            t += hold + rng.between(limits.gap.0, limits.gap.1);
        }
        round += 1;
    }
    steps
}

/// The schedule as lines a person reads before the run.
pub fn describe(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        let _ = writeln!(
            out,
            "  t={:>6.1}s  {:<24} hold {:.1}s",
            s.at.as_secs_f64(),
            s.fault.name(),
            s.hold.as_secs_f64()
        );
    }
    out
}

/// A fault as it happened: what, on which target, from when to when (seconds from the start).
#[derive(Debug, Clone)]
pub struct Span {
    pub fault: Fault,
    pub detail: String,
    pub from: f64,
    pub to: f64,
}

/// One probe's answer: which application, when it was asked (seconds from the start), how
/// long it took, and whether it succeeded. For a rate probe (the crawl), `value` is the count
/// in the second that ended at `at`.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub app: &'static str,
    pub at: f64,
    pub value: f64,
    pub ok: bool,
}

/// What a run saw: the faults and every probe's samples, shared by the probe threads.
pub struct Timeline {
    started: Instant,
    spans: Mutex<Vec<Span>>,
    samples: Mutex<Vec<Sample>>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline {
            started: Instant::now(),
            spans: Mutex::default(),
            samples: Mutex::default(),
        }
    }

    /// Seconds since the timeline started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The instant that is `at` seconds after the start.
    pub fn instant(&self, at: Duration) -> Instant {
        self.started + at
    }

    /// Records a latency probe's answer: asked at `at`, answered (or failed) now.
    pub fn latency(&self, app: &'static str, at: f64, ok: bool) {
        let ms = (self.now() - at) * 1000.0;
        self.sample(Sample {
            app,
            at,
            value: ms,
            ok,
        });
    }

    pub fn sample(&self, sample: Sample) {
        self.samples.lock().unwrap().push(sample);
    }

    /// Records a fault that started at `from` and was healed now.
    pub fn span(&self, fault: Fault, detail: String, from: f64) {
        let to = self.now();
        self.spans.lock().unwrap().push(Span {
            fault,
            detail,
            from,
            to,
        });
    }

    /// The report of everything recorded so far; `rates` are the apps whose samples are
    /// counts per second rather than latencies.
    pub fn report(&self, rates: &[&'static str]) -> Report {
        let mut samples = self.samples.lock().unwrap().clone();
        samples.sort_by(|a, b| a.at.total_cmp(&b.at));
        Report {
            spans: self.spans.lock().unwrap().clone(),
            samples,
            rates: rates.to_vec(),
            seconds: self.now(),
        }
    }
}

impl Default for Timeline {
    fn default() -> Timeline {
        Timeline::new()
    }
}

/// How long after a fault heals its window still counts it (recovery is part of the fault).
pub const AFTERMATH_SECONDS: f64 = 3.0;

/// One application's figures over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub requests: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The slowest: a stalled client asks rarely, so its wait shows here more than in p99.
    pub max_ms: f64,
    /// For a rate app: its mean count per second in the window.
    pub per_second: f64,
}

impl Figures {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// A run's faults and samples, and the figures made from them.
#[derive(Debug, Clone)]
pub struct Report {
    pub spans: Vec<Span>,
    pub samples: Vec<Sample>,
    pub rates: Vec<&'static str>,
    pub seconds: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl Report {
    /// The applications that sent samples, in the order they first did.
    pub fn apps(&self) -> Vec<&'static str> {
        let mut apps: Vec<&'static str> = Vec::new();
        for s in &self.samples {
            if !apps.contains(&s.app) {
                apps.push(s.app);
            }
        }
        apps.sort();
        apps
    }

    /// `app`'s figures over the samples asked in `[from, to)`.
    pub fn figures(&self, app: &str, from: f64, to: f64) -> Figures {
        self.figures_where(app, |at| at >= from && at < to, to - from)
    }

    /// `app`'s figures outside every fault's window: the baseline.
    pub fn quiet(&self, app: &str) -> Figures {
        let windows: Vec<(f64, f64)> = self
            .spans
            .iter()
            .map(|s| (s.from, s.to + AFTERMATH_SECONDS))
            .collect();
        let faulty: f64 = windows.iter().map(|(a, b)| b - a).sum();
        self.figures_where(
            app,
            |at| !windows.iter().any(|&(a, b)| at >= a && at < b),
            (self.seconds - faulty).max(1.0),
        )
    }

    fn figures_where(&self, app: &str, keep: impl Fn(f64) -> bool, seconds: f64) -> Figures {
        let picked: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.app == app && keep(s.at))
            .collect();
        if self.rates.contains(&app) {
            let total: f64 = picked.iter().map(|s| s.value).sum();
            return Figures {
                requests: picked.len(),
                per_second: total / seconds.max(1e-9),
                ..Figures::default()
            };
        }
        let mut ms: Vec<f64> = picked.iter().filter(|s| s.ok).map(|s| s.value).collect();
        ms.sort_by(f64::total_cmp);
        Figures {
            requests: picked.len(),
            errors: picked.iter().filter(|s| !s.ok).count(),
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
            per_second: picked.len() as f64 / seconds.max(1e-9),
        }
    }

    fn cell(&self, app: &str, f: &Figures) -> String {
        if self.rates.contains(&app) {
            format!("{:>7.1}/s", f.per_second)
        } else {
            format!(
                "{:>5} {:>4} {:>6.0} {:>6.0}",
                f.requests,
                f.errors,
                f.p99_ms.round(),
                f.max_ms.round()
            )
        }
    }

    /// The fault timeline as a text table: per fault (and for the quiet time between them)
    /// each application's requests, errors, p99 and max in ms, or its rate, over the fault and the
    /// few seconds after it healed.
    pub fn table(&self) -> String {
        let apps = self.apps();
        let mut out = String::new();
        let _ = write!(out, "{:>7} {:>6}  {:<42}", "at s", "held s", "fault");
        for app in &apps {
            if self.rates.contains(app) {
                let _ = write!(out, " | {app:>9}");
            } else {
                let _ = write!(out, " | {:>23}", format!("{app} n err p99 max"));
            }
        }
        out.push('\n');
        let _ = write!(
            out,
            "{:>7} {:>6}  {:<42}",
            "", "", "(quiet: outside every fault)"
        );
        for app in &apps {
            let _ = write!(out, " | {}", self.cell(app, &self.quiet(app)));
        }
        out.push('\n');
        for s in &self.spans {
            let label = format!("{} ({})", s.fault.name(), s.detail);
            let _ = write!(
                out,
                "{:>7.1} {:>6.1}  {:<42}",
                s.from,
                s.to - s.from,
                truncate(&label, 42)
            );
            for app in &apps {
                let f = self.figures(app, s.from, s.to + AFTERMATH_SECONDS);
                let _ = write!(out, " | {}", self.cell(app, &f));
            }
            out.push('\n');
        }
        out
    }

    /// The run as an SVG plot: time across; one lane per application with its p99 latency per
    /// second (or its rate) and its errors in red; every fault a shaded band across the lanes,
    /// labelled at the top. `subtitle` goes under the title (the seed, say).
    pub fn svg(&self, subtitle: &str) -> String {
        const LEFT: f64 = 150.0;
        const RIGHT: f64 = 20.0;
        const TOP: f64 = 120.0;
        const LANE: f64 = 110.0;
        const GAP: f64 = 24.0;
        let apps = self.apps();
        let height = TOP + apps.len() as f64 * (LANE + GAP) + 40.0;
        let seconds = self.seconds.max(1.0);
        // Wider for a long run: about two pixels a second.
        let width = (LEFT + RIGHT + seconds * 2.0).clamp(1100.0, 2400.0);
        // With many faults, each band is labelled with its short name; a legend says them.
        let short = self.spans.len() > 12;
        let x = |t: f64| LEFT + (t / seconds) * (width - LEFT - RIGHT);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height}\" \
             font-family=\"sans-serif\" font-size=\"11\">"
        );
        let _ = writeln!(
            out,
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
             <text x=\"{LEFT}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">The suite under \
             chaos: each application around each fault ({:.0} s)</text>\
             <text x=\"{LEFT}\" y=\"32\" fill=\"#555\">{} Shaded: each fault while held \
             (dark) and the {AFTERMATH_SECONDS:.0} s after it healed (light).</text>",
            seconds,
            escape(subtitle)
        );
        // Fault bands, labels staggered over four rows so they do not overlap.
        let bottom = height - 40.0;
        for (i, s) in self.spans.iter().enumerate() {
            let (a, b) = (x(s.from), x(s.to + AFTERMATH_SECONDS).min(width - RIGHT));
            let _ = writeln!(
                out,
                "<rect x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f4a261\" \
                 fill-opacity=\"0.25\"/><rect x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" \
                 height=\"{:.1}\" fill=\"#e76f51\" fill-opacity=\"0.25\"/>",
                TOP - 8.0,
                b - a,
                bottom - TOP + 8.0,
                TOP - 8.0,
                (x(s.to) - a).max(1.0),
                bottom - TOP + 8.0
            );
            let row = (i % 4) as f64;
            let _ =
                writeln!(
                out,
                "<line x1=\"{a:.1}\" y1=\"{:.1}\" x2=\"{a:.1}\" y2=\"{:.1}\" stroke=\"#e76f51\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                48.0 + row * 16.0,
                TOP - 8.0,
                a + 2.0,
                48.0 + row * 16.0 + 10.0,
                escape(if short { s.fault.short() } else { s.fault.name() })
            );
        }
        if short {
            let mut kinds: Vec<Fault> = self.spans.iter().map(|s| s.fault).collect();
            kinds.sort();
            kinds.dedup();
            let legend: Vec<String> = kinds
                .iter()
                .map(|f| format!("{} {}", f.short(), f.name()))
                .collect();
            let _ = writeln!(
                out,
                "<text x=\"{LEFT}\" y=\"{:.1}\" fill=\"#555\">{}</text>",
                height - 8.0,
                escape(&legend.join(" · "))
            );
        }
        for (lane, app) in apps.iter().enumerate() {
            let top = TOP + lane as f64 * (LANE + GAP);
            let rate = self.rates.contains(app);
            // Per second: the p99 of the latencies asked in it (or the count), and its errors.
            let n = seconds.ceil() as usize;
            let mut values = vec![Vec::new(); n];
            let mut errors = vec![0usize; n];
            for s in self.samples.iter().filter(|s| s.app == *app) {
                let i = (s.at as usize).min(n - 1);
                if s.ok {
                    values[i].push(s.value);
                } else {
                    errors[i] += 1;
                }
            }
            let series: Vec<Option<f64>> = values
                .iter_mut()
                .map(|v| {
                    if v.is_empty() {
                        None
                    } else if rate {
                        Some(v.iter().sum())
                    } else {
                        v.sort_by(f64::total_cmp);
                        Some(percentile(v, 0.99))
                    }
                })
                .collect();
            let max = series
                .iter()
                .flatten()
                .fold(1.0f64, |m, &v| m.max(v))
                .max(if rate { 1.0 } else { 10.0 });
            let y = |v: f64| top + LANE - (v / max) * LANE;
            let unit = if rate { "/s" } else { " ms" };
            let _ = writeln!(
                out,
                "<rect x=\"{LEFT}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{LANE}\" fill=\"none\" \
                 stroke=\"#999\"/><text x=\"8\" y=\"{:.1}\" font-weight=\"bold\">{}</text>\
                 <text x=\"8\" y=\"{:.1}\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" \
                 text-anchor=\"end\">{:.0}{unit}</text><text x=\"{:.1}\" y=\"{:.1}\" \
                 text-anchor=\"end\">0</text>",
                width - LEFT - RIGHT,
                top + 16.0,
                escape(app),
                top + 32.0,
                if rate { "pages fetched per second" } else { "p99 latency per second; errors in red" },
                LEFT - 4.0,
                top + 10.0,
                max,
                LEFT - 4.0,
                top + LANE
            );
            let mut path = String::new();
            let mut pen_up = true;
            for (i, v) in series.iter().enumerate() {
                match v {
                    Some(v) => {
                        let _ = write!(
                            path,
                            "{}{:.1},{:.1} ",
                            if pen_up { "M" } else { "L" },
                            x(i as f64 + 0.5),
                            y(*v)
                        );
                        pen_up = false;
                    }
                    None => pen_up = true,
                }
            }
            let _ = writeln!(
                out,
                "<path d=\"{path}\" fill=\"none\" stroke=\"#264653\" stroke-width=\"1.5\"/>"
            );
            for (i, &e) in errors.iter().enumerate() {
                if e > 0 {
                    let h = (6.0 + 4.0 * e as f64).min(LANE);
                    let _ = writeln!(
                        out,
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" \
                         fill=\"#d62828\"><title>{e} errors</title></rect>",
                        x(i as f64),
                        top + LANE - h,
                        (x(1.0) - x(0.0)).max(2.0)
                    );
                }
            }
        }
        // The time axis.
        let step = if seconds > 600.0 {
            60.0
        } else if seconds > 120.0 {
            30.0
        } else {
            10.0
        };
        let mut t = 0.0;
        while t <= seconds {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t:.0}s</text>",
                x(t),
                bottom + 16.0
            );
            t += step;
        }
        out.push_str("</svg>\n");
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_schedule_and_each_fault_comes_once_a_round() {
        let total = Duration::from_secs(100);
        let a = schedule(7, total, ScheduleLimits::default());
        assert_eq!(a, schedule(7, total, ScheduleLimits::default()));
        assert_ne!(a, schedule(8, total, ScheduleLimits::default()));
        let mut kinds: Vec<Fault> = a.iter().take(9).map(|s| s.fault).collect();
        kinds.sort();
        assert_eq!(kinds, Fault::ALL.to_vec());
    }

    #[test]
    fn the_join_comes_before_the_moves_and_the_crawl_worker_dies_early() {
        for seed in 0..500 {
            let steps = schedule(seed, Duration::from_secs(600), ScheduleLimits::default());
            let at = |f: Fault| steps.iter().position(|s| s.fault == f).unwrap();
            assert!(
                at(Fault::JoinStoreNode) < at(Fault::MovePartitions),
                "seed {seed}"
            );
            assert!(at(Fault::KillCrawlWorker) < 4, "seed {seed}");
            assert_eq!(
                steps
                    .iter()
                    .filter(|s| s.fault == Fault::JoinStoreNode)
                    .count(),
                1,
                "seed {seed}"
            );
            // Faults never overlap, and the whole run is about as long as asked.
            for w in steps.windows(2) {
                assert!(w[0].at + w[0].hold < w[1].at, "seed {seed}");
            }
            let last = steps.last().unwrap();
            assert!(last.at < Duration::from_secs(600), "seed {seed}");
            assert!(steps.len() > 30, "seed {seed}: {}", steps.len());
        }
    }

    #[test]
    fn a_short_run_is_one_round() {
        let steps = schedule(3, Duration::from_secs(1), ScheduleLimits::default());
        assert_eq!(steps.len(), Fault::ALL.len());
    }

    #[test]
    fn the_report_counts_each_fault_s_window_and_the_quiet_time() {
        let report = Report {
            spans: vec![Span {
                fault: Fault::KillStoreNode,
                detail: "node 2".into(),
                from: 10.0,
                to: 12.0,
            }],
            samples: (0..200)
                .map(|i| Sample {
                    app: "dictionary",
                    at: i as f64 * 0.1,
                    // Slow and failing while node 2 is down and just after.
                    value: if (100..150).contains(&i) { 500.0 } else { 5.0 },
                    ok: !(100..110).contains(&i),
                })
                .chain((0..20).map(|i| Sample {
                    app: "crawl",
                    at: i as f64,
                    value: if (10..15).contains(&i) { 0.0 } else { 4.0 },
                    ok: true,
                }))
                .collect(),
            rates: vec!["crawl"],
            seconds: 20.0,
        };
        let during = report.figures("dictionary", 10.0, 15.0);
        assert_eq!(during.requests, 50);
        assert_eq!(during.errors, 10);
        assert_eq!(during.p99_ms, 500.0);
        let quiet = report.quiet("dictionary");
        assert_eq!((quiet.requests, quiet.errors, quiet.p99_ms), (150, 0, 5.0));
        assert_eq!(report.figures("crawl", 10.0, 15.0).per_second, 0.0);
        assert_eq!(report.quiet("crawl").per_second, 4.0);
        let table = report.table();
        assert!(table.contains("kill store node (node 2)"), "{table}");
        assert!(table.contains("   50   10    500    500"), "{table}");
        let svg = report.svg("seed 1.");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains("kill store node") && svg.contains("10 errors"),
            "{svg}"
        );
    }

    #[test]
    fn a_long_run_s_plot_is_wider_and_labels_its_faults_short_with_a_legend() {
        let spans: Vec<Span> = (0..20)
            .map(|i| Span {
                fault: Fault::ALL[i % Fault::ALL.len()],
                detail: String::new(),
                from: i as f64 * 30.0,
                to: i as f64 * 30.0 + 3.0,
            })
            .collect();
        let report = Report {
            spans,
            samples: vec![Sample {
                app: "dictionary",
                at: 1.0,
                value: 3.0,
                ok: true,
            }],
            rates: vec![],
            seconds: 600.0,
        };
        let svg = report.svg("");
        assert!(svg.contains("width=\"1370\""), "{}", &svg[..200]);
        assert!(
            svg.contains(">KS<") && svg.contains("KS kill store node"),
            "{svg}"
        );
        assert!(!svg.contains(">kill store node<"));
    }
}
