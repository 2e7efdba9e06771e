package extension_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// A sealed mail link opens only for its instance and recipient (in any case of the
// address), never as another sealed value, and carries no trace of the link.
func TestMailLinkSealing(t *testing.T) {
	s := extensiontest.NewStore(t, extension.SQLite)
	link := extension.Secret("https://ext.example/invite/tok-abcdefghijklmnop")
	sealed, err := s.SealMailLink(link, "inst-1", "Ann@Example.test")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "tok-abcdefghijklmnop") || strings.Contains(sealed, "invite") {
		t.Fatalf("the sealed link shows the link: %s", sealed)
	}
	if got, err := s.OpenMailLink(sealed, "inst-1", "ann@example.test"); err != nil || got != link {
		t.Fatalf("open: %v, %v", got == link, err)
	}
	for _, c := range []struct{ instance, to string }{{"inst-2", "ann@example.test"}, {"inst-1", "bob@example.test"}} {
		if _, err := s.OpenMailLink(sealed, c.instance, c.to); !errors.Is(err, extension.ErrUnsealable) {
			t.Errorf("opened for %s/%s: %v", c.instance, c.to, err)
		}
	}
	other := extensiontest.NewStore(t, extension.SQLite) // another keyring
	if _, err := other.OpenMailLink(sealed, "inst-1", "ann@example.test"); !errors.Is(err, extension.ErrUnsealable) {
		t.Errorf("opened with another key: %v", err)
	}
	noKeys := extensiontest.Open(t, extensiontest.URL(t, extension.SQLite), extension.Options{})
	if _, err := noKeys.SealMailLink(link, "inst-1", "ann@example.test"); !errors.Is(err, extension.ErrNoKeys) {
		t.Errorf("sealed without keys: %v", err)
	}
}
