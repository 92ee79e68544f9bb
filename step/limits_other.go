//go:build !linux

// limits_other.go: elsewhere than on Linux, a child evaluator has only its heap watch.

package step

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }

func setAddressSpaceLimit(int64) {}
