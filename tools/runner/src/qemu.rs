//! The QEMU command line for one boot.
use std::{ffi::OsString, path::PathBuf};

use crate::accel::Accel;

/// The serial console goes to QEMU's stdout, which the runner reads.
pub const SERIAL: &str = "stdio";
/// Port and size of the `isa-debug-exit` device (`docs/interface.md`).
pub const DEBUG_EXIT_DEVICE: &str = "isa-debug-exit,iobase=0xf4,iosize=4";
/// Where `--gdb` listens (QEMU's `-s`).
pub const GDB_PORT: u16 = 1234;

/// What QEMU boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// microvm loads the PVH loader, which starts the kernel (the initrd).
    Pvh { loader: PathBuf, kernel: PathBuf, cmdline: String },
    /// q35 boots a Limine ISO (the command line is inside the ISO).
    Iso { iso: PathBuf, firmware: Firmware },
}

/// The q35 firmware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default, SeaBIOS.
    Bios,
    /// OVMF: the code read-only and a writable copy of the variable store.
    Uefi { code: PathBuf, vars: PathBuf },
}

/// One QEMU machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub media: Media,
    pub accel: Accel,
    pub smp: u32,
    pub mem_mib: u64,
    /// `-s -S`: wait for gdb on :1234.
    pub gdb: bool,
    /// A QMP socket (`-qmp unix:PATH,server=on,wait=off`): on a timeout the
    /// runner asks for the kernel's NMI dump through it.
    pub monitor: Option<PathBuf>,
    /// Appended last (`--qemu-arg`).
    pub extra: Vec<String>,
}

impl Machine {
    /// QEMU's arguments (without the program name).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        let machine = match self.media {
            Media::Pvh { .. } => "microvm",
            Media::Iso { .. } => "q35",
        };
        push(&["-M", machine, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]);
        push(&self.accel.qemu_args());
        push(&["-smp", &self.smp.to_string(), "-m", &format!("{}M", self.mem_mib)]);
        push(&["-serial", SERIAL, "-device", DEBUG_EXIT_DEVICE]);
        if let Some(socket) = &self.monitor {
            // QEMU's option syntax doubles a comma inside a value.
            let path = socket.display().to_string().replace(',', ",,");
            args.extend(["-qmp".into(), format!("unix:{path},server=on,wait=off").into()]);
        }
        match &self.media {
            Media::Pvh { loader, kernel, cmdline } => {
                args.extend([
                    "-kernel".into(),
                    loader.into(),
                    "-initrd".into(),
                    kernel.into(),
                    "-append".into(),
                    cmdline.into(),
                ]);
            }
            Media::Iso { iso, firmware } => {
                // A display adapter for the firmware and Limine to draw on
                // (never shown: -display none).
                args.extend(["-vga".into(), "std".into()]);
                if let Firmware::Uefi { code, vars } = firmware {
                    args.extend([
                        "-drive".into(),
                        pflash(0, code, true),
                        "-drive".into(),
                        pflash(1, vars, false),
                    ]);
                }
                args.extend(["-cdrom".into(), iso.into()]);
            }
        }
        if self.gdb {
            args.extend(["-s".into(), "-S".into()]);
        }
        args.extend(self.extra.iter().map(OsString::from));
        args
    }
}

fn pflash(unit: u32, file: &std::path::Path, readonly: bool) -> OsString {
    let mut arg = OsString::from(format!("if=pflash,format=raw,unit={unit},"));
    if readonly {
        arg.push("readonly=on,");
    }
    // QEMU's option syntax doubles a comma inside a value.
    arg.push("file=");
    arg.push(file.display().to_string().replace(',', ",,"));
    arg
}

