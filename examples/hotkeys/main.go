// Example program for the README (examples/hotkeys): a tiny in-memory session store where one
// user is hot. Trace it with ebpf-map-trace and compare with the exact counts it prints at the end.
//
//	go build -o hotkeys examples/hotkeys/main.go && ./hotkeys -duration 10s
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Session is one user's session. Sessions are immutable: Touch replaces them.
type Session struct {
	User    string
	Expires time.Time
	Touches int
}

// Store keeps the sessions and a requests-per-second histogram.
type Store struct {
	mu       sync.Mutex
	sessions map[string]*Session
	hits     map[int64]int // unix second -> requests
}

func NewStore() *Store {
	return &Store{sessions: make(map[string]*Session), hits: make(map[int64]int)}
}

// Touch records a request from user and extends their session.
func (s *Store) Touch(user string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	touches := 0
	if old := s.sessions[user]; old != nil {
		touches = old.Touches
	}
	s.sessions[user] = &Session{User: user, Expires: now.Add(30 * time.Minute), Touches: touches + 1}
	s.hits[now.Unix()]++
}

func main() {
	duration := flag.Duration("duration", 3*time.Second, "how long to run")
	workers := flag.Int("workers", 4, "goroutines calling Touch")
	flag.Parse()

	store := NewStore()
	deadline := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			others := rand.NewZipf(rng, 1.1, 1, 9999)
			for i := 0; ; i++ {
				if i%1024 == 0 && time.Now().After(deadline) {
					return
				}
				user := "user:42" // the hot user: about 30% of requests
				if rng.Intn(10) >= 3 {
					user = "user:" + strconv.FormatUint(1000+others.Uint64(), 10)
				}
				store.Touch(user)
			}
		}(int64(w + 1))
	}
	wg.Wait()

	var sessions []*Session
	total := 0
	for _, s := range store.sessions {
		sessions = append(sessions, s)
		total += s.Touches
	}
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].Touches > sessions[j].Touches })
	fmt.Printf("hotkeys: %d writes to Store.sessions by %d goroutines in %v; top 5 keys:\n",
		total, *workers, *duration)
	for i, s := range sessions {
		if i == 5 {
			break
		}
		fmt.Printf("  %-10s %9d  %5.1f%%\n", s.User, s.Touches, 100*float64(s.Touches)/float64(total))
	}
}
