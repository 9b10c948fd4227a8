// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Probes placed after the stack check of Go's map-assign, map-delete and map-clear functions
 * (or on its branch, where the instruction after it would be single-stepped: see
 * COOKIE_STACK_CHECK):
 * every write, delete and clear is counted in the kernel (aggregate.bpf.h), or becomes one
 * ring-buffer record with its map, key bytes, call site and goroutine when each is wanted. The
 * attach cookie says which function fired; generic keys are read by plans computed in
 * userspace. The programs are sleepable so that reads of not-yet-faulted pages (type
 * descriptors in .rodata, fresh heap) fault them in instead of failing (bpf_copy_from_user,
 * tried only when the cheaper non-faulting read fails). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "maptrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A probe's two programs, both running `handler`: `name`_multi for one uprobe_multi link over all
 * its points (kernel >= 6.6), `name` for one classic uprobe link per point where that is missing
 * (probe::session picks). */
#define UPROBE_PROGRAMS(name, handler)                                                     \
	SEC("uprobe.multi.s")                                                              \
	int name##_multi(struct pt_regs *ctx)                                              \
	{                                                                                  \
		return handler(ctx);                                                       \
	}                                                                                  \
	SEC("uprobe.s")                                                                    \
	int name(struct pt_regs *ctx)                                                      \
	{                                                                                  \
		return handler(ctx);                                                       \
	}

const volatile __u32 target_tgid = 0;
const volatile __u32 goid_offset = 0;
const volatile __u32 key_bytes = 64;
const volatile __u32 capture_stack = 0;
/* Each write's time (budget mode's estimates, `trace`) and goroutine id (`trace`): costs per
 * write that exact counting does without. */
const volatile __u32 write_time = 0;
const volatile __u32 write_goid = 0;
/* Budget mode: measure the write program's own run time in place (CNT_PROG_NS), which userspace
 * sets against the calibration's to estimate what a probed write costs this target. */
const volatile __u32 time_programs = 0;

/* Whether writes and growths are recorded now. Userspace opens the window once the probes are
 * attached and closes it before detaching, so that a budget window's counts match the target's
 * CPU time read at its edges exactly; hits outside it only count (CNT_HITS, CNT_GROW_HITS).
 * Exact mode keeps it open. Written by userspace through the mapped .bss. */
__u32 window_open = 0;

/* Budget mode, while a window is open: the probe hits it may still take before the loop must
 * look at what they cost (a window kept open because the probes cost less than the budget so
 * far, or a planned one, which a burst may overspend). The hit that spends the last one wakes
 * the loop at once (REC_ALARM), so that a load which starts or bursts while the loop sleeps is
 * not probed at full cost until its next look. 0 or less: off (exact mode, gaps). Written by
 * userspace through the mapped .bss. */
__s64 window_alarm = 0;

/* Aggregation sets per CPU (a power of two; see struct slot); 0: every write as a record. */
const volatile __u32 slot_sets = 0;
/* Counting in the kernel, a map header is read at every write that takes a slot (a key new to
 * the map is one of those) or goes as a record, and at every this many writes of a slot's key (a
 * power of two): a length is the newest header's plus the keys new since, exact either way. */
const volatile __u32 header_every = 1024;
/* Tests: a fingerprint that ignores the key's bytes, so that keys collide (see aggregate.bpf.h). */
const volatile __u32 weak_fingerprint = 0;

/* The first ring the records (struct write_event, grow_start, grow_event) go to; its size is
 * set at load time (probe::load). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
} events SEC(".maps");

/* The ring the records go to now: `events` at load; userspace puts a larger ring in its place
 * when a quarter of the one in use waits to be read (pipeline::ring). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_RINGBUF);
		__uint(max_entries, 4096);
	});
} rings SEC(".maps") = {
	.values = {[0] = &events},
};

/* The ring in use (never absent: slot 0 always holds one). */
static __always_inline void *ring(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&rings, &zero);
}

/* bpf_ringbuf_output/reserve on the ring in use; -1/NULL if there is none. */
#define ring_output(data, size, flags)                                                     \
	({                                                                                 \
		void *rb_ = ring();                                                        \
		rb_ ? bpf_ringbuf_output(rb_, data, size, flags) : -1;                      \
	})
#define ring_reserve(size)                                                                 \
	({                                                                                 \
		void *rb_ = ring();                                                        \
		rb_ ? bpf_ringbuf_reserve(rb_, size, 0) : (void *)0;                        \
	})

