package extension

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// What appendCapture writes, readCapture reads back; anything else it refuses without a
// panic.
func FuzzReadCapture(f *testing.F) {
	seed := &CapturedDelivery{URL: "http://127.0.0.1/mstudio/webhooks?dry-run=true", HeadersTruncated: true,
		Header: http.Header{"Content-Type": {"application/json"}, "X-Two": {"a", ""}}, Body: []byte(`{"secret":"s"}`)}
	f.Add(appendCapture(nil, seed))
	f.Add([]byte("c1"))
	f.Add([]byte("c1\x00\x00\xff\xff\xff\xff\x0f"))
	f.Add([]byte("c2\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c CapturedDelivery
		if err := readCapture(data, &c); err != nil {
			return
		}
		// What it read, written again, reads the same.
		var again CapturedDelivery
		if err := readCapture(appendCapture(nil, &c), &again); err != nil || !cmp.Equal(c, again) {
			t.Fatalf("%q: read %+v, then %+v, %v", data, c, again, err)
		}
	})
}

func TestCaptureFormatRoundTrip(t *testing.T) {
	for _, c := range []*CapturedDelivery{
		{URL: "http://x/y", Header: http.Header{"A": {"1", "2"}}, Body: []byte("body")},
		{Header: http.Header{}, Body: []byte{}},
		{URL: "u", HeadersTruncated: true, Header: http.Header{"B": {}}, Body: bytes.Repeat([]byte{0xff, 0}, 300)},
	} {
		var got CapturedDelivery
		if err := readCapture(appendCapture(nil, c), &got); err != nil || !cmp.Equal(*c, got) {
			t.Errorf("round trip of %+v: got %+v, %v", c, got, err)
		}
	}
}
