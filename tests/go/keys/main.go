// Test program "keys" (tests/go/keys), owned by the test suite: writes skewed keys of many key
// types into maps, counts its own writes exactly (without maps) and prints the expected results
// as JSON lines, for the tracer's tests to compare against. Standard library only, Go 1.19+.
//
// Output, one JSON object per line:
//
//	{"event":"types","main_main":"0x..","maps":[{"scenario":S,"type":T,"type_addr":"0x..","id":"0xc..","key_layout":L},...]}
//	{"event":"ready","pid":P}                    (only with -wait; then blocks until SIGUSR1)
//	{"event":"counts","scenario":S,"type":T,"id":ID,"total":N,"funcs":{"main.writeX":n,...},
//	 "keys":[{"key":K,"writes":n},...]}          (one per scenario; keys sorted by writes desc, then key)
//
// key_layout is the key type's memory layout as reflect sees it (see layout).
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
	"unsafe"
)

// Key is the struct key type of the "struct" scenario.
type Key struct {
	ID   int
	Name string
}

// T is the pointee of the "pointer" scenario's keys.
type T struct {
	ID  int
	pad [24]byte
}

// The maps live in package-level variables so they escape to the heap and their %p ids are the
// map header addresses the runtime's map-assign functions receive.
var (
	mString    map[string]int
	mInt64     map[int64]int
	mUint32    map[uint32]int
	mPointer   map[*T]int
	mStruct    map[Key]int
	mArray     map[[3]int]int
	mIface     map[interface{}]int
	mTwoA      map[string]int
	mTwoB      map[string]int
	mShared    map[string]int
	mGoroutine map[string]int
	mBig       map[string][200]byte

	objects []*T // the pointer scenario's keys
)

//go:noinline
func writeString(m map[string]int, k string) { m[k]++ }

//go:noinline
func writeInt64(m map[int64]int, k int64) { m[k]++ }

//go:noinline
func writeUint32(m map[uint32]int, k uint32) { m[k]++ }

//go:noinline
func writePointer(m map[*T]int, k *T) { m[k]++ }

//go:noinline
func writeStruct(m map[Key]int, k Key) { m[k]++ }

//go:noinline
func writeArray(m map[[3]int]int, k [3]int) { m[k]++ }

//go:noinline
func writeIface(m map[interface{}]int, k interface{}) { m[k]++ }

//go:noinline
func writeA(m map[string]int, k string) { m[k]++ }

//go:noinline
func writeB(m map[string]int, k string) { m[k]++ }

//go:noinline
func writeLocked(m map[string]int, k string) { m[k]++ }

