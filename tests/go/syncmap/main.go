// Test program "syncmap" (tests/go/syncmap), owned by the test suite: stores into, deletes from
// and clears sync.Maps with every method that does, counts its own successful operations per key
// exactly (without maps) and prints them as JSON lines, for the tracer's tests to compare against.
// Standard library only, Go 1.19+ (Swap, CompareAndSwap and CompareAndDelete from Go 1.20 in
// ops_go120.go, Clear from Go 1.23 in ops_go123.go: older Go skips the scenarios that need them).
//
// What counts: a store is a Store or Swap, a LoadOrStore that did not load, a CompareAndSwap that
// swapped; a delete is a LoadAndDelete that loaded, a Delete of a key that was there, a
// CompareAndDelete that deleted; a clear is every Clear. Loads, failed compares and deletes of
// absent keys count as nothing.
//
// With -rate R, only the "paced" scenario runs, for -duration seconds: about R rounds a second
// of storing then deleting (LoadAndDelete) one of 8 keys (key i about twice as often as key
// i+1), for live views in budget mode; with -stores-only, storing only. With -linger S the program stays S seconds (or until
// SIGTERM) after printing its counts.
//
// Output, one JSON object per line:
//
//	{"event":"ready","pid":P}                    (only with -wait; then blocks until SIGUSR1)
//	{"event":"counts","scenario":S,"type":"sync.Map","id":ID,"writes":W,"deletes":D,"clears":C,
//	 "write_funcs":{"main.f":n,...},"delete_funcs":{...},"clear_funcs":{...},
//	 "keys":[{"key":K,"writes":w,"deletes":d},...]}   (one per scenario; keys by writes desc, then key;
//	                                                   type map[string]int for scenario "plain")
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The sync.Maps of the scenarios, package-level: their addresses are their ids.
var (
	mMixed  sync.Map
	mCAS    sync.Map
	mConc   sync.Map
	mClear  sync.Map
	mMethod sync.Map
	mKeys   sync.Map
	mPaced  sync.Map
	mInter  sync.Map

	// A runtime map written between sync.Map operations (package-level: its %p id is the
	// header the runtime receives).
	plain = map[string]int{}

	objects [8]int64
)

//go:noinline
func plainWrite(m map[string]int, k string) { m[k]++ }

//go:noinline
func store(m *sync.Map, k interface{}) { m.Store(k, 1) }

//go:noinline
func loadOrStore(m *sync.Map, k interface{}) bool {
	_, loaded := m.LoadOrStore(k, 1)
	return loaded
}

//go:noinline
func loadAndDelete(m *sync.Map, k interface{}) bool {
	_, loaded := m.LoadAndDelete(k)
	return loaded
}

//go:noinline
func deleteKey(m *sync.Map, k interface{}) { m.Delete(k) }

//go:noinline
func loadOnly(m *sync.Map, k interface{}) {
	m.Load(k)
	m.Range(func(k, v interface{}) bool { return true })
}

// viaMethodValue calls Store and Delete through method values: out-of-line wrappers (in Go 1.20+
// Store only calls Swap, Delete only LoadAndDelete) whose call site must still be this function.
//
//go:noinline
func viaMethodValue(m *sync.Map, k interface{}, del bool) {
	if del {
		f := m.Delete
		f(k)
	} else {
		f := m.Store
		f(k, 2)
	}
}

// rng is splitmix64: the same sequence on every Go version.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// skewed draws an id in [0, n): id i with probability about 2^-(i+1).
func (r *rng) skewed(n int) int {
	id := 0
	for u := r.next(); id < n-1 && u&1 == 1; u >>= 1 {
		id++
	}
	return id
}

type funcCount struct {
	name string
	n    int
}

// funcCounts marshals as a JSON object without building a Go map.
type funcCounts []funcCount

