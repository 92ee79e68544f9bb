package cputime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ticks is the length of a clock tick of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const ticks = 10 * time.Millisecond

func used(withEnded bool) (time.Duration, error) {
	var self, ended syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		return 0, fmt.Errorf("cpu time of this process: %w", err)
	}
	total := time.Duration(self.Utime.Nano() + self.Stime.Nano())
	if withEnded {
		if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ended); err != nil {
			return 0, fmt.Errorf("cpu time of its ended children: %w", err)
		}
		total += time.Duration(ended.Utime.Nano() + ended.Stime.Nano())
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("cpu time of its running children: %w", err)
	}
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // not a process, or one that ended meanwhile
		}
		// pid (comm) state ppid ... utime stime: fields 4 and 14, 15, counted after comm,
		// which may hold anything up to its last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 > len(stat) {
			continue
		}
		f := strings.Fields(string(stat[i+2:]))
		if len(f) < 13 || f[1] != me {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * ticks
	}
	return total, nil
}
