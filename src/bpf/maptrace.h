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
	/* The attach cookie: (link-time address of the probe point << COOKIE_ROLE_BITS) | flags
	 * (enum cookie_flag) | role (the low COOKIE_ROLE_MASK bits). The probe's runtime address
	 * minus the former is the load bias, so events carry link-time addresses (PIE too). */
	COOKIE_ROLE_BITS = 12,
	COOKIE_ROLE_MASK = 0xff,
	/* Slots of one aggregation set (see struct slot): a key may sit in any of them. */
	SLOT_WAYS = 4,
	/* Entries of the thread table (struct thread_state), indexed by thread id modulo this. */
	THREADS_MAX = 4096,
};

/* Bits of the attach cookie above its role. */
enum cookie_flag {
	/* The probe sits on the stack check's conditional branch (`JBE morestack`), not on the
	 * instruction after it: where that instruction would be single-stepped (Go 1.17-1.20 open
	 * with `SUBQ $N, SP` there) and the branch is emulated. The branch is not taken yet when the
	 * probe fires: a hit whose saved flags say it will be (stack_check_taken) is a function about
	 * to grow its stack and start again from its entry, where the probe fires again; only that
	 * hit counts. The arguments, [RSP] (the return address) and R14 (g) are what they are after
	 * the branch: nothing before it writes them. */
	COOKIE_STACK_CHECK = 0x100,
};

/* x86-64 RFLAGS bits (pt_regs.flags) that decide `JBE` (taken when CF or ZF is set). */
enum x86_flags {
	X86_FLAGS_CF = 0x1,
	X86_FLAGS_ZF = 0x40,
};

/* What a ring-buffer record is: the first field of every record. */
enum record_type {
	REC_WRITE = 1,      /* struct write_event */
	REC_GROW_START = 2, /* struct grow_start */
	REC_GROW = 3,       /* struct grow_event */
	REC_HEADER = 4,     /* struct header_event */
	REC_ALARM = 5,      /* struct alarm_event */
};

/* Which runtime function fired (the low cookie bits of a map probe). Its arguments fix how the
 * key is read: RAX = map type, RBX = map header, then the key as below. */
enum probe_role : __u8 {
	ROLE_ASSIGN = 0,           /* RCX = key pointer, decoded by the map type's plan */
	ROLE_ASSIGN_FAST32 = 1,    /* ECX = 4-byte key */
	ROLE_ASSIGN_FAST64 = 2,    /* RCX = 8-byte key */
	ROLE_ASSIGN_FAST64PTR = 3, /* RCX = pointer key */
	ROLE_ASSIGN_FASTSTR = 4,   /* RCX, RDI = string data, length */
	/* runtime.mapdelete* (and reflect.mapdelete* where they do not call those): the arguments
	 * of the assign function of the same suffix (pointer keys use mapdelete_fast64). */
	ROLE_DELETE = 5,
	ROLE_DELETE_FAST32 = 6,
	ROLE_DELETE_FAST64 = 7,
	ROLE_DELETE_FASTSTR = 8,
	/* runtime.mapclear(t, h) (and reflect.mapclear where it does not call it): no key. */
	ROLE_CLEAR = 9,
	/* sync.Map (see syncmap.bpf.h): methods of sync.(*Map) before Go 1.24 (RAX = the map, RBX,
	 * RCX = the key, an interface{}), of the hash-trie behind it from Go 1.24
	 * (internal/sync.(*HashTrieMap[any,any]): RAX = the map, RBX = the generic dictionary,
	 * RCX, RDI = the key). Stores and clears count at the entry; the others by their result at
	 * RET (RAX, RBX, RCX = the results). */
	ROLE_SYNC_STORE = 16,         /* Store, Swap: always store */
	ROLE_SYNC_LOAD_OR_STORE = 17, /* stores when it did not load (RCX = loaded) */
	ROLE_SYNC_CAS = 18,           /* CompareAndSwap: stores when it swapped (RAX) */
	ROLE_SYNC_LOAD_AND_DELETE = 19, /* LoadAndDelete (Delete): deletes when it loaded (RCX) */
	ROLE_SYNC_CAD = 20,           /* CompareAndDelete: deletes when it deleted (RAX) */
	ROLE_SYNC_CLEAR = 21,         /* Clear */
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
	EV_HEADER = 8,      /* `header` was read (map headers are read at a sampled rate) */
	/* The write took aggregation slot `slot` for its key (generation `slot_gen`): the slot counts
	 * it, not this record; `evicted` is the final count of the slot's previous generation. */
	EV_SLOT = 16,
};

