package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/postgres"
	"github.com/stepflow/stepflow/store/sqlite"
	"github.com/stepflow/stepflow/telemetry"
	"github.com/stepflow/stepflow/web"
)

// serverFlags are the flags of `stepflow server`.
type serverFlags struct {
	listen              string
	store               string
	allowAnonymousRead  bool
	maxBody             int64
	maxWait             time.Duration
	workers             int
	maxEvaluations      int
	logFormat           string
	tlsCert, tlsKey     string
	otlpEndpoint        string
	otlpInsecure        bool
	replica             string
	lease               time.Duration
	allowLinkLocal      bool
	conns               connLimits
	allowKubeconfigExec bool
}

func newServerCommand(g *globals) *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Serve the REST API, the dashboard and /metrics, and drive the runs",
		Long: `server starts one process with the REST API under /api/v1 (docs/api.md; the OpenAPI
document at /api/v1/openapi.json), the dashboard at /, Prometheus metrics at /metrics, the
webhook and cron triggers, and the engine that drives the runs. The store is the embedded
SQLite one in --data-dir, or PostgreSQL with --store postgres://...

Several servers may share one PostgreSQL store: each drives its share of the runs, held by
leases in the database (--lease), and serves every run. When one stops, the others take its
runs within the lease time.

Every request needs an API token. When the store has none, the server makes an admin token
named bootstrap and prints it once; make others with stepflow token create or the API.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.runServer(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address to serve on")
	fl.StringVar(&f.store, "store", "", "postgres://... for PostgreSQL (default: the embedded SQLite store in --data-dir)")
	fl.BoolVar(&f.allowAnonymousRead, "allow-anonymous-read", false, "let requests without a token read (as viewers)")
	fl.BoolVar(&f.allowKubeconfigExec, "allow-kubeconfig-exec", false, "let the kubeconfigs of clusters stored through the API run commands (exec plugins, auth-providers) and read files (certificate, key and token paths) on this host, as the server's user")
	fl.Int64Var(&f.maxBody, "max-body", 1<<20, "largest request body, in bytes")
	fl.DurationVar(&f.maxWait, "max-wait", 5*time.Minute, "longest ?wait on run creation")
	fl.IntVar(&f.workers, "workers", 0, "runs advanced at once (default 256)")
	fl.IntVar(&f.maxEvaluations, "max-evaluations", engine.DefaultMaxEvaluations, "step evaluations under way (CUE or actions) before runs to start wait in line; runs under way always go on (-1: no limit)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM) ...")
	fl.StringVar(&f.tlsKey, "tls-key", "", "... and this key")
	fl.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "send a trace per run (a span per step) to this OTLP/HTTP collector: host:port or a URL (default: no tracing)")
	fl.BoolVar(&f.otlpInsecure, "otlp-insecure", false, "plain HTTP to a host:port --otlp-endpoint")
	fl.StringVar(&f.replica, "replica", "", "this server's name among those sharing a PostgreSQL store (default: the host name and a random suffix)")
	fl.BoolVar(&f.allowLinkLocal, "egress-allow-link-local", false, linkLocalUsage)
	f.conns.addFlags(cmd)
	fl.DurationVar(&f.lease, "lease", 10*time.Second, "with PostgreSQL: how long a server's lease on its share of the runs lasts unrenewed; a stopped server's runs move to the others within it")
	return cmd
}

// openServerStore opens the store a server or a token command works on; a server's
// PostgreSQL store is opened as the named replica.
func (g *globals) openServerStore(ctx context.Context, url, replica string) (store.Store, func(), error) {
	if isPostgres(url) {
		st, err := postgres.Open(ctx, postgres.Options{URL: url, Replica: replica})
		if err != nil {
			return nil, nil, err
		}
		return st, func() { _ = st.Close() }, nil
	}
	if url != "" {
		return nil, nil, invalidf("--store %q: want postgres://... (or nothing, for the embedded store)", url)
	}
	st, err := g.openSQLite(ctx)
	if err != nil {
		return nil, nil, err
	}
	return st, func() { _ = st.Close() }, nil
}

func (g *globals) runServer(ctx context.Context, f serverFlags) error {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return invalidf("--tls-cert and --tls-key go together")
	}
	if err := f.conns.check(); err != nil {
		return err
	}
	var handler slog.Handler = slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	switch f.logFormat {
	case "text":
	case "json":
		handler = slog.NewJSONHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	default:
		return invalidf("--log-format %q: want text or json", f.logFormat)
	}
	log := slog.New(handler)
	// The address first: a server that cannot serve must not have made a bootstrap token
	// (shown once) nor touched the store.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", f.listen)
	if err != nil {
		return invalidf("--listen %s: %v", f.listen, err)
	}
	defer func() { _ = ln.Close() }() // on the ways out before it serves; closed again after
	var replica string
	if isPostgres(f.store) {
		var err error
		if replica, err = replicaName(f.replica); err != nil {
			return err
		}
	}
	st, closeStore, err := g.openServerStore(ctx, f.store, replica)
	if err != nil {
		return err
	}
	defer closeStore()
	var replicas server.Replicas
	var observers []engine.Observer
	switch st := st.(type) {
	case *postgres.Store:
		if f.lease < time.Second {
			return invalidf("--lease %s: want at least 1s", f.lease)
		}
		if replicas, err = st.Leases(postgres.LeaseOptions{TTL: f.lease, Logger: log}); err != nil {
			return err
		}
	case *sqlite.Store:
		// The CLI's processes on the same data directory take leases on the runs they drive:
		// the server takes them too, so that one process at a time drives a run.
		leases, err := st.ServerLeases(sqlite.LeaseOptions{}, log)
		if err != nil {
			return err
		}
		replicas, observers = leases, []engine.Observer{leases}
	}
	if err := bootstrapToken(ctx, st, g.stderr); err != nil {
		return err
	}
	var tracer trace.TracerProvider
	if f.otlpEndpoint != "" {
		tp, err := telemetry.OTLP(ctx, f.otlpEndpoint, f.otlpInsecure)
		if err != nil {
			return invalidf("--otlp-endpoint: %v", err)
		}
		defer func() {
			flush, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer stop()
			_ = tp.Shutdown(flush)
		}()
		tracer = tp
	}
	cfg, err := g.assemblyConfig(!f.allowLinkLocal)
	if err != nil {
		return err
	}
	cfg.Workers, cfg.MaxEvaluations = f.workers, f.maxEvaluations
	cfg.Providers.Clusters = &lazyClusters{g: g}
	cfg.Tracer = tracer
	srv, err := server.New(server.Options{ //nolint:contextcheck // the events sinks' goroutines live until Assembly.Close, whatever this context does
		Assembly:            cfg,
		Web:                 web.Files(),
		Store:               st,
		Logger:              log,
		AllowAnonymousRead:  f.allowAnonymousRead,
		AllowKubeconfigExec: f.allowKubeconfigExec,
		MaxBody:             f.maxBody,
		MaxWait:             f.maxWait,
		SecureCookies:       f.tlsCert != "",
		Replicas:            replicas,
		Observers:           observers,
	})
	if err != nil {
		return err
	}
	ln = f.conns.listener(ln)
	hs := f.conns.server(srv.Handler(), slog.NewLogLogger(handler, slog.LevelWarn))
	// Requests' contexts end requestGrace after shutdown begins: a short request finishes, an
	// event stream or a ?wait (which would hold the shutdown for its whole 10 s) ends.
	reqCtx, endRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer endRequests()
	hs.BaseContext = func(net.Listener) context.Context { return reqCtx }
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	engineDone := make(chan error, 1)
	go func() { engineDone <- srv.Start(ctx) }()
	serveDone := make(chan error, 1)
	go func() {
		if f.tlsCert != "" {
			serveDone <- hs.ServeTLS(ln, f.tlsCert, f.tlsKey)
		} else {
			serveDone <- hs.Serve(ln)
		}
	}()
	scheme := "http"
	if f.tlsCert != "" {
		scheme = "https"
	}
	log.Info("stepflow server listening", "url", fmt.Sprintf("%s://%s", scheme, ln.Addr()), "store", storeName(f.store), "replica", replica)
	select {
	case <-ctx.Done():
	case err := <-serveDone:
		cancel()
		return errors.Join(fmt.Errorf("serve: %w", err), <-engineDone)
	}
	shutdown, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	ending := time.AfterFunc(requestGrace, endRequests)
	defer ending.Stop()
	_ = hs.Shutdown(shutdown)
	if err := <-engineDone; err != nil {
		return err
	}
	log.Info("stepflow server stopped")
	return nil
}

// requestGrace is how long a stopping server lets requests under way go on before it ends
// their contexts: enough for any but a long-lived one (an event stream, a ?wait).
const requestGrace = 2 * time.Second

func isPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// replicaName is the --replica name, checked, or the host name with a random suffix: two
// servers must never share a name.
func replicaName(name string) (string, error) {
	if name != "" {
		if strings.ContainsAny(name, " \t\n") {
			return "", invalidf("--replica %q: no spaces", name)
		}
		return name, nil
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "stepflow"
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	return strings.ReplaceAll(host, " ", "-") + "-" + hex.EncodeToString(suffix[:]), nil
}

func storeName(url string) string {
	if url == "" {
		return "sqlite"
	}
	return "postgres"
}

// bootstrapToken makes the first admin token when the store has none and prints it: without
// it nobody could make the others.
func bootstrapToken(ctx context.Context, st store.Records, w io.Writer) error {
	tokens, _, err := server.Tokens(ctx, st)
	if err != nil {
		return fmt.Errorf("read the tokens: %w", err)
	}
	if len(tokens) > 0 {
		return nil
	}
	_, secret, err := server.CreateToken(ctx, st, "bootstrap", server.RoleAdmin, nil, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "No API token was stored: made the admin token %q. It is shown this once:\n\n    %s\n\n", "bootstrap", secret)
	return nil
}

func newTokenCommand(g *globals) *cobra.Command {
	var storeURL string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make, list and delete the API tokens of stepflow server",
		Long: `Token makes, lists and deletes the API tokens of stepflow server: through the server
