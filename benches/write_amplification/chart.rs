//! The SVG charts, written by hand: amplification per workload (grouped bars, log scale) and
//! the trade-off of the sync interval W against device bytes per day of the idle pattern.

use std::fmt::Write as _;

use crate::report::{fmt_bytes, fmt_ratio, thousands, tradeoffs, Machine, Row};
use crate::workloads::Workload;
use crate::Config;

/// Axis label of a decade: 0.1×, 1×, 10×, 1,000×.
pub(crate) fn decade(v: f64) -> String {
    if v < 1.0 {
        format!("{}×", v)
    } else {
        format!("{}×", thousands(v))
    }
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A grouped bar chart of the write amplification, log scale, written by hand.
pub(crate) fn svg(rows: &[Row], cfg: &Config, machine: &Machine) -> String {
    let p = &cfg.params;
    let daemons: Vec<&str> = cfg.daemons.iter().map(|d| d.name.as_str()).collect();
    let workloads = &cfg.workloads;
    let summary = |w: Workload, d: &str| {
        rows.iter()
            .find(|r| r.workload == w && r.daemon == d)
            .and_then(|r| r.summary(p))
    };
    // device bytes where measured (checkpoint included), else write_bytes (+ checkpoint)
    let value = |w: Workload, d: &str| summary(w, d).map(|s| s.device_ratio.unwrap_or(s.ratio));
    let with_ckpt = |w: Workload, d: &str| {
        summary(w, d).map(|s| s.device_ratio.unwrap_or((s.written + s.ckpt) / s.logical.max(1.0)))
    };
    let vals: Vec<f64> = workloads
        .iter()
        .flat_map(|w| daemons.iter().filter_map(move |d| value(*w, d)))
        .filter(|v| *v > 0.0)
        .collect();
    let vmin = vals.iter().copied().fold(f64::INFINITY, f64::min).min(1.0);
    let vmax = workloads
        .iter()
        .flat_map(|w| daemons.iter().filter_map(move |d| with_ckpt(*w, d)))
        .fold(vals.iter().copied().fold(1.0, f64::max), f64::max);
    let lo = 10f64.powf((vmin / 2.0).log10().floor());
    let mut hi = 10f64.powf(vmax.log10().ceil());
    if hi <= vmax * 1.5 {
        hi *= 10.0;
    }
    let colors = [
        "#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#c53030", "#d69e2e", "#319795", "#718096",
    ];
    let nd = daemons.len().max(1);
    let bar_w = 34.0;
    let group_w = (nd as f64 * (bar_w + 4.0) + 36.0)
        .max(112.0)
        .max(700.0 / workloads.len().max(1) as f64);
    let (left, right, top, bottom) = (78.0, 24.0, 96.0, 56.0);
    let plot_h = 340.0;
    let width = left + right + group_w * workloads.len().max(1) as f64;
    let height = top + plot_h + bottom;
    let y = |v: f64| top + plot_h * (1.0 - (v.log10() - lo.log10()) / (hi.log10() - lo.log10()));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">Write amplification: bytes at the device (else write_bytes) / bytes written by the workload</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#444">{}</text>"##,
        xml_escape(&format!(
            "median of {} repetitions, log scale; {}; {} cores, Linux {}, database on {}",
            cfg.reps, machine.date, machine.cores, machine.kernel, machine.fs
        ))
    );
    // Legend
    let mut lx = left;
    for (i, d) in daemons.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="54" width="12" height="12" fill="{}"/>"#,
            colors[i % colors.len()]
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="64">{}</text>"#,
            lx + 17.0,
            xml_escape(d)
        );
        lx += 30.0 + 7.5 * d.len() as f64;
    }
    let _ = writeln!(
        s,
        r##"<text x="{lx}" y="64" fill="#444">(pale top: what a checkpoint of the WAL left at the end adds)</text>"##
    );
    // Grid: decades with labels, minor ticks 2..9.
    let mut dec = lo;
    while dec <= hi * 1.0001 {
        let yy = y(dec);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#bbb"/>"##,
            width - right
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            yy + 4.0,
            decade(dec)
        );
        if dec < hi {
            for k in 2..10 {
                let ym = y(dec * k as f64);
                let _ = writeln!(
                    s,
                    r##"<line x1="{left}" x2="{:.1}" y1="{ym:.1}" y2="{ym:.1}" stroke="#eee"/>"##,
                    width - right
                );
            }
        }
        dec *= 10.0;
    }
    let _ = writeln!(
        s,
        r##"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle" fill="#444">write amplification (log)</text>"##,
        top + plot_h / 2.0
    );
    // Bars
    for (gi, w) in workloads.iter().enumerate() {
        let gx = left + gi as f64 * group_w;
        let inner = nd as f64 * (bar_w + 4.0) - 4.0;
        let x0 = gx + (group_w - inner) / 2.0;
        for (di, d) in daemons.iter().enumerate() {
            let x = x0 + di as f64 * (bar_w + 4.0);
            match value(*w, d) {
                Some(v) if v > 0.0 => {
                    let yt = y(v);
                    if let Some(vc) = with_ckpt(*w, d).filter(|vc| *vc > v * 1.01) {
                        let yc = y(vc);
                        let _ = writeln!(
                            s,
                            r#"<rect x="{x:.1}" y="{yc:.1}" width="{bar_w}" height="{:.1}" fill="{}" fill-opacity="0.3"><title>{}: {} with pending checkpoint = {}</title></rect>"#,
                            (yt - yc).max(0.5),
                            colors[di % colors.len()],
                            xml_escape(w.name()),
                            xml_escape(d),
                            fmt_ratio(vc, "×")
                        );
                    }
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{yt:.1}" width="{bar_w}" height="{:.1}" fill="{}"><title>{}: {} = {}</title></rect>"#,
                        (top + plot_h - yt).max(0.5),
                        colors[di % colors.len()],
                        xml_escape(w.name()),
                        xml_escape(d),
                        fmt_ratio(v, "×")
                    );
                    let ylabel = with_ckpt(*w, d).map(|vc| y(vc).min(yt)).unwrap_or(yt);
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" font-size="9.5" text-anchor="middle">{}</text>"#,
                        x + bar_w / 2.0,
                        ylabel - 4.0,
                        fmt_ratio(v, "×")
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#c53030">n/a</text>"##,
                        x + bar_w / 2.0,
                        top + plot_h - 4.0
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            gx + group_w / 2.0,
            top + plot_h + 20.0,
            xml_escape(w.name())
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        width - right,
        top + plot_h,
        top + plot_h
    );
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{:.1}" stroke="#333"/>"##,
        top + plot_h
    );
    let _ = writeln!(s, "</svg>");
    s
}