/* counter index -> count (per CPU: no contention on the hot path). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* map type descriptor (runtime address) -> how to capture its keys in runtime.mapassign. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct key_plan);
} plans SEC(".maps");

/* Growths: entered but not yet returned, by goroutine id (a goroutine may move to another
 * thread inside the growth function, e.g. when it allocates). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct grow_event);
} grows_inflight SEC(".maps");

/* The aggregation slots, CPU * slot_sets * SLOT_WAYS of them (sized at load time); userspace
 * maps them and reads the counts in place. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct slot);
} slots SEC(".maps");

/* tid % THREADS_MAX -> where the thread's last write was counted (for the growth it triggers). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, THREADS_MAX);
	__type(key, __u32);
	__type(value, struct thread_state);
} threads SEC(".maps");

/* Maps (by identity) that saw a delete or a clear: every operation on them goes as a record (see
 * churned() in aggregate.bpf.h). When it is full, churn_overflow sends every one as a record. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} churned_maps SEC(".maps");

__u32 churn_overflow = 0;
/* Set before the first insert into churned_maps: until then no write looks a map up there. */
__u32 churned_any = 0;

/* Where a write is put together before it is counted: two per CPU, each claimed by a flag (a
 * sleepable program can be preempted by another one on the same CPU). */
struct scratch {
	__u64 busy;
	struct write_event e;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct write_event _event = {};
struct slot _slot = {};
struct thread_state _thread = {};
struct header_event _header_event = {};
struct grow_event _grow_event = {};
struct grow_start _grow_start = {};
struct key_plan _plan = {};
struct contract _contract = {};

/* Adds `v` to counter `idx` on this CPU. Atomic: a sleepable program can be preempted by another
 * one on the same CPU. */
static __always_inline void add(__u32 idx, __u64 v)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &idx);
	if (n)
		__sync_fetch_and_add(n, v);
}

static __always_inline void count(__u32 idx)
{
	add(idx, 1);
}

/* One more probe hit against window_alarm (see there). */
static __always_inline void hit_alarm(void)
{
	struct alarm_event a = {.type = REC_ALARM};

	if (window_alarm > 0 && __sync_fetch_and_add(&window_alarm, -1) == 1)
		ring_output(&a, sizeof(a), BPF_RB_FORCE_WAKEUP);
}

/* Whether this hit is on a stack check's branch (COOKIE_STACK_CHECK) that is about to be taken:
 * the saved flags of the check's CMP have CF or ZF set, so `JBE` goes to morestack and the
 * function starts again from its entry, where this probe fires again. Such a hit is not the
 * operation (its re-entry is): counted in `counter` only (CNT_STACK_REENTRY,
 * CNT_GROW_STACK_REENTRY). */
static __always_inline int stack_check_taken(struct pt_regs *ctx, __u64 cookie, __u32 counter)
{
	if (!(cookie & COOKIE_STACK_CHECK) || !(ctx->flags & (X86_FLAGS_CF | X86_FLAGS_ZF)))
		return 0;
	count(counter);
	return 1;
}

/* Reads user memory: first without faulting (the cheap path: the page is almost always
 * present), and only if that fails with the sleepable copy that can fault the page in. */
static __always_inline long read_user(void *dst, __u32 len, const void *src)
{
	if (bpf_probe_read_user(dst, len, src) == 0)
		return 0;
	return bpf_copy_from_user(dst, len, src);
}

/* Copies `len` user bytes to e->key[at..] of a key area of `cap` bytes (a power of two);
 * returns bytes copied. */
static __always_inline __u32 capture(struct write_event *e, __u32 at, const void *src, __u32 len,
				     const __u32 cap)
{
	__u32 room;
	if (at >= key_bytes || at >= cap)
		return 0;
	room = key_bytes - at;
	if (len > room)
		len = room;
	if (len == 0)
		return 0;
	/* Bounds the verifier can see: the barriers keep clang from dropping masks it can prove
	 * redundant. */
	asm volatile("" : "+r"(at));
	asm volatile("" : "+r"(len));
	at &= cap - 1;
	len &= cap - 1 + cap;
	if (at + len > cap)
		return 0;
	if (read_user(&e->key[at], len, src) != 0) {
		e->flags |= EV_READ_FAILED;
		return 0;
	}
	return len;
}

/* An interface value (type word: the dynamic type, or with `iface` the itab; data word) as its
 * dynamic type's link-time address, then the value: a string's contents, a pointer-shaped
 * value itself, or up to 32 bytes at the data pointer. Returns bytes captured. */
