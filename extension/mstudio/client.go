// Package mstudio is the client of the platform's API (mittwald mStudio v2): one place that
// builds requests, retries through go-retryablehttp and decodes the platform's error bodies;
// and the cache of the platform's public keys by serial.
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

	"github.com/hashicorp/go-retryablehttp"
)

// DefaultBaseURL is the platform's public API.
const DefaultBaseURL = "https://api.mittwald.de"

// Version goes into the User-Agent header; the build may override it.
var Version = "dev"

// maxResponseBody bounds how much of a response the client reads.
const maxResponseBody = 1 << 20

// Client calls the platform's API.
type Client struct {
	base    *url.URL
	http    *retryablehttp.Client
	timeout time.Duration
}

// Options tunes New. The zero value gives production settings.
type Options struct {
	Logger     *slog.Logger
	HTTPClient *http.Client  // transport; nil: a pooled client
	RetryMax   int           // retries after the first attempt; 0: 3
	RetryWait  time.Duration // first backoff; 0: 200 ms
	Timeout    time.Duration // deadline of one call, retries included; 0: 10 s
}

// New returns a client of the API at baseURL (scheme and host; paths start with /v2).
func New(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("platform api url %q: want http(s)://HOST", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	rc := retryablehttp.NewClient()
	rc.Logger = nil
	if opts.Logger != nil {
		rc.Logger = opts.Logger
	}
	if opts.HTTPClient != nil {
		rc.HTTPClient = opts.HTTPClient
	}
	rc.RetryMax = 3
	if opts.RetryMax > 0 {
		rc.RetryMax = opts.RetryMax
	}
	rc.RetryWaitMin = 200 * time.Millisecond
	if opts.RetryWait > 0 {
		rc.RetryWaitMin = opts.RetryWait
	}
	rc.RetryWaitMax = 20 * rc.RetryWaitMin
	// Hand the last response to the caller instead of go-retryablehttp's generic
	// "giving up" error, so the platform's error body reaches the typed Error.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	timeout := 10 * time.Second
	if opts.Timeout > 0 {
		timeout = opts.Timeout
	}
	return &Client{base: u, http: rc, timeout: timeout}, nil
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

// call is one request to the platform. Path segments taken from input must be escaped
// with url.PathEscape by the caller.
type call struct {
	method, path string
	query        url.Values
	token        string // sent as X-Access-Token when not empty
	in, out      any    // JSON request body and 2xx answer, when not nil
	// sensitive values are masked in the platform's error texts, which may quote the
	// request back.
	sensitive []string
}

// do sends one call and decodes a 2xx answer into out, or a failure into *Error.
func (c *Client) do(ctx context.Context, cl call) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	method, path := cl.method, cl.path
	u := *c.base
	// RawPath keeps the caller's escaping: "a%2Fb" stays one segment.
	u.RawPath = c.base.EscapedPath() + path
	unescaped, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	u.Path = unescaped
	u.RawQuery = cl.query.Encode()
	in, out, token := cl.in, cl.out, cl.token
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "extension-backend/"+Version)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("X-Access-Token", token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, scrubURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := &Error{Status: resp.StatusCode}
		var eb struct {
			Type             string            `json:"type"`
			Message          string            `json:"message"`
			ValidationErrors []ValidationError `json:"validationErrors"`
		}
		if json.Unmarshal(data, &eb) == nil {
			mask := strings.NewReplacer(maskPairs(append(cl.sensitive, token))...).Replace
			apiErr.Type, apiErr.Message = mask(eb.Type), mask(eb.Message)
			for _, v := range eb.ValidationErrors {
				apiErr.ValidationErrors = append(apiErr.ValidationErrors, ValidationError{mask(v.Message), mask(v.Path), mask(v.Type)})
			}
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, apiErr)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
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
