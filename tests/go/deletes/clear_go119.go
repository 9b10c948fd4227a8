//go:build !go1.21

package main

// Before Go 1.21 there is no clear(m) and no reflect.Value.Clear: the range-and-delete loop
// clears every time.

func clearBuiltin(m map[int]int) {}

func clearRefill(m map[int]int, turn int) bool { return false }

func reflectClear(m map[uint16]int) interface{} { return nil }
