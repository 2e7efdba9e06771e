package main

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/uuid"
)

// seedInstance migrates the database of vars (ours and the job queue's) and installs an
// instance in it with the given secret, sealed with vars' keys, as a webhook would.
func seedInstance(t *testing.T, vars map[string]string, id, secret string) *extension.Store {
	t.Helper()
	if _, errOut, err := runCmd(vars, "migrate", "up"); err != nil {
		t.Fatalf("migrate up: %v\n%s", err, errOut)
	}
	return installInstance(t, vars, id, secret)
}

// installInstance installs an instance in the database of vars as seedInstance does, but
// migrates only our schema, not the job queue's.
func installInstance(t *testing.T, vars map[string]string, id, secret string) *extension.Store {
	t.Helper()
	var keys [][]byte
	for _, k := range splitList(vars["EXT_ENCRYPTION_KEYS"]) {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, b)
	}
	kr, err := extension.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	store := extensiontest.Open(t, vars["EXT_DATABASE_URL"], extension.Options{Keys: kr})
	variant := ""
	res, err := store.ApplyLifecycle(context.Background(), extension.LifecycleEvent{
		Kind: extension.EventAdded, RequestID: uuid.NewString(), CreatedAt: time.Now(), InstanceID: id,
		ContextKind: "project", ContextID: uuid.NewString(), Scopes: []string{"project:read"}, Enabled: new(true),
		VariantKey: &variant, Secret: extension.Secret(secret),
	})
	if err != nil || res.Outcome != extension.OutcomeApplied {
		t.Fatalf("install %s: %+v, %v", id, res, err)
	}
	return store
}
