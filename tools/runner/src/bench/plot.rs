//! The bench's SVG plots, one per workload: `throughput_<workload>.svg`
//! (ops/s against CPUs) and `lock_wait_<workload>.svg` (share of time spent
//! waiting for the global lock against CPUs), one line per allocator through
//! the medians, whiskers from the smallest to the largest repetition.
//! plotters draws SVG text as `<text>` elements: no fonts are needed.
use plotters::prelude::*;

use super::{
    report::si,
    stats::{Row, Spread},
};

/// Plot size in pixels.
pub const SIZE: (u32, u32) = (900, 560);

/// Distinct colours for allocators, in `--alloc` order.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// A plotters error as text.
pub fn error_text<E: std::fmt::Debug>(error: E) -> String {
    format!("cannot draw the plot: {error:?}")
}

/// What one plot shows.
struct Figure<'a> {
    title: String,
    y_desc: &'a str,
    /// A row's value (median, min, max), in plot units.
    value: fn(&Row) -> Option<Spread>,
    y_label: fn(f64) -> String,
}

/// `throughput_<workload>.svg` for the rows of `workload`.
pub fn throughput(rows: &[Row], workload: &str, accel: &str) -> Result<String, String> {
    draw(
        rows,
        workload,
        &Figure {
            title: format!("{workload}: throughput (ops/s, {accel})"),
            y_desc: "operations per second",
            value: |row| row.ops_per_sec,
            y_label: si,
        },
    )
}

/// `lock_wait_<workload>.svg` for the rows of `workload`.
pub fn lock_wait(rows: &[Row], workload: &str, accel: &str) -> Result<String, String> {
    draw(
        rows,
        workload,
        &Figure {
            title: format!("{workload}: time waiting for the global lock ({accel})"),
            y_desc: "share of CPU time waiting (%)",
            value: |row| {
                row.lock_wait_share.map(|s| Spread {
                    median: s.median * 100.0,
                    min: s.min * 100.0,
                    max: s.max * 100.0,
                })
            },
            y_label: |v| format!("{v:.1}"),
        },
    )
}

fn draw(rows: &[Row], workload: &str, figure: &Figure) -> Result<String, String> {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.workload == workload).collect();
    let mut allocs: Vec<&str> = Vec::new();
    for row in &rows {
        if !allocs.contains(&row.alloc.as_str()) {
            allocs.push(&row.alloc);
        }
    }
    let max_cpus = rows.iter().map(|r| r.cpus).max().unwrap_or(1);
    let top = rows.iter().filter_map(|r| (figure.value)(r)).map(|s| s.max).fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(error_text)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&figure.title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(0_u32..max_cpus + 1, 0.0..top)
            .map_err(error_text)?;
        chart
            .configure_mesh()
            .x_desc("CPUs")
            .y_desc(figure.y_desc)
            .y_label_formatter(&|v| (figure.y_label)(*v))
            .draw()
            .map_err(error_text)?;
        for (index, alloc) in allocs.iter().enumerate() {
            let colour = PALETTE[index % PALETTE.len()];
            let points: Vec<(u32, Spread)> = rows
                .iter()
                .filter(|r| r.alloc == *alloc)
                .filter_map(|r| Some((r.cpus, (figure.value)(r)?)))
                .collect();
            chart
                .draw_series(
                    LineSeries::new(
                        points.iter().map(|(x, s)| (*x, s.median)),
                        colour.stroke_width(2),
                    )
                    .point_size(4),
                )
                .map_err(error_text)?
                .label(*alloc)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(points.iter().filter(|(_, s)| s.max > s.min).map(|(x, s)| {
                    ErrorBar::new_vertical(*x, s.min, s.median, s.max, colour.filled(), 8)
                }))
                .map_err(error_text)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(error_text)?;
        root.present().map_err(error_text)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(alloc: &str, cpus: u32, ops: f64) -> Row {
        Row {
            workload: "local".into(),
            cpus,
            alloc: alloc.into(),
            reps_ok: 2,
            reps: 2,
            ops_per_sec: Some(Spread { median: ops, min: ops * 0.9, max: ops * 1.1 }),
            cycles_per_op: Some(40.0),
            allocator_cycles_per_pair: None,
            instructions_per_alloc: None,
            instructions_per_free: None,
            locks_per_kop: Some(1.0),
            lock_wait_share: Some(Spread { median: 0.05, min: 0.05, max: 0.05 }),
            cache_hit_rate: Some(0.9),
            slab_ratio: Some(1.0),
        }
    }

    #[test]
    fn plots_name_every_allocator() {
        let mut rows = Vec::new();
        for cpus in [1, 2, 4] {
            rows.push(row("locked", cpus, 1e6 / f64::from(cpus)));
            rows.push(row("slab", cpus, 2e6 * f64::from(cpus)));
        }
        let mut failed = row("talc", 2, 0.0);
        failed.ops_per_sec = None;
        failed.lock_wait_share = None;
        rows.push(failed);
        for svg in
            [throughput(&rows, "local", "tcg").unwrap(), lock_wait(&rows, "local", "tcg").unwrap()]
        {
            assert!(svg.len() > 1000);
            assert!(svg.contains("<svg"));
            for name in ["locked", "slab", "talc", "CPUs", "local:"] {
                assert!(svg.contains(name), "{name} missing");
            }
        }
    }

    #[test]
    fn an_empty_plot_is_still_drawn() {
        let svg = throughput(&[], "xfer", "kvm").unwrap();
        assert!(svg.contains("<svg") && svg.contains("xfer: throughput"));
    }
}
