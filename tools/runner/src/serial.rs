//! The serial lines the runner understands (`docs/interface.md`). Records are
//! found anywhere in a line, since output from another CPU may precede them.

/// One test's result line: `Initiating test 0xNN name... [Pass] (T ms)`,
/// `[Fail]` or `[Ignored] (reason)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestLine {
    pub index: usize,
    pub name: String,
    pub result: TestResult,
}

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestResult {
    Passed,
    Failed,
    /// Not run: the machine lacks what the test needs (the reason, e.g.
    /// "needs at least 2 cpus, 1 online"); libtest's `ignored`.
    Ignored(String),
}

/// `TEST-EXPECT {"test":K,"name":"...","exit":"heap-exhausted"}`: test K
/// passes only by ending the boot with that exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedExit {
    pub index: usize,
    pub name: String,
    /// The exit's name: [`HEAP_EXHAUSTED_EXIT`] is the only one so far.
    pub exit: String,
}

/// The `exit` of a test that passes by exhausting the heap (kernel exit
/// code `0x12`).
pub const HEAP_EXHAUSTED_EXIT: &str = "heap-exhausted";

/// What a serial line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// `BOOT {json}`: every CPU is online; the JSON text.
    Boot(&'a str),
    /// `running N tests`.
    Running(usize),
    /// A test's result.
    Test(TestLine),
    /// `TEST-RESUME {"next":K}`: boot again with `test_skip=K`.
    Resume(usize),
    /// `PANIC cpu=...`: the whole report from `PANIC` on.
    Panic(&'a str),
    /// `NMIDUMP {json}`: one line of the NMI dump; the JSON text.
    NmiDump(&'a str),
    /// `TEST-EXPECT {json}`: the test about to run passes by this exit.
    Expect(ExpectedExit),
    /// `HEAP-EXHAUSTED {json}`: the allocation error handler's report; the
    /// JSON text.
    HeapExhausted(&'a str),
    /// Anything else.
    Other,
}

/// What `line` says.
pub fn parse(line: &str) -> Record<'_> {
    if let Some(at) = line.find("BOOT {") {
        return Record::Boot(line[at + "BOOT ".len()..].trim());
    }
    if let Some(at) = line.find("NMIDUMP {") {
        return Record::NmiDump(line[at + "NMIDUMP ".len()..].trim());
    }
    if let Some(at) = line.find("PANIC cpu=") {
        return Record::Panic(line[at..].trim_end());
    }
    if let Some(test) = parse_test(line) {
        return Record::Test(test);
    }
    if let Some(next) = parse_resume(line) {
        return Record::Resume(next);
    }
    if let Some(expected) = parse_expect(line) {
        return Record::Expect(expected);
    }
    if let Some(at) = line.find("HEAP-EXHAUSTED {") {
        return Record::HeapExhausted(line[at + "HEAP-EXHAUSTED ".len()..].trim());
    }
    if let Some(count) = parse_running(line) {
        return Record::Running(count);
    }
    Record::Other
}

fn parse_running(line: &str) -> Option<usize> {
    let rest = line.trim().strip_prefix("running ")?;
    let count = rest.strip_suffix(" tests").or_else(|| rest.strip_suffix(" test"))?;
    count.parse().ok()
}

fn parse_test(line: &str) -> Option<TestLine> {
    let rest = &line[line.find("Initiating test ")? + "Initiating test ".len()..];
    let (index, rest) = rest.split_once(' ')?;
    let index = usize::from_str_radix(index.strip_prefix("0x")?, 16).ok()?;
    let (name, result) = if let Some(at) = rest.find("... [Pass]") {
        (&rest[..at], TestResult::Passed)
    } else if let Some(at) = rest.find("... [Ignored]") {
        let reason = rest[at + "... [Ignored]".len()..].trim();
        let reason = reason.strip_prefix('(').and_then(|r| r.strip_suffix(')')).unwrap_or(reason);
        (&rest[..at], TestResult::Ignored(reason.to_string()))
    } else {
        (&rest[..rest.find("... [Fail]")?], TestResult::Failed)
    };
    Some(TestLine { index, name: name.to_string(), result })
}

fn parse_resume(line: &str) -> Option<usize> {
    let json = &line[line.find("TEST-RESUME ")? + "TEST-RESUME ".len()..];
    let value: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    value.get("next")?.as_u64()?.try_into().ok()
}

fn parse_expect(line: &str) -> Option<ExpectedExit> {
    let json = &line[line.find("TEST-EXPECT ")? + "TEST-EXPECT ".len()..];
    let value: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    Some(ExpectedExit {
        index: value.get("test")?.as_u64()?.try_into().ok()?,
        name: value.get("name")?.as_str()?.to_string(),
        exit: value.get("exit")?.as_str()?.to_string(),
    })
}

/// The test of one boot's `lines` that declared it exhausts the heap, if
/// the boot shows it did: its `TEST-EXPECT` line (the last one), then the
/// allocation error handler's `HEAP-EXHAUSTED` report, and no result line
/// for it. The caller checks that the boot ended with the heap-exhausted
/// exit code.
pub fn expected_heap_exhaustion(lines: &[String]) -> Option<ExpectedExit> {
    let (at, expected) =
        lines.iter().enumerate().rev().find_map(|(at, line)| match parse(line) {
            Record::Expect(expected) => Some((at, expected)),
            _ => None,
        })?;
    let mut reported = false;
    for line in &lines[at + 1..] {
        match parse(line) {
            Record::HeapExhausted(_) => reported = true,
            Record::Test(test) if test.index == expected.index => return None,
            _ => {}
        }
    }
    (reported && expected.exit == HEAP_EXHAUSTED_EXIT).then_some(expected)
}

/// The first `PANIC cpu=...` report in `lines`.
pub fn first_panic(lines: &[String]) -> Option<&str> {
    lines.iter().find_map(|line| match parse(line) {
        Record::Panic(report) => Some(report),
        _ => None,
    })
}

/// The `next` of the last `TEST-RESUME` line in `lines`.
pub fn resume_point(lines: &[String]) -> Option<usize> {
    lines.iter().rev().find_map(|line| match parse(line) {
        Record::Resume(next) => Some(next),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_record() {
        assert_eq!(parse(r#"BOOT {"cpus":4}"#), Record::Boot(r#"{"cpus":4}"#));
        // Firmware escape codes may precede it.
        assert_eq!(parse("\x1b[2J\x1b[01;01HBOOT {\"cpus\":4}"), Record::Boot(r#"{"cpus":4}"#));
        assert_eq!(parse("BOOT done"), Record::Other);
    }

    #[test]
    fn nmi_dump_record() {
        let done = r#"NMIDUMP {"done":true,"cpus":2}"#;
        assert_eq!(parse(done), Record::NmiDump(r#"{"done":true,"cpus":2}"#));
        // Behind the half line the NMI interrupted.
        assert_eq!(
            parse(&format!("cpu 1 onl{done}")),
            Record::NmiDump(r#"{"done":true,"cpus":2}"#)
        );
        assert_eq!(parse("NMIDUMP later"), Record::Other);
    }

    #[test]
    fn running_line() {
        assert_eq!(parse("running 3 tests"), Record::Running(3));
        assert_eq!(parse("running 1 test"), Record::Running(1));
        assert_eq!(parse("running 0 tests"), Record::Running(0));
        assert_eq!(parse("running many tests"), Record::Other);
    }

    #[test]
    fn test_lines() {
        assert_eq!(
            parse("Initiating test 0x00 every_cpu_runs... [Pass] (1.2 ms)"),
            Record::Test(TestLine {
                index: 0,
                name: "every_cpu_runs".into(),
                result: TestResult::Passed
            })
        );
        assert_eq!(
            parse("Initiating test 0x1a failed_assertion_panics... [Pass] (panicked as expected)"),
            Record::Test(TestLine {
                index: 26,
                name: "failed_assertion_panics".into(),
                result: TestResult::Passed
            })
        );
        assert_eq!(
            parse("Initiating test 0x02 lapic_ids... [Fail]"),
            Record::Test(TestLine {
                index: 2,
                name: "lapic_ids".into(),
                result: TestResult::Failed
            })
        );
        assert_eq!(
            parse("Initiating test 0x100 should... [Fail] (did not panic)"),
            Record::Test(TestLine {
                index: 256,
                name: "should".into(),
                result: TestResult::Failed
            })
        );
        // Behind another CPU's half line.
        assert_eq!(
            parse("cpu 3 onlInitiating test 0x01 x... [Pass] (0.1 ms)"),
            Record::Test(TestLine { index: 1, name: "x".into(), result: TestResult::Passed })
        );
        assert_eq!(
            parse("Initiating test 0x03 needs_two... [Ignored] (needs at least 2 cpus, 1 online)"),
            Record::Test(TestLine {
                index: 3,
                name: "needs_two".into(),
                result: TestResult::Ignored("needs at least 2 cpus, 1 online".into())
            })
        );
        assert_eq!(parse("Initiating test 0x01 unfinished"), Record::Other);
        assert_eq!(parse("Initiating test 12 x... [Pass]"), Record::Other);
    }

    #[test]
    fn resume_and_panic() {
        assert_eq!(parse(r#"TEST-RESUME {"next":2}"#), Record::Resume(2));
        assert_eq!(parse(r#"TEST-RESUME {"next": 17 }"#), Record::Resume(17));
        assert_eq!(parse(r#"TEST-RESUME {"nope":2}"#), Record::Other);
        assert_eq!(parse(r#"TEST-RESUME next=2"#), Record::Other);
        let panic = "PANIC cpu=1 at tests/boot.rs:33:13: cpu 0 and cpu 1 share lapic id 0";
        assert_eq!(parse(panic), Record::Panic(panic));
        assert_eq!(parse(&format!("garbage{panic}  ")), Record::Panic(panic));
        let lines: Vec<String> =
            ["a", panic, "PANIC cpu=2 at x:1:1: later", r#"TEST-RESUME {"next":1}"#]
                .map(String::from)
                .into();
        assert_eq!(first_panic(&lines), Some(panic));
        assert_eq!(resume_point(&lines), Some(1));
        assert_eq!(first_panic(&lines[..1]), None);
        assert_eq!(resume_point(&lines[..3]), None);
    }

    #[test]
    fn expected_exits() {
        let expect = r#"TEST-EXPECT {"test":3,"name":"fills_the_heap","exit":"heap-exhausted"}"#;
        let expected = ExpectedExit {
            index: 3,
            name: "fills_the_heap".into(),
            exit: HEAP_EXHAUSTED_EXIT.into(),
        };
        assert_eq!(parse(expect), Record::Expect(expected.clone()));
        assert_eq!(parse(r#"TEST-EXPECT {"test":3}"#), Record::Other);
        let report = r#"HEAP-EXHAUSTED {"cpu":1,"size":1024}"#;
        assert_eq!(parse(report), Record::HeapExhausted(r#"{"cpu":1,"size":1024}"#));
        let lines = |text: &[&str]| -> Vec<String> { text.iter().map(|s| s.to_string()).collect() };
        let boot = lines(&["running 4 tests", expect, "heap exhausted: ...", report]);
        assert_eq!(expected_heap_exhaustion(&boot), Some(expected));
        // No report from the allocation error handler: not the expected end.
        assert_eq!(expected_heap_exhaustion(&boot[..3]), None);
        // The kernel reported the test itself (it failed, or returned).
        let failed = lines(&[expect, report, "Initiating test 0x03 fills_the_heap... [Fail]"]);
        assert_eq!(expected_heap_exhaustion(&failed), None);
        // Another test exhausted the heap after the declaring one finished.
        let later = lines(&[
            expect,
            "Initiating test 0x03 fills_the_heap... [Fail] (did not exhaust the heap)",
            report,
        ]);
        assert_eq!(expected_heap_exhaustion(&later), None);
        assert_eq!(expected_heap_exhaustion(&lines(&[report])), None);
    }
}
