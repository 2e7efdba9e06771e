package frontend

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"golang.org/x/oauth2"
)

func TestOIDCAddressGuard(t *testing.T) {
	for _, tc := range []struct {
		addr              string
		public, withLocal bool
	}{
		{"8.8.8.8", true, true},
		{"2606:4700::1111", true, true},
		{"127.0.0.1", false, true},
		{"::1", false, true},
		{"10.1.2.3", false, true},
		{"172.16.0.1", false, true},
		{"192.168.1.1", false, true},
		{"fd00::1", false, true},
		{"::ffff:10.0.0.1", false, true},
		{"::ffff:8.8.8.8", true, true},
		{"169.254.169.254", false, false},
		{"fe80::1", false, false},
		{"100.64.0.1", false, false},
		{"100.127.255.255", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"0.1.2.3", false, false},
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"255.255.255.255", false, false},
		{"198.18.0.1", false, false},
		{"64:ff9b::a9fe:a9fe", false, false}, // NAT64 of 169.254.169.254
		{"64:ff9b::808:808", true, true},     // NAT64 of 8.8.8.8
		{"2002:a00:1::1", false, true},       // 6to4 of 10.0.0.1
		{"64:ff9b:1::1", false, false},
	} {
		ip := netip.MustParseAddr(tc.addr)
		if got := oidcAddressAllowed(ip, false); got != tc.public {
			t.Errorf("oidcAddressAllowed(%s, false) = %v, want %v", tc.addr, got, tc.public)
		}
		if got := oidcAddressAllowed(ip, true); got != tc.withLocal {
			t.Errorf("oidcAddressAllowed(%s, true) = %v, want %v", tc.addr, got, tc.withLocal)
		}
	}
}

// The guard never admits an inner address, however it is written, and allowing local
// addresses only ever admits more.
func FuzzOIDCAddressGuard(f *testing.F) {
	for _, s := range []string{"8.8.8.8", "127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "2002:7f00:1::", "fe80::1%eth0", "100.64.1.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		public := oidcAddressAllowed(ip, false)
		if public && !oidcAddressAllowed(ip, true) {
			t.Fatalf("%s: allowed without local addresses, refused with them", s)
		}
		if !public {
			return
		}
		u := ip.Unmap()
		if u.IsLoopback() || u.IsPrivate() || u.IsLinkLocalUnicast() || u.IsUnspecified() || u.IsMulticast() ||
			netip.MustParsePrefix("100.64.0.0/10").Contains(u) || netip.MustParsePrefix("169.254.0.0/16").Contains(u) {
			t.Fatalf("%s is allowed", s)
		}
	})
}

func TestCheckOIDCEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name, issuer string
		allowLocal   bool
		endpoints    []string
		ok           bool
	}{
		{"https", "https://idp.example", false, []string{"https://idp.example/a", "https://other.example/t", ""}, true},
		{"http token under https", "https://idp.example", true, []string{"https://idp.example/a", "http://idp.example/t"}, false},
		{"http loopback under https", "https://idp.example", true, []string{"http://127.0.0.1/t"}, false},
		{"loopback dev", "http://127.0.0.1:5556", true, []string{"http://127.0.0.1:5556/t", "http://localhost:5556/k"}, true},
		{"loopback dev, not allowed", "http://127.0.0.1:5556", false, []string{"http://127.0.0.1:5556/t"}, false},
		{"loopback issuer, http elsewhere", "http://127.0.0.1:5556", true, []string{"http://10.0.0.1/t"}, false},
		{"other scheme", "https://idp.example", false, []string{"file:///etc/passwd"}, false},
		{"user info", "https://idp.example", false, []string{"https://u:p@idp.example/t"}, false},
		{"relative", "https://idp.example", false, []string{"/t"}, false},
	} {
		err := checkOIDCEndpoints(tc.issuer, tc.allowLocal, tc.endpoints...)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, errOIDCEndpoint)) {
			t.Errorf("%s: checkOIDCEndpoints = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// The client dials no inner address unless local providers are allowed, follows no
// redirect, and reads no answer past the cap.
func TestOIDCClientGuard(t *testing.T) {
	big := strings.Repeat("x", maxOIDCResponseBytes+1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/big":
			w.(http.Flusher).Flush() // chunked: no Content-Length to refuse early
			_, _ = io.WriteString(w, big)
		case "/big-length":
			w.Header().Set("Content-Length", "2000000")
			_, _ = io.WriteString(w, big)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	defer srv.Close()
	get := func(c *http.Client, path string) error {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	if err := get(newOIDCClient(nil, false), "/ok"); !errors.Is(err, errOIDCAddress) {
		t.Errorf("loopback without local providers: %v, want %v", err, errOIDCAddress)
	}
	local := newOIDCClient(nil, true)
	if err := get(local, "/ok"); err != nil {
		t.Errorf("loopback with local providers: %v", err)
	}
	if err := get(local, "/redirect"); !errors.Is(err, errOIDCRedirect) {
		t.Errorf("redirect: %v, want %v", err, errOIDCRedirect)
	}
	for _, path := range []string{"/big", "/big-length"} {
		if err := get(local, path); !errors.Is(err, errOIDCResponseSize) {
			t.Errorf("%s: %v, want %v", path, err, errOIDCResponseSize)
		}
	}
}

// newGuardFrontend is a Frontend whose guarded client trusts srv's certificate.
func newGuardFrontend(t *testing.T, srv *httptest.Server, allowLocal bool) *Frontend {
	t.Helper()
	f, err := New(Config{Store: extensiontest.NewStore(t, extension.SQLite), PublicURL: "https://ext.example",
		OIDCClient: srv.Client(), OIDCAllowLocal: &allowLocal})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tlsIssuer serves a discovery document under https (on loopback), changed by doc, with
// handlers for more paths.
func tlsIssuer(t *testing.T, doc func(issuer string, d map[string]any), more map[string]http.HandlerFunc) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		d := map[string]any{"issuer": srv.URL, "authorization_endpoint": srv.URL + "/auth", "token_endpoint": srv.URL + "/token",
			"jwks_uri": srv.URL + "/keys", "userinfo_endpoint": srv.URL + "/userinfo", "id_token_signing_alg_values_supported": []string{"RS256"}}
		if doc != nil {
			doc(srv.URL, d)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d)
	})
	for p, h := range more {
		mux.HandleFunc(p, h)
	}
	srv = httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// A discovery document that names an http endpoint under an https issuer is refused, at
// the form and at sign-in.
func TestOIDCDiscoveryHTTPEndpointRefused(t *testing.T) {
	srv := tlsIssuer(t, func(issuer string, d map[string]any) {
		d["token_endpoint"] = strings.Replace(issuer, "https://", "http://", 1) + "/token"
	}, nil)
	f := newGuardFrontend(t, srv, true)
	if _, err := f.discover(t.Context(), srv.URL); !errors.Is(err, errOIDCEndpoint) {
		t.Errorf("discover: %v, want %v", err, errOIDCEndpoint)
	}
	if _, err := f.oidcProvider(t.Context(), srv.URL); err == nil {
		t.Error("oidcProvider accepted an http token endpoint under an https issuer")
	}
	ok := tlsIssuer(t, nil, nil)
	if _, err := newGuardFrontend(t, ok, true).discover(t.Context(), ok.URL); err != nil {
		t.Errorf("discover of an all-https provider: %v", err)
	}
	if _, err := newGuardFrontend(t, ok, false).discover(t.Context(), ok.URL); !errors.Is(err, errOIDCAddress) {
		t.Errorf("discover on loopback without local providers: %v, want %v", err, errOIDCAddress)
	}
}

// Oversized keys and userinfo fail the sign-in cleanly.
func TestOIDCOversizedAnswers(t *testing.T) {
	huge := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"keys":[],"pad":"`+strings.Repeat("x", maxOIDCResponseBytes)+`"}`)
	}
	srv := tlsIssuer(t, nil, map[string]http.HandlerFunc{"/keys": huge, "/userinfo": huge})
	f := newGuardFrontend(t, srv, true)
	ctx := oidc.ClientContext(context.Background(), f.oidcClient)
	op, err := f.oidcProvider(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "a", TokenType: "Bearer"})); err == nil {
		t.Error("an oversized userinfo answer was read")
	}
	seg := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	raw := seg(map[string]string{"alg": "RS256", "kid": "k"}) + "." +
		seg(map[string]any{"iss": srv.URL, "aud": "client", "sub": "s", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}) +
		"." + base64.RawURLEncoding.EncodeToString([]byte("signature"))
	_, err = op.Verifier(&oidc.Config{ClientID: "client"}).Verify(ctx, raw)
	if err == nil || !strings.Contains(err.Error(), errOIDCResponseSize.Error()) {
		t.Errorf("Verify with oversized keys: %v, want %v", err, errOIDCResponseSize)
	}
}
