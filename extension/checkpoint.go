package extension

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// On SQLite the store moves its write-ahead log into the database file in the background
// instead of letting SQLite do it inside a commit. SQLite's own checkpoint runs in the
// commit that pushes the log past 1,000 pages, and with synchronous=NORMAL it syncs the
// log and the database file there (two fsyncs, 3–12 ms each on the benchmark machine):
// the delivery or sign-in whose commit it was waited for them, and so did every other
// writer queued behind it. The writing connections turn that off (wal_autocheckpoint=0)
// and a checkpointer with a connection of its own does the work beside them:
//
//   - within a second after writes (checkpointSettings.interval), a PASSIVE checkpoint,
//     which copies the log into the database file without taking the write lock: writers
//     go on appending meanwhile;
//   - when the log has grown past restartFrames anyway (under an unbroken stream of
//     writes the copy never catches up, and SQLite starts the log over only when it has),
//     a RESTART checkpoint, which does take the write lock for the last few pages and
//     makes the next writer start the log from its beginning. It takes the store's write
//     gate first, as any other write does, so queued deliveries go before it;
//   - at Close, a TRUNCATE checkpoint, which leaves an empty log behind.
//
// Durability is what it was: a commit is in the log (written, and in WAL mode with
// synchronous=NORMAL not synced, as before and as the benchmarks' baselines) before it
// is acknowledged, and a process killed before a checkpoint finds its commits in the log
// when the database is opened again. A checkpoint interrupted by a crash is redone.

// The defaults of checkpointSettings.
const (
	defaultCheckpointInterval = time.Second
	// defaultRestartFrames is 32 MiB of 4 KiB pages: how far the log may grow before a
	// checkpoint holds the writers back to start it over.
	defaultRestartFrames = 8192
	// checkpointBusy bounds how long a RESTART waits for readers of the old log, while it
	// holds the writers back; past it the checkpoint gives up and is tried again later.
	checkpointBusy = 100 * time.Millisecond
	// closeBusy bounds the TRUNCATE at Close.
	closeBusy = 2 * time.Second
)

// walSizeLimit is what the log file is cut back to when it starts over (journal_size_limit):
// a log that grew past the restart threshold (readers kept a RESTART from finishing)
// does not keep that size on disk. It is the threshold itself, so that under a steady
// stream the file is overwritten in place rather than cut and grown again each time.
const walSizeLimit = defaultRestartFrames * (4096 + 24)

// checkpointSettings tunes the checkpointer; zero fields take the defaults. Tests set
// them (Options.checkpoint) to see a bounded log in less than a second.
type checkpointSettings struct {
	interval      time.Duration
	restartFrames int
}

// checkpointer runs the background checkpoints of one SQLite store.
type checkpointer struct {
	conn     *sql.Conn // of db, kept for its lifetime: data_version is per connection
	db       *sql.DB
	gate     *writeGate
	logger   *slog.Logger
	settings checkpointSettings
	quit     chan struct{}
	exited   chan struct{}
	closing  sync.Once
	closeErr error

	lastVersion int64 // data_version at the last checkpoint
}

// checkpointStats is what a checkpoint left behind: the pages in the write-ahead log and
// how many of them are in the database file now.
type checkpointStats struct {
	Busy         bool
	LogFrames    int
	Checkpointed int
}

func newCheckpointer(ctx context.Context, path string, gate *writeGate, logger *slog.Logger, settings checkpointSettings) (*checkpointer, error) {
	if settings.interval <= 0 {
		settings.interval = defaultCheckpointInterval
	}
	if settings.restartFrames <= 0 {
		settings.restartFrames = defaultRestartFrames
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := sql.Open("sqlite3", sqliteURI(path, ""))
	if err != nil {
		return nil, fmt.Errorf("open sqlite checkpointer: %w", err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err == nil {
		_, err = conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", checkpointBusy.Milliseconds()))
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("connect sqlite checkpointer: %w", err)
	}
	c := &checkpointer{conn: conn, db: db, gate: gate, logger: logger, settings: settings,
		quit: make(chan struct{}), exited: make(chan struct{})}
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.exited)
	tick := time.NewTicker(c.settings.interval)
	defer tick.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-tick.C:
		}
		if err := c.checkpoint(context.Background()); err != nil {
			// The next tick tries again; the log only grows meanwhile.
			c.logger.Warn("sqlite checkpoint failed", "error", err.Error())
		}
	}
}

// checkpoint copies the log into the database file if anything was written since the
// last time, and starts the log over if it has grown past restartFrames.
func (c *checkpointer) checkpoint(ctx context.Context) error {
	var version int64
	if err := c.conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&version); err != nil {
		return err
	}
	if version == c.lastVersion {
		return nil // nothing written since: the log is where the last checkpoint left it
	}
	st, err := c.run1(ctx, "PASSIVE")
	if err != nil {
		return err
	}
	if st.LogFrames >= c.settings.restartFrames {
		if err := c.gate.acquire(ctx, false); err != nil {
			return err
		}
		st, err = c.run1(ctx, "RESTART")
		c.gate.release()
		if err != nil {
			return err
		}
	}
	if !st.Busy && st.Checkpointed == st.LogFrames {
		c.lastVersion = version // all of it is in the file; else the next tick goes on
	}
	return nil
}

// run1 runs one checkpoint of the given mode.
func (c *checkpointer) run1(ctx context.Context, mode string) (checkpointStats, error) {
	var st checkpointStats
	var busy int
	err := c.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &st.LogFrames, &st.Checkpointed)
	st.Busy = busy != 0
	if err != nil {
		return st, fmt.Errorf("%s checkpoint: %w", mode, err)
	}
	return st, nil
}

// close stops the background checkpoints and truncates the log: what the store wrote is
// in the database file then, and the log is empty. Call it after the writers stopped;
// a second call returns what the first did.
func (c *checkpointer) close() error {
	c.closing.Do(func() {
		close(c.quit)
		<-c.exited
		ctx := context.Background()
		_, err := c.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", closeBusy.Milliseconds()))
		if err == nil {
			var st checkpointStats
			if st, err = c.run1(ctx, "TRUNCATE"); err == nil && st.Busy {
				// Another process reads or writes the file: it keeps the log and
				// checkpoints it itself.
				err = nil
			}
		}
		c.closeErr = errors.Join(err, c.conn.Close(), c.db.Close())
	})
	return c.closeErr
}