/* write_event.map_type of a sync.Map operation: not a type descriptor's address (those are
 * aligned), so sync.Maps are told apart from runtime maps by it. */
enum sync_map {
	SYNC_MAP_TYPE = 1,
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

/* One map operation (a write, a delete or a clear: `op`), as sent through the ring buffer: every
 * one when each is wanted (`trace`, stacks), else (counts aggregated in the kernel, see struct
 * slot) only one that takes an aggregation slot for its key (EV_SLOT: its key crosses to
 * userspace once) or that could not be aggregated (counted from this record). The record is cut
 * short to what it carries: without stack capture it ends after the key area, and with
 * --key-bytes <= KEY_SMALL the key area is 2 * KEY_SMALL bytes (a smaller record costs less to
 * reserve and to hand over). */
struct write_event {
	enum record_type type; /* REC_WRITE */
	__u32 pid;
	__u64 ts_ns;      /* with write_time only (0 otherwise) */
	__u64 map_type;   /* RAX: map type descriptor (link-time address) */
	__u64 map_ptr;    /* map identity: RBX, the header's address (see map_identity) */
	__u64 site;       /* [RSP]: return address into the writing function (link-time) */
	__u64 goid;       /* with write_goid only (0 otherwise) */
	/* With EV_HEADER: the map header's first 32 bytes before the operation. Classic hmap:
	 * count@0, flags@8, B@9, noverflow@10, buckets@16, oldbuckets@24 (so word 1 is flags | B << 8
	 * | noverflow << 16 | hash0 << 32). Swiss maps.Map: used@0, seed@8, dirPtr@16, dirLen@24.
	 * A sync.Map has no header (no EV_HEADER): words 0-2 are the return addresses of the next
	 * three frames out (link-time, 0 where the frame-pointer walk ends), word 3 is 0. */
	__u64 header[4];
	__u64 slot_gen;   /* with EV_SLOT */
	__u64 evicted;    /* with EV_SLOT */
	__u32 slot;       /* with EV_SLOT: index in the slots array */
	__u32 tid;
	__u32 key_len;    /* full key length in bytes (string length, or key size) */
	__u16 captured;   /* key bytes present in `key` */
	__u16 stack_len;  /* frames in `stack` (0: the record ends before it) */
	enum probe_role role;
	enum event_flag flags; /* bits */
	enum map_op op;
	__u8 _pad[5];
	/* At most KEY_MAX bytes are used; the area is twice that because the verifier bounds a
	 * copy's offset and length separately and needs room for the largest of each. Pointer words
	 * of string fields in generic keys are zero: a key is identified by its strings' contents. */
	__u8 key[2 * KEY_MAX];
	/* With capture_stack: the frame-pointer walk from the probe (frame 0 is the probe's own
	 * function; the direct caller is `site`, which the walk skips), link-time addresses. */
	__u64 stack[STACK_MAX];
};

/* The kernel's hot-key index: per CPU, sets of SLOT_WAYS slots, each counting the writes of one
 * (map, site, op, key) — the whole key, compared on every write; its fingerprint only picks the
 * set (CPU * slot_sets + fingerprint % slot_sets), so a fingerprint collision costs a slot, never
 * a wrong count. A write whose key is in no slot of its set takes the one written least since
 * userspace last drained it, and sends the key once (a write_event with EV_SLOT, carrying the
 * count of the key it evicted). Userspace maps the array and reads counts in place.
 * `seq` is a sequence lock: odd while a program changes the slot (sleepable programs can be
 * preempted by another one on the same CPU: that one then sends its write as a record). */
struct slot {
	__u64 seq;
	__u64 gen;        /* 0: never used; + 1 each time the slot takes a key */
	__u64 count;      /* writes of this generation's key */
	__u64 drained;    /* written by userspace: `count` when it last read the slot */
	__u64 fp;
	__u64 map_type;
	__u64 map_ptr;
	__u64 site;
	__u32 key_len;
	__u16 captured;
	enum probe_role role;
	enum map_op op;
	__u8 key[KEY_MAX]; /* `captured` bytes, then zeros to the next 8-byte word */
};

/* Per thread (entry tid % THREADS_MAX, owned by the thread whose id it holds): its last write,
 * for the growth it may trigger, and in budget mode its writes in the current window. */
struct thread_state {
	__u32 tid;
	__u32 slot;       /* the last write's slot, with gen != 0 */
	__u64 gen;        /* 0: the last write went as a record */
	__u64 _pad[6];    /* a cache line each: threads on other CPUs write their neighbours */
};

/* A map header read at a sampled write that sent no record. */
struct header_event {
	enum record_type type; /* REC_HEADER */
	__u32 tid;
	__u64 map_type;
	__u64 map_ptr;
	__u64 header[4];
};

/* Budget mode's alarm (see window_alarm): sent with a forced wakeup, so that the loop asleep on
 * the ring looks at the probe hits at once. It carries nothing else. */
struct alarm_event {
	enum record_type type; /* REC_ALARM */
	__u32 unused;
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
	/* With trigger_gen != 0 the triggering write was counted in slot `trigger_slot` (its key is
	 * that slot's generation trigger_gen); else it is the thread's last write record. */
	__u32 trigger_slot;
	__u64 trigger_gen;
};

/* Indexes of the counters array. Hits count whether the window is open or not: every hit
 * costs the target its trap (budget mode charges them all). */
enum counter {
	CNT_HITS = 0,        /* write (and delete, clear) probe hits that passed the pid filter */
	/* Map operations (writes, deletes, clears, sync.Map operations) the ring buffer had no
	 * room for: each one neither observed nor counted anywhere else, so observed + lost is
	 * every operation the probes saw (growth records lost count apart, CNT_GROW_LOST). */
	CNT_LOST = 1,
	CNT_READ_FAILED = 2, /* events with a failed user-memory read */
	CNT_GROW_UNMATCHED = 3, /* RET probes of a growth function with no recorded entry */
	CNT_GROW_HITS = 4,   /* growth entry probe hits that passed the pid filter */
	CNT_GROW_RET_HITS = 5, /* growth RET probe hits that passed the pid filter */
	CNT_PROG_NS = 6,     /* with time_programs: ns spent in the write program's body (map
	                      * operations only: CNT_PROG_RUNS of them) */
	CNT_SLOT_TAKEN = 7,  /* writes that took an aggregation slot for their key (a record each) */
	CNT_EVICTED = 8,     /* ...of those, slots taken from another key */
	CNT_COLLISIONS = 9,  /* writes whose key met another key's fingerprint in its set */
	CNT_AS_RECORD = 10,  /* writes that could not be aggregated and went as records */
	CNT_GROW_LOST = 11,  /* growth records (grow_start, grow_event) the ring had no room for */
	/* Probe hits on a stack check's branch (COOKIE_STACK_CHECK) whose function was about to
	 * grow its stack and start again: not counted (the re-entry is), but each is a hit that cost
	 * the target its trap (CNT_HITS, CNT_GROW_HITS). Map operations' (writes, deletes, clears,
	 * sync.Map entries) and growth entries' apart. */
	CNT_STACK_REENTRY = 12,
	CNT_GROW_STACK_REENTRY = 13,
	/* sync.Map methods' RET probe hits that passed the pid filter (counted in CNT_HITS too):
	 * single-stepped, so budget mode charges them at a single step's cost. */
	CNT_SYNC_RET_HITS = 14,
	/* with time_programs: the write program's timed runs (CNT_PROG_NS is their time) */
	CNT_PROG_RUNS = 15,
	CNT_MAX = 16,
};

/* The enums no record or plan carries, named once so that the skeleton generates them too. */
struct contract {
	enum limits limits;
	enum sync_map sync_map;
	enum stack_map stack_map;
	enum go_kind go_kind;
	enum go_layout go_layout;
	enum counter counter;
	enum grow_cookie grow_cookie;
	enum cookie_flag cookie_flag;
	enum x86_flags x86_flags;
};

#endif
