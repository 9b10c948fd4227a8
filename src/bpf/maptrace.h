/* Kernel-side structs shared by the BPF programs and userspace. The skeleton generates Rust
 * types for them (src/bpf/mod.rs re-exports those); change them here only. */
#ifndef MAPTRACE_H
#define MAPTRACE_H

/* x86-64 register file as the kernel hands it to a uprobe program. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

/* Largest number of key bytes captured per write (--key-bytes is capped to this). */
#define KEY_MAX 256
/* Key area of the short record used when --key-bytes is at most this and no stack is captured. */
#define KEY_SMALL 64
/* User stack frames captured per write with `trace --stack`. */
#define STACK_MAX 24
/* String fields followed inside a generic (struct/array) key. */
#define PLAN_MAX_STRINGS 4

/* The attach cookie: (link-time address of the probe point << 8) | role. The probe's runtime
 * address minus the former is the load bias, so events carry link-time addresses (PIE too). */
#define COOKIE_ROLE_BITS 8
/* Which runtime function fired. */
enum probe_role {
	ROLE_ASSIGN = 0,
	ROLE_ASSIGN_FAST32 = 1,
	ROLE_ASSIGN_FAST64 = 2,
	ROLE_ASSIGN_FAST64PTR = 3,
	ROLE_ASSIGN_FASTSTR = 4,
};

/* How a generic runtime.mapassign key is captured (value of struct key_plan.kind). */
enum plan_kind {
	PLAN_RAW = 0,      /* copy key_size bytes at the key pointer */
	PLAN_STRINGS = 1,  /* raw bytes, then the contents of each string field */
	PLAN_EFACE = 2,    /* interface{}: dynamic type, then its value (string contents or bytes) */
	PLAN_IFACE = 3,    /* interface with methods: the same, reached through the itab */
};

/* Computed in userspace from the map type's key type; keyed by the map type's link-time address. */
struct key_plan {
	__u32 key_size;
	__u8 kind;
	__u8 nstrings;
	__u16 string_offsets[PLAN_MAX_STRINGS];
	__u16 _pad;
};

/* event.flags */
#define EV_READ_FAILED 1   /* a user-memory read failed: key bytes are incomplete */
#define EV_NO_PLAN 2       /* generic key of a map type with no plan: raw bytes only */
#define EV_TRUNCATED 4     /* key longer than captured */

/* map_ptr of a map whose header is on a goroutine stack: this bit | goid << 30 | offset from
 * the stack top (see map_identity). */
#define STACK_MAP_TAG (1ULL << 63)

/* One map write, as sent through the ring buffer. The record is cut short to what it carries:
 * without stack capture it ends after the key area, and with --key-bytes <= KEY_SMALL the key
 * area is 2 * KEY_SMALL bytes (a smaller record costs less to reserve and to hand over). */
struct write_event {
	__u64 ts_ns;      /* with write_time only (0 otherwise) */
	__u64 map_type;   /* RAX: map type descriptor (link-time address) */
	__u64 map_ptr;    /* RBX: map header */
	__u64 site;       /* [RSP]: return address into the writing function (link-time) */
	__u64 goid;       /* with write_goid only (0 otherwise) */
	/* The map header's first 32 bytes before the write. Classic hmap: count@0, flags@8, B@9,
	 * noverflow@10, buckets@16, oldbuckets@24. Swiss maps.Map: used@0, seed@8, dirPtr@16,
	 * dirLen@24. */
	__u64 header[4];
	__u32 stack_len;  /* frames in `stack` (0: the record ends before it) */
	__u32 pid;
	__u32 tid;
	__u32 key_len;    /* full key length in bytes (string length, or key size) */
	__u16 captured;   /* key bytes present in `key` */
	__u8 role;
	__u8 flags;
	/* At most KEY_MAX bytes are used; the area is twice that because the verifier bounds a
	 * copy's offset and length separately and needs room for the largest of each. */
	__u8 key[2 * KEY_MAX];
	/* With capture_stack: the frame-pointer walk from the probe (frame 0 is the probe's own
	 * function; the direct caller is `site`, which the walk skips), link-time addresses. */
	__u64 stack[STACK_MAX];
};

/* Growth functions: the role in the low cookie bits (the high bits are the probe's link-time
 * address, as for writes). */
enum grow_role {
	GROW_HASHGROW = 1,      /* classic runtime.hashGrow(t, h): RAX = type, RBX = hmap */
	GROW_TO_SMALL = 2,      /* swiss (*Map).growToSmall(typ): RAX = map, RBX = type */
	GROW_TO_TABLE = 3,      /* swiss (*Map).growToTable(typ): RAX = map, RBX = type */
	GROW_REHASH = 4,        /* swiss (*table).rehash(typ, m): RAX = table, RBX = type, RCX = map */
};

/* One map growth, from the entry of a growth function to one of its RET instructions. Sent
 * through the same ring as write events; userspace tells them apart by size (a write record is
 * always the whole, larger struct write_event). */
struct grow_event {
	__u64 start_ns;
	__u64 end_ns;
	__u64 map_type;   /* link-time address of the map type */
	__u64 map_ptr;    /* runtime address of the map header (hmap or maps.Map) */
	__u64 goid;
	__u64 before[2];  /* classic: count, B | noverflow << 8 | flags << 24; swiss: used, table capacity */
	__u64 after[2];   /* classic: count, B | noverflow << 8 | flags << 24 at RET; swiss: unused */
	__u32 pid;
	__u32 tid;
	__u32 role;
	__u32 flags;      /* EV_READ_FAILED */
};

/* Sent when a growth function is entered, so that userspace ties the growth to the write that
 * triggered it: the same thread's last write before this record in the ring (no other write can
 * come between them on that thread). The grow_event sent at RET carries the same start_ns and
 * tid. Told apart from the other records by its size. */
struct grow_start {
	__u64 start_ns;
	__u32 pid;
	__u32 tid;
};

/* Indexes of the counters array. */
enum counter {
	CNT_HITS = 0,        /* probe hits that passed the pid filter */
	CNT_LOST = 1,        /* events the ring buffer had no room for */
	CNT_READ_FAILED = 2, /* events with a failed user-memory read */
	CNT_GROW_UNMATCHED = 3, /* RET probes of a growth function with no recorded entry */
	CNT_MAX = 4,
};

#endif