static __always_inline __u32 capture_eface(struct write_event *e, __u64 dyn_type, __u64 data,
					   int iface, __u64 bias, const __u32 cap)
{
	__u64 str[2] = {};
	__u8 kind = 0;
	__u64 size = 0;

	if (iface && dyn_type)
		read_user(&dyn_type, 8, (void *)(dyn_type + GO_ITAB_TYPE_OFFSET));
	if (!dyn_type) {
		__builtin_memcpy(&e->key[0], &dyn_type, 8);
		e->key_len = 8;
		return 8;
	}
	{
		__u64 link_type = dyn_type - bias; /* userspace resolves link-time addresses */
		__builtin_memcpy(&e->key[0], &link_type, 8);
	}
	read_user(&kind, 1, (void *)(dyn_type + GO_TYPE_KIND_OFFSET));
	read_user(&size, 8, (void *)dyn_type);
	kind &= GO_KIND_MASK;
	if (kind == GO_KIND_STRING) { /* data -> string header */
		if (read_user(str, sizeof(str), (void *)data) != 0) {
			e->flags |= EV_READ_FAILED;
			return 8;
		}
		e->key_len = 8 + str[1];
		return 8 + capture(e, 8, (void *)str[0], str[1] > KEY_MAX ? KEY_MAX : str[1], cap);
	}
	if (kind == GO_KIND_POINTER || kind == GO_KIND_UNSAFE_POINTER || kind == GO_KIND_CHAN ||
	    kind == GO_KIND_MAP || kind == GO_KIND_FUNC) {
		/* pointer-shaped: the data word is the value */
		__builtin_memcpy(&e->key[8], &data, 8);
		e->key_len = 16;
		return 16;
	}
	if (size > 32)
		size = 32;
	e->key_len = 8 + size;
	return 8 + capture(e, 8, (void *)data, size, cap);
}

static __always_inline __u32 capture_generic(struct write_event *e, void *keyp, __u64 bias,
					     const __u32 cap)
{
	struct key_plan *plan = bpf_map_lookup_elem(&plans, &e->map_type);
	__u32 got, at;
	if (!plan) {
		e->flags |= EV_NO_PLAN;
		e->key_len = 16;
		return capture(e, 0, keyp, 16, cap);
	}
	if (plan->kind == PLAN_EFACE || plan->kind == PLAN_IFACE) {
		/* eface/iface: word 0 = type (eface) or itab (iface), word 1 = data pointer */
		__u64 words[2] = {};
		if (read_user(words, sizeof(words), keyp) != 0) {
			e->flags |= EV_READ_FAILED;
			return 0;
		}
		return capture_eface(e, words[0], words[1], plan->kind == PLAN_IFACE, bias, cap);
	}
	e->key_len = plan->key_size;
	got = capture(e, 0, keyp, plan->key_size, cap);
	if (plan->kind != PLAN_STRINGS)
		return got;
	at = got;
#pragma unroll
	for (int i = 0; i < PLAN_MAX_STRINGS; i++) {
		__u64 hdr[2];
		__u16 off;
		if (i >= plan->nstrings)
			break;
		off = plan->string_offsets[i];
		if (off + 16 > got)
			break;
		off &= cap - 1;
		if (off + 16 > cap)
			break;
		__builtin_memcpy(hdr, &e->key[off], 16);
		/* Equal keys are equal whatever their strings' addresses: identify by contents. */
		__builtin_memset(&e->key[off], 0, 8);
		e->key_len += hdr[1];
		at += capture(e, at, (void *)hdr[0], hdr[1] > KEY_MAX ? KEY_MAX : hdr[1], cap);
	}
	return at;
}

/* A map header on the running goroutine's stack (a local map that does not escape) moves when
 * the stack is copied; its offset from the stack top does not. Such maps are identified by
 * 1 << STACK_MAP_TAG_BIT | goid << 30 | (g.stack.hi - header) instead of their address (R14 = g, whose
 * first field is g.stack = {lo, hi} in every Go version). A live header below RSP is
 * impossible, so only headers above it cost the read of g.stack; only stack maps cost the goid
 * (unless the write already has it). Needs the goid offset. */
