package extension

import (
	"context"
	"fmt"
	"time"
)

// Context kinds an instance can be installed in. The platform says "customer" where the
// control panel says organisation.
const (
	ContextProject  = "project"
	ContextCustomer = "customer"
)

// Instance is one installation of the extension in a project or customer context,
// keyed by the platform's extension instance id. A removed instance stays as a tombstone
// (RemovedAt set, every secret older than the removal destroyed) so that a late, older
// delivery cannot bring it back; only a newer install does. Its other fields still follow
// newer events, which belong to an install that may yet arrive (see ApplyLifecycle).
type Instance struct {
	ID              string   `gorm:"primaryKey"`
	ContextKind     string   // ContextProject or ContextCustomer
	ContextID       string   // the project or customer id
	ConsentedScopes []string `gorm:"serializer:json"`
	Enabled         bool
	VariantKey      string // booked pricing variant; empty when none
	// SealedSecret is the instance secret sealed by the Keyring, bound to the instance id.
	SealedSecret string `json:"-"`
	// LastEventNano is request.createdAt of the newest lifecycle event applied (wholly or
	// in part), in Unix nanoseconds: the platform sends nanosecond timestamps and
	// PostgreSQL's timestamp keeps only microseconds, which could make two distinct events
	// look equal.
	LastEventNano int64 `gorm:"column:last_event_ns"`
	RemovedAt     *time.Time
	// ContextName is the project's description or the customer's name, as the platform
	// last told the post-install or refresh job; empty until then.
	ContextName   string
	ContextNameAt *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// LastEventAt is the platform's creation time of the newest lifecycle event applied.
func (in *Instance) LastEventAt() time.Time { return time.Unix(0, in.LastEventNano).UTC() }

// Removed reports whether the instance was removed from its context.
func (in *Instance) Removed() bool { return in.RemovedAt != nil }

// HasSecret reports whether an instance secret is stored.
func (in *Instance) HasSecret() bool { return in.SealedSecret != "" }

// secretAAD binds a sealed instance secret to its row; the prefix keeps it apart from
// other values sealed for the same instance.
func secretAAD(instanceID string) string { return "instance-secret:" + instanceID }

// InstanceByID loads one instance, tombstones included.
func (s *Store) InstanceByID(ctx context.Context, id string) (*Instance, error) {
	var in Instance
	if err := s.db.WithContext(ctx).Take(&in, "id = ?", id).Error; err != nil {
		if err = translate(err); err == ErrNotFound {
			return nil, err
		}
		return nil, fmt.Errorf("load instance %s: %w", id, err)
	}
	return &in, nil
}

// Instances lists instances ordered by id; tombstones only when includeRemoved is set.
func (s *Store) Instances(ctx context.Context, includeRemoved bool) ([]Instance, error) {
	q := s.db.WithContext(ctx).Order("id")
	if !includeRemoved {
		q = q.Where("removed_at IS NULL")
	}
	var out []Instance
	if err := q.Find(&out).Error; err != nil {
		return nil, fmt.Errorf("list instances: %w", translate(err))
	}
	return out, nil
}

// InstanceCredentials returns a live, enabled instance and its opened secret: what is
// needed to mint an instance token. It fails with ErrNotFound, ErrRemoved, ErrDisabled or
// ErrNoSecret, without calling anywhere.
func (s *Store) InstanceCredentials(ctx context.Context, id string) (*Instance, Secret, error) {
	in, err := s.InstanceByID(ctx, id)
	if err != nil {
		return nil, "", err
	}
	switch {
	case in.Removed():
		return nil, "", ErrRemoved
	case !in.Enabled:
		return nil, "", ErrDisabled
	case !in.HasSecret():
		return nil, "", ErrNoSecret
	}
	secret, err := s.OpenInstanceSecret(in)
	if err != nil {
		return nil, "", err
	}
	return in, secret, nil
}

// OpenInstanceSecret opens an instance's stored secret, whatever its state; "" when it
// has none. `webhook replay --diff` compares secrets with it, without printing them.
func (s *Store) OpenInstanceSecret(in *Instance) (Secret, error) {
	if in.SealedSecret == "" {
		return "", nil
	}
	secret, err := s.keys.Open(in.SealedSecret, secretAAD(in.ID))
	if err != nil {
		return "", fmt.Errorf("open secret of instance %s: %w", in.ID, err)
	}
	return secret, nil
}

// SetContextName stores the name of the instance's context as fetched at the given time.
// A fetch older than the stored one changes nothing, so a slow job cannot overwrite a
// newer name; a removed instance is left alone.
func (s *Store) SetContextName(ctx context.Context, id, name string, fetchedAt time.Time) error {
	at := fetchedAt.UTC()
	res := s.db.WithContext(ctx).Model(&Instance{}).
		Where("id = ? AND removed_at IS NULL AND (context_name_at IS NULL OR context_name_at < ?)", id, at).
		UpdateColumns(map[string]any{"context_name": name, "context_name_at": at}) // not updated_at: that tracks lifecycle changes
	if res.Error != nil {
		return fmt.Errorf("set context name of instance %s: %w", id, translate(res.Error))
	}
	return nil
}
