//! The heap's mode, chosen at boot: `slab` (per-CPU caches in front of the
//! backend, the default) or `locked` (the backend serves every request: the
//! baseline to compare against).

use core::fmt;
use core::str::FromStr;

/// How the heap serves small objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Mode {
    /// Per-CPU slab caches in front of the backend (encoded as 0 so an
    /// unused heap is all zero and lands in `.bss`).
    #[default]
    Slab = 0,
    /// Every request goes to the backend under the global lock.
    Locked = 1,
}

impl Mode {
    /// The name used on the kernel command line (`alloc=`) and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Slab => "slab",
            Mode::Locked => "locked",
        }
    }

    /// The mode named `name` (`"slab"` or `"locked"`).
    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "slab" => Some(Mode::Slab),
            "locked" => Some(Mode::Locked),
            _ => None,
        }
    }

    pub(crate) const fn from_u8(raw: u8) -> Mode {
        if raw == Mode::Locked as u8 { Mode::Locked } else { Mode::Slab }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text is not a mode name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownMode;

impl fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown heap mode (expected `slab` or `locked`)")
    }
}

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(name: &str) -> Result<Mode, UnknownMode> {
        Mode::from_name(name).ok_or(UnknownMode)
    }
}

/// The mode could not be changed: the heap has already handed out memory,
/// which the other mode would free the wrong way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeLocked {
    /// The mode the heap keeps.
    pub current: Mode,
}

impl fmt::Display for ModeLocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "heap mode stays `{}`: memory was already allocated", self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for mode in [Mode::Slab, Mode::Locked] {
            assert_eq!(mode.name().parse::<Mode>(), Ok(mode));
            assert_eq!(Mode::from_u8(mode as u8), mode);
        }
        assert_eq!("buddy".parse::<Mode>(), Err(UnknownMode));
        assert_eq!(Mode::default(), Mode::Slab);
    }
}
