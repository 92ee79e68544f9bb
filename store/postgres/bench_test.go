package postgres_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store/postgres"
	"github.com/stepflow/stepflow/store/storetest"
)

// BenchmarkSave saves runs with one log entry each, from one goroutine (each save waits for
// its round trip and commit) and from 1,000 (one run each, as the engine saves runs in
// flight; the pool's connections share them out). It reports saves/s. The test server runs
// with fsync off, so this measures stepflow, pgx and PostgreSQL's work, not the disk.
func BenchmarkSave(b *testing.B) {
	for _, runs := range []int{1, 1000} {
		b.Run("goroutines="+strconv.Itoa(runs), func(b *testing.B) {
			st, err := postgres.Open(b.Context(), postgres.Options{URL: newDatabase(b), MaxConns: 8})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			benchmarkSave(b, st, runs)
		})
	}
}

func benchmarkSave(b *testing.B, st *postgres.Store, runs int) {
	ctx := b.Context()
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

// BenchmarkSaveLargeOutputs is the per-transition cost of the run: 30 outputs of
// 0.9 MB held, and one save per transition that changes only the status. Before the outputs
// were kept as blobs, each save rewrote the 27 MB.
func BenchmarkSaveLargeOutputs(b *testing.B) {
	ctx := b.Context()
	st, err := postgres.Open(ctx, postgres.Options{URL: newDatabase(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
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