static __always_inline __u64 map_identity(struct pt_regs *ctx, __u64 ptr, __u64 goid)
{
	__u64 stk[2];

	if (!goid_offset || ptr < ctx->sp || ptr - ctx->sp >= (1ULL << STACK_MAP_GOID_SHIFT))
		return ptr;
	if (read_user(stk, sizeof(stk), (void *)ctx->r14) != 0)
		return ptr;
	if (ptr < stk[0] || ptr >= stk[1] || stk[1] - ptr >= (1ULL << STACK_MAP_GOID_SHIFT))
		return ptr;
	if (!goid && read_user(&goid, 8, (void *)(ctx->r14 + goid_offset)) != 0)
		return ptr;
	return (1ULL << STACK_MAP_TAG_BIT) | ((goid & 0x1ffffffffULL) << STACK_MAP_GOID_SHIFT) | (stk[1] - ptr);
}

/* The operation the map function that fired performs (its role is in the attach cookie). */
static __always_inline enum map_op cookie_op(__u64 cookie)
{
	enum probe_role role = cookie & COOKIE_ROLE_MASK;

	switch (role) {
	case ROLE_DELETE:
	case ROLE_DELETE_FAST32:
	case ROLE_DELETE_FAST64:
	case ROLE_DELETE_FASTSTR:
		return OP_DELETE;
	case ROLE_CLEAR:
		return OP_CLEAR;
	default:
		return OP_WRITE;
	}
}

/* The map header's first words into e->header (EV_HEADER when read). */
static __always_inline void read_header(struct pt_regs *ctx, struct write_event *e)
{
	if (read_user(e->header, sizeof(e->header), (void *)ctx->bx) == 0)
		e->flags |= EV_HEADER;
	else
		__builtin_memset(e->header, 0, sizeof(e->header));
}

#include "aggregate.bpf.h"

/* Fills `e` (a ring record or a scratch buffer, with a key area of 2 * `cap` bytes) with one
 * operation's map, site, key and, when `with_header`, the map header (`cookie`: the probe's
 * attach cookie, read once per hit); returns the load bias.
 * `cap` is a constant at each call, so each shape is verified on its own: the verifier bounds a
 * copy's offset and length separately, so it needs room for the largest of each. */
static __always_inline __u64 fill_event(struct pt_regs *ctx, struct write_event *e,
					__u64 pid_tgid, __u64 cookie, enum map_op op,
					const __u32 cap, int with_header)
{
	enum probe_role role = cookie & COOKIE_ROLE_MASK;
	__u64 bias = ctx->ip - (cookie >> COOKIE_ROLE_BITS);
	__u32 captured = 0;

	e->type = REC_WRITE;
	e->ts_ns = write_time ? bpf_ktime_get_ns() : 0;
	e->map_type = ctx->ax - bias;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->role = role;
	e->op = op;
	e->flags = 0;
	e->site = 0;
	e->goid = 0;
	e->stack_len = 0;
	e->slot = 0;
	e->slot_gen = 0;
	e->evicted = 0;
	read_user(&e->site, 8, (void *)ctx->sp);
	e->site -= bias;
	if (with_header)
		read_header(ctx, e);
	if (write_goid && goid_offset)
		read_user(&e->goid, 8, (void *)(ctx->r14 + goid_offset));
	e->map_ptr = map_identity(ctx, ctx->bx, e->goid);

	switch (role) {
	case ROLE_ASSIGN_FASTSTR:
	case ROLE_DELETE_FASTSTR:
		e->key_len = ctx->di;
		captured = capture(e, 0, (void *)ctx->cx, ctx->di > KEY_MAX ? KEY_MAX : ctx->di, cap);
		break;
	case ROLE_ASSIGN_FAST32:
	case ROLE_DELETE_FAST32:
		e->key_len = 4;
		__builtin_memcpy(&e->key[0], &ctx->cx, 4);
		captured = 4;
		break;
	case ROLE_ASSIGN_FAST64:
	case ROLE_ASSIGN_FAST64PTR:
	case ROLE_DELETE_FAST64:
		e->key_len = 8;
		__builtin_memcpy(&e->key[0], &ctx->cx, 8);
		captured = 8;
		break;
	case ROLE_CLEAR:
		e->key_len = 0;
		break;
	default: /* ROLE_ASSIGN, ROLE_DELETE */
		captured = capture_generic(e, (void *)ctx->cx, bias, cap);
		break;
	}
	if (e->key_len > captured && !(e->flags & EV_READ_FAILED))
		e->flags |= EV_TRUNCATED;
	if (e->flags & EV_READ_FAILED)
		count(CNT_READ_FAILED);
	e->captured = captured;
	return bias;
}

