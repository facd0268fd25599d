//! The Limine boot modes: a hybrid BIOS/UEFI ISO built with xorriso from a
//! Limine binary release (`$LIMINE_DIR`, else the copy vendored in
//! `third_party/limine`), holding the kernel at /boot/kernel and the repo's
//! `limine.conf` (or `$RUNNER_LIMINE_CONF`) with the runner's command line
//! filled in.
use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::qemu::Firmware;

/// Names the folder of a Limine binary release.
pub const LIMINE_DIR_ENV: &str = "LIMINE_DIR";
/// The release used when `LIMINE_DIR` is not set, under the workspace root.
pub const VENDORED_LIMINE: &str = "third_party/limine";
/// Names a `limine.conf` to use instead of the repo's.
pub const LIMINE_CONF_ENV: &str = "RUNNER_LIMINE_CONF";
/// The release's files the ISO needs.
pub const LIMINE_FILES: [&str; 4] =
    ["limine-bios.sys", "limine-bios-cd.bin", "limine-uefi-cd.bin", "BOOTX64.EFI"];
/// OVMF's code and variable store (Debian package `ovmf`); `OVMF_CODE` and
/// `OVMF_VARS` override them.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Where the Limine release is.
const WHERE_LIMINE_COMES_FROM: &str = "a Limine binary release: the v8.x-binary (tested: 8.2.0, \
     vendored in third_party/limine) or v9.x-binary branch of the limine-bootloader/limine project, \
     with its host tool built by `make -C $LIMINE_DIR` (tools/setup does it for the vendored copy); \
     the runner never downloads it";

/// A Limine binary release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limine {
    pub dir: PathBuf,
    /// The `limine` host tool (for `limine bios-install`), if there is one.
    pub tool: Option<PathBuf>,
}

/// The Limine release folder: `$LIMINE_DIR` when set (`env`), else the
/// vendored copy under `root`.
pub fn limine_dir(env: Option<&OsStr>, root: &Path) -> PathBuf {
    env.filter(|dir| !dir.is_empty()).map_or_else(|| root.join(VENDORED_LIMINE), PathBuf::from)
}

/// Finds the release in `dir` (the value of `$LIMINE_DIR`); `bios` also
/// needs the `limine` tool, from the release or `PATH`.
pub fn find_limine(dir: Option<&OsStr>, bios: bool) -> Result<Limine, String> {
    let Some(dir) = dir.filter(|dir| !dir.is_empty()) else {
        return Err(format!(
            "Limine boot modes need LIMINE_DIR set to the folder of {WHERE_LIMINE_COMES_FROM}"
        ));
    };
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        return Err(format!(
            "LIMINE_DIR={} is not a folder; it must hold {WHERE_LIMINE_COMES_FROM}",
            dir.display()
        ));
    }
    let missing: Vec<&str> =
        LIMINE_FILES.into_iter().filter(|file| !dir.join(file).is_file()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "LIMINE_DIR={} lacks {}; it must hold {WHERE_LIMINE_COMES_FROM}",
            dir.display(),
            missing.join(", ")
        ));
    }
    let tool = Some(dir.join("limine"))
        .filter(|tool| tool.is_file())
        .or_else(|| crate::find_in_path("limine"));
    if bios && tool.is_none() {
        return Err(format!(
            "{}/limine (the host tool for `limine bios-install`) is missing: build it with `make -C {}` \
             (tools/setup builds the vendored copy's)",
            dir.display(),
            dir.display()
        ));
    }
    Ok(Limine { dir, tool })
}