given by --server (or STEPFLOW_SERVER), with an admin --token; without one, in the server's
store directly (--store, else the embedded store in --data-dir).`,
	}
	cmd.PersistentFlags().StringVar(&storeURL, "store", "", "the server's store: postgres://... (default: the embedded store in --data-dir); wins over --server")
	// remote is the server to go through: --server unless --store names the store.
	remote := func() *remote {
		if storeURL != "" || g.server == "" {
			return nil
		}
		return g.remote()
	}
	var name, role string
	var namespaces []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Make a token; its secret is printed once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := server.ParseRole(role)
			if err != nil {
				return invalidErr(err)
			}
			if name == "" {
				return invalidf("--name is required")
			}
			if rm := remote(); rm != nil {
				body, err := json.Marshal(map[string]any{"name": name, "role": string(r), "namespaces": namespaces})
				if err != nil {
					return err
				}
				var made struct {
					Token string `json:"token"`
				}
				if err := rm.call(cmd.Context(), "POST", "/api/v1/tokens", "application/json", body, &made); err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, made.Token)
				return nil
			}
			st, closeStore, err := g.openServerStore(cmd.Context(), storeURL, "")
			if err != nil {
				return err
			}
			defer closeStore()
			_, secret, err := server.CreateToken(cmd.Context(), st, name, r, namespaces, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, secret)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the token is for")
	create.Flags().StringVar(&role, "role", "viewer", "viewer, operator or admin")
	create.Flags().StringArrayVar(&namespaces, "namespace", nil, "limit the token to this namespace (repeatable; default: every namespace)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var tokens []server.Token
			if rm := remote(); rm != nil {
				var list struct {
					Items []server.Token `json:"items"`
				}
				if err := rm.call(cmd.Context(), "GET", "/api/v1/tokens", "", nil, &list); err != nil {
					return err
				}
				tokens = list.Items
			} else {
				st, closeStore, err := g.openServerStore(cmd.Context(), storeURL, "")
				if err != nil {
					return err
				}
				defer closeStore()
				if tokens, _, err = server.Tokens(cmd.Context(), st); err != nil {
					return err
				}
			}
			for _, t := range tokens {
				ns := "*"
				if len(t.Namespaces) > 0 {
					ns = strings.Join(t.Namespaces, ",")
				}
				fmt.Fprintf(g.stdout, "%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, ns)
			}
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rm := remote(); rm != nil {
				return rm.call(cmd.Context(), "DELETE", "/api/v1/tokens/"+url.PathEscape(args[0]), "", nil, nil)
			}
			st, closeStore, err := g.openServerStore(cmd.Context(), storeURL, "")
			if err != nil {
				return err
			}
			defer closeStore()
			err = server.DeleteToken(cmd.Context(), st, args[0])
			if errors.Is(err, engine.ErrNotFound) {
				return invalidf("token %s: not found", args[0])
			}
			return err
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}
