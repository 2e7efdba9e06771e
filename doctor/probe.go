package doctor

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/uuid"
)

// WebhookPath is where the backend takes lifecycle webhooks, below its base URL.
const WebhookPath = "/mstudio/webhooks"

// Delivery budgets: the platform gives up after 6 s; a dry run should take a fraction.
const (
	DeliveryTimeout = 6 * time.Second
	SlowDelivery    = 2 * time.Second
)

// Signer is a key the probed endpoint trusts for webhooks: a simulator's, whose public
// half the endpoint fetches by Serial from the simulator it calls.
type Signer struct {
	Serial string
	Key    ed25519.PrivateKey
	From   string // where it came from, for messages ("key file data/simulator-keys.json")
}

// Probe checks a running endpoint from outside, as the platform and a browser reach it.
type Probe struct {
	// URL is the endpoint's base URL (the webhook URL is accepted too: its path is cut).
	URL string
	// ExtensionID and ContributorID are what a genuine delivery carries in its meta;
	// an empty ContributorID sends a made-up one (checked only when the endpoint sets one).
	ExtensionID, ContributorID string
	// Signer signs deliveries the endpoint should accept; nil: none at hand.
	Signer *Signer
	// API is the platform the endpoint should trust: its current key's serial makes the
	// tampered delivery's signature one the endpoint must check, and its dry-run action
	// (with ContributorToken) has the platform itself call the endpoint. nil: neither.
	API    *mstudio.Client
	APIURL string
	// ContributorToken is a contributor member's API token (EXT_CONTRIBUTOR_TOKEN).
	ContributorToken extension.Secret
	// HTTPClient reaches the endpoint; nil: one that follows no redirect. Its timeout is
	// set per request.
	HTTPClient *http.Client
}

// Base is the endpoint's base URL without a trailing slash or the webhook path.
func (p Probe) Base() string {
	b := strings.TrimSuffix(strings.TrimSpace(p.URL), "/")
	b = strings.TrimSuffix(b, WebhookPath)
	if u, err := url.Parse(b); err == nil {
		u.RawQuery, u.Fragment = "", ""
		b = strings.TrimSuffix(u.String(), "/")
	}
	return b
}

// Checks are the probe's checks, in the order doctor prints them.
func (p Probe) Checks() []Check {
	return []Check{
		{"endpoint-url", p.checkURL},
		{"endpoint-config", p.checkSignInConfig},
		{"tampered-delivery", p.checkTampered},
		{"foreign-delivery", p.checkForeign},
		{"dry-run", p.checkDryRun},
		{"platform-dry-run", p.checkPlatformDryRun},
		{"sso-page", p.checkSSOPage},
	}
}

func (p Probe) client() *http.Client {
	if p.HTTPClient != nil {
		c := *p.HTTPClient
		c.CheckRedirect = noRedirect
		return &c
	}
	return &http.Client{CheckRedirect: noRedirect}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (p Probe) checkURL(context.Context) []Finding {
	u, err := url.Parse(p.Base())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return []Finding{fail("pass the endpoint's base URL, such as --probe https://ext.example.com", "--probe %s is not an http(s) URL", quote(p.URL, 80))}
	}
	f := PublicURLFinding("the endpoint", p.Base())
	switch f.Level {
	case Fail:
		f.Action = "put a TLS proxy (Caddy) in front of the backend and register https://" + u.Host + WebhookPath + " as the webhook URL"
	case Warn:
		f.Action = "fine for a test on this machine; in production, probe the https:// address the platform calls"
	}
	return []Finding{f}
}

// answer is what the endpoint said to one request.
type answer struct {
	status  int
	header  http.Header
	body    []byte
	elapsed time.Duration
	err     error
}

// maxAnswer bounds how much of an answer the probe reads.
const maxAnswer = 64 << 10

