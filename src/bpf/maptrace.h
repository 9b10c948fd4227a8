/* Kernel-side structs shared by the BPF programs and userspace (mirrored by src/probe/abi.rs via
 * the skeleton's generated types). */
#ifndef MAPTRACE_H
#define MAPTRACE_H

/* x86-64 register file as the kernel hands it to a uprobe program. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

#endif
