package extension

import (
	"context"
	"fmt"
)

// RekeyStats counts what Rekey did.
type RekeyStats struct {
	Resealed int // sealed again with the first key
	Current  int // already sealed with the first key
	Changed  int // replaced by a concurrent rotation while rekey ran, and looked at again
}

// rekeyPasses bounds how often Rekey goes over the table to catch values a concurrent
// rotation wrote meanwhile.
const rekeyPasses = 5

// Rekey seals every stored secret again with the keyring's first key, so that an old key
// can be dropped from EXT_ENCRYPTION_KEYS afterwards. Each value is swapped only if it is
// still the one read, so a concurrent rotation is never overwritten with an older secret;
// such rows are looked at again in another pass, until a pass finds nothing left.
func (s *Store) Rekey(ctx context.Context) (RekeyStats, error) {
	var stats RekeyStats
	if s.keys == nil {
		return stats, ErrNoKeys
	}
	for pass := range rekeyPasses {
		changed := stats.Changed
		if err := s.rekeyPass(ctx, &stats, pass == 0); err != nil {
			return stats, err
		}
		if stats.Changed == changed {
			return stats, nil
		}
	}
	return stats, fmt.Errorf("rekey: secrets kept changing during %d passes; run it again", rekeyPasses)
}

func (s *Store) rekeyPass(ctx context.Context, stats *RekeyStats, first bool) error {
	lastID := ""
	for {
		var batch []Instance
		err := s.db.WithContext(ctx).Select("id", "sealed_secret").
			Where("id > ? AND sealed_secret <> ''", lastID).Order("id").Limit(200).Find(&batch).Error
		if err != nil {
			return fmt.Errorf("rekey: list secrets: %w", translate(err))
		}
		if len(batch) == 0 {
			return nil
		}
		for _, in := range batch {
			lastID = in.ID
			if s.keys.SealedWithCurrentKey(in.SealedSecret) {
				if first {
					stats.Current++
				}
				continue
			}
			plain, err := s.keys.Open(in.SealedSecret, secretAAD(in.ID))
			if err != nil {
				return fmt.Errorf("rekey: instance %s: %w", in.ID, err)
			}
			sealed, err := s.keys.Seal(plain, secretAAD(in.ID))
			if err != nil {
				return fmt.Errorf("rekey: instance %s: %w", in.ID, err)
			}
			res := s.db.WithContext(ctx).Model(&Instance{}).
				Where("id = ? AND sealed_secret = ?", in.ID, in.SealedSecret).
				UpdateColumn("sealed_secret", sealed) // not updated_at: the token broker reads it as the secret's arrival
			if res.Error != nil {
				return fmt.Errorf("rekey: instance %s: %w", in.ID, translate(res.Error))
			}
			if res.RowsAffected == 1 {
				stats.Resealed++
			} else {
				stats.Changed++ // replaced meanwhile: the next pass looks at the new value
			}
		}
	}
}