func (p Probe) send(ctx context.Context, method, target string, header http.Header, body []byte, timeout time.Duration) answer {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	if body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("User-Agent", "extension-backend-doctor/"+mstudio.Version)
	start := time.Now()
	resp, err := p.client().Do(req)
	if err != nil {
		return answer{err: unwrapURLError(err), elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return answer{status: resp.StatusCode, header: resp.Header, body: data, elapsed: time.Since(start)}
}

// checkSignInConfig reads the endpoint's configuration off its sign-in redirect: the
// public URL it builds links from, the extension id it signs in for, the platform.
func (p Probe) checkSignInConfig(ctx context.Context) []Finding {
	a := p.send(ctx, http.MethodGet, p.Base()+"/login/mstudio", http.Header{"Accept": {"text/html"}}, nil, 10*time.Second)
	if a.err != nil {
		return []Finding{fail("check the URL, DNS, the TLS proxy and that the backend runs", "the endpoint %s cannot be reached: %v", p.Base(), a.err)}
	}
	cfg, found := SignInConfig{}, false
	if a.status == http.StatusSeeOther || a.status == http.StatusFound {
		cfg, found = ReadSignInRedirect(a.header.Get("Location"))
	}
	if !found {
		return []Finding{warn("check that --probe names the backend's base URL",
			"GET /login/mstudio answered %d without the sign-in redirect, so the endpoint's public URL and extension id cannot be read", a.status)}
	}
	var out []Finding
	pub := PublicURLFinding("its EXT_PUBLIC_URL", cfg.PublicURL)
	switch {
	case pub.Level == Fail:
		out = append(out, pub)
	case !SameOrigin(cfg.PublicURL, p.Base()):
		out = append(out, fail("set the endpoint's EXT_PUBLIC_URL to "+p.Base()+" (the address browsers reach it at)",
			"the endpoint builds its links from EXT_PUBLIC_URL %s, but it is reached at %s: sign-in redirects and cookies go to the wrong place", quoteURL(cfg.PublicURL), p.Base()))
	default:
		out = append(out, ok("the endpoint's EXT_PUBLIC_URL is %s, where it is reached", quoteURL(cfg.PublicURL)))
	}
	switch {
	case p.ExtensionID == "":
		out = append(out, ok("the endpoint serves extension %s (no EXT_EXTENSION_ID here to compare with)", quote(cfg.ClientID, 40)))
	case cfg.ClientID != strings.ToLower(p.ExtensionID):
		out = append(out, fail("set the endpoint's EXT_EXTENSION_ID to "+p.ExtensionID+", the extension's id in mStudio",
			"the endpoint is configured for extension %s, not %s: it refuses every genuine delivery (403)", quote(cfg.ClientID, 40), p.ExtensionID))
	default:
		out = append(out, ok("the endpoint is configured for extension %s", p.ExtensionID))
	}
	if p.APIURL != "" && !SameOrigin(cfg.Platform, p.APIURL) {
		out = append(out, warn("check the endpoint's EXT_MSTUDIO_API_URL: it should be "+p.APIURL,
			"the endpoint sends users to sign in at %s, not at %s", quoteURL(cfg.Platform), p.APIURL))
	}
	return out
}

// quoteURL shows a URL read from an answer: escaped when it carries odd characters.
func quoteURL(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '"' || r > '~' }) || len(s) > 200 {
		return quote(s, 200)
	}
	return s
}

