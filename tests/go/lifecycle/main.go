// Test program "lifecycle" (tests/go/lifecycle), owned by the reliability tests: a traced
// program that forks children or replaces itself. Standard library only, Go 1.19+.
//
//	-mode fork: writes -n keys "parent:<i%10>" from main.writeKey, runs itself as a child
//	            (os/exec, -mode child) that writes -n keys "child:<i%10>" to its own map, waits
//	            for it, then writes -n more parent keys;
//	-mode long: writes -n keys "<i%10>:" + 1000 x's (keys longer than any --key-bytes);
//	-mode exec: writes -n keys "parent:<i%10>", prints its counts, then syscall.Exec's -exec
//	            with the argument -exec-arg (the process goes on as another program).
//
// Output: {"event":"counts","who":"parent"|"child","writes":N} per process (the child's goes
// to the same stdout), and with -wait first {"event":"ready","pid":P} (then waits for SIGUSR1).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
)

var m = map[string]int{}

//go:noinline
func writeKey(m map[string]int, k string) { m[k]++ }

func write(who string, n int) int {
	for i := 0; i < n; i++ {
		writeKey(m, fmt.Sprintf("%s:%d", who, i%10))
	}
	return n
}

func main() {
	mode := flag.String("mode", "fork", "fork, exec, long or child")
	n := flag.Int("n", 1000, "writes per phase")
	execPath := flag.String("exec", "/bin/sleep", "program to exec in -mode exec")
	execArg := flag.String("exec-arg", "1", "its one argument")
	wait := flag.Bool("wait", false, "print a ready line and wait for SIGUSR1")
	flag.Parse()
	if *wait {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR1)
		fmt.Printf("{\"event\":\"ready\",\"pid\":%d}\n", os.Getpid())
		<-ch
		signal.Stop(ch)
	}
	switch *mode {
	case "long":
		pad := strings.Repeat("x", 1000)
		for i := 0; i < *n; i++ {
			writeKey(m, fmt.Sprintf("%d:%s", i%10, pad))
		}
		fmt.Printf("{\"event\":\"counts\",\"who\":\"parent\",\"writes\":%d}\n", *n)
	case "child":
		fmt.Printf("{\"event\":\"counts\",\"who\":\"child\",\"writes\":%d}\n", write("child", *n))
	case "fork":
		w := write("parent", *n)
		self, err := os.Executable()
		if err != nil {
			panic(err)
		}
		cmd := exec.Command(self, "-mode", "child", "-n", fmt.Sprint(*n))
		cmd.Stdout = os.Stdout
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			panic(err)
		}
		w += write("parent", *n)
		fmt.Printf("{\"event\":\"counts\",\"who\":\"parent\",\"writes\":%d}\n", w)
	case "exec":
		w := write("parent", *n)
		fmt.Printf("{\"event\":\"counts\",\"who\":\"parent\",\"writes\":%d}\n", w)
		argv := []string{*execPath, *execArg}
		if err := syscall.Exec(*execPath, argv, os.Environ()); err != nil {
			panic(err)
		}
	}
}
