//! Writing to stderr from inside the allocator: a small stack buffer over
//! `write(2)`, so a report never allocates (which would re-enter the heap).

use core::fmt;

/// A `fmt::Write` to file descriptor 2 through a stack buffer. Dropping it
/// writes what is left.
pub(crate) struct Stderr {
    buffer: [u8; BUFFER_BYTES],
    len: usize,
}

const BUFFER_BYTES: usize = 512;

impl Stderr {
    pub(crate) const fn new() -> Self {
        Self { buffer: [0; BUFFER_BYTES], len: 0 }
    }

    /// Writes the buffered bytes.
    pub(crate) fn flush(&mut self) {
        write_all(&self.buffer[..self.len]);
        self.len = 0;
    }
}

impl fmt::Write for Stderr {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        if self.len + bytes.len() > BUFFER_BYTES {
            self.flush();
        }
        if bytes.len() > BUFFER_BYTES {
            write_all(bytes);
        } else {
            self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Writes all of `bytes` to fd 2, retrying short writes and `EINTR`;
/// gives up silently on any other error (there is nowhere to report it).
fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice of `bytes.len()` readable bytes.
        let written = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(written) {
            Ok(count) => bytes = &bytes[count..],
            Err(_) if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
            }
            Err(_) => return,
        }
    }
}

/// Prints `args` and a newline on stderr, then aborts the process: for
/// errors the allocator cannot hand back (bad settings, no address space).
#[cold]
pub(crate) fn fatal(args: fmt::Arguments<'_>) -> ! {
    let mut out = Stderr::new();
    let _ = fmt::Write::write_fmt(&mut out, format_args!("slab_core::HostHeap: {args}\n"));
    out.flush();
    std::process::abort()
}
