//! Watches a real bootloader (Limine, on the ISO boots) until the kernel
//! takes over, so that a bootloader that stops with an error, or says
//! nothing at all, ends the boot within seconds instead of at the timeout.
//!
//! Limine with `serial: yes` in `limine.conf` writes its messages to COM1:
//! under SeaBIOS as plain lines (its `PANIC` in colour escapes), under OVMF
//! through the firmware console, one character at a time with a cursor
//! escape before each and no line endings. [`screen_text`] turns both into
//! plain lines before the watch reads them.
//!
//! ```text
//!  QEMU starts ── firmware ── hand-off ── Limine's first text ── kernel's first record
//!                 (OVMF: "BdsDxe: starting Boot...";            (BOOT, test lines, PANIC cpu=)
//!                  SeaBIOS: silent, so QEMU's start
//!                  plus SEABIOS_ALLOWANCE)
//!                            |<- LOADER_SILENCE ->|  nothing: stop, "printed nothing"
//!  Limine's "PANIC: ..." anywhere before the kernel's first record: stop, quote it
//! ```
use std::time::{Duration, Instant};

use crate::{
    qemu::{Firmware, Media},
    serial::{self, Record},
};

/// How long the bootloader may stay silent after the firmware hands over.
pub const LOADER_SILENCE: Duration = Duration::from_secs(5);
/// SeaBIOS prints nothing on the serial port; it hands over well within
/// this (0.8 s from QEMU's start to Limine's first line under TCG here).
pub const SEABIOS_ALLOWANCE: Duration = Duration::from_secs(3);
/// How long to wait for the rest of a Limine panic's first line.
const PANIC_LINE_GRACE: Duration = Duration::from_millis(500);

/// What OVMF prints as it starts the boot loader from the CD.
const OVMF_HANDOFF: &str = "BdsDxe: starting Boot";
/// How Limine's panic report begins (in its colours on BIOS).
const LIMINE_PANIC: &str = "PANIC: ";

/// Why the bootloader did not hand over to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoaderFailure {
    /// Limine's panic: its message (the first line of the report).
    Error(String),
    /// Nothing came within [`LOADER_SILENCE`] of the hand-off.
    Silent { firmware: &'static str },
}

impl std::fmt::Display for LoaderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Error(message) => {
                write!(f, "Limine stopped with an error before starting the kernel: {message}")
            }
            Self::Silent { firmware } => write!(
                f,
                "Limine printed nothing on the serial port within {} s of {firmware} handing over \
                 (is `serial: yes` in limine.conf? Without it Limine's errors only reach the screen)",
                LOADER_SILENCE.as_secs()
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// OVMF runs; no deadline of our own.
    Firmware,
    /// Handed over at this instant; the bootloader has not printed yet.
    Handed(Instant),
    /// The bootloader printed; watching for its panic.
    Talking,
    /// The kernel printed a record: nothing more to watch.
    Done,
}

/// The watch over one ISO boot.
#[derive(Debug, Clone)]
pub struct LoaderWatch {
    phase: Phase,
    firmware: &'static str,
    /// When a panic's first line started arriving without its end.
    panic_since: Option<Instant>,
}

impl LoaderWatch {
    /// A watch for `media` booted at `start`; `None` for PVH boots (the
    /// PVH loader is the runner's own and reports its errors itself).
    pub fn for_media(media: &Media, start: Instant) -> Option<Self> {
        let Media::Iso { firmware, .. } = media else { return None };
        let (phase, firmware) = match firmware {
            Firmware::Bios => (Phase::Handed(start + SEABIOS_ALLOWANCE), "SeaBIOS"),
            Firmware::Uefi { .. } => (Phase::Firmware, "OVMF"),
        };
        Some(Self { phase, firmware, panic_since: None })
    }

