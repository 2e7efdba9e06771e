package extension_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/uuid"
)

func TestActions(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			s := extensiontest.NewStore(t, d)
			ctx := t.Context()
			one, other := uuid.NewString(), uuid.NewString()
			for _, id := range []string{one, other} {
				if _, err := s.ApplyLifecycle(ctx, extension.LifecycleEvent{Kind: extension.EventAdded, RequestID: uuid.NewString(),
					CreatedAt: time.Now(), InstanceID: id, ContextKind: extension.ContextProject, ContextID: uuid.NewString(),
					Enabled: new(true), Secret: "s"}); err != nil {
					t.Fatal(err)
				}
			}
			a, err := s.CreateAction(ctx, one, "acc-1", "rename_project", strings.Repeat("ä", 1000))
			if err != nil {
				t.Fatal(err)
			}
			if a.State != extension.ActionQueued || len(a.Input) > 1024 || !strings.HasPrefix(a.Input, "ä") || strings.ContainsRune(a.Input, 0xfffd) {
				t.Errorf("created %+v", a)
			}
			if err := s.SetActionState(ctx, one, a.ID, extension.ActionDone, extension.OutcomeOK); err != nil {
				t.Fatal(err)
			}
			// An ended action stays as it is.
			if err := s.SetActionState(ctx, one, a.ID, extension.ActionFailed, extension.OutcomePlatformError); err != nil {
				t.Fatal(err)
			}
			got, err := s.ActionByID(ctx, one, a.ID)
			if err != nil || got.State != extension.ActionDone || got.Outcome != extension.OutcomeOK || !got.Finished() {
				t.Errorf("after done and a late failure: %+v, %v", got, err)
			}
			// Another instance sees nothing of it.
			if _, err := s.ActionByID(ctx, other, a.ID); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("another instance's action: %v", err)
			}
			if err := s.SetActionState(ctx, other, a.ID, extension.ActionFailed, ""); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("another instance sets the state: %v", err)
			}
			if list, err := s.Actions(ctx, other, 10); err != nil || len(list) != 0 {
				t.Errorf("another instance's list: %+v, %v", list, err)
			}
			if list, err := s.Actions(ctx, one, 10); err != nil || len(list) != 1 || list[0].ID != a.ID {
				t.Errorf("list: %+v, %v", list, err)
			}
			if _, err := s.CreateAction(ctx, uuid.NewString(), "acc-1", "rename_project", ""); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("action of an unknown instance: %v", err)
			}
		})
	}
}
