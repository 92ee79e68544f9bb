package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// recordDelivery is the record kind of webhook deliveries, keyed TRIGGER/DELIVERY: what the
// first request of a delivery was answered, so that a repeat is answered the same and starts
// nothing.
const recordDelivery = "delivery"

// The headers of a delivery: its id (GitHub's, or any sender's), and the time a sender signs
// with the body.
const (
	headerGitHubDelivery = "X-GitHub-Delivery"
	headerDelivery       = "X-Stepflow-Delivery"
	headerTimestamp      = "X-Stepflow-Timestamp"
)

const (
	// hookWindow is how far a signed X-Stepflow-Timestamp may be from the server's clock.
	hookWindow = 5 * time.Minute
	// Deliveries are kept for twice the window when the timestamp makes later repeats
	// fail anyway, and for a day when only their id tells them apart.
	timedDeliveryTTL = 2 * hookWindow
	deliveryTTL      = 24 * time.Hour
	// abandonedAfter is when a delivery claimed but never answered (its server died) may be
	// taken over by a repeat.
	abandonedAfter = time.Minute
	// maxDeliveryID bounds a delivery id header.
	maxDeliveryID = 200
	// pruneEvery is how often a server deletes the expired deliveries.
	pruneEvery = 10 * time.Minute
)

// delivery is a webhook delivery as recorded: claimed when its first request came, answered
// when that request was.
type delivery struct {
	Claimed time.Time `json:"claimed"`
	Expires time.Time `json:"expires"`
	// Status and Body are the answer; Status 0 while the first request is under way.
	Status int             `json:"status,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// deliveryID is what tells a webhook request from its repeats: the X-GitHub-Delivery or
// X-Stepflow-Delivery header, else the signature of a request that signed a timestamp (each
// delivery signs its own time). "" when the request carries neither, and its repeats cannot
// be told from it.
func deliveryID(r *http.Request, timestamped bool, signature []byte) (string, error) {
	id := r.Header.Get(headerGitHubDelivery)
	if id == "" {
		id = r.Header.Get(headerDelivery)
	}
	switch {
	case len(id) > maxDeliveryID:
		return "", errorf(http.StatusBadRequest, "the delivery id is longer than %d bytes", maxDeliveryID)
	case id != "":
		sum := sha256.Sum256([]byte(id))
		return "id-" + hex.EncodeToString(sum[:]), nil
	case timestamped && len(signature) > 0:
		return "sig-" + hex.EncodeToString(signature), nil
	}
	return "", nil
}

// signedTime checks the X-Stepflow-Timestamp of a request, Unix seconds: within hookWindow
// of now. ok is false when there is none.
func signedTime(r *http.Request, now time.Time) (ts string, ok bool, err error) {
	ts = r.Header.Get(headerTimestamp)
	if ts == "" {
		return "", false, nil
	}
	sec, perr := strconv.ParseInt(ts, 10, 64)
	if perr != nil {
		return "", false, errorf(http.StatusBadRequest, "%s %q: want Unix seconds", headerTimestamp, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > hookWindow || d < -hookWindow {
		return "", false, errorf(http.StatusUnauthorized, "%s is %s from the server's time, more than %s: a late or replayed request", headerTimestamp, d.Round(time.Second).Abs(), hookWindow)
	}
	return ts, true, nil
}

// claimDelivery records the first request of delivery id of trigger, or, for a repeat,
// returns the answer the first was given (nil: go on, and answer with answerDelivery). A
// repeat of a delivery whose first request is under way answers 409; one whose first request
// was never answered (its server died) takes it over.
func (s *Server) claimDelivery(ctx context.Context, trigger, id string, ttl time.Duration) (*delivery, int64, error) {
	key := trigger + "/" + id
	now := s.clock.Now().UTC()
	claim, err := json.Marshal(delivery{Claimed: now, Expires: now.Add(ttl)})
	if err != nil {
		return nil, 0, err
	}
	v, err := s.store.PutRecord(ctx, recordDelivery, key, claim, 0)
	if !errors.Is(err, store.ErrExists) {
		return nil, v, err
	}
	rec, err := s.store.Record(ctx, recordDelivery, key)
	if err != nil {
		return nil, 0, err
	}
	var d delivery
	if err := decodeRecord(recordDelivery, key, rec.Data, &d); err != nil {
		return nil, 0, err
	}
	switch {
	case d.Status != 0:
		return &d, 0, nil
	case now.Sub(d.Claimed) < abandonedAfter:
		return nil, 0, errorf(http.StatusConflict, "this delivery's first request is under way: ask again later")
	}
	v, err = s.store.PutRecord(ctx, recordDelivery, key, claim, rec.Version)
	if errors.Is(err, engine.ErrConflict) {
		return nil, 0, errorf(http.StatusConflict, "this delivery's first request is under way: ask again later")
	}
	return nil, v, err
}

// answerDelivery records the answer to a delivery's first request, for its repeats; an
// internal error (5xx) releases the claim instead, so that a repeat tries again.
func (s *Server) answerDelivery(ctx context.Context, trigger, id string, version int64, ttl time.Duration, a *answer) {
	key := trigger + "/" + id
	if a.status >= 500 {
		_ = s.store.DeleteRecord(ctx, recordDelivery, key)
		return
	}
	now := s.clock.Now().UTC()
	data, err := json.Marshal(delivery{Claimed: now, Expires: now.Add(ttl), Status: a.status, Body: bytes.TrimSpace(a.body.Bytes())})
	if err == nil {
		_, err = s.store.PutRecord(ctx, recordDelivery, key, data, version)
	}
	if err != nil {
		s.log.Error("webhook: record a delivery's answer", "trigger", trigger, "err", err)
	}
}

// pruneDeliveries deletes the deliveries past their expiry.
func (s *Server) pruneDeliveries(ctx context.Context) error {
	recs, err := s.store.Records(ctx, recordDelivery, "")
	if err != nil {
		return fmt.Errorf("prune webhook deliveries: %w", err)
	}
	now := s.clock.Now()
	for _, r := range recs {
		var d delivery
		if json.Unmarshal(r.Data, &d) == nil && now.Before(d.Expires) {
			continue
		}
		if err := s.store.DeleteRecord(ctx, recordDelivery, r.Key); err != nil && !errors.Is(err, engine.ErrNotFound) {
			return fmt.Errorf("prune webhook deliveries: %w", err)
		}
	}
	return nil
}

// answer is a response kept to be recorded before it is sent.
type answer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newAnswer() *answer { return &answer{header: http.Header{}, status: http.StatusOK} }

// Header implements http.ResponseWriter.
func (a *answer) Header() http.Header { return a.header }

// WriteHeader implements http.ResponseWriter.
func (a *answer) WriteHeader(status int) { a.status = status }

// Write implements http.ResponseWriter.
func (a *answer) Write(b []byte) (int, error) { return a.body.Write(b) }

// send writes a JSON answer to w.
func send(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	if !strings.HasSuffix(string(body), "\n") {
		_, _ = w.Write([]byte("\n"))
	}
}
