package extension

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"encoding/json"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Account is an account of an instance: a platform user provisioned at their first
// sign-in (PlatformUserID set), or a local user of the extension's own frontend, who signs
// in with an e-mail address and a password. Its password hash is not part of it: only
// LocalCredentials hands that out, to the sign-in.
type Account struct {
	ID             string
	InstanceID     string
	PlatformUserID string // the platform's user id; empty for a local account
	Email          string // as entered (local) or as the platform sent it
	Name           string
	Role           string
	Language       string    // the account's chosen page language; empty: none chosen
	FailedLogins   int       // failed password sign-ins since the last success (local accounts)
	LockedUntil    time.Time // password sign-in is refused before this; zero: not locked
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// DisplayName is how pages name the account: its name, or its e-mail address when it has
// no name (a platform user whose profile could not be read, say).
func (a Account) DisplayName() string {
	if a.Name != "" {
		return a.Name
	}
	return a.Email
}

// Local reports whether the account signs in with e-mail and password rather than
// through the platform.
func (a Account) Local() bool { return a.PlatformUserID == "" }

// SignInMethod names how the account signs in: "password" or "platform".
func (a Account) SignInMethod() string {
	if a.Local() {
		return "password"
	}
	return "platform"
}

// Locked reports whether password sign-in is locked at now.
func (a Account) Locked(now time.Time) bool { return now.Before(a.LockedUntil) }

// accountRow maps the accounts table; platform_user_id is NULL for local accounts, so the
// unique (instance_id, platform_user_id) index holds only for platform users, and the
// unique (instance_id, email_normalized) index only for local accounts.
type accountRow struct {
	ID              string `gorm:"primaryKey"`
	InstanceID      string
	PlatformUserID  *string
	Email           string
	EmailNormalized string
	PasswordHash    string
	Name            string
	Role            string
	Language        string
	FailedLogins    int
	LockedUntil     *time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

func (accountRow) TableName() string { return "accounts" }

func (r accountRow) account() Account {
	a := Account{ID: r.ID, InstanceID: r.InstanceID, Email: r.Email, Name: r.Name, Role: r.Role,
		Language: r.Language, FailedLogins: r.FailedLogins,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if r.PlatformUserID != nil {
		a.PlatformUserID = *r.PlatformUserID
	}
	if r.LockedUntil != nil {
		a.LockedUntil = r.LockedUntil.UTC()
	}
	return a
}

// translateRef is translate for writes that reference another record: a foreign-key
// violation means that record does not exist.
func translateRef(err error) error {
	if errors.Is(err, gorm.ErrForeignKeyViolated) {
		return ErrNotFound
	}
	return translate(err)
}

// AccountByID loads one account.
func (s *Store) AccountByID(ctx context.Context, id string) (Account, error) {
	var row accountRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return Account{}, err
		}
		return Account{}, fmt.Errorf("load account %s: %w", id, err)
	}
	return row.account(), nil
}

// PlatformAccountRole returns the role of a platform user's account in an instance; it
// fails with ErrNotFound when the user has no account there yet.
func (s *Store) PlatformAccountRole(ctx context.Context, instanceID, platformUserID string) (string, error) {
	st, err := s.preparedRead(ctx, `SELECT role FROM accounts WHERE instance_id = ? AND platform_user_id = ?`)
	if err != nil {
		return "", fmt.Errorf("role of platform user %s: %w", platformUserID, err)
	}
	var role string
	switch err := st.QueryRowContext(ctx, instanceID, platformUserID).Scan(&role); {
	case errors.Is(err, sql.ErrNoRows):
		return "", ErrNotFound
	case err != nil:
		return "", fmt.Errorf("role of platform user %s: %w", platformUserID, translate(err))
	}
	return role, nil
}

// EnsurePlatformAccount returns the account of a platform user in an instance, and
// provisions it at the user's first sign-in (created is then true). The first account of
// an instance becomes its owner and later ones get the instance's template role once an
// owner set one (its settings), else defaultRole; exactly one owner even when first
// sign-ins race on several replicas. A later sign-in takes over the e-mail address and
// name the platform sends now; an empty one keeps what is stored. It fails with
// ErrNotFound when the instance does not exist.
//
// When the instance's settings list allowed domains, a user who has no account yet is
// provisioned only with an address (as NormalizeEmail reads it) in one of them, else it
// fails with ErrDomainNotAllowed; an empty or unreadable address is refused too, as its
// domain cannot be checked. The check is made in the transaction that creates the
// account, after the settings are read there. Existing accounts sign in as before, and
// the instance's very first account (its owner) is never refused: without it nobody
// could sign in to change the setting.
//
// A sign-in does this in its own transaction (SignInPlatformUser); this is the same on
// its own.
func (s *Store) EnsurePlatformAccount(ctx context.Context, instanceID, platformUserID, email, name, defaultRole string) (Account, bool, error) {
	if instanceID == "" || platformUserID == "" {
		return Account{}, false, errors.New("ensure platform account: empty instance or user id")
	}
	if defaultRole == "" {
		return Account{}, false, errors.New("ensure platform account: empty default role")
	}
	st, err := s.signInStatements(ctx)
	if err != nil {
		return Account{}, false, fmt.Errorf("ensure account of user %s in instance %s: %w", platformUserID, instanceID, err)
	}
	var (
		acc     Account
		created bool
	)
	err = s.inTx(ctx, func(tx *sql.Tx) (err error) {
		acc, created, err = s.ensurePlatformAccount(ctx, tx, st, platformAccount{instanceID: instanceID, userID: platformUserID,
			email: email, name: name, defaultRole: defaultRole}, s.now().UTC())
		return err
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDomainNotAllowed) {
		return Account{}, false, err
	}
	if err != nil {
		return Account{}, false, fmt.Errorf("ensure account of user %s in instance %s: %w", platformUserID, instanceID, err)
	}
	return acc, created, nil
}

// platformAccount is what provisioning a platform user's account needs to know.
type platformAccount struct {
	instanceID, userID string
	email, name        string // the profile as the platform sent it now; "" keeps what is stored
	defaultRole        string // a new account's role unless the instance's settings name one
}

// ensurePlatformAccount is EnsurePlatformAccount inside the transaction tx, with the
// statements of signInStatements.
func (s *Store) ensurePlatformAccount(ctx context.Context, tx *sql.Tx, st signInStmts, p platformAccount, now time.Time) (Account, bool, error) {
	// Every sign-in locks the instance's row first, as the lifecycle's changes do, so the
	// two never wait for each other in a circle (a sign-in that wrote the user's token
	// before a disable deleted the instance's tokens deadlocked on PostgreSQL), and a
	// disable committed meanwhile is seen by the writes that follow: it wins over a
	// sign-in under way. The row also serialises provisioning (see lockInstanceAccounts).
	var id string
	if err := tx.StmtContext(ctx, st.lock).QueryRowContext(ctx, p.instanceID).Scan(&id); errors.Is(err, sql.ErrNoRows) {
		return Account{}, false, ErrNotFound
	} else if err != nil {
		return Account{}, false, s.translateDriver(err)
	}
	acc, err := s.updatePlatformAccount(ctx, tx, st, p, now)
	if !errors.Is(err, ErrNotFound) {
		return acc, false, err
	}
	// The first sign-in: under the instance's lock, a first sign-in of the same user that
	// raced this one has committed before the update above looked.
	var others bool
	if err := tx.StmtContext(ctx, st.anyAccount).QueryRowContext(ctx, p.instanceID).Scan(&others); err != nil {
		return Account{}, false, s.translateDriver(err)
	}
	role := RoleOwner // the instance's first account: without it nobody could sign in to change the settings
	if others {
		if role, err = s.provisionRole(ctx, tx, st, p); err != nil {
			return Account{}, false, err
		}
	}
	userID := p.userID
	row := accountRow{ID: uuid.NewString(), InstanceID: p.instanceID, PlatformUserID: &userID,
		Email: p.email, Name: p.name, Role: role, CreatedAt: now, UpdatedAt: now}
	if _, err := tx.StmtContext(ctx, st.accountInsert).ExecContext(ctx,
		row.ID, row.InstanceID, userID, row.Email, row.Name, row.Role, now, now); err != nil {
		return Account{}, false, s.translateDriver(err)
	}
	return row.account(), true, nil
}

// provisionRole returns the role of a new account that is not the instance's first: its
// template role once an owner set one, else the default. It fails with
// ErrDomainNotAllowed when the instance's settings list allowed domains and the address
// is in none of them (or is no address).
func (s *Store) provisionRole(ctx context.Context, tx *sql.Tx, st signInStmts, p platformAccount) (string, error) {
	var role, domains string
	err := tx.StmtContext(ctx, st.settings).QueryRowContext(ctx, p.instanceID).Scan(&role, &domains)
	if errors.Is(err, sql.ErrNoRows) {
		return p.defaultRole, nil // never changed: the defaults
	}
	if err != nil {
		return "", s.translateDriver(err)
	}
	var set InstanceSettings
	if err := json.Unmarshal([]byte(domains), &set.AllowedDomains); err != nil {
		return "", fmt.Errorf("allowed domains of instance %s: %w", p.instanceID, err)
	}
	if len(set.AllowedDomains) > 0 {
		normalized, err := NormalizeEmail(p.email)
		if err != nil || !set.AllowsEmail(normalized) {
			return "", ErrDomainNotAllowed
		}
	}
	return role, nil
}

// updatePlatformAccount loads a platform user's account in tx and writes the e-mail
// address and name sent now if they changed: a write only when something is new. It
// fails with ErrNotFound when there is no such account.
func (s *Store) updatePlatformAccount(ctx context.Context, tx *sql.Tx, st signInStmts, p platformAccount, now time.Time) (Account, error) {
	var a accountScan
	err := tx.StmtContext(ctx, st.account).QueryRowContext(ctx, p.instanceID, p.userID).Scan(a.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, ErrNotFound
	}
	if err != nil {
		return Account{}, s.translateDriver(err)
	}
	row := a.row()
	if (p.email == "" || p.email == row.Email) && (p.name == "" || p.name == row.Name) {
		return row.account(), nil
	}
	if p.email != "" {
		row.Email = p.email
	}
	if p.name != "" {
		row.Name = p.name
	}
	row.UpdatedAt = now
	if _, err := tx.StmtContext(ctx, st.accountUpdate).ExecContext(ctx, row.Email, row.Name, now, row.ID); err != nil {
		return Account{}, s.translateDriver(err)
	}
	return row.account(), nil
}

// lockInstanceAccounts serialises changes to an instance's accounts that depend on the
// others (the first owner, the last owner) on the instance's row, inside the transaction
// tx. On SQLite the transaction itself does (_txlock=immediate takes the write lock at
// BEGIN). On PostgreSQL, FOR NO KEY UPDATE excludes another holder but not the key-share
// locks that inserts referencing the instance take; read committed then lets each
// statement after it see what the previous lock holder committed. Whatever may create an
// instance's first account or change or remove an owner takes this lock. It fails with
// ErrNotFound when the instance does not exist.
func (s *Store) lockInstanceAccounts(tx *gorm.DB, instanceID string) error {
	lock := `SELECT id FROM instances WHERE id = ?`
	if s.dialect == Postgres {
		lock += ` FOR NO KEY UPDATE`
	}
	var ids []string
	if err := tx.Raw(lock, instanceID).Scan(&ids).Error; err != nil {
		return translate(err)
	}
	if len(ids) == 0 {
		return ErrNotFound
	}
	return nil
}

// accountColumns are an account's columns, of the table as "a", as accountScan reads them.
const accountColumns = `a.id, a.instance_id, a.platform_user_id, a.email, a.email_normalized, a.name, a.role, a.language, a.failed_logins,
	a.locked_until, a.created_at, a.updated_at`

// accountScan scans accountColumns by hand: through the ORM's reflection a read cost more
// than the statement. Nullable columns go through sql.Null*: the drivers differ in what
// they accept.
type accountScan struct {
	r            accountRow
	platformUser sql.NullString
	lockedUntil  sql.NullTime
}

func (x *accountScan) dest() []any {
	return []any{&x.r.ID, &x.r.InstanceID, &x.platformUser, &x.r.Email, &x.r.EmailNormalized, &x.r.Name, &x.r.Role,
		&x.r.Language, &x.r.FailedLogins, &x.lockedUntil, &x.r.CreatedAt, &x.r.UpdatedAt}
}

func (x *accountScan) row() accountRow {
	r := x.r
	if x.platformUser.Valid {
		r.PlatformUserID = &x.platformUser.String
	}
	if x.lockedUntil.Valid {
		r.LockedUntil = &x.lockedUntil.Time
	}
	return r
}