//go:noinline
func writeBig(m map[string][200]byte, k string, b byte) {
	var v [200]byte
	v[0], v[199] = b, b
	m[k] = v
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

// zipf draws ids in [0, n) where the key of rank r has weight ~1/(r+1), computed in integers so
// that the sequence is exact and identical everywhere. Ranks are shuffled onto ids so that the
// hottest key is not id 0.
type zipf struct {
	cdf []uint64
	ids []int
	r   rng
}

func newZipf(seed uint64, n int) *zipf {
	z := &zipf{cdf: make([]uint64, n), ids: make([]int, n), r: rng{s: seed}}
	var sum uint64
	for i := 0; i < n; i++ {
		sum += (1 << 32) / uint64(i+1)
		z.cdf[i] = sum
		z.ids[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(z.r.next() % uint64(i+1))
		z.ids[i], z.ids[j] = z.ids[j], z.ids[i]
	}
	return z
}

func (z *zipf) next() int {
	u := z.r.next() % z.cdf[len(z.cdf)-1]
	rank := sort.Search(len(z.cdf), func(i int) bool { return z.cdf[i] > u })
	return z.ids[rank]
}

// scenario holds one map and the exact count of writes made to it.
type scenario struct {
	name   string
	m      interface{}
	nkeys  int
	keyOf  func(id int) string // the key as printed (fmt.Sprint, or %p for pointers)
	counts []int               // writes per key id
	funcs  []funcCount         // writes per write function
}

type funcCount struct {
	name string
	n    int
}

func (s *scenario) count(id, fn int) {
	s.counts[id]++
	s.funcs[fn].n++
}

// funcName is the name of f as the runtime (pclntab) knows it, e.g. "main.writeString".
func funcName(f interface{}) string {
	return runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
}

func newScenario(name string, m interface{}, nkeys int, keyOf func(int) string, fns ...interface{}) *scenario {
	s := &scenario{name: name, m: m, nkeys: nkeys, keyOf: keyOf, counts: make([]int, nkeys)}
	for _, f := range fns {
		s.funcs = append(s.funcs, funcCount{name: funcName(f)})
	}
	return s
}

// typeAddr is the address of m's runtime type descriptor: the first word of the interface.
func typeAddr(m interface{}) uintptr {
	return (*[2]uintptr)(unsafe.Pointer(&m))[0]
}

func userKey(id int) string { return "user:" + strconv.Itoa(id) }

func int64Key(id int) int64 { return (int64(id) - 10) * 1000000007 }

func uint32Key(id int) uint32 { return uint32(id) * 2654435761 }

func structKey(id int) Key { return Key{ID: id, Name: userKey(id)} }

func arrayKey(id int) [3]int { return [3]int{id, id * id, -id} }

// ifaceKey: even ids are strings "k<j>", odd ids are ints j, so "k7" and 7 are both keys.
func ifaceKey(id int) interface{} {
	if id%2 == 0 {
		return "k" + strconv.Itoa(id/2)
	}
	return id / 2
}

var out = json.NewEncoder(os.Stdout)

func emit(v interface{}) {
	if err := out.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "keys:", err)
		os.Exit(1)
	}
}

type mapInfo struct {
	Scenario  string `json:"scenario"`
	Type      string `json:"type"`
	TypeAddr  string `json:"type_addr"`
	ID        string `json:"id"`
	KeyLayout string `json:"key_layout"`
}

// layout describes how values of t lie in memory, as reflect reports it: "bool", "i<size>",
// "u<size>", "f<size>", "c<size>", "string", "ptr" (pointers, channels, unsafe pointers),
// "eface" / "iface" (empty / non-empty interfaces), "[<len>]<elem size>:<elem>" for arrays and
// "{<offset>:<field>,...}" for structs.
func layout(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("i%d", t.Size())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return fmt.Sprintf("u%d", t.Size())
	case reflect.Float32, reflect.Float64:
		return fmt.Sprintf("f%d", t.Size())
	case reflect.Complex64, reflect.Complex128:
		return fmt.Sprintf("c%d", t.Size())
	case reflect.String:
		return "string"
	case reflect.Ptr, reflect.Chan, reflect.UnsafePointer:
		return "ptr"
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return "eface"
		}
		return "iface"
	case reflect.Array:
		return fmt.Sprintf("[%d]%d:%s", t.Len(), t.Elem().Size(), layout(t.Elem()))
	case reflect.Struct:
		var b bytes.Buffer
		b.WriteByte('{')
		for i := 0; i < t.NumField(); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			f := t.Field(i)
			fmt.Fprintf(&b, "%d:%s", f.Offset, layout(f.Type))
		}
		b.WriteByte('}')
		return b.String()
	}
	return "?" + t.Kind().String()
}

type typesEvent struct {
	Event    string    `json:"event"`
	MainMain string    `json:"main_main"`
	Maps     []mapInfo `json:"maps"`
}

type readyEvent struct {
	Event string `json:"event"`
	Pid   int    `json:"pid"`
}

