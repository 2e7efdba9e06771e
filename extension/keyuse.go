package extension

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// KeyUsage lists the fingerprints (KeyID) of the keys that sealed the values a store
// holds, by kind of value, each sorted.
type KeyUsage struct {
	InstanceSecrets []string
	UserTokens      []string // platform users' access and refresh tokens
	InstanceTokens  []string // the instance tokens the replicas share (a cache)
	Captures        []string // captured deliveries (webhook_captures)
}

// Missing lists, sorted, the keys in use that kr does not hold, for the values that are
// lost without them: instance secrets (only the platform's next rotation would bring a new
// one), users' tokens (the users would have to sign in again) and captured deliveries
// (they could no longer be replayed; rekey carries them over). Cached instance tokens are
// left out: one that does not open is simply minted again.
func (u KeyUsage) Missing(kr *Keyring) []string {
	return u.MissingFrom(kr.KeyIDs())
}

// MissingFrom is Missing for the key ids a process has, such as those doctor reads from
// the configuration.
func (u KeyUsage) MissingFrom(keyIDs []string) []string {
	var missing []string
	for _, id := range slices.Concat(u.InstanceSecrets, u.UserTokens, u.Captures) {
		if !slices.Contains(keyIDs, id) && !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	return missing
}

// sealedHead is the length of a sealed value's head, "v1.<key id>.": the version and the
// 8 hex digits of the key's fingerprint, which is all SealingKeys reads of each value.
const sealedHead = len(sealPrefix) + 1 + 8 + 1

// SealingKeys reports which keys sealed the values stored, so that a process can refuse
// to start with keys that cannot open them. Each column is read as its distinct heads,
// one scan per column, without opening anything.
func (s *Store) SealingKeys(ctx context.Context) (KeyUsage, error) {
	var u KeyUsage
	for _, q := range []struct {
		into    *[]string
		columns []string
		table   string
	}{
		{&u.InstanceSecrets, []string{"sealed_secret"}, "instances"},
		{&u.UserTokens, []string{"sealed_token", "sealed_refresh"}, "user_tokens"},
		{&u.InstanceTokens, []string{"sealed_token"}, "instance_tokens"},
		{&u.Captures, []string{"sealed"}, "webhook_captures"},
	} {
		var selects []string
		for _, c := range q.columns {
			selects = append(selects, fmt.Sprintf("SELECT DISTINCT substr(%[1]s, 1, %[2]d) AS head FROM %[3]s WHERE %[1]s <> ''", c, sealedHead, q.table))
		}
		var heads []string
		if err := s.db.WithContext(ctx).Raw(strings.Join(selects, " UNION ")).Scan(&heads).Error; err != nil {
			return KeyUsage{}, fmt.Errorf("list the keys in use in %s: %w", q.table, translate(err))
		}
		for _, h := range heads {
			// Anything else is no sealed value at all; Open refuses it, and its text must
			// not reach an error message.
			id, ok := strings.CutPrefix(h, sealPrefix+".")
			id, dot := strings.CutSuffix(id, ".")
			if ok && dot && len(id) == 8 && isHex(id) {
				*q.into = append(*q.into, id)
			}
		}
		slices.Sort(*q.into)
		*q.into = slices.Compact(*q.into)
	}
	return u, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
