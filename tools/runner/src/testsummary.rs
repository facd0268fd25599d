//! The libtest closing line of a kernel test binary, counted from the serial
//! lines of all its boots (a `should_panic` test makes the binary boot again).
//! A test the kernel reports `[Ignored]` (the machine lacks what it needs)
//! counts as ignored, as libtest's `#[ignore]`: neither passed nor failed.
use std::{collections::BTreeMap, time::Duration};

use crate::serial::{self, ExpectedExit, Record, TestLine, TestResult};

/// The tests seen so far across boots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestSummary {
    /// From `running N tests`; `None` if no boot got that far.
    pub total: Option<usize>,
    /// Each reported test by index (a later report replaces an earlier one).
    pub results: BTreeMap<usize, TestLine>,
    /// Time spent in QEMU, all boots together.
    pub elapsed: Duration,
    pub boots: usize,
}

impl TestSummary {
    /// Adds the serial lines of one boot that took `duration`.
    pub fn add_boot(&mut self, lines: &[String], duration: Duration) {
        self.boots += 1;
        self.elapsed += duration;
        for line in lines {
            match serial::parse(line) {
                Record::Running(count) => {
                    self.total = Some(self.total.map_or(count, |seen| seen.max(count)))
                }
                Record::Test(test) => {
                    self.results.insert(test.index, test);
                }
                _ => {}
            }
        }
    }

    /// Counts a test that passed by ending its boot as it declared
    /// (`TEST-EXPECT`; the kernel prints no result line for it).
    pub fn pass_by_expected_exit(&mut self, expected: &ExpectedExit) {
        let test = TestLine {
            index: expected.index,
            name: expected.name.clone(),
            result: TestResult::Passed,
        };
        self.results.insert(expected.index, test);
    }

    pub fn passed(&self) -> usize {
        self.count(|result| *result == TestResult::Passed)
    }

    /// Tests not run because the machine lacks what they need.
    pub fn ignored(&self) -> impl Iterator<Item = &TestLine> {
        self.results.values().filter(|test| matches!(test.result, TestResult::Ignored(_)))
    }

    fn count(&self, which: impl Fn(&TestResult) -> bool) -> usize {
        self.results.values().filter(|test| which(&test.result)).count()
    }

    /// One line per ignored test, with its reason (libtest prints
    /// `test name ... ignored, reason`).
    pub fn ignored_lines(&self) -> Vec<String> {
        self.ignored()
            .map(|test| match &test.result {
                TestResult::Ignored(reason) => {
                    format!("test {:#04x} {} ignored: {reason}", test.index, test.name)
                }
                _ => unreachable!("ignored() yields ignored tests only"),
            })
            .collect()
    }

    /// Indexes below `total` that no boot reported.
    pub fn unreached(&self) -> Vec<usize> {
        (0..self.total.unwrap_or(0)).filter(|index| !self.results.contains_key(index)).collect()
    }

    /// Failed tests: reported failures plus tests never reached. A run that
    /// did not end cleanly before any `running N tests` line counts as one.
    pub fn failed(&self, clean_exit: bool) -> usize {
        let reported = self.count(|result| *result == TestResult::Failed);
        let failed = reported + self.unreached().len();
        if self.total.is_none() && !clean_exit { failed.max(1) } else { failed }
    }

    /// Whether the binary passed: a clean exit and no failed test.
    pub fn ok(&self, clean_exit: bool) -> bool {
        clean_exit && self.failed(clean_exit) == 0
    }

    /// The first test reported as failed.
    pub fn first_failed(&self) -> Option<&TestLine> {
        self.results.values().find(|test| test.result == TestResult::Failed)
    }

    /// How many more boots a resume may start: one per test plus one.
    pub fn boot_limit(&self) -> usize {
        self.total.unwrap_or(0) + 1
    }

    /// The libtest closing line.
    pub fn closing_line(&self, clean_exit: bool) -> String {
        format!(
            "test result: {}. {} passed; {} failed; {} ignored; 0 measured; 0 filtered out; finished in {:.2}s",
            if self.ok(clean_exit) { "ok" } else { "FAILED" },
            self.passed(),
            self.failed(clean_exit),
            self.ignored().count(),
            self.elapsed.as_secs_f64()
        )
    }

