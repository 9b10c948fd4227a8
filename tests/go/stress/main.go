// Test program "stress" (tests/go/stress), owned by the reliability tests: does what is hardest
// on a traced Go program and checks it still computes the same, counting its own map writes
// exactly (without maps). Standard library only, Go 1.19+.
//
// Scenarios, each writing one map type from one function:
//   - "deep"       map[int64]int, main.writeDeep: 8 goroutines recurse 3000 frames deep (about
//     1 MB of stack each, so stacks grow and move) and write at every depth; runtime.GC between
//     descents shrinks the stacks again;
//   - "goroutines" map[string]int, main.writeShared: 10 000 goroutines, each recursing a little
//     and then writing 1-5 times under a mutex;
//   - "preempt"    map[uint32]uint64, main.writePreempt: 4 goroutines run tight loops (no calls,
//     so only asynchronous preemption signals stop them) between writes to their own map, while
//     the main goroutine changes GOMAXPROCS and forces GCs;
//   - "gc"         map[main.gcKey]int, main.writeGC: struct keys with freshly allocated strings,
//     with GC percent 5 and a stream of garbage.
//
// Output (deterministic: byte-identical on every run and every Go version), one JSON object per
// line: {"event":"counts","scenario":S,"type":T,"func":F,"total":N,"distinct":D,"check":C,
// "keys":[{"key":K,"writes":n},...]} with keys by writes desc, then key; "check" is a value
// computed along the way (a hash of the tight loops' results, the recursion's sum) that would
// change if the program were corrupted. Last: {"event":"done"}.
// -wait: prints {"event":"ready","pid":P} first (then it is not deterministic) and waits for
// SIGUSR1. -loops N repeats the whole program N times (for signal tests; default 1).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"syscall"
)

// Every map escapes to the heap (stored in these): a map on a goroutine stack moves when the
// stack is copied, and its header address (the tracer's map id) changes with it; -stackmap
// keeps the gc scenario's map on the stack to show that.
var (
	preemptMaps [4]map[uint32]uint64
	gcMap       map[gcKey]int
)

type gcKey struct {
	name string
	n    int
}

//go:noinline
func writeDeep(m map[int64]int, k int64) { m[k]++ }

//go:noinline
func writeShared(m map[string]int, k string) { m[k]++ }

//go:noinline
func writePreempt(m map[uint32]uint64, k uint32) { m[k]++ }

//go:noinline
func writeGC(m map[gcKey]int, k gcKey) { m[k]++ }

// truth counts one scenario's writes without maps: a slice indexed by a dense key number.
type truth struct {
	names  []string
	counts []uint64
}

func newTruth(n int, name func(i int) string) *truth {
	t := &truth{names: make([]string, n), counts: make([]uint64, n)}
	for i := range t.names {
		t.names[i] = name(i)
	}
	return t
}

type keyCount struct {
	Key    string `json:"key"`
	Writes uint64 `json:"writes"`
}

type countsLine struct {
	Event    string     `json:"event"`
	Scenario string     `json:"scenario"`
	Type     string     `json:"type"`
	Func     string     `json:"func"`
	Total    uint64     `json:"total"`
	Distinct int        `json:"distinct"`
	Check    uint64     `json:"check"`
	Keys     []keyCount `json:"keys"`
}

func emit(scenario, typ, fn string, t *truth, check uint64) {
	line := countsLine{Event: "counts", Scenario: scenario, Type: typ, Func: fn, Check: check}
	for i, c := range t.counts {
		if c > 0 {
			line.Total += c
			line.Keys = append(line.Keys, keyCount{t.names[i], c})
		}
	}
	line.Distinct = len(line.Keys)
	sort.Slice(line.Keys, func(a, b int) bool {
		if line.Keys[a].Writes != line.Keys[b].Writes {
			return line.Keys[a].Writes > line.Keys[b].Writes
		}
		return line.Keys[a].Key < line.Keys[b].Key
	})
	b, err := json.Marshal(line)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
}

// ---- deep recursion

const deepKeys = 500

// descend recurses to depth max with a 512-byte frame, writing at every depth on the way down.
func descend(d, max int, m map[int64]int, mu *sync.Mutex, t *truth) uint64 {
	var frame [64]uint64
	for i := range frame {
		frame[i] = uint64(d*64 + i)
	}
	k := d % deepKeys
	mu.Lock()
	writeDeep(m, int64(k))
	t.counts[k]++
	mu.Unlock()
	sum := frame[d%64]
	if d < max {
		sum += descend(d+1, max, m, mu, t)
	}
	return sum + frame[63-d%64]
}

