// Package mstudio is the client of the platform's API (mittwald mStudio v2): one place that
// builds requests, retries each call as far as is safe for it through go-retryablehttp,
// records metrics and rate limits, and decodes the platform's error bodies; the cache of
// the platform's public keys by serial, which keeps the current keys and budgets lookups
// of others per client address; the log of refusals at a bounded rate; and the webhook
// signature format (headers, Sign, Verify), shared by the webhook handler and the simulator.
package mstudio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBaseURL is the platform's public API.
const DefaultBaseURL = "https://api.mittwald.de"

// Version goes into the User-Agent header; the build may override it.
var Version = "dev"

// maxResponseBody bounds how much of a response the client reads.
const maxResponseBody = 1 << 20

// ErrInvalidArgument is returned, wrapped with the reason, for input the client refuses
// before sending anything: an id that is not a UUID, a malformed key, a missing token.
var ErrInvalidArgument = errors.New("mstudio: invalid argument")

// Client calls the platform's API. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	http    *retryablehttp.Client
	timeout time.Duration
	maxWait time.Duration
	metrics *metrics // nil: none
	rate    rateLimits
}

// Options tunes New. The zero value gives production settings.
type Options struct {
	Logger     *slog.Logger
	HTTPClient *http.Client  // transport; nil: a pooled client
	RetryMax   int           // retries after the first attempt; 0: 3; <0: none
	RetryWait  time.Duration // first backoff; 0: 200 ms
	// MaxRetryWait caps every wait between attempts, also one the platform asks for with
	// Retry-After or X-RateLimit-Reset; 0: 30 s.
	MaxRetryWait time.Duration
	Timeout      time.Duration         // deadline of one call, retries included; 0: 10 s
	Registerer   prometheus.Registerer // where the client's metrics go; nil: none
}

// New returns a client of the API at baseURL (scheme and host; paths start with /v2).
func New(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("platform api url %q: want http(s)://HOST", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{base: u, timeout: 10 * time.Second, maxWait: 30 * time.Second}
	if opts.Timeout > 0 {
		c.timeout = opts.Timeout
	}
	if opts.MaxRetryWait > 0 {
		c.maxWait = opts.MaxRetryWait
	}
	if c.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}

	rc := retryablehttp.NewClient()
	rc.Logger = nil
	if opts.Logger != nil {
		rc.Logger = opts.Logger
	}
	if opts.HTTPClient != nil {
		hc := *opts.HTTPClient // a copy: the caller's client keeps its own transport
		rc.HTTPClient = &hc
	}
	rc.HTTPClient.Transport = &observedTransport{next: rc.HTTPClient.Transport, c: c}
	// Go's client forwards every header but Authorization and Cookie to wherever a
	// redirect points: X-Access-Token (an instance's or the contributor's token) would go
	// to another host, or over plain http. A redirect off the API's scheme and host is
	// answered to the caller as it came (a failed call) instead of followed.
	rc.HTTPClient.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if r.URL.Scheme != via[0].URL.Scheme || !strings.EqualFold(r.URL.Host, via[0].URL.Host) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	rc.RetryMax = 3
	switch {
	case opts.RetryMax > 0:
		rc.RetryMax = opts.RetryMax
	case opts.RetryMax < 0:
		rc.RetryMax = 0
	}
	rc.RetryWaitMin = 200 * time.Millisecond
	if opts.RetryWait > 0 {
		rc.RetryWaitMin = opts.RetryWait
	}
	rc.RetryWaitMax = min(20*rc.RetryWaitMin, c.maxWait)
	rc.CheckRetry = c.checkRetry
	rc.Backoff = c.backoff
	// Hand the last response to the caller instead of go-retryablehttp's generic
	// "giving up" error, so the platform's error body reaches the typed Error.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	c.http = rc
	return c, nil
}

// BaseURL returns the API base the client calls.
func (c *Client) BaseURL() string { return c.base.String() }

// Error is a failure answered by the platform, decoded from its error body.
type Error struct {
	Status           int
	Type             string
	Message          string
	ValidationErrors []ValidationError
}

// ValidationError is one entry of a ValidationError body.
type ValidationError struct {
	Message string `json:"message"`
	Path    string `json:"path"`
	Type    string `json:"type"`
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "platform answered %d", e.Status)
	if e.Type != "" {
		fmt.Fprintf(&b, " %s", e.Type)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	for _, v := range e.ValidationErrors {
		fmt.Fprintf(&b, "; %s: %s", v.Path, v.Message)
	}
	return b.String()
}

// call is one request to the platform.
type call struct {
	method string
	// route is the path template, such as "/v2/projects/{id}": the metrics label, so a
	// label never carries an id. params fill its {…} segments in order, escaped here.
	route  string
	params []string
	query  url.Values
	token  string       // sent as X-Access-Token when not empty
	in     any          // JSON request body, when not nil
	form   url.Values   // form-encoded request body (the OAuth2 token endpoint), when in is nil
	auth   string       // the Authorization header, when not empty
	out    any          // decodes a 2xx answer, when not nil
	header *http.Header // receives a 2xx answer's headers (pagination), when not nil
	// idempotent marks a POST that may be repeated once it reached the platform (GET and
	// PUT are by their method); any other POST is repeated only if it was never sent.
	idempotent bool
	// sensitive values are masked in the platform's error texts, which may quote the
	// request back.
	sensitive []string
}

