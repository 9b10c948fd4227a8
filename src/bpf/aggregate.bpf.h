/* Counting map operations in the kernel (included by mapwrite.bpf.c, after its maps and
 * helpers): a write's (map, site, op, key) is looked up in its set of per-CPU slots (struct slot
 * in maptrace.h) and counted there; a key in no slot takes one and crosses to userspace once, as
 * a record. Every write also notes its thread's last slot (the growth it may trigger). Deletes,
 * clears and every operation on a map that saw one go as records (see churned()). Nothing is
 * dropped silently: what cannot be counted in a slot goes as a record, and what finds no room in
 * the ring buffer is counted lost. */
#ifndef AGGREGATE_BPF_H
#define AGGREGATE_BPF_H

#define barrier() asm volatile("" ::: "memory")

static __always_inline struct scratch *claim_scratch(void)
{
	for (__u32 i = 0; i < 2; i++) {
		__u32 k = i;
		struct scratch *s = bpf_map_lookup_elem(&scratch, &k);
		if (s && __sync_lock_test_and_set(&s->busy, 1) == 0)
			return s;
	}
	return NULL;
}

static __always_inline void release_scratch(struct scratch *s)
{
	barrier();
	s->busy = 0;
}

/* Thread `tid`'s last write was counted in slot `slot`, generation `gen` (0: sent as a record).
 * The entry is owned by the thread whose id it holds: a thread whose id falls on the same entry
 * takes it over (its tid is cleared while the other fields change, so the growth probe never
 * pairs one thread's id with another's write). */
static __always_inline void thread_wrote(__u32 tid, __u32 slot, __u64 gen)
{
	__u32 k = tid & (THREADS_MAX - 1);
	struct thread_state *t = bpf_map_lookup_elem(&threads, &k);

	if (!t)
		return;
	if (t->tid == tid && t->slot == slot && t->gen == gen)
		return; /* a thread writing one key over and over */
	t->tid = 0;
	barrier();
	t->slot = slot;
	t->gen = gen;
	barrier();
	t->tid = tid;
}

/* The key's `i`th 8-byte word, with bytes past `captured` as zeros. */
static __always_inline __u64 key_word(const __u8 *key, __u32 i, __u32 captured)
{
	__u64 w = *(const __u64 *)&key[(i & (KEY_MAX / 8 - 1)) * 8];
	__u32 left = captured - i * 8;

	if (left < 8)
		w &= (1ULL << (left * 8)) - 1;
	return w;
}

/* The functions below walk a key word by word. They are global (verified once each, on their
 * own), not inlined: a loop with a data-dependent end, inlined at every call, multiplies the
 * states the verifier explores past the limit. */

/* Picks the key's set. Keys are compared whole, so its only job is to spread keys over sets;
 * with weak_fingerprint (tests) every key of one map, site and length gets the same one, to show
 * that counts stay exact. */
__noinline __u64 key_fingerprint(const struct write_event *e)
{
	const __u64 k = 0x9e3779b97f4a7c15ULL;
	__u64 h;

	if (!e)
		return 0;
	/* independent products (they run in parallel), then one multiply per key word */
	h = (e->map_ptr * k) ^ (e->site * 0xc2b2ae3d27d4eb4fULL) ^
	    ((e->map_type ^ ((__u64)e->key_len << 32) ^ ((__u64)e->role << 48) ^
	      ((__u64)e->op << 56)) *
	     0x165667b19e3779f9ULL);
	for (__u32 i = 0; i < KEY_MAX / 8; i++) {
		if (weak_fingerprint || i * 8 >= e->captured)
			break;
		h = (h ^ key_word(e->key, i, e->captured)) * k;
	}
	/* every input bit reaches the low bits that pick the set */
	h ^= h >> 32;
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 29);
}

/* 1: the key bytes of slot `s` are the write's (same length, same captured bytes). */
__noinline int key_bytes_equal(const struct slot *s, const struct write_event *e)
{
	if (!s || !e)
		return 0;
	if (s->key_len != e->key_len || s->captured != e->captured)
		return 0;
	for (__u32 i = 0; i < KEY_MAX / 8; i++) {
		if (i * 8 >= e->captured)
			break;
		if (*(const __u64 *)&s->key[i * 8] != key_word(e->key, i, e->captured))
			return 0;
	}
	return 1;
}

/* Slot `s` takes the write's key bytes (zeros past them to the next word). */
__noinline int key_bytes_store(struct slot *s, const struct write_event *e)
{
	if (!s || !e)
		return 0;
	s->key_len = e->key_len;
	s->captured = e->captured;
	for (__u32 i = 0; i < KEY_MAX / 8; i++) {
		if (i * 8 >= e->captured)
			break;
		*(__u64 *)&s->key[i * 8] = key_word(e->key, i, e->captured);
	}
	return 0;
}

/* 1: slot `s` holds the write's (map, site, op, key); 0: another one; -1: another one with the
 * same fingerprint (a collision, detected here on every write by comparing the whole key). */
static __always_inline int same_key(const struct slot *s, const struct write_event *e, __u64 fp)
{
	if (s->gen == 0 || s->fp != fp)
		return 0;
	if (s->map_type != e->map_type || s->map_ptr != e->map_ptr || s->site != e->site ||
	    s->op != e->op || s->role != e->role || !key_bytes_equal(s, e))
		return -1;
	return 1;
}

/* Locks slot `s` if its sequence is still `seq` (nothing changed it since it was read). */
static __always_inline int lock_slot(struct slot *s, __u64 seq)
{
	return __sync_val_compare_and_swap(&s->seq, seq, seq + 1) == seq;
}

static __always_inline void unlock_slot(struct slot *s, __u64 seq)
{
	barrier();
	s->seq = seq + 2;
}

