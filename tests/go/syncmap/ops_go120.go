//go:build go1.20

package main

import (
	"strconv"
	"sync"
)

//go:noinline
func swap(m *sync.Map, k, v interface{}) { m.Swap(k, v) }

//go:noinline
func compareAndSwap(m *sync.Map, k, old, new interface{}) bool { return m.CompareAndSwap(k, old, new) }

//go:noinline
func compareAndDelete(m *sync.Map, k, old interface{}) bool { return m.CompareAndDelete(k, old) }

// compareScenario swaps, compares-and-swaps and compares-and-deletes keys of m, half of the
// compares against the value the key has (they succeed if the key is there), half against
// another (they fail).
func compareScenario(m *sync.Map, n int) *scenario {
	s := newScenario("compare", m, 8, func(id int) interface{} { return "cas" + strconv.Itoa(id) })
	value := make([]int, 8)
	r := rng{s: 3}
	for i := 0; i < n; i++ {
		id := r.skewed(8)
		k := s.keyOf(id)
		old := value[id]
		if r.next()%2 == 0 {
			old += 1000 // not the value: fails
		}
		switch r.next() % 3 {
		case 0:
			value[id] = i
			swap(m, k, i)
			s.stored(id, swap)
		case 1:
			if compareAndSwap(m, k, old, i) {
				value[id] = i
				s.stored(id, compareAndSwap)
			}
		default:
			if compareAndDelete(m, k, old) {
				s.deleted(id, compareAndDelete)
			}
		}
	}
	return s
}
