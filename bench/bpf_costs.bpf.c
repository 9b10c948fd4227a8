// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* What each piece of a write probe costs (bench/bpf_costs.sh): one program per variant, each
 * adding one piece to the one before, attached in turn at the same probe point
 * (runtime.mapassign_faststr after its stack check) of the same workload; the kernel's BPF stats
 * give each program's run time per event. Not part of the tracer. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../src/bpf/maptrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20);
} ring SEC(".maps");

struct agg_key {
	__u64 map_type, map_ptr, site, fp;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct agg_key);
	__type(value, __u64);
} agg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} agg8 SEC(".maps");

struct key_ref {
	__u64 map_type, fp;
};

struct key_val {
	__u32 len;
	__u32 captured;
	__u64 words[KEY_SMALL / 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct key_ref);
	__type(value, struct key_val);
} keys SEC(".maps");

struct last_write {
	__u64 map_type, map_ptr, site, fp;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct last_write);
} last SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct last_write);
} last_by_tid SEC(".maps");

/* The alternative to a hash: per-CPU slots in one array (CPU * SLOTS + fingerprint % SLOTS), each
 * holding its key whole, so a hit is one inlined array access and a compare. */
#define SLOTS 1024
struct cslot {
	__u64 seq;
	__u64 map_type, map_ptr, site;
	__u32 len, captured;
	__u64 count;
	__u64 words[KEY_SMALL / 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS * 2);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct cslot);
} slots SEC(".maps");

struct rec {
	__u64 map_type, map_ptr, site, hdr[4];
	__u32 len, captured;
	__u8 key[2 * KEY_SMALL];
};

/* The pid test and the hit counter every variant has; returns where a variant leaves its result
 * (so that the compiler keeps the work), or NULL. */
static __always_inline __u64 *base(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 zero = 0;
	__u64 *n;
	if ((id >> 32) == 0)
		return NULL;
	n = bpf_map_lookup_elem(&hits, &zero);
	if (n)
		*n += 1;
	return n;
}

static __always_inline __u64 site_of(struct pt_regs *ctx)
{
	__u64 site = 0;
	bpf_probe_read_user(&site, 8, (void *)ctx->sp);
	return site;
}

/* The string key (RCX, RDI) into words[], zero-padded; returns bytes captured. */
static __always_inline __u32 read_key(struct pt_regs *ctx, __u64 words[KEY_SMALL / 8])
{
	__u32 len = ctx->di;
	if (len > KEY_SMALL)
		len = KEY_SMALL;
	asm volatile("" : "+r"(len));
	len &= 2 * KEY_SMALL - 1;
	if (len > KEY_SMALL)
		return 0;
	if (len && bpf_probe_read_user(words, len, (void *)ctx->cx) != 0)
		return 0;
	return len;
}

static __always_inline __u64 mix(__u64 h, __u64 w)
{
	h ^= w;
	h *= 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

static __always_inline __u64 fingerprint(__u64 words[KEY_SMALL / 8], __u32 captured, __u32 len)
{
	__u64 h = mix(0x243f6a8885a308d3ULL, len);
#pragma unroll
	for (int i = 0; i < KEY_SMALL / 8; i++) {
		if (i * 8 >= captured)
			break;
		h = mix(h, words[i]);
	}
	return h;
}

static __always_inline void count_in(struct agg_key *k)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&agg, k);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&agg, k, &one, BPF_NOEXIST);
}

static __always_inline int check_key(__u64 map_type, __u64 fp, __u64 words[KEY_SMALL / 8],
				     __u32 captured, __u32 len)
{
	struct key_ref r = {.map_type = map_type, .fp = fp};
	struct key_val *v = bpf_map_lookup_elem(&keys, &r);
	if (!v) {
		struct key_val nv = {.len = len, .captured = captured};
		__builtin_memcpy(nv.words, words, KEY_SMALL);
		bpf_map_update_elem(&keys, &r, &nv, BPF_NOEXIST);
		return 0;
	}
	if (v->len != len || v->captured != captured)
		return -1;
#pragma unroll
	for (int i = 0; i < KEY_SMALL / 8; i++) {
		if (i * 8 >= captured)
			break;
		if (v->words[i] != words[i])
			return -1;
	}
	return 0;
}

#define SINK(n, v) (*(volatile __u64 *)(n) += (v))

SEC("uprobe.multi")
int v0_empty(struct pt_regs *ctx)
{
	return 0;
}