// do sends one call and decodes a 2xx answer into out, or a failure into *Error.
func (c *Client) do(ctx context.Context, cl call) (int, error) {
	route := cl.method + " " + cl.route
	path, err := expandRoute(cl.route, cl.params)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", route, err)
	}
	method := cl.method
	u := *c.base
	// RawPath keeps the escaping: "a%2Fb" stays one segment.
	u.RawPath = c.base.EscapedPath() + path
	if u.Path, err = url.PathUnescape(u.RawPath); err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	u.RawQuery = cl.query.Encode()
	var body io.Reader
	if cl.in != nil {
		b, err := json.Marshal(cl.in)
		if err != nil {
			return 0, fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	} else if cl.form != nil {
		body = strings.NewReader(cl.form.Encode())
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	idempotent := cl.idempotent || method == http.MethodGet || method == http.MethodPut
	ctx = context.WithValue(ctx, callKey{}, callInfo{route: route, idempotent: idempotent})
	req, err := retryablehttp.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "extension-backend/"+Version)
	switch {
	case cl.in != nil:
		req.Header.Set("Content-Type", "application/json")
	case cl.form != nil:
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cl.auth != "" {
		req.Header.Set("Authorization", cl.auth)
	}
	if cl.token != "" {
		req.Header.Set("X-Access-Token", cl.token)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		c.metrics.observeCall(route, 0, time.Since(start))
		return 0, fmt.Errorf("%s %s: %w", method, path, scrubURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	c.metrics.observeCall(route, resp.StatusCode, time.Since(start))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, decodeError(resp.StatusCode, data, append(cl.sensitive, cl.token)))
	}
	if cl.header != nil {
		*cl.header = resp.Header
	}
	if cl.out != nil {
		if err := json.Unmarshal(data, cl.out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// get reads the resource at route, whose one placeholder is id, with the token.
func (c *Client) get(ctx context.Context, token extension.Secret, route, id string, out any) error {
	if token.IsZero() {
		return fmt.Errorf("%w: no access token", ErrInvalidArgument)
	}
	_, err := c.do(ctx, call{method: http.MethodGet, route: route, params: []string{id}, token: token.Reveal(), out: out})
	return err
}

// decodeError turns a failure answer into *Error, with the sensitive values masked. The
// OAuth2 routes answer RFC 6749's {error, error_description} instead of {type, message}.
func decodeError(status int, data []byte, sensitive []string) *Error {
	apiErr := &Error{Status: status}
	var eb struct {
		Type             string            `json:"type"`
		Message          string            `json:"message"`
		ValidationErrors []ValidationError `json:"validationErrors"`
		OAuthError       string            `json:"error"`
		OAuthDescription string            `json:"error_description"`
	}
	if json.Unmarshal(data, &eb) != nil {
		return apiErr
	}
	if eb.Type == "" && eb.Message == "" {
		eb.Type, eb.Message = eb.OAuthError, eb.OAuthDescription
	}
	mask := strings.NewReplacer(maskPairs(sensitive)...).Replace
	apiErr.Type, apiErr.Message = mask(eb.Type), mask(eb.Message)
	for _, v := range eb.ValidationErrors {
		apiErr.ValidationErrors = append(apiErr.ValidationErrors, ValidationError{mask(v.Message), mask(v.Path), mask(v.Type)})
	}
	return apiErr
}

// expandRoute fills the route's {…} segments with the escaped params.
func expandRoute(route string, params []string) (string, error) {
	var b strings.Builder
	rest := route
	for _, p := range params {
		i, j := strings.IndexByte(rest, '{'), strings.IndexByte(rest, '}')
		if i < 0 || j < i {
			return "", fmt.Errorf("route %s: more params than placeholders", route)
		}
		b.WriteString(rest[:i])
		b.WriteString(url.PathEscape(p))
		rest = rest[j+1:]
	}
	if strings.ContainsRune(rest, '{') {
		return "", fmt.Errorf("route %s: fewer params than placeholders", route)
	}
	b.WriteString(rest)
	return b.String(), nil
}

func maskPairs(values []string) []string {
	var pairs []string
	for _, v := range values {
		if v != "" {
			pairs = append(pairs, v, "[redacted]")
		}
	}
	return pairs
}

// scrubURLError drops the URL from a transport error: the path carries ids only, but
// keeping error texts free of URLs means a future query parameter cannot leak through.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// requireUUID refuses an id that is not a UUID in its 36-character form, so it never
// reaches a URL path.
func requireUUID(what, id string) error {
	if !IsUUID(id) {
		return fmt.Errorf("%w: %s %q is not a UUID", ErrInvalidArgument, what, id)
	}
	return nil
}
