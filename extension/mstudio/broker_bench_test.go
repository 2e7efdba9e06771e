package mstudio_test

import (
	"context"
	"testing"
)

// BenchmarkBrokerTokenCached measures Token served from memory, the path every job call
// takes: it must stay under 1 µs and allocate nothing.
func BenchmarkBrokerTokenCached(b *testing.B) {
	env := newBrokerEnv(b, brokerOptions{})
	id := env.install(b)
	broker := env.Brokers[0]
	ctx := context.Background()
	want := brokerToken(b, broker, id)
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tok, err := broker.Token(ctx, id); err != nil || tok != want {
				b.Fatalf("Token = %v, %v", tok.Expiry, err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if tok, err := broker.Token(ctx, id); err != nil || tok != want {
					b.Errorf("Token = %v, %v", tok.Expiry, err)
					return
				}
			}
		})
	})
	if n := len(env.mints()); n != 1 {
		b.Errorf("%d mints during the benchmark, want the first only", n)
	}
}
