package mstudio_test

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
)

// TestContexts reads an instance's context with the instance's own token, as the
// post-install job does.
func TestContexts(t *testing.T) {
	project := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{Context: "project"})
	customer := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{Context: "customer"})
	pid, cid := project.Instance.ContextID, customer.Instance.ContextID
	ptok, ctok := project.instanceToken(t), customer.instanceToken(t)
	pc, cc := newClient(t, project.SimURL, mstudio.Options{}), newClient(t, customer.SimURL, mstudio.Options{})

	t.Run("project", func(t *testing.T) {
		got, err := pc.Project(t.Context(), ptok, pid)
		if err != nil {
			t.Fatalf("Project: %v", err)
		}
		want := mstudio.Project{ID: pid, ShortID: "p-" + pid[:6], Description: "Project " + pid[:8]}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(mstudio.Project{}, "CustomerID")); diff != "" {
			t.Errorf("project (-want +got):\n%s", diff)
		}
		if _, err := uuid.Parse(got.CustomerID); err != nil {
			t.Errorf("CustomerID = %q, want a UUID", got.CustomerID)
		}
	})
	t.Run("customer", func(t *testing.T) {
		got, err := cc.Customer(t.Context(), ctok, cid)
		if err != nil {
			t.Fatalf("Customer: %v", err)
		}
		want := mstudio.Customer{ID: cid, Name: "Organisation " + cid[:8], CustomerNumber: "C-" + cid[:6]}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("customer (-want +got):\n%s", diff)
		}
	})

	tests := []struct {
		name       string
		c          *mstudio.Client
		token      extension.Secret
		kind, id   string
		want       string
		wantErr    error
		wantStatus int
	}{
		{"project", pc, ptok, extension.ContextProject, pid, "Project " + pid[:8], nil, 0},
		{"customer", cc, ctok, extension.ContextCustomer, cid, "Organisation " + cid[:8], nil, 0},
		{"another project", pc, ptok, extension.ContextProject, uuid.NewString(), "", nil, http.StatusForbidden},
		{"project kind for the customer", cc, ctok, extension.ContextProject, cid, "", nil, http.StatusForbidden},
		{"unknown token", pc, "not-a-token", extension.ContextProject, pid, "", nil, http.StatusUnauthorized},
		{"unknown kind", pc, ptok, "organisation", pid, "", mstudio.ErrInvalidArgument, 0},
		{"empty kind", pc, ptok, "", pid, "", mstudio.ErrInvalidArgument, 0},
		{"id not a uuid", pc, ptok, extension.ContextProject, "../customers/" + pid, "", mstudio.ErrInvalidArgument, 0},
		{"no token", pc, "", extension.ContextProject, pid, "", mstudio.ErrInvalidArgument, 0},
	}
	for _, tc := range tests {
		t.Run("ContextName/"+tc.name, func(t *testing.T) {
			got, err := tc.c.ContextName(t.Context(), tc.token, tc.kind, tc.id)
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("error = %v, want %v", err, tc.wantErr)
			case tc.wantStatus != 0 && apiStatus(err) != tc.wantStatus:
				t.Errorf("error = %v, want status %d", err, tc.wantStatus)
			case tc.wantErr == nil && tc.wantStatus == 0 && err != nil:
				t.Errorf("ContextName: %v", err)
			}
			if got != tc.want {
				t.Errorf("ContextName = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestInstance(t *testing.T) {
	variant := "pro"
	env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{
		Context: "customer", ConsentedScopes: []string{"customer:read"}, VariantKey: &variant,
	})
	in := env.Instance
	c := newClient(t, env.SimURL, mstudio.Options{})
	got, err := c.Instance(t.Context(), env.instanceToken(t), in.ID)
	if err != nil {
		t.Fatalf("Instance: %v", err)
	}
	want := mstudio.Instance{
		ID:              in.ID,
		ExtensionID:     env.Sim.ExtensionID(),
		Context:         mstudio.AggregateReference{Aggregate: "customer", Domain: "customer", ID: in.ContextID},
		ConsentedScopes: []string{"customer:read"},
		VariantKey:      "pro",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("instance (-want +got):\n%s", diff)
	}
	if _, err := c.Instance(t.Context(), env.instanceToken(t), uuid.NewString()); apiStatus(err) != http.StatusNotFound {
		t.Errorf("unknown instance: error = %v, want status 404", err)
	}
}

// TestResourceIDsRefused: an id that is not a UUID, or a missing token, is refused before
// anything is sent.
func TestResourceIDsRefused(t *testing.T) {
	var calls atomic.Int32
	c := newClient(t, newServer(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }).URL, mstudio.Options{})
	const tok = extension.Secret("token")
	ids := []string{"", "..", "a/b", "a?b", "%2e%2e", "{" + testInstanceID + "}", "urn:uuid:" + testInstanceID, "self"}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			calls := []func() error{
				func() error { _, err := c.Project(t.Context(), tok, id); return err },
				func() error { _, err := c.Customer(t.Context(), tok, id); return err },
				func() error { _, err := c.Instance(t.Context(), tok, id); return err },
				func() error { _, err := c.ContextName(t.Context(), tok, extension.ContextProject, id); return err },
			}
			for i, call := range calls {
				if err := call(); !errors.Is(err, mstudio.ErrInvalidArgument) {
					t.Errorf("call %d: error = %v, want %v", i, err, mstudio.ErrInvalidArgument)
				}
			}
		})
	}
	t.Run("no token", func(t *testing.T) {
		if _, err := c.Project(t.Context(), "", testInstanceID); !errors.Is(err, mstudio.ErrInvalidArgument) {
			t.Errorf("error = %v, want %v", err, mstudio.ErrInvalidArgument)
		}
	})
	if n := calls.Load(); n != 0 {
		t.Errorf("server got %d requests, want none", n)
	}
}

// TestUpdateProjectDescription renames a project with the instance's token, as the
// worked domain action does; without project:write the platform refuses with 403.
func TestUpdateProjectDescription(t *testing.T) {
	withWrite := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{Context: "project",
		ConsentedScopes: []string{"project:read", "project:write"}})
	readOnly := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{Context: "project",
		ConsentedScopes: []string{"project:read"}})

	c := newClient(t, withWrite.SimURL, mstudio.Options{})
	tok, pid := withWrite.instanceToken(t), withWrite.Instance.ContextID
	if err := c.UpdateProjectDescription(t.Context(), tok, pid, "Shop & Blog"); err != nil {
		t.Fatalf("UpdateProjectDescription: %v", err)
	}
	if got, err := c.Project(t.Context(), tok, pid); err != nil || got.Description != "Shop & Blog" {
		t.Errorf("after the update: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "   ", string(make([]rune, 256))} {
		var apiErr *mstudio.Error
		if err := c.UpdateProjectDescription(t.Context(), tok, pid, bad); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
			t.Errorf("description %q: %v, want a 400", bad, err)
		}
	}

	rc := newClient(t, readOnly.SimURL, mstudio.Options{})
	err := rc.UpdateProjectDescription(t.Context(), readOnly.instanceToken(t), readOnly.Instance.ContextID, "x")
	var apiErr *mstudio.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
		t.Errorf("without project:write: %v, want a 403", err)
	}
	if err := rc.UpdateProjectDescription(t.Context(), "", readOnly.Instance.ContextID, "x"); !errors.Is(err, mstudio.ErrInvalidArgument) {
		t.Errorf("without a token: %v", err)
	}
}
