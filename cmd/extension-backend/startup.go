package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/migrations"
)

// checkStartup runs the checks that refuse a database before anything uses it: its
// secrets must open with our keys (checkKeys), and a simulator's instances stay with a
// simulator (checkPlatform).
func checkStartup(ctx context.Context, store *extension.Store, cfg *Config, logger *slog.Logger) error {
	if err := checkKeys(ctx, store, cfg); err != nil {
		return err
	}
	return checkPlatform(ctx, store, cfg, logger)
}

// checkedSchemaVersion is the first version of our schema that holds every table the
// start-up checks read: the sealed columns (up to 00003_sso), store_meta (00004) and the
// captured deliveries (00012). Raise it when a check comes to read a table or column that
// a later migration adds.
const checkedSchemaVersion = 12

// canCheckBeforeMigrating reports whether the schema already holds what the start-up
// checks read, so that serve can run them before it migrates: a start they refuse then
// changes nothing. Below that version (a fresh database, above all) there is nothing the
// checks could refuse before migrating.
func canCheckBeforeMigrating(ctx context.Context, store *extension.Store) (bool, error) {
	st, err := migrations.List(ctx, store.SQLDB(), string(store.Dialect()))
	if err != nil {
		return false, err
	}
	for _, s := range st {
		if s.Source.Version <= checkedSchemaVersion && s.State != "applied" {
			return false, nil
		}
	}
	return true, nil
}

// checkKeys refuses a database whose stored secrets the configured keys cannot open (for
// example dev's database under ./data, reached with another key): otherwise the process
// would start and then fail every job and sign-in, one by one.
func checkKeys(ctx context.Context, store *extension.Store, cfg *Config) error {
	use, err := store.SealingKeys(ctx)
	if err != nil {
		return err
	}
	missing := use.Missing(store.Keys())
	if len(missing) == 0 {
		return nil
	}
	whose := ""
	if sim, err := store.SimulatorURL(ctx); err == nil && sim != "" {
		whose = " (the simulator's: if dev filled it, its key is encryption.key in dev's data folder)"
	}
	return fmt.Errorf("the database %s%s holds secrets sealed with key id %s, which EXT_ENCRYPTION_KEYS does not have (its key ids: %s): add that key to EXT_ENCRYPTION_KEYS, or point EXT_DATABASE_URL at another database",
		maskDatabaseURL(cfg.DatabaseURL.Reveal()), whose, strings.Join(missing, ", "), strings.Join(store.Keys().KeyIDs(), ", "))
}

// checkPlatform keeps the instances that a platform simulator installed from being sent
// to the platform: their secrets belong to the simulator, so tokens are minted only at an
// API on this machine (the simulator of dev or sim, on whichever port). A database is
// marked as the simulator's (store_meta) the first time serve or token runs on it with an
// API on this machine while it holds no instance yet; dev marks its database itself
// (checkDevDatabase).
func checkPlatform(ctx context.Context, store *extension.Store, cfg *Config, logger *slog.Logger) error {
	if cfg.devSimulator {
		return checkDevDatabase(ctx, store, cfg)
	}
	sim, err := store.SimulatorURL(ctx)
	if err != nil {
		return err
	}
	local := onThisMachine(cfg.MStudioAPIURL)
	switch {
	case sim != "" && local:
		return nil
	case sim != "":
		return fmt.Errorf("the database %s belongs to the platform simulator at %s: its instances' secrets are the simulator's and must not go to EXT_MSTUDIO_API_URL %s: set EXT_MSTUDIO_API_URL=%s (with dev or sim running), or point EXT_DATABASE_URL at another database",
			maskDatabaseURL(cfg.DatabaseURL.Reveal()), sim, cfg.MStudioAPIURL, sim)
	case !local:
		return nil
	}
	marked, err := store.MarkSimulatedIfEmpty(ctx, cfg.MStudioAPIURL)
	if err != nil {
		return err
	}
	if marked {
		logger.Info("database marked as the platform simulator's: its instances' secrets go to no API but one on this machine",
			"database", maskDatabaseURL(cfg.DatabaseURL.Reveal()), "simulator", cfg.MStudioAPIURL)
		return nil
	}
	logger.Warn("database not marked as the platform simulator's: it already holds instances, which may be the real platform's; if they came from a simulator, keep EXT_MSTUDIO_API_URL on this machine whenever serve or token runs on this database",
		"database", maskDatabaseURL(cfg.DatabaseURL.Reveal()), "mstudio_api_url", cfg.MStudioAPIURL)
	return nil
}

// checkDevDatabase marks the database dev runs on as its simulator's, before dev installs
// anything. A database given through EXT_DATABASE_URL that holds instances without the
// mark is refused: they did not come from a simulator, and once marked they would be kept
// from the real platform. Dev's own database under --data is marked anyway: one from
// before the mark existed holds dev's instances.
func checkDevDatabase(ctx context.Context, store *extension.Store, cfg *Config) error {
	if !cfg.devOwnDatabase {
		sim, err := store.SimulatorURL(ctx)
		if err != nil {
			return err
		}
		if sim == "" {
			marked, err := store.MarkSimulatedIfEmpty(ctx, cfg.MStudioAPIURL)
			if err != nil {
				return err
			}
			if !marked {
				return fmt.Errorf("the database %s holds instances that did not come from the platform simulator (it has no simulator mark), and dev would keep them from the real platform: point dev at another database with --data (without EXT_DATABASE_URL) or EXT_DATABASE_URL",
					maskDatabaseURL(cfg.DatabaseURL.Reveal()))
			}
		}
	}
	return store.MarkSimulated(ctx, cfg.MStudioAPIURL) // the simulator's address of this run
}

// onThisMachine reports whether an API URL points at this machine, where only a
// simulator runs, never the platform.
func onThisMachine(apiURL string) bool {
	u, err := url.Parse(apiURL)
	return err == nil && isLoopback(u.Hostname())
}
