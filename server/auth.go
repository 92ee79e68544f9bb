package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// Role is what a token may do; each role may do what the smaller ones may.
type Role string

// The roles, smallest first.
const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// ParseRole checks a role's name.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.rank() > 0 {
		return r, nil
	}
	return "", fmt.Errorf("role %q: want viewer, operator or admin", s)
}

// Token is an API token as stored: its secret only as a SHA-256.
type Token struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Role       Role      `json:"role"`
	Namespaces []string  `json:"namespaces,omitempty"`
	Created    time.Time `json:"created"`
}

// recordToken is the record kind of tokens, keyed by the hex SHA-256 of the secret.
const recordToken = "token"

// The dashboard's cookies.
const (
	cookieToken = "stepflow_token"
	cookieCSRF  = "stepflow_csrf"
	headerCSRF  = "X-CSRF-Token"
)

// tokenPrefix starts every secret, so that a leaked one is recognisable in a scan.
const tokenPrefix = "sfp_"

func hashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// CreateToken stores a new token and returns it with its secret, which is not kept.
func CreateToken(ctx context.Context, st store.Records, name string, role Role, namespaces []string, now time.Time) (Token, string, error) {
	if name == "" {
		return Token{}, "", errors.New("a token needs a name")
	}
	if role.rank() == 0 {
		return Token{}, "", fmt.Errorf("role %q: want viewer, operator or admin", role)
	}
	secret := tokenPrefix + randomString(32)
	t := Token{ID: randomHex(6), Name: name, Role: role, Namespaces: namespaces, Created: now.UTC()}
	data, err := json.Marshal(t)
	if err != nil {
		return Token{}, "", err
	}
	if _, err := st.PutRecord(ctx, recordToken, hashToken(secret), data, 0); err != nil {
		return Token{}, "", fmt.Errorf("store the token: %w", err)
	}
	return t, secret, nil
}

// Tokens lists the stored tokens, with the keys they are stored under.
func Tokens(ctx context.Context, st store.Records) ([]Token, []string, error) {
	recs, err := st.Records(ctx, recordToken, "")
	if err != nil {
		return nil, nil, err
	}
	var out []Token
	var keys []string
	for _, r := range recs {
		var t Token
		if err := json.Unmarshal(r.Data, &t); err != nil {
			return nil, nil, fmt.Errorf("token record %s: %w", r.Key, err)
		}
		out = append(out, t)
		keys = append(keys, r.Key)
	}
	return out, keys, nil
}

// identity is who a request comes from.
type identity struct {
	Name       string   `json:"name"`
	Role       Role     `json:"role"`
	Namespaces []string `json:"namespaces,omitempty"`
	// cookie is set when the token came in the dashboard's cookie: the request is then
	// subject to the CSRF check.
	cookie bool
}

// sees reports whether the identity may see namespace ns.
func (id *identity) sees(ns string) bool {
	return len(id.Namespaces) == 0 || slices.Contains(id.Namespaces, ns)
}

// within reports whether the identity may change an object that is for namespaces (a
// token, a cluster), none meaning every namespace: an identity of every namespace may change
// any; one limited to namespaces only those for some of its own.
func (id *identity) within(namespaces []string) bool {
	if len(id.Namespaces) == 0 {
		return true
	}
	if len(namespaces) == 0 {
		return false
	}
	for _, ns := range namespaces {
		if !id.sees(ns) {
			return false
		}
	}
	return true
}

// seesAny reports whether the identity may see an object that is for namespaces, none
// meaning every namespace.
func (id *identity) seesAny(namespaces []string) bool {
	return len(namespaces) == 0 || slices.ContainsFunc(namespaces, id.sees)
}

// visible are those of namespaces the identity sees.
func (id *identity) visible(namespaces []string) []string {
	return slices.DeleteFunc(slices.Clone(namespaces), func(ns string) bool { return !id.sees(ns) })
}

type identityKey struct{}