func deep() {
	m := make(map[int64]int)
	t := newTruth(deepKeys, func(i int) string { return fmt.Sprint(i) })
	var mu sync.Mutex
	var wg sync.WaitGroup
	sums := make([]uint64, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for rep := 0; rep < 2; rep++ {
				sums[g] += descend(0, 2999, m, &mu, t)
				runtime.GC() // shrinks the grown stacks: they move again
			}
		}(g)
	}
	wg.Wait()
	var check uint64
	for _, s := range sums {
		check = check*31 + s
	}
	emit("deep", "map[int64]int", "main.writeDeep", t, check)
}

// ---- 10 000 goroutines

func climb(d int) int {
	var pad [32]int
	pad[d%32] = d
	if d == 0 {
		return pad[0]
	}
	return climb(d-1) + pad[d%32]
}

func goroutines() {
	m := make(map[string]int)
	t := newTruth(100, func(i int) string { return fmt.Sprintf("g:%d", i) })
	var mu sync.Mutex
	var wg sync.WaitGroup
	var check uint64
	for i := 0; i < 10000; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := climb(i % 40)
			k := i % 100
			key := fmt.Sprintf("g:%d", k)
			for n := 0; n < i%5+1; n++ {
				mu.Lock()
				writeShared(m, key)
				t.counts[k]++
				check += uint64(c)
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	emit("goroutines", "map[string]int", "main.writeShared", t, check)
}

// ---- async preemption

//go:noinline
func spin(x uint64, n int) uint64 {
	for i := 0; i < n; i++ { // no calls: only an async preemption signal stops this loop
		x = x*6364136223846793005 + 1442695040888963407
		x ^= x >> 29
	}
	return x
}

func preempt() {
	const workers, writes, keysPer = 4, 3000, 64
	t := newTruth(workers*keysPer, func(i int) string {
		return fmt.Sprint(uint32((i/keysPer)*1000 + i%keysPer))
	})
	results := make([]uint64, workers)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			m := make(map[uint32]uint64)
			preemptMaps[w] = m
			x := uint64(w + 1)
			for i := 0; i < writes; i++ {
				n := 20000
				if i%500 == 0 {
					n = 8000000 // ~20 ms without a call: needs an async preemption signal
				}
				x = spin(x, n)
				k := i % keysPer
				writePreempt(m, uint32(w*1000+k))
				t.counts[w*keysPer+k]++ // own slice range per worker: no lock needed
			}
			results[w] = x
		}(w)
	}
	go func() { wg.Wait(); close(done) }()
	procs := runtime.GOMAXPROCS(0)
	for i := 0; ; i++ {
		select {
		case <-done:
			runtime.GOMAXPROCS(procs)
			var check uint64
			for _, r := range results {
				check = check*31 + r
			}
			emit("preempt", "map[uint32]uint64", "main.writePreempt", t, check)
			return
		default:
		}
		runtime.GOMAXPROCS(1 + i%2)
		runtime.GC()
		runtime.Gosched()
	}
}

// ---- GC pressure

func gcPressure(m map[gcKey]int) {
	old := debug.SetGCPercent(5)
	defer debug.SetGCPercent(old)
	const keys, writes = 300, 30000
	t := newTruth(keys, func(i int) string { return fmt.Sprintf("{k%d %d}", i, i%7) })
	var keep [][]byte
	var check uint64
	for i := 0; i < writes; i++ {
		k := (i * 7919) % keys
		key := gcKey{name: fmt.Sprintf("k%d", k), n: k % 7} // a new string every time
		writeGC(m, key)
		t.counts[k]++
		garbage := make([]byte, 1024+i%4096)
		garbage[i%len(garbage)] = byte(i)
		keep = append(keep, garbage)
		if len(keep) > 64 {
			check += uint64(keep[0][0])
			keep = keep[1:]
		}
	}
	emit("gc", "map[main.gcKey]int", "main.writeGC", t, check+uint64(len(m)))
}

func main() {
	wait := flag.Bool("wait", false, "print a ready line and wait for SIGUSR1 before working")
	loops := flag.Int("loops", 1, "run everything this many times")
	stackMap := flag.Bool("stackmap", false, "keep the gc scenario's map on the stack")
	flag.Parse()
	if *wait {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR1)
		fmt.Printf("{\"event\":\"ready\",\"pid\":%d}\n", os.Getpid())
		<-ch
		signal.Stop(ch)
	}
	for i := 0; i < *loops; i++ {
		deep()
		goroutines()
		preempt()
		if *stackMap {
			gcPressure(make(map[gcKey]int)) // does not escape: on main's stack
		} else {
			gcMap = make(map[gcKey]int)
			gcPressure(gcMap)
		}
	}
	fmt.Println(`{"event":"done"}`)
}
