package extension

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"gorm.io/gorm"
)

// A platform user's sign-in (the control panel's click-through, or the OAuth2 login): what
// it reads before it asks the platform, in one statement, and what it writes afterwards,
// in one transaction: the user's tokens, their account (provisioned at the first sign-in),
// the session that replaces the browser's, and the audit event. A failure anywhere leaves
// none of it.

// instanceColumns are an instance's columns, of the table as "i", as instanceScan reads them.
const instanceColumns = `i.id, i.context_kind, i.context_id, i.consented_scopes, i.enabled, i.variant_key, i.sealed_secret, i.last_event_ns,
	i.removed_at, i.context_name, i.context_name_at, i.created_at, i.updated_at`

// instanceScan scans instanceColumns by hand, as accountScan does accounts.
type instanceScan struct {
	in                    Instance
	scopes                string
	removedAt, nameReadAt sql.NullTime
}

func (x *instanceScan) dest() []any {
	return []any{&x.in.ID, &x.in.ContextKind, &x.in.ContextID, &x.scopes, &x.in.Enabled, &x.in.VariantKey, &x.in.SealedSecret,
		&x.in.LastEventNano, &x.removedAt, &x.in.ContextName, &x.nameReadAt, &x.in.CreatedAt, &x.in.UpdatedAt}
}

func (x *instanceScan) instance() (Instance, error) {
	in := x.in
	if x.removedAt.Valid {
		in.RemovedAt = &x.removedAt.Time
	}
	if x.nameReadAt.Valid {
		in.ContextNameAt = &x.nameReadAt.Time
	}
	if err := json.Unmarshal([]byte(x.scopes), &in.ConsentedScopes); err != nil {
		return in, fmt.Errorf("consented scopes of instance %s: %w", in.ID, err)
	}
	return in, nil
}

// signInStateQuery reads an instance and the role of a platform user's account in it.
const signInStateQuery = `SELECT ` + instanceColumns + `,
	(SELECT a.role FROM accounts a WHERE a.instance_id = i.id AND a.platform_user_id = ?)
FROM instances i WHERE i.id = ?`

// SignInState returns an instance, tombstones included, and the role of a platform
// user's account in it ("" while the user has none), in one statement on the read pool:
// what a sign-in needs to know before it asks the platform anything. It fails with
// ErrNotFound when there is no such instance.
func (s *Store) SignInState(ctx context.Context, instanceID, platformUserID string) (*Instance, string, error) {
	st, err := s.preparedRead(ctx, signInStateQuery)
	if err != nil {
		return nil, "", fmt.Errorf("load instance %s: %w", instanceID, err)
	}
	var (
		is   instanceScan
		role sql.NullString
	)
	err = st.QueryRowContext(ctx, platformUserID, instanceID).Scan(append(is.dest(), &role)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("load instance %s: %w", instanceID, translate(err))
	}
	in, err := is.instance()
	if err != nil {
		return nil, "", err
	}
	return &in, role.String, nil
}

// SessionStart says how a sign-in's new session is made.
type SessionStart struct {
	Absolute  time.Duration // how long the session lasts at most
	UserAgent string        // the browser's User-Agent header, kept as CleanUserAgent returns it
	// Replaces is the id of the session the browser brought for the instance, if any: it
	// ends with the sign-in, so a session id planted before sign-in is worthless.
	Replaces Secret
}

// PlatformSignIn is what a platform user's sign-in writes.
type PlatformSignIn struct {
	InstanceID     string
	PlatformUserID string
	// Email and Name are the user's profile as the platform sent it now; an empty one
	// keeps what the account has.
	Email, Name string
	// DefaultRole is the role of a new account (but the instance's first, its owner)
	// unless the instance's settings name one: the operator's default.
	DefaultRole string
	// The user's tokens, stored sealed and bound to the user and the instance; they
	// replace whatever was there, and a refresh under way elsewhere cannot store its
	// older lineage over them.
	Token, Refresh Secret
	TokenExpiresAt time.Time
	Session        SessionStart
}

// PlatformSignedIn is the outcome of a sign-in.
type PlatformSignedIn struct {
	Account   Account
	Created   bool   // the account was provisioned by this sign-in
	SessionID Secret // the new session's id, for the cookie
	Session   Session
}

