package extension

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Roles of an account in its instance. The first account of an instance is its owner.
const (
	RoleOwner  = "owner"
	RoleMember = "member"
)

// Account is a local account of an instance: a platform user provisioned at their first
// sign-in, or (later) a local user of the extension's own frontend.
type Account struct {
	ID             string
	InstanceID     string
	PlatformUserID string // the platform's user id; empty for an account not from the platform
	Email          string
	Name           string
	Role           string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// accountRow maps the accounts table; platform_user_id is NULL for local accounts, so the
// unique (instance_id, platform_user_id) index holds only for platform users.
type accountRow struct {
	ID             string `gorm:"primaryKey"`
	InstanceID     string
	PlatformUserID *string
	Email          string
	Name           string
	Role           string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

func (accountRow) TableName() string { return "accounts" }

func (r accountRow) account() Account {
	a := Account{ID: r.ID, InstanceID: r.InstanceID, Email: r.Email, Name: r.Name, Role: r.Role,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if r.PlatformUserID != nil {
		a.PlatformUserID = *r.PlatformUserID
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

// EnsurePlatformAccount returns the account of a platform user in an instance, and
// provisions it at the user's first sign-in (created is then true). The first account of
// an instance becomes its owner and later ones get defaultRole, exactly one owner even
// when first sign-ins race on several replicas. A later sign-in takes over the e-mail
// address and name the platform sends now; an empty one keeps what is stored. It fails
// with ErrNotFound when the instance does not exist.
func (s *Store) EnsurePlatformAccount(ctx context.Context, instanceID, platformUserID, email, name, defaultRole string) (Account, bool, error) {
	if instanceID == "" || platformUserID == "" {
		return Account{}, false, errors.New("ensure platform account: empty instance or user id")
	}
	if defaultRole == "" {
		return Account{}, false, errors.New("ensure platform account: empty default role")
	}
	// Most sign-ins are repeat sign-ins: read without a transaction or lock first.
	acc, err := s.updatePlatformAccount(s.db.WithContext(ctx), instanceID, platformUserID, email, name)
	if err == nil {
		return acc, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Account{}, false, fmt.Errorf("ensure account of user %s in instance %s: %w", platformUserID, instanceID, err)
	}
	var created bool
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Serialise the provisioning of an instance's accounts on its row. On SQLite the
		// transaction itself does (_txlock=immediate takes the write lock at BEGIN). On
		// PostgreSQL, FOR NO KEY UPDATE excludes another provisioner but not the key-share
		// locks that inserts referencing the instance take; read committed then lets each
		// statement below see what the previous lock holder committed. Whatever else may
		// create an instance's first account must take the same lock.
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
		// The user's own first sign-in may have raced this one and won.
		found, err := s.updatePlatformAccount(tx, instanceID, platformUserID, email, name)
		if !errors.Is(err, ErrNotFound) {
			acc = found
			return err
		}
		var existing []string
		if err := tx.Raw(`SELECT id FROM accounts WHERE instance_id = ? LIMIT 1`, instanceID).Scan(&existing).Error; err != nil {
			return translate(err)
		}
		role := defaultRole
		if len(existing) == 0 {
			role = RoleOwner
		}
		now := s.now().UTC()
		row := accountRow{ID: uuid.NewString(), InstanceID: instanceID, PlatformUserID: &platformUserID,
			Email: email, Name: name, Role: role, CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&row).Error; err != nil {
			return translateRef(err)
		}
		acc, created = row.account(), true
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return Account{}, false, err
	}
	if err != nil {
		return Account{}, false, fmt.Errorf("provision account of user %s in instance %s: %w", platformUserID, instanceID, translate(err))
	}
	return acc, created, nil
}

// updatePlatformAccount loads a platform user's account through db (the store's handle or
// a transaction) and writes the e-mail address and name if they changed: a write only
// when something is new. It fails with ErrNotFound when there is no such account.
func (s *Store) updatePlatformAccount(db *gorm.DB, instanceID, platformUserID, email, name string) (Account, error) {
	var row accountRow
	if err := db.Take(&row, "instance_id = ? AND platform_user_id = ?", instanceID, platformUserID).Error; err != nil {
		return Account{}, translate(err)
	}
	if (email == "" || email == row.Email) && (name == "" || name == row.Name) {
		return row.account(), nil
	}
	if email != "" {
		row.Email = email
	}
	if name != "" {
		row.Name = name
	}
	row.UpdatedAt = s.now().UTC()
	err := db.Exec(`UPDATE accounts SET email = ?, name = ?, updated_at = ? WHERE id = ?`,
		row.Email, row.Name, row.UpdatedAt, row.ID).Error
	if err != nil {
		return Account{}, translate(err)
	}
	return row.account(), nil
}
