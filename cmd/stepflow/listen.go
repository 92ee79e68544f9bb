package main

import (
	"log"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/netutil"
)

// connLimits bound what a client may hold of `stepflow server`: the time to send a request,
// to read its answer, and to keep an idle connection, and the connections open at once.
// Event streams and ?wait outlive the read and write timeouts: their handlers extend their own
// deadlines (package server).
type connLimits struct {
	readTimeout    time.Duration
	writeTimeout   time.Duration
	idleTimeout    time.Duration
	maxConnections int
}

// readHeaderTimeout bounds the headers of a request, within --read-timeout.
const readHeaderTimeout = 10 * time.Second

// addFlags registers the limits' flags on cmd.
func (l *connLimits) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.DurationVar(&l.readTimeout, "read-timeout", 30*time.Second, "longest a client may take to send a request, headers and body (408 past it)")
	fl.DurationVar(&l.writeTimeout, "write-timeout", time.Minute, "longest an answer may take to be written (event streams and ?wait excepted)")
	fl.DurationVar(&l.idleTimeout, "idle-timeout", 30*time.Second, "longest a keep-alive connection may stay idle")
	fl.IntVar(&l.maxConnections, "max-connections", 1024, "most client connections open at once; more wait to be accepted")
}

// check refuses limits that would leave clients unbounded.
func (l *connLimits) check() error {
	for _, d := range []struct {
		flag  string
		value time.Duration
	}{{"--read-timeout", l.readTimeout}, {"--write-timeout", l.writeTimeout}, {"--idle-timeout", l.idleTimeout}} {
		if d.value <= 0 {
			return invalidf("%s %s: want a positive duration", d.flag, d.value)
		}
	}
	if l.maxConnections < 1 {
		return invalidf("--max-connections %d: want at least 1", l.maxConnections)
	}
	return nil
}

// server is the http.Server of h within the limits.
func (l *connLimits) server(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(readHeaderTimeout, l.readTimeout),
		ReadTimeout:       l.readTimeout,
		WriteTimeout:      l.writeTimeout,
		IdleTimeout:       l.idleTimeout,
		ErrorLog:          errorLog,
	}
}

// listener accepts at most maxConnections connections at once from ln.
func (l *connLimits) listener(ln net.Listener) net.Listener {
	return netutil.LimitListener(ln, l.maxConnections)
}