/* One write as its own ring record (key area of `cap` bytes, the map header read), followed by
 * the stack when `with_stack`. */
static __always_inline int write_record(struct pt_regs *ctx, __u64 pid_tgid, __u64 cookie,
					enum map_op op, const __u32 cap, const int with_stack)
{
	const __u32 size = with_stack ? sizeof(struct write_event)
				      : __builtin_offsetof(struct write_event, key) + 2 * cap;
	struct write_event *e;
	__u64 bias;

	/* Reserved in the ring buffer itself: no scratch buffer to claim. */
	e = ring_reserve(size);
	if (!e) {
		count(CNT_LOST);
		return 0;
	}
	bias = fill_event(ctx, e, pid_tgid, cookie, op, cap, 1);
	if (with_stack) {
		long n = bpf_get_stack(ctx, e->stack, sizeof(e->stack), BPF_F_USER_STACK);
		if (n > 0) {
			e->stack_len = n / 8;
			for (int i = 0; i < STACK_MAX; i++)
				if (i < e->stack_len)
					e->stack[i] -= bias;
		}
	}
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

/* One write counted in the kernel (see aggregate.bpf.h); a write that cannot be goes as a
 * record. */
static __always_inline int aggregate_write(struct pt_regs *ctx, __u64 pid_tgid, __u64 cookie,
					   enum map_op op)
{
	struct scratch *s = claim_scratch();

