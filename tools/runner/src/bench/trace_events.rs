//! `lock_timeline.trace.json` of `runner KERNEL profile`: the global-lock
//! timeline as Chrome trace-event JSON, which Perfetto UI (ui.perfetto.dev)
//! and chrome://tracing open. One track per CPU; each wait for the lock and
//! each hold of it is a complete ("X") slice, so Perfetto's slice table and
//! area selection give counts, sums and longest waits per CPU.
use serde_json::{Value, json};

use super::records::LockTrace;

/// The process all CPU tracks belong to (trace-event JSON needs a pid).
const PID: u32 = 1;

/// The trace-event document for `traces`. Timestamps start at the earliest
/// `wait_start` of any CPU; `hz` turns ticks into the format's µs (without a
/// frequency a tick is shown as one µs, and the document says so in its
/// metadata). Each slice keeps its raw ticks in `args`.
pub fn trace_events(traces: &[LockTrace], hz: Option<f64>, title: &str) -> Value {
    let hz = hz.filter(|hz| *hz > 0.0);
    let micros_per_tick = hz.map_or(1.0, |hz| 1e6 / hz);
    let start = traces.iter().flat_map(|t| t.events.iter()).map(|e| e[0]).min().unwrap_or(0);
    let micros = |ticks: u64| (ticks - start) as f64 * micros_per_tick;

    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": PID,
        "args": { "name": title },
    })];
    for trace in traces {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": PID, "tid": trace.cpu,
            "args": { "name": format!("cpu {}", trace.cpu) },
        }));
        events.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": PID, "tid": trace.cpu,
            "args": { "sort_index": trace.cpu },
        }));
        for (index, &[wait_start, acquired, released]) in trace.events.iter().enumerate() {
            // An uncontended acquisition has no wait slice.
            let slices = [("wait", wait_start, acquired), ("hold", acquired, released)];
            for (name, from, to) in slices.into_iter().filter(|(_, from, to)| to > from) {
                events.push(json!({
                    "name": name, "cat": "global_lock", "ph": "X",
                    "pid": PID, "tid": trace.cpu,
                    "ts": micros(from), "dur": (to - from) as f64 * micros_per_tick,
                    "args": { "acquisition": index, "from_ticks": from, "to_ticks": to },
                }));
            }
        }
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "metadata": {
            "title": title,
            "timestamp_hz": hz,
            "time_unit": if hz.is_some() { "µs since the first wait_start" }
                         else { "timestamp ticks since the first wait_start (no timestamp_hz)" },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slices(document: &Value) -> Vec<(String, u64, f64, f64)> {
        document["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X")
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["tid"].as_u64().unwrap(),
                    e["ts"].as_f64().unwrap(),
                    e["dur"].as_f64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn waits_and_holds_become_slices_on_their_cpu_track() {
        let traces = [
            LockTrace { cpu: 0, events: vec![[1000, 1000, 3000]] },
            LockTrace { cpu: 1, events: vec![[2000, 3000, 4000]] },
        ];
        let document = trace_events(&traces, Some(1e9), "t");
        // 1 GHz: 1000 ticks are 1 µs; time starts at the first wait_start.
        assert_eq!(
            slices(&document),
            [
                ("hold".to_string(), 0, 0.0, 2.0),
                ("wait".to_string(), 1, 1.0, 1.0),
                ("hold".to_string(), 1, 2.0, 1.0),
            ]
        );
        let names: Vec<&Value> = document["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| &e["args"]["name"])
            .collect();
        assert_eq!(names, ["cpu 0", "cpu 1"]);
    }

    #[test]
    fn without_a_frequency_ticks_are_the_unit_and_the_metadata_says_so() {
        let traces = [LockTrace { cpu: 2, events: vec![[10, 15, 40]] }];
        let document = trace_events(&traces, None, "t");
        assert_eq!(
            slices(&document),
            [("wait".to_string(), 2, 0.0, 5.0), ("hold".to_string(), 2, 5.0, 25.0)]
        );
        assert!(document["metadata"]["time_unit"].as_str().unwrap().contains("ticks"));
        let hold = &document["traceEvents"].as_array().unwrap().last().unwrap()["args"];
        assert_eq!((hold["from_ticks"].as_u64(), hold["to_ticks"].as_u64()), (Some(15), Some(40)));
    }
}
