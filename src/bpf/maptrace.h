/* The one contract between the BPF programs and userspace: record and plan structs, and every
 * constant either side needs, as enums (not #defines) so that they are in the object's BTF and
 * the skeleton generates them for Rust (src/bpf/mod.rs re-exports them). Change them here only. */
#ifndef MAPTRACE_H
#define MAPTRACE_H

/* x86-64 register file as the kernel hands it to a uprobe program. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

enum limits {
	/* Largest number of key bytes captured per write (--key-bytes is capped to this). */
	KEY_MAX = 256,
	/* Key area of the short record used when --key-bytes is at most this and no stack is
	 * captured. */
	KEY_SMALL = 64,
	/* User stack frames captured per write with `trace --stack`. */
	STACK_MAX = 24,
	/* String fields followed inside a generic (struct/array) key. */
	PLAN_MAX_STRINGS = 4,
	/* The attach cookie: (link-time address of the probe point << COOKIE_ROLE_BITS) | role. The
	 * probe's runtime address minus the former is the load bias, so events carry link-time
	 * addresses (PIE too). */
	COOKIE_ROLE_BITS = 8,
};

/* What a ring-buffer record is: the first field of every record. */
enum record_type {
	REC_WRITE = 1,      /* struct write_event */
	REC_GROW_START = 2, /* struct grow_start */
	REC_GROW = 3,       /* struct grow_event */
};

/* Which runtime function fired (the low cookie bits of a write probe). */
enum probe_role : __u8 {
	ROLE_ASSIGN = 0,
	ROLE_ASSIGN_FAST32 = 1,
	ROLE_ASSIGN_FAST64 = 2,
	ROLE_ASSIGN_FAST64PTR = 3,
	ROLE_ASSIGN_FASTSTR = 4,
};

/* What a map operation did to its key: the op of a record and of an aggregation slot's key, so that
 * deletes and clears count apart from writes. */
enum map_op : __u8 {
	OP_WRITE = 0,  /* runtime.mapassign*: a key set */
	OP_DELETE = 1, /* runtime.mapdelete*: a key deleted */
	OP_CLEAR = 2,  /* clear(m) / (*Map).Clear: every key deleted */
};

/* How a generic runtime.mapassign key is captured (struct key_plan.kind). */
enum plan_kind : __u8 {
	PLAN_RAW = 0,      /* copy key_size bytes at the key pointer */
	PLAN_STRINGS = 1,  /* raw bytes, then the contents of each string field */
	PLAN_EFACE = 2,    /* interface{}: dynamic type, then its value (string contents or bytes) */
	PLAN_IFACE = 3,    /* interface with methods: the same, reached through the itab */
};

/* Bits of write_event.flags and grow_event.flags. */
enum event_flag : __u8 {
	EV_READ_FAILED = 1, /* a user-memory read failed: key bytes (or header) are incomplete */
	EV_NO_PLAN = 2,     /* generic key of a map type with no plan: raw bytes only */
	EV_TRUNCATED = 4,   /* key longer than captured */
};

/* map_ptr of a map whose header is on a goroutine stack: 1 << STACK_MAP_TAG_BIT |
 * goid << STACK_MAP_GOID_SHIFT | offset from the stack top (see map_identity). */
enum stack_map {
	STACK_MAP_GOID_SHIFT = 30,
	STACK_MAP_TAG_BIT = 63,
};

/* Go's type kinds (abi.Kind) the programs tell apart in interface keys: the low 5 bits of the
 * byte at GO_TYPE_KIND_OFFSET of a type descriptor. */
enum go_kind {
	GO_KIND_CHAN = 18,
	GO_KIND_FUNC = 19,
	GO_KIND_MAP = 21,
	GO_KIND_POINTER = 22,
	GO_KIND_STRING = 24,
	GO_KIND_UNSAFE_POINTER = 26,
	GO_KIND_MASK = 0x1f,
};

/* Offsets in Go's runtime structures the programs read. */
enum go_layout {
	GO_TYPE_KIND_OFFSET = 23, /* abi.Type.Kind_ (after Size_, PtrBytes, Hash, TFlag, Align_, FieldAlign_) */
	GO_ITAB_TYPE_OFFSET = 8,  /* abi.ITab.Type (after Inter) */
};

