package main

import (
	"context"

	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/jobs"
)

// jobMailer is the frontend's Mailer on the job queue: a page hands a mail over, a job
// sends it. The two packages declare the same mail, field for field, so one converts
// into the other.
type jobMailer struct{ jobs *jobs.Jobs }

func (m jobMailer) SendInvitation(ctx context.Context, in frontend.InvitationMail) error {
	return m.jobs.SendInvitation(ctx, jobs.InvitationMail(in))
}

func (m jobMailer) SendPasswordReset(ctx context.Context, r frontend.ResetMail) error {
	return m.jobs.SendPasswordReset(ctx, jobs.ResetMail(r))
}

// mailConfig is the queue's e-mail setup, nil without EXT_SMTP_URL.
func mailConfig(cfg *Config) *jobs.MailConfig {
	if cfg.SMTP == nil {
		return nil
	}
	return &jobs.MailConfig{SMTP: *cfg.SMTP, From: cfg.MailFrom}
}
