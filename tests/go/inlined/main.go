// Test program "inlined" (tests/go/inlined), owned by the test suite: map writes from a method
// the compiler inlines, reached through another inlined function and directly, so a tracer's
// stacks must expand inlined calls to name the writer. Counts its own writes (without maps) and
// prints them. Standard library only, Go 1.19+.
//
// Output: {"event":"done","loop":N,"direct":M}: N writes through loop → record → (*Store).touch,
// M through direct → (*Store).touch (record and touch inlined, loop and direct not).
package main

import (
	"flag"
	"fmt"
)

// Store holds one map written only by touch.
type Store struct{ m map[string]int }

// touch is small enough to be inlined into every caller.
func (s *Store) touch(k string) { s.m[k]++ }

// record is inlined into loop, with touch inlined into it.
func record(s *Store, k string) { s.touch(k) }

//go:noinline
func loop(s *Store, n int, keys []string) int {
	for i := 0; i < n; i++ {
		record(s, keys[i%len(keys)])
	}
	return n
}

//go:noinline
func direct(s *Store, n int) int {
	for i := 0; i < n; i++ {
		s.touch("direct")
	}
	return n
}

func main() {
	n := flag.Int("n", 5000, "writes through loop (direct makes half as many)")
	flag.Parse()
	s := &Store{m: make(map[string]int)}
	a := loop(s, *n, []string{"a", "b", "c"})
	b := direct(s, *n/2)
	fmt.Printf("{\"event\":\"done\",\"loop\":%d,\"direct\":%d}\n", a, b)
}