func identityOf(ctx context.Context) *identity {
	id, _ := ctx.Value(identityKey{}).(*identity)
	if id == nil {
		return &identity{}
	}
	return id
}

// authenticate finds the token of a request, from its Authorization header or the
// dashboard's cookie. It returns nil, nil when the request carries none.
func (s *Server) authenticate(r *http.Request) (*identity, error) {
	secret, cookie := "", false
	if h := r.Header.Get("Authorization"); h != "" {
		var ok bool
		secret, ok = strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, errorf(http.StatusUnauthorized, "the Authorization header must be Bearer <token>")
		}
	} else if c, err := r.Cookie(cookieToken); err == nil && c.Value != "" {
		secret, cookie = c.Value, true
	}
	if secret == "" {
		return nil, nil
	}
	t, err := s.lookupToken(r.Context(), secret)
	if err != nil {
		return nil, err
	}
	return &identity{Name: t.Name, Role: t.Role, Namespaces: t.Namespaces, cookie: cookie}, nil
}

func (s *Server) lookupToken(ctx context.Context, secret string) (*Token, error) {
	rec, err := s.store.Record(ctx, recordToken, hashToken(strings.TrimSpace(secret)))
	if errors.Is(err, engine.ErrNotFound) {
		return nil, errorf(http.StatusUnauthorized, "unknown token")
	}
	if err != nil {
		return nil, err
	}
	var t Token
	if err := json.Unmarshal(rec.Data, &t); err != nil {
		return nil, fmt.Errorf("token record: %w", err)
	}
	return &t, nil
}

// authorize checks that a request may call a route needing role, and returns the request
// with its identity. Unsafe methods authenticated by the cookie must carry the CSRF header.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, need Role) (*http.Request, bool) {
	id, err := s.authenticate(r)
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	if id == nil {
		if need == RoleViewer && s.opts.AllowAnonymousRead && safeMethod(r.Method) {
			id = &identity{Name: "anonymous", Role: RoleViewer}
		} else {
			s.writeError(w, r, errorf(http.StatusUnauthorized, "a token is required (Authorization: Bearer <token>)"))
			return nil, false
		}
	}
	if id.Role.rank() < need.rank() {
		s.writeError(w, r, errorf(http.StatusForbidden, "%s %s needs the %s role; the token %q is %s", r.Method, r.URL.Path, need, id.Name, id.Role))
		return nil, false
	}
	if id.cookie && !safeMethod(r.Method) && !s.csrfOK(r) {
		s.writeError(w, r, errorf(http.StatusForbidden, "missing or wrong %s header (the value of the %s cookie)", headerCSRF, cookieCSRF))
		return nil, false
	}
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id)), true
}

func (s *Server) csrfOK(r *http.Request) bool {
	c, err := r.Cookie(cookieCSRF)
	h := r.Header.Get(headerCSRF)
	return err == nil && c.Value != "" && h != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(h)) == 1
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// login checks a token and hands it to the browser in an HttpOnly cookie, with the CSRF
// cookie beside it.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var body loginRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	t, err := s.lookupToken(r.Context(), body.Token)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: cookieToken, Value: strings.TrimSpace(body.Token), Path: "/", HttpOnly: true,
		Secure: s.opts.SecureCookies, SameSite: http.SameSiteStrictMode, MaxAge: 7 * 24 * 3600})
	http.SetCookie(w, &http.Cookie{Name: cookieCSRF, Value: randomString(24), Path: "/",
		Secure: s.opts.SecureCookies, SameSite: http.SameSiteStrictMode, MaxAge: 7 * 24 * 3600})
	writeJSON(w, http.StatusOK, identity{Name: t.Name, Role: t.Role, Namespaces: t.Namespaces})
	return nil
}

func (s *Server) logout(w http.ResponseWriter, _ *http.Request) error {
	for _, name := range []string{cookieToken, cookieCSRF} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: name == cookieToken,
			Secure: s.opts.SecureCookies, SameSite: http.SameSiteStrictMode})
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
