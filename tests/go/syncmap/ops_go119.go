//go:build !go1.20

package main

import "sync"

// Before Go 1.20 sync.Map has no Swap, CompareAndSwap or CompareAndDelete.
func compareScenario(m *sync.Map, n int) *scenario { return nil }