// SignInPlatformUser writes a platform user's sign-in in one transaction: it stores the
// user's tokens, provisions their account or takes over the e-mail address and name sent
// now (as EnsurePlatformAccount does, allowed domains included), ends the session the
// browser brought, starts a new one and records the sign-in in the audit log. Either all
// of it is committed or none.
//
// It fails with ErrNotFound when the instance does not exist or is disabled or removed
// (a disable applied while the sign-in was under way wins), and with ErrDomainNotAllowed
// when a new account's address is outside the instance's allowed domains.
func (s *Store) SignInPlatformUser(ctx context.Context, p PlatformSignIn) (PlatformSignedIn, error) {
	switch {
	case p.InstanceID == "" || p.PlatformUserID == "":
		return PlatformSignedIn{}, errors.New("sign in: empty instance or user id")
	case p.DefaultRole == "":
		return PlatformSignedIn{}, errors.New("sign in: empty default role")
	case p.Token.IsZero() || p.TokenExpiresAt.IsZero():
		return PlatformSignedIn{}, errors.New("sign in: no token or no expiry")
	case p.Session.Absolute <= 0:
		return PlatformSignedIn{}, fmt.Errorf("sign in: absolute timeout %v, want a positive duration", p.Session.Absolute)
	}
	out, err := s.signInPlatformUser(ctx, p)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDomainNotAllowed) {
		return PlatformSignedIn{}, err
	}
	if err != nil {
		return PlatformSignedIn{}, fmt.Errorf("sign in user %s to instance %s: %w", p.PlatformUserID, p.InstanceID, err)
	}
	return out, nil
}

func (s *Store) signInPlatformUser(ctx context.Context, p PlatformSignIn) (PlatformSignedIn, error) {
	// What costs CPU and not the database is done before the transaction holds the writer.
	sealed, sealedRefresh, err := s.sealUserToken(p.PlatformUserID, p.InstanceID, p.Token, p.Refresh)
	if err != nil {
		return PlatformSignedIn{}, err
	}
	ns, err := newSessionID()
	if err != nil {
		return PlatformSignedIn{}, err
	}
	replaces, replacing := sessionIDHash(p.Session.Replaces)
	agent := CleanUserAgent(p.Session.UserAgent)
	// Prepared before BEGIN: on SQLite the transaction holds the only connection, and
	// preparing on the pool inside it would wait for itself.
	st, err := s.signInStatements(ctx)
	if err != nil {
		return PlatformSignedIn{}, err
	}

	var out PlatformSignedIn
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		now := s.now().UTC()
		acc, created, err := s.ensurePlatformAccount(ctx, tx, st, platformAccount{instanceID: p.InstanceID, userID: p.PlatformUserID,
			email: p.Email, name: p.Name, defaultRole: p.DefaultRole}, now)
		if err != nil {
			return err
		}
		res, err := tx.StmtContext(ctx, st.token).ExecContext(ctx,
			p.InstanceID, p.PlatformUserID, sealed, sealedRefresh, p.TokenExpiresAt.UTC(), now, p.InstanceID)
		if err != nil {
			return s.translateDriver(err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound // disabled or removed
		}
		if replacing {
			if _, err := tx.StmtContext(ctx, st.sessionDelete).ExecContext(ctx, replaces); err != nil {
				return s.translateDriver(err)
			}
		}
		sess := Session{AccountID: acc.ID, InstanceID: p.InstanceID, PlatformUserID: p.PlatformUserID,
			CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(p.Session.Absolute), Handle: ns.handle, UserAgent: agent}
		res, err = tx.StmtContext(ctx, st.session).ExecContext(ctx, sessionInsertArgs(ns.hash, sess)...)
		if err != nil {
			return s.translateDriver(err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return ErrNotFound
		}
		args, err := s.auditArgs(AuditEvent{InstanceID: p.InstanceID, AccountID: acc.ID, ActorName: acc.Name, Kind: AuditSignIn,
			Detail: map[string]string{"method": "platform"}, CreatedAt: now})
		if err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, st.audit).ExecContext(ctx, args...); err != nil {
			return s.translateDriver(err)
		}
		out = PlatformSignedIn{Account: acc, Created: created, SessionID: ns.id, Session: sess}
		return nil
	})
	return out, err
}

