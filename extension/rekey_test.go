package extension_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

func TestRekey(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)

		// More secrets than Rekey reads in one batch, plus instances without a secret.
		const n = 205
		secrets := map[string]extension.Secret{}
		withA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyA)})
		for i := range n {
			id := fmt.Sprintf("i-%03d", i)
			secrets[id] = extension.Secret(fmt.Sprintf("rekey-secret-%03d-Qx7mT2vLp9RkW4sNz8", i))
			if _, err := withA.ApplyLifecycle(ctx, addedEvent(id, at(1), secrets[id])); err != nil {
				t.Fatalf("install %s: %v", id, err)
			}
		}
		mustApply(t, withA, removedEvent("i-gone", at(1)), extension.OutcomeApplied)
		mustApply(t, withA, updatedEvent("i-no-secret", at(1), true, ""), extension.OutcomeApplied)

		rotating := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB, keyA)})
		checkCredentials(t, rotating, "i-000", secrets["i-000"], nil) // the old key still opens

		stats, err := rotating.Rekey(ctx)
		if err != nil {
			t.Fatalf("Rekey: %v", err)
		}
		if want := (extension.RekeyStats{Resealed: n}); stats != want {
			t.Errorf("first Rekey got %+v, want %+v", stats, want)
		}
		stats, err = rotating.Rekey(ctx)
		if err != nil {
			t.Fatalf("second Rekey: %v", err)
		}
		if want := (extension.RekeyStats{Current: n}); stats != want {
			t.Errorf("second Rekey got %+v, want %+v", stats, want)
		}

		onlyB := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB)})
		onlyA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyA)})
		for id, secret := range secrets {
			checkCredentials(t, onlyB, id, secret, nil)
			if _, _, err := onlyA.InstanceCredentials(ctx, id); !errors.Is(err, extension.ErrUnsealable) {
				t.Errorf("[A] InstanceCredentials(%s) after rekey got %v, want %v", id, err, extension.ErrUnsealable)
			}
		}
		checkCredentials(t, onlyB, "i-gone", "", extension.ErrRemoved)
		checkCredentials(t, onlyB, "i-no-secret", "", extension.ErrNoSecret)

		// Every stored value now carries B's key id.
		ins, err := onlyB.Instances(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range ins {
			if in.HasSecret() && !onlyB.Keys().SealedWithCurrentKey(in.SealedSecret) {
				t.Errorf("instance %s: secret not sealed with key B after rekey", in.ID)
			}
		}

		// A keyring that lacks the sealing key cannot rekey either, and says so.
		if _, err := onlyA.Rekey(ctx); !errors.Is(err, extension.ErrUnsealable) {
			t.Errorf("[A] Rekey got %v, want %v", err, extension.ErrUnsealable)
		}
		secretList := make([]extension.Secret, 0, len(secrets))
		for _, s := range secrets {
			secretList = append(secretList, s)
		}
		checkNoPlaintext(t, onlyB, secretList...)
	})
}

func TestRekeyKeepsRotatedSecret(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
		withA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyA)})
		mustApply(t, withA, addedEvent("i-1", at(1), "before-rotation-Qx7mT2vLp9RkW4sNz8"), extension.OutcomeApplied)

		rotating := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB, keyA)})
		const rotated = extension.Secret("after-rotation-bYc3HfJ6dGa1EoUiVtX5")
		mustApply(t, rotating, rotatedEvent("i-1", at(2), rotated), extension.OutcomeApplied)
		stats, err := rotating.Rekey(ctx)
		if err != nil {
			t.Fatalf("Rekey: %v", err)
		}
		if want := (extension.RekeyStats{Current: 1}); stats != want {
			t.Errorf("Rekey got %+v, want %+v (the rotation already sealed with B)", stats, want)
		}
		checkCredentials(t, rotating, "i-1", rotated, nil)
	})
}

func TestRekeyWithoutKeys(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{})
		if _, err := s.Rekey(context.Background()); !errors.Is(err, extension.ErrNoKeys) {
			t.Errorf("Rekey without keys got %v, want %v", err, extension.ErrNoKeys)
		}
	})
}

func TestRekeyEmptyStore(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		stats, err := s.Rekey(context.Background())
		if err != nil || stats != (extension.RekeyStats{}) {
			t.Errorf("Rekey of an empty store got (%+v, %v), want ({}, nil)", stats, err)
		}
	})
}

// Rekey carries users' tokens over to the new key and drops cached instance tokens sealed
// with the old one (the broker mints them again).
func TestRekeyTokens(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
		withA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyA)})
		mustApply(t, withA, addedEvent("i-tok", at(1), "s"), extension.OutcomeApplied)
		const user = "7f1c2a8e-5d4b-4e3a-9c1f-0a1b2c3d4e01"
		if _, err := withA.PutUserToken(ctx, user, "i-tok", "user-token", "user-refresh", time.Now().Add(time.Hour), ""); err != nil {
			t.Fatal(err)
		}
		if ok, err := withA.LeaseSharedToken(ctx, "i-tok", "me", time.Minute); err != nil || !ok {
			t.Fatalf("lease: %v, %v", ok, err)
		}
		if _, err := withA.PutSharedToken(ctx, "i-tok", "me", "instance-token", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}

		rotating := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB, keyA)})
		stats, err := rotating.Rekey(ctx)
		if err != nil {
			t.Fatalf("Rekey: %v", err)
		}
		if stats.Resealed != 2 { // the instance secret and the user's token pair
			t.Errorf("Rekey got %+v, want 2 resealed", stats)
		}

		onlyB := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB)})
		got, err := onlyB.UserToken(ctx, user, "i-tok")
		if err != nil || got.Token.Reveal() != "user-token" || got.Refresh.Reveal() != "user-refresh" {
			t.Errorf("user token with the new key alone: got %v, %v", got.Token.Reveal() == "user-token", err)
		}
		if _, err := onlyB.SharedToken(ctx, "i-tok"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("cached instance token after rekey: got %v, want it dropped", err)
		}
	})
}
