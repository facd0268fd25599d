//! The PVH entry: the Xen ELF note QEMU looks for, and the 32-bit code that
//! zeroes .bss, identity-maps the first 4 GiB (2 MiB pages, 3-4 GiB
//! uncached), enables PAE, long mode, NX and paging, loads the GDT and calls
//! `loader_main(start_info)` on the loader's stack. Also owns that GDT,
//! laid out as the Limine protocol requires at handoff.

use core::arch::global_asm;

/// The loader's own (BSP) stack, in .bss (it peaks near 100 KiB: the
/// memory-map work keeps fixed-size region arrays on the stack).
const LOADER_STACK_SIZE: usize = 256 * 1024;

/// The 64-bit code selector of the protocol's GDT layout.
pub const CODE64: u16 = 0x28;

unsafe extern "C" {
    /// First byte of the loader image (linker script).
    pub safe static __loader_start: u8;
    /// End of the loader image including .bss (linker script).
    pub safe static __loader_end: u8;
    /// The loader's PML4 (identity map below 4 GiB in entry 0).
    pub safe static boot_pml4: u8;
}

/// Size in bytes of the GDT (`loader_gdt`).
pub const GDT_SIZE: u64 = 7 * 8;

global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                     /* n_namesz: "Xen\0" */
    .long 8                     /* n_descsz */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_start32           /* 64-bit descriptor: low half */
    .long 0                     /*                    high half */

    .section .data.loader_gdt, "aw"
    .balign 16
    .global loader_gdt
loader_gdt:
    .quad 0                     /* 0x00 null */
    .quad 0x00009b000000ffff    /* 0x08 16-bit code, base 0, limit 0xffff */
    .quad 0x000093000000ffff    /* 0x10 16-bit data */
    .quad 0x00cf9b000000ffff    /* 0x18 32-bit code, base 0, limit 4 GiB */
    .quad 0x00cf93000000ffff    /* 0x20 32-bit data */
    .quad 0x00af9b000000ffff    /* 0x28 64-bit code */
    .quad 0x00cf93000000ffff    /* 0x30 64-bit data */
loader_gdt_end:
    .balign 8
loader_gdtr32:
    .word loader_gdt_end - loader_gdt - 1
    .long loader_gdt

    .section .rodata.pvh_messages, "a"
no_long_mode_msg:
    .asciz "pvh-loader: error: this CPU does not support long mode\r\n"

    .section .bss.boot_tables, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4 * 4096
boot_stack: .skip {stack_size}
boot_stack_top:

    .section .text.pvh_entry, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi              /* hvm_start_info (kept in esi) */

    mov $__bss_start, %edi      /* zero .bss (tables and stack included) */
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    mov $0x80000000, %eax       /* long mode available? */
    cpuid
    cmp $0x80000001, %eax
    jb 90f
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz 90f
    mov %edx, %ebp              /* extended features: NX is bit 20 */

    mov $boot_pdpt + 3, %eax    /* PML4[0] -> PDPT */
    mov %eax, boot_pml4
    mov $boot_pd + 3, %eax      /* PDPT[0..4] -> four PDs */
    xor %ecx, %ecx
1:  mov %eax, boot_pdpt(,%ecx,8)
    add $4096, %eax
    inc %ecx
    cmp $4, %ecx
    jb 1b
    xor %ecx, %ecx              /* PD entries: 2 MiB pages, 0..4 GiB */
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax              /* present, writable, large */
    cmp $1536, %ecx             /* 3..4 GiB (MMIO: APICs): PCD | PWT */
    jb 3f
    or $0x18, %eax
3:  mov %eax, boot_pd(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 2b

    lgdt loader_gdtr32
    mov $0x20, %eax             /* CR4: PAE only */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER: LME, and NXE if available */
    rdmsr
    or $0x100, %eax
    test $(1 << 20), %ebp
    jz 4f
    or $0x800, %eax
4:  wrmsr
    mov $0x80010033, %eax       /* CR0: PG WP NE ET MP PE */
    mov %eax, %cr0
    ljmp $0x28, $5f

    .code64
5:  mov $0x30, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    lea boot_stack_top(%rip), %rsp
    mov %esi, %edi              /* loader_main(start_info) */
    xor %ebp, %ebp
    call {main}
    ud2

    .code32
90: mov $no_long_mode_msg, %esi
91: lodsb
    test %al, %al
    jz 92f
    mov $0x3f8, %dx
    out %al, %dx
    jmp 91b
92: mov $0x11, %al              /* isa-debug-exit: QEMU status 35 */
    mov $0xf4, %dx
    out %al, %dx
93: hlt
    jmp 93b
    .code64
"#,
    stack_size = const LOADER_STACK_SIZE,
    main = sym crate::loader_main,
    options(att_syntax)
);
