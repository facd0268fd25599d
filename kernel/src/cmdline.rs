//! The kernel command line: space-separated `key=value` options, checked
//! against the table of known options at boot. An unknown key or a token
//! that is not `key=value` is a boot error naming it.
use spin::Once;

/// Every option the kernel understands, with what it does.
pub const KNOWN_OPTIONS: &[(&str, &str)] = &[
    ("job", "what the kernel does after boot (default: stress)"),
    ("heap", "heap size, e.g. 32M (default: 32M, 2M per CPU above 16 CPUs)"),
    (
        "alloc",
        "heap allocator: slab, locked, talc, buddy, rlsf, slab-talc, slab-buddy, slab-rlsf (default: slab)",
    ),
    ("heapcheck", "on checks the heap for corruption, HEAPCHECK records (default: off)"),
    ("test_skip", "run kernel tests from this index on (set by the runner)"),
    (
        "workload",
        "job=bench: local, xfer, seed, mixed, null, larson, xmalloc-test, cache-scratch, cache-thrash, threadtest or mstress (default: local)",
    ),
    (
        "ops",
        "job=bench: operations per CPU (default: 100000, 1600000 / CPUs above 16 CPUs); job=soak: in all (default: 1000000)",
    ),
    ("seed", "job=soak: random seed, decimal or 0x hex (default: 1)"),
    ("trace", "job=bench: on records the global-lock timeline (LOCKTRACE lines; default: off)"),
    (
        "timer_hz",
        "local APIC timer rate when code starts the timer, in Hz (default: 10000; 160000 / CPUs above 16 CPUs)",
    ),
];

const MAX_OPTIONS: usize = 32;

/// The parsed command line.
#[derive(Debug, Clone, Copy)]
pub struct Cmdline {
    raw: &'static str,
    options: [(&'static str, &'static str); MAX_OPTIONS],
    count: usize,
}

/// What was wrong with the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdlineError {
    /// A token without `=`.
    NotKeyValue(&'static str),
    /// A key not in [`KNOWN_OPTIONS`].
    UnknownOption(&'static str),
    /// The same key twice.
    Repeated(&'static str),
    /// More options than the kernel keeps.
    TooMany,
}

impl core::fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotKeyValue(token) => write!(f, "'{token}' is not key=value")?,
            Self::UnknownOption(key) => write!(f, "unknown option '{key}'")?,
            Self::Repeated(key) => write!(f, "option '{key}' given twice")?,
            Self::TooMany => write!(f, "more than {MAX_OPTIONS} options")?,
        }
        f.write_str(" (known options:")?;
        for (key, _) in KNOWN_OPTIONS {
            write!(f, " {key}")?;
        }
        f.write_str(")")
    }
}

impl Cmdline {
    /// Parses and checks `raw`.
    pub fn parse(raw: &'static str) -> Result<Self, CmdlineError> {
        let mut cmdline = Self { raw, options: [("", ""); MAX_OPTIONS], count: 0 };
        for token in raw.split_ascii_whitespace() {
            let (key, value) = token.split_once('=').ok_or(CmdlineError::NotKeyValue(token))?;
            if !KNOWN_OPTIONS.iter().any(|(known, _)| *known == key) {
                return Err(CmdlineError::UnknownOption(key));
            }
            if cmdline.get(key).is_some() {
                return Err(CmdlineError::Repeated(key));
            }
            *cmdline.options.get_mut(cmdline.count).ok_or(CmdlineError::TooMany)? = (key, value);
            cmdline.count += 1;
        }
        Ok(cmdline)
    }

    /// The command line as given.
    pub fn raw(&self) -> &'static str {
        self.raw
    }

    /// The value of option `key`, if given.
    pub fn get(&self, key: &str) -> Option<&'static str> {
        self.options[..self.count].iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

static CMDLINE: Once<Cmdline> = Once::new();

/// Makes `cmdline` the kernel's command line (once, at boot).
pub fn set(cmdline: Cmdline) -> &'static Cmdline {
    CMDLINE.call_once(|| cmdline)
}

/// The kernel's command line (empty before boot parsed it).
pub fn get() -> &'static Cmdline {
    static EMPTY: Cmdline = Cmdline { raw: "", options: [("", ""); MAX_OPTIONS], count: 0 };
    CMDLINE.get().unwrap_or(&EMPTY)
}
