// Test program "deletes" (tests/go/deletes), owned by the test suite: deletes from and clears
// maps with every runtime map-delete function (and through reflect), counts its own writes,
// deletes and clears exactly (without maps) and prints them as JSON lines, for the tracer's
// tests to compare against. Standard library only, Go 1.19+ (clear(m) and reflect.Value.Clear
// from Go 1.21, in clear_go121.go).
//
// What counts: every delete(m, k) call on a non-nil map is a delete, whether k is in the map or
// not (the runtime is called either way); every clear(m), reflect.Value.Clear and
// `for k := range m { delete(m, k) }` loop (which the compiler turns into one clear) on a
// non-nil map is a clear, whatever the map holds. Deletes from a nil map are not counted (there
// is no map): the program makes some, the tracer must not show them.
//
// With -rate R, only the "paced" scenario runs, for -duration seconds: about R rounds a
// second of writing then deleting one of 8 keys (skewed: key i about twice as often as key
// i+1), and a clear every 500 rounds, for live views in budget mode. With -linger S the program
// stays S seconds (or until SIGTERM) after printing its counts, for scrapes.
//
// Output, one JSON object per line:
//
//	{"event":"ready","pid":P}                    (only with -wait; then blocks until SIGUSR1)
//	{"event":"counts","scenario":S,"type":T,"id":ID,"writes":W,"deletes":D,"clears":C,"len":L,
//	 "write_funcs":{"main.f":n,...},"delete_funcs":{...},"clear_funcs":{...},
//	 "keys":[{"key":K,"writes":w,"deletes":d},...]}   (one per scenario; keys by deletes desc, then key)
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
	"syscall"
	"time"
)

// Key is the struct key of the "struct" scenario (generic runtime.mapdelete, string field).
type Key struct {
	ID   int
	Name string
}

// T is the pointee of the "pointer" scenario's keys (mapdelete_fast64).
type T struct {
	ID  int
	pad [8]byte
}

// Package-level maps escape to the heap: their %p ids are the headers the runtime receives.
var (
	mChurn    map[string]int
	mAbsent   map[int64]int
	mInt32    map[int32]int
	mPointer  map[*T]int
	mStruct   map[Key]int
	mIface    map[interface{}]int
	mReflect  map[string]int
	mReflectG map[[2]int]int
	mRefill   map[int]int
	mSizes    [4]map[uint16]int
	mNil      map[string]int
	mPaced    map[string]int

	objects []*T
)

//go:noinline
func writeString(m map[string]int, k string) { m[k]++ }

//go:noinline
func deleteString(m map[string]int, k string) { delete(m, k) }

//go:noinline
func writeInt64(m map[int64]int, k int64) { m[k]++ }

//go:noinline
func deleteInt64(m map[int64]int, k int64) { delete(m, k) }

//go:noinline
func writeInt32(m map[int32]int, k int32) { m[k]++ }

//go:noinline
func deleteInt32(m map[int32]int, k int32) { delete(m, k) }

//go:noinline
func writePointer(m map[*T]int, k *T) { m[k]++ }

//go:noinline
func deletePointer(m map[*T]int, k *T) { delete(m, k) }

//go:noinline
func writeStruct(m map[Key]int, k Key) { m[k]++ }

//go:noinline
func deleteStruct(m map[Key]int, k Key) { delete(m, k) }

//go:noinline
func writeIface(m map[interface{}]int, k interface{}) { m[k]++ }

//go:noinline
func deleteIface(m map[interface{}]int, k interface{}) { delete(m, k) }

//go:noinline
func writeInt(m map[int]int, k int) { m[k]++ }

//go:noinline
func writeUint16(m map[uint16]int, k uint16) { m[k]++ }

// rangeClear is the loop the compiler turns into one runtime.mapclear call.
//
//go:noinline
func rangeClear(m map[int]int) {
	for k := range m {
		delete(m, k)
	}
}

