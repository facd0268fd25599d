//! `HostHeap`'s settings, read once from the environment without
//! allocating (`getenv`'s bytes, parsed in place). A value that is not one
//! of the expected ones is an error naming the variable and the value: the
//! heap prints it and aborts rather than guess.

use core::ffi::CStr;
use core::fmt;

use crate::check::Checking;
use crate::mode::Mode;
use crate::platform::MAX_CPUS;

/// `SLAB_HOST_CPUS`: how many CPU slots (caches) the heap keeps, `1..=128`;
/// default: 8 per CPU this process may run on, at most 128. One per CPU
/// (at most half, at least one) is leased per call; threads own the rest
/// for their life (`platform.rs`).
pub const CPUS_VAR: &CStr = c"SLAB_HOST_CPUS";
/// `SLAB_HOST_MODE`: `slab` (default) or `locked`.
pub const MODE_VAR: &CStr = c"SLAB_HOST_MODE";
/// `SLAB_HOST_HEAPCHECK`: `on` or `off` (default).
pub const HEAPCHECK_VAR: &CStr = c"SLAB_HOST_HEAPCHECK";
/// `SLAB_HOST_STATS`: `1` prints `HEAPSTATS {json}` on stderr at exit;
/// `0` (default) does not.
pub const STATS_VAR: &CStr = c"SLAB_HOST_STATS";
/// `SLAB_HOST_LOCK_WAIT`: how a thread waits for the global lock: `yield`
/// (default: spin a little, then give the CPU away) or `spin`.
pub const LOCK_WAIT_VAR: &CStr = c"SLAB_HOST_LOCK_WAIT";

/// How a thread waits for the global lock (`Platform::relax` on the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockWait {
    /// `spin_loop` for a few rounds, then `sched_yield` each round, so a
    /// preempted holder gets the CPU back.
    Yield,
    /// `spin_loop` only, as the kernel does.
    Spin,
}

/// Every setting of `HostHeap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// CPU slots, `None` for the default (the CPUs the process may use).
    pub cpus: Option<usize>,
    pub mode: Mode,
    pub checking: Checking,
    /// Print `HEAPSTATS {json}` on stderr at exit.
    pub stats_at_exit: bool,
    pub lock_wait: LockWait,
}

/// A variable whose value is not one of the expected ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingError<'a> {
    pub variable: &'static CStr,
    pub value: &'a [u8],
    pub expected: &'static str,
}

impl fmt::Display for SettingError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Our names are ASCII; `to_string_lossy` would allocate.
        write!(f, "{}=\"", self.variable.to_str().unwrap_or("?"))?;
        for chunk in self.value.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        write!(f, "\" is not valid: expected {}", self.expected)
    }
}

impl Settings {
    /// The defaults: every variable unset.
    pub const DEFAULT: Settings = Settings {
        cpus: None,
        mode: Mode::Slab,
        checking: Checking::Off,
        stats_at_exit: false,
        lock_wait: LockWait::Yield,
    };

    /// The settings `lookup` gives (a variable's bytes, or `None` if
    /// unset), or the first variable whose value is wrong.
    pub fn parse<'a>(
        lookup: impl Fn(&'static CStr) -> Option<&'a [u8]>,
    ) -> Result<Settings, SettingError<'a>> {
        let mut settings = Settings::DEFAULT;
        if let Some(value) = lookup(CPUS_VAR) {
            settings.cpus = Some(parse_cpus(value).ok_or(SettingError {
                variable: CPUS_VAR,
                value,
                expected: "a whole number of CPU slots from 1 to 128",
            })?);
        }
        if let Some(value) = lookup(MODE_VAR) {
            settings.mode = choose(
                MODE_VAR,
                value,
                &[("slab", Mode::Slab), ("locked", Mode::Locked)],
                "`slab` or `locked`",
            )?;
        }
        if let Some(value) = lookup(HEAPCHECK_VAR) {
            settings.checking = choose(
                HEAPCHECK_VAR,
                value,
                &[("on", Checking::On), ("off", Checking::Off)],
                "`on` or `off`",
            )?;
        }
        if let Some(value) = lookup(STATS_VAR) {
            settings.stats_at_exit =
                choose(STATS_VAR, value, &[("1", true), ("0", false)], "`1` or `0`")?;
        }
        if let Some(value) = lookup(LOCK_WAIT_VAR) {
            settings.lock_wait = choose(
                LOCK_WAIT_VAR,
                value,
                &[("yield", LockWait::Yield), ("spin", LockWait::Spin)],
                "`yield` or `spin`",
            )?;
        }
        Ok(settings)
    }

    /// The settings of this process's environment (`getenv`, no allocation).
    pub fn from_env() -> Result<Settings, SettingError<'static>> {
        Settings::parse(getenv)
    }
}

