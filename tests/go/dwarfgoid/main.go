// Test program "dwarfgoid" (tests/go/dwarfgoid), owned by the test suite: the independent truth
// for where a Go binary keeps the goroutine id. Reads the binary's DWARF with Go's own
// debug/dwarf and prints the offset of the goid field in struct runtime.g.
// Standard library only, Go 1.19+.
//
// Usage: dwarfgoid BINARY
// Output: {"goid_offset":N}, or exit status 3 with a message when the binary has no DWARF.
package main

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dwarfgoid BINARY")
		os.Exit(2)
	}
	f, err := elf.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "dwarfgoid:", err)
		os.Exit(1)
	}
	d, err := f.DWARF()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dwarfgoid: no DWARF:", err)
		os.Exit(3)
	}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			fmt.Fprintln(os.Stderr, "dwarfgoid:", err)
			os.Exit(1)
		}
		if e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType || e.Val(dwarf.AttrName) != "runtime.g" {
			continue
		}
		t, err := d.Type(e.Offset)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dwarfgoid:", err)
			os.Exit(1)
		}
		for _, field := range t.(*dwarf.StructType).Field {
			if field.Name == "goid" {
				fmt.Printf("{\"goid_offset\":%d}\n", field.ByteOffset)
				return
			}
		}
		fmt.Fprintln(os.Stderr, "dwarfgoid: runtime.g has no goid field")
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "dwarfgoid: no runtime.g in DWARF")
	os.Exit(1)
}
