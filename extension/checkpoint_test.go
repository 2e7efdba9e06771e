package extension_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/uuid"
)

// walSize is the size of a SQLite database's write-ahead log; 0 when there is none.
func walSize(t *testing.T, databaseURL string) int64 {
	t.Helper()
	fi, err := os.Stat(strings.TrimPrefix(databaseURL, "sqlite:") + "-wal")
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCheckpointsBoundTheLog: under an unbroken stream of deliveries, which never leaves
// the background copy a moment to catch up, the write-ahead log still stays near the
// restart threshold instead of growing with every commit (SQLite's own checkpoints are
// off on the store's connections), and every delivery is in the database.
func TestCheckpointsBoundTheLog(t *testing.T) {
	const (
		restartFrames = 128
		frameBytes    = 4096 + 24
		deliveries    = 3000
		senders       = 8
	)
	url := extensiontest.SQLiteURL(t)
	s := extensiontest.Open(t, url, extension.WithCheckpoints(extension.Options{Keys: extensiontest.Keyring(t)}, 10*time.Millisecond, restartFrames))
	ids := make([]string, 200)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	var (
		sent    atomic.Int64
		maxWAL  atomic.Int64
		wg      sync.WaitGroup
		stopped = make(chan struct{})
		sampled = make(chan struct{})
	)
	go func() {
		defer close(sampled)
		for {
			if n := walSize(t, url); n > maxWAL.Load() {
				maxWAL.Store(n)
			}
			select {
			case <-stopped:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	for range senders {
		wg.Go(func() {
			for {
				n := sent.Add(1)
				if n > deliveries {
					return
				}
				if _, err := s.ApplyLifecycle(context.Background(), installOf(ids[n%int64(len(ids))])); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stopped)
	<-sampled
	// Each delivery writes at least two pages (its instance's row and its journal row):
	// without the restarts the log would end at 6,000 frames or more. A restart waits
	// behind the queued deliveries and for readers, so on a busy machine the log passes the
	// threshold by several times before it starts over (4× was exceeded at a load of 10 on
	// two cores); 12× is still a quarter of an unbounded log.
	if limit := int64(12 * restartFrames * frameBytes); maxWAL.Load() > limit {
		t.Errorf("the log grew to %d bytes; want at most %d (12 × the restart threshold)", maxWAL.Load(), limit)
	}
	if n := probeCount(t, s.ReadDB(), `SELECT COUNT(*) FROM webhook_deliveries`); n != deliveries {
		t.Errorf("%d deliveries journaled, want %d", n, deliveries)
	}
}

// TestCloseTruncatesTheLog: Close leaves an empty log behind, also while another
// connection keeps the database open (with none, SQLite removes the log itself).
func TestCloseTruncatesTheLog(t *testing.T) {
	url := extensiontest.SQLiteURL(t)
	s := extensiontest.Open(t, url, extension.Options{Keys: extensiontest.Keyring(t)})
	for range 50 {
		if _, err := s.ApplyLifecycle(context.Background(), installOf(uuid.NewString())); err != nil {
			t.Fatal(err)
		}
	}
	other, err := sql.Open("sqlite3", "file:"+strings.TrimPrefix(url, "sqlite:")+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if n := probeCount(t, other, `SELECT COUNT(*) FROM instances`); n != 50 {
		t.Fatalf("%d instances before Close, want 50", n)
	}
	if walSize(t, url) == 0 {
		t.Fatal("no log before Close: the test would prove nothing")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := walSize(t, url); n != 0 {
		t.Errorf("log of %d bytes after Close, want 0", n)
	}
	if n := probeCount(t, other, `SELECT COUNT(*) FROM instances`); n != 50 {
		t.Errorf("%d instances after Close, want 50", n)
	}
}
