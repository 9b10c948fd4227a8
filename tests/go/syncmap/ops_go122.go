//go:build !go1.23

package main

import "sync"

// Before Go 1.23 sync.Map has no Clear.
func clearScenario(m *sync.Map) *scenario { return nil }
