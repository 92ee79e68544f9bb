// Package schedule holds the cron logic shared by the server's cron triggers and the
// controller's WorkflowSchedules: parsing several schedules in a time zone, the next time one
// of them comes round, which missed firing is due (CronJob's catch-up within
// startingDeadlineSeconds), the firings of a backfill, and the name of a firing's run.
package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Bounds of a schedule.
const (
	// MaxSchedules is how many schedules one trigger or WorkflowSchedule may have.
	MaxSchedules = 20
	// MaxBackfill is how many runs one backfill may start.
	MaxBackfill = 100
	// MaxMissed is how many missed firings one look at a schedule counts before it moves the
	// last firing on and counts again (a minute schedule missed for a week is ten looks), so
	// that no look takes unbounded time.
	MaxMissed = 1000
)

// parser reads the five-field cron form and the descriptors (@hourly, @every 5m).
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Set is several cron schedules as one: each time comes round when one of them does.
type Set []cron.Schedule

// Next is the first time after t that one of the schedules comes round; zero when none does
// (within the five years robfig/cron looks ahead).
func (ss Set) Next(t time.Time) time.Time {
	var next time.Time
	for _, s := range ss {
		if n := s.Next(t); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next
}

// Parse reads specs in the time zone timeZone ("" is UTC). An error names the spec by
// specField(i) and the time zone by zoneField, so that each caller reports its own field path.
func Parse(specs []string, specField func(i int) string, timeZone, zoneField string) (Set, error) {
	if timeZone != "" {
		if _, err := time.LoadLocation(timeZone); err != nil {
			return nil, fmt.Errorf("%s %q: %w", zoneField, timeZone, err)
		}
	}
	out := make(Set, 0, len(specs))
	for i, spec := range specs {
		at := specField(i)
		if strings.HasPrefix(strings.TrimSpace(spec), "CRON_TZ=") || strings.HasPrefix(strings.TrimSpace(spec), "TZ=") {
			return nil, fmt.Errorf("%s %q: give the time zone as %s", at, spec, zoneField)
		}
		full := spec
		if timeZone != "" {
			full = "CRON_TZ=" + timeZone + " " + spec
		}
		s, err := parser.Parse(full)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", at, spec, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// Due is what a look at a schedule finds due at some time.
type Due struct {
	// At is the firing to act on; zero when none is due.
	At time.Time
	// Start says whether At starts a run; when it does not, Skipped says why.
	Start   bool
	Skipped string
	// Again says to look at the schedule again at once: MaxMissed firings were counted
	// without reaching now.
	Again bool
}

// DueAt decides what the schedules make due at now, as a Kubernetes CronJob does: of the
// firings after last (the last firing, or when the schedule was created) up to now, only the
// latest starts a run, and only if it is no later than deadline seconds (when set).
func (ss Set) DueAt(last time.Time, deadline *int64, now time.Time) Due {
	latest := ss.Next(last)
	if latest.IsZero() || latest.After(now) {
		return Due{}
	}
	missed := 1
	for {
		later := ss.Next(latest)
		if later.IsZero() || later.After(now) {
			break
		}
		if missed == MaxMissed {
			return Due{At: latest, Skipped: fmt.Sprintf("more than %d firings were missed; only the latest starts a run", MaxMissed), Again: true}
		}
		latest, missed = later, missed+1
	}
	if deadline != nil && now.Sub(latest) > time.Duration(*deadline)*time.Second {
		return Due{At: latest, Skipped: fmt.Sprintf("missed the firing at %s: %s late, past startingDeadlineSeconds (%d)",
			latest.UTC().Format(time.RFC3339), now.Sub(latest).Truncate(time.Second), *deadline)}
	}
	return Due{At: latest, Start: true}
}

// Between lists the times in [from, to] that the schedules come round, oldest first; more
// than limit of them is an error.
func (ss Set) Between(from, to time.Time, limit int) ([]time.Time, error) {
	var times []time.Time
	for at := ss.Next(from.Add(-time.Nanosecond)); !at.IsZero() && !at.After(to); at = ss.Next(at) {
		if len(times) == limit {
			return nil, fmt.Errorf("from %s to %s the schedules come round more than %d times: backfill at most %d runs at once, over shorter intervals",
				from.Format(time.RFC3339), to.Format(time.RFC3339), limit, limit)
		}
		times = append(times, at)
	}
	return times, nil
}

// RunName is the name of the run that the schedule called prefix starts for its firing at:
// the same for a firing and for a backfill of it, so that neither starts it twice.
func RunName(prefix string, at time.Time) string {
	if at.Second() == 0 && at.Nanosecond() == 0 {
		return fmt.Sprintf("%s-%d", prefix, at.Unix()/60)
	}
	return fmt.Sprintf("%s-%ds", prefix, at.Unix())
}
