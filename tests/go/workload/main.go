// Test program "workload" (tests/go/workload), owned by the test suite, for benchmarks: writes
// string keys "key:<i>" (Zipf-skewed over -keys keys, prebuilt) into one map[string]int from
// main.writeKey, counting its own writes exactly (without maps). Standard library only, Go 1.19+.
//
// Modes:
//   - default: -writes N writes in a tight loop;
//   - -rate R > 0: about R writes/s for -duration seconds (-writes is ignored), hashing a buffer
//     with crypto/sha256 between writes; "hashes" counts that other work, so a tracer's overhead
//     shows up as fewer hashes at the same write rate.
//
// -hot-after S: from S seconds on, one write in four uses the new key "hot:1".
//
// Tight-loop variants (not with -rate):
//   - -goroutines G: G goroutines write at once, each -writes writes into a map of its own
//     (goroutine g draws its keys with seed + g); with -shared-map, all into one map under a
//     mutex instead;
//   - -distinct: every write a new key ("key:<i>" for write i of each goroutine), not Zipf.
//
// Output, one JSON object per line:
//
//	{"event":"ready","pid":P}                          (only with -wait; then blocks until SIGUSR1)
//	{"event":"progress","writes":N,"elapsed_ns":T}     (every second, only with -progress)
//	{"event":"done","writes":N,"elapsed_ns":T,"cpu_ns":C,"hashes":H,"keys":[{"key":K,"writes":n},...],
//	 "maps":[{"id":"0xc000...","writes":N,"distinct":D,"keys":[...]},...]}
//
// cpu_ns is the process's user + system CPU time spent during the writes (all threads): what a
// tracer's probes cost the program, unlike elapsed_ns undisturbed by other load on the machine.
//
// "keys" is the top 50 over all writes, sorted by writes desc, then key; "maps" the same per map
// written ("id" is its %p, the tracer's map id), with its count of distinct keys.
package main

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

var m map[string]int // package-level: escapes to the heap

// maps written by -goroutines (each escapes to the heap, like m).
var maps []map[string]int

//go:noinline
func writeKey(m map[string]int, k string) { m[k]++ }

// rng is splitmix64: the same sequence on every Go version.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// samples returns count draws of ids in [0, n), the key of rank r having weight ~1/(r+1), with
// ranks shuffled onto ids; integer arithmetic only, so the result is the same everywhere.
func samples(seed uint64, n, count int) []int32 {
	r := rng{s: seed}
	cdf := make([]uint64, n)
	ids := make([]int32, n)
	var sum uint64
	for i := 0; i < n; i++ {
		sum += (1 << 32) / uint64(i+1)
		cdf[i] = sum
		ids[i] = int32(i)
	}
	for i := n - 1; i > 0; i-- {
		j := int(r.next() % uint64(i+1))
		ids[i], ids[j] = ids[j], ids[i]
	}
	out := make([]int32, count)
	for i := range out {
		u := r.next() % sum
		out[i] = ids[sort.Search(n, func(i int) bool { return cdf[i] > u })]
	}
	return out
}

type readyEvent struct {
	Event string `json:"event"`
	Pid   int    `json:"pid"`
}

type progressEvent struct {
	Event     string `json:"event"`
	Writes    int    `json:"writes"`
	ElapsedNs int64  `json:"elapsed_ns"`
}

type keyCount struct {
	Key    string `json:"key"`
	Writes int    `json:"writes"`
}

type mapCount struct {
	ID       string     `json:"id"`
	Writes   int        `json:"writes"`
	Distinct int        `json:"distinct"`
	Keys     []keyCount `json:"keys"`
}

type doneEvent struct {
	Event     string     `json:"event"`
	Writes    int        `json:"writes"`
	ElapsedNs int64      `json:"elapsed_ns"`
	CPUNs     int64      `json:"cpu_ns"`
	Hashes    int        `json:"hashes"`
	Keys      []keyCount `json:"keys"`
	Maps      []mapCount `json:"maps"`
}

// top returns the keys of counts (by id) written at least once: the top 50, by writes desc,
// then key, and how many there are.
func top(keys []string, counts []int) ([]keyCount, int) {
	out := []keyCount{}
	for id, c := range counts {
		if c > 0 {
			out = append(out, keyCount{Key: keys[id], Writes: c})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Writes != out[j].Writes {
			return out[i].Writes > out[j].Writes
		}
		return out[i].Key < out[j].Key
	})
	n := len(out)
	if len(out) > 50 {
		out = out[:50]
	}
	return out, n
}

// parallel runs -goroutines writers in tight loops, each counting its own writes per key id;
// returns the per-map counts (one map each, or one shared map).
func parallel(g, writes, nkeys int, seed uint64, distinct, shared bool, keys []string) [][]int {
	counts := make([][]int, g)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := make([]int, len(keys))
			mine := maps[0]
			if !shared {
				mine = maps[i]
			}
			const mask = 1<<16 - 1
			var draws []int32
			if !distinct {
				draws = samples(seed+uint64(i), nkeys, mask+1)
			}
			for n := 0; n < writes; n++ {
				id := n
				if !distinct {
					id = int(draws[n&mask])
				}
				if shared {
					mu.Lock()
					writeKey(mine, keys[id])
					mu.Unlock()
				} else {
					writeKey(mine, keys[id])
				}
				c[id]++
			}
			counts[i] = c
		}(i)
	}
	wg.Wait()
	return counts
}

