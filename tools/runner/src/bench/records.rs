//! The kernel's `BENCH {json}` and `LOCKTRACE {json}` lines
//! (`docs/interface.md`), and the result records the runner makes of them:
//! one per boot, written as results.json and results.csv.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::matrix::Cell;
use crate::accel::Accel;

/// A JSON object, keys in their order.
pub type Json = Map<String, Value>;

/// BENCH keys every record has, as numbers (null when the boot failed).
pub const REQUIRED_NUMBERS: [&str; 4] =
    ["ops", "ops_per_sec", "cycles_per_op_median", "cycles_per_op_p99"];

/// BENCH keys every record has, as numbers or null: the heap's counters,
/// which a plain allocator (`alloc=lockedheap`, ...) does not keep.
pub const REQUIRED_COUNTERS: [&str; 3] = ["lock_acquisitions", "lock_wait_share", "cache_hit_rate"];

/// The first columns of results.csv (and keys of each results.json record),
/// in order; the kernel's other BENCH keys follow in the order it prints them.
pub const LEADING_KEYS: [&str; 18] = [
    "status",
    "error",
    "alloc",
    "workload",
    "cpus",
    "accel",
    "rep",
    "boot_seconds",
    ROUNDTRIP_KEY,
    "ops",
    "ops_per_sec",
    "cycles_per_op_median",
    "cycles_per_op_p99",
    "instructions_per_op_median",
    "allocator_instructions_per_pair",
    "lock_acquisitions",
    "lock_wait_share",
    "cache_hit_rate",
];

/// The accelerator's name in records: `kvm`, `tcg` or `icount`.
pub fn accel_name(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
        Accel::Icount => "icount",
    }
}

/// Shortens a serial line quoted in an error.
fn quote(line: &str) -> String {
    const MAX: usize = 160;
    match line.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    }
}

/// The JSON object after `tag ` in `line`, if the line has the tag.
fn tagged<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let at = line.find(&format!("{tag} {{"))?;
    Some(line[at + tag.len() + 1..].trim())
}

/// A `BENCH {json}` line's object: `None` for another line, an error naming
/// the line when the JSON is malformed or a required number is missing.
pub fn parse_bench(line: &str) -> Option<Result<Json, String>> {
    let text = tagged(line, "BENCH")?;
    Some(parse_bench_json(text).map_err(|why| format!("{why} in line: {}", quote(line))))
}

fn parse_bench_json(text: &str) -> Result<Json, String> {
    let object: Json =
        serde_json::from_str(text).map_err(|error| format!("malformed BENCH record ({error})"))?;
    for key in REQUIRED_NUMBERS {
        match object.get(key) {
            Some(Value::Number(_)) => {}
            Some(_) => return Err(format!("BENCH key '{key}' is not a number")),
            None => return Err(format!("BENCH record lacks '{key}'")),
        }
    }
    for key in REQUIRED_COUNTERS {
        match object.get(key) {
            Some(Value::Number(_) | Value::Null) => {}
            Some(_) => return Err(format!("BENCH key '{key}' is neither a number nor null")),
            None => return Err(format!("BENCH record lacks '{key}'")),
        }
    }
    Ok(object)
}

/// The first BENCH record of a boot's serial lines.
pub fn find_bench(lines: &[String]) -> Result<Json, String> {
    for (index, line) in lines.iter().enumerate() {
        if let Some(parsed) = parse_bench(line) {
            return parsed.map_err(|why| format!("serial line {}: {why}", index + 1));
        }
    }
    Err("no BENCH line in the serial output".into())
}

/// One CPU's `LOCKTRACE` record: its last global-lock acquisitions as
/// `[wait_start, acquired, released]` timestamps from the start barrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTrace {
    pub cpu: u32,
    pub events: Vec<[u64; 3]>,
}

/// A `LOCKTRACE {json}` line: `None` for another line, an error naming the
/// line when it is malformed or an event's times go backwards.
pub fn parse_locktrace(line: &str) -> Option<Result<LockTrace, String>> {
    let text = tagged(line, "LOCKTRACE")?;
    let parsed = serde_json::from_str::<LockTrace>(text)
        .map_err(|error| format!("malformed LOCKTRACE record ({error})"))
        .and_then(|trace| match trace.events.iter().position(|e| e[0] > e[1] || e[1] > e[2]) {
            Some(index) => {
                Err(format!("LOCKTRACE event {index} is not wait_start <= acquired <= released"))
            }
            None => Ok(trace),
        });
    Some(parsed.map_err(|why| format!("{why} in line: {}", quote(line))))
}

