package mstudio_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/prometheus/client_golang/prometheus"
)

// TestBrokerRecordsMintOutcomes: a failed mint is recorded by kind and status for the
// ops console and counted in extension_token_mints_total; a later mint clears "failing".
// Nothing recorded carries the secret or the token. Both databases.
func TestBrokerRecordsMintOutcomes(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			env := newBrokerEnv(t, brokerOptions{Dialect: d})
			id := env.install(t)
			reg := prometheus.NewRegistry()
			b := mstudio.NewBroker(env.Stores[0], env.Client, mstudio.BrokerOptions{Registerer: reg, Grace: -1})
			ctx := context.Background()

			env.Sim.InjectFault(brokerTokenRoute, mstudiotest.Fault{Status: http.StatusServiceUnavailable, Times: 10})
			if _, err := b.Token(ctx, id); err == nil {
				t.Fatal("Token with the platform failing = nil error")
			}
			h, err := env.Stores[0].InstanceTokenHealth(ctx, id, time.Now())
			if err != nil || !h.Failing() || h.LastError != mstudio.MintPlatformError || h.LastErrorStatus != http.StatusServiceUnavailable {
				t.Errorf("health after a failed mint = %+v, %v; want platform_error 503", h, err)
			}
			env.Sim.ClearFaults()
			tok, err := b.Token(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			h, err = env.Stores[0].InstanceTokenHealth(ctx, id, time.Now())
			if err != nil || h.Failing() || !h.Cached || h.LastMintedAt.IsZero() {
				t.Errorf("health after a mint = %+v, %v; want cached, not failing", h, err)
			}
			counts := map[string]float64{}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() != "extension_token_mints_total" {
					continue
				}
				for _, m := range mf.Metric {
					counts[m.Label[0].GetValue()] = m.GetCounter().GetValue()
				}
			}
			if counts["ok"] != 1 || counts[mstudio.MintPlatformError] != 1 || len(counts) < 7 {
				t.Errorf("extension_token_mints_total = %v; want ok 1, platform_error 1, every outcome present", counts)
			}
			in, _ := env.Sim.Instance(id)
			if strings.Contains(h.LastError, in.Secret) || strings.Contains(h.LastError, tok.Token.Reveal()) {
				t.Error("the recorded error holds the secret or the token")
			}
		})
	}
}
