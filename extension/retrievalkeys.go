package extension

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// retrievalKeyHash is what the retrieval_keys table holds instead of a key: its hex SHA-256.
// A plain hash suffices: a key is long, random and worthless once redeemed, so there is
// nothing to guess from the hash.
func retrievalKeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// ClaimRetrievalKey remembers a single-use retrieval key (an ATReK) until ttl from now and
// reports whether this was the first time it was seen. Call it before the key is sent to
// the platform: only the caller that got true may redeem it, so a reloaded, shared or
// concurrently opened link is refused without a second redemption. ttl should cover the
// key's lifetime at the platform plus the replicas' clock skew; after that the row may be
// pruned, because the platform refuses the key by then anyway. Only the key's hash is stored.
//
// The claim is one INSERT … ON CONFLICT DO NOTHING, so two replicas racing on one key need
// no transaction: the row count says who was first. A remembered row that has outlived
// its ttl but is not pruned yet still counts as seen: a key is single use forever.
func (s *Store) ClaimRetrievalKey(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if key == "" {
		return false, errors.New("claim retrieval key: empty key")
	}
	if ttl <= 0 {
		return false, fmt.Errorf("claim retrieval key: ttl %v, want a positive duration", ttl)
	}
	// Every click-through runs it: a statement prepared once, not the ORM's.
	st, err := s.prepared(ctx, `INSERT INTO retrieval_keys (key_hash, expires_at) VALUES (?, ?) ON CONFLICT (key_hash) DO NOTHING`)
	if err != nil {
		return false, fmt.Errorf("claim retrieval key: %w", err)
	}
	res, err := st.ExecContext(ctx, retrievalKeyHash(key), s.now().UTC().Add(ttl))
	if err != nil {
		return false, fmt.Errorf("claim retrieval key: %w", s.translateDriver(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim retrieval key: %w", err)
	}
	return n == 1, nil
}

// PruneRetrievalKeys forgets the keys whose time ran out before now and returns how many.
func (s *Store) PruneRetrievalKeys(ctx context.Context, now time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM retrieval_keys WHERE expires_at < ?`, now.UTC())
	if res.Error != nil {
		return 0, fmt.Errorf("prune retrieval keys: %w", translate(res.Error))
	}
	return res.RowsAffected, nil
}
