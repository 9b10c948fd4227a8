//go:build go1.21

package main

import "reflect"

//go:noinline
func clearBuiltin(m map[int]int) { clear(m) }

// clearRefill clears m with clear(m) on odd turns (and reports it), else leaves it to the
// caller's range-and-delete loop.
func clearRefill(m map[int]int, turn int) bool {
	if turn%2 == 1 {
		clearBuiltin(m)
		return true
	}
	return false
}

// reflectClear clears m through reflect.Value.Clear (reflect.mapclear) and returns the function
// that did.
func reflectClear(m map[uint16]int) interface{} {
	reflect.ValueOf(m).Clear()
	return reflect.Value.Clear
}
