package store

import (
	"fmt"
	"strings"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Dialect is what the SQL stores write differently in the queries they share: List's and
// Count's selection of runs, and the listing of stored definitions and Workflows. Each store
// has one; what else differs between them (column types, upserts, notifications) stays in
// its own SQL.
type Dialect struct {
	// Param is a statement's nth parameter, counted from 1: "?" in SQLite, "$1" in PostgreSQL.
	Param func(n int) string
	// StartTime is a bound of ListOptions on the runs' start_time as the parameter compared
	// with the column: Unix nanoseconds in SQLite, the time itself in PostgreSQL. The other
	// time columns (end_time, expires) take it alike.
	StartTime func(time.Time) any
	// Ended is the SQL expression of when a finished run ended: end_time, or created for
	// a run stored without one.
	Ended string
	// Started is the condition that a run has started, which a bound on start_time adds so
	// that it leaves out the runs not started: "start_time <> 0" in SQLite, which stores 0
	// for unset; "" in PostgreSQL, which stores NULL, which no bound holds for.
	Started string
	// NoLimit is the parameter of LIMIT that sets no limit: -1 in SQLite, NULL (nil) in
	// PostgreSQL.
	NoLimit any
}

// runSummaryColumns are the columns of the runs table ListRuns selects, in the order
// ReadRunSummary reads them.
const runSummaryColumns = `namespace, name, version, phase, message, start_time, end_time, steps_total,
		steps_running, steps_suspending, steps_succeeded, steps_failed, steps_skipped,
		template, created`

// Query runs a query with its parameters on a SQL store and reads each row of the result, in
// order: the store's own way over its driver, for the shared queries.
type Query[T any] func(query string, args ...any) ([]T, error)

// ListRuns is the SQL stores' List: the summaries of the runs opts selects, ordered by
// namespace and name, or by creation, newest first, then namespace and name when opts.Newest
// is set, paged by opts.Limit and opts.Offset. query reads the rows with ReadRunSummary.
func ListRuns(d Dialect, opts ListOptions, query Query[RunSummary]) ([]RunSummary, error) {
	if opts.Limit < 0 || opts.Offset < 0 {
		return nil, fmt.Errorf("list runs: negative limit %d or offset %d", opts.Limit, opts.Offset)
	}
	where, args := d.selectRuns(opts)
	q := `SELECT ` + runSummaryColumns + ` FROM runs` + where
	if opts.Newest {
		q += " ORDER BY created DESC, namespace, name"
	} else {
		q += " ORDER BY namespace, name"
	}
	limit := d.NoLimit
	if opts.Limit > 0 {
		limit = opts.Limit
	}
	q += " LIMIT " + d.Param(len(args)+1) + " OFFSET " + d.Param(len(args)+2)
	out, err := query(q, append(args, limit, opts.Offset)...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

// CountRuns is the SQL stores' Count: the number of runs opts selects, whatever its Limit and
// Offset. count runs a query of one row and one column, an integer, and returns that.
func CountRuns(d Dialect, opts ListOptions, count func(query string, args ...any) (int, error)) (int, error) {
	where, args := d.selectRuns(opts)
	n, err := count(`SELECT count(*) FROM runs`+where, args...)
	if err != nil {
		return 0, fmt.Errorf("count runs: %w", err)
	}
	return n, nil
}

// selectRuns is the WHERE clause ("" when it selects every run) and its parameters, from the
// first, for the selection of opts, without its order and paging.
func (d Dialect) selectRuns(opts ListOptions) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, cond+d.Param(len(args)))
	}
	if opts.Namespace != "" {
		add("namespace = ", opts.Namespace)
	}
	if opts.Phase != "" {
		add("phase = ", opts.Phase)
	}
	if opts.Template != "" {
		add("template = ", opts.Template)
	}
	if d.Started != "" && (!opts.StartedAfter.IsZero() || !opts.StartedBefore.IsZero()) {
		where = append(where, d.Started)
	}
	if !opts.StartedAfter.IsZero() {
		add("start_time >= ", d.StartTime(opts.StartedAfter))
	}
	if !opts.StartedBefore.IsZero() {
		add("start_time < ", d.StartTime(opts.StartedBefore))
	}
	if len(where) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(where, " AND "), args
}

// ListObjects lists stored definitions or Workflows for the SQL stores: query reads the
// columns of the rows of table (definitions or workflows) of the namespace (of every namespace
// when it is empty), ordered by namespace and name.
func ListObjects[T any](d Dialect, table, columns, namespace string, query Query[T]) ([]T, error) {
	q := "SELECT " + columns + " FROM " + table
	var args []any
	if namespace != "" {
		q += ` WHERE namespace = ` + d.Param(1)
		args = append(args, namespace)
	}
	out, err := query(q+` ORDER BY namespace, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", table, err)
	}
	return out, nil
}

// Expired is a finished run that retention lets go, at the version it was found at: a store
// deletes it only at that version, so that a run restarted meanwhile is kept.
type Expired struct {
	Key     engine.Key
	Version int64
}

// ExpiredRuns is the SQL stores' query of the finished runs that r lets go at now, those that
// ended first first, at most limit of them, with its parameters; ReadExpired reads its rows.
// A run goes when its expires column (its own TTL, written with it) has passed; a run
// without one when r.TTL has passed since it ended; and any that is not among the r.Count
// that ended last of its template in its namespace. The counting reads every finished run,
// so it is in the query only when r.Count is set.
func (d Dialect) ExpiredRuns(r engine.Retention, now time.Time, limit int) (string, []any) {
	var args []any
	param := func(v any) string {
		args = append(args, v)
		return d.Param(len(args))
	}
	// Parameters in the order they are written: SQLite's are positional.
	finished := make([]string, 0, 3)
	for _, p := range []v1alpha1.WorkflowRunPhase{v1alpha1.RunSucceeded, v1alpha1.RunFailed, v1alpha1.RunTerminated} {
		finished = append(finished, param(string(p)))
	}
	columns := "namespace, name, version, expires, " + d.Ended + " AS ended"
	conds := []string{"expires <= " + param(d.StartTime(now))}
	if r.TTL > 0 {
		conds = append(conds, "(expires IS NULL AND ended <= "+param(d.StartTime(now.Add(-r.TTL)))+")")
	}
	if r.Count > 0 {
		columns += ", row_number() OVER (PARTITION BY namespace, template ORDER BY " + d.Ended + " DESC, name DESC) AS newer"
		conds = append(conds, "newer > "+param(r.Count))
	}
	q := `SELECT namespace, name, version FROM (SELECT ` + columns + ` FROM runs WHERE phase IN (` +
		strings.Join(finished, ", ") + `)) finished WHERE ` + strings.Join(conds, " OR ") +
		` ORDER BY ended, namespace, name LIMIT ` + param(limit)
	return q, args
}

// ReadExpired reads a row of ExpiredRuns.
func ReadExpired(rows Scanner) (Expired, error) {
	var e Expired
	err := rows.Scan(&e.Key.Namespace, &e.Key.Name, &e.Version)
	return e, err
}