func (f funcCounts) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for _, c := range f {
		if c.n == 0 {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		name, err := json.Marshal(c.name)
		if err != nil {
			return nil, err
		}
		b.Write(name)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(c.n))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (f *funcCounts) add(fn interface{}, n int) {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	for i := range *f {
		if (*f)[i].name == name {
			(*f)[i].n += n
			return
		}
	}
	*f = append(*f, funcCount{name: name, n: n})
}

// scenario is one sync.Map and the exact counts of what was done to it, and which of its keys
// are in it now.
type scenario struct {
	name    string
	m       *sync.Map
	typ, id string // of a runtime map's scenario (m nil)
	keyOf   func(id int) interface{}
	writes  []int
	deletes []int
	present []bool
	clears  int
	wf      funcCount
	wfs     funcCounts
	dfs     funcCounts
	cfs     funcCounts
}

func newScenario(name string, m *sync.Map, nkeys int, keyOf func(int) interface{}) *scenario {
	return &scenario{name: name, m: m, keyOf: keyOf, writes: make([]int, nkeys),
		deletes: make([]int, nkeys), present: make([]bool, nkeys)}
}

func (s *scenario) stored(id int, fn interface{}) {
	s.writes[id]++
	s.present[id] = true
	s.wfs.add(fn, 1)
}

func (s *scenario) deleted(id int, fn interface{}) {
	s.deletes[id]++
	s.present[id] = false
	s.dfs.add(fn, 1)
}

func (s *scenario) cleared(fn interface{}) {
	s.clears++
	for i := range s.present {
		s.present[i] = false
	}
	s.cfs.add(fn, 1)
}

// merge adds another scenario's counts (a goroutine's share).
func (s *scenario) merge(o *scenario) {
	for i := range s.writes {
		s.writes[i] += o.writes[i]
		s.deletes[i] += o.deletes[i]
	}
	for _, f := range o.wfs {
		s.wfs = append(s.wfs, f)
	}
	for _, f := range o.dfs {
		s.dfs = append(s.dfs, f)
	}
}

// op does one random operation on key id, counting it if it stored or deleted.
func (s *scenario) op(r *rng, id int) {
	k := s.keyOf(id)
	switch r.next() % 5 {
	case 0:
		store(s.m, k)
		s.stored(id, store)
	case 1:
		if !loadOrStore(s.m, k) {
			s.stored(id, loadOrStore)
		}
	case 2:
		if loadAndDelete(s.m, k) {
			s.deleted(id, loadAndDelete)
		}
	case 3:
		was := s.present[id]
		deleteKey(s.m, k)
		if was {
			s.deleted(id, deleteKey)
		}
	default:
		loadOnly(s.m, k)
	}
}

type keyCount struct {
	Key     string `json:"key"`
	Writes  int    `json:"writes"`
	Deletes int    `json:"deletes"`
}

type countsEvent struct {
	Event       string     `json:"event"`
	Scenario    string     `json:"scenario"`
	Type        string     `json:"type"`
	ID          string     `json:"id"`
	Writes      int        `json:"writes"`
	Deletes     int        `json:"deletes"`
	Clears      int        `json:"clears"`
	WriteFuncs  funcCounts `json:"write_funcs"`
	DeleteFuncs funcCounts `json:"delete_funcs"`
	ClearFuncs  funcCounts `json:"clear_funcs"`
	Keys        []keyCount `json:"keys"`
}

func (s *scenario) countsEvent() countsEvent {
	typ, id := s.typ, s.id
	if s.m != nil {
		typ, id = "sync.Map", fmt.Sprintf("%p", s.m)
	}
	ev := countsEvent{
		Event: "counts", Scenario: s.name, Type: typ, ID: id,
		Clears: s.clears, WriteFuncs: merged(s.wfs), DeleteFuncs: merged(s.dfs), ClearFuncs: s.cfs,
		Keys: []keyCount{},
	}
	for id := range s.writes {
		w, d := s.writes[id], s.deletes[id]
		ev.Writes += w
		ev.Deletes += d
		if w+d > 0 {
			ev.Keys = append(ev.Keys, keyCount{Key: fmt.Sprint(s.keyOf(id)), Writes: w, Deletes: d})
		}
	}
	sort.Slice(ev.Keys, func(i, j int) bool {
		a, b := ev.Keys[i], ev.Keys[j]
		if a.Writes != b.Writes {
			return a.Writes > b.Writes
		}
		return a.Key < b.Key
	})
	return ev
}

// merged sums the entries of one function name.
func merged(f funcCounts) funcCounts {
	var out funcCounts
	for _, c := range f {
		found := false
		for i := range out {
			if out[i].name == c.name {
				out[i].n += c.n
				found = true
			}
		}
		if !found {
			out = append(out, c)
		}
	}
	return out
}

var out = json.NewEncoder(os.Stdout)

func emit(v interface{}) {
	if err := out.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "syncmap:", err)
		os.Exit(1)
	}
}

// mixedKey: even ids are strings "k<j>", odd ids are ints j.
func mixedKey(id int) interface{} {
	if id%2 == 0 {
		return "k" + strconv.Itoa(id/2)
	}
	return id / 2
}

// otherKey: pointers, arrays and int64s.
func otherKey(id int) interface{} {
	switch id % 3 {
	case 0:
		return &objects[id/3]
	case 1:
		return [2]int{id, -id}
	}
	return int64(id) * 1000003
}

