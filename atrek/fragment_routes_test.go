package atrek_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/extension-backend/extension-backend/httpfront"
)

func TestFragmentSessionRoute(t *testing.T) {
	e := newFragmentEnv(t)
	app := httpfront.New(httpfront.Options{}) // the production front, as cmd's route table wires it
	app.GET("/mstudio/fragment/session", e.Verifier.FragmentSession, e.Verifier.Middleware())

	req := httptest.NewRequest(http.MethodGet, "/mstudio/fragment/session", nil)
	req.Header.Set("x-session-token", e.token(t, e.Instance))
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("got %d: %s", rec.Code, rec.Body)
	}
	var got struct{ UserID, InstanceID, ContextID, Context string }
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.UserID != e.User.ID || got.InstanceID != e.Instance.ID || got.ContextID != e.Instance.ContextID || got.Context != e.Instance.ContextKind {
		t.Errorf("got %+v, want the env's user and instance", got)
	}

	rec = httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mstudio/fragment/session", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("without a session token: got %d, want 401", rec.Code)
	}
}
