//! Turning runs into the published results: medians over rounds, ratios to nginx, a Markdown
//! table per scenario and an SVG chart of CPU per request and throughput.

use crate::contenders::Kind;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// One measured run of one contender.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Proxy CPU per request in microseconds (NaN for the direct path).
    pub cpu_us: f64,
    /// Proxy CPU time ÷ wall time over the run.
    pub util: f64,
    pub upstream_conns: u64,
    /// Requests the backend(s) served during the run.
    pub upstream_requests: u64,
    pub errors: u64,
    pub problems: Vec<String>,
}

/// All runs of one contender in one scenario, plus numbers measured once.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub runs: Vec<Run>,
    pub peak_rss_kib: u64,
    /// For the idle scenario: RSS with the idle connections open.
    pub idle_rss_kib: Option<u64>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

impl Row {
    pub fn med(&self, f: impl Fn(&Run) -> f64) -> f64 {
        median(self.runs.iter().map(f).collect())
    }
}

fn fmt_num(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{v:.digits$}")
    }
}

/// A latency in µs as the tables print it: `812 µs`, `2.50 ms`, or `—` when unknown.
pub fn fmt_us(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn ratio(v: f64, base: f64) -> String {
    if v.is_nan() || base.is_nan() || base == 0.0 {
        "—".into()
    } else {
        format!("{:.2}×", v / base)
    }
}

/// The Markdown section for one scenario.
pub fn markdown(title: &str, how: &str, rows: &[(Kind, Row)], latency_999: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {title}\n\n{how}\n");
    let nginx = rows
        .iter()
        .find(|(k, _)| *k == Kind::Nginx)
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    let (n_cpu, n_rps) = (nginx.med(|r| r.cpu_us), nginx.med(|r| r.rps));
    let idle = rows.iter().any(|(_, r)| r.idle_rss_kib.is_some());
    if idle {
        let _ = writeln!(out, "| contender | RSS with the idle connections | × nginx | failed requests |\n|---|---|---|---|");
        let n_idle = nginx.idle_rss_kib.map_or(f64::NAN, |v| v as f64);
        for (kind, row) in rows {
            let rss = row.idle_rss_kib.map_or(f64::NAN, |v| v as f64);
            let _ = writeln!(
                out,
                "| {} | {} MiB | {} | {} |",
                kind.name(),
                fmt_num(rss / 1024.0, 1),
                ratio(rss, n_idle),
                row.runs.iter().map(|r| r.errors).sum::<u64>()
            );
        }
        return out;
    }
    let p999 = if latency_999 { " p99.9 |" } else { "" };
    let p999_sep = if latency_999 { "---|" } else { "" };
    let _ = writeln!(
        out,
        "| contender | req/s | × nginx | p50 | p99 |{p999} proxy CPU/request | × nginx | CPU busy | peak RSS | upstream conns | errors |\n|---|---|---|---|---|{p999_sep}---|---|---|---|---|---|"
    );
    let mut notes = Vec::new();
    for (kind, row) in rows {
        let rps = row.med(|r| r.rps);
        let cpu = row.med(|r| r.cpu_us);
        let util = row.med(|r| r.util);
        let errors: u64 = row.runs.iter().map(|r| r.errors).sum();
        let conns = row.med(|r| r.upstream_conns as f64);
        let p999_cell = if latency_999 {
            format!(" {} |", fmt_us(row.med(|r| r.p999_us)))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |{p999_cell} {} | {} | {} | {} MiB | {} | {} |",
            kind.name(),
            fmt_num(rps, 0),
            ratio(rps, n_rps),
            fmt_us(row.med(|r| r.p50_us)),
            fmt_us(row.med(|r| r.p99_us)),
            if cpu.is_nan() {
                "—".into()
            } else {
                format!("{cpu:.2} µs")
            },
            ratio(cpu, n_cpu),
            if util.is_nan() {
                "—".into()
            } else {
                format!("{:.0}%", util * 100.0)
            },
            fmt_num(row.peak_rss_kib as f64 / 1024.0, 1),
            if *kind == Kind::Direct {
                "—".into()
            } else {
                fmt_num(conns, 0)
            },
            errors
        );
        if *kind != Kind::Direct && !util.is_nan() && util < 0.85 {
            notes.push(format!(
                "{} was not CPU-bound ({:.0}% busy): its CPU per request is valid, its req/s is the client's or backend's limit.",
                kind.name(),
                util * 100.0
            ));
        }
        let mut problems: Vec<&String> = row.runs.iter().flat_map(|r| r.problems.iter()).collect();
        problems.dedup();
        for p in problems {
            notes.push(format!("**INVALID** {}: {p}", kind.name()));
        }
    }
    for n in notes {
        let _ = writeln!(out, "\n- {n}");
    }
    out
}

/// A labelled number read from each run (`("req/s", |r| r.rps)`).
pub type Metric = (&'static str, fn(&Run) -> f64);

/// The line after a section's table comparing Ringway's medians with each peer's (every row
/// but Ringway's and the direct path's), one ratio per `(label, metric)`:
/// `Medians: ringway ÷ nginx: req/s 1.10×, CPU/request 0.80×; ringway ÷ haproxy: …`.
/// Empty when Ringway has no row.
pub fn ringway_ratios(rows: &[(Kind, Row)], metrics: &[Metric]) -> String {
    let Some((_, ringway)) = rows.iter().find(|(k, _)| *k == Kind::Ringway) else {
        return String::new();
    };
    let peers: Vec<String> = rows
        .iter()
        .filter(|(k, _)| !matches!(k, Kind::Ringway | Kind::Direct))
        .map(|(kind, row)| {
            let ratios: Vec<String> = metrics
                .iter()
                .map(|(label, f)| format!("{label} {}", ratio(ringway.med(f), row.med(f))))
                .collect();
            format!("ringway ÷ {}: {}", kind.name(), ratios.join(", "))
        })
        .collect();
    if peers.is_empty() {
        return String::new();
    }
    format!("\nMedians: {}.\n", peers.join("; "))
}

/// An SVG with two bar groups: proxy CPU per request, and req/s.
pub fn chart(path: &Path, title: &str, rows: &[(Kind, Row)]) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(450);
    let cpu: Vec<(Kind, f64)> = rows
        .iter()
        .map(|(k, r)| (*k, r.med(|x| x.cpu_us)))
        .collect();
    let rps: Vec<(Kind, f64)> = rows.iter().map(|(k, r)| (*k, r.med(|x| x.rps))).collect();
    bars(&left, "proxy CPU per request (µs, lower is better)", &cpu)?;
    bars(&right, "requests per second (higher is better)", &rps)?;
    root.present().map_err(|e| e.to_string())
}

fn bars(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    data: &[(Kind, f64)],
) -> Result<(), String> {
    let max = data
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| !v.is_nan())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..data.len() as f64, 0.0..max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(data.len() + 1)
        .x_label_formatter(&|x| {
            let i = (*x - 0.5).round();
            if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                data.get(i as usize)
                    .map_or(String::new(), |(k, _)| k.name().to_owned())
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    let colors = [
        RGBColor(150, 150, 150),
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
    ];
    for (i, (kind, v)) in data.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        let color = colors[*kind as usize % colors.len()];
        let x = i as f64;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, *v)],
                color.filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                if *v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                },
                (x + 0.25, *v + max * 0.02),
                ("sans-serif", 12),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The summary page: `head`, then the sections of `earlier` (a summary page written before
/// today) for scenarios `new` does not cover, in their order, then the sections of `new`.
/// Sections start with `### <scenario> `.
pub fn merge_summary(earlier: &str, head: &str, new: &str) -> String {
    let sections = |text: &str| -> Vec<String> {
        let mut out = Vec::new();
        for (i, part) in text.split("\n### ").enumerate() {
            if i == 0 && !part.starts_with("### ") {
                continue;
            }
            let body = part.strip_prefix("### ").unwrap_or(part);
            out.push(format!("### {}", body.trim_end()));
        }
        out
    };
    let name = |section: &str| -> String {
        section
            .trim_start_matches("### ")
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let fresh = sections(new);
    let fresh_names: Vec<String> = fresh.iter().map(|s| name(s)).collect();
    let mut out = head.to_owned();
    for s in sections(earlier)
        .into_iter()
        .filter(|s| !fresh_names.contains(&name(s)))
        .chain(fresh)
    {
        out.push_str(&s);
        out.push_str("\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{merge_summary, ringway_ratios, Metric, Row, Run};
    use crate::contenders::Kind;

    fn row(rps: &[f64], cpu_us: &[f64]) -> Row {
        Row {
            runs: rps
                .iter()
                .zip(cpu_us)
                .map(|(&rps, &cpu_us)| Run {
                    rps,
                    cpu_us,
                    ..Run::default()
                })
                .collect(),
            ..Row::default()
        }
    }

    #[test]
    fn ringway_is_compared_with_each_peer_on_medians() {
        let rows = [
            (Kind::Direct, row(&[200_000.0], &[f64::NAN])),
            (
                Kind::Ringway,
                row(&[90_000.0, 120_000.0, 110_000.0], &[6.0, 5.0, 7.0]),
            ),
            (Kind::Nginx, row(&[100_000.0], &[10.0])),
            (Kind::Haproxy, row(&[55_000.0], &[0.0])),
        ];
        let metrics: [Metric; 2] = [("req/s", |r| r.rps), ("CPU/request", |r| r.cpu_us)];
        assert_eq!(
            ringway_ratios(&rows, &metrics),
            "\nMedians: ringway ÷ nginx: req/s 1.10×, CPU/request 0.60×; \
             ringway ÷ haproxy: req/s 2.00×, CPU/request —.\n"
        );
        // Without Ringway (it did not start) or without peers there is nothing to compare.
        assert_eq!(ringway_ratios(&rows[2..], &metrics), "");
        assert_eq!(ringway_ratios(&rows[..2], &metrics), "");
    }

    #[test]
    fn a_later_run_replaces_only_its_own_sections() {
        let earlier = "# old head\n\nmachine\n\n### tls-ka-c64 — HTTPS\n\n| a |\n\n### resp-1m — big\n\nold numbers\n";
        let new = "### resp-1m — big\n\nnew numbers\n\n### ka-c64 — small\n\nmore\n";
        let page = merge_summary(earlier, "# new head\n\n", new);
        assert_eq!(
            page,
            "# new head\n\n### tls-ka-c64 — HTTPS\n\n| a |\n\n### resp-1m — big\n\nnew numbers\n\n### ka-c64 — small\n\nmore\n\n"
        );
        // A first run of the day is just its own sections.
        assert_eq!(merge_summary("", "# h\n\n", new).matches("### ").count(), 2);
    }
}