/// The value of the one of `choices` named `value`; `expected` lists them
/// for the error.
fn choose<'a, T: Copy>(
    variable: &'static CStr,
    value: &'a [u8],
    choices: &[(&'static str, T)],
    expected: &'static str,
) -> Result<T, SettingError<'a>> {
    choices
        .iter()
        .find(|(name, _)| name.as_bytes() == value)
        .map(|&(_, choice)| choice)
        .ok_or(SettingError { variable, value, expected })
}

/// A decimal count of CPU slots, `1..=MAX_CPUS`.
fn parse_cpus(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 3 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let cpus = value.iter().fold(0, |n, digit| n * 10 + usize::from(digit - b'0'));
    (1..=MAX_CPUS).contains(&cpus).then_some(cpus)
}

/// The environment variable `name`'s bytes, if set.
fn getenv(name: &'static CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated. `getenv` returns null or a pointer
    // into the environment, which this process's code does not change
    // while the heap starts (the heap reads it once, at its first
    // allocation, before the program could have called `setenv`).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: a non-null `getenv` result is a NUL-terminated string that
    // stays valid as argued above.
    Some(unsafe { CStr::from_ptr(value) }.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings of an environment of `(name, value)` pairs.
    fn parse<'a>(env: &'a [(&'static CStr, &'a str)]) -> Result<Settings, SettingError<'a>> {
        Settings::parse(|name| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes()))
    }

    #[test]
    fn an_empty_environment_gives_the_defaults() {
        assert_eq!(parse(&[]), Ok(Settings::DEFAULT));
    }

    #[test]
    fn every_variable_is_read() {
        let settings = parse(&[
            (CPUS_VAR, "8"),
            (MODE_VAR, "locked"),
            (HEAPCHECK_VAR, "on"),
            (STATS_VAR, "1"),
            (LOCK_WAIT_VAR, "spin"),
        ])
        .unwrap();
        assert_eq!(
            settings,
            Settings {
                cpus: Some(8),
                mode: Mode::Locked,
                checking: Checking::On,
                stats_at_exit: true,
                lock_wait: LockWait::Spin,
            }
        );
        assert_eq!(parse(&[(CPUS_VAR, "128")]).unwrap().cpus, Some(128));
        assert_eq!(parse(&[(CPUS_VAR, "1")]).unwrap().cpus, Some(1));
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_variable_and_the_value() {
        let cases: [(&CStr, &str, &str); 8] = [
            (
                CPUS_VAR,
                "0",
                "SLAB_HOST_CPUS=\"0\" is not valid: expected a whole number of CPU slots from 1 to 128",
            ),
            (CPUS_VAR, "129", "SLAB_HOST_CPUS=\"129\""),
            (CPUS_VAR, "", "SLAB_HOST_CPUS=\"\""),
            (CPUS_VAR, "4x", "SLAB_HOST_CPUS=\"4x\""),
            (
                MODE_VAR,
                "buddy",
                "SLAB_HOST_MODE=\"buddy\" is not valid: expected `slab` or `locked`",
            ),
            (
                HEAPCHECK_VAR,
                "yes",
                "SLAB_HOST_HEAPCHECK=\"yes\" is not valid: expected `on` or `off`",
            ),
            (STATS_VAR, "true", "SLAB_HOST_STATS=\"true\" is not valid: expected `1` or `0`"),
            (
                LOCK_WAIT_VAR,
                "futex",
                "SLAB_HOST_LOCK_WAIT=\"futex\" is not valid: expected `yield` or `spin`",
            ),
        ];
        for (variable, value, message) in cases {
            let env = [(variable, value)];
            let error = parse(&env).expect_err(value);
            assert_eq!((error.variable, error.value), (variable, value.as_bytes()));
            let text = std::format!("{error}");
            assert!(text.starts_with(message), "{variable:?}={value:?}: {text}");
        }
    }

    #[test]
    fn a_value_that_is_not_utf8_is_shown_escaped() {
        let error =
            Settings::parse(|name| (name == MODE_VAR).then_some(&b"sl\xffab"[..])).unwrap_err();
        assert!(std::format!("{error}").starts_with("SLAB_HOST_MODE=\"sl\\xffab\""));
    }
}
