//! Writing JSON values by hand for the one-line serial records
//! (`BOOT {json}` and friends): string escaping, arrays of numbers and
//! optional values.
use core::fmt::{self, Write};

/// Displays any `Display` value as a JSON string, quoted and escaped.
pub struct JsonStr<T>(pub T);

impl<T: fmt::Display> fmt::Display for JsonStr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write!(Escaper(f), "{}", self.0)?;
        f.write_char('"')
    }
}

struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                c if (c as u32) < 0x20 => write!(self.0, "\\u{:04x}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Displays a slice of numbers as a JSON array.
pub struct JsonArray<'a>(pub &'a [u64]);

impl core::fmt::Display for JsonArray<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("[")?;
        for (i, value) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{value}")?;
        }
        f.write_str("]")
    }
}

/// Displays `Some(value)` as the value, with the formatter's options (so
/// `{:.3}` gives three decimals), and `None` as JSON `null`.
pub struct JsonOption<T>(pub Option<T>);

impl<T: fmt::Display> fmt::Display for JsonOption<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(value) => fmt::Display::fmt(value, f),
            None => f.write_str("null"),
        }
    }
}
