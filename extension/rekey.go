package extension

import (
	"context"
	"fmt"
)

// RekeyStats counts what Rekey did.
type RekeyStats struct {
	Resealed int // sealed again with the first key
	Current  int // already sealed with the first key
}

// Rekey seals every stored secret again with the keyring's first key, so that an old key
// can be dropped from EXT_ENCRYPTION_KEYS afterwards. Each value is swapped only if it is
// still the one read, so a concurrent rotation is never overwritten with an older secret.
func (s *Store) Rekey(ctx context.Context) (RekeyStats, error) {
	var stats RekeyStats
	if s.keys == nil {
		return stats, ErrNoKeys
	}
	lastID := ""
	for {
		var batch []Instance
		err := s.db.WithContext(ctx).Select("id", "sealed_secret").
			Where("id > ? AND sealed_secret <> ''", lastID).Order("id").Limit(200).Find(&batch).Error
		if err != nil {
			return stats, fmt.Errorf("rekey: list secrets: %w", translate(err))
		}
		if len(batch) == 0 {
			return stats, nil
		}
		for _, in := range batch {
			lastID = in.ID
			if s.keys.SealedWithCurrentKey(in.SealedSecret) {
				stats.Current++
				continue
			}
			plain, err := s.keys.Open(in.SealedSecret, secretAAD(in.ID))
			if err != nil {
				return stats, fmt.Errorf("rekey: instance %s: %w", in.ID, err)
			}
			sealed, err := s.keys.Seal(plain, secretAAD(in.ID))
			if err != nil {
				return stats, fmt.Errorf("rekey: instance %s: %w", in.ID, err)
			}
			res := s.db.WithContext(ctx).Model(&Instance{}).
				Where("id = ? AND sealed_secret = ?", in.ID, in.SealedSecret).
				Update("sealed_secret", sealed)
			if res.Error != nil {
				return stats, fmt.Errorf("rekey: instance %s: %w", in.ID, translate(res.Error))
			}
			if res.RowsAffected == 1 {
				stats.Resealed++
			} else {
				stats.Current++ // replaced meanwhile by a rotation, sealed with the current key
			}
		}
	}
}
