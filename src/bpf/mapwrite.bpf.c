// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Probes on Go's map-assign functions: count and record every map write. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "maptrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

SEC("uprobe")
int on_mapassign(struct pt_regs *ctx)
{
	__u32 zero = 0;
	__u64 *n;
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	n = bpf_map_lookup_elem(&hits, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}