// payload is a lifecycle webhook body as the platform builds it: an install, so that it
// carries every field; a dry run, so that an endpoint that took it changes nothing.
type payload struct {
	APIVersion string `json:"apiVersion"`
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	Request    struct {
		ID        string `json:"id"`
		CreatedAt string `json:"createdAt"`
		Target    struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"target"`
	} `json:"request"`
	Context struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	} `json:"context"`
	ConsentedScopes []string `json:"consentedScopes"`
	State           struct {
		Enabled bool `json:"enabled"`
	} `json:"state"`
	Meta struct {
		ExtensionID   string `json:"extensionId"`
		ContributorID string `json:"contributorId"`
	} `json:"meta"`
	Secret string `json:"secret"`
}

// dryRunTarget is the webhook URL with the platform's dry-run parameters.
func (p Probe) dryRunTarget() string {
	q := url.Values{"dry-run": {"true"}, "executing-user-id": {uuid.NewString()}}
	return p.Base() + WebhookPath + "?" + q.Encode()
}

// delivery builds a dry-run install for the extension id and the URL it goes to.
func (p Probe) delivery(extensionID string) (target string, body []byte) {
	target = p.dryRunTarget()
	var b payload
	b.APIVersion, b.ID, b.Kind = "v1", uuid.NewString(), "ExtensionAddedToContext"
	b.Request.ID = uuid.Must(uuid.NewV7()).String()
	b.Request.CreatedAt = time.Now().UTC().Format(time.RFC3339Nano)
	b.Request.Target.Method, b.Request.Target.URL = http.MethodPost, target
	b.Context.ID, b.Context.Kind = uuid.NewString(), "project"
	b.ConsentedScopes = []string{}
	b.State.Enabled = true
	b.Meta.ExtensionID, b.Meta.ContributorID = extensionID, p.ContributorID
	if b.Meta.ContributorID == "" {
		b.Meta.ContributorID = uuid.NewString()
	}
	b.Secret = "doctor-probe-" + rand.Text() // never works anywhere: a dry run's secret
	body, _ = json.Marshal(b)                // a struct of strings: cannot fail
	return target, body
}

func (p Probe) post(ctx context.Context, target string, body []byte, sign func(http.Header, []byte)) answer {
	h := http.Header{"Content-Type": {"application/json"}}
	sign(h, body)
	return p.send(ctx, http.MethodPost, target, h, body, DeliveryTimeout)
}

func (p Probe) signWith(s *Signer) func(http.Header, []byte) {
	return func(h http.Header, body []byte) { mstudio.Sign(h, s.Serial, s.Key, body) }
}

// checkTampered sends a delivery whose signature does not match its body. With a trusted
// signer it is a signed delivery altered after signing; without, one signed by a key of
// our own under the platform's current serial, which the endpoint must check the same way.
func (p Probe) checkTampered(ctx context.Context) []Finding {
	target, body := p.delivery(p.ExtensionID)
	var how string
	var sign func(http.Header, []byte)
	switch {
	case p.Signer != nil:
		how = "altered after signing with " + p.signerName()
		signed := p.signWith(p.Signer)
		sign = func(h http.Header, b []byte) {
			signed(h, b)
			// The change comes after the signature: one byte of the secret.
			i := bytes.Index(b, []byte(`"doctor-probe-`)) + len(`"doctor-probe-`)
			b[i] ^= 1
		}
	default:
		serial := uuid.NewString()
		how = "signed by an unknown key under a made-up serial (no platform key at hand: the serial check refuses it first)"
		if p.API != nil {
			if s, _, err := p.API.CurrentPublicKey(ctx, mstudio.PurposeWebhook); err == nil {
				serial = s
				how = "signed by a key of ours under the platform's current serial " + s
			}
		}
		_, forged, _ := ed25519.GenerateKey(nil)
		sign = func(h http.Header, b []byte) { mstudio.Sign(h, serial, forged, b) }
	}
	a := p.post(ctx, target, body, sign)
	return []Finding{refusal(a, "a delivery "+how, http.StatusUnauthorized)}
}

// refusal judges the answer to a delivery the endpoint must refuse with want.
func refusal(a answer, what string, want int) Finding {
	switch {
	case a.err != nil:
		return fail("check that the backend runs and that --probe is its base URL", "%s got no answer: %v", what, a.err)
	case a.status == want:
		return ok("%s is refused with %d", what, a.status)
	case a.status >= 400 && a.status < 500:
		return ok("%s is refused with %d", what, a.status)
	case a.status >= 200 && a.status < 300:
		return fail("do not run this endpoint until it verifies deliveries: anyone could install, disable or remove instances",
			"%s was accepted with %d", what, a.status)
	case a.status == http.StatusServiceUnavailable:
		return fail("check that the endpoint reaches its EXT_MSTUDIO_API_URL (it fetches the platform's keys there)",
			"%s got 503: the endpoint cannot fetch the platform's key to check it", what)
	}
	return fail("read the endpoint's log around this request", "%s got %d instead of a refusal (%d)", what, a.status, want)
}

func (p Probe) signerName() string {
	if p.Signer == nil {
		return ""
	}
	if p.Signer.From != "" {
		return p.Signer.From
	}
	return "the simulator's key"
}

// checkForeign sends a validly signed delivery for another extension.
func (p Probe) checkForeign(ctx context.Context) []Finding {
	if p.Signer == nil {
		advice := signerAdvice
		if !p.ContributorToken.IsZero() {
			advice = "against a dev or sim backend, pass --key-file with that simulator's key file; the platform's dry run covers the rest"
		}
		return []Finding{warn(advice, "skipped: a delivery for another extension needs a key the endpoint trusts to sign with (the platform signs only for this extension)")}
	}
	target, body := p.delivery(uuid.NewString())
	a := p.post(ctx, target, body, p.signWith(p.Signer))
	if a.status == http.StatusUnauthorized {
		return []Finding{warn("see dry-run below: the endpoint refuses "+p.signerName()+" altogether",
			"inconclusive: the endpoint refused the signature (401) before it looked at the extension id")}
	}
	return []Finding{refusal(a, "a signed delivery for another extension", http.StatusForbidden)}
}

const signerAdvice = "against a dev or sim backend, pass --key-file with that simulator's key file; against production, set EXT_CONTRIBUTOR_TOKEN and EXT_CONTRIBUTOR_ID so the platform runs a dry run"

// checkDryRun sends a genuine dry run, signed with the trusted key, and times the answer.
func (p Probe) checkDryRun(ctx context.Context) []Finding {
	switch {
	case p.Signer == nil:
		if !p.ContributorToken.IsZero() {
			return []Finding{ok("no simulator key at hand: the platform's dry run below stands in")}
		}
		return []Finding{warn(signerAdvice, "skipped: a dry run needs a key the endpoint trusts, or the platform's dry-run action")}
	case p.ExtensionID == "":
		return []Finding{warn("set EXT_EXTENSION_ID or pass --extension-id", "skipped: no extension id to put into a genuine delivery")}
	}
	target, body := p.delivery(p.ExtensionID)
	a := p.post(ctx, target, body, p.signWith(p.Signer))
	return []Finding{p.judgeDryRun(a.err, a.status, a.elapsed, a.body, "a dry run signed with "+p.signerName(), true)}
}

// judgeDryRun judges the endpoint's answer to a genuine dry run; signedHere says that the
// probe signed it (with a simulator's key), not the platform.
func (p Probe) judgeDryRun(err error, status int, elapsed time.Duration, body []byte, what string, signedHere bool) Finding {
	keyFileHint := ""
	if signedHere {
		keyFileHint = ", or probe with the --key-file of the simulator it fetches its keys from"
	}
	took := elapsed.Round(time.Millisecond)
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return fail("make the endpoint answer faster: the platform gives up after 6 s and retries", "%s got no answer within %s", what, DeliveryTimeout)
	case err != nil:
		return fail("check that the backend runs and that --probe is its base URL", "%s got no answer: %v", what, err)
	case status == http.StatusUnauthorized:
		return fail("set the endpoint's EXT_MSTUDIO_API_URL to the platform (or simulator) that signs its deliveries"+keyFileHint,
			"%s was refused with 401: the endpoint checks signatures against another platform's keys, so every genuine delivery fails", what)
	case status == http.StatusForbidden:
		return fail("set the endpoint's EXT_EXTENSION_ID (and EXT_CONTRIBUTOR_ID, if set) to the extension's ids in mStudio",
			"%s for extension %s was refused with 403 %s: the endpoint is configured for another extension or contributor", what, p.ExtensionID, errorText(body))
	case status < 200 || status > 299:
		return fail("read the endpoint's log around this request", "%s was answered %d %s", what, status, errorText(body))
	case elapsed >= DeliveryTimeout:
		return fail("make the endpoint answer faster: the platform gives up after 6 s", "%s answered %d, but only after %s", what, status, took)
	case elapsed >= SlowDelivery:
		return warn("look at the endpoint's database and load: a delivery should take milliseconds", "%s answered %d in %s, a third of the platform's 6 s", what, status, took)
	}
	return ok("%s answered %d in %s (the platform waits 6 s)", what, status, took)
}

// errorText is the reason in a 4xx answer's {"error": …} body, quoted, or "".
func errorText(body []byte) string {
	var b struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &b) != nil || b.Error == "" {
		return ""
	}
	return "(" + quote(b.Error, 120) + ")"
}

// checkPlatformDryRun has the platform itself deliver a dry run to the extension's
// configured webhook URL, with the contributor's token.
func (p Probe) checkPlatformDryRun(ctx context.Context) []Finding {
	switch {
	case p.ContributorToken.IsZero():
		if p.Signer != nil {
			return []Finding{ok("skipped: EXT_CONTRIBUTOR_TOKEN is not set; the signed dry run above stands in")}
		}
		return []Finding{warn("set EXT_CONTRIBUTOR_TOKEN (a contributor member's API token) and EXT_CONTRIBUTOR_ID",
			"skipped: without a contributor token the platform cannot be asked for a dry run")}
	case p.API == nil || p.ContributorID == "" || p.ExtensionID == "":
		return []Finding{warn("set EXT_CONTRIBUTOR_ID and EXT_EXTENSION_ID beside EXT_CONTRIBUTOR_TOKEN",
			"skipped: the platform's dry run needs the contributor and extension ids")}
	}
	start := time.Now()
	res, err := p.API.DryRunWebhook(ctx, p.ContributorToken, p.ContributorID, p.ExtensionID, uuid.NewString(), "extension-added-to-context")
	elapsed := time.Since(start)
	if err != nil {
		return []Finding{fail("check EXT_CONTRIBUTOR_TOKEN (a member of the contributor), EXT_CONTRIBUTOR_ID and EXT_EXTENSION_ID",
			"the platform's dry-run action failed: %v", err)}
	}
	what := "the platform's dry run to " + quoteURL(res.RouteCalled)
	var out []Finding
	if !SameOrigin(res.RouteCalled, p.Base()) || !strings.HasPrefix(pathOf(res.RouteCalled), pathOf(p.Base())+WebhookPath) {
		out = append(out, warn("set the extension's webhook URLs in mStudio to "+p.Base()+WebhookPath+" if this endpoint should get the deliveries",
			"the platform calls %s, not the probed %s", quoteURL(res.RouteCalled), p.Base()+WebhookPath))
	}
	var callErr error
	if res.ResponseCode == 0 {
		callErr = errors.New(res.ErrorMessage)
		if res.ErrorMessage == "" {
			callErr = errors.New("no answer")
		}
		callErr = errors.New(quote(callErr.Error(), 160))
	}
	f := p.judgeDryRun(callErr, res.ResponseCode, elapsed, []byte(res.ResponseBody), what, false)
	if f.Level == OK {
		f.Message = fmt.Sprintf("%s answered %d; the whole action took %s (the platform waits 6 s)", what, res.ResponseCode, elapsed.Round(time.Millisecond))
	}
	return append(out, f)
}

func pathOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(u.Path, "/")
}

// checkSSOPage opens a malformed single sign-on link as a browser does: the answer must
// be a page that says what happened, not JSON and not a server error, and carry the
// security headers of every page.
func (p Probe) checkSSOPage(ctx context.Context) []Finding {
	q := url.Values{"atrek": {"doctor-malformed"}, "userId": {"not-a-user"}, "instanceId": {"not-an-instance"}}
	a := p.send(ctx, http.MethodGet, p.Base()+"/mstudio/sso?"+q.Encode(),
		http.Header{"Accept": {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, "Accept-Language": {"en"}}, nil, 10*time.Second)
	const page = "the single sign-on page for a malformed link"
	if a.err != nil {
		return []Finding{fail("check that the backend runs and that --probe is its base URL", "%s got no answer: %v", page, a.err)}
	}
	var out []Finding
	kind := PageKind(a.header.Get("Content-Type"))
	switch {
	case a.status >= 500:
		out = append(out, fail("read the endpoint's log: a malformed link must get a 4xx page", "%s answered %d", page, a.status))
	case kind != "html":
		out = append(out, fail("route browsers to the backend's pages (check the reverse proxy)", "%s answered %d with %s, not an HTML page", page, a.status, quote(a.header.Get("Content-Type"), 60)))
	case a.status < 400:
		out = append(out, warn("read the endpoint's log: a malformed link should be refused", "%s answered %d, not a 4xx", page, a.status))
	default:
		out = append(out, ok("%s answers %d with an HTML page", page, a.status))
	}
	if kind == "html" {
		https := strings.HasPrefix(p.Base(), "https:")
		for _, f := range SecurityHeaderFindings(a.header, https, "the page") {
			f.Check = "security-headers"
			out = append(out, f)
		}
	}
	return out
}
