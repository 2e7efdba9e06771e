package frontend

import "github.com/extension-backend/extension-backend/extension"

// tabsView is the row of links between an instance's pages (the layout's
// "instance-tabs"), each shown only to a role that may open it. Current is the page the
// tabs sit on, one of the tab* names.
type tabsView struct {
	InstanceID string
	Current    string
	Audit      bool // the account may read the audit log
	Settings   bool // the account may change the sign-in settings
}

const (
	tabDashboard = "dashboard"
	tabTeam      = "team"
	tabAccount   = "account"
	tabAudit     = "audit"
	tabSettings  = "settings"
)

func tabsFor(s SignedIn, current string) tabsView {
	return tabsView{InstanceID: s.Instance.ID, Current: current,
		Audit: extension.CanReadAudit(s.Account.Role), Settings: extension.CanManageSettings(s.Account.Role)}
}