    /// The reason line for a failed binary, naming the failing test; `why`
    /// says how the last boot ended (e.g. the panic report).
    pub fn failure_reason(&self, why: &str) -> String {
        if let Some(test) = self.first_failed() {
            return format!("test {:#04x} {} failed: {why}", test.index, test.name);
        }
        match (self.total, self.unreached().first()) {
            (Some(total), Some(index)) => format!(
                "{why}; test {index:#04x} never finished ({} of {total} tests ran)",
                self.results.len()
            ),
            (None, _) => format!("{why}; no tests ran (no 'running N tests' line)"),
            _ => why.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(summary: &mut TestSummary, text: &[&str]) {
        let lines: Vec<String> = text.iter().map(|s| s.to_string()).collect();
        summary.add_boot(&lines, Duration::from_millis(210));
    }

    #[test]
    fn all_pass() {
        let mut s = TestSummary::default();
        boot(
            &mut s,
            &[
                r#"BOOT {"cpus":4}"#,
                "running 3 tests",
                "Initiating test 0x00 a... [Pass] (0.1 ms)",
                "Initiating test 0x01 b... [Pass] (2.0 ms)",
                "Initiating test 0x02 c... [Pass] (0.0 ms)",
            ],
        );
        assert!(s.ok(true));
        assert_eq!(
            s.closing_line(true),
            "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.21s"
        );
    }

    #[test]
    fn a_failed_test_and_the_ones_not_reached() {
        let mut s = TestSummary::default();
        boot(
            &mut s,
            &[
                "running 4 tests",
                "Initiating test 0x00 a... [Pass] (0.1 ms)",
                "PANIC cpu=1 at tests/boot.rs:33:13: cpu 0 and cpu 1 share lapic id 0",
                "Initiating test 0x01 lapic_ids... [Fail]",
            ],
        );
        assert_eq!((s.passed(), s.failed(false)), (1, 3));
        assert_eq!(s.unreached(), [2, 3]);
        assert_eq!(
            s.closing_line(false),
            "test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.21s"
        );
        assert_eq!(
            s.failure_reason("PANIC cpu=1 at tests/boot.rs:33:13: boom"),
            "test 0x01 lapic_ids failed: PANIC cpu=1 at tests/boot.rs:33:13: boom"
        );
    }

    #[test]
    fn a_should_panic_test_that_did_not_panic() {
        let mut s = TestSummary::default();
        boot(
            &mut s,
            &["running 2 tests", "Initiating test 0x00 must_panic... [Fail] (did not panic)"],
        );
        assert_eq!((s.passed(), s.failed(false)), (0, 2));
        assert!(s.failure_reason("x").starts_with("test 0x00 must_panic failed"));
    }

    #[test]
    fn a_hang_names_the_test_that_never_finished() {
        let mut s = TestSummary::default();
        boot(&mut s, &["running 3 tests", "Initiating test 0x00 a... [Pass] (0.1 ms)"]);
        assert_eq!((s.passed(), s.failed(false)), (1, 2));
        assert_eq!(
            s.failure_reason("timeout after 120 s"),
            "timeout after 120 s; test 0x01 never finished (1 of 3 tests ran)"
        );
    }

    #[test]
    fn a_boot_failure_before_the_tests_counts_as_one_failure() {
        let mut s = TestSummary::default();
        boot(&mut s, &["boot: unknown option 'x'"]);
        assert_eq!(s.total, None);
        assert!(s.closing_line(false).starts_with("test result: FAILED. 0 passed; 1 failed;"));
        assert!(s.failure_reason("kernel reported failure").contains("no tests ran"));
        // A clean exit with no tests at all is a pass.
        assert!(
            TestSummary::default()
                .closing_line(true)
                .starts_with("test result: ok. 0 passed; 0 failed;")
        );
    }

    #[test]
    fn ignored_tests_count_as_ignored_not_passed() {
        let mut s = TestSummary::default();
        boot(
            &mut s,
            &[
                "running 3 tests",
                "Initiating test 0x00 failed_assertion_panics... [Pass] (panicked as expected)",
                r#"TEST-RESUME {"next":1}"#,
            ],
        );
        boot(
            &mut s,
            &[
                "running 3 tests",
                "Initiating test 0x01 panic_on_another_cpu_is_caught... [Ignored] (needs at least 2 cpus, 1 online)",
                "Initiating test 0x02 tests_after_a_panic_still_run... [Pass] (0.0 ms)",
            ],
        );
        assert_eq!((s.passed(), s.failed(true), s.ignored().count()), (2, 0, 1));
        assert!(s.unreached().is_empty(), "an ignored test was reached");
        assert!(s.ok(true));
        assert_eq!(
            s.closing_line(true),
            "test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.42s"
        );
        assert_eq!(
            s.ignored_lines(),
            ["test 0x01 panic_on_another_cpu_is_caught ignored: needs at least 2 cpus, 1 online"]
        );
        // Only ignored tests: libtest says ok too.
        let mut only = TestSummary::default();
        boot(
            &mut only,
            &["running 1 tests", "Initiating test 0x00 x... [Ignored] (needs alloc=slab)"],
        );
        assert!(only.ok(true));
        assert!(
            only.closing_line(true).starts_with("test result: ok. 0 passed; 0 failed; 1 ignored;")
        );
        // An ignored test does not hide a failed one.
        boot(&mut only, &["running 2 tests", "Initiating test 0x01 y... [Fail]"]);
        assert!(!only.ok(false));
        assert!(
            only.closing_line(false)
                .starts_with("test result: FAILED. 0 passed; 1 failed; 1 ignored;")
        );
    }

    #[test]
    fn a_bad_exit_after_passing_tests_still_fails() {
        let mut s = TestSummary::default();
        boot(&mut s, &["running 1 tests", "Initiating test 0x00 a... [Pass] (0.1 ms)"]);
        assert!(!s.ok(false));
        assert!(s.closing_line(false).starts_with("test result: FAILED. 1 passed; 0 failed;"));
        assert_eq!(s.failure_reason("heap exhausted"), "heap exhausted");
    }

    #[test]
    fn counts_across_resumed_boots() {
        let mut s = TestSummary::default();
        boot(
            &mut s,
            &[
                "running 3 tests",
                "Initiating test 0x00 failed_assertion_panics... [Pass] (panicked as expected)",
                r#"TEST-RESUME {"next":1}"#,
            ],
        );
        boot(
            &mut s,
            &[
                "running 3 tests",
                "Initiating test 0x01 panic_on_another_cpu_is_caught... [Pass] (panicked as expected)",
                r#"TEST-RESUME {"next":2}"#,
            ],
        );
        assert!(!s.ok(true), "test 0x02 not reached yet");
        boot(
            &mut s,
            &[
                "running 3 tests",
                "Initiating test 0x02 tests_after_a_panic_still_run... [Pass] (0.0 ms)",
            ],
        );
        assert_eq!(s.boots, 3);
        assert_eq!(s.boot_limit(), 4);
        assert!(s.ok(true));
        assert_eq!(
            s.closing_line(true),
            "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.63s"
        );
    }
}