//go:noinline
func rangeClearUint16(m map[uint16]int) {
	for k := range m {
		delete(m, k)
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

// add counts n in the entry of function f (named as the runtime knows it).
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

// scenario holds one map and the exact counts of what was done to it.
type scenario struct {
	name    string
	m       interface{}
	keyOf   func(id int) string // the key as printed (fmt.Sprint, or %p for pointers)
	writes  []int               // per key id
	deletes []int               // per key id
	clears  int
	wf      funcCounts
	df      funcCounts
	cf      funcCounts
}

func newScenario(name string, m interface{}, nkeys int, keyOf func(int) string) *scenario {
	return &scenario{name: name, m: m, keyOf: keyOf, writes: make([]int, nkeys), deletes: make([]int, nkeys)}
}

func (s *scenario) wrote(id int, fn interface{}) {
	s.writes[id]++
	s.wf.add(fn, 1)
}

func (s *scenario) deleted(id int, fn interface{}) {
	s.deletes[id]++
	s.df.add(fn, 1)
}

func (s *scenario) cleared(fn interface{}) {
	s.clears++
	s.cf.add(fn, 1)
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
	Len         int        `json:"len"`
	WriteFuncs  funcCounts `json:"write_funcs"`
	DeleteFuncs funcCounts `json:"delete_funcs"`
	ClearFuncs  funcCounts `json:"clear_funcs"`
	Keys        []keyCount `json:"keys"`
}

func (s *scenario) countsEvent() countsEvent {
	ev := countsEvent{
		Event: "counts", Scenario: s.name, Type: fmt.Sprintf("%T", s.m), ID: fmt.Sprintf("%p", s.m),
		Clears: s.clears, Len: reflect.ValueOf(s.m).Len(), WriteFuncs: s.wf, DeleteFuncs: s.df, ClearFuncs: s.cf, Keys: []keyCount{},
	}
	for id := range s.writes {
		w, d := s.writes[id], s.deletes[id]
		ev.Writes += w
		ev.Deletes += d
		if w+d > 0 {
			ev.Keys = append(ev.Keys, keyCount{Key: s.keyOf(id), Writes: w, Deletes: d})
		}
	}
	sort.Slice(ev.Keys, func(i, j int) bool {
		a, b := ev.Keys[i], ev.Keys[j]
		if a.Deletes != b.Deletes {
			return a.Deletes > b.Deletes
		}
		return a.Key < b.Key
	})
	return ev
}

var out = json.NewEncoder(os.Stdout)

func emit(v interface{}) {
	if err := out.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "deletes:", err)
		os.Exit(1)
	}
}

func sessionKey(id int) string { return "session:" + strconv.Itoa(id) }

func int64Key(id int) int64 { return int64(id)*1000003 - 7 }

func int32Key(id int) int32 { return int32(id)*7919 - 100 }

func structKey(id int) Key { return Key{ID: id, Name: sessionKey(id)} }

// ifaceKey: even ids are strings "k<j>", odd ids are ints j.
func ifaceKey(id int) interface{} {
	if id%2 == 0 {
		return "k" + strconv.Itoa(id/2)
	}
	return id / 2
}

func arrayKey(id int) [2]int { return [2]int{id, -id} }

func sprint(f func(int) interface{}) func(int) string {
	return func(id int) string { return fmt.Sprint(f(id)) }
}

// sizes are the lengths the "clear-sizes" maps and the "refill" map are filled to before each
// clear: empty, one entry, a Swiss small map's eight, past it, and larger tables.
var sizes = []int{0, 1, 8, 9, 100, 3000}

