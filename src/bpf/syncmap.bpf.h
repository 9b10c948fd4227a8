/* sync.Map operations, included at the end of mapwrite.bpf.c (whose helpers it uses): each
 * operation that stores or deletes a key becomes one write_event like a runtime map's, with
 * map_type SYNC_MAP_TYPE, the sync.Map's address, the key (an interface{}) and the call site.
 *
 * Store and Swap always store and Clear always clears: they are recorded at the method's
 * entry. LoadOrStore, CompareAndSwap, LoadAndDelete and CompareAndDelete store or delete
 * depending on what they find: their record is built at the entry (the key is only in the
 * argument registers there), kept per goroutine in sync_pending, and sent from a RET probe if
 * the results say the key was stored or deleted (never uretprobes on Go: see GO-INTERNALS.md).
 * A RET whose goroutine has no pending record of the same frame (the entry was before the
 * probes were attached, or the goroutine's last call panicked) sends nothing. Entries and RETs
 * count as write probe hits (CNT_HITS); records are made only
 * while the window is open. A RET's probe is single-stepped, so it costs the target more than
 * budget mode charges a write probe hit: where such hits are a large part of the target's CPU
 * time, budget-mode estimates read low (see README, Limits). */

/* The key's registers: the sync.(*Map) methods (before Go 1.24) take it after the receiver,
 * the hash-trie's generic methods (Go 1.24+) after the receiver and the dictionary. */
const volatile __u32 sync_hashtrie = 0;

/* A record waiting for its method's result, and the frame it belongs to: the offset of the
 * entry's stack pointer from the goroutine's stack top (stable when the stack is copied). */
struct sync_pending {
	__u64 frame;
	struct write_event e;
};

/* goroutine id -> the operation it is in (LRU: a goroutine that never returned — it panicked —
 * leaves an entry that newer ones push out). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct sync_pending);
} sync_pending SEC(".maps");

/* The initial value of a sync_pending entry (too large for the BPF stack); never written. */
static const struct sync_pending sync_pending_zero = {};

/* The offset of the stack pointer from the running goroutine's stack top (g.stack.hi, R14 =
 * g), or 0 when unreadable. */
static __always_inline __u64 stack_frame(struct pt_regs *ctx)
{
	__u64 stk[2];

	if (read_user(stk, sizeof(stk), (void *)ctx->r14) != 0)
		return 0;
	return stk[1] - ctx->sp;
}

/* Fills `e` at the entry of a sync.Map method: the map, key, call site (and the return addresses
 * of the next frames out), goroutine and stack as a runtime map's write records them. */
static __always_inline void fill_sync(struct pt_regs *ctx, struct write_event *e,
				      __u64 pid_tgid, __u64 goid, enum probe_role role,
				      __u64 bias, const __u32 cap, const int with_stack)
{
	__u64 bx = ctx->bx, cx = ctx->cx, di = ctx->di, key_type, key_data;
	__u32 captured = 0;

	/* Loaded before they are chosen: the verifier refuses a context field picked by offset. */
	asm volatile("" : "+r"(bx), "+r"(cx), "+r"(di));
	key_type = sync_hashtrie ? cx : bx;
	key_data = sync_hashtrie ? di : cx;

	e->type = REC_WRITE;
	e->ts_ns = write_time ? bpf_ktime_get_ns() : 0;
	e->map_type = SYNC_MAP_TYPE;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->role = role;
	e->op = role == ROLE_SYNC_CLEAR ? OP_CLEAR
		: (role == ROLE_SYNC_LOAD_AND_DELETE || role == ROLE_SYNC_CAD) ? OP_DELETE
									      : OP_WRITE;
	e->flags = 0;
	e->site = 0;
	read_user(&e->site, 8, (void *)ctx->sp);
	e->site -= bias;
	/* Before the method's own frame is set up RBP is its caller's: the return addresses of
	 * the next three frames out, for a method called by other sync.Map methods that were not
	 * inlined. */
	{
		__u64 fp = ctx->bp;
#pragma unroll
		for (int i = 0; i < 3; i++) {
			__u64 frame[2] = {}; /* the saved RBP, the return address */
			e->header[i] = 0;
			if (fp && read_user(frame, sizeof(frame), (void *)fp) == 0 && frame[1]) {
				e->header[i] = frame[1] - bias;
				fp = frame[0];
			} else {
				fp = 0;
			}
		}
		e->header[3] = 0;
	}
	e->goid = write_goid && goid_offset ? goid : 0;
	e->map_ptr = map_identity(ctx, ctx->ax, goid);
	e->stack_len = 0;
	if (with_stack) {
		long n = bpf_get_stack(ctx, e->stack, sizeof(e->stack), BPF_F_USER_STACK);
		if (n > 0) {
			e->stack_len = n / 8;
			for (int i = 0; i < STACK_MAX; i++)
				if (i < e->stack_len)
					e->stack[i] -= bias;
		}
	}
	e->key_len = 0;
	if (role != ROLE_SYNC_CLEAR)
		captured = capture_eface(e, key_type, key_data, 0, bias, cap);
	if (e->key_len > captured && !(e->flags & EV_READ_FAILED))
		e->flags |= EV_TRUNCATED;
	if (e->flags & EV_READ_FAILED)
		count(CNT_READ_FAILED);
	e->captured = captured;
}

