package sqlite_test

import (
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store/sqlite"
	"github.com/stepflow/stepflow/store/storetest"
)

// BenchmarkSaveParallel saves from 10,000 goroutines at once, one run each, as the engine does
// with 10,000 runs in flight; each save carries one log entry and is durable (synchronous=FULL)
// when it returns. It reports saves/s.
func BenchmarkSaveParallel(b *testing.B) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		b.Run("synchronous="+mode, func(b *testing.B) { benchmarkSave(b, 10_000, mode) })
	}
}

// BenchmarkSaveSerial saves from one goroutine: every save waits for its own commit and fsync,
// the cost group commit shares out in BenchmarkSaveParallel.
func BenchmarkSaveSerial(b *testing.B) { benchmarkSave(b, 1, "FULL") }

func benchmarkSave(b *testing.B, runs int, synchronous string) {
	ctx := b.Context()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: tempPath(b), Synchronous: synchronous})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	}()
	if size := len(mustJSON(b, storetest.NewRun("bench", "run"))); b.N == 1 {
		b.Logf("run JSON: %d bytes", size)
	}

	var left atomic.Int64
	left.Store(int64(b.N))
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	b.ResetTimer()
	for i := range runs {
		wg.Go(func() {
			run := storetest.NewRun("bench", "run-"+strconv.Itoa(i))
			for n := 0; left.Add(-1) >= 0; n++ {
				run.Object.Status.Message = strconv.Itoa(n)
				log := []engine.LogEntry{{Time: time.Now(), Step: "fetch", Action: "http.#Do", Message: run.Object.Status.Message}}
				if err := st.Save(ctx, run, log); err != nil {
					failed.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "saves/s")
}

func mustJSON(b *testing.B, v any) []byte {
	b.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkSaveLargeOutputs is the per-transition cost of the run: 30 outputs of
// 0.9 MB held, and one save per transition that changes only the status, durable
// (synchronous=FULL). Before the outputs were kept as blobs, each save rewrote the 27 MB.
func BenchmarkSaveLargeOutputs(b *testing.B) {
	ctx := b.Context()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: tempPath(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	}()
	run := storetest.NewRun("bench", "large")
	for i := range 30 {
		v := make([]byte, 900_000)
		for j := range v {
			v[j] = 'a' + byte(i%26)
		}
		v[0], v[len(v)-1] = '"', '"'
		run.Vars["out"+strconv.Itoa(i)] = v
	}
	if err := st.Save(ctx, run, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		run.Object.Status.Message = strconv.Itoa(n)
		if err := st.Save(ctx, run, nil); err != nil {
			b.Fatal(err)
		}
	}
}