/// `program args...` quoted for a POSIX shell (for `--verbose`).
pub fn shell_line(program: &str, args: &[OsString]) -> String {
    std::iter::once(program.to_string())
        .chain(args.iter().map(|arg| shell_quote(&arg.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` as one shell word.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_=+,./:@%".contains(c));
    if plain { text.to_string() } else { format!("'{}'", text.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(machine: &Machine) -> String {
        shell_line("qemu-system-x86_64", &machine.args())
    }

    fn pvh(accel: Accel) -> Machine {
        Machine {
            media: Media::Pvh {
                loader: "/r/target/tools/x86_64-unknown-none/release/pvh-loader".into(),
                kernel: "/r/target/x86_64-unknown-none/debug/kernel".into(),
                cmdline: "heap=64M job=stress".into(),
            },
            accel,
            smp: 8,
            mem_mib: 512,
            gdb: false,
            monitor: None,
            extra: vec![],
        }
    }

    #[test]
    fn pvh_under_tcg() {
        assert_eq!(
            words(&pvh(Accel::Tcg)),
            "qemu-system-x86_64 -M microvm -nodefaults -no-user-config -display none -no-reboot \
             -accel tcg,thread=multi -cpu max -smp 8 -m 512M -serial stdio \
             -device isa-debug-exit,iobase=0xf4,iosize=4 \
             -kernel /r/target/tools/x86_64-unknown-none/release/pvh-loader \
             -initrd /r/target/x86_64-unknown-none/debug/kernel -append 'heap=64M job=stress'"
        );
    }

    #[test]
    fn pvh_under_kvm_and_icount() {
        assert!(
            words(&pvh(Accel::Kvm)).contains(" -accel kvm -cpu host,-arch-capabilities -smp 8 ")
        );
        assert!(
            words(&pvh(Accel::Icount))
                .contains(" -accel tcg,thread=single -icount shift=0,sleep=off -cpu max -smp 8 ")
        );
    }

    #[test]
    fn empty_cmdline_is_still_passed() {
        let mut machine = pvh(Accel::Tcg);
        if let Media::Pvh { cmdline, .. } = &mut machine.media {
            cmdline.clear();
        }
        assert!(words(&machine).ends_with(" -append ''"));
    }

    #[test]
    fn gdb_and_extra_arguments_come_last() {
        let mut machine = pvh(Accel::Tcg);
        machine.gdb = true;
        machine.extra = vec!["-d".into(), "int".into()];
        assert!(words(&machine).ends_with(" -append 'heap=64M job=stress' -s -S -d int"));
    }

    #[test]
    fn limine_bios() {
        let machine = Machine {
            media: Media::Iso { iso: "/tmp/x/kernel.iso".into(), firmware: Firmware::Bios },
            accel: Accel::Tcg,
            smp: 2,
            mem_mib: 1024,
            gdb: false,
            monitor: None,
            extra: vec![],
        };
        assert_eq!(
            words(&machine),
            "qemu-system-x86_64 -M q35 -nodefaults -no-user-config -display none -no-reboot \
             -accel tcg,thread=multi -cpu max -smp 2 -m 1024M -serial stdio \
             -device isa-debug-exit,iobase=0xf4,iosize=4 -vga std -cdrom /tmp/x/kernel.iso"
        );
    }

    #[test]
    fn limine_uefi() {
        let machine = Machine {
            media: Media::Iso {
                iso: "/tmp/x/kernel.iso".into(),
                firmware: Firmware::Uefi {
                    code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                    vars: "/tmp/x/a,b/OVMF_VARS_4M.fd".into(),
                },
            },
            accel: Accel::Kvm,
            smp: 4,
            mem_mib: 512,
            gdb: true,
            monitor: None,
            extra: vec![],
        };
        assert_eq!(
            words(&machine),
            "qemu-system-x86_64 -M q35 -nodefaults -no-user-config -display none -no-reboot \
             -accel kvm -cpu host,-arch-capabilities -smp 4 -m 512M -serial stdio \
             -device isa-debug-exit,iobase=0xf4,iosize=4 -vga std \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
             -drive if=pflash,format=raw,unit=1,file=/tmp/x/a,,b/OVMF_VARS_4M.fd \
             -cdrom /tmp/x/kernel.iso -s -S"
        );
    }

    #[test]
    fn a_qmp_socket_for_the_nmi_dump() {
        let mut machine = pvh(Accel::Tcg);
        machine.monitor = Some("/tmp/runner-x/a,b/qmp-0.sock".into());
        assert!(words(&machine).contains(
            " -device isa-debug-exit,iobase=0xf4,iosize=4 \
             -qmp unix:/tmp/runner-x/a,,b/qmp-0.sock,server=on,wait=off -kernel "
        ));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("plain-word_1.0"), "plain-word_1.0");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