func main() {
	n := flag.Int("n", 3000, "operations per scenario")
	wait := flag.Bool("wait", false, `print {"event":"ready","pid":P} and wait for SIGUSR1 before working`)
	rate := flag.Float64("rate", 0, "if > 0: only the paced scenario, about this many rounds a second")
	duration := flag.Float64("duration", 5, "seconds the paced scenario runs")
	storesOnly := flag.Bool("stores-only", false, "the paced scenario only stores")
	linger := flag.Float64("linger", 0, "seconds to stay after printing the counts (SIGTERM ends it)")
	flag.Parse()
	if *n < 1 {
		fmt.Fprintln(os.Stderr, "syncmap: -n must be >= 1")
		os.Exit(2)
	}
	if *wait {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR1)
		emit(struct {
			Event string `json:"event"`
			Pid   int    `json:"pid"`
		}{"ready", os.Getpid()})
		<-ch
	}
	if *rate > 0 {
		emit(paced(*rate, *duration, *storesOnly).countsEvent())
		stay(*linger)
		return
	}
	var all []*scenario

	// Every method on one map, keys of two dynamic types, skewed.
	s := newScenario("mixed", &mMixed, 16, mixedKey)
	r := rng{s: 1}
	for i := 0; i < *n; i++ {
		s.op(&r, r.skewed(16))
	}
	all = append(all, s)

	// Pointer, array and int64 keys.
	s = newScenario("keys", &mKeys, 24, otherKey)
	for i := 0; i < *n; i++ {
		s.op(&r, int(r.next()%24))
	}
	all = append(all, s)

	// Eight goroutines on one map, each on keys of its own (so each knows which are there).
	const workers = 8
	conc := newScenario("concurrent", &mConc, 8*workers, func(id int) interface{} { return "c" + strconv.Itoa(id) })
	shares := make([]*scenario, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		shares[w] = newScenario("", &mConc, 8*workers, conc.keyOf)
		wg.Add(1)
		go func(w int, s *scenario) {
			defer wg.Done()
			r := rng{s: uint64(100 + w)}
			for i := 0; i < *n/workers; i++ {
				s.op(&r, w*8+r.skewed(8))
			}
		}(w, shares[w])
	}
	wg.Wait()
	for _, sh := range shares {
		conc.merge(sh)
	}
	all = append(all, conc)

	// sync.Map operations with a runtime map's write after each (in-kernel counting must count
	// both exactly, whichever of them its slots hold, and before Go 1.24 the sync.Map's own
	// runtime map too, which is not shown).
	s = newScenario("interleaved", &mInter, 16, func(id int) interface{} { return "i" + strconv.Itoa(id) })
	p := newScenario("plain", nil, 16, func(id int) interface{} { return "i" + strconv.Itoa(id) })
	p.typ, p.id = "map[string]int", fmt.Sprintf("%p", plain)
	// (No Store here: more than 4 maps stored into from one site would be grouped in the report.)
	for i := 0; i < *n; i++ {
		id := r.skewed(16)
		k := s.keyOf(id)
		switch r.next() % 3 {
		case 0:
			if !loadOrStore(s.m, k) {
				s.stored(id, loadOrStore)
			}
		case 1:
			if loadAndDelete(s.m, k) {
				s.deleted(id, loadAndDelete)
			}
		default:
			was := s.present[id]
			deleteKey(s.m, k)
			if was {
				s.deleted(id, deleteKey)
			}
		}
		plainWrite(plain, "i"+strconv.Itoa(id))
		p.stored(id, plainWrite)
	}
	all = append(all, s, p)

	// Store and Delete through method values.
	s = newScenario("methodvalue", &mMethod, 8, func(id int) interface{} { return "mv" + strconv.Itoa(id) })
	for i := 0; i < *n/4; i++ {
		id := r.skewed(8)
		if r.next()%2 == 0 {
			viaMethodValue(s.m, s.keyOf(id), false)
			s.stored(id, viaMethodValue)
		} else {
			was := s.present[id]
			viaMethodValue(s.m, s.keyOf(id), true)
			if was {
				s.deleted(id, viaMethodValue)
			}
		}
	}
	all = append(all, s)

	// Swap, CompareAndSwap and CompareAndDelete (Go 1.20+), and Clear (Go 1.23+).
	if s := compareScenario(&mCAS, *n); s != nil {
		all = append(all, s)
	}
	if s := clearScenario(&mClear); s != nil {
		all = append(all, s)
	}

	for _, s := range all {
		emit(s.countsEvent())
	}
	stay(*linger)
}

// paced stores then (unless storesOnly) deletes one of 8 keys about rate times a second for
// duration seconds.
func paced(rate, duration float64, storesOnly bool) *scenario {
	s := newScenario("paced", &mPaced, 8, func(id int) interface{} { return "hot:" + strconv.Itoa(id) })
	r := rng{s: 7}
	start := time.Now()
	end := time.Duration(duration * float64(time.Second))
	done := 0
	for {
		elapsed := time.Since(start)
		if elapsed >= end {
			break
		}
		for due := int(elapsed.Seconds() * rate); done < due; done++ {
			id := r.skewed(8)
			store(s.m, s.keyOf(id))
			s.stored(id, store)
			if !storesOnly && loadAndDelete(s.m, s.keyOf(id)) {
				s.deleted(id, loadAndDelete)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return s
}

// stay waits seconds, or until SIGTERM.
func stay(seconds float64) {
	if seconds <= 0 {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	select {
	case <-ch:
	case <-time.After(time.Duration(seconds * float64(time.Second))):
	}
}
