package extension_test

import (
	"context"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// BenchmarkSignInPlatformUser is the store's share of a repeat click-through sign-in: one
// transaction storing the user's tokens, reading the account, starting a session (ending
// the browser's previous one) and recording the audit event.
//
//	go test ./extension -run '^$' -bench SignInPlatformUser -benchtime 2000x
func BenchmarkSignInPlatformUser(b *testing.B) {
	for _, d := range extensiontest.Dialects() {
		b.Run(string(d), func(b *testing.B) {
			ctx := context.Background()
			s := extensiontest.Open(b, extensiontest.URL(b, d), extension.Options{Keys: extensiontest.Keyring(b)})
			if _, err := s.ApplyLifecycle(ctx, addedEvent("i-bench", time.Now(), realisticSecret)); err != nil {
				b.Fatal(err)
			}
			p := extension.PlatformSignIn{InstanceID: "i-bench", PlatformUserID: "u-bench", Email: "ada@example.com", Name: "Ada",
				DefaultRole: extension.RoleMember, Token: realisticSecret, Refresh: realisticSecret,
				TokenExpiresAt: time.Now().Add(time.Hour), Session: extension.SessionStart{Absolute: time.Hour, UserAgent: "bench"}}
			b.ResetTimer()
			for range b.N {
				done, err := s.SignInPlatformUser(ctx, p)
				if err != nil {
					b.Fatal(err)
				}
				p.Session.Replaces = done.SessionID
			}
		})
	}
}
