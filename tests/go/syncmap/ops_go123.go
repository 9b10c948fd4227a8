//go:build go1.23

package main

import (
	"strconv"
	"sync"
)

//go:noinline
func clearMap(m *sync.Map) { m.Clear() }

// clearScenario fills m with 0, 1, 5 and 100 keys and clears it after each.
func clearScenario(m *sync.Map) *scenario {
	s := newScenario("clear", m, 100, func(id int) interface{} { return "cl" + strconv.Itoa(id) })
	for _, size := range []int{0, 1, 5, 100} {
		for id := 0; id < size; id++ {
			store(m, s.keyOf(id))
			s.stored(id, store)
		}
		clearMap(m)
		s.cleared(clearMap)
	}
	return s
}