type keyCount struct {
	Key    string `json:"key"`
	Writes int    `json:"writes"`
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

type countsEvent struct {
	Event    string     `json:"event"`
	Scenario string     `json:"scenario"`
	Type     string     `json:"type"`
	ID       string     `json:"id"`
	Total    int        `json:"total"`
	Funcs    funcCounts `json:"funcs"`
	Keys     []keyCount `json:"keys"`
}

func (s *scenario) countsEvent() countsEvent {
	ev := countsEvent{
		Event: "counts", Scenario: s.name, Type: fmt.Sprintf("%T", s.m), ID: fmt.Sprintf("%p", s.m),
		Funcs: funcCounts(s.funcs), Keys: []keyCount{},
	}
	for id, n := range s.counts {
		if n > 0 {
			ev.Total += n
			ev.Keys = append(ev.Keys, keyCount{Key: s.keyOf(id), Writes: n})
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

func main() {
	n := flag.Int("n", 20000, "writes per scenario")
	wait := flag.Bool("wait", false, `print {"event":"ready","pid":P} and wait for SIGUSR1 before writing`)
	seed := flag.Uint64("seed", 1, "PRNG seed")
	flag.Parse()
	if *n < 0 {
		fmt.Fprintln(os.Stderr, "keys: -n must be >= 0")
		os.Exit(2)
	}

	mString = make(map[string]int)
	mInt64 = make(map[int64]int)
	mUint32 = make(map[uint32]int)
	mPointer = make(map[*T]int)
	mStruct = make(map[Key]int)
	mArray = make(map[[3]int]int)
	mIface = make(map[interface{}]int)
	mTwoA = make(map[string]int)
	mTwoB = make(map[string]int)
	mShared = make(map[string]int)
	mGoroutine = make(map[string]int)
	mBig = make(map[string][200]byte)
	for i := 0; i < 50; i++ {
		objects = append(objects, &T{ID: i})
	}

	const nkeys = 64
	sprint := func(f func(int) interface{}) func(int) string {
		return func(id int) string { return fmt.Sprint(f(id)) }
	}
	var (
		sString    = newScenario("string", mString, nkeys, userKey, writeString)
		sInt64     = newScenario("int64", mInt64, nkeys, sprint(func(id int) interface{} { return int64Key(id) }), writeInt64)
		sUint32    = newScenario("uint32", mUint32, nkeys, sprint(func(id int) interface{} { return uint32Key(id) }), writeUint32)
		sPointer   = newScenario("pointer", mPointer, len(objects), func(id int) string { return fmt.Sprintf("%p", objects[id]) }, writePointer)
		sStruct    = newScenario("struct", mStruct, nkeys, sprint(func(id int) interface{} { return structKey(id) }), writeStruct)
		sArray     = newScenario("array", mArray, nkeys, sprint(func(id int) interface{} { return arrayKey(id) }), writeArray)
		sIface     = newScenario("iface", mIface, 2*nkeys, sprint(ifaceKey), writeIface)
		sTwoA      = newScenario("twofuncs_a", mTwoA, nkeys, userKey, writeA)
		sTwoB      = newScenario("twofuncs_b", mTwoB, nkeys, userKey, writeB)
		sShared    = newScenario("shared", mShared, nkeys, userKey, writeA, writeB)
		sGoroutine = newScenario("goroutines", mGoroutine, nkeys, userKey, writeLocked)
		sBig       = newScenario("bigelem", mBig, nkeys, func(id int) string { return "big:" + strconv.Itoa(id) }, writeBig)
	)
	all := []*scenario{sString, sInt64, sUint32, sPointer, sStruct, sArray, sIface, sTwoA, sTwoB, sShared, sGoroutine, sBig}

	types := typesEvent{Event: "types", MainMain: fmt.Sprintf("0x%x", reflect.ValueOf(main).Pointer())}
	for _, s := range all {
		types.Maps = append(types.Maps, mapInfo{
			Scenario: s.name, Type: fmt.Sprintf("%T", s.m),
			TypeAddr: fmt.Sprintf("0x%x", typeAddr(s.m)), ID: fmt.Sprintf("%p", s.m),
			KeyLayout: layout(reflect.TypeOf(s.m).Key()),
		})
	}
	emit(types)

	if *wait {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR1)
		emit(readyEvent{Event: "ready", Pid: os.Getpid()})
		<-ch
	}

	zipfFor := func(i int) *zipf { return newZipf(*seed*1000+uint64(i), nkeys) }

	z := zipfFor(0)
	for i := 0; i < *n; i++ {
		id := z.next()
		writeString(mString, userKey(id)) // a fresh string (new data pointer) every time
		sString.count(id, 0)
	}
	z = zipfFor(1)
	for i := 0; i < *n; i++ {
		id := z.next()
		writeInt64(mInt64, int64Key(id))
		sInt64.count(id, 0)
	}
	z = zipfFor(2)
	for i := 0; i < *n; i++ {
		id := z.next()
		writeUint32(mUint32, uint32Key(id))
		sUint32.count(id, 0)
	}
	z = newZipf(*seed*1000+3, len(objects))
	for i := 0; i < *n; i++ {
		id := z.next()
		writePointer(mPointer, objects[id])
		sPointer.count(id, 0)
	}
	z = zipfFor(4)
	for i := 0; i < *n; i++ {
		id := z.next()
		writeStruct(mStruct, structKey(id)) // Name is a fresh string every time
		sStruct.count(id, 0)
	}
	z = zipfFor(5)
	for i := 0; i < *n; i++ {
		id := z.next()
		writeArray(mArray, arrayKey(id))
		sArray.count(id, 0)
	}
	z = newZipf(*seed*1000+6, 2*nkeys)
	for i := 0; i < *n; i++ {
		id := z.next()
		writeIface(mIface, ifaceKey(id))
		sIface.count(id, 0)
	}

	// Three maps of one type, written interleaved: A only from writeA, B only from writeB,
	// shared from both (about 70% writeA).
	za, zb, zs := zipfFor(7), zipfFor(8), zipfFor(9)
	pick := rng{s: *seed*1000 + 10}
	for i := 0; i < *n; i++ {
		id := za.next()
		writeA(mTwoA, userKey(id))
		sTwoA.count(id, 0)
		id = zb.next()
		writeB(mTwoB, userKey(id))
		sTwoB.count(id, 0)
		id = zs.next()
		if pick.next()%10 < 7 {
			writeA(mShared, userKey(id))
			sShared.count(id, 0)
		} else {
			writeB(mShared, userKey(id))
			sShared.count(id, 1)
		}
	}

	// Eight goroutines, one mutex, n writes in all; each goroutine counts in its own slice.
	const workers = 8
	shape := zipfFor(12) // one key ranking for all workers, one random stream each
	var mu sync.Mutex
	var wg sync.WaitGroup
	perWorker := make([][]int, workers)
	for w := 0; w < workers; w++ {
		writes := *n / workers
		if w < *n%workers {
			writes++
		}
		perWorker[w] = make([]int, nkeys)
		wg.Add(1)
		go func(counts []int, z *zipf, writes int) {
			defer wg.Done()
			for i := 0; i < writes; i++ {
				id := z.next()
				k := userKey(id)
				mu.Lock()
				writeLocked(mGoroutine, k)
				mu.Unlock()
				counts[id]++
			}
		}(perWorker[w], &zipf{cdf: shape.cdf, ids: shape.ids, r: rng{s: *seed*1000 + 100 + uint64(w)}}, writes)
	}
	wg.Wait()
	for _, counts := range perWorker {
		for id, c := range counts {
			sGoroutine.counts[id] += c
			sGoroutine.funcs[0].n += c
		}
	}

	z = zipfFor(11)
	for i := 0; i < *n; i++ {
		id := z.next()
		writeBig(mBig, "big:"+strconv.Itoa(id), byte(i))
		sBig.count(id, 0)
	}

	for _, s := range all {
		emit(s.countsEvent())
	}
}
