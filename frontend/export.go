package frontend

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// The data export (GET /app/{instanceId}/export), for owners only: everything the backend
// keeps of the instance as a JSON file to download, with the values that open something
// left out (extension.ExportInstance). Each download is in the audit log.

// ExportPath is the data export of an instance.
func ExportPath(instanceID string) string { return AppPath(instanceID) + "/export" }

// ExportData serves GET /app/{instanceId}/export.
func (f *Frontend) ExportData(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	if !extension.CanExportData(s.Account.Role) {
		return f.Problem(c, http.StatusForbidden, "export.forbidden", "")
	}
	doc, err := f.store.ExportInstance(ctx, s.Instance.ID)
	if err != nil {
		return f.internal(c, "export instance data", err)
	}
	var body bytes.Buffer
	if err := doc.WriteJSON(&body); err != nil {
		return f.internal(c, "write instance data", err)
	}
	// The download is recorded before it is handed out: one that cannot be recorded is
	// not handed out.
	if err := f.store.Audit(ctx, extension.AuditEvent{InstanceID: s.Instance.ID, AccountID: s.Account.ID,
		Kind: extension.AuditDataExported, Detail: map[string]string{"bytes": strconv.Itoa(body.Len())}}); err != nil {
		return f.internal(c, "audit data export", err)
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentDisposition, `attachment; filename="`+exportFileName(s.Instance.ID, doc)+`"`)
	h.Set(echo.HeaderCacheControl, "no-store")
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body.Bytes())
}

// exportFileName names the downloaded file after the instance and the time, in letters,
// digits and dashes only, so that no instance id can break the header it goes in.
func exportFileName(instanceID string, doc *extension.Export) string {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, instanceID)
	return "instance-" + safe + "-" + doc.ExportedAt.Format("20060102-150405") + ".json"
}
