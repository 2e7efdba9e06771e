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
	// Cached instance tokens are not worth carrying over: the broker mints them again.
	if err := s.db.WithContext(ctx).Exec(`DELETE FROM instance_tokens WHERE sealed_token <> '' AND sealed_token NOT LIKE ?`,
		sealPrefix+"."+s.keys.KeyIDs()[0]+".%").Error; err != nil {
		return stats, fmt.Errorf("rekey: drop cached instance tokens: %w", translate(err))
	}
	for pass := range rekeyPasses {
		changed := stats.Changed
		if err := s.rekeyPass(ctx, &stats, pass == 0); err != nil {
			return stats, err
		}
		if err := s.rekeyUserTokens(ctx, &stats, pass == 0); err != nil {
			return stats, err
		}
		if err := s.rekeyClientSecrets(ctx, &stats, pass == 0); err != nil {
			return stats, err
		}
		if err := s.rekeyCaptures(ctx, &stats, pass == 0); err != nil {
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

// rekeyUserTokens seals users' access and refresh tokens again with the first key, swapping
// a row only while both values are still the ones read.
func (s *Store) rekeyUserTokens(ctx context.Context, stats *RekeyStats, first bool) error {
	type row struct {
		InstanceID, PlatformUserID, SealedToken, SealedRefresh string
	}
	lastInstance, lastUser := "", ""
	for {
		var batch []row
		err := s.db.WithContext(ctx).Raw(`SELECT instance_id, platform_user_id, sealed_token, sealed_refresh FROM user_tokens
WHERE instance_id > ? OR (instance_id = ? AND platform_user_id > ?) ORDER BY instance_id, platform_user_id LIMIT 200`,
			lastInstance, lastInstance, lastUser).Scan(&batch).Error
		if err != nil {
			return fmt.Errorf("rekey: list user tokens: %w", translate(err))
		}
		if len(batch) == 0 {
			return nil
		}
		for _, r := range batch {
			lastInstance, lastUser = r.InstanceID, r.PlatformUserID
			token, refresh := r.SealedToken, r.SealedRefresh
			changed := false
			for _, v := range []struct {
				val  *string
				kind string
			}{{&token, aadUserToken}, {&refresh, aadUserRefresh}} {
				if *v.val == "" || s.keys.SealedWithCurrentKey(*v.val) {
					continue
				}
				aad := userTokenAAD(v.kind, r.PlatformUserID, r.InstanceID)
				plain, err := s.keys.Open(*v.val, aad)
				if err != nil {
					return fmt.Errorf("rekey: token of user %s in instance %s: %w", r.PlatformUserID, r.InstanceID, err)
				}
				if *v.val, err = s.keys.Seal(plain, aad); err != nil {
					return fmt.Errorf("rekey: token of user %s in instance %s: %w", r.PlatformUserID, r.InstanceID, err)
				}
				changed = true
			}
			if !changed {
				if first {
					stats.Current++
				}
				continue
			}
			res := s.db.WithContext(ctx).Exec(`UPDATE user_tokens SET sealed_token = ?, sealed_refresh = ?
WHERE instance_id = ? AND platform_user_id = ? AND sealed_token = ? AND sealed_refresh = ?`,
				token, refresh, r.InstanceID, r.PlatformUserID, r.SealedToken, r.SealedRefresh)
			if res.Error != nil {
				return fmt.Errorf("rekey: token of user %s in instance %s: %w", r.PlatformUserID, r.InstanceID, translate(res.Error))
			}
			if res.RowsAffected == 1 {
				stats.Resealed++
			} else {
				stats.Changed++ // refreshed meanwhile: the next pass looks at the new value
			}
		}
	}
}

// rekeyClientSecrets seals OpenID Connect providers' client secrets again with the first
// key, swapping a value only while it is still the one read.
func (s *Store) rekeyClientSecrets(ctx context.Context, stats *RekeyStats, first bool) error {
	lastID := ""
	for {
		var batch []providerRow
		err := s.db.WithContext(ctx).Select("id", "sealed_client_secret").
			Where("id > ? AND sealed_client_secret <> ''", lastID).Order("id").Limit(200).Find(&batch).Error
		if err != nil {
			return fmt.Errorf("rekey: list client secrets: %w", translate(err))
		}
		if len(batch) == 0 {
			return nil
		}
		for _, p := range batch {
			lastID = p.ID
			if s.keys.SealedWithCurrentKey(p.SealedClientSecret) {
				if first {
					stats.Current++
				}
				continue
			}
			plain, err := s.keys.Open(p.SealedClientSecret, clientSecretAAD(p.ID))
			if err != nil {
				return fmt.Errorf("rekey: client secret of provider %s: %w", p.ID, err)
			}
			sealed, err := s.keys.Seal(plain, clientSecretAAD(p.ID))
			if err != nil {
				return fmt.Errorf("rekey: client secret of provider %s: %w", p.ID, err)
			}
			res := s.db.WithContext(ctx).Exec(`UPDATE oidc_providers SET sealed_client_secret = ? WHERE id = ? AND sealed_client_secret = ?`,
				sealed, p.ID, p.SealedClientSecret)
			if res.Error != nil {
				return fmt.Errorf("rekey: client secret of provider %s: %w", p.ID, translate(res.Error))
			}
			if res.RowsAffected == 1 {
				stats.Resealed++
			} else {
				stats.Changed++ // changed by an owner meanwhile: the next pass looks again
			}
		}
	}
}