    /// Reads one serial line (`complete`) or the unfinished line so far;
    /// returns the failure it shows, if any.
    pub fn observe(&mut self, raw: &str, complete: bool, now: Instant) -> Option<LoaderFailure> {
        if self.phase == Phase::Done {
            return None;
        }
        if complete && !matches!(serial::parse(raw), Record::Other) {
            self.phase = Phase::Done;
            return None;
        }
        let text = screen_text(raw);
        if let Some(message) = limine_panic(&text) {
            let line_ended = complete || message.contains('\n');
            let first_line = message.lines().next().unwrap_or_default().trim().to_string();
            if line_ended {
                return Some(LoaderFailure::Error(first_line));
            }
            let since = *self.panic_since.get_or_insert(now);
            if now >= since + PANIC_LINE_GRACE {
                return Some(LoaderFailure::Error(first_line));
            }
        }
        if self.phase == Phase::Firmware && text.contains(OVMF_HANDOFF) && complete {
            self.phase = Phase::Handed(now);
        } else if matches!(self.phase, Phase::Handed(_)) && !text.trim().is_empty() {
            self.phase = Phase::Talking;
        }
        None
    }

    /// When [`LoaderWatch::check`] next has something to say, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        let silence = match self.phase {
            Phase::Handed(since) => Some(since + LOADER_SILENCE),
            _ => None,
        };
        let panic = self.panic_since.map(|since| since + PANIC_LINE_GRACE);
        silence.into_iter().chain(panic).min()
    }

    /// The failure due at `now` with no new serial text: silence after the
    /// hand-off, or a panic whose first line never ended.
    pub fn check(&self, now: Instant, unfinished: &str) -> Option<LoaderFailure> {
        if self.phase == Phase::Done {
            return None;
        }
        if let Some(since) = self.panic_since
            && now >= since + PANIC_LINE_GRACE
        {
            let text = screen_text(unfinished);
            let message = limine_panic(&text).unwrap_or_default();
            return Some(LoaderFailure::Error(
                message.lines().next().unwrap_or_default().trim().to_string(),
            ));
        }
        match self.phase {
            Phase::Handed(since) if now >= since + LOADER_SILENCE => {
                Some(LoaderFailure::Silent { firmware: self.firmware })
            }
            _ => None,
        }
    }
}

/// What follows Limine's `PANIC: ` in `text`.
fn limine_panic(text: &str) -> Option<&str> {
    let at = text.find(LIMINE_PANIC)?;
    Some(&text[at + LIMINE_PANIC.len()..])
}

