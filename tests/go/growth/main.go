// Test program "growth" (tests/go/growth), owned by the test suite: inserts -n distinct keys into
// one map made with make(map[K]int, -hint), so that the map grows a predictable number of times,
// then prints {"event":"done","id":"0xc..","type":"map[int64]int","len":L,"n":N}.
// With -wait it first prints {"event":"ready","pid":P} and blocks until SIGUSR1 (the map is made
// after the signal). Standard library only, Go 1.19+.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// Package-level, so the maps escape to the heap and %p is the map header the runtime sees.
var (
	mInt64  map[int64]int
	mString map[string]int
)

//go:noinline
func insertInt64(m map[int64]int, k int64, v int) { m[k] = v }

//go:noinline
func insertString(m map[string]int, k string, v int) { m[k] = v }

type readyEvent struct {
	Event string `json:"event"`
	Pid   int    `json:"pid"`
}

type doneEvent struct {
	Event string `json:"event"`
	ID    string `json:"id"`
	Type  string `json:"type"`
	Len   int    `json:"len"`
	N     int    `json:"n"`
}

var out = json.NewEncoder(os.Stdout)

func emit(v interface{}) {
	if err := out.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "growth:", err)
		os.Exit(1)
	}
}

func main() {
	n := flag.Int("n", 1000, "distinct keys to insert")
	hint := flag.Int("hint", 0, "size hint for make")
	kind := flag.String("kind", "int64", "key type: int64 or string")
	wait := flag.Bool("wait", false, `print {"event":"ready","pid":P} and wait for SIGUSR1 before making the map`)
	flag.Parse()
	if *n < 0 || *hint < 0 || (*kind != "int64" && *kind != "string") {
		fmt.Fprintln(os.Stderr, "growth: need -n >= 0, -hint >= 0, -kind int64|string")
		os.Exit(2)
	}

	if *wait {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR1)
		emit(readyEvent{Event: "ready", Pid: os.Getpid()})
		<-ch
	}

	var m interface{}
	var length int
	if *kind == "int64" {
		mInt64 = make(map[int64]int, *hint)
		for i := 0; i < *n; i++ {
			insertInt64(mInt64, int64(i)*2654435761-1<<40, i)
		}
		m, length = mInt64, len(mInt64)
	} else {
		mString = make(map[string]int, *hint)
		for i := 0; i < *n; i++ {
			insertString(mString, "k"+strconv.Itoa(i), i)
		}
		m, length = mString, len(mString)
	}
	emit(doneEvent{Event: "done", ID: fmt.Sprintf("%p", m), Type: fmt.Sprintf("%T", m), Len: length, N: *n})
}
