// Test program "flood" (tests/go/flood), owned by the reliability tests: first -calm distinct
// string keys ("calm:<i>") written once each into a map[string]int of their own from
// main.writeCalm — fewer than a tracer's ring buffer holds, so a tracer that keeps up with
// nothing still sees every one of them — then -n distinct string keys ("flood:" + 32 digits)
// written as fast as it can into one map[string]int from main.writeKey, deleting each key 1024
// writes later so that the program itself stays small. Counts its own writes and deletes
// (without maps). Standard library only, Go 1.19+.
//
// Output: {"event":"done","writes":N,"distinct":N,"deletes":D,"calm":K,"elapsed_ns":T}
// (writes, distinct and deletes: the flood's; calm: the calm phase's writes, all to distinct
// keys).
package main

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

//go:noinline
func writeKey(m map[string]int, k string) { m[k] = 1 }

//go:noinline
func writeCalm(m map[string]int, k string) { m[k] = 1 }

func key(buf []byte, i int) string {
	buf = append(buf[:0], "flood:"...)
	digits := strconv.AppendInt(nil, int64(i), 10)
	for j := len(digits); j < 32; j++ {
		buf = append(buf, '0')
	}
	return string(append(buf, digits...))
}

var (
	m    = map[string]int{} // package-level: on the heap
	calm = map[string]int{}
)

func main() {
	n := flag.Int("n", 10000000, "distinct keys to write")
	calmN := flag.Int("calm", 50000, "distinct keys to write into the calm map first")
	flag.Parse()
	var calmWrites uint64
	for i := 0; i < *calmN; i++ {
		writeCalm(calm, "calm:"+strconv.Itoa(i))
		calmWrites++
	}
	buf := make([]byte, 0, 64)
	ring := make([]string, 1024)
	var writes, deletes uint64
	start := time.Now()
	for i := 0; i < *n; i++ {
		k := key(buf, i)
		writeKey(m, k)
		writes++
		slot := i % len(ring)
		if old := ring[slot]; old != "" {
			delete(m, old)
			deletes++
		}
		ring[slot] = k
	}
	fmt.Printf("{\"event\":\"done\",\"writes\":%d,\"distinct\":%d,\"deletes\":%d,\"calm\":%d,\"elapsed_ns\":%d}\n",
		writes, writes, deletes, calmWrites, time.Since(start).Nanoseconds())
}
