package extension_test

import (
	"testing"

	"github.com/extension-backend/extension-backend/extension"
)

func TestAccountDisplayName(t *testing.T) {
	for _, tc := range []struct{ name, email, want string }{
		{"Lena Local", "lena@example.test", "Lena Local"},
		{"", "lena@example.test", "lena@example.test"},
		{"", "", ""},
		{"Ada", "", "Ada"},
	} {
		if got := (extension.Account{Name: tc.name, Email: tc.email}).DisplayName(); got != tc.want {
			t.Errorf("DisplayName of %q <%s> = %q, want %q", tc.name, tc.email, got, tc.want)
		}
	}
}
