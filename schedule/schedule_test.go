package schedule_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/schedule"
)

func parse(t *testing.T, tz string, specs ...string) schedule.Set {
	t.Helper()
	s, err := schedule.Parse(specs, func(i int) string { return fmt.Sprintf("schedules[%d]", i) }, tz, "timeZone")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Several schedules fire whenever one does, read in the time zone given.
func TestNextOverSeveralSchedulesInAZone(t *testing.T) {
	s := parse(t, "Europe/Paris", "0 9 * * *", "30 8 * * *")
	at := time.Date(2026, 7, 1, 6, 0, 0, 0, time.UTC) // 08:00 in Paris (CEST)
	if got, want := s.Next(at), time.Date(2026, 7, 1, 6, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("next %s, want %s", got.UTC(), want)
	}
}

// Errors name the field and the value they are about.
func TestParseErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		tz    string
		specs []string
		want  string
	}{
		{"", []string{"@hourly", "61 * * * *"}, `schedules[1] "61 * * * *"`},
		{"Mars/Olympus", []string{"@hourly"}, `timeZone "Mars/Olympus"`},
		{"", []string{"CRON_TZ=UTC 0 * * * *"}, "give the time zone as timeZone"},
	} {
		_, err := schedule.Parse(c.specs, func(i int) string { return fmt.Sprintf("schedules[%d]", i) }, c.tz, "timeZone")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v in %q: error %v, want %q", c.specs, c.tz, err, c.want)
		}
	}
}

// Of the firings missed, only the latest is due, and only within the deadline.
func TestDueAtTheLatestMissedFiringWithinTheDeadline(t *testing.T) {
	s := parse(t, "", "* * * * *")
	last := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := last.Add(5*time.Minute + 20*time.Second)
	if d := s.DueAt(last, nil, now); !d.Start || !d.At.Equal(last.Add(5*time.Minute)) {
		t.Errorf("no deadline: %+v, want the firing at 00:05 started", d)
	}
	deadline := int64(10)
	if d := s.DueAt(last, &deadline, now); d.Start || !d.At.Equal(last.Add(5*time.Minute)) || !strings.Contains(d.Skipped, "past startingDeadlineSeconds (10)") {
		t.Errorf("deadline 10s: %+v, want 00:05 skipped", d)
	}
	if d := s.DueAt(last, nil, last.Add(30*time.Second)); !d.At.IsZero() {
		t.Errorf("before the next firing: %+v, want nothing due", d)
	}
}

// A backfill lists the firings of [from, to], both ends in, and refuses more than its limit.
func TestBetween(t *testing.T) {
	s := parse(t, "", "0 * * * *")
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	times, err := s.Between(from, from.Add(3*time.Hour), 100)
	if err != nil || len(times) != 4 || !times[0].Equal(from) {
		t.Errorf("Between: %v %v, want the 4 hours from 00:00 to 03:00", times, err)
	}
	if _, err := s.Between(from, from.Add(3*time.Hour), 3); err == nil || !strings.Contains(err.Error(), "more than 3 times") {
		t.Errorf("over the limit: %v", err)
	}
}