/// Every LOCKTRACE record of a boot's serial lines, by CPU.
pub fn find_locktraces(lines: &[String]) -> Result<Vec<LockTrace>, String> {
    let mut traces = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if let Some(parsed) = parse_locktrace(line) {
            traces.push(parsed.map_err(|why| format!("serial line {}: {why}", index + 1))?);
        }
    }
    traces.sort_by_key(|trace| trace.cpu);
    Ok(traces)
}

/// Checks that the kernel ran the cell the runner asked for (keys it left
/// out are taken from the cell).
pub fn check_cell(bench: &Json, cell: &Cell) -> Result<(), String> {
    for (key, asked) in [("alloc", &cell.alloc), ("workload", &cell.workload)] {
        if let Some(value) = bench.get(key)
            && value.as_str() != Some(asked.as_str())
        {
            return Err(format!("kernel's BENCH says {key}={value}, the runner asked for {asked}"));
        }
    }
    if let Some(value) = bench.get("cpus")
        && value.as_u64() != Some(u64::from(cell.cpus))
    {
        return Err(format!(
            "kernel's BENCH says cpus={value}, the runner booted {} CPUs",
            cell.cpus
        ));
    }
    Ok(())
}

/// A runner key among [`LEADING_KEYS`]: the host's core-to-core round trip
/// in nanoseconds, `[before, after]` the boot, 0.1 ns steps, null where
/// unmeasured.
pub const ROUNDTRIP_KEY: &str = "host_core_roundtrip_ns";

/// One boot of a bench: its cell and the kernel's BENCH record, or why there is none.
#[derive(Debug, Clone)]
pub struct Record {
    pub cell: Cell,
    pub accel: Accel,
    pub boot_seconds: f64,
    /// The host's core-to-core round trip just before and just after the
    /// boot (`core_roundtrip`), when it could be measured.
    pub host_core_roundtrip_ns: [Option<f64>; 2],
    pub bench: Result<Json, String>,
}

impl Record {
    /// Whether the boot produced a usable BENCH record.
    pub fn ok(&self) -> bool {
        self.bench.is_ok()
    }

    /// A number from the BENCH record.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.bench.as_ref().ok()?.get(key)?.as_f64()
    }

    /// The record as written to results.json: [`LEADING_KEYS`] first, then
    /// the kernel's other keys in its order.
    pub fn to_json(&self) -> Json {
        let bench = self.bench.as_ref().ok();
        let from_kernel =
            |key: &str| bench.and_then(|b| b.get(key)).cloned().unwrap_or(Value::Null);
        let mut json = Json::new();
        for key in LEADING_KEYS {
            let value = match key {
                "status" => Value::from(if self.ok() { "ok" } else { "failed" }),
                "error" => self.bench.as_ref().err().map_or(Value::Null, |e| e.clone().into()),
                "alloc" => self.cell.alloc.clone().into(),
                "workload" => self.cell.workload.clone().into(),
                "cpus" => self.cell.cpus.into(),
                "accel" => accel_name(self.accel).into(),
                "rep" => self.cell.rep.into(),
                "boot_seconds" => ((self.boot_seconds * 1000.0).round() / 1000.0).into(),
                ROUNDTRIP_KEY => Value::Array(
                    self.host_core_roundtrip_ns
                        .map(|ns| ns.map_or(Value::Null, |ns| ((ns * 10.0).round() / 10.0).into()))
                        .to_vec(),
                ),
                "instructions_per_op_median" if self.accel == Accel::Icount => {
                    from_kernel("cycles_per_op_median")
                }
                "instructions_per_op_median" => Value::Null,
                "allocator_instructions_per_pair" if self.accel == Accel::Icount => {
                    from_kernel("allocator_cycles_per_pair")
                }
                "allocator_instructions_per_pair" => Value::Null,
                other => from_kernel(other),
            };
            json.insert(key.to_string(), value);
        }
        for (key, value) in bench.into_iter().flatten() {
            if !json.contains_key(key) {
                json.insert(key.clone(), value.clone());
            }
        }
        json
    }
}

/// One CSV field: empty for null, arrays of plain values joined with `;`,
/// other objects as JSON.
fn csv_field(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
            items.iter().map(csv_field).collect::<Vec<_>>().join(";")
        }
        other => other.to_string(),
    }
}

