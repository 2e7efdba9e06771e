package frontend

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// The client that fetches from OpenID Connect providers. Their addresses are typed by
// owners, so the server must not become a way into its own network: it dials public
// addresses only (checked after DNS, so a name cannot rebind to an inner address), follows
// no redirects, reads at most maxOIDCResponseBytes of any answer, and a provider's
// endpoints must be https. Loopback and private addresses, and http on loopback, are
// allowed only while EXT_PUBLIC_URL is itself on loopback: development and tests.

// maxOIDCResponseBytes caps every answer of a provider (discovery, keys, token, userinfo):
// go-oidc reads them whole.
const maxOIDCResponseBytes = 1 << 20

var (
	errOIDCAddress      = errors.New("sign-in provider on an address that is not public")
	errOIDCRedirect     = errors.New("sign-in provider answered with a redirect")
	errOIDCResponseSize = errors.New("sign-in provider's answer is too large")
	errOIDCEndpoint     = errors.New("sign-in provider names an endpoint that is not https")
)

// blockedPrefixes are ranges besides those netip names (loopback, private, link-local,
// multicast, unspecified) that never hold a provider.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and the broadcast address
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
}

// oidcAddressAllowed reports whether the client may connect to ip; allowLocal admits
// loopback and private addresses. An IPv6 address that carries an IPv4 one (mapped, NAT64,
// 6to4) is judged by that.
func oidcAddressAllowed(ip netip.Addr, allowLocal bool) bool {
	ip = ip.Unmap()
	if ip.Is6() {
		b := ip.As16()
		switch {
		case netip.MustParsePrefix("64:ff9b::/96").Contains(ip):
			return oidcAddressAllowed(netip.AddrFrom4([4]byte(b[12:16])), allowLocal)
		case netip.MustParsePrefix("2002::/16").Contains(ip):
			return oidcAddressAllowed(netip.AddrFrom4([4]byte(b[2:6])), allowLocal)
		}
	}
	switch {
	case !ip.IsValid(), ip.IsUnspecified(), ip.IsMulticast(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(),
		ip.IsInterfaceLocalMulticast():
		return false
	case ip.IsLoopback(), ip.IsPrivate():
		return allowLocal
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// newOIDCClient is the guarded client. base, when not nil, lends its transport's TLS
// settings (tests trust their own servers); the guard is added all the same.
func newOIDCClient(base *http.Client, allowLocal bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if base != nil {
		if bt, ok := base.Transport.(*http.Transport); ok {
			tr = bt.Clone()
		}
	}
	// No proxy: the guard sees the address it dials, which a proxy would hide.
	tr.Proxy = nil
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !oidcAddressAllowed(ap.Addr(), allowLocal) {
			return errOIDCAddress
		}
		return nil
	}}
	tr.DialContext = dialer.DialContext
	tr.DialTLSContext = nil
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     limitedTransport{tr},
		CheckRedirect: func(*http.Request, []*http.Request) error { return errOIDCRedirect },
	}
}

// limitedTransport caps the body of every answer at maxOIDCResponseBytes.
type limitedTransport struct{ next http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxOIDCResponseBytes {
		resp.Body.Close()
		return nil, errOIDCResponseSize
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxOIDCResponseBytes}
	return resp, nil
}

// limitedBody fails a read past its limit, rather than cutting the answer short quietly.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			return 0, errOIDCResponseSize
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// checkOIDCEndpoints returns an error unless every endpoint a provider names is an https
// URL, or an http URL on loopback while the issuer itself is http on loopback and local
// providers are allowed. Empty endpoints (an optional one not named) are skipped.
func checkOIDCEndpoints(issuer string, allowLocal bool, endpoints ...string) error {
	iu, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	localHTTP := allowLocal && iu.Scheme == "http" && isLoopback(iu.Hostname())
	for _, e := range endpoints {
		if e == "" {
			continue
		}
		u, err := url.Parse(e)
		switch {
		case err != nil, u.Host == "", u.User != nil:
			return fmt.Errorf("%w: %.200q is not a URL", errOIDCEndpoint, e)
		case u.Scheme == "https":
		case u.Scheme == "http" && localHTTP && isLoopback(u.Hostname()):
		default:
			return fmt.Errorf("%w: %.200q", errOIDCEndpoint, e)
		}
	}
	return nil
}
