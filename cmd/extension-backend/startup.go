package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
)

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
		whose = " (dev's: its key is encryption.key in dev's data folder)"
	}
	return fmt.Errorf("the database %s%s holds secrets sealed with key id %s, which EXT_ENCRYPTION_KEYS does not have (its key ids: %s): add that key to EXT_ENCRYPTION_KEYS, or point EXT_DATABASE_URL at another database",
		maskDatabaseURL(cfg.DatabaseURL.Reveal()), whose, strings.Join(missing, ", "), strings.Join(store.Keys().KeyIDs(), ", "))
}

// checkPlatform keeps the instances of a database that dev filled from being sent to the
// platform: their secrets belong to the simulator, so tokens are minted only at an API on
// this machine (the simulator of dev or sim, on whichever port). cfg.devSimulator marks
// the database instead, before dev installs anything.
func checkPlatform(ctx context.Context, store *extension.Store, cfg *Config) error {
	if cfg.devSimulator {
		return store.MarkSimulated(ctx, cfg.MStudioAPIURL)
	}
	sim, err := store.SimulatorURL(ctx)
	if err != nil || sim == "" {
		return err
	}
	if u, err := url.Parse(cfg.MStudioAPIURL); err == nil && isLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("the database %s is dev's: its instances were installed by the platform simulator at %s, so their secrets must not go to EXT_MSTUDIO_API_URL %s: set EXT_MSTUDIO_API_URL=%s (with dev or sim running), or point EXT_DATABASE_URL at another database",
		maskDatabaseURL(cfg.DatabaseURL.Reveal()), sim, cfg.MStudioAPIURL, sim)
}