func main() {
	n := flag.Int("n", 3000, "operations per scenario (scaled per scenario)")
	wait := flag.Bool("wait", false, `print {"event":"ready","pid":P} and wait for SIGUSR1 before working`)
	rate := flag.Float64("rate", 0, "if > 0: only the paced scenario, about this many rounds a second")
	duration := flag.Float64("duration", 5, "seconds the paced scenario runs")
	linger := flag.Float64("linger", 0, "seconds to stay after printing the counts (SIGTERM ends it)")
	flag.Parse()
	if *n < 1 {
		fmt.Fprintln(os.Stderr, "deletes: -n must be >= 1")
		os.Exit(2)
	}

	mChurn = make(map[string]int)
	mAbsent = make(map[int64]int)
	mInt32 = make(map[int32]int)
	mPointer = make(map[*T]int)
	mStruct = make(map[Key]int)
	mIface = make(map[interface{}]int)
	mReflect = make(map[string]int)
	mReflectG = make(map[[2]int]int)
	mRefill = make(map[int]int)
	for i := range mSizes {
		mSizes[i] = make(map[uint16]int)
	}
	for i := 0; i < 16; i++ {
		objects = append(objects, &T{ID: i})
	}
	const nkeys = 16
	var (
		sChurn    = newScenario("churn", mChurn, nkeys, sessionKey)
		sAbsent   = newScenario("absent", mAbsent, 2*nkeys, sprint(func(id int) interface{} { return int64Key(id) }))
		sInt32    = newScenario("int32", mInt32, nkeys, sprint(func(id int) interface{} { return int32Key(id) }))
		sPointer  = newScenario("pointer", mPointer, len(objects), func(id int) string { return fmt.Sprintf("%p", objects[id]) })
		sStruct   = newScenario("struct", mStruct, nkeys, sprint(func(id int) interface{} { return structKey(id) }))
		sIface    = newScenario("iface", mIface, 2*nkeys, sprint(ifaceKey))
		sReflect  = newScenario("reflect", mReflect, nkeys, sessionKey)
		sReflectG = newScenario("reflect-generic", mReflectG, nkeys, sprint(func(id int) interface{} { return arrayKey(id) }))
		sRefill   = newScenario("refill", mRefill, 3000, strconv.Itoa)
	)
	all := []*scenario{sChurn, sAbsent, sInt32, sPointer, sStruct, sIface, sReflect, sReflectG, sRefill}
	for i, m := range mSizes {
		all = append(all, newScenario("clear-size-"+strconv.Itoa(sizes[i+2]), m, 3000, strconv.Itoa))
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
		emit(paced(*rate, *duration).countsEvent())
		stay(*linger)
		return
	}

	// Churn: key i is written and deleted n >> i times (a fresh string each time), so the
	// ranking of deletes is exact.
	for id := 0; id < nkeys; id++ {
		for i := 0; i < *n>>uint(id); i++ {
			writeString(mChurn, sessionKey(id))
			sChurn.wrote(id, writeString)
			deleteString(mChurn, sessionKey(id))
			sChurn.deleted(id, deleteString)
		}
	}
	// Deletes of keys never written (ids nkeys..2*nkeys-1), next to writes of others: each is a
	// delete call all the same.
	r := rng{s: 42}
	for i := 0; i < *n; i++ {
		id := int(r.next() % nkeys)
		writeInt64(mAbsent, int64Key(id))
		sAbsent.wrote(id, writeInt64)
		absent := nkeys + int(r.next()%nkeys)
		deleteInt64(mAbsent, int64Key(absent))
		sAbsent.deleted(absent, deleteInt64)
	}
	// Writes and deletes of random keys, present or not, for the other delete functions.
	for i := 0; i < *n; i++ {
		id := int(r.next() % nkeys)
		if r.next()%3 == 0 {
			deleteInt32(mInt32, int32Key(id))
			sInt32.deleted(id, deleteInt32)
		} else {
			writeInt32(mInt32, int32Key(id))
			sInt32.wrote(id, writeInt32)
		}
		id = int(r.next() % uint64(len(objects)))
		if r.next()%3 == 0 {
			deletePointer(mPointer, objects[id])
			sPointer.deleted(id, deletePointer)
		} else {
			writePointer(mPointer, objects[id])
			sPointer.wrote(id, writePointer)
		}
		id = int(r.next() % nkeys)
		if r.next()%2 == 0 {
			deleteStruct(mStruct, structKey(id))
			sStruct.deleted(id, deleteStruct)
		} else {
			writeStruct(mStruct, structKey(id))
			sStruct.wrote(id, writeStruct)
		}
		id = int(r.next() % (2 * nkeys))
		if r.next()%2 == 0 {
			deleteIface(mIface, ifaceKey(id))
			sIface.deleted(id, deleteIface)
		} else {
			writeIface(mIface, ifaceKey(id))
			sIface.wrote(id, writeIface)
		}
	}
	// Through reflect: SetMapIndex with the zero Value deletes (reflect.mapdelete_faststr and
	// reflect.mapdelete, which Swiss-map runtimes build with runtime.mapdelete inlined).
	rv, rg := reflect.ValueOf(mReflect), reflect.ValueOf(mReflectG)
	for i := 0; i < *n/4; i++ {
		id := int(r.next() % nkeys)
		writeString(mReflect, sessionKey(id))
		sReflect.wrote(id, writeString)
		rv.SetMapIndex(reflect.ValueOf(sessionKey(id)), reflect.Value{})
		sReflect.deleted(id, reflect.Value.SetMapIndex)
		rg.SetMapIndex(reflect.ValueOf(arrayKey(id)), reflect.ValueOf(i))
		sReflectG.wrote(id, reflect.Value.SetMapIndex)
		rg.SetMapIndex(reflect.ValueOf(arrayKey(id)), reflect.Value{})
		sReflectG.deleted(id, reflect.Value.SetMapIndex)
	}
	// Clears of maps of several sizes: one map filled and cleared again and again, and one map
	// per size, by the range-and-delete loop, clear(m) and reflect.Value.Clear (Go 1.21+).
	for round := 0; round < 1+*n/1000; round++ {
		for _, size := range sizes {
			for k := 0; k < size; k++ {
				writeInt(mRefill, k)
				sRefill.wrote(k, writeInt)
			}
			if clearRefill(mRefill, round+size) {
				sRefill.cleared(clearBuiltin)
			} else {
				rangeClear(mRefill)
				sRefill.cleared(rangeClear)
			}
		}
	}
	for i, m := range mSizes {
		s := all[len(all)-len(mSizes)+i]
		for k := 0; k < sizes[i+2]; k++ {
			writeUint16(m, uint16(k))
			s.wrote(k, writeUint16)
		}
		rangeClearUint16(m)
		s.cleared(rangeClearUint16)
		if fn := reflectClear(m); fn != nil {
			s.cleared(fn)
		}
	}
	// Nil maps: the runtime is called, nothing is deleted, nothing is counted.
	for i := 0; i < 10; i++ {
		deleteString(mNil, sessionKey(i))
	}

	for _, s := range all {
		emit(s.countsEvent())
	}
	stay(*linger)
}

// paced churns 8 keys of one map at about rate rounds a second for duration seconds.
func paced(rate, duration float64) *scenario {
	mPaced = make(map[string]int)
	s := newScenario("paced", mPaced, 8, func(id int) string { return "hot:" + strconv.Itoa(id) })
	r := rng{s: 7}
	start := time.Now()
	end := time.Duration(duration * float64(time.Second))
	n := 0
	for {
		elapsed := time.Since(start)
		if elapsed >= end {
			break
		}
		for due := int(elapsed.Seconds() * rate); n < due; n++ {
			// Key i with probability 2^-(i+1) (the last one takes the rest).
			id := 0
			for u := r.next(); id < 7 && u&1 == 1; u >>= 1 {
				id++
			}
			writeString(mPaced, "hot:"+strconv.Itoa(id))
			s.wrote(id, writeString)
			deleteString(mPaced, "hot:"+strconv.Itoa(id))
			s.deleted(id, deleteString)
			if n%500 == 499 {
				clearStrings(mPaced)
				s.cleared(clearStrings)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return s
}

//go:noinline
func clearStrings(m map[string]int) {
	for k := range m {
		delete(m, k)
	}
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