/* Puts the write (in scratch) in the ring as a record without stack, its key area as long as
 * --key-bytes needs. */
static __always_inline long output_event(struct write_event *e)
{
	if (key_bytes <= KEY_SMALL)
		return ring_output(e,
					  __builtin_offsetof(struct write_event, key) + 2 * KEY_SMALL,
					  BPF_RB_NO_WAKEUP);
	return ring_output(e, __builtin_offsetof(struct write_event, key) + 2 * KEY_MAX,
				  BPF_RB_NO_WAKEUP);
}

/* The write (in scratch) as its own record, counted from it. */
static __always_inline void send_as_record(struct pt_regs *ctx, struct write_event *e)
{
	long err;

	count(CNT_AS_RECORD);
	if (!(e->flags & EV_HEADER))
		read_header(ctx, e);
	thread_wrote(e->tid, 0, 0);
	err = output_event(e);
	if (err)
		count(CNT_LOST);
}

/* Slot `s` (index `idx`, sequence `seq`, chosen as the least written of the set) takes the
 * write's key. The record that sends the key is put in the ring while the slot is locked, so
 * that userspace reads a generation's key before the record of its eviction. */
static __always_inline void take_slot(struct pt_regs *ctx, struct write_event *e, struct slot *s,
				      __u32 idx, __u64 seq, __u64 fp)
{
	long err;

	read_header(ctx, e); /* before the lock: the read may fault the page in */
	if (!lock_slot(s, seq)) {
		send_as_record(ctx, e);
		return;
	}
	e->slot = idx;
	e->slot_gen = s->gen + 1;
	e->evicted = s->gen ? s->count : 0;
	e->flags |= EV_SLOT;
	err = output_event(e);
	if (err) {
		unlock_slot(s, seq);
		count(CNT_LOST);
		thread_wrote(e->tid, 0, 0);
		return;
	}
	count(CNT_SLOT_TAKEN);
	if (s->gen && s->count)
		count(CNT_EVICTED);
	s->gen += 1;
	s->count = 1;
	s->drained = 0;
	s->fp = fp;
	s->map_type = e->map_type;
	s->map_ptr = e->map_ptr;
	s->site = e->site;
	s->role = e->role;
	s->op = e->op;
	key_bytes_store(s, e);
	thread_wrote(e->tid, idx, s->gen);
	unlock_slot(s, seq);
}

/* A header read at a sampled write, sent on its own. */
static __always_inline void send_header(struct pt_regs *ctx, const struct write_event *e)
{
	struct header_event h = {
		.type = REC_HEADER, .tid = e->tid, .map_type = e->map_type, .map_ptr = e->map_ptr};

	if (read_user(h.header, sizeof(h.header), (void *)ctx->bx) == 0)
		ring_output(&h, sizeof(h), BPF_RB_NO_WAKEUP);
}

/* Whether the operation's map saw a delete or a clear (this one marks it). Counts alone keep a
 * map's length exact only while writes can just add keys (a key new to userspace is new to the
 * map, and it crosses in the order it was written); once keys go, a write may add one back,
 * which only the order of the operations tells. So every operation on such a map goes as a
 * record, in order, as without aggregation. */
static __always_inline int churned(const struct write_event *e)
{
	__u8 one = 1;

	if (churn_overflow || (churned_any && bpf_map_lookup_elem(&churned_maps, &e->map_ptr)))
		return 1;
	if (e->op == OP_WRITE)
		return 0;
	churned_any = 1;
	barrier();
	if (bpf_map_update_elem(&churned_maps, &e->map_ptr, &one, BPF_ANY) != 0)
		churn_overflow = 1;
	return 1;
}

/* Counts the write in `e` in its slot, or gives it one, or sends it as a record. */
static __always_inline void aggregate(struct pt_regs *ctx, struct write_event *e)
{
	__u64 fp, seq, n, least = ~0ULL, victim_seq = 0;
	__u32 first, victim = ~0U, busy = 0;
	struct slot *s;

	/* An incomplete key identifies nothing; deletes and clears need their order. */
	if ((e->flags & EV_READ_FAILED) || churned(e)) {
		send_as_record(ctx, e);
		return;
	}
	fp = key_fingerprint(e);
	first = (bpf_get_smp_processor_id() * slot_sets + (fp & (slot_sets - 1))) * SLOT_WAYS;
	for (__u32 w = 0; w < SLOT_WAYS; w++) {
		__u32 idx = first + w;
		__u64 recent;
		int same;

		s = bpf_map_lookup_elem(&slots, &idx);
		if (!s)
			break;
		seq = *(volatile __u64 *)&s->seq;
		barrier();
		if (seq & 1) {
			busy = 1;
			continue;
		}
		same = same_key(s, e, fp);
		if (same > 0) {
			if (!lock_slot(s, seq)) {
				send_as_record(ctx, e);
				return;
			}
			n = s->count += 1;
			thread_wrote(e->tid, idx, s->gen);
			unlock_slot(s, seq);
			if ((n & (header_every - 1)) == 0)
				send_header(ctx, e);
			return;
		}
		if (same < 0)
			count(CNT_COLLISIONS);
		/* an empty slot first, then the one written least since userspace read it */
		recent = s->gen ? s->count - s->drained + 1 : 0;
		if (victim == ~0U || recent < least) {
			victim = idx;
			victim_seq = seq;
			least = recent;
		}
	}
	/* A slot another program holds may have the key: never count it twice. */
	s = busy ? NULL : bpf_map_lookup_elem(&slots, &victim);
	if (!s) {
		send_as_record(ctx, e);
		return;
	}
	take_slot(ctx, e, s, victim, victim_seq, fp);
}

#endif
