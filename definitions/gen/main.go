// Command gen writes the reference of the built-in step types (docs/step-types.md) from their
// definitions and examples. Run it with `go generate ./definitions`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/stepflow/stepflow/definitions"
)

func main() {
	out := flag.String("o", "docs/step-types.md", "the file to write")
	flag.Parse()
	b, err := definitions.Reference()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
