// Package mstudiotest is a local simulator of the platform (mittwald mStudio v2) for
// everything an extension backend touches: public keys, extension instances and their
// secrets, instance and user tokens, single sign-on keys, session tokens, OAuth2, and a
// webhook sender with the platform's delivery semantics. Tests start it with
// httptest.NewServer(sim); `extension-backend sim` and `dev` serve it on loopback. The
// developer tools that sign as it does live here too (SendWebhook, SignWebhook, Bench).
// It is the platform's side, so it imports none of the backend's edge packages.
package mstudiotest

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Options configures a simulator. The zero value gives the platform's documented
// behaviour with fresh keys and ids.
type Options struct {
	ExtensionID     string // our extension's id as the platform knows it; default: random
	ContributorID   string // default: random
	ExtensionSecret string // the extension's global secret (session-token exchange); default: random
	// ContributorToken is the API token of a member of the contributor, for the
	// contributor's routes (instance list, execution log, resume); default: random.
	ContributorToken string
	KeyFile          string // load keys from here, or create and save them; empty: new keys each start
	StateFile        string // persist instances here as JSON; empty: in memory only
	WebhookURL       string // where lifecycle webhooks go (all four kinds)
	// FrontendURL is the extension's external frontend URL template, with the platform's
	// placeholders (:accessTokenRetrievalKey, :userId, :extensionInstanceId, :contextId,
	// :context, :extensionId); GET /internal/open/{instanceId} follows it as a click in
	// the control panel does.
	FrontendURL string

	SecretActivationDelay time.Duration // a delivered secret works this long after the 2xx; default 2 s; <0: at once
	InstanceTokenTTL      time.Duration // default 1 h
	UserTokenTTL          time.Duration // tokens from ATReK, refresh and OAuth2; default 1 h
	RetrievalKeyTTL       time.Duration // ATReK lifetime; default 60 s
	SessionTokenTTL       time.Duration // frontend-fragment session token JWT; default 60 s
	WebhookTimeout        time.Duration // default 6 s
	RetryBase             time.Duration // first retry wait of the webhook sender; default 1 s
	RetryCap              time.Duration // longest wait between attempts; default 10 min
	RateLimit             int           // requests per window reported in X-RateLimit-*; default 1000

	HTTPClient *http.Client // used by the webhook sender; default: a client without timeout (WebhookTimeout applies)
	Logger     *slog.Logger
	Now        func() time.Time
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.SecretActivationDelay, 2*time.Second)
	def(&o.InstanceTokenTTL, time.Hour)
	def(&o.UserTokenTTL, time.Hour)
	def(&o.RetrievalKeyTTL, 60*time.Second)
	def(&o.SessionTokenTTL, 60*time.Second)
	def(&o.WebhookTimeout, 6*time.Second)
	def(&o.RetryBase, time.Second)
	def(&o.RetryCap, 10*time.Minute)
	if o.RateLimit == 0 {
		o.RateLimit = 1000
	}
	if o.ExtensionID == "" {
		o.ExtensionID = uuid.NewString()
	}
	if o.ContributorID == "" {
		o.ContributorID = uuid.NewString()
	}
	if o.ExtensionSecret == "" {
		o.ExtensionSecret = randomToken(32)
	}
	if o.ContributorToken == "" {
		o.ContributorToken = randomToken(48)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Server is the simulator. It is an http.Handler.
type Server struct {
	opts   Options
	mux    *http.ServeMux
	keys   *keyStore
	faults *faults
	limit  *rateWindow

	mu        sync.Mutex
	instances map[string]*Instance
	// descriptions are the projects' descriptions set through PATCH /v2/projects/{id};
	// a project not in it has the one derived from its id. Kept in memory only.
	descriptions map[string]string
	users        []*User
	grants       map[string]*grant // access token → who it stands for
	issued       int               // tokens issued, to pace the sweep of expired grants
	patterns     []string          // registered patterns, which faults may name

	sso     *ssoState // ATReKs, refresh tokens, OAuth2 codes and sessions
	sender  *sender
	contrib contributorCounters
}

// New builds a simulator. With Options.KeyFile or StateFile set it loads what is there.
func New(opts Options) (*Server, error) {
	opts.setDefaults()
	keys, err := loadOrCreateKeys(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:         opts,
		mux:          http.NewServeMux(),
		keys:         keys,
		faults:       newFaults(),
		limit:        &rateWindow{limit: opts.RateLimit, now: opts.Now},
		instances:    map[string]*Instance{},
		descriptions: map[string]string{},
		users:        defaultUsers(),
		grants:       map[string]*grant{},
	}
	for _, u := range s.users {
		u.Token = randomToken(48)
		s.grants[u.Token] = &grant{userID: u.ID}
	}
	s.grants[opts.ContributorToken] = &grant{contributorID: strings.ToLower(opts.ContributorID)}
	if err := s.loadState(); err != nil {
		return nil, err
	}
	s.sso = newSSOState()
	s.sender = newSender(s)
	s.routes()
	return s, nil
}

// Close stops the webhook sender and waits for deliveries in flight.
func (s *Server) Close() { s.sender.close() }

// ExtensionID is the extension's id as the simulator knows it.
func (s *Server) ExtensionID() string { return s.opts.ExtensionID }

// ContributorID is the contributor's id as the simulator knows it.
func (s *Server) ContributorID() string { return s.opts.ContributorID }

// ExtensionSecret is the extension's global secret.
func (s *Server) ExtensionSecret() string { return s.opts.ExtensionSecret }

// SetWebhookURL points the webhook sender at a backend.
func (s *Server) SetWebhookURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.WebhookURL = u
}

