package mstudiotest

// The execution log: every lifecycle event the sender handles, in the shape of the
// platform's webhook executions.

import (
	"errors"
	"net/http"
	"time"
)

// ExecutionState is the state of a webhook execution, as in the platform's execution log.
type ExecutionState string

// Execution states. Failed means an attempt failed and another one is scheduled.
const (
	ExecutionQueued     ExecutionState = "queued"
	ExecutionRunning    ExecutionState = "running"
	ExecutionSuccessful ExecutionState = "successful"
	ExecutionFailed     ExecutionState = "failed"
	ExecutionHalted     ExecutionState = "halted"
)

// Execution is one lifecycle event on its way to the backend, in the shape of the
// platform's ExtensionInstanceWebhookExecution plus what a developer needs to see why it
// fails. It never holds the secret or the receiver's answer body.
type Execution struct {
	ID                     string         `json:"id"`
	ExtensionInstanceID    string         `json:"extensionInstanceId"`
	ExtensionID            string         `json:"extensionId"`
	ContributorID          string         `json:"contributorId"`
	Kind                   string         `json:"kind"` // trigger name, e.g. "extensionAddedToContext"
	State                  ExecutionState `json:"state"`
	Attempts               int            `json:"attempts"`
	NextScheduledExecution time.Time      `json:"nextScheduledExecution,omitzero"`
	LastStatusCode         int            `json:"lastStatusCode,omitempty"` // 0: no answer
	LastError              string         `json:"lastError,omitempty"`
	CreatedAt              time.Time      `json:"createdAt"`
}

// Errors of the execution log.
var (
	ErrNoExecution = errors.New("mstudiotest: no such webhook execution")
	ErrNotHalted   = errors.New("mstudiotest: webhook execution is not halted")
	ErrClosed      = errors.New("mstudiotest: simulator closed")
)

func (sd *sender) rememberLocked(ex *execution) {
	sd.log = append(sd.log, ex)
	sd.byID[ex.rec.ID] = ex
	for i := 0; len(sd.log) > maxExecutions && i < len(sd.log); {
		if old := sd.log[i]; old.rec.State == ExecutionSuccessful {
			sd.forgetLocked(old)
			continue
		}
		i++
	}
}

func (sd *sender) forgetLocked(ex *execution) {
	delete(sd.byID, ex.rec.ID)
	for i, x := range sd.log {
		if x == ex {
			sd.log = append(sd.log[:i], sd.log[i+1:]...)
			return
		}
	}
}

// Executions lists the webhook executions of an instance, or of all instances when
// instanceID is empty, oldest first. Executions dropped by a removal are not listed.
func (s *Server) Executions(instanceID string) []Execution {
	sd := s.sender
	sd.mu.Lock()
	defer sd.mu.Unlock()
	out := []Execution{}
	for _, ex := range sd.log {
		if instanceID == "" || ex.rec.ExtensionInstanceID == instanceID {
			out = append(out, ex.rec)
		}
	}
	return out
}

// ResumeExecution retries a halted execution now, and the instance's queue behind it.
func (s *Server) ResumeExecution(id string) error {
	sd := s.sender
	sd.mu.Lock()
	defer sd.mu.Unlock()
	ex, ok := sd.byID[id]
	switch {
	case sd.closed:
		return ErrClosed
	case !ok:
		return ErrNoExecution
	case ex.rec.State != ExecutionHalted:
		return ErrNotHalted
	}
	ex.rec.State, ex.failures, ex.due = ExecutionQueued, 0, time.Now()
	sd.kickLocked(sd.queues[ex.rec.ExtensionInstanceID])
	return nil
}

// WebhookStatus reports whether the instance's webhooks are halted, and when the next
// attempt is due (zero when none is scheduled): the webhookExecutionHalted and
// nextScheduledWebhookExecution of the platform's instance resource.
func (s *Server) WebhookStatus(instanceID string) (halted bool, next time.Time) {
	sd := s.sender
	sd.mu.Lock()
	defer sd.mu.Unlock()
	q := sd.queues[instanceID]
	if q == nil || len(q.items) == 0 {
		return false, time.Time{}
	}
	head := q.items[0].rec
	return head.State == ExecutionHalted, head.NextScheduledExecution
}

func (s *Server) getExecutions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Executions(r.URL.Query().Get("instanceId")))
}

func (s *Server) postResume(w http.ResponseWriter, r *http.Request) {
	switch err := s.ResumeExecution(r.PathValue("id")); {
	case errors.Is(err, ErrNoExecution):
		writeError(w, http.StatusNotFound, "NotFound", "webhook execution not found")
	case errors.Is(err, ErrNotHalted):
		writeError(w, http.StatusConflict, "Conflict", "webhook execution is not halted")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "Unavailable", err.Error())
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
