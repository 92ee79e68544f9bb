//go:build !linux

package cputime

import (
	"errors"
	"time"
)

func used(bool) (time.Duration, error) {
	return 0, errors.New("the CPU time of child processes is read from /proc, which this system has not")
}