/* Computed in userspace from the map type's key type; keyed by the map type's link-time address. */
struct key_plan {
	__u32 key_size;
	enum plan_kind kind;
	__u8 nstrings;
	__u16 string_offsets[PLAN_MAX_STRINGS];
	__u16 _pad;
};

/* One map write, as sent through the ring buffer. The record is cut short to what it carries:
 * without stack capture it ends after the key area, and with --key-bytes <= KEY_SMALL the key
 * area is 2 * KEY_SMALL bytes (a smaller record costs less to reserve and to hand over). */
struct write_event {
	enum record_type type; /* REC_WRITE */
	__u32 pid;
	__u64 ts_ns;      /* with write_time only (0 otherwise) */
	__u64 map_type;   /* RAX: map type descriptor (link-time address) */
	__u64 map_ptr;    /* RBX: map header */
	__u64 site;       /* [RSP]: return address into the writing function (link-time) */
	__u64 goid;       /* with write_goid only (0 otherwise) */
	/* The map header's first 32 bytes before the write. Classic hmap: count@0, flags@8, B@9,
	 * noverflow@10, buckets@16, oldbuckets@24 (so word 1 is flags | B << 8 | noverflow << 16 |
	 * hash0 << 32). Swiss maps.Map: used@0, seed@8, dirPtr@16, dirLen@24. */
	__u64 header[4];
	__u16 stack_len;  /* frames in `stack` (0: the record ends before it) */
	enum map_op op;
	__u8 _pad;
	__u32 tid;
	__u32 key_len;    /* full key length in bytes (string length, or key size) */
	__u16 captured;   /* key bytes present in `key` */
	enum probe_role role;
	enum event_flag flags; /* bits */
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

/* The low cookie bits of a growth entry probe: its role, and whether its RET instructions are
 * left unprobed (budget mode, for growths of small maps: a probed RET is single-stepped, which
 * costs the target 10-60 us a hit where an emulated entry costs ~1.5 us). Such a growth is
 * recorded at its entry, with end_ns = start_ns (duration unknown). */
enum grow_cookie {
	GROW_ROLE_MASK = 0x7f,
	GROW_AT_ENTRY = 0x80,
};

/* One map growth, from the entry of a growth function to one of its RET instructions. Sent
 * through the same ring as write events, after them in the order they happened. */
struct grow_event {
	enum record_type type; /* REC_GROW */
	enum grow_role role;
	__u64 start_ns;
	__u64 end_ns;
	__u64 map_type;   /* link-time address of the map type */
	__u64 map_ptr;    /* runtime address of the map header (hmap or maps.Map) */
	__u64 goid;
	/* Classic: the hmap's words 0 and 1 (count, and flags | B << 8 | noverflow << 16 as in
	 * write_event.header) at entry and at RET. Swiss: used and the table's capacity at entry;
	 * `after` unused. */
	__u64 before[2];
	__u64 after[2];
	__u32 pid;
	__u32 tid;
	enum event_flag flags; /* EV_READ_FAILED */
};

/* Sent when a growth function is entered, so that userspace ties the growth to the write that
 * triggered it: the same thread's last write before this record in the ring (no other write can
 * come between them on that thread). The grow_event sent at RET carries the same start_ns and
 * tid. */
struct grow_start {
	enum record_type type; /* REC_GROW_START */
	__u32 pid;
	__u64 start_ns;
	__u32 tid;
};

/* Indexes of the counters array. Hits count whether the window is open or not: every hit
 * costs the target its trap (budget mode charges them all). */
enum counter {
	CNT_HITS = 0,        /* write (and delete, clear) probe hits that passed the pid filter */
	CNT_LOST = 1,        /* events the ring buffer had no room for */
	CNT_READ_FAILED = 2, /* events with a failed user-memory read */
	CNT_GROW_UNMATCHED = 3, /* RET probes of a growth function with no recorded entry */
	CNT_GROW_HITS = 4,   /* growth entry probe hits that passed the pid filter */
	CNT_GROW_RET_HITS = 5, /* growth RET probe hits that passed the pid filter */
	CNT_PROG_NS = 6,     /* with time_programs: ns spent in the write program's body */
	CNT_MAX = 7,
};

/* The enums no record or plan carries, named once so that the skeleton generates them too. */
struct contract {
	enum limits limits;
	enum stack_map stack_map;
	enum go_kind go_kind;
	enum go_layout go_layout;
	enum counter counter;
	enum grow_cookie grow_cookie;
};

#endif
