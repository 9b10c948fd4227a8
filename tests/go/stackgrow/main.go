// Test program "stackgrow" (tests/go/stackgrow), owned by tests/stack_check.rs: map writes made
// where the goroutine's stack runs out, so that the map-assign function's own stack check finds
// the stack too small, calls morestack and starts the function again. (On Go 1.17-1.20 the tracer
// probes that check's branch: such a hit must not count, its re-entry does.) It counts its own
// writes exactly, without maps. Standard library only, Go 1.19+.
//
// Each round runs in a fresh goroutine (a small stack, one round at a time): it takes `pad`
// small frames (a different number each round), then recurses `-depth` frames deep, writing at
// every depth to one of three maps (by round): string keys (runtime.mapassign_faststr), int64
// keys (mapassign_fast64), or int64 keys with 200-byte values (the generic mapassign). Those
// write paths call nothing that checks the stack below the map function (the key hashes are
// assembly without a stack check, existing keys are only updated): the map function's entry is
// the deepest point each depth reaches, so the stack runs out, each time it doubles, at its
// stack check.
//
// Output (deterministic: the same on every run and Go version), one JSON object per line:
// {"event":"counts","scenario":S,"type":T,"func":F,"total":N,"distinct":D,"check":C,
// "keys":[{"key":K,"writes":n},...]} per map (scenario "str", "int" or "big"), keys by writes desc then key, "key" as Go's %v
// prints it; "check" is what the map holds at the end: the sum of its counters (it must equal
// "total") or, for the 200-byte values, of their first bytes (each write stores its count mod
// 256 there). Last: {"event":"done"}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
)

// Keys per map: few, so that every key is in a report's top keys.
const nkeys = 13

type big [200]byte

// The maps escape (globals): their headers do not move with the stacks.
var (
	strMap = map[string]int{}
	intMap = map[int64]int{}
	bigMap = map[int64]big{}
)

// Truth without maps: per map, a count per key number.
var truth [3][nkeys]uint64

var strKeys = func() (s [nkeys]string) {
	for i := range s {
		s[i] = fmt.Sprintf("key-%02d", i)
	}
	return s
}()

// vals[n] is the value the big map's n-th write of a key stores.
var vals = func() (v [256]big) {
	for i := range v {
		v[i][0] = byte(i)
		v[i][199] = byte(i)
	}
	return v
}()

//go:noinline
func writeStr(k string) { strMap[k]++ }

//go:noinline
func writeInt(k int64) { intMap[k]++ }

//go:noinline
func writeBig(k int64, n uint64) { bigMap[k] = vals[n%256] }

// descend writes once to map `which` at every depth from d down to 1, on the way down.
//
//go:noinline
func descend(d, round, which int) int {
	if d == 0 {
		return 0
	}
	i := (d*7 + round) % nkeys
	truth[which][i]++
	switch which {
	case 0:
		writeStr(strKeys[i])
	case 1:
		writeInt(int64(i * 1000))
	case 2:
		writeBig(int64(i*1000+1), truth[which][i])
	}
	return descend(d-1, round, which) + 1
}

// pad takes n small frames, then runs f.
//
//go:noinline
func pad(n int, f func()) {
	if n > 0 {
		pad(n-1, f)
		return
	}
	f()
}

type keyCount struct {
	Key    string `json:"key"`
	Writes uint64 `json:"writes"`
}

func emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
}

func main() {
	rounds := flag.Int("rounds", 900, "rounds, each in a fresh goroutine")
	depth := flag.Int("depth", 300, "recursion depth of a round (a write at every depth)")
	flag.Parse()

	for r := 0; r < *rounds; r++ {
		done := make(chan int)
		go func(r int) {
			pad(r%41, func() { done <- descend(*depth, r, r%3) })
		}(r)
		if got := <-done; got != *depth {
			panic(fmt.Sprintf("round %d: descended %d of %d", r, got, *depth))
		}
	}

	names := [3]string{"str", "int", "big"}
	types := [3]string{"map[string]int", "map[int64]int", "map[int64]main.big"}
	funcs := [3]string{"main.writeStr", "main.writeInt", "main.writeBig"}
	for m := 0; m < 3; m++ {
		var keys []keyCount
		var total, check uint64
		for i := 0; i < nkeys; i++ {
			n := truth[m][i]
			if n == 0 {
				continue
			}
			var k string
			switch m {
			case 0:
				k, check = strKeys[i], check+uint64(strMap[strKeys[i]])
			case 1:
				k, check = fmt.Sprint(i*1000), check+uint64(intMap[int64(i*1000)])
			case 2:
				k, check = fmt.Sprint(i*1000+1), check+uint64(bigMap[int64(i*1000+1)][0])
			}
			keys = append(keys, keyCount{k, n})
			total += n
		}
		sort.Slice(keys, func(a, b int) bool {
			if keys[a].Writes != keys[b].Writes {
				return keys[a].Writes > keys[b].Writes
			}
			return keys[a].Key < keys[b].Key
		})
		emit(map[string]any{
			"event": "counts", "scenario": names[m], "type": types[m], "func": funcs[m],
			"total": total, "distinct": len(keys), "check": check, "keys": keys,
		})
	}
	if len(strMap) > nkeys || len(intMap) > nkeys || len(bigMap) > nkeys {
		fmt.Fprintln(os.Stderr, "more keys than written")
		os.Exit(1)
	}
	emit(map[string]any{"event": "done"})
}