// signInStmts are the sign-in's statements, prepared on the writer's pool.
type signInStmts struct {
	account, accountUpdate, lock, anyAccount, settings, accountInsert *sql.Stmt
	token, sessionDelete, session, audit                              *sql.Stmt
}

// signInSQL is the text of signInStmts in a dialect.
type signInSQL struct {
	account, accountUpdate, lock, anyAccount, settings, accountInsert string
	token, sessionDelete, session, audit                              string
}

// signInQueries are built once per dialect: rebinding them on every sign-in would cost
// PostgreSQL's sign-ins a few string builds each.
var signInQueries = map[Dialect]func() signInSQL{
	SQLite:   sync.OnceValue(func() signInSQL { return buildSignInSQL(SQLite) }),
	Postgres: sync.OnceValue(func() signInSQL { return buildSignInSQL(Postgres) }),
}

func buildSignInSQL(d Dialect) signInSQL {
	lock := `SELECT id FROM instances WHERE id = ?`
	if d == Postgres {
		lock += ` FOR NO KEY UPDATE` // see lockInstanceAccounts
	}
	return signInSQL{
		account:       d.Rebind(`SELECT ` + accountColumns + ` FROM accounts a WHERE a.instance_id = ? AND a.platform_user_id = ?`),
		accountUpdate: d.Rebind(`UPDATE accounts SET email = ?, name = ?, updated_at = ? WHERE id = ?`),
		lock:          d.Rebind(lock),
		anyAccount:    d.Rebind(`SELECT EXISTS (SELECT 1 FROM accounts WHERE instance_id = ?)`),
		settings:      d.Rebind(`SELECT default_role, allowed_domains FROM instance_settings WHERE instance_id = ?`),
		accountInsert: d.Rebind(`INSERT INTO accounts (id, instance_id, platform_user_id, email, name, role, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		token:         d.Rebind(userTokenSignIn),
		sessionDelete: d.Rebind(`DELETE FROM sessions WHERE id_hash = ?`),
		session:       d.Rebind(sessionInsert),
		audit:         d.Rebind(auditInsert),
	}
}

func (s *Store) signInStatements(ctx context.Context) (signInStmts, error) {
	q := signInQueries[s.dialect]()
	var st signInStmts
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&st.account, q.account}, {&st.accountUpdate, q.accountUpdate}, {&st.lock, q.lock}, {&st.anyAccount, q.anyAccount},
		{&st.settings, q.settings}, {&st.accountInsert, q.accountInsert}, {&st.token, q.token},
		{&st.sessionDelete, q.sessionDelete}, {&st.session, q.session}, {&st.audit, q.audit},
	} {
		var err error
		if *p.st, err = prepareOnce(ctx, s.sqlDB, &s.stmts, p.sql); err != nil {
			return st, err
		}
	}
	return st, nil
}

// inTx runs f in a transaction on the writer's pool and commits when it returns nil.
// Statements must be prepared before: on SQLite the transaction holds the only
// connection.
func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return s.translateDriver(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := f(tx); err != nil {
		return err
	}
	return s.translateDriver(tx.Commit())
}

// translateDriver is translateRef for an error of a statement run through database/sql
// rather than GORM: the dialect's translator turns the driver's key violations into
// GORM's, as GORM does for its own statements.
func (s *Store) translateDriver(err error) error {
	if err == nil {
		return nil
	}
	if tr, ok := s.db.Dialector.(gorm.ErrorTranslator); ok {
		if t := tr.Translate(err); t != nil {
			err = t
		}
	}
	return translateRef(err)
}

// SignOutPlatformUser deletes a platform user's tokens and ends their sessions in an
// instance, in one transaction: for a user who lost access to it.
func (s *Store) SignOutPlatformUser(ctx context.Context, instanceID, platformUserID string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Sessions before tokens, in the order a disable or removal deletes them, so the
		// two cannot deadlock on PostgreSQL.
		if err := tx.Exec(`DELETE FROM sessions WHERE instance_id = ? AND platform_user_id = ?`, instanceID, platformUserID).Error; err != nil {
			return err
		}
		return tx.Exec(`DELETE FROM user_tokens WHERE instance_id = ? AND platform_user_id = ?`, instanceID, platformUserID).Error
	})
	if err != nil {
		return fmt.Errorf("sign out user %s in instance %s: %w", platformUserID, instanceID, translate(err))
	}
	return nil
}