SEC("uprobe.multi")
int v1_base(struct pt_regs *ctx)
{
	base(ctx);
	return 0;
}

SEC("uprobe.multi")
int v2_ktime(struct pt_regs *ctx)
{
	__u64 *n = base(ctx);
	if (n)
		SINK(n, bpf_ktime_get_ns());
	return 0;
}

SEC("uprobe.multi")
int v2_cookie(struct pt_regs *ctx)
{
	__u64 *n = base(ctx);
	if (n)
		SINK(n, bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("uprobe.multi")
int v3_site(struct pt_regs *ctx)
{
	__u64 *n = base(ctx);
	if (n)
		SINK(n, site_of(ctx));
	return 0;
}

SEC("uprobe.multi.s")
int v3_site_sleep(struct pt_regs *ctx)
{
	__u64 *n = base(ctx);
	if (n)
		SINK(n, site_of(ctx));
	return 0;
}

SEC("uprobe.multi.s")
int v3_site_cfu(struct pt_regs *ctx)
{
	__u64 site = 0, *n = base(ctx);
	if (!n)
		return 0;
	bpf_copy_from_user(&site, 8, (void *)ctx->sp);
	SINK(n, site);
	return 0;
}

/* One read of 64 bytes at RSP: what a read costs per byte next to per call. */
SEC("uprobe.multi")
int v3_site_64b(struct pt_regs *ctx)
{
	__u64 w[8] = {}, *n = base(ctx);
	if (!n)
		return 0;
	bpf_probe_read_user(w, sizeof(w), (void *)ctx->sp);
	SINK(n, w[7]);
	return 0;
}

SEC("uprobe.multi")
int v4_site_key(struct pt_regs *ctx)
{
	__u64 w[KEY_SMALL / 8] = {}, *n = base(ctx);
	if (!n)
		return 0;
	SINK(n, site_of(ctx) ^ w[read_key(ctx, w) & 7]);
	return 0;
}

SEC("uprobe.multi")
int v4_site_key_fp(struct pt_regs *ctx)
{
	__u64 w[KEY_SMALL / 8] = {}, *n = base(ctx);
	__u32 captured;
	if (!n)
		return 0;
	captured = read_key(ctx, w);
	SINK(n, site_of(ctx) ^ fingerprint(w, captured, ctx->di));
	return 0;
}

SEC("uprobe.multi")
int v5_site_key_hdr(struct pt_regs *ctx)
{
	__u64 w[KEY_SMALL / 8] = {}, hdr[4] = {}, *n = base(ctx);
	if (!n)
		return 0;
	read_key(ctx, w);
	bpf_probe_read_user(hdr, sizeof(hdr), (void *)ctx->bx);
	SINK(n, site_of(ctx) ^ w[0] ^ hdr[0]);
	return 0;
}

static __always_inline void ring_record(struct pt_regs *ctx, int with_hdr)
{
	struct rec *r = bpf_ringbuf_reserve(&ring, sizeof(*r), 0);
	if (!r)
		return;
	r->map_type = ctx->ax;
	r->map_ptr = ctx->bx;
	r->site = site_of(ctx);
	r->len = ctx->di;
	r->captured = read_key(ctx, (__u64 *)r->key);
	if (with_hdr)
		bpf_probe_read_user(r->hdr, sizeof(r->hdr), (void *)ctx->bx);
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

/* Today's exact mode: the three reads into a ring-buffer record. */
SEC("uprobe.multi")
int v6_ring(struct pt_regs *ctx)
{
	if (base(ctx))
		ring_record(ctx, 1);
	return 0;
}

SEC("uprobe.multi")
int v6_ring_nohdr(struct pt_regs *ctx)
{
	if (base(ctx))
		ring_record(ctx, 0);
	return 0;
}

/* A per-CPU hash keyed by the fingerprint alone (8 bytes)... */
SEC("uprobe.multi")
int v7_hash8(struct pt_regs *ctx)
{
	__u64 w[KEY_SMALL / 8] = {}, one = 1, fp, *v, *n = base(ctx);
	__u32 captured;
	if (!n)
		return 0;
	captured = read_key(ctx, w);
	fp = fingerprint(w, captured, ctx->di) ^ site_of(ctx);
	v = bpf_map_lookup_elem(&agg8, &fp);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&agg8, &fp, &one, BPF_NOEXIST);
	return 0;
}

/* ...and by (map type, map, site, fingerprint): the aggregation without a collision check. */
SEC("uprobe.multi")
int v7_agg(struct pt_regs *ctx)
{
	__u64 w[KEY_SMALL / 8] = {}, *n = base(ctx);
	struct agg_key k;
	__u32 captured;
	if (!n)
		return 0;
	k.map_type = ctx->ax;
	k.map_ptr = ctx->bx;
	k.site = site_of(ctx);
	captured = read_key(ctx, w);
	k.fp = fingerprint(w, captured, ctx->di);
	count_in(&k);
	return 0;
}

static __always_inline int agg_checked(struct pt_regs *ctx, struct agg_key *k)
{
	__u64 w[KEY_SMALL / 8] = {};
	__u32 captured;
	if (!base(ctx))
		return 0;
	k->map_type = ctx->ax;
	k->map_ptr = ctx->bx;
	k->site = site_of(ctx);
	captured = read_key(ctx, w);
	k->fp = fingerprint(w, captured, ctx->di);
	if (check_key(k->map_type, k->fp, w, captured, ctx->di) != 0)
		return 0;
	count_in(k);
	return 1;
}

/* ...and the collision check against the key's stored bytes (a second hash). */
SEC("uprobe.multi")
int v8_agg_check(struct pt_regs *ctx)
{
	struct agg_key k;
	agg_checked(ctx, &k);
	return 0;
}

/* ...and the thread's last write kept for growth triggers, in task storage... */
SEC("uprobe.multi")
int v9_agg_task(struct pt_regs *ctx)
{
	struct agg_key k;
	struct last_write *l;
	if (!agg_checked(ctx, &k))
		return 0;
	l = bpf_task_storage_get(&last, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (l)
		__builtin_memcpy(l, &k, sizeof(*l));
	return 0;
}

/* ...or in a hash by thread id. */
SEC("uprobe.multi")
int v9_agg_tid(struct pt_regs *ctx)
{
	struct agg_key k;
	__u32 tid = bpf_get_current_pid_tgid();
	if (!agg_checked(ctx, &k))
		return 0;
	bpf_map_update_elem(&last_by_tid, &tid, (struct last_write *)&k, BPF_ANY);
	return 0;
}

/* The per-CPU slot: the whole key compared in place, one atomic add; a seqlock (cmpxchg) makes
 * the slot safe from another program on the same CPU (sleepable programs can be preempted). */
static __always_inline int slot_count(struct pt_regs *ctx, int locked)
{
	__u64 w[KEY_SMALL / 8] = {}, fp, site, *n = base(ctx);
	__u32 captured, idx;
	struct cslot *s;
	__u64 seq = 0;
	if (!n)
		return 0;
	site = site_of(ctx);
	captured = read_key(ctx, w);
	fp = fingerprint(w, captured, ctx->di);
	idx = bpf_get_smp_processor_id() * SLOTS + (fp & (SLOTS - 1));
	s = bpf_map_lookup_elem(&slots, &idx);
	if (!s)
		return 0;
	if (locked) {
		seq = s->seq;
		if ((seq & 1) || __sync_val_compare_and_swap(&s->seq, seq, seq + 1) != seq)
			return 0;
	}
	if (s->map_type == ctx->ax && s->map_ptr == ctx->bx && s->site == site &&
	    s->len == (__u32)ctx->di && s->captured == captured) {
		int same = 1;
#pragma unroll
		for (int i = 0; i < KEY_SMALL / 8; i++) {
			if (i * 8 >= captured)
				break;
			if (s->words[i] != w[i])
				same = 0;
		}
		if (same) {
			__sync_fetch_and_add(&s->count, 1);
			goto out;
		}
	}
	s->map_type = ctx->ax;
	s->map_ptr = ctx->bx;
	s->site = site;
	s->len = ctx->di;
	s->captured = captured;
	__builtin_memcpy(s->words, w, sizeof(w));
	s->count = 1;
out:
	if (locked)
		__sync_fetch_and_add(&s->seq, 1);
	return 0;
}

SEC("uprobe.multi")
int v10_slot(struct pt_regs *ctx)
{
	return slot_count(ctx, 0);
}

SEC("uprobe.multi")
int v10_slot_seq(struct pt_regs *ctx)
{
	return slot_count(ctx, 1);
}

SEC("uprobe.multi.s")
int v10_slot_seq_s(struct pt_regs *ctx)
{
	return slot_count(ctx, 1);
}