var out = json.NewEncoder(os.Stdout)

func emit(v interface{}) {
	if err := out.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
}

func main() {
	writes := flag.Int("writes", 1000000, "writes in the tight loop (ignored with -rate)")
	nkeys := flag.Int("keys", 1000, "distinct keys")
	rate := flag.Float64("rate", 0, "if > 0: about this many writes per second, for -duration")
	duration := flag.Float64("duration", 5, "seconds to run with -rate")
	hotAfter := flag.Float64("hot-after", -1, `seconds after which key "hot:1" takes one write in four (< 0: never)`)
	progress := flag.Bool("progress", false, `print {"event":"progress",...} every second`)
	wait := flag.Bool("wait", false, `print {"event":"ready","pid":P} and wait for SIGUSR1 before writing`)
	seed := flag.Uint64("seed", 1, "PRNG seed")
	goroutines := flag.Int("goroutines", 1, "tight loop: writers at once, each into a map of its own")
	sharedMap := flag.Bool("shared-map", false, "with -goroutines: all writers into one map (under a mutex)")
	distinct := flag.Bool("distinct", false, "tight loop: every write a new key")
	flag.Parse()
	if *writes < 0 || *nkeys < 1 || *nkeys > 1<<30 || *goroutines < 1 {
		fmt.Fprintln(os.Stderr, "workload: need -writes >= 0, -keys >= 1 and -goroutines >= 1")
		os.Exit(2)
	}
	if *distinct {
		*nkeys = *writes
	}

	keys := make([]string, *nkeys+1)
	for i := 0; i < *nkeys; i++ {
		keys[i] = "key:" + strconv.Itoa(i)
	}
	hotID := *nkeys
	keys[hotID] = "hot:1"
	counts := make([]int, len(keys))
	const mask = 1<<16 - 1
	draws := samples(*seed, *nkeys, mask+1)
	m = make(map[string]int)
	var buf [256]byte
	hashes := 0

	if *wait {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR1)
		emit(readyEvent{Event: "ready", Pid: os.Getpid()})
		<-ch
	}

	cpuStart := cpuTime()
	start := time.Now()
	hot := *hotAfter == 0
	hotAt := time.Duration(*hotAfter * float64(time.Second))
	nextProgress := time.Second
	// tick runs every 1024 writes (and between paced writes): progress lines and the hot switch.
	tick := func(i int, elapsed time.Duration) {
		if *progress && elapsed >= nextProgress {
			emit(progressEvent{Event: "progress", Writes: i, ElapsedNs: int64(elapsed)})
			for nextProgress <= elapsed {
				nextProgress += time.Second
			}
		}
		if !hot && *hotAfter >= 0 && elapsed >= hotAt {
			hot = true
		}
	}
	write := func(i int) {
		id := int(draws[i&mask])
		if hot && i%4 == 0 {
			id = hotID
		}
		writeKey(m, keys[id])
		counts[id]++
	}

	n := 0
	if *rate <= 0 && (*goroutines > 1 || *distinct) {
		nmaps := *goroutines
		if *sharedMap {
			nmaps = 1
		}
		maps = make([]map[string]int, nmaps)
		for i := range maps {
			maps[i] = make(map[string]int)
		}
		perMap := parallel(*goroutines, *writes, *nkeys, *seed, *distinct, *sharedMap, keys)
		elapsed := time.Since(start)
		cpu := cpuTime() - cpuStart
		all := make([]int, len(keys))
		done := doneEvent{Event: "done", Writes: *goroutines * *writes, ElapsedNs: int64(elapsed), CPUNs: cpu}
		for i, m := range maps {
			mc := mapCount{ID: fmt.Sprintf("%p", m)}
			for g, c := range perMap {
				if g == i || *sharedMap {
					for id, x := range c {
						all[id] += x
						mc.Writes += x
					}
				}
			}
			counts := all
			if !*sharedMap {
				counts = perMap[i]
			}
			mc.Keys, mc.Distinct = top(keys, counts)
			done.Maps = append(done.Maps, mc)
		}
		done.Keys, _ = top(keys, all)
		emit(done)
		return
	}
	if *rate > 0 {
		end := time.Duration(*duration * float64(time.Second))
		for {
			elapsed := time.Since(start)
			if elapsed >= end {
				break
			}
			tick(n, elapsed)
			due := int(elapsed.Seconds() * *rate)
			for n < due { // catch up without other work
				write(n)
				n++
				if n&1023 == 0 {
					elapsed = time.Since(start)
					if elapsed >= end {
						break
					}
					tick(n, elapsed)
				}
			}
			sum := sha256.Sum256(buf[:])
			buf[0] ^= sum[0]
			hashes++
		}
	} else {
		for ; n < *writes; n++ {
			if n&1023 == 0 && n > 0 {
				tick(n, time.Since(start))
			}
			write(n)
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpuStart

	topKeys, distinctKeys := top(keys, counts)
	only := mapCount{ID: fmt.Sprintf("%p", m), Writes: n, Distinct: distinctKeys, Keys: topKeys}
	emit(doneEvent{Event: "done", Writes: n, ElapsedNs: int64(elapsed), CPUNs: cpu, Hashes: hashes, Keys: topKeys, Maps: []mapCount{only}})
}

// cpuTime is the process's user + system CPU time so far, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