/* A store or clear, sent now in a record of the shape `cap`/`with_stack` (see handle_write_as). */
static __always_inline void sync_now(struct pt_regs *ctx, __u64 pid_tgid, __u64 goid,
				     enum probe_role role, __u64 bias, const __u32 cap,
				     const int with_stack)
{
	const __u32 size = with_stack ? sizeof(struct write_event)
				      : __builtin_offsetof(struct write_event, key) + 2 * cap;
	struct write_event *e = ring_reserve(size);

	if (!e) {
		count(CNT_LOST);
		return;
	}
	fill_sync(ctx, e, pid_tgid, goid, role, bias, cap, with_stack);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* An operation's record at its method's entry (window open): sent now (stores, clears) or kept
 * for its RET. */
static __always_inline void sync_entry_record(struct pt_regs *ctx, __u64 pid_tgid, __u64 cookie,
					      enum probe_role role)
{
	__u64 bias = ctx->ip - (cookie >> COOKIE_ROLE_BITS);
	__u64 goid = current_goid(ctx);
	struct sync_pending *p;

	if (role == ROLE_SYNC_STORE || role == ROLE_SYNC_CLEAR) {
		if (capture_stack)
			sync_now(ctx, pid_tgid, goid, role, bias, KEY_MAX, 1);
		else if (key_bytes <= KEY_SMALL)
			sync_now(ctx, pid_tgid, goid, role, bias, KEY_SMALL, 0);
		else
			sync_now(ctx, pid_tgid, goid, role, bias, KEY_MAX, 0);
		return;
	}
	if (bpf_map_update_elem(&sync_pending, &goid, &sync_pending_zero, BPF_ANY) != 0)
		return;
	p = bpf_map_lookup_elem(&sync_pending, &goid);
	if (!p)
		return;
	p->frame = stack_frame(ctx);
	fill_sync(ctx, &p->e, pid_tgid, goid, role, bias, KEY_MAX, capture_stack);
}

/* An entry is a probe hit like a map write's (CNT_HITS). Its body is not timed: budget mode sets
 * the write program's time in place against the calibration's, and a sync.Map entry's program
 * (reading an interface key) is not the one calibrated: timed among the writes, it made a
 * sync.Map target's probes seem to cost it 3× their calibrated cost. */
static __always_inline int handle_sync_entry(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 cookie, goid;
	enum probe_role role;

	if ((pid_tgid >> 32) != target_tgid)
		return 0;
	count(CNT_HITS);
	hit_alarm();
	cookie = bpf_get_attach_cookie(ctx);
	role = cookie & COOKIE_ROLE_MASK;
	/* About to grow its stack and start again: the re-entry's hit is the operation. */
	if (stack_check_taken(ctx, cookie, CNT_STACK_REENTRY))
		return 0;
	if (!window_open) {
		/* This operation is not recorded: its RET (in a window opened since) must not send
		 * an older record this goroutine left (its RET was missed) in its place. */
		if (role != ROLE_SYNC_STORE && role != ROLE_SYNC_CLEAR) {
			goid = current_goid(ctx);
			bpf_map_delete_elem(&sync_pending, &goid);
		}
		return 0;
	}
	sync_entry_record(ctx, pid_tgid, cookie, role);
	return 0;
}

/* Whether the method at whose RET we are stored or deleted its key, by its results. */
static __always_inline int sync_did_it(struct pt_regs *ctx, enum probe_role role)
{
	switch (role) {
	case ROLE_SYNC_LOAD_OR_STORE: /* (actual any, loaded bool) */
		return !(ctx->cx & 0xff);
	case ROLE_SYNC_LOAD_AND_DELETE: /* (value any, loaded bool) */
		return ctx->cx & 0xff;
	case ROLE_SYNC_CAS: /* swapped bool */
	case ROLE_SYNC_CAD: /* deleted bool */
		return ctx->ax & 0xff;
	default:
		return 0;
	}
}

static __always_inline int handle_sync_ret(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct sync_pending *p;
	__u64 goid;
	long sent = 0;

	if ((pid_tgid >> 32) != target_tgid)
		return 0;
	count(CNT_HITS);
	count(CNT_SYNC_RET_HITS);
	hit_alarm();
	goid = current_goid(ctx);
	p = bpf_map_lookup_elem(&sync_pending, &goid);
	if (!p)
		return 0;
	/* An operation decided after the window closed is not recorded (as a write is not). */
	if (window_open && p->frame == stack_frame(ctx) &&
	    sync_did_it(ctx, bpf_get_attach_cookie(ctx) & COOKIE_ROLE_MASK)) {
		/* The record's shape as handle_write_as would have sent it. */
		if (capture_stack)
			sent = ring_output(&p->e, sizeof(p->e), 0);
		else if (key_bytes <= KEY_SMALL)
			sent = ring_output(&p->e,
						  __builtin_offsetof(struct write_event, key) +
							  2 * KEY_SMALL,
						  0);
		else
			sent = ring_output(&p->e,
						  __builtin_offsetof(struct write_event, key) +
							  2 * KEY_MAX,
						  0);
		if (sent != 0)
			count(CNT_LOST);
	}
	bpf_map_delete_elem(&sync_pending, &goid);
	return 0;
}

UPROBE_PROGRAMS(on_sync, handle_sync_entry)
UPROBE_PROGRAMS(on_sync_ret, handle_sync_ret)
