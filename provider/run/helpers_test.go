package run_test

import "os/exec"

// execLookPath finds a program on PATH.
func execLookPath(name string) (string, error) { return exec.LookPath(name) }