/// `raw` serial text as it would read on a screen: escape sequences
/// dropped, a cursor move to another row (the UEFI console's way to start a
/// line) or a screen clear made a line break, carriage returns dropped.
pub fn screen_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut row: Option<u32> = None;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                match chars.next() {
                    Some('[') => {}
                    // Character set designations take one more character.
                    Some('(' | ')' | '#' | '%') => {
                        chars.next();
                        continue;
                    }
                    _ => continue,
                }
                let mut params = String::new();
                let mut last = None;
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        last = Some(c);
                        break;
                    }
                    params.push(c);
                }
                let new_row = match last {
                    Some('H' | 'f') => {
                        Some(params.split(';').next().and_then(|r| r.parse().ok()).unwrap_or(1))
                    }
                    Some('J') => Some(0),
                    _ => None,
                };
                if let Some(new_row) = new_row {
                    if row.is_some_and(|row| row != new_row)
                        && !out.is_empty()
                        && !out.ends_with('\n')
                    {
                        out.push('\n');
                    }
                    row = Some(new_row);
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Limine 8.2.0 printed under SeaBIOS for a limine.conf without
    /// `kernel_path:` (captured from QEMU's serial port).
    const BIOS_PANIC: &str = "\x1b[31mPANIC\x1b[37;1m\x1b[0m: limine: KERNEL_PATH not specified\r";

    /// The same under OVMF: a cursor position before every character.
    fn uefi_text(lines: &[&str]) -> String {
        let mut out = String::from("\x1b[2J\x1b[01;01H\x1b[01;01H");
        for (row, line) in lines.iter().enumerate() {
            for (column, c) in line.chars().enumerate() {
                out.push(c);
                out.push_str(&format!("\x1b[{:02};{:02}H", row + 1, column + 2));
            }
            out.push_str(&format!("\x1b[{:02};01H", row + 2));
        }
        out
    }

    fn bios() -> (LoaderWatch, Instant) {
        let start = Instant::now();
        let media = Media::Iso { iso: "k.iso".into(), firmware: Firmware::Bios };
        (LoaderWatch::for_media(&media, start).unwrap(), start)
    }

    fn uefi() -> (LoaderWatch, Instant) {
        let start = Instant::now();
        let firmware = Firmware::Uefi { code: "c".into(), vars: "v".into() };
        let media = Media::Iso { iso: "k.iso".into(), firmware };
        (LoaderWatch::for_media(&media, start).unwrap(), start)
    }

    #[test]
    fn screen_text_turns_cursor_rows_into_lines() {
        assert_eq!(
            screen_text(&uefi_text(&["PANIC: limine: x", "Stacktrace:"])),
            "PANIC: limine: x\nStacktrace:\n"
        );
        assert_eq!(screen_text(BIOS_PANIC), "PANIC: limine: KERNEL_PATH not specified");
        assert_eq!(screen_text("plain \x1b(Bline"), "plain line");
    }

    #[test]
    fn a_bios_panic_line_is_quoted() {
        let (mut watch, start) = bios();
        assert_eq!(watch.observe("limine: Loading kernel...", true, start), None);
        assert_eq!(
            watch.observe(BIOS_PANIC, true, start),
            Some(LoaderFailure::Error("limine: KERNEL_PATH not specified".into()))
        );
    }

    #[test]
    fn a_uefi_panic_is_quoted_once_its_first_line_ends() {
        let (mut watch, start) = uefi();
        let unfinished = uefi_text(&["PANIC: limine: KERNEL_PA"]);
        let unfinished = unfinished.trim_end_matches("\x1b[02;01H");
        assert_eq!(watch.observe(unfinished, false, start), None);
        assert_eq!(watch.deadline(), Some(start + PANIC_LINE_GRACE));
        let whole = uefi_text(&["PANIC: limine: KERNEL_PATH not specified", "Stacktrace:"]);
        assert_eq!(
            watch.observe(&whole, false, start),
            Some(LoaderFailure::Error("limine: KERNEL_PATH not specified".into()))
        );
        // A first line that never ends is quoted after the grace period.
        assert_eq!(
            watch.check(start + PANIC_LINE_GRACE, unfinished),
            Some(LoaderFailure::Error("limine: KERNEL_PA".into()))
        );
    }

    #[test]
    fn silence_after_seabios_is_a_failure() {
        let (watch, start) = bios();
        let due = start + SEABIOS_ALLOWANCE + LOADER_SILENCE;
        assert_eq!(watch.deadline(), Some(due));
        assert_eq!(watch.check(due - Duration::from_millis(1), ""), None);
        let failure = watch.check(due, "").unwrap();
        assert_eq!(failure, LoaderFailure::Silent { firmware: "SeaBIOS" });
        assert!(failure.to_string().contains("within 5 s of SeaBIOS handing over"), "{failure}");
    }

    #[test]
    fn silence_counts_from_ovmf_starting_the_loader() {
        let (mut watch, start) = uefi();
        assert_eq!(watch.deadline(), None);
        // OVMF's own screen clearing is not the bootloader talking.
        assert_eq!(watch.observe("\x1b[2J\x1b[01;01H\x1b[=3h", false, start), None);
        let later = start + Duration::from_secs(9);
        watch.observe("BdsDxe: starting Boot0001 \"UEFI QEMU DVD-ROM QM00005 \" from", true, later);
        assert_eq!(watch.deadline(), Some(later + LOADER_SILENCE));
        assert_eq!(watch.observe("\x1b[2J\x1b[01;01H\x1b[01;01H", false, later), None);
        assert_eq!(
            watch.check(later + LOADER_SILENCE, ""),
            Some(LoaderFailure::Silent { firmware: "OVMF" })
        );
        // Limine's first characters end the silence.
        watch.observe("\x1b[01;01Hl\x1b[01;02Hi", false, later);
        assert_eq!(watch.deadline(), None);
        assert_eq!(watch.check(later + LOADER_SILENCE, ""), None);
    }

    #[test]
    fn the_kernel_taking_over_ends_the_watch() {
        let (mut watch, start) = bios();
        watch.observe("limine: Loading kernel `boot():/boot/kernel`...", true, start);
        watch.observe(r#"BOOT {"cpus":1}"#, true, start);
        assert_eq!(watch.observe("PANIC: not limine's", true, start), None);
        assert_eq!(watch.check(start + Duration::from_secs(60), ""), None);
        assert_eq!(watch.deadline(), None);
    }

    #[test]
    fn pvh_boots_are_not_watched() {
        let media = Media::Pvh { loader: "l".into(), kernel: "k".into(), cmdline: String::new() };
        assert!(LoaderWatch::for_media(&media, Instant::now()).is_none());
    }
}
