//! `lock_timeline.svg` of `runner KERNEL profile`: one lane per CPU, time
//! on the x axis, a bar for each wait for the global lock (wait_start to
//! acquired) and another colour for each hold (acquired to released), so
//! convoys show as staircases of waits.
use plotters::prelude::*;

use super::{
    plot::{SIZE, error_text},
    records::LockTrace,
};

/// Colour of waiting for the lock.
pub const WAIT: RGBColor = RGBColor(214, 39, 40);
/// Colour of holding the lock.
pub const HOLD: RGBColor = RGBColor(31, 119, 180);

/// The timeline of `traces`; `hz` turns timestamps into µs (with no
/// frequency the axis stays in timestamp ticks).
pub fn timeline(traces: &[LockTrace], hz: Option<f64>, title: &str) -> Result<String, String> {
    let (scale, x_desc) = match hz.filter(|hz| *hz > 0.0) {
        Some(hz) => (1e6 / hz, "time since the start barrier (µs)"),
        None => (1.0, "time since the start barrier (timestamp ticks)"),
    };
    let events = || traces.iter().flat_map(|t| t.events.iter());
    let start = events().map(|e| e[0]).min().unwrap_or(0) as f64 * scale;
    let end = events().map(|e| e[2]).max().unwrap_or(0) as f64 * scale;
    let end = if end > start { end } else { start + 1.0 };
    let margin = (end - start) * 0.01;
    let lanes = traces.len().max(1);
    let height = 130 + 36 * (lanes as u32 + 1);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0 + 300, height)).into_drawing_area();
        root.fill(&WHITE).map_err(error_text)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            // One lane of headroom above the last CPU for the legend.
            .build_cartesian_2d(start - margin..end + margin, -0.5..lanes as f64 + 0.5)
            .map_err(error_text)?;
        let names: Vec<String> = traces.iter().map(|t| format!("cpu {}", t.cpu)).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(lanes + 1)
            .y_label_formatter(&|y| {
                let lane = y.round();
                if (y - lane).abs() < 1e-6 && lane >= 0.0 {
                    names.get(lane as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc(x_desc)
            .draw()
            .map_err(error_text)?;
        let bars = |colour: RGBColor, from: usize, to: usize| {
            traces.iter().enumerate().flat_map(move |(lane, trace)| {
                let y = lane as f64;
                trace.events.iter().filter(move |e| e[to] > e[from]).map(move |e| {
                    Rectangle::new(
                        [(e[from] as f64 * scale, y - 0.25), (e[to] as f64 * scale, y + 0.25)],
                        colour.filled(),
                    )
                })
            })
        };
        for (name, colour, from, to) in [("wait", WAIT, 0, 1), ("hold", HOLD, 1, 2)] {
            chart.draw_series(bars(colour, from, to)).map_err(error_text)?.label(name).legend(
                move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.filled()),
            );
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
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

    #[test]
    fn lanes_waits_and_holds() {
        let traces = [
            LockTrace { cpu: 0, events: vec![[1000, 1000, 3000], [5000, 9000, 11000]] },
            LockTrace { cpu: 1, events: vec![[2000, 3000, 5000]] },
        ];
        let svg = timeline(&traces, Some(1e9), "slab xfer 2 cpus tcg").unwrap();
        assert!(svg.contains("<svg"));
        for text in ["cpu 0", "cpu 1", "wait", "hold", "slab xfer 2 cpus tcg", "(µs)"] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Two waits (one was uncontended: no bar) and three holds, plus legend marks.
        let wait_fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", WAIT.0, WAIT.1, WAIT.2);
        let hold_fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", HOLD.0, HOLD.1, HOLD.2);
        assert_eq!(svg.matches(&wait_fill).count(), 2 + 1, "{svg}");
        assert_eq!(svg.matches(&hold_fill).count(), 3 + 1);
    }

    #[test]
    fn no_events_still_draws() {
        let svg = timeline(&[], None, "empty").unwrap();
        assert!(svg.contains("<svg") && svg.contains("timestamp ticks"));
    }
}