/// `conf` with every entry's `cmdline:` set to `cmdline`; an entry without
/// one gets it after its `path:` line.
pub fn rewrite_conf(conf: &str, cmdline: &str) -> Result<String, String> {
    let key_of = |line: &str| {
        line.trim_start().split_once(':').map(|(key, _)| key.trim().to_ascii_lowercase())
    };
    let indent_of = |line: &str| line[..line.len() - line.trim_start().len()].to_string();
    let has_cmdline = conf.lines().any(|line| key_of(line).as_deref() == Some("cmdline"));
    let mut out = String::new();
    let mut changed = false;
    // An entry naming its kernel twice (`kernel_path:` for Limine 8.x,
    // `path:` for 9.x) gets one `cmdline:`.
    let mut entry_has_cmdline = false;
    for line in conf.lines() {
        if line.trim_start().starts_with('/') {
            entry_has_cmdline = false;
        }
        match key_of(line).as_deref() {
            Some("cmdline") => {
                out.push_str(&format!("{}cmdline: {cmdline}\n", indent_of(line)));
                changed = true;
            }
            Some("path" | "kernel_path") if !has_cmdline && !entry_has_cmdline => {
                out.push_str(line);
                out.push_str(&format!("\n{}cmdline: {cmdline}\n", indent_of(line)));
                changed = true;
                entry_has_cmdline = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !changed {
        return Err("limine.conf has no entry with a `path:` or `cmdline:` line".into());
    }
    Ok(out)
}

/// The xorriso arguments making a hybrid BIOS/UEFI ISO of `root` at `iso`.
pub fn xorriso_args(root: &Path, iso: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "-as",
        "mkisofs",
        "-R",
        "-r",
        "-J",
        "-b",
        "boot/limine/limine-bios-cd.bin",
        "-no-emul-boot",
        "-boot-load-size",
        "4",
        "-boot-info-table",
        "--efi-boot",
        "boot/limine/limine-uefi-cd.bin",
        "-efi-boot-part",
        "--efi-boot-image",
        "--protective-msdos-label",
    ]
    .map(String::from)
    .into();
    args.push(root.display().to_string());
    args.push("-o".into());
    args.push(iso.display().to_string());
    args
}

/// Builds `work/kernel.iso` holding `kernel` and `conf`; installs the BIOS
/// stage when the release has its tool (required for `bios`).
pub fn build_iso(
    limine: &Limine,
    kernel: &Path,
    conf: &str,
    work: &Path,
    bios: bool,
) -> anyhow::Result<PathBuf> {
    let xorriso = crate::find_in_path("xorriso").context(
        "xorriso is missing: install the Debian package xorriso (apt-get install xorriso)",
    )?;
    let root = work.join("iso_root");
    let boot_dir = root.join("boot/limine");
    let efi_dir = root.join("EFI/BOOT");
    for dir in [&boot_dir, &efi_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let copies = [
        (kernel.to_path_buf(), root.join("boot/kernel")),
        (limine.dir.join("BOOTX64.EFI"), efi_dir.join("BOOTX64.EFI")),
    ]
    .into_iter()
    .chain(LIMINE_FILES[..3].iter().map(|file| (limine.dir.join(file), boot_dir.join(file))));
    for (from, to) in copies {
        std::fs::copy(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    std::fs::write(boot_dir.join("limine.conf"), conf).context("cannot write limine.conf")?;

    let iso = work.join("kernel.iso");
    run_quietly(Command::new(xorriso).args(xorriso_args(&root, &iso)), "xorriso")?;
    match (&limine.tool, bios) {
        (Some(tool), _) => {
            run_quietly(Command::new(tool).arg("bios-install").arg(&iso), "limine bios-install")?
        }
        (None, true) => bail!("the limine tool is needed for BIOS boot"),
        (None, false) => {}
    }
    Ok(iso)
}

fn run_quietly(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// OVMF for `--boot limine-uefi`, with a fresh copy of the variable store in `work`.
pub fn ovmf(work: &Path) -> anyhow::Result<Firmware> {
    let code =
        std::env::var_os("OVMF_CODE").map_or_else(|| PathBuf::from(OVMF_CODE), PathBuf::from);
    let vars =
        std::env::var_os("OVMF_VARS").map_or_else(|| PathBuf::from(OVMF_VARS), PathBuf::from);
    for file in [&code, &vars] {
        if !file.is_file() {
            bail!(
                "{} is missing: install the Debian package ovmf (apt-get install ovmf)",
                file.display()
            );
        }
    }
    let copy = work.join("OVMF_VARS.fd");
    std::fs::copy(&vars, &copy).with_context(|| format!("cannot copy {}", vars.display()))?;
    Ok(Firmware::Uefi { code, vars: copy })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO_STYLE_CONF: &str = "timeout: 0\n\n/SMP slab-heap kernel\n    protocol: limine\n    path: boot():/boot/kernel\n    cmdline:\n";

    #[test]
    fn fills_in_the_cmdline() {
        assert_eq!(
            rewrite_conf(REPO_STYLE_CONF, "heap=64M test_skip=1").unwrap(),
            "timeout: 0\n\n/SMP slab-heap kernel\n    protocol: limine\n    path: boot():/boot/kernel\n    cmdline: heap=64M test_skip=1\n"
        );
        let with_value = REPO_STYLE_CONF.replace("cmdline:", "CMDLINE: old=1");
        assert!(rewrite_conf(&with_value, "").unwrap().ends_with("    cmdline: \n"));
    }

    #[test]
    fn adds_a_missing_cmdline_after_the_path() {
        let conf =
            "timeout: 0\n/k\n  protocol: limine\n  path: boot():/boot/kernel\n  comment: x\n";
        assert_eq!(
            rewrite_conf(conf, "job=stress").unwrap(),
            "timeout: 0\n/k\n  protocol: limine\n  path: boot():/boot/kernel\n  cmdline: job=stress\n  comment: x\n"
        );
        assert!(rewrite_conf("timeout: 0\n", "x=1").is_err());
        let both = "/k\n  kernel_path: boot():/k\n  path: boot():/k\n/j\n  path: boot():/j\n";
        assert_eq!(
            rewrite_conf(both, "a=1").unwrap(),
            "/k\n  kernel_path: boot():/k\n  cmdline: a=1\n  path: boot():/k\n/j\n  path: boot():/j\n  cmdline: a=1\n"
        );
    }

    #[test]
    fn the_repo_conf_boots_boot_kernel() {
        let conf = std::fs::read_to_string(crate::loader::workspace_root().join("limine.conf"));
        if let Ok(conf) = conf {
            assert!(conf.contains("boot():/boot/kernel"), "limine.conf must name /boot/kernel");
            assert!(rewrite_conf(&conf, "heap=8M").unwrap().contains("cmdline: heap=8M"));
        }
    }

    #[test]
    fn limine_dir_defaults_to_the_vendored_copy() {
        let root = Path::new("/repo");
        assert_eq!(limine_dir(None, root), Path::new("/repo/third_party/limine"));
        assert_eq!(limine_dir(Some(OsStr::new("")), root), Path::new("/repo/third_party/limine"));
        assert_eq!(limine_dir(Some(OsStr::new("/opt/limine")), root), Path::new("/opt/limine"));
    }

    #[test]
    fn the_vendored_copy_is_a_whole_release() {
        let dir = crate::loader::workspace_root().join(VENDORED_LIMINE);
        for file in LIMINE_FILES.iter().chain(&["limine.c", "limine-bios-hdd.h", "LICENSE"]) {
            assert!(dir.join(file).is_file(), "{} is missing", dir.join(file).display());
        }
    }

    #[test]
    fn the_repo_conf_suits_limine_8_and_9() {
        let conf = std::fs::read_to_string(crate::loader::workspace_root().join("limine.conf"))
            .expect("limine.conf at the repo's top");
        let value = |key: &str| {
            conf.lines().find_map(|line| {
                let (k, v) = line.trim().split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        assert_eq!(value("kernel_path").as_deref(), Some("boot():/boot/kernel"), "Limine 8.x");
        assert_eq!(value("path").as_deref(), Some("boot():/boot/kernel"), "Limine 9.x");
        assert_eq!(value("serial").as_deref(), Some("yes"), "Limine's errors on COM1");
    }

    #[test]
    fn limine_dir_is_required_and_checked() {
        let error = find_limine(None, true).unwrap_err();
        assert!(error.contains("LIMINE_DIR") && error.contains("binary"), "{error}");
        assert!(find_limine(Some(OsStr::new("")), false).is_err());
        assert!(
            find_limine(Some(OsStr::new("/nonexistent/limine")), false)
                .unwrap_err()
                .contains("not a folder")
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("limine-bios.sys"), "").unwrap();
        let error = find_limine(Some(dir.path().as_os_str()), false).unwrap_err();
        assert!(
            error.contains("lacks limine-bios-cd.bin, limine-uefi-cd.bin, BOOTX64.EFI"),
            "{error}"
        );

        for file in LIMINE_FILES {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        let uefi = find_limine(Some(dir.path().as_os_str()), false).unwrap();
        assert_eq!(uefi.dir, dir.path());
        if crate::find_in_path("limine").is_none() {
            let error = find_limine(Some(dir.path().as_os_str()), true).unwrap_err();
            assert!(error.contains("make -C"), "{error}");
        }
        std::fs::write(dir.path().join("limine"), "").unwrap();
        assert_eq!(
            find_limine(Some(dir.path().as_os_str()), true).unwrap().tool,
            Some(dir.path().join("limine"))
        );
    }

    #[test]
    fn xorriso_makes_a_hybrid_image() {
        let args = xorriso_args(Path::new("/w/iso_root"), Path::new("/w/kernel.iso")).join(" ");
        assert_eq!(
            args,
            "-as mkisofs -R -r -J -b boot/limine/limine-bios-cd.bin -no-emul-boot -boot-load-size 4 \
             -boot-info-table --efi-boot boot/limine/limine-uefi-cd.bin -efi-boot-part --efi-boot-image \
             --protective-msdos-label /w/iso_root -o /w/kernel.iso"
        );
    }

    /// Lays out and builds an ISO from stand-in Limine files (needs xorriso).
    #[test]
    fn builds_an_iso_with_xorriso() {
        if crate::find_in_path("xorriso").is_none() {
            eprintln!("skipped: no xorriso");
            return;
        }
        let limine_dir = tempfile::tempdir().unwrap();
        for file in LIMINE_FILES {
            std::fs::write(limine_dir.path().join(file), vec![0_u8; 2048]).unwrap();
        }
        let kernel = limine_dir.path().join("kernel.elf");
        std::fs::write(&kernel, b"\x7fELF").unwrap();
        let work = tempfile::tempdir().unwrap();
        let limine = Limine { dir: limine_dir.path().into(), tool: None };
        let iso = build_iso(&limine, &kernel, "cmdline: x=1\n", work.path(), false).unwrap();
        assert!(std::fs::metadata(&iso).unwrap().len() > 0);
        assert_eq!(
            std::fs::read_to_string(work.path().join("iso_root/boot/limine/limine.conf")).unwrap(),
            "cmdline: x=1\n"
        );
        assert!(work.path().join("iso_root/boot/kernel").is_file());
        assert!(work.path().join("iso_root/EFI/BOOT/BOOTX64.EFI").is_file());
    }
}
