package httpfront

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// However a path under a secret prefix is spelled, only the prefix is logged; any other
// path is logged as it is.
func TestPathRedactor(t *testing.T) {
	logPath := pathRedactor([]string{"/invite/", "/reset/"})
	const secret = "S3cr3tT0kenS3cr3tT0ken"
	for _, tc := range []struct{ target, want string }{
		{"/invite/" + secret, "/invite/…"},
		{"/invite/" + secret + "/more", "/invite/…"},
		{"/reset/" + secret, "/reset/…"},
		{"/INVITE/" + secret, "/invite/…"},
		{"//invite/" + secret, "/invite/…"},
		{"/x/../invite/" + secret, "/invite/…"},
		{"/./reset/" + secret, "/reset/…"},
		{"/invite%2F" + secret, "/invite/…"},
		{"/invite/", "/invite/"},
		{"/app/x/team", "/app/x/team"},
		{"/inviter/" + secret, "/inviter/" + secret},
	} {
		req := httptest.NewRequest("GET", "http://example.test/", nil)
		req.URL.Path, req.URL.RawPath = tc.target, ""
		if strings.Contains(tc.target, "%") {
			req.URL.Path, req.URL.RawPath = strings.ReplaceAll(tc.target, "%2F", "/"), tc.target
		}
		if got := logPath(req); got != tc.want {
			t.Errorf("%s is logged as %q, want %q", tc.target, got, tc.want)
		}
	}
}

// The path of a request that names no secret prefix is clipped, as before.
func TestPathRedactorClips(t *testing.T) {
	req := httptest.NewRequest("GET", "http://example.test/"+strings.Repeat("a", 1000), nil)
	if got := pathRedactor(nil)(req); len(got) > 260 {
		t.Errorf("a long path is logged with %d bytes", len(got))
	}
}
