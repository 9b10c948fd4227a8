// Test program "kvserver" (tests/go/kvserver), owned by the test suite, for budget-mode
// benchmarks and tests: an HTTP server on loopback whose handler writes Go maps, counting its own
// writes exactly without maps, so a tracer's estimates can be checked against the truth under
// real load generators (ab, hey, wrk). Standard library only, Go 1.19+.
//
// Every request to /:
//   - takes the next draw of a Zipf-skewed key sequence (a shared atomic counter indexes a
//     precomputed, deterministic sequence over -keys keys "user:<i>") and does sessions[key]++
//     (map[string]int, from main.touch);
//   - does requests["GET /"]++ (map[string]int, from main.countRequest): one write per request;
//   - does -work rounds of SHA-256 over a 256-byte buffer (CPU per request, like real handlers).
//
// Both maps are guarded by one mutex (Go maps are not safe for concurrent writes).
//
// Output, one JSON object per line on stdout:
//
//	{"event":"ready","pid":P,"addr":"127.0.0.1:PORT"}   (once listening)
//	{"event":"done","requests":N,"elapsed_ns":T,"cpu_ns":C,"keys":[{"key":K,"writes":n},...]}
//
// "done" is printed on SIGTERM or SIGINT (or after -requests requests, if > 0); "keys" lists the
// top -top keys of sessions by writes desc, then key. cpu_ns is the process's user + system CPU
// time since ready. elapsed_ns is the time from the first request to the last.
package main

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	mu       sync.Mutex
	sessions = make(map[string]int)
	requests = make(map[string]int)
)

//go:noinline
func touch(k string) { sessions[k]++ }

//go:noinline
func countRequest(route string) { requests[route]++ }

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

type keyCount struct {
	Key    string `json:"key"`
	Writes int64  `json:"writes"`
}

type doneEvent struct {
	Event     string     `json:"event"`
	Requests  int64      `json:"requests"`
	ElapsedNs int64      `json:"elapsed_ns"`
	CPUNs     int64      `json:"cpu_ns"`
	Keys      []keyCount `json:"keys"`
}

var out = json.NewEncoder(os.Stdout)

func emit(v interface{}) {
	if err := out.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "kvserver:", err)
		os.Exit(1)
	}
}

func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback)")
	nkeys := flag.Int("keys", 1000, "distinct session keys")
	work := flag.Int("work", 20, "SHA-256 rounds per request")
	top := flag.Int("top", 50, "keys listed in the done line")
	limit := flag.Int64("requests", 0, "if > 0: print done and exit after this many requests")
	seed := flag.Uint64("seed", 1, "PRNG seed")
	flag.Parse()
	if *nkeys < 1 || *nkeys > 1<<24 || *work < 0 {
		fmt.Fprintln(os.Stderr, "kvserver: need 1 <= -keys <= 16777216 and -work >= 0")
		os.Exit(2)
	}
	keys := make([]string, *nkeys)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	const mask = 1<<20 - 1
	draws := samples(*seed, *nkeys, mask+1)
	counts := make([]int64, *nkeys)
	var served, firstNs, lastNs int64
	start := time.Now()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvserver:", err)
		os.Exit(1)
	}
	finished := make(chan struct{}, 1)
	handler := func(w http.ResponseWriter, r *http.Request) {
		n := atomic.AddInt64(&served, 1)
		now := int64(time.Since(start))
		atomic.CompareAndSwapInt64(&firstNs, 0, now)
		id := draws[(n-1)&mask]
		var buf [256]byte
		buf[0] = byte(n)
		for i := 0; i < *work; i++ {
			s := sha256.Sum256(buf[:])
			copy(buf[:], s[:])
		}
		mu.Lock()
		touch(keys[id])
		countRequest("GET /")
		counts[id]++
		mu.Unlock()
		atomic.StoreInt64(&lastNs, int64(time.Since(start)))
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%08x\n", buf[:4]) // fixed length: ab checks it
		if *limit > 0 && n == *limit {
			finished <- struct{}{}
		}
	}
	srv := &http.Server{Handler: http.HandlerFunc(handler)}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			fmt.Fprintln(os.Stderr, "kvserver:", err)
			os.Exit(1)
		}
	}()
	cpuStart := cpuTime()
	emit(map[string]interface{}{"event": "ready", "pid": os.Getpid(), "addr": ln.Addr().String()})

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-finished:
	}
	srv.Close()
	mu.Lock()
	defer mu.Unlock()
	list := make([]keyCount, 0, len(keys))
	for i, c := range counts {
		if c > 0 {
			list = append(list, keyCount{Key: keys[i], Writes: c})
		}
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Writes != list[j].Writes {
			return list[i].Writes > list[j].Writes
		}
		return list[i].Key < list[j].Key
	})
	if len(list) > *top {
		list = list[:*top]
	}
	emit(doneEvent{
		Event:     "done",
		Requests:  atomic.LoadInt64(&served),
		ElapsedNs: atomic.LoadInt64(&lastNs) - atomic.LoadInt64(&firstNs),
		CPUNs:     cpuTime() - cpuStart,
		Keys:      list,
	})
}