func (s *Server) webhookURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.WebhookURL
}

func (s *Server) now() time.Time { return s.opts.Now() }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handle registers a route with the simulated platform's cross-cutting behaviour: rate
// limit headers and injected faults, looked up by the route's pattern.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s.limit.headers(w) // an injected 429 carries them too, as the platform's does
		if s.faults.apply(pattern, w, r) {
			return
		}
		h(w, r)
	})
}

// routes lists the simulator's whole API surface.
func (s *Server) routes() {
	s.handle("GET /v2/public-keys/{serial}", s.getPublicKey)
	s.handle("GET /v2/webhook-public-keys/{serial}", s.getLegacyPublicKey)

	s.handle("GET /v2/extension-instances/{id}", s.getInstance)
	s.handle("POST /v2/extension-instances/{id}/tokens", s.postInstanceToken)
	s.handle("GET /v2/projects/{id}", s.getProject)
	s.handle("PATCH /v2/projects/{id}", s.patchProject)
	s.handle("GET /v2/customers/{id}", s.getCustomer)
	s.handle("GET /v2/users/{id}", s.getUser)
	s.handle("GET /v2/projects/{id}/memberships/self", s.getOwnProjectMembership)
	s.handle("GET /v2/customer-memberships", s.listOwnCustomerMemberships)

	s.ssoRoutes()
	s.senderRoutes()
	s.contributorRoutes()

	// The fault routes themselves cannot be made to misbehave, so a reset always works.
	s.mux.HandleFunc("PUT /internal/faults", s.putFault)
	s.mux.HandleFunc("DELETE /internal/faults", s.deleteFaults)
	s.handle("GET /internal/users", s.listUsers)
	s.handle("GET /internal/open/{id}", s.openFrontend)
	s.handle("POST /internal/instances", s.postInstances)
	s.handle(contributorDryRunRoute, s.postContributorDryRun)
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with the platform's generic error body {type, message}.
func writeError(w http.ResponseWriter, status int, typ, message string) {
	writeJSON(w, status, map[string]string{"type": typ, "message": message})
}

// ValidationIssue is one entry of the platform's ValidationError body.
type ValidationIssue struct {
	Message string `json:"message"`
	Path    string `json:"path"`
	Type    string `json:"type"`
}

// writeValidation answers 400 with the platform's ValidationError body.
func writeValidation(w http.ResponseWriter, issues ...ValidationIssue) {
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"type": "ValidationError", "message": "the request is invalid", "validationErrors": issues,
	})
}

// decodeBody reads a JSON request body of at most 1 MiB into v; on failure it has
// already answered.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeValidation(w, ValidationIssue{Message: "body is not valid JSON: " + err.Error(), Path: "", Type: "invalid"})
		return false
	}
	return true
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, n)
	for i, c := range b {
		out[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(out)
}

// rateWindow reports a fixed one-minute rate-limit window in the platform's headers. It
// counts but never refuses: refusals are injected as faults.
type rateWindow struct {
	mu    sync.Mutex
	limit int
	now   func() time.Time
	start time.Time
	used  int
}

func (rw *rateWindow) headers(w http.ResponseWriter) {
	rw.mu.Lock()
	now := rw.now()
	if now.Sub(rw.start) >= time.Minute {
		rw.start, rw.used = now, 0
	}
	rw.used++
	remaining := max(rw.limit-rw.used, 0)
	reset := int((time.Minute - now.Sub(rw.start)).Seconds())
	rw.mu.Unlock()
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(rw.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.Itoa(reset))
}

// isUUID reports whether s is a UUID in its 36-character form.
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return len(s) == 36 && err == nil
}

func bearer(r *http.Request) string {
	if t := r.Header.Get("X-Access-Token"); t != "" {
		return t
	}
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func errorf(format string, args ...any) error { return fmt.Errorf("mstudiotest: "+format, args...) }
