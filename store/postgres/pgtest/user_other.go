//go:build !linux

package pgtest

import (
	"errors"
	"os"
	"syscall"
)

// serverUser returns nil, to run initdb and postgres as the current user; running them as
// another user is done on Linux only.
func serverUser() (*syscall.SysProcAttr, error) {
	if os.Geteuid() == 0 {
		return nil, errors.New("PostgreSQL refuses to run as root: run the tests as another user")
	}
	return nil, nil
}

func own(string, *syscall.SysProcAttr) error { return nil }

func withParentDeathSignal(as *syscall.SysProcAttr) *syscall.SysProcAttr { return as }
