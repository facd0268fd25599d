//! A stand-in for the PVH loader in end-to-end tests: a tiny PVH ELF that
//! QEMU boots directly. It prints one of two texts on COM1 (the first when
//! the kernel command line is empty, the second otherwise) and then writes an
//! exit code to the debug-exit port, hangs, or triple-faults. The "kernel"
//! the runner passes as the initrd is ignored.
#![allow(dead_code)]

mod qemu;

pub use qemu::require_qemu;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// How a script ends.
#[derive(Debug, Clone, Copy)]
pub enum End {
    /// Writes this code to port 0xf4 (QEMU exits with `code << 1 | 1`).
    Exit(u8),
    /// Halts forever.
    Hang,
    /// Loads an empty IDT and traps: triple fault, QEMU exits 0 (-no-reboot).
    TripleFault,
}

const BASE: u32 = 0x10_0000;
const HEADER: usize = 64 + 2 * 56;
const NOTE: usize = 20;

/// 32-bit code printing `len` bytes at `text` on COM1, then `end`.
fn script(text: u32, len: u32, end: End, zero_idt: u32) -> Vec<u8> {
    let mut code = vec![0xbe];
    code.extend(text.to_le_bytes()); // mov esi, text
    code.push(0xb9);
    code.extend(len.to_le_bytes()); // mov ecx, len
    if len > 0 {
        code.extend([
            0x66, 0xba, 0xfd, 0x03, // mov dx, 0x3fd (line status)
            0xec, // in al, dx
            0xa8, 0x20, // test al, 0x20 (transmitter empty)
            0x74, 0xf7, // jz back to mov dx
            0xac, // lodsb
            0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
            0xee, // out dx, al
            0xe2, 0xef, // loop back to the status poll
        ]);
    }
    match end {
        End::Exit(code_value) => code.extend([0xb0, code_value, 0xe6, 0xf4]), // mov al, v; out 0xf4, al
        End::Hang => {}
        End::TripleFault => {
            code.extend([0x0f, 0x01, 0x1d]); // lidt [zero_idt]
            code.extend(zero_idt.to_le_bytes());
            code.push(0xcc); // int3
        }
    }
    code.extend([0xf4, 0xeb, 0xfd]); // hlt; jmp hlt
    code
}

/// A PVH ELF printing `first` (empty command line) or `later` (otherwise).
pub fn fake_pvh(first: (&str, End), later: (&str, End)) -> Vec<u8> {
    let code_at = HEADER + NOTE;
    // The selector: esi = start_info->cmdline_paddr; empty -> first script.
    let selector_len = 1 + 3 + 2 + 2 + 3 + 2;
    // Sizes do not depend on the addresses, so lay out with dummies first.
    let first_len = script(0, first.0.len() as u32, first.1, 0).len();
    let later_len = script(0, later.0.len() as u32, later.1, 0).len();
    let data_at = code_at + selector_len + first_len + later_len;
    let first_text = BASE + data_at as u32;
    let later_text = first_text + first.0.len() as u32;
    let zero_idt = later_text + later.0.len() as u32;

    let mut code = vec![
        0xfc, // cld
        0x8b,
        0x73,
        0x18, // mov esi, [ebx + 0x18]
        0x85,
        0xf6, // test esi, esi
        0x74,
        0x05, // jz first
        0x80,
        0x3e,
        0x00, // cmp byte [esi], 0
        0x75,
        first_len as u8, // jne later
    ];
    assert!(first_len < 128);
    code.extend(script(first_text, first.0.len() as u32, first.1, zero_idt));
    code.extend(script(later_text, later.0.len() as u32, later.1, zero_idt));
    assert_eq!(code.len(), selector_len + first_len + later_len);

    let mut image = Vec::new();
    let total = (data_at + first.0.len() + later.0.len() + 8) as u64;
    // ELF64 header.
    image.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    image.extend(2u16.to_le_bytes()); // ET_EXEC
    image.extend(62u16.to_le_bytes()); // EM_X86_64
    image.extend(1u32.to_le_bytes());
    image.extend((BASE as u64 + code_at as u64).to_le_bytes()); // e_entry
    image.extend(64u64.to_le_bytes()); // e_phoff
    image.extend(0u64.to_le_bytes()); // e_shoff
    image.extend(0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 2, 64, 0, 0] {
        image.extend(half.to_le_bytes());
    }
    // PT_LOAD: the whole file at BASE.
    image.extend(1u32.to_le_bytes());
    image.extend(7u32.to_le_bytes());
    for word in [0, BASE as u64, BASE as u64, total, total, 0x1000] {
        image.extend(word.to_le_bytes());
    }
    // PT_NOTE: XEN_ELFNOTE_PHYS32_ENTRY.
    image.extend(4u32.to_le_bytes());
    image.extend(4u32.to_le_bytes());
    for word in [
        HEADER as u64,
        (BASE as usize + HEADER) as u64,
        (BASE as usize + HEADER) as u64,
        NOTE as u64,
        NOTE as u64,
        4,
    ] {
        image.extend(word.to_le_bytes());
    }
    assert_eq!(image.len(), HEADER);
    image.extend(4u32.to_le_bytes()); // namesz
    image.extend(4u32.to_le_bytes()); // descsz
    image.extend(18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    image.extend(b"Xen\0");
    image.extend((BASE + code_at as u32).to_le_bytes());
    image.extend(code);
    assert_eq!(image.len(), data_at);
    image.extend(first.0.as_bytes());
    image.extend(later.0.as_bytes());
    image.extend([0u8; 8]); // the empty IDT descriptor
    assert_eq!(image.len() as u64, total);
    image
}

/// A folder with a fake loader and a "kernel" file for the runner.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub loader: PathBuf,
    pub kernel: PathBuf,
}