	if (!s) {
		count(CNT_AS_RECORD);
		thread_wrote((__u32)pid_tgid, 0, 0);
		return key_bytes <= KEY_SMALL ? write_record(ctx, pid_tgid, cookie, op, KEY_SMALL, 0)
					      : write_record(ctx, pid_tgid, cookie, op, KEY_MAX, 0);
	}
	fill_event(ctx, &s->e, pid_tgid, cookie, op, KEY_MAX, 0);
	aggregate(ctx, &s->e);
	release_scratch(s);
	return 0;
}

/* One operation on a key (the probe's role, in its attach cookie, says which one and where the
 * key is): counted in the kernel, or as its own record when each one is wanted (stacks, `trace`)
 * or aggregation is off. A record of its own reads the map header at every write; counting in
 * the kernel reads it at a sampled rate, and at every write that takes a slot. */
static __always_inline int handle_op(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 start = 0, cookie;
	enum map_op op;

	if ((pid_tgid >> 32) != target_tgid)
		return 0;
	count(CNT_HITS);
	if (!window_open)
		return 0;
	hit_alarm();
	cookie = bpf_get_attach_cookie(ctx);
	if (stack_check_taken(ctx, cookie, CNT_STACK_REENTRY))
		return 0;
	op = cookie_op(cookie);
	if (time_programs)
		start = bpf_ktime_get_ns();
	if (capture_stack)
		write_record(ctx, pid_tgid, cookie, op, KEY_MAX, 1);
	else if (slot_sets)
		aggregate_write(ctx, pid_tgid, cookie, op);
	else if (key_bytes <= KEY_SMALL)
		write_record(ctx, pid_tgid, cookie, op, KEY_SMALL, 0);
	else
		write_record(ctx, pid_tgid, cookie, op, KEY_MAX, 0);
	if (time_programs) {
		add(CNT_PROG_NS, bpf_ktime_get_ns() - start);
		count(CNT_PROG_RUNS);
	}
	return 0;
}

/* Every assign, delete and clear function. */
UPROBE_PROGRAMS(on_mapassign, handle_op)

/* The goroutine running now (R14 = g), or the thread id when the offset is unknown. */
static __always_inline __u64 current_goid(struct pt_regs *ctx)
{
	__u64 goid = 0;
	if (goid_offset && read_user(&goid, 8, (void *)(ctx->r14 + goid_offset)) == 0)
		return goid;
	return (__u32)bpf_get_current_pid_tgid() | (1ULL << 63);
}

/* Classic hmap: its first two words (count; flags | B << 8 | noverflow << 16), as a write
 * record's header carries them. */
static __always_inline int read_hmap(__u64 h, __u64 out[2])
{
	return read_user(out, 2 * sizeof(__u64), (void *)h) != 0 ? -1 : 0;
}

/* Where thread `tid`'s last write was counted (see thread_wrote), when the thread's entry holds
 * it: read between two reads of the entry's tid, in case another thread takes the entry over. */
static __always_inline void last_write_of(__u32 tid, struct grow_start *start)
{
	__u32 k = tid & (THREADS_MAX - 1), slot;
	struct thread_state *t = bpf_map_lookup_elem(&threads, &k);
	__u64 gen;

	if (!t || *(volatile __u32 *)&t->tid != tid)
		return;
	barrier();
	slot = t->slot;
	gen = t->gen;
	barrier();
	if (*(volatile __u32 *)&t->tid != tid)
		return;
	start->trigger_slot = slot;
	start->trigger_gen = gen;
}

static __always_inline int handle_grow_entry(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct grow_event g = {};
	__u64 cookie, bias, goid;
	__u16 table_hdr[2] = {};

	if ((pid_tgid >> 32) != target_tgid)
		return 0;
	count(CNT_GROW_HITS);
	cookie = bpf_get_attach_cookie(ctx);
	if (!window_open || stack_check_taken(ctx, cookie, CNT_GROW_STACK_REENTRY))
		return 0;
	bias = ctx->ip - (cookie >> COOKIE_ROLE_BITS);
	g.type = REC_GROW;
	g.role = cookie & GROW_ROLE_MASK;
	g.start_ns = bpf_ktime_get_ns();
	g.pid = pid_tgid >> 32;
	g.tid = (__u32)pid_tgid;
	switch (g.role) {
	case GROW_HASHGROW:
		g.map_type = ctx->ax - bias;
		g.map_ptr = ctx->bx;
		if (read_hmap(g.map_ptr, g.before) != 0)
			g.flags |= EV_READ_FAILED;
		break;
	case GROW_TO_SMALL:
	case GROW_TO_TABLE:
		g.map_type = ctx->bx - bias;
		g.map_ptr = ctx->ax;
		if (read_user(&g.before[0], 8, (void *)g.map_ptr) != 0)
			g.flags |= EV_READ_FAILED;
		break;
	case GROW_REHASH:
		g.map_type = ctx->bx - bias;
		g.map_ptr = ctx->cx;
		if (read_user(&g.before[0], 8, (void *)g.map_ptr) != 0 ||
		    read_user(table_hdr, sizeof(table_hdr), (void *)ctx->ax) != 0)
			g.flags |= EV_READ_FAILED;
		g.before[1] = table_hdr[1]; /* table.capacity */
		break;
	default:
		return 0;
	}
	goid = current_goid(ctx);
	g.goid = goid;
	if (!(cookie & GROW_AT_ENTRY))
		bpf_map_update_elem(&grows_inflight, &goid, &g, BPF_ANY);
	{
		struct grow_start start = {
			.type = REC_GROW_START, .start_ns = g.start_ns, .pid = g.pid, .tid = g.tid};
		last_write_of(g.tid, &start);
		if (ring_output(&start, sizeof(start), 0) != 0)
			count(CNT_GROW_LOST);
	}
	if (cookie & GROW_AT_ENTRY) {
		g.end_ns = g.start_ns;
		g.map_ptr = map_identity(ctx, g.map_ptr, goid);
		if (ring_output(&g, sizeof(g), 0) != 0)
			count(CNT_GROW_LOST);
	}
	return 0;
}

static __always_inline int handle_grow_ret(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct grow_event *g;
	__u64 goid;

	if ((pid_tgid >> 32) != target_tgid)
		return 0;
	count(CNT_GROW_RET_HITS);
	goid = current_goid(ctx);
	g = bpf_map_lookup_elem(&grows_inflight, &goid);
	if (!g) {
		if (window_open)
			count(CNT_GROW_UNMATCHED);
		return 0;
	}
	if (!window_open) {
		/* Entered in a window that closed since: forget it. */
		bpf_map_delete_elem(&grows_inflight, &goid);
		return 0;
	}
	g->end_ns = bpf_ktime_get_ns();
	if (g->role == GROW_HASHGROW && read_hmap(g->map_ptr, g->after) != 0)
		g->flags |= EV_READ_FAILED;
	g->map_ptr = map_identity(ctx, g->map_ptr, goid);
	/* Same ring as the writes, so the triggering write comes just before it in order. */
	if (ring_output(g, sizeof(*g), 0) != 0)
		count(CNT_GROW_LOST);
	bpf_map_delete_elem(&grows_inflight, &goid);
	return 0;
}

UPROBE_PROGRAMS(on_grow, handle_grow_entry)
UPROBE_PROGRAMS(on_grow_ret, handle_grow_ret)

/* sync.Map: programs of their own, on the helpers above. */
#include "syncmap.bpf.h"
