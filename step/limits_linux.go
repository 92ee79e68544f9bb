// limits_linux.go: the operating system's part of a child evaluator's bounds, on Linux.

package step

import "syscall"

// childAttr has a child evaluator killed when the thread that started it ends with its process.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// setAddressSpaceLimit bounds the child's address space (RLIMIT_AS), a backstop for what the
// heap watch misses: the Go runtime reserves address space beyond what it uses, so the limit
// is well above the bound, and an allocation past it ends the process with "out of memory".
func setAddressSpaceLimit(limit int64) {
	as := uint64(4*limit) + 4<<30
	_ = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: as, Max: as})
}