impl Setup {
    /// `first`/`later` as for [`fake_pvh`]; `test_binary` puts the kernel in a `deps` folder.
    pub fn new(first: (&str, End), later: (&str, End), test_binary: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let loader = dir.path().join("fake-pvh-loader");
        std::fs::write(&loader, fake_pvh(first, later)).unwrap();
        let kernel_dir =
            if test_binary { dir.path().join("deps") } else { dir.path().join("debug") };
        std::fs::create_dir_all(&kernel_dir).unwrap();
        let kernel = kernel_dir.join(if test_binary { "boot-0123abcd" } else { "kernel" });
        std::fs::write(&kernel, b"ignored by the fake loader").unwrap();
        Self { dir, loader, kernel }
    }

    /// Runs the runner on the kernel with `args`.
    pub fn run(&self, args: &[&str]) -> Run {
        run_runner(&self.loader, &self.kernel, args)
    }

    /// [`Setup::run`] with `LIMINE_DIR` set to `limine_dir`.
    pub fn run_with_limine_dir(&self, args: &[&str], limine_dir: &Path) -> Run {
        run_runner_with(&self.loader, &self.kernel, args, Some(limine_dir))
    }
}

/// What a runner invocation printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn has_line(&self, line: &str) -> bool {
        self.stdout.lines().any(|l| l == line)
    }

    pub fn line_starting(&self, prefix: &str) -> Option<&str> {
        self.stdout.lines().find(|l| l.starts_with(prefix))
    }
}

pub fn run_runner(loader: &Path, kernel: &Path, args: &[&str]) -> Run {
    run_runner_with(loader, kernel, args, None)
}

/// [`run_runner`] with `LIMINE_DIR` set to `limine_dir`, or unset.
pub fn run_runner_with(
    loader: &Path,
    kernel: &Path,
    args: &[&str],
    limine_dir: Option<&Path>,
) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runner"));
    command.arg(kernel).args(args).env("RUNNER_PVH_LOADER", loader);
    match limine_dir {
        Some(dir) => command.env("LIMINE_DIR", dir),
        None => command.env_remove("LIMINE_DIR"),
    };
    let output: Output = command.output().unwrap();
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!("--- runner {args:?}: {:?}\n{}\n--- stderr\n{}", run.code, run.stdout, run.stderr);
    run
}