/// results.csv: a header of every key (first-seen order), one row per record.
pub fn to_csv(records: &[Json]) -> Result<String, csv::Error> {
    let mut columns: Vec<&str> = Vec::new();
    for record in records {
        for key in record.keys() {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&columns)?;
    for record in records {
        writer.write_record(
            columns.iter().map(|key| record.get(*key).map(csv_field).unwrap_or_default()),
        )?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A BENCH line with plausible numbers.
    pub(crate) fn bench_line(alloc: &str, cpus: u32, ops_per_sec: f64) -> String {
        format!(
            r#"BENCH {{"workload":"local","alloc":"{alloc}","cpus":{cpus},"ops":20000,"ops_per_cpu":[10000,10000],"timestamp_hz":2000000000,"elapsed_cycles":400000,"ops_per_sec":{ops_per_sec},"cycles_per_op_median":41.5,"cycles_per_op_p99":90.0,"lock_acquisitions":300,"lock_contended":12,"lock_wait_cycles":5000,"lock_hold_cycles":9000,"lock_wait_share":0.00625,"small_ops":19000,"cache_hits":18700,"cache_hit_rate":0.984,"cross_cpu_frees":0}}"#
        )
    }

    fn cell(alloc: &str, cpus: u32) -> Cell {
        Cell { alloc: alloc.into(), workload: "local".into(), cpus, rep: 1 }
    }

    #[test]
    fn bench_lines_parse() {
        let line = format!("cpu1 noise {}", bench_line("slab", 2, 1.5e6));
        let bench = parse_bench(&line).unwrap().unwrap();
        assert_eq!(bench["alloc"], "slab");
        assert_eq!(bench["ops_per_sec"].as_f64(), Some(1.5e6));
        assert!(parse_bench("HEAPSTATS {}").is_none());
        assert!(parse_bench("BENCHMARK done").is_none());
        let lines = vec!["BOOT {}".to_string(), bench_line("slab", 2, 1.0)];
        assert!(find_bench(&lines).is_ok());
        assert_eq!(find_bench(&lines[..1]).unwrap_err(), "no BENCH line in the serial output");
    }

    #[test]
    fn malformed_bench_names_the_line() {
        let lines = vec!["hello".to_string(), r#"BENCH {"ops": 12,"#.to_string()];
        let error = find_bench(&lines).unwrap_err();
        assert!(error.starts_with("serial line 2: malformed BENCH record ("), "{error}");
        assert!(error.ends_with(r#"in line: BENCH {"ops": 12,"#), "{error}");
        let error = parse_bench(r#"BENCH {"ops":1}"#).unwrap().unwrap_err();
        assert!(error.contains("lacks 'ops_per_sec'"), "{error}");
        let line = bench_line("slab", 1, 1.0).replace("\"ops\":20000", "\"ops\":\"many\"");
        let error = parse_bench(&line).unwrap().unwrap_err();
        assert!(error.contains("'ops' is not a number"), "{error}");
    }

    #[test]
    fn a_plain_allocators_null_counters_parse_but_missing_or_text_ones_do_not() {
        let plain = bench_line("lockedheap", 1, 1.0)
            .replace("\"lock_acquisitions\":300", "\"lock_acquisitions\":null")
            .replace("\"lock_wait_share\":0.00625", "\"lock_wait_share\":null")
            .replace("\"cache_hit_rate\":0.984", "\"cache_hit_rate\":null");
        let bench = parse_bench(&plain).unwrap().unwrap();
        assert_eq!(bench["lock_acquisitions"], Value::Null);
        let record = Record {
            cell: cell("lockedheap", 1),
            accel: Accel::Tcg,
            boot_seconds: 1.0,
            host_core_roundtrip_ns: [None, None],
            bench: Ok(bench),
        };
        assert_eq!(record.number("lock_acquisitions"), None);
        assert_eq!(record.number("ops"), Some(20000.0));
        let missing = plain.replace("\"cache_hit_rate\":null,", "");
        let error = parse_bench(&missing).unwrap().unwrap_err();
        assert!(error.contains("lacks 'cache_hit_rate'"), "{error}");
        let text = plain.replace("\"lock_wait_share\":null", "\"lock_wait_share\":\"none\"");
        let error = parse_bench(&text).unwrap().unwrap_err();
        assert!(error.contains("'lock_wait_share' is neither a number nor null"), "{error}");
        let ops_null = plain.replace("\"ops\":20000", "\"ops\":null");
        let error = parse_bench(&ops_null).unwrap().unwrap_err();
        assert!(error.contains("'ops' is not a number"), "{error}");
    }

    #[test]
    fn locktrace_lines_parse() {
        let lines: Vec<String> = [
            r#"LOCKTRACE {"cpu":1,"events":[[10,20,30],[40,40,45]]}"#,
            "other",
            r#"LOCKTRACE {"cpu":0,"events":[]}"#,
        ]
        .map(String::from)
        .into();
        let traces = find_locktraces(&lines).unwrap();
        assert_eq!(traces.len(), 2);
        assert_eq!(traces[0], LockTrace { cpu: 0, events: vec![] });
        assert_eq!(traces[1].events, [[10, 20, 30], [40, 40, 45]]);

        let bad = vec![r#"LOCKTRACE {"cpu":0,"events":[[1,2]]}"#.to_string()];
        let error = find_locktraces(&bad).unwrap_err();
        assert!(error.starts_with("serial line 1: malformed LOCKTRACE record ("), "{error}");
        assert!(error.contains(r#"in line: LOCKTRACE {"cpu":0"#), "{error}");
        let backwards = r#"LOCKTRACE {"cpu":0,"events":[[5,2,9]]}"#;
        assert!(parse_locktrace(backwards).unwrap().unwrap_err().contains("event 0"));
    }

    #[test]
    fn the_cell_must_match() {
        let bench = parse_bench(&bench_line("slab", 2, 1.0)).unwrap().unwrap();
        assert!(check_cell(&bench, &cell("slab", 2)).is_ok());
        let error = check_cell(&bench, &cell("talc", 2)).unwrap_err();
        assert!(error.contains("alloc=\"slab\""), "{error}");
        assert!(check_cell(&bench, &cell("slab", 4)).unwrap_err().contains("cpus=2"));
        assert!(check_cell(&Json::new(), &cell("x", 9)).is_ok());
    }

    #[test]
    fn records_carry_runner_keys_and_every_bench_key() {
        let bench = parse_bench(&bench_line("slab", 2, 1.0)).unwrap().unwrap();
        let mut record = Record {
            cell: cell("slab", 2),
            accel: Accel::Icount,
            boot_seconds: 1.23456,
            host_core_roundtrip_ns: [Some(61.04), None],
            bench: Ok(bench.clone()),
        };
        let json = record.to_json();
        let keys: Vec<&str> = json.keys().map(String::as_str).collect();
        assert_eq!(keys[..LEADING_KEYS.len()], LEADING_KEYS);
        for key in bench.keys() {
            assert!(json.contains_key(key), "{key}");
        }
        assert_eq!(json["accel"], "icount");
        assert_eq!(json["instructions_per_op_median"].as_f64(), Some(41.5));
        assert_eq!(json["boot_seconds"].as_f64(), Some(1.235));
        assert_eq!(json["error"], Value::Null);
        assert_eq!(json[ROUNDTRIP_KEY], serde_json::json!([61.0, null]));
        record.accel = Accel::Tcg;
        assert_eq!(record.to_json()["instructions_per_op_median"], Value::Null);

        record.bench = Err("no BENCH line in the serial output".into());
        let failed = record.to_json();
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["ops_per_sec"], Value::Null);
        assert_eq!(failed.keys().count(), LEADING_KEYS.len());
    }

    #[test]
    fn csv_is_flat() {
        let bench = parse_bench(&bench_line("slab", 2, 1.0)).unwrap().unwrap();
        let ok = Record {
            cell: cell("slab", 2),
            accel: Accel::Tcg,
            boot_seconds: 1.0,
            host_core_roundtrip_ns: [Some(58.25), Some(341.0)],
            bench: Ok(bench),
        };
        let failed = Record {
            cell: cell("locked", 2),
            bench: Err("kernel said \"no\", sadly".into()),
            ..ok.clone()
        };
        let csv = to_csv(&[failed.to_json(), ok.to_json()]).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(
            "status,error,alloc,workload,cpus,accel,rep,boot_seconds,host_core_roundtrip_ns,ops,"
        ));
        assert!(lines[0].ends_with(",cross_cpu_frees"), "{}", lines[0]);
        let width = lines[0].split(',').count();
        assert!(
            lines[1].starts_with(r#"failed,"kernel said ""no"", sadly",locked,local,2,tcg,1,"#)
        );
        assert!(
            lines[2].starts_with(
                "ok,,slab,local,2,tcg,1,1.0,58.3;341.0,20000,1,41.5,90.0,,,300,0.00625,"
            ),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains(",10000;10000,"));
        assert_eq!(lines[2].split(',').count(), width);
    }
}