/// Bars of device bytes per day (log scale) of the idle pattern for each W, with the
/// original's figure and the 1/10 target as lines. None without idle rows.
pub(crate) fn tradeoff_svg(rows: &[Row], cfg: &Config, machine: &Machine) -> Option<String> {
    /// The original 9.1.6 on the idle pattern, device bytes/day (issue #16's measurement).
    const ORIGINAL_PER_DAY: f64 = 1_069e6;
    let t: Vec<_> = tradeoffs(rows, cfg).into_iter().filter(|x| x.device_per_day.is_some() || x.write_bytes_per_day > 0.0).collect();
    if t.is_empty() {
        return None;
    }
    let val = |x: &crate::report::TradeOff| x.device_per_day.unwrap_or(x.write_bytes_per_day).max(1.0);
    let vmax = t.iter().map(val).fold(ORIGINAL_PER_DAY, f64::max);
    let vmin = t.iter().map(val).fold(ORIGINAL_PER_DAY / 10.0, f64::min);
    let lo = 10f64.powf((vmin / 2.0).log10().floor());
    let hi = 10f64.powf((vmax * 1.5).log10().ceil());
    let (left, top, plot_h, bar_w, gap) = (90.0, 80.0, 300.0, 46.0, 30.0);
    let width = left + 40.0 + t.len() as f64 * (bar_w + gap) + 160.0;
    let height = top + plot_h + 90.0;
    let y = |v: f64| top + plot_h * (1.0 - (v.log10() - lo.log10()) / (hi.log10() - lo.log10()));
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{left}" y="22" font-size="15" font-weight="bold">Sync interval W (power-cut window) against device bytes per day, idle 3-node HA pattern</text>"#);
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#444">{}</text>"##,
        xml_escape(&format!("{} s at real pace, median of {} rep(s), log scale; {}; {} cores, Linux {}", cfg.params.idle_secs, cfg.reps, machine.date, machine.cores, machine.kernel))
    );
    let mut d = lo;
    while d <= hi * 1.0001 {
        let yy = y(d);
        let _ = writeln!(s, r##"<line x1="{left}" x2="{:.0}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/>"##, width - 150.0);
        let _ = writeln!(s, r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{}/day</text>"#, left - 6.0, yy + 4.0, xml_escape(&fmt_bytes(d)));
        d *= 10.0;
    }
    for (v, label, color) in [(ORIGINAL_PER_DAY, "original 9.1.6", "#c53030"), (ORIGINAL_PER_DAY / 10.0, "target: 1/10", "#38a169")] {
        let yy = y(v);
        let _ = writeln!(s, r#"<line x1="{left}" x2="{:.0}" y1="{yy:.1}" y2="{yy:.1}" stroke="{color}" stroke-dasharray="6,4"/>"#, width - 150.0);
        let _ = writeln!(s, r#"<text x="{:.0}" y="{:.1}" fill="{color}">{label}</text>"#, width - 146.0, yy + 4.0);
    }
    for (i, x) in t.iter().enumerate() {
        let bx = left + 20.0 + i as f64 * (bar_w + gap);
        let v = val(x);
        let yy = y(v);
        let color = if x.workload == Workload::HaIdle100k { "#805ad5" } else { "#2b6cb0" };
        let _ = writeln!(s, r#"<rect x="{bx:.1}" y="{yy:.1}" width="{bar_w}" height="{:.1}" fill="{color}"/>"#, top + plot_h - yy);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#, bx + bar_w / 2.0, yy - 4.0, xml_escape(&fmt_bytes(v)));
        let w = match x.w_ms {
            Some(ms) => format!("W={}s", thousands(ms as f64 / 1000.0)),
            None => x.daemon.clone(),
        };
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, bx + bar_w / 2.0, top + plot_h + 16.0, xml_escape(&w));
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#444">{}</text>"##, bx + bar_w / 2.0, top + plot_h + 30.0, xml_escape(if x.workload == Workload::HaIdle100k { "100k db" } else { "golden db" }));
    }
    let _ = writeln!(s, r##"<text x="{left}" y="{:.0}" fill="#444">bar: device bytes (own ext4 on a loop device, journal and metadata included) or write_bytes where no device was measured; a power cut loses at most W</text>"##, top + plot_h + 56.0);
    s.push_str("</svg>\n");
    Some(s)
}
